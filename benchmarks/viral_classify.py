"""Viral classification throughput: sequences per second and Gbp per hour, fp32 vs compressed.

End to end through ``quantscan.viral.classify.classify_fasta`` (FASTA parsing, validation,
one-hot windows, inference, window combination, TSV writing) on simulated records of seed 004's
length ranges, with the same FASTA and thread count for every engine:

* ``torch_fp32``: the fp32 PyTorch model (the workflow's fp32 model file, or a seeded random
  ViralCNN: speed does not depend on the weights);
* ``torch_packed8``: the same weights quantized to 8 bits per layer (QKeras quantized_bits) and
  saved as a bit-packed file, run by the fake-quantized torch model (smaller file, same speed);
* ``ort_fp32`` and ``ort_int8``: ONNX Runtime, fp32 and static int8 (QDQ, per-channel weights,
  calibrated on training-like records) through ``quantscan.compress.int8``;
* ``--packed PATH`` adds a compressed model file from the workflow (e.g. a pruned 8-bit model).

``--fasta PATH`` times that file instead of the simulated records (e.g. a data set's
``results/viral/data/<data set>/test.fasta``, so that the agreement with fp32 is measured on records
like the model's own; the simulated ones come from other class ancestors).

Engines are timed in turn in every repeat (interleaved, so load from other processes hits them
alike) after one warm-up pass; the median is reported with the machine description and the load
average before and after. Writes results/benchmarks/viral_classify.json.

    .venv/bin/python benchmarks/viral_classify.py [--model results/viral/models/simulated/fp32/model.pt]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

import machine  # noqa: E402  # benchmarks/machine.py: a script's folder is on sys.path
import numpy as np  # noqa: E402
import torch  # noqa: E402

from quantscan import modelio  # noqa: E402
from quantscan.atomic import write_text  # noqa: E402
from quantscan.compress import int8  # noqa: E402
from quantscan.compress.layers import quantize_model  # noqa: E402
from quantscan.compress.pack import save_packed  # noqa: E402
from quantscan.models import ViralCNN, build_model  # noqa: E402
from quantscan.viral import classify, onehot, simulate  # noqa: E402

Q8 = "quantized_bits(8, 0, 1, alpha='auto')"


def records_fasta(path: Path, length: int, n_per_class: int, seed: int) -> list:
    """Simulated records of seed 004's four classes, lengths scaled to the model input."""
    scale = length / 3500
    classes = [
        simulate.ClassSpec(
            c.name,
            max(1, round(c.min_length * scale)),
            max(1, round(c.max_length * scale)),
            c.gc,
            c.diversity,
            c.n_lineages,
        )
        for c in simulate.DEFAULT_CLASSES
    ]
    recs = simulate.simulate_dataset(classes, n_per_class, seed)
    simulate.write_dataset(recs, path)
    return recs


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="fp32 model file (default: a random ViralCNN)")
    ap.add_argument("--length", type=int, default=3500, help="input N without --model")
    ap.add_argument("--packed", type=Path, action="append", default=[], help="extra model files")
    ap.add_argument("--records", type=int, default=16, help="records per class (4 classes)")
    ap.add_argument("--fasta", type=Path, help="time this FASTA instead of simulated records")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64, help="windows per inference call")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=20261123)
    ap.add_argument("--out", type=Path, default=ROOT / "results/benchmarks/viral_classify.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()

    with tempfile.TemporaryDirectory(prefix="quantscan-bench-") as tmp:
        tmp = Path(tmp)
        if args.model:
            model, arch = modelio.load_fp32(args.model)
            fp32_path = args.model
        else:
            torch.manual_seed(args.seed)
            arch = {"name": "viralcnn", "n_classes": 4, "length": args.length}
            model = build_model(arch).eval()
            fp32_path = tmp / "model.pt"
            modelio.save_fp32(model, arch, fp32_path)
        length = int(arch["length"])
        names = [c.name for c in simulate.DEFAULT_CLASSES][: int(arch["n_classes"])]
        fasta = args.fasta or tmp / "records.fasta"
        if not args.fasta:
            records_fasta(fasta, length, args.records, args.seed)
        calib = onehot.encode(
            records_fasta(tmp / "calib.fasta", length, 8, args.seed + 1), length
        ).astype(np.float32)

        packed8 = tmp / "model_q8.qspk"
        qmodel = quantize_model(model, {name: Q8 for name, _ in ViralCNN.LAYERS})
        save_packed(qmodel, packed8, arch, {"note": "8-bit weights, benchmark"})
        paths = int8.build_int8(model, calib, tmp / "model.onnx", tmp / "model_int8.onnx")
        files = {
            "torch_fp32": fp32_path,
            "torch_packed8": packed8,
            "ort_fp32": paths["fp32"],
            "ort_int8": paths["int8"],
        }
        for p in args.packed:
            files[f"file_{p.stem}"] = p
        engines = {
            k: classify.load_engine(p, threads=args.threads, batch_size=args.batch)
            for k, p in files.items()
        }
        options = classify.ClassifyOptions(batch_windows=args.batch)
        times = {k: [] for k in engines}
        summaries, outputs = {}, {}
        for k, engine in engines.items():  # warm-up, and the predictions to compare
            summaries[k] = classify.classify_fasta(fasta, tmp / f"{k}.tsv", engine, names, options)
            outputs[k] = np.loadtxt(
                tmp / f"{k}.tsv", delimiter="\t", skiprows=1, usecols=range(4, 4 + len(names))
            )
        for _ in range(args.repeats):
            for k, engine in engines.items():
                t0 = time.perf_counter()
                classify.classify_fasta(fasta, tmp / f"{k}.tsv", engine, names, options)
                times[k].append(time.perf_counter() - t0)

        bases = summaries["torch_fp32"].bases
        n_seq = summaries["torch_fp32"].classified
        ref = outputs["torch_fp32"]
        results = {}
        for k in engines:
            med = statistics.median(times[k])
            results[k] = {
                "engine": engines[k].kind,
                "file_bytes": Path(files[k]).stat().st_size,
                "seconds_median": med,
                "seconds_all": times[k],
                "sequences_per_second": n_seq / med,
                "gbp_per_hour": bases / 1e9 / (med / 3600),
                "speedup_vs_torch_fp32": statistics.median(times["torch_fp32"]) / med,
                "same_class_as_fp32": float((outputs[k].argmax(1) == ref.argmax(1)).mean()),
                "max_abs_probability_diff": float(np.abs(outputs[k] - ref).max()),
            }
    report = {
        "benchmark": "viral_classify",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine.describe(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "settings": {
            "input_length": length,
            "model": str(args.model) if args.model else "random ViralCNN (seeded)",
            "fasta": str(args.fasta) if args.fasta else "simulated",
            "records": n_seq,
            "bases": bases,
            "mean_record_length": bases / n_seq,
            "windows": summaries["torch_fp32"].windows,
            "threads": args.threads,
            "batch_windows": args.batch,
            "repeats": args.repeats,
            "int8": "static QDQ, per-channel int8 weights, uint8 activations, MinMax calibration "
            "on 32 simulated records",
            "timed": "classify_fasta end to end (parse, validate, one-hot, infer, combine, write)",
        },
        "results": results,
    }
    write_text(args.out, json.dumps(report, indent=2) + "\n")
    for k, r in results.items():
        print(
            f"{k:>16}: {r['sequences_per_second']:8.1f} seq/s  {r['gbp_per_hour']:7.3f} Gbp/h  "
            f"x{r['speedup_vs_torch_fp32']:.2f}  {r['file_bytes'] / 1e6:6.2f} MB  "
            f"same class {r['same_class_as_fp32']:.3f}"
        )
    print(f"written to {args.out}")
    return report


if __name__ == "__main__":
    main()
