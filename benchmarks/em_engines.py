"""Blockwise 3-D U-Net inference and segmentation on an EM volume: PyTorch fp32, ONNX Runtime fp32,
ONNX Runtime static int8 and PyTorch static int8 (fbgemm), side by side in one run.

A synthetic volume (``quantscan.apps.connectomics.synthetic``) is segmented block by block
(``quantscan.apps.connectomics.scoring``: halos of the U-Net's reach, one read shape for every block,
watershed + agglomeration, merged across faces) by the same U-Net through each engine. The U-Net is
briefly trained on patches of a second synthetic volume (``--train-steps`` Adam steps; 0: random
weights), so the segmentations and the int8 calibration see realistic activations. Reported per
engine: inference voxels/s, end-to-end voxels/s (blocks to segmentation: inference + the workflow's
default segmentation; also with the scoring against the labels), VOI and ARAND against the labels, the model file size, and the int8 engines'
ratios to fp32 ONNX Runtime and to PyTorch; the CPU's VNNI support is recorded (ONNX Runtime's int8
convolutions are fast only with it). Both int8 engines are calibrated on the same patches.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/em_engines.py --shape 32 256 256 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import machine  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from quantscan.apps.connectomics import dataset as cdata  # noqa: E402
from quantscan.apps.connectomics import scoring  # noqa: E402
from quantscan.apps.connectomics.settings import DEFAULTS  # noqa: E402
from quantscan.apps.connectomics.synthetic import make_volume  # noqa: E402
from quantscan.atomic import write_text  # noqa: E402
from quantscan.export import torch_int8  # noqa: E402
from quantscan.export.onnx import build_int8  # noqa: E402
from quantscan.models import build_model  # noqa: E402
from quantscan.runtime import OnnxEngine, TorchEngine  # noqa: E402
from quantscan.tasks import get_task  # noqa: E402


def train(model, raw, labels, steps: int, patch, seed: int) -> None:
    """A few seeded Adam steps on augmented patches (enough for realistic activations)."""
    if steps <= 0:
        return
    x, y = cdata.patches(raw, labels, patch, 4 * steps, seed, z_range=(0, raw.shape[0]), options={})
    loss_fn = get_task("affinities").loss()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for i in range(steps):
        xb = torch.from_numpy(x[4 * i : 4 * i + 4])
        yb = torch.from_numpy(y[4 * i : 4 * i + 4].astype(np.int64))
        opt.zero_grad()
        loss_fn(model(xb), yb).backward()
        opt.step()
    model.eval()


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--shape", type=int, nargs=3, default=[32, 256, 256], help="scan volume z y x")
    p.add_argument("--block", type=int, nargs=3, default=[16, 128, 128])
    p.add_argument("--filters", type=int, default=16)
    p.add_argument("--levels", type=int, default=3)
    p.add_argument("--train-steps", type=int, default=60)
    p.add_argument("--patch", type=int, nargs=3, default=[8, 64, 64])
    p.add_argument("--threads", type=int, default=2, help="threads of inference and segmentation")
    p.add_argument(
        "--fragment-block",
        type=int,
        nargs=3,
        default=None,
        help="scan.segmentation.fragment_block (default: the workflow's)",
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=ROOT / "results/benchmarks/em_engines.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    info = machine.describe() | {"load_average_start": list(os.getloadavg())}
    torch.manual_seed(args.seed)
    arch = {"name": "unet3d", "filters": args.filters, "levels": args.levels}
    model = build_model(arch).eval()
    t0 = time.perf_counter()
    raw_t, lab_t = make_volume(shape=(32, 128, 128), seed=args.seed + 100)
    train(model, raw_t, lab_t, args.train_steps, args.patch, args.seed)
    train_s = time.perf_counter() - t0
    raw, labels = make_volume(shape=tuple(args.shape), seed=args.seed)
    block, halo = scoring.geometry(model, args.block)
    read = scoring.read_shape(block, halo)
    segmentation = dict(DEFAULTS["scan"]["segmentation"])
    if args.fragment_block:
        segmentation["fragment_block"] = list(args.fragment_block)
    results = {}
    with tempfile.TemporaryDirectory(prefix="em-engines-") as tmp:
        calib = cdata.patches(raw_t, lab_t, args.patch, 32, args.seed, z_range=(0, 32), options={})[
            0
        ]
        paths = build_int8(
            model, calib, Path(tmp) / "m.onnx", Path(tmp) / "m.int8.onnx", dynamic_spatial=True
        )
        torch_path = Path(tmp) / "m.pt"
        torch.save(model.state_dict(), torch_path)
        qtorch = torch_int8.quantize(model, calib)
        tq_path = Path(tmp) / "m.int8.pt"
        torch_int8.save(tq_path, arch, qtorch)
        engines = {
            "torch_fp32": TorchEngine(
                model, batch_size=1, threads=args.threads, input_dtypes=("float32",)
            ),
            "onnx_fp32": OnnxEngine(
                paths["fp32"], batch_size=1, threads=args.threads, input_dtypes=("float32",)
            ),
            "onnx_int8": OnnxEngine(
                paths["int8"], batch_size=1, threads=args.threads, input_dtypes=("float32",)
            ),
            "torch_int8": TorchEngine(
                qtorch,
                batch_size=1,
                threads=args.threads,
                input_dtypes=("float32",),
                reference=model,
            ),
        }
        sizes = {
            "torch_fp32": torch_path.stat().st_size,
            "onnx_fp32": paths["fp32"].stat().st_size,
            "onnx_int8": paths["int8"].stat().st_size,
            "torch_int8": tq_path.stat().st_size,
        }
        warm = np.zeros((1, 1, *read), np.float32)
        for name, engine in engines.items():
            engine.logits(warm)  # first-call setup out of the timing
            t = time.perf_counter()
            out = scoring.score_volume(
                engine,
                raw,
                None,
                labels,
                model=model,
                block=block,
                segmentation=segmentation,
                voxel_size=tuple(DEFAULTS["data"]["voxel_size"]),
                threads=args.threads,
            )
            total = time.perf_counter() - t
            m = out["metrics"]
            # blocks to segmentation (what a user without labels waits for); scoring apart
            e2e = m["voxels"] / (m["inference_seconds"] + m["segmentation_seconds"])
            results[name] = {
                "inference_voxels_per_s": m["voxels_per_s"],
                "end_to_end_voxels_per_s": e2e,
                "with_scoring_voxels_per_s": m["voxels"] / total,
                "inference_seconds": m["inference_seconds"],
                "segmentation_seconds": m["segmentation_seconds"],
                "voi_split": m["voi_split"],
                "voi_merge": m["voi_merge"],
                "voi": m["voi"],
                "arand": m["arand"],
                "file_bytes": sizes[name],
            }
            print(
                f"{name:10s} inference {m['voxels_per_s']:9.0f} vox/s, end to end "
                f"{e2e:9.0f} vox/s ({m['voxels'] / total:9.0f} with scoring), VOI "
                f"{m['voi']:.3f} bits, ARAND "
                f"{m['arand']:.3f}, {sizes[name]:,} bytes",
                flush=True,
            )
    i8, f32, pt = results["onnx_int8"], results["onnx_fp32"], results["torch_fp32"]
    t8 = results["torch_int8"]
    ratios = {
        "torch_int8_over_onnx_fp32": t8["inference_voxels_per_s"] / f32["inference_voxels_per_s"],
        "torch_int8_over_torch_fp32": t8["inference_voxels_per_s"] / pt["inference_voxels_per_s"],
        "torch_fp32_file_over_torch_int8": pt["file_bytes"] / t8["file_bytes"],
        "torch_int8_minus_fp32_arand": t8["arand"] - pt["arand"],
        "torch_int8_minus_fp32_voi": t8["voi"] - pt["voi"],
        "int8_over_onnx_fp32": i8["inference_voxels_per_s"] / f32["inference_voxels_per_s"],
        "int8_over_torch_fp32": i8["inference_voxels_per_s"] / pt["inference_voxels_per_s"],
        "onnx_fp32_file_over_int8": f32["file_bytes"] / i8["file_bytes"],
        "int8_minus_fp32_arand": i8["arand"] - f32["arand"],
        "int8_minus_fp32_voi": i8["voi"] - f32["voi"],
    }
    print(" ".join(f"{k} {v:.3f}" for k, v in ratios.items()))
    out = {
        "machine": info | {"load_average_end": list(os.getloadavg())},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "segmentation": segmentation,
        "block": list(block),
        "halo": list(halo),
        "train_seconds": train_s,
        "engines": results,
        "ratios": ratios,
    }
    write_text(args.out, json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
