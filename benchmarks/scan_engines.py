"""Benchmark: sweep-scan inference engines and the end-to-end scan of a simulated chromosome.

One run, one input: a simulated chromosome (``sweeps.chromosome``; default 50 x 100 kb = 5 Mb,
128 haplotypes) scanned at ``--grid`` points with ``--width``-SNP windows. Writes JSON with:

* ``engines``: windows/s and seconds for all grid windows, per engine, on the same encoded windows.
  Engines run in interleaved rounds (one batch each per round) until each has used ``--budget``
  seconds or seen every window, so load from other processes hits them alike. An engine that
  did not see every window has ``extrapolated: true`` and ``seconds`` = windows / (windows/s).
* ``agreement``: max |P(sweep) difference| on the windows every engine saw.
* ``end_to_end``: read the .trees file + grid + encode + infer (``--e2e-engine``) + p-values +
  peaks + TSV/bedGraph/BED/PNG, wall and CPU seconds per stage.
* ``profile``: the top functions of a cProfile of the scan loop (what dominates).
* ``machine``: CPU model, cores, load averages before/after (a shared machine is slower and noisier).

The model has random weights unless ``--model`` names a trained fp32 SweepNet: speed does not
depend on training, except that the lookup engine's dense stage runs once per distinct SE scale
vector (one for a random model, a few for a trained 1-bit SE). See ``--help``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402

from quantscan.atomic import write_text  # noqa: E402
from quantscan.compress.cost import SEED000_TABLE6  # noqa: E402
from quantscan.compress.int8 import build_int8, cpu_has_vnni  # noqa: E402
from quantscan.compress.layers import quantize_model  # noqa: E402
from quantscan.compress.pack import save_packed  # noqa: E402
from quantscan.modelio import load_fp32, save_fp32  # noqa: E402
from quantscan.models import build_model  # noqa: E402
from quantscan.runtime import make_engine  # noqa: E402
from quantscan.sweeps import scan  # noqa: E402
from quantscan.sweeps.chromosome import (  # noqa: E402
    ChromosomeSpec,
    simulate_chromosome,
    write_trees,
)
from quantscan.sweeps.io import read_trees  # noqa: E402

SWEEPS_GLOBALS = {  # the full-scale SweepNet setting: theta = rho = 2000 per 100 kb
    "population_size": 10000,
    "mutation_rate": 5e-7,
    "recombination_rate": 5e-7,
    "selection_coefficient": 0.05,
    "sweep_end_time": 0,
}


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "vnni": cpu_has_vnni(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "load_average_start": list(os.getloadavg()),
    }


def timed(fn, *args, **kwargs):
    w, c = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - w, time.process_time() - c


def build_models(work: Path, calib: np.ndarray, seed: int, trained: str | None) -> dict:
    """fp32, packed (Table 6), ONNX fp32 and int8 files of a random or a trained SweepNet."""
    if trained:
        model, arch = load_fp32(trained)
    else:
        torch.manual_seed(seed)
        arch = {"name": "sweepnet", "n_classes": 2, "filters": 32, "se_ratio": 16}
        model = build_model(arch).eval()
    paths = {"fp32": work / "model.pt", "packed": work / "model.qspk"}
    save_fp32(model, arch, paths["fp32"])
    save_packed(quantize_model(model, SEED000_TABLE6), paths["packed"], arch)
    onnx = build_int8(
        model, calib.astype(np.float32), work / "model.onnx", work / "model.int8.onnx"
    )
    paths["onnx_fp32"], paths["onnx_int8"] = onnx["fp32"], onnx["int8"]
    return paths


ENGINES = [  # (engine name, kind, model file key)
    ("torch_fp32_per_window", "torch_fp32_per_window", "fp32"),
    ("torch_fp32_batched", "torch_fp32", "fp32"),
    ("onnx_fp32", "onnx_fp32", "onnx_fp32"),
    ("onnx_int8", "onnx_int8", "onnx_int8"),
    ("packed_torch_dequantized", "packed_torch", "packed"),
    ("lut_fp32", "lut_fp32", "fp32"),
    ("packed", "packed", "packed"),
]


def compare_engines(x, paths, threads, batch, budget, per_window_batch=8) -> tuple[dict, dict]:
    engines = {
        name: make_engine(kind, paths[key], batch_size=batch, threads=threads)
        for name, kind, key in ENGINES
    }
    for e in engines.values():  # warm up (ORT session, lookup tables, torch kernels)
        e.predict_proba(x[:2])
    n = len(x)
    state = {name: {"done": 0, "wall": 0.0, "cpu": 0.0, "proba": []} for name in engines}
    while True:
        active = [k for k, s in state.items() if s["done"] < n and s["wall"] < budget]
        if not active:
            break
        for name in active:
            s = state[name]
            step = per_window_batch if engines[name].batch_size == 1 else batch
            xb = x[s["done"] : s["done"] + step]
            p, wall, cpu = timed(engines[name].predict_proba, xb)
            s["wall"] += wall
            s["cpu"] += cpu
            s["done"] += len(xb)
            s["proba"].append(p[:, 1])
    results = {}
    for name, s in state.items():
        wps = s["done"] / s["wall"]
        results[name] = {
            "windows_per_s": wps,
            "seconds": n / wps,
            "measured_windows": s["done"],
            "measured_seconds": s["wall"],
            "cpu_seconds_per_window": s["cpu"] / s["done"],
            "extrapolated": s["done"] < n,
            **{k: v for k, v in engines[name].describe().items() if k != "name"},
        }
    common = min(s["done"] for s in state.values())
    probs = {k: np.concatenate(s["proba"])[:common] for k, s in state.items()}
    ref = probs["torch_fp32_batched"]
    agreement = {
        "windows": common,
        "max_abs_diff_vs_torch_fp32": {k: float(np.abs(v - ref).max()) for k, v in probs.items()},
        "packed_vs_packed_torch": float(
            np.abs(probs["packed"] - probs["packed_torch_dequantized"]).max()
        ),
    }
    return results, agreement


def end_to_end(trees: Path, engine, args, out_dir: Path, truth) -> dict:
    stages = {}
    (hd,), w, c = timed(read_trees, trees)
    stages["read"] = {"wall": w, "cpu": c}
    timings: dict = {}
    table, w, c = timed(
        scan.scan_chromosome, hd, engine, width=args.width, n_points=args.grid, timings=timings
    )
    stages["scan"] = {"wall": w, "cpu": c, **timings}
    t0, c0 = time.perf_counter(), time.process_time()
    null = table["p_sweep"].to_numpy()  # stand-in null: the benchmark has no neutral scans
    table = scan.add_pvalues(table, null)
    peaks = scan.call_peaks(table, 0.9)
    prefix = out_dir / hd.chrom
    scan.write_scores_tsv(table, f"{prefix}.scores.tsv")
    scan.write_bedgraph(table, f"{prefix}.scores.bedgraph")
    scan.write_peaks_bed(peaks, f"{prefix}.peaks.bed")
    sweeps = truth.loc[truth["class"] == "sweep", "sweep_position"].tolist()
    hot = truth.dropna(subset=["hotspot_start"])
    hotspots = list(zip(hot["hotspot_start"], hot["hotspot_end"], strict=True))
    scan.plot_scan(
        table, f"{prefix}.png", truth=sweeps, peaks=peaks, threshold=0.9, hotspots=hotspots
    )
    stages["write"] = {"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0}
    total = sum(s["wall"] for s in stages.values())
    return {
        "engine": engine.name,
        "threads": engine.threads,
        "n_sites": hd.n_sites,
        "n_haplotypes": hd.n_haplotypes,
        "grid_points": args.grid,
        "width": args.width,
        "seconds": total,
        "cpu_seconds": sum(s["cpu"] for s in stages.values()),
        "stages": stages,
        "peaks": len(peaks),
    }


def profile_scan(hd, engine, args, n_points: int) -> dict:
    """Where a scan's time goes: scan stages, lookup-engine stages, and a cProfile of encoding."""
    timings: dict = {}
    if hasattr(engine, "profile"):
        engine.profile, engine.stage_seconds = True, {}
    t0 = time.perf_counter()
    scan.scan_chromosome(hd, engine, width=args.width, n_points=n_points, timings=timings)
    wall = time.perf_counter() - t0
    stages = dict(getattr(engine, "stage_seconds", {}))
    if hasattr(engine, "profile"):
        engine.profile = False
    grid = scan.make_grid(*scan.grid_span(hd), n_points)
    starts, stops = scan.window_bounds(hd.positions, grid, args.width)
    prof = cProfile.Profile()
    prof.enable()
    scan.encode_windows(hd.haplotypes, starts, stops, args.width)
    prof.disable()
    stats = pstats.Stats(prof, stream=io.StringIO())
    rows = []
    for (file, line, func), (_, ncalls, tottime, cumtime, _) in stats.stats.items():
        name = f"{Path(file).name}:{line}({func})"
        rows.append({"function": name, "calls": ncalls, "tottime": tottime, "cumtime": cumtime})
    rows.sort(key=lambda r: -r["tottime"])
    return {
        "grid_points": n_points,
        "wall_seconds": wall,
        "scan_stages_seconds": timings,
        "engine_stages_seconds_summed_over_threads": stages,
        "encode_cprofile_top": rows[:6],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", default=str(ROOT / "results/benchmarks/scan_engines.json"))
    ap.add_argument("--segments", type=int, default=50)
    ap.add_argument("--segment-length", type=float, default=100_000)
    ap.add_argument("--haplotypes", type=int, default=128)
    ap.add_argument("--grid", type=int, default=10_000)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--budget", type=float, default=30.0, help="seconds of measurement per engine")
    ap.add_argument("--e2e-engine", default="packed")
    ap.add_argument("--seed", type=int, default=20261123)
    ap.add_argument("--model", default=None, help="a trained fp32 SweepNet (.pt); default random")
    ap.add_argument("--work-dir", default=None)
    ap.add_argument(
        "--small", action="store_true", help="5 segments, 1,000 grid points, 5 s budget"
    )
    args = ap.parse_args(argv)
    if args.small:
        args.segments, args.grid, args.budget = 5, 1000, 5.0
    info = machine()
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="quantscan-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    log = lambda msg: print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)  # noqa: E731

    spec = ChromosomeSpec(
        name="chrBench",
        n_segments=args.segments,
        segment_length=args.segment_length,
        sweep_segments=tuple(range(2, args.segments, 8)),
        hotspot_segments=(args.segments // 2,),
    )
    params = spec.params({**SWEEPS_GLOBALS, "haplotypes": args.haplotypes, "scenarios": {}})
    (ts, truth), sim_wall, _ = timed(simulate_chromosome, spec, params, args.seed)
    trees = work / f"{spec.name}.trees"
    write_trees(ts, trees)
    log(f"simulated {spec.length / 1e6:g} Mb, {ts.num_sites} sites in {sim_wall:.1f} s -> {trees}")

    (hd,) = read_trees(trees)
    grid = scan.make_grid(*scan.grid_span(hd), args.grid)
    starts, stops = scan.window_bounds(hd.positions, grid, args.width)
    x, enc_wall, enc_cpu = timed(scan.encode_windows, hd.haplotypes, starts, stops, args.width)
    log(f"encoded {len(x)} windows in {enc_wall:.1f} s")
    rng = np.random.default_rng(args.seed)
    paths = build_models(work, x[rng.choice(len(x), 256)], args.seed, args.model)

    log("comparing engines")
    engines, agreement = compare_engines(x, paths, args.threads, args.batch, args.budget)
    for k, v in engines.items():
        log(f"  {k:26s} {v['windows_per_s']:9.1f} windows/s  ({v['measured_windows']} measured)")

    kind, key = {name: (kind, key) for name, kind, key in ENGINES}[args.e2e_engine]
    e2e_engine = make_engine(kind, paths[key], batch_size=args.batch, threads=args.threads)
    log(f"end to end with {args.e2e_engine}")
    e2e = end_to_end(trees, e2e_engine, args, work, truth)
    log(f"  {e2e['seconds']:.1f} s")
    profile = profile_scan(hd, e2e_engine, args, min(args.grid, 1000))

    base = engines["torch_fp32_per_window"]["windows_per_s"]
    onnx = engines["onnx_fp32"]["windows_per_s"]
    compressed = {k: engines[k]["windows_per_s"] for k in ("onnx_int8", "packed")}
    best = max(compressed, key=compressed.get)
    info["load_average_end"] = list(os.getloadavg())
    result = {
        "name": "scan_engines",
        "machine": info,
        "input": {
            "chromosome_length": spec.length,
            "segments": spec.n_segments,
            "haplotypes": args.haplotypes,
            "sites": int(ts.num_sites),
            "grid_points": args.grid,
            "window_snps": args.width,
            "simulation_seconds": sim_wall,
            "encode_all_windows_seconds": enc_wall,
            "encode_windows_per_s": len(x) / enc_wall,
            "model": args.model or "SweepNet (9,700 params) with random weights",
            "packed": "seed 000 Table 6 layer config (compress.cost.SEED000_TABLE6)",
        },
        "engines": engines,
        "agreement": agreement,
        "targets": {
            "best_compressed_engine": best,
            "speedup_vs_per_window_fp32": compressed[best] / base,
            "speedup_vs_batched_onnx_fp32": compressed[best] / onnx,
            "target_speedup_vs_per_window": 100,
            "target_speedup_vs_onnx_fp32": 2,
            "end_to_end_seconds": e2e["seconds"],
            "target_end_to_end_seconds": 60,
        },
        "end_to_end": e2e,
        "profile": profile,
        "notes": [
            "threads = intra-op threads per engine (torch, ONNX Runtime) or worker threads (lookup)",
            "per-window engine: measured on a prefix of the windows and extrapolated",
            "engines without extrapolated=false saw fewer windows than the grid (budget)",
        ],
    }
    write_text(args.out, json.dumps(result, indent=2) + "\n")
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
