"""Benchmark: one scan engine at two commits, side by side in one process (an A/B of engine code).

Sequential runs of ``scan_engines.py`` at two commits compare machines as much as code on a shared
VM (the same code ran 10-25 % apart from one run to the next there). This harness imports the
package of ``--ref`` (extracted with ``git archive`` and renamed, so both versions live in one
process), builds the same engine kind from the same model file with each, and times them in
interleaved rounds of ``--batch`` windows until each has run ``--budget`` seconds, so load hits both
alike. The windows and models are ``scan_engines.py``'s (its simulated chromosome, cached in
``--cache-dir``). Each side may set engine options (``--a-chunk``, ``--b-chunk``) or attributes
(``--b-set products=torch``). Writes JSON: windows/s of each side, their ratio, and the largest
P(sweep) difference between the two (the same model: they should agree to float32 rounding).

    .venv/bin/python benchmarks/engine_ab.py --ref f9a81cf            # packed, working tree vs f9a81cf
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

import machine  # noqa: E402
import scan_engines as se  # noqa: E402

from quantscan.atomic import write_text  # noqa: E402
from quantscan.runtime import make_engine  # noqa: E402


def package_at(ref: str, where: Path):
    """``make_engine`` of the ``workflow/quantscan`` package at git ``ref``, imported as
    ``quantscan_ref`` (its modules import each other relatively)."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "workflow/quantscan"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    (where / "workflow" / "quantscan").rename(where / "quantscan_ref")
    sys.path.insert(0, str(where))
    return importlib.import_module("quantscan_ref.runtime").make_engine


def settings(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        out[key] = int(value) if value.lstrip("-").isdigit() else value
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--ref", required=True, help="git commit or branch of side A")
    ap.add_argument("--kind", default="packed", help="engine kind (packed, lut_fp32, ...)")
    se.add_window_args(ap)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--budget", type=float, default=20.0, help="seconds of measurement per side")
    ap.add_argument("--a-chunk", type=int, default=None, help="side A's chunk (its default)")
    ap.add_argument("--b-chunk", type=int, default=None, help="side B's chunk (its default)")
    ap.add_argument("--b-set", nargs="*", default=[], help="side B attributes, name=value")
    ap.add_argument("--out", default=str(ROOT / "results/benchmarks/engine_ab.json"))
    args = ap.parse_args(argv)

    info = machine.describe() | {"load_average_start": list(os.getloadavg())}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        x, paths = se.windows_and_models(args, work)
        key = {kind: key for _, kind, key in se.ENGINES}[args.kind]
        make_ref = package_at(args.ref, work)
        opts = {"batch_size": args.batch, "threads": args.threads}
        sides = {
            f"A ({args.ref})": make_ref(args.kind, paths[key], chunk=args.a_chunk, **opts),
            "B (working tree)": make_engine(args.kind, paths[key], chunk=args.b_chunk, **opts),
        }
        for name, value in settings(args.b_set).items():
            setattr(sides["B (working tree)"], name, value)
        for engine in sides.values():
            engine.predict_proba(x[:64])  # warm up: tables, compiled kernels
        state = {name: {"windows": 0, "seconds": 0.0, "p": []} for name in sides}
        start = 0
        with se.LoadSampler() as load:
            while min(s["seconds"] for s in state.values()) < args.budget:
                xb = x[start : start + args.batch]
                start = (start + args.batch) % (len(x) - args.batch)
                for name, engine in sides.items():
                    t = time.perf_counter()
                    p = engine.predict_proba(xb)[:, 1]
                    state[name]["seconds"] += time.perf_counter() - t
                    state[name]["windows"] += len(xb)
                    state[name]["p"].append(p)
    (a, sa), (b, sb) = state.items()
    rate = {name: s["windows"] / s["seconds"] for name, s in state.items()}
    out = {
        "kind": args.kind,
        "settings": vars(args),
        "windows_per_s": rate,
        "ratio_b_over_a": rate[b] / rate[a],
        "max_abs_p_difference": float(
            np.abs(np.concatenate(sa["p"]) - np.concatenate(sb["p"])).max()
        ),
        "engines": {name: engine.describe() for name, engine in sides.items()},
        "machine": info
        | {"load_average_end": list(os.getloadavg()), "load_average_during_run": load.summary()},
    }
    for name in sides:
        print(f"{name:28s} {rate[name]:8.1f} windows/s")
    print(
        f"B / A = {out['ratio_b_over_a']:.3f}; max |P difference| {out['max_abs_p_difference']:.2e}"
    )
    write_text(Path(args.out), json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
