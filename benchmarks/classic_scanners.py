"""Classic sweep statistics on simulated replicates: ASDEC's localisation and detection metrics.

The baseline beside the CNN's scan (``scan_metrics.scan_replicates``): for each scenario it
simulates ``--replicates`` sweep replicates (hard sweep, msprime s = 0.05, ending now, at a uniform
random position in [0.1 L, 0.9 L]) and as many neutral ones with ``--haplotypes`` haplotypes and
``--length`` bp (N = 1e4, mu = r = 5e-7: theta = rho = 2,000 per 100 kb), scores every replicate on
the CNN's grid (``scan.make_grid(0, L, --grid)``) with each statistic of
``quantscan.apps.sweeps.classic`` and evaluates with ``scan_metrics.evaluate``: success rate (top grid
point within 1 % of L of the sweep), distance error (% of L), sensitivity at 5 % FPR, and the
seconds per replicate of the scoring (simulation excluded).

Scenarios: ``constant`` (constant size) and ``bottleneck`` (the mild bottleneck D1: size 0.5 N
between 0.1 and 0.101 x 4N generations ago, ``Demography.isolated_model([N])`` with
``add_population_parameters_change`` at 4,000 and 4,040 generations).

Rows: every statistic with its default window (``--window-snps`` SNPs; ``clr`` uses all SNPs);
``h12``, ``pi`` and ``tajima_d`` again with ``--window-bp`` bp windows (``name@1000bp``; 0: none);
``random``, uniform random scores, the chance level of the metrics.

Writes results/benchmarks/classic_scanners.json (``--out``) with the machine and its load average.

    .venv/bin/python benchmarks/classic_scanners.py [--replicates 50 --haplotypes 20 --length 100000]
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

import machine  # noqa: E402  # benchmarks/machine.py: a script's folder is on sys.path
import numpy as np  # noqa: E402

from quantscan.apps.sweeps import classic, scan_metrics, simulate  # noqa: E402
from quantscan.apps.sweeps.scan import make_grid  # noqa: E402
from quantscan.atomic import write_text  # noqa: E402
from quantscan.seeds import derive_seed  # noqa: E402

SCENARIOS = {
    "constant": None,
    "bottleneck": {"start": 0.1, "end": 0.101, "size": 0.5},
}
BP_WINDOW_STATISTICS = ("h12", "pi", "tajima_d")


def simulate_scenario(args, scenario: str) -> tuple[list, list, float]:
    """(sweep replicates, neutral replicates, seconds) of one scenario, seeded per replicate."""
    p = simulate.SimParams(
        population_size=10_000,
        sequence_length=args.length,
        haplotypes=args.haplotypes,
        mutation_rate=5e-7,
        recombination_rate=5e-7,
        selection_coefficient=0.05,
        bottleneck=SCENARIOS[scenario],
    )
    rng = np.random.default_rng(derive_seed(args.seed, "classic", scenario, "positions"))
    where = rng.uniform(0.1 * args.length, 0.9 * args.length, size=args.replicates)
    t = time.perf_counter()
    out = {"sweep": [], "neutral": []}
    for cls in out:
        for i in range(args.replicates):
            seed = derive_seed(args.seed, "classic", scenario, cls, i)
            x = float(where[i]) if cls == "sweep" else None
            ts = simulate.simulate_tree_sequence(p, cls, seed, scenario, sweep_position=x)
            out[cls].append(
                simulate.Replicate(
                    positions=ts.tables.sites.position.copy(),
                    haplotypes=ts.genotype_matrix().astype(np.uint8),
                    sweep_position=x if x is not None else float("nan"),
                )
            )
    return out["sweep"], out["neutral"], time.perf_counter() - t


def rows(args) -> list[tuple[str, str, dict]]:
    """(row name, statistic, classic_scores keyword arguments)."""
    out = [(s, s, {"window_snps": args.window_snps}) for s in classic.STATISTICS]
    if args.window_bp > 0:
        out += [
            (f"{s}@{args.window_bp:g}bp", s, {"window_bp": args.window_bp})
            for s in BP_WINDOW_STATISTICS
        ]
    return out


def random_scans(reps, args, seed: int) -> list[scan_metrics.ReplicateScan]:
    grid = make_grid(0.0, args.length, args.grid)
    rng = np.random.default_rng(seed)
    return [
        scan_metrics.ReplicateScan(grid.copy(), rng.random(len(grid)), r.sweep_position)
        for r in reps
    ]


def bench_scenario(args, scenario: str) -> dict:
    sweeps, neutrals, sim_s = simulate_scenario(args, scenario)
    n_snps = [len(r.positions) for r in sweeps + neutrals]
    results = {}
    for name, statistic, kwargs in rows(args):
        t = time.perf_counter()
        scans = classic.scan_replicates_classic(
            sweeps + neutrals,
            statistic,
            sequence_length=args.length,
            n_points=args.grid,
            **kwargs,
        )
        seconds = time.perf_counter() - t
        metrics = scan_metrics.evaluate(scans[: len(sweeps)], scans[len(sweeps) :], args.length)
        results[name] = metrics | {
            "statistic": statistic,
            "options": kwargs,
            "seconds_per_replicate": seconds / len(scans),
        }
    seed = derive_seed(args.seed, "classic", scenario, "random")
    metrics = scan_metrics.evaluate(
        random_scans(sweeps, args, seed), random_scans(neutrals, args, seed + 1), args.length
    )
    results["random"] = metrics | {"statistic": "random", "seconds_per_replicate": 0.0}
    return {
        "simulation_seconds": sim_s,
        "snps_mean": float(np.mean(n_snps)),
        "snps_min": int(np.min(n_snps)),
        "snps_max": int(np.max(n_snps)),
        "results": results,
    }


def table(result: dict) -> str:
    head = (
        f"{'scenario':<11} {'statistic':<17} {'success':>8} {'distance %L':>12} "
        f"{'TPR@5%FPR':>10} {'obs. FPR':>9} {'ms/replicate':>13}"
    )
    lines = [head, "-" * len(head)]
    for scenario, res in result["scenarios"].items():
        for name, m in res["results"].items():
            lines.append(
                f"{scenario:<11} {name:<17} {m['success_rate']:>8.3f} "
                f"{m['distance_error_pct']:>12.2f} {m['sensitivity_at_fpr']:>10.3f} "
                f"{m['observed_fpr']:>9.3f} {1e3 * m['seconds_per_replicate']:>13.1f}"
            )
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--replicates", type=int, default=50, help="sweep and neutral replicates each")
    p.add_argument("--haplotypes", type=int, default=20)
    p.add_argument("--length", type=float, default=100_000)
    p.add_argument("--grid", type=int, default=101, help="grid points over [0, L]")
    p.add_argument("--window-snps", type=int, default=classic.DEFAULT_WINDOW_SNPS)
    p.add_argument("--window-bp", type=float, default=1000.0, help="bp-window rows (0: none)")
    p.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=list(SCENARIOS))
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=ROOT / "results/benchmarks/classic_scanners.json")
    args = p.parse_args(argv)
    info = machine.describe() | {"load_average_start": list(os.getloadavg())}
    scenarios = {s: bench_scenario(args, s) for s in args.scenarios}
    result = {
        "machine": info | {"load_average_end": list(os.getloadavg())},
        "settings": {
            "replicates_per_class": args.replicates,
            "haplotypes": args.haplotypes,
            "length": args.length,
            "grid_points": args.grid,
            "window_snps": args.window_snps,
            "window_bp": args.window_bp,
            "seed": args.seed,
            "population_size": 10_000,
            "mutation_rate": 5e-7,
            "recombination_rate": 5e-7,
            "selection_coefficient": 0.05,
            "sweep_positions": "uniform in [0.1 L, 0.9 L]",
            "tolerance": 0.01,
            "fpr": 0.05,
        },
        "scenarios": scenarios,
    }
    write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"-> {args.out}")
    return result


if __name__ == "__main__":
    main()
