"""Affinities -> segmentation on the default run's synthetic EM volumes: waterz (mean and quantile
scorings, its own watershed or this package's distance-seeded fragments) against the numpy /
scikit-image watershed + agglomeration and the connected components, with a threshold sweep.

The affinities come from one fp32 U-Net (``--model``: the workflow's
``results/connectomics/models/synthetic/fp32/model.pt``) run blockwise over the synthetic volumes
that the workflow draws from ``--config`` and ``--seed``: the training volume (where each method's
threshold is chosen: the lowest ARAND of the sweep), the test volume, the scan volume and a larger
volume of ``--large`` voxels (same generator, same seed salt). Per method and volume: ARAND, VOI
split / merge (bits), boundary F1 of the sections (2 px tolerance), seconds of segmentation at the
chosen threshold (one run, fragments included) and voxels/s; the sweep's scores at every threshold.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/em_segmentation.py \\
        --model results/connectomics/models/synthetic/fp32/model.pt
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import machine  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from quantscan.apps.connectomics import dataset as cdata  # noqa: E402
from quantscan.apps.connectomics import scoring  # noqa: E402
from quantscan.apps.connectomics import segment as S  # noqa: E402
from quantscan.apps.connectomics.metrics import (  # noqa: E402
    adapted_rand,
    segmentation_boundary_f1,
    voi,
)
from quantscan.apps.connectomics.settings import resolve  # noqa: E402
from quantscan.atomic import write_text  # noqa: E402
from quantscan.modelio import load_fp32  # noqa: E402
from quantscan.runtime import TorchEngine  # noqa: E402

#: method name -> segment.fragments_and_segmentation options
METHODS = {
    "waterz_mean": {"method": "waterz", "scoring": "mean"},
    "waterz_quantile50": {"method": "waterz", "scoring": "quantile50"},
    "waterz_quantile75": {"method": "waterz", "scoring": "quantile75"},
    "waterz_mean_own_fragments": {"method": "waterz", "scoring": "mean", "fragments": "waterz"},
    "skimage_watershed": {"method": "watershed"},
    "components": {"method": "components"},
}
THRESHOLDS = [round(t, 2) for t in np.arange(0.1, 0.96, 0.05)]


def scores(seg, labels) -> dict:
    out = {**voi(seg, labels), **adapted_rand(seg, labels)}
    out |= segmentation_boundary_f1(seg, labels, tolerance=2.0)
    out["segments"] = int(len(np.unique(seg[(labels > 0) & (seg > 0)])))
    return {k: float(v) for k, v in out.items()}


def sweep(affs, labels, options) -> dict[float, dict]:
    """Scores at every threshold (waterz: one incremental run over the same fragments)."""
    options = dict(options)
    method = options.pop("method")
    if method == "waterz":
        frags = S.block_fragments(
            affs,
            method="waterz",
            fragments=options.get("fragments", "distance"),
            sampling=options.get("sampling"),
        )
        run = S.waterz_sweep(affs, THRESHOLDS, scoring=options["scoring"], fragments=frags)
        return {t: scores(seg, labels) for t, seg in run}
    out = {}
    if method == "watershed":
        frags = S.watershed_fragments(affs)
        for t in THRESHOLDS:
            out[t] = scores(S.agglomerate(frags, affs, t), labels)
        return out
    for t in THRESHOLDS:
        out[t] = scores(S.affinity_components(affs, t), labels)
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="fp32 U-Net (the workflow's)")
    p.add_argument("--config", type=Path, default=ROOT / "config/config.yaml")
    p.add_argument("--large", type=int, nargs=3, default=[32, 256, 256])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--methods", nargs="+", default=list(METHODS))
    p.add_argument("--out", type=Path, default=ROOT / "results/benchmarks/em_segmentation.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = yaml.safe_load(args.config.read_text())
    seed = config["seed"]
    s = resolve(config["apps"]["connectomics"])
    info = machine.describe() | {"load_average_start": list(os.getloadavg())}
    model, _ = load_fp32(args.model)
    engine = TorchEngine(model, batch_size=1, threads=args.threads, input_dtypes=("float32",))
    block, halo = scoring.geometry(model, s["scan"]["block"])
    big = {**s, "data": {**s["data"], "synthetic": {**s["data"]["synthetic"], "scan": args.large}}}
    volumes = {
        "train": cdata.load_volume(s, "train", seed)[:2],
        "test": cdata.load_volume(s, "test", seed)[:2],
        "scan": cdata.load_volume(s, "scan", seed, "synthetic")[:2],
        "large": cdata.load_volume(big, "scan", seed, "synthetic")[:2],
    }
    affs = {}
    for name, (raw, _) in volumes.items():
        affs[name] = scoring.predict_volume(engine, raw, block=block, halo=halo)
        print(f"{name}: {raw.shape} affinities predicted", flush=True)
    results = {}
    sampling = scoring.segmentation_options({}, s["data"]["voxel_size"])["sampling"]
    for method in args.methods:
        options = dict(METHODS[method])
        if options["method"] == "waterz":
            options["sampling"] = sampling  # as the workflow's scan
        per = {"options": options, "sweep": {}}
        for name in ("train", "test", "scan"):
            per["sweep"][name] = {
                str(t): v for t, v in sweep(affs[name], volumes[name][1], options).items()
            }
        train = per["sweep"]["train"]
        chosen = float(min(train, key=lambda t: train[t]["arand"]))
        per["threshold"] = chosen
        per["volumes"] = {}
        opts = dict(options)
        for name in ("train", "test", "scan", "large"):
            t0 = time.perf_counter()
            _, seg = S.fragments_and_segmentation(affs[name], threshold=chosen, **opts)
            seconds = time.perf_counter() - t0
            row = scores(seg, volumes[name][1]) | {
                "seconds": seconds,
                "voxels": int(seg.size),
                "voxels_per_s": seg.size / seconds,
            }
            per["volumes"][name] = row
            print(
                f"{method:18s} t={chosen:.2f} {name:5s} ARAND {row['arand']:.3f} VOI "
                f"{row['voi_split']:.2f}/{row['voi_merge']:.2f} BF1 {row['boundary_f1']:.3f} "
                f"{seconds:6.2f} s ({row['voxels_per_s']:,.0f} voxels/s)",
                flush=True,
            )
        results[method] = per
    out = {
        "machine": info | {"load_average_end": list(os.getloadavg())},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "shapes": {k: list(v[0].shape) for k, v in volumes.items()},
        "thresholds": THRESHOLDS,
        "methods": results,
    }
    write_text(args.out, json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
