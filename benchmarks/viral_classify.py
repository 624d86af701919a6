"""Viral classification throughput: bp per second and Gbp per hour, fp32 vs compressed, on >= 10 Mbp.

End to end through ``quantscan.apps.viral.classify.classify_fasta`` (FASTA parsing, validation,
one-hot windows, inference, window combination, open-set decision, TSV writing) on the same FASTA
with the same thread count for every engine:

* ``torch_fp32``: the fp32 PyTorch model (the workflow's fp32 model file, or a seeded random
  ViralCNN of the default config's architecture, ``--arch table3`` for Fernandes & Kung's: speed does not
  depend on the weights);
* ``torch_packed8``: the same weights quantized to 8 bits per layer (QKeras quantized_bits) and
  saved as a bit-packed file, run by the fake-quantized torch model (smaller file, same speed);
* ``ort_fp32`` and ``ort_int8``: ONNX Runtime, fp32 and static int8 (QDQ, per-channel weights,
  calibrated on simulated records) through ``quantscan.export.onnx``;
* ``--packed PATH`` adds a compressed model file from the workflow (a pruned 8-bit model, an int8
  ``model.onnx``), as ``file_<its folder>`` (the method's name).

The input is ``--mbp`` million bases (default 10) of contig-like records (``--record-length``,
default 5,000 bp) cut from simulated genomes of Fernandes & Kung's four classes, or ``--fasta PATH``.
Records longer than the model input are classified in windows every ``--stride`` bases (default
N/2, the workflow's default; N for no overlap, half the windows). Engines run in turn in every
repeat (interleaved, so load from other processes hits them alike); the median is reported with
the machine and the load average before and after. Writes results/benchmarks/viral_classify.json.

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
import yaml  # noqa: E402

from quantscan import modelio  # noqa: E402
from quantscan.apps.viral import classify, onehot, openset, simulate  # noqa: E402
from quantscan.atomic import write_text  # noqa: E402
from quantscan.compress.layers import quantize_model  # noqa: E402
from quantscan.export import onnx as int8  # noqa: E402
from quantscan.export.packed import save_packed  # noqa: E402
from quantscan.models import ViralCNN, build_model  # noqa: E402

Q8 = "quantized_bits(8, 0, 1, alpha='auto')"


def class_specs(length: int) -> list:
    """Fernandes & Kung's four classes with lengths scaled to the model input (as the default config)."""
    scale = length / 3500
    return [
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


def records_fasta(path: Path, length: int, n_per_class: int, seed: int) -> list:
    """Simulated records of Fernandes & Kung's four classes, lengths scaled to the model input."""
    recs = simulate.simulate_dataset(class_specs(length), n_per_class, seed)
    simulate.write_dataset(recs, path)
    return recs


def contigs_fasta(path: Path, mbp: float, record_length: int, seed: int) -> int:
    """``mbp`` million bases of ``record_length``-bp records: random stretches of simulated
    genomes of the four classes (one 40 kb genome per class and lineage), written in one pass."""
    rng = np.random.default_rng(seed)
    genomes = []
    for c in simulate.DEFAULT_CLASSES:
        spec = simulate.ClassSpec(
            c.name, 40_000, 40_000, c.gc, c.diversity, 1, signature=c.signature
        )
        genomes += [r.sequence for r in simulate.simulate_class(spec, 2, seed)]
    total, i = 0, 0
    with open(path, "w") as fh:
        while total < mbp * 1e6:
            g = genomes[int(rng.integers(len(genomes)))]
            at = int(rng.integers(0, len(g) - record_length))
            fh.write(f">contig{i}\n{g[at : at + record_length]}\n")
            total += record_length
            i += 1
    return total


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="fp32 model file (default: a random ViralCNN)")
    ap.add_argument("--length", type=int, default=500, help="input N without --model")
    ap.add_argument(
        "--arch",
        choices=("default", "table3"),
        default="default",
        help="random model's architecture without --model: config/config.yaml's apps.viral.model or "
        "Fernandes & Kung's Table III",
    )
    ap.add_argument("--packed", type=Path, action="append", default=[], help="extra model files")
    ap.add_argument("--mbp", type=float, default=10.0, help="million bases to classify")
    ap.add_argument("--record-length", type=int, default=5000, help="bases per record")
    ap.add_argument("--fasta", type=Path, help="time this FASTA instead of simulated records")
    ap.add_argument("--stride", type=int, help="window stride (default N/2)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=256, help="windows per inference call")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--engines", nargs="*", help="only these engines (default: all)")
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
            arch = {"name": "viralcnn", "n_classes": 5, "length": args.length}
            if args.arch == "default":
                cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
                arch |= {k: v for k, v in cfg["apps"]["viral"]["model"].items() if k != "dropout"}
            model = build_model(arch).eval()
            fp32_path = tmp / "model.pt"
            modelio.save_fp32(model, arch, fp32_path)
        length = int(arch["length"])
        n_out = int(arch["n_classes"])
        names = [c.name for c in simulate.DEFAULT_CLASSES][: min(4, n_out)]
        names += [f"class{i}" for i in range(len(names), n_out)]
        if n_out == 5:
            names[-1] = "background"
        fasta = args.fasta or tmp / "records.fasta"
        if not args.fasta:
            contigs_fasta(fasta, args.mbp, args.record_length, args.seed)
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
        for p in args.packed:  # workflow files are all model.*: name them by their method
            files[f"file_{p.parent.name if p.stem == 'model' else p.stem}"] = p
        if args.engines:
            files = {k: v for k, v in files.items() if k in args.engines or k == "torch_fp32"}
        engines = {
            k: classify.load_engine(p, threads=args.threads, batch_size=args.batch)
            for k, p in files.items()
        }
        rule = openset.OpenSetRule(
            4 if n_out == 5 else n_out, background=n_out == 5, min_length=100
        )
        options = classify.ClassifyOptions(
            stride=args.stride, batch_windows=args.batch, openset=rule
        )
        times = {k: [] for k in engines}
        summaries, outputs = {}, {}
        cols = classify.columns(names)
        prob_cols = [cols.index(f"p_{c}") for c in names]
        warm = tmp / "warm.fasta"  # a short warm-up per engine
        with open(fasta) as fh, open(warm, "w") as out:
            out.writelines(line for _, line in zip(range(40), fh, strict=False))
        for k, engine in engines.items():
            classify.classify_fasta(warm, tmp / f"{k}.tsv", engine, names, options)
        for _ in range(args.repeats):
            for k, engine in engines.items():
                summaries[k] = classify.classify_fasta(
                    fasta, tmp / f"{k}.tsv", engine, names, options
                )
                times[k].append(summaries[k].seconds)
                print(f"  {k}: {summaries[k].seconds:.1f} s", flush=True)
        for k in engines:
            outputs[k] = np.loadtxt(tmp / f"{k}.tsv", delimiter="\t", skiprows=1, usecols=prob_cols)

        bases = summaries["torch_fp32"].bases
        n_seq = summaries["torch_fp32"].scored
        ref = outputs["torch_fp32"]
        results = {}
        for k in engines:
            med = statistics.median(times[k])
            results[k] = {
                "engine": engines[k].kind,
                "file_bytes": Path(files[k]).stat().st_size,
                "seconds_median": med,
                "seconds_all": times[k],
                "bp_per_second": bases / med,
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
            "model": str(args.model) if args.model else f"random ViralCNN (seeded), {arch}",
            "fasta": str(args.fasta) if args.fasta else "simulated contigs",
            "records": n_seq,
            "bases": bases,
            "mean_record_length": bases / n_seq,
            "windows": summaries["torch_fp32"].windows,
            "stride": args.stride or length // 2,
            "threads": args.threads,
            "batch_windows": args.batch,
            "repeats": args.repeats,
            "int8": "static QDQ, per-channel int8 weights, uint8 activations, MinMax calibration "
            "on 32 simulated records",
            "open_set": "background output (5-output models) and min_length 100; no threshold",
            "timed": "classify_fasta end to end (parse, validate, one-hot, infer, combine, write)",
        },
        "results": results,
    }
    write_text(args.out, json.dumps(report, indent=2) + "\n")
    for k, r in results.items():
        print(
            f"{k:>16}: {r['bp_per_second'] / 1e6:7.3f} Mbp/s  {r['gbp_per_hour']:7.3f} Gbp/h  "
            f"x{r['speedup_vs_torch_fp32']:.2f}  {r['file_bytes'] / 1e6:6.2f} MB  "
            f"same class {r['same_class_as_fp32']:.3f}"
        )
    print(f"written to {args.out}")
    return report


if __name__ == "__main__":
    main()
