"""Benchmark: where the lookup engine's time goes, measured against this CPU core's fp32 rate.

Issue 24 asks for the scan "measured against the limit". ``scan_engines.py`` gives the dense network's
fp32 FLOP bound, which the lookup engine beats because it does a tenth of the arithmetic. This
harness asks what bounds the lookup engine itself. It runs one engine (``--kind``, default
``packed``) on one thread over ``--windows`` of ``scan_engines.py``'s windows (its simulated
chromosome, cached in ``--cache-dir``) with the engine's stage profile on
(``BinaryConvLutEngine.profile``), and writes JSON with:

* ``stages``: ms a window and share of every stage (hash tables ``patches7/6/5``, max-pools
  ``pool2``/``pool3``, ``conv3_product``/``conv3_sum``, ``gate_mean``/``gate``,
  ``dense_product``/``dense_sum``, and ``dense_gather`` where the dense layer runs once per
  (image, patch) pair; the numpy kernels add ``pairs``);
* ``work_per_window``: distinct patches, (image, patch) pairs, and the multiply-adds of the two
  matrix products, as computed (oneDNN's row counts are rounded up);
* ``products``: the rate each product ran at, against this core's fp32 GEMM rate
  (``machine.fp32_gemm_flops(1)``: a large square product, the faster of ``torch.mm`` and oneDNN);
* ``limits``: windows/s on ``--cores`` cores, scaling perfectly, (a) as measured on one thread,
  (b) with the products at the GEMM rate and every other stage as measured, (c) with only the
  products left, at the GEMM rate; and the engine itself on ``--cores`` threads over the same
  windows (``multi_thread``), for the scaling actually reached.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/lut_stages.py --out benchmarks/results/lut_stages.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

import machine  # noqa: E402
import scan_engines as se  # noqa: E402

from quantscan.atomic import write_text  # noqa: E402
from quantscan.runtime import make_engine  # noqa: E402

PRODUCTS = ("conv3_product", "dense_product")
KINDS = ("packed", "lut_fp32")  # the engine kinds that are lookup engines (they have a profile)


def stage_profile(engine, x: np.ndarray, batch: int = 256) -> dict:
    """Run ``engine`` (a lookup engine, one thread for clean stage times) over ``x`` with its
    profile on; stage times and work per window, and each product's multiply-add rate."""
    if not hasattr(engine, "work_counts"):
        raise ValueError(f"{engine.kind} is not a lookup engine: it has no stage profile")
    engine.profile, engine.stage_seconds, engine.work_counts = True, {}, {}
    t = time.perf_counter()
    for start in range(0, len(x), batch):
        engine.predict_proba(x[start : start + batch])
    seconds = time.perf_counter() - t
    engine.profile = False
    n = len(x)
    total = sum(engine.stage_seconds.values())
    stages = {
        name: {"ms_per_window": 1e3 * s / n, "share": s / total}
        for name, s in engine.stage_seconds.items()
    }
    work = {key: value / n for key, value in engine.work_counts.items()}
    products = {
        name: {
            "macs_per_window": work[f"{name}_macs"],
            "gmacs_per_s": work[f"{name}_macs"] / (stages[name]["ms_per_window"] * 1e-3) / 1e9,
        }
        for name in PRODUCTS
        if name in stages and work.get(f"{name}_macs")
    }
    return {
        "windows": n,
        "seconds": seconds,
        "ms_per_window": 1e3 * seconds / n,
        "stage_ms_per_window": 1e3 * total / n,
        "stages": stages,
        "work_per_window": work,
        "products": products,
    }


def limits(profile: dict, gemm_macs_per_s: float, cores: int) -> dict:
    """Windows/s on ``cores`` cores with perfect scaling: as measured, with the products at the
    GEMM rate (other stages as measured), and with only the products left at the GEMM rate."""
    ms = profile["ms_per_window"]
    product_ms = sum(profile["stages"][p]["ms_per_window"] for p in profile["products"])
    floor_ms = sum(p["macs_per_window"] for p in profile["products"].values()) / gemm_macs_per_s
    floor_ms *= 1e3
    return {
        "cores": cores,
        "measured_one_thread_times_cores": cores * 1e3 / ms,
        "products_at_gemm_rate": cores * 1e3 / (ms - product_ms + floor_ms),
        "only_products_at_gemm_rate": cores * 1e3 / floor_ms if floor_ms else None,
        "product_ms_per_window": product_ms,
        "product_floor_ms_per_window": floor_ms,
        "other_ms_per_window": ms - product_ms,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--kind", default="packed", choices=KINDS, help="a lookup engine kind")
    se.add_window_args(ap)
    ap.add_argument("--windows", type=int, default=4096, help="windows profiled (from the start)")
    ap.add_argument("--cores", type=int, default=2, help="cores of the limits and multi_thread")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--out", default=str(ROOT / "results/benchmarks/lut_stages.json"))
    args = ap.parse_args(argv)

    info = machine.describe() | {"load_average_start": list(os.getloadavg())}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        x, paths = se.windows_and_models(args, work, limit=args.windows)
        key = {kind: key for _, kind, key in se.ENGINES}[args.kind]
        gemm = machine.fp32_gemm_flops(1)
        with se.LoadSampler() as load:
            one = make_engine(args.kind, paths[key], batch_size=args.batch, threads=1)
            one.predict_proba(x[:64])  # warm up: tables, compiled kernels
            with torch.inference_mode():
                profile = stage_profile(one, x, args.batch)
            many = make_engine(args.kind, paths[key], batch_size=args.batch, threads=args.cores)
            many.predict_proba(x[:64])
            t = time.perf_counter()
            for start in range(0, len(x), args.batch):
                many.predict_proba(x[start : start + args.batch])
            multi = len(x) / (time.perf_counter() - t)
    bounds = limits(profile, gemm["flops_per_s"] / 2, args.cores)
    out = {
        "kind": args.kind,
        "settings": vars(args),
        "gemm_one_thread": gemm,
        "profile": profile,
        "limits": bounds,
        "multi_thread": {
            "threads": args.cores,
            "windows_per_s": multi,
            "scaling_vs_one_thread": multi * profile["ms_per_window"] / 1e3,
        },
        "engine": one.describe(),
        "machine": info
        | {"load_average_end": list(os.getloadavg()), "load_average_during_run": load.summary()},
    }
    print(f"{args.kind}: {profile['ms_per_window']:.3f} ms a window on one thread")
    for name, s in profile["stages"].items():
        print(f"  {name:14s} {s['ms_per_window']:.3f} ms  {s['share']:4.0%}")
    for name, p in profile["products"].items():
        share = p["gmacs_per_s"] / (gemm["flops_per_s"] / 2e9)
        print(f"  {name}: {p['gmacs_per_s']:.1f} GMAC/s = {share:.0%} of the 1-thread GEMM rate")
    print(
        f"{args.cores} cores, perfect scaling: {bounds['measured_one_thread_times_cores']:.0f} "
        f"windows/s as measured, {bounds['products_at_gemm_rate']:.0f} with the products at the "
        f"GEMM rate; the engine on {args.cores} threads: {multi:.0f}"
    )
    write_text(Path(args.out), json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
