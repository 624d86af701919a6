"""Benchmark: sweep-scan inference engines and the end-to-end scan of a simulated chromosome.

One run, one input: a simulated chromosome (``sweeps.chromosome``; default 50 x 100 kb = 5 Mb,
128 haplotypes) scanned at ``--grid`` points with ``--width``-SNP windows. The simulation is cached
(``--cache-dir``, keyed by its parameters) so repeated runs skip it. Writes JSON with:

* ``fp32_flop_bound``: the model's FLOPs per window and the fp32 GEMM rate this machine attains with
  ``--threads`` threads; their ratio is the windows/s no fp32 engine can exceed. Every engine's
  entry gives its ratio to that bound and to ONNX Runtime fp32 in the same run.
* ``engines``: windows/s and seconds for all grid windows, per engine, on the same encoded windows.
  Every engine is handed ``--batch`` windows a round; the ONNX Runtime engines run them in calls of
  ``--onnx-batch`` (default 64: a 128 x 128 batch of 256 does not stay in cache, and ORT fp32 and
  int8 were up to ~2x slower at 256 than at 64 on the 2-core Xeon).
  Engines run in interleaved rounds (one batch each per round) until each has used ``--budget``
  seconds or seen every window, so load from other processes hits them alike. An engine that
  did not see every window has ``extrapolated: true`` and ``seconds`` = windows / (windows/s).
* ``agreement``: max |P(sweep) difference| on the windows every engine saw.
* ``reference``: the per-window baseline with one thread (on a loaded 2-core machine two
  OpenMP threads per window are several times slower than one; both are reported).
* ``end_to_end``: load the model and build the engine (lookup tables, compiled kernels) + read the
  .trees file + grid + encode + infer (``--e2e-engine``) + p-values + peaks + TSV/bedGraph/BED/PNG,
  wall and CPU seconds per stage.
* ``profile``: engine stage seconds and the top functions of a cProfile of the encoding.
* ``machine``: CPU model, cores, load averages before/after and sampled during the run (a shared
  machine is slower and noisier).

``--e2e-only`` skips the engine comparison (a quick check of the end-to-end target).

The model has random weights unless ``--model`` names a trained fp32 SweepNet: speed does not
depend on training, except that the lookup engine's dense stage runs once per distinct SE scale
vector (one for a random model, a few for a trained 1-bit SE). See ``--help``.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import json
import os
import pstats
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

import machine  # noqa: E402  # benchmarks/machine.py: a script's folder is on sys.path
import torch  # noqa: E402

from quantscan.apps.sweeps import scan  # noqa: E402
from quantscan.apps.sweeps.chromosome import (  # noqa: E402
    ChromosomeSpec,
    simulate_chromosome,
    write_trees,
)
from quantscan.apps.sweeps.compress_presets import SEED000_TABLE6  # noqa: E402
from quantscan.apps.sweeps.io import read_trees  # noqa: E402
from quantscan.atomic import write_text  # noqa: E402
from quantscan.compress.layers import quantize_model  # noqa: E402
from quantscan.export.onnx import build_int8  # noqa: E402
from quantscan.export.packed import save_packed  # noqa: E402
from quantscan.modelio import load_fp32, save_fp32  # noqa: E402
from quantscan.models import build_model  # noqa: E402
from quantscan.runtime import make_engine, numba_available  # noqa: E402

SWEEPS_GLOBALS = {  # the full-scale SweepNet setting: theta = rho = 2000 per 100 kb
    "population_size": 10000,
    "mutation_rate": 5e-7,
    "recombination_rate": 5e-7,
    "selection_coefficient": 0.05,
    "sweep_end_time": 0,
}


class LoadSampler:
    """Samples the 1-minute load average every ``period`` seconds in a daemon thread."""

    def __init__(self, period: float = 5.0):
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(period,), daemon=True)

    def _run(self, period: float) -> None:
        while not self._stop.is_set():
            self.samples.append(os.getloadavg()[0])
            self._stop.wait(period)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict:
        x = self.samples or [os.getloadavg()[0]]
        return {"min": min(x), "mean": sum(x) / len(x), "max": max(x), "samples": len(x)}


def flop_bound(fp32_path: Path, window: np.ndarray, threads: int) -> dict:
    """The fp32 FLOP bound of this machine for the model: its FLOPs per window (``window``: one
    encoded window) against the fp32 GEMM rate attained with ``threads`` threads; an fp32 engine
    cannot beat it, a low-bit or dense-over-overlap engine can (it does less or cheaper work)."""
    model, _ = load_fp32(fp32_path)
    flops = machine.model_flops(model, torch.from_numpy(np.ascontiguousarray(window, np.float32)))
    gemm = machine.fp32_gemm_flops(threads)
    return {
        "mflop_per_window": flops / 1e6,
        "gemm_gflops": gemm["flops_per_s"] / 1e9,
        "gemm": gemm,
        "windows_per_s": gemm["flops_per_s"] / flops,
        "note": "FLOPs of convolutions and matrix products (torch FlopCounterMode); GEMM rate "
        "of square fp32 products, the faster of torch.mm and oneDNN linear, best of repeated runs",
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
# the lookup engine without compiled kernels, when numba makes "packed" use them
NUMPY_PACKED = ("packed_numpy_kernels", "packed", "packed")


def engine_list() -> list[tuple[str, str, str]]:
    return ENGINES + ([NUMPY_PACKED] if numba_available() else [])


def build_engine(name, kind, path, batch, threads, onnx_batch=None):
    kernels = "numpy" if name == NUMPY_PACKED[0] else "auto"
    if kind.startswith("onnx") and onnx_batch:
        batch = onnx_batch
    return make_engine(kind, path, batch_size=batch, threads=threads, kernels=kernels, name=name)


def compare_engines(
    x, paths, threads, batch, budget, per_window_batch=8, onnx_batch=None
) -> tuple[dict, dict]:
    engines = {
        name: build_engine(name, kind, paths[key], batch, threads, onnx_batch)
        for name, kind, key in engine_list()
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
            step = per_window_batch if engines[name].batch_size == 1 else batch  # ONNX: split
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


def per_window_one_thread(x, path, budget: float) -> dict:
    """The per-window baseline with one intra-op thread, on a prefix of the windows."""
    engine = make_engine("torch_fp32_per_window", path, threads=1)
    engine.predict_proba(x[:2])
    done, wall = 0, 0.0
    while wall < budget and done < len(x):
        _, w, _ = timed(engine.predict_proba, x[done : done + 8])
        wall += w
        done += len(x[done : done + 8])
    return {"windows_per_s": done / wall, "measured_windows": done, "threads": 1}


def end_to_end(trees: Path, kind: str, model_path: Path, args, out_dir: Path, truth) -> dict:
    """Model file to tracks: engine build, read, scan, p-values, peaks, writers (seconds)."""
    stages = {}
    engine, w, c = timed(make_engine, kind, model_path, batch_size=args.batch, threads=args.threads)
    _, w2, c2 = timed(engine.predict_proba, np.zeros((1, 1, args.haplotypes, args.width), np.uint8))
    stages["engine"] = {"wall": w + w2, "cpu": c + c2, **engine.describe()}
    (hd,), w, c = timed(read_trees, trees)
    stages["read"] = {"wall": w, "cpu": c}
    timings: dict = {}
    table, w, c = timed(
        scan.scan_chromosome, hd, engine, width=args.width, n_points=args.grid, timings=timings
    )
    stages["scan"] = {"wall": w, "cpu": c, **timings}
    t0, c0 = time.perf_counter(), time.process_time()
    table = scan.add_score(table, "log_odds_smoothed", 1000.0)
    null = table["score"].to_numpy()  # stand-in null: the benchmark has no neutral scans
    table = scan.add_pvalues(table, null[np.isfinite(null)])
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
        "kind": engine.kind,
        "threads": engine.threads,
        "n_sites": hd.n_sites,
        "n_haplotypes": hd.n_haplotypes,
        "grid_points": args.grid,
        "width": args.width,
        "seconds": total,
        "cpu_seconds": sum(s["cpu"] for s in stages.values()),
        "stages": stages,
        "peaks": len(peaks),
        "engine_object": engine,
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


def simulated_chromosome(args, work: Path, log) -> tuple:
    """The benchmark chromosome's .trees file and truth table, simulated once per parameters."""
    import pandas as pd

    spec = ChromosomeSpec(
        name="chrBench",
        n_segments=args.segments,
        segment_length=args.segment_length,
        sweep_segments=tuple(range(2, args.segments, 8)),
        hotspot_segments=(args.segments // 2,),
    )
    params = spec.params({**SWEEPS_GLOBALS, "haplotypes": args.haplotypes, "scenarios": {}})
    key = json.dumps([repr(spec), repr(params), args.seed], sort_keys=True)
    tag = hashlib.sha256(key.encode()).hexdigest()[:12]
    cache = Path(args.cache_dir) if args.cache_dir else work
    trees, truth_path = cache / f"{spec.name}-{tag}.trees", cache / f"{spec.name}-{tag}.truth.tsv"
    info = {"chromosome_length": spec.length, "segments": spec.n_segments, "cache": str(trees)}
    if trees.exists() and truth_path.exists():
        log(f"reusing the simulated chromosome {trees}")
        info["simulation_seconds"] = None
        return trees, pd.read_csv(truth_path, sep="\t"), info
    (ts, truth), sim_wall, _ = timed(simulate_chromosome, spec, params, args.seed)
    cache.mkdir(parents=True, exist_ok=True)
    write_trees(ts, trees)
    write_text(truth_path, truth.to_csv(sep="\t", index=False))
    info["simulation_seconds"] = sim_wall
    log(f"simulated {spec.length / 1e6:g} Mb, {ts.num_sites} sites in {sim_wall:.1f} s -> {trees}")
    return trees, truth, info


def add_window_args(ap: argparse.ArgumentParser) -> None:
    """The options of the benchmark's simulated chromosome and windows, shared by the engine
    harnesses (``engine_ab.py``, ``lut_stages.py``) so that they measure the same windows."""
    ap.add_argument("--segments", type=int, default=50)
    ap.add_argument("--segment-length", type=float, default=100_000)
    ap.add_argument("--haplotypes", type=int, default=128)
    ap.add_argument("--grid", type=int, default=10_000)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--seed", type=int, default=20261123)
    ap.add_argument(
        "--cache-dir",
        default=str(ROOT / "results/benchmarks/cache"),
        help="where the simulated chromosome is kept between runs ('' = the work dir only)",
    )


def windows_and_models(args, work: Path, log=print, limit: int | None = None) -> tuple:
    """The benchmark's encoded windows (the first ``limit`` grid points, or all) and its model
    files (``build_models``, random weights), from ``add_window_args``' options."""
    trees, _, _ = simulated_chromosome(args, work, log)
    (hd,) = read_trees(trees)
    grid = scan.make_grid(*scan.grid_span(hd), args.grid)[:limit]
    starts, stops = scan.window_bounds(hd.positions, grid, args.width)
    x = scan.encode_windows(hd.haplotypes, starts, stops, args.width)
    rng = np.random.default_rng(args.seed)
    return x, build_models(work, x[rng.choice(len(x), min(len(x), 256))], args.seed, None)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", default=str(ROOT / "results/benchmarks/scan_engines.json"))
    add_window_args(ap)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument(
        "--onnx-batch",
        type=int,
        default=64,
        help="inputs per ONNX Runtime call (0 = --batch); ORT is fastest at 16-128 here",
    )
    ap.add_argument("--budget", type=float, default=30.0, help="seconds of measurement per engine")
    ap.add_argument("--e2e-engine", default="packed")
    ap.add_argument("--e2e-only", action="store_true", help="skip the engine comparison")
    ap.add_argument("--model", default=None, help="a trained fp32 SweepNet (.pt); default random")
    ap.add_argument("--work-dir", default=None)
    ap.add_argument(
        "--small", action="store_true", help="5 segments, 1,000 grid points, 5 s budget"
    )
    args = ap.parse_args(argv)
    if args.small:
        args.segments, args.grid, args.budget = 5, 1000, 5.0
    info = machine.describe() | {"load_average_start": list(os.getloadavg())}
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="quantscan-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    log = lambda msg: print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)  # noqa: E731

    trees, truth, sim_info = simulated_chromosome(args, work, log)
    with LoadSampler() as load:
        (hd,) = read_trees(trees)
        grid = scan.make_grid(*scan.grid_span(hd), args.grid)
        starts, stops = scan.window_bounds(hd.positions, grid, args.width)
        x, enc_wall, enc_cpu = timed(scan.encode_windows, hd.haplotypes, starts, stops, args.width)
        log(f"encoded {len(x)} windows in {enc_wall:.1f} s")
        rng = np.random.default_rng(args.seed)
        paths = build_models(work, x[rng.choice(len(x), 256)], args.seed, args.model)

        bound = flop_bound(paths["fp32"], x[:1], args.threads)
        log(
            f"fp32 FLOP bound: {bound['mflop_per_window']:.0f} MFLOP a window at "
            f"{bound['gemm_gflops']:.0f} GFLOP/s (GEMM, {args.threads} threads) = "
            f"{bound['windows_per_s']:.0f} windows/s"
        )
        engines, agreement, reference = {}, {}, {}
        if not args.e2e_only:
            log("comparing engines")
            engines, agreement = compare_engines(
                x, paths, args.threads, args.batch, args.budget, onnx_batch=args.onnx_batch
            )
            for k, v in engines.items():
                v["ratio_to_fp32_flop_bound"] = v["windows_per_s"] / bound["windows_per_s"]
                v["ratio_to_onnx_fp32"] = v["windows_per_s"] / engines["onnx_fp32"]["windows_per_s"]
                log(
                    f"  {k:26s} {v['windows_per_s']:9.1f} windows/s ({v['measured_windows']} "
                    f"measured), {v['ratio_to_fp32_flop_bound']:.2f}x the fp32 FLOP bound, "
                    f"{v['ratio_to_onnx_fp32']:.2f}x ONNX fp32"
                )
            reference["torch_fp32_per_window_1_thread"] = per_window_one_thread(
                x, paths["fp32"], min(args.budget, 15.0)
            )
            log(
                f"  per window, 1 thread: {reference['torch_fp32_per_window_1_thread']['windows_per_s']:.1f}"
            )

        kind, key = {name: (kind, key) for name, kind, key in ENGINES}[args.e2e_engine]
        log(f"end to end with {args.e2e_engine}")
        e2e = end_to_end(trees, kind, paths[key], args, work, truth)
        e2e_engine = e2e.pop("engine_object")
        log(f"  {e2e['seconds']:.1f} s")
        profile = profile_scan(hd, e2e_engine, args, min(args.grid, 1000))
    info["load_average_end"] = list(os.getloadavg())
    info["load_average_during_run"] = load.summary()

    targets = {"end_to_end_seconds": e2e["seconds"], "target_end_to_end_seconds": 60}
    if engines:
        base = engines["torch_fp32_per_window"]["windows_per_s"]
        base1 = reference["torch_fp32_per_window_1_thread"]["windows_per_s"]
        onnx = engines["onnx_fp32"]["windows_per_s"]
        compressed = {k: engines[k]["windows_per_s"] for k in ("onnx_int8", "packed")}
        best = max(compressed, key=compressed.get)
        targets = {
            "best_compressed_engine": best,
            "speedup_vs_per_window_fp32": compressed[best] / base,
            "speedup_vs_per_window_fp32_1_thread": compressed[best] / base1,
            "speedup_vs_batched_onnx_fp32": compressed[best] / onnx,
            "target_speedup_vs_per_window": 100,
            "target_speedup_vs_onnx_fp32": 2,
            **targets,
        }
    result = {
        "name": Path(args.out).stem,
        "machine": info,
        "input": {
            **sim_info,
            "haplotypes": args.haplotypes,
            "sites": int(hd.n_sites),
            "grid_points": args.grid,
            "window_snps": args.width,
            "encode_all_windows_seconds": enc_wall,
            "encode_windows_per_s": len(x) / enc_wall,
            "model": args.model or "SweepNet (9,700 params) with random weights",
            "packed": "van de Wetering (2024) Table 6 layer config (sweeps.compress_presets.SEED000_TABLE6)",
            "numba": numba_available(),
        },
        "fp32_flop_bound": bound,
        "engines": engines,
        "reference": reference,
        "agreement": agreement,
        "targets": targets,
        "end_to_end": e2e,
        "profile": profile,
        "notes": [
            "threads = intra-op threads per engine (torch, ONNX Runtime) or worker threads (lookup)",
            "per-window engine: measured on a prefix of the windows and extrapolated",
            "engines with extrapolated=true saw fewer windows than the grid (budget)",
            "packed uses the compiled kernels when numba is installed (kernels in its entry)",
        ],
    }
    write_text(args.out, json.dumps(result, indent=2) + "\n")
    log(f"wrote {args.out}")
    if not args.work_dir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
