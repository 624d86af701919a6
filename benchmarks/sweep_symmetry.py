"""Is a simulated sweep's footprint symmetric? msprime's sweep model against fwdpy11's forward sweeps.

Under a hard sweep with a uniform recombination rate, the expected diversity at distance d to the left
of the selected site equals that at distance d to its right, wherever the site lies in the sequence: a
locus's genealogy depends on the recombination between it and the site only. This harness simulates
``--replicates`` hard sweeps per simulator and per sweep position (``--positions`` x L), with the
workflow's own simulation code (``quantscan.apps.sweeps.simulate.simulate_tree_sequence``: msprime's
``SweepGenicSelection``, or ``quantscan.apps.sweeps.forward`` for fwdpy11), and measures the
branch-length diversity (tskit ``diversity(mode="branch")``, no mutational noise) in the ``--flank``
bp left and right of the site. It reports per simulator and position the two means, their standard
errors and the z-score of the difference (right - left), and writes JSON.

Why it matters here: a position-keeping scan (the sweep localiser, RAiSD's mu) trained or evaluated on
asymmetric footprints places sweeps off the true site (see docs/sweeps.md, "Simulated sweeps are not
symmetric in msprime").

    .venv/bin/python benchmarks/sweep_symmetry.py                 # 300 replicates, about 15 min
    .venv/bin/python benchmarks/sweep_symmetry.py --replicates 50 # a quick look
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

from quantscan.apps.sweeps import simulate  # noqa: E402
from quantscan.atomic import write_text  # noqa: E402
from quantscan.seeds import derive_seed  # noqa: E402

#: the full-scale SweepNet setting (theta = rho = 2000 per 100 kb), constant size, 20 haplotypes
SETTING = {
    "population_size": 10_000,
    "sequence_length": 100_000,
    "haplotypes": 20,
    "mutation_rate": 5e-7,
    "recombination_rate": 5e-7,
    "selection_coefficient": 0.05,
    "sweep_end_time": 0,
}


def flank_diversity(simulator: str, position: float, replicates: int, flank: float, seed: int):
    """(replicates, 2) branch diversity left and right of a sweep at ``position``."""
    cfg = SETTING | {"scenarios": {simulator: {"simulator": simulator}}}
    params = simulate.SimParams.from_config(cfg, simulator)
    windows = [0.0, position - flank, position, position + flank, params.sequence_length]
    out = np.empty((replicates, 2))
    for i in range(replicates):
        ts = simulate.simulate_tree_sequence(
            params,
            "sweep",
            derive_seed(seed, "sweep_symmetry", simulator, position, i),
            simulator,
            sweep_position=position,
        )
        out[i] = ts.diversity(windows=windows, mode="branch")[1:3]
    return out


def summarise(d: np.ndarray) -> dict:
    m, se = d.mean(axis=0), d.std(axis=0, ddof=1) / np.sqrt(len(d))
    diff = d[:, 1] - d[:, 0]
    se_diff = diff.std(ddof=1) / np.sqrt(len(d))
    return {
        "left": float(m[0]),
        "left_se": float(se[0]),
        "right": float(m[1]),
        "right_se": float(se[1]),
        "right_minus_left": float(diff.mean()),
        "right_minus_left_se": float(se_diff),
        "z": float(diff.mean() / se_diff),
        "relative_asymmetry": float(diff.mean() / d.mean()),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--simulators", nargs="+", default=["msprime", "fwdpy11"])
    ap.add_argument("--positions", type=float, nargs="+", default=[0.2, 0.5, 0.8])
    ap.add_argument("--replicates", type=int, default=300)
    ap.add_argument("--flank", type=float, default=3000.0, help="bp each side of the site")
    ap.add_argument("--seed", type=int, default=20261206)
    ap.add_argument("--out", default=str(ROOT / "results/benchmarks/sweep_symmetry.json"))
    args = ap.parse_args(argv)
    info = machine.describe() | {"load_average_start": list(os.getloadavg())}
    rows = []
    for simulator in args.simulators:
        for frac in args.positions:
            position = frac * SETTING["sequence_length"]
            t = time.perf_counter()
            d = flank_diversity(simulator, position, args.replicates, args.flank, args.seed)
            row = {"simulator": simulator, "position": position, "replicates": args.replicates}
            row |= summarise(d) | {"seconds": time.perf_counter() - t}
            rows.append(row)
            print(
                f"{simulator:8s} sweep at {position / 1e3:5.1f} kb: left {row['left']:8.0f} "
                f"± {row['left_se']:5.0f}, right {row['right']:8.0f} ± {row['right_se']:5.0f}, "
                f"right - left {row['right_minus_left']:+7.0f} (z {row['z']:+.1f}, "
                f"{100 * row['relative_asymmetry']:+.1f} %) in {row['seconds']:.0f} s",
                flush=True,
            )
    info["load_average_end"] = list(os.getloadavg())
    result = {
        "name": "sweep_symmetry",
        "machine": info,
        "setting": SETTING | {"flank_bp": args.flank, "statistic": "branch diversity"},
        "rows": rows,
        "versions": {m: __import__(m).__version__ for m in ("msprime", "fwdpy11", "tskit")},
    }
    write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
