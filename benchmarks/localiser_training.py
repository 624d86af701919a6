"""How much does the sweep localiser gain from more training replicates? Measured on 1,000 sweeps.

The workflow's localiser (``quantscan.apps.sweeps.localiser``, model ``position``) is trained by
``localiser.train`` from a scenario's training simulations, as rule ``localiser_train`` does, for
each ``--train-replicates`` (per class: the workflow's first replicates of that scenario, the same
seeds and batches), and scans ``--eval-replicates`` sweep replicates with the sweep at a uniform
random position in [0.1, 0.9] x L (the scan's own evaluation simulations, on a seed the workflow
does not use) and ``--neutral-replicates`` neutral ones, on 401 grid points per 100 kb (every 250 bp). Metrics as
``scan_summary.tsv``'s (ASDEC's success within 1 % of L, mean distance in % of L, sensitivity at 5 %
FPR) for the scan's two localiser statistics, with the binomial standard error of the success rate.
The workflow's own evaluation has 100 sweep replicates (standard error about 0.04); this one about
0.011.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/localiser_training.py \\
        --configfile config/presets/localisation.yaml --scenario mild_bottleneck \\
        --train-replicates 1000 3000 --eval-replicates 1000

``--eval-simulators msprime fwdpy11`` also scans the same test sweeps (seeds and positions)
simulated forward in time by fwdpy11: msprime's sweep footprints are not symmetric about the
selected site (``benchmarks/sweep_symmetry.py``), which shifts every position estimate that assumes
symmetry. Simulations are cached under ``--cache`` (one npz per batch), so a rerun or a second
``--train-replicates`` skips the simulators.
"""

from __future__ import annotations

import argparse
import copy
import itertools
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

from quantscan import config as qconfig  # noqa: E402
from quantscan.apps.sweeps import localiser, scan_metrics, simulate  # noqa: E402
from quantscan.apps.sweeps.scan_replicates import simulate_scan_batch  # noqa: E402
from quantscan.atomic import write_text  # noqa: E402
from quantscan.runtime import TorchEngine  # noqa: E402
from quantscan.seeds import derive_seed  # noqa: E402

EVAL_BATCH = 100
STATISTICS = ("log_odds", "p_sweep")


def merged_config(configfile: Path | None) -> dict:
    """config/config.yaml with ``configfile`` merged over it (as Snakemake does), validated."""

    def merge(a, b):
        for k, v in b.items():
            a[k] = merge(a[k], v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
        return a

    with open(ROOT / "config/config.yaml") as fh:
        cfg = yaml.safe_load(fh)
    if configfile:
        with open(configfile) as fh:
            cfg = merge(cfg, yaml.safe_load(fh) or {})
    return qconfig.validate(cfg)


def cached(path: Path, make) -> list:
    if not path.exists():
        reps, length = make()
        path.parent.mkdir(parents=True, exist_ok=True)
        simulate.save_replicates(path, reps, sequence_length=length, meta={})
    return simulate.load_replicates(path)[0]


def training_pool(params, scenario, cls, n, batch_size, seed, cache) -> list:
    """The workflow's first ``n`` training replicates of ``scenario`` and class ``cls``."""
    reps = []
    for b in range(-(-n // batch_size)):
        path = cache / f"train/{scenario}/{cls}/batch{b}.npz"
        reps += cached(
            path,
            lambda b=b: (
                simulate.simulate_batch(params, scenario, cls, b, batch_size, seed),
                params.sequence_length,
            ),
        )
    return reps[:n]


def evaluation(params, scenario, cls, n, seed, cache, simulator="msprime") -> list:
    """``n`` test replicates at random positions; the same seeds and positions for every simulator."""
    reps = []
    tag = "" if simulator == "msprime" else f"-{simulator}"
    for b in range(-(-n // EVAL_BATCH)):
        path = cache / f"eval{seed}/{scenario}{tag}/{cls}/batch{b}.npz"
        reps += cached(
            path,
            lambda b=b: (
                simulate_scan_batch(params, scenario, cls, b, EVAL_BATCH, seed),
                params.sequence_length,
            ),
        )
    return reps[:n]


def sweep_params(data: dict, scenario: str, simulator: str):
    """The scenario's simulation parameters with its sweeps from ``simulator``."""
    data = copy.deepcopy(data)
    data["scenarios"][scenario]["simulator"] = simulator
    return simulate.SimParams.from_config(data, scenario)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--configfile", type=Path, default=ROOT / "config/presets/localisation.yaml")
    p.add_argument("--scenario", default="mild_bottleneck")
    p.add_argument("--train-replicates", type=int, nargs="+", default=[1000, 3000])
    p.add_argument("--eval-replicates", type=int, default=1000)
    p.add_argument("--neutral-replicates", type=int, default=200)
    p.add_argument("--grid", type=int, default=401)
    p.add_argument(
        "--eval-simulators",
        nargs="+",
        default=["msprime"],
        choices=["msprime", "fwdpy11"],
        help="simulators of the test sweeps (the same seeds and positions; neutral: msprime)",
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cache", type=Path, default=ROOT / "benchmarks/results/cache/localiser")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/localiser_training.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = merged_config(args.configfile)
    sw = cfg["apps"]["sweeps"]
    data, sc = sw["data"], sw["scan"]
    seed = cfg["seed"]
    eval_seed = derive_seed(seed, "localiser_training_benchmark")
    settings = localiser.LocaliserSettings.from_config(sc["localiser"])
    train_cfg = {k: v for k, v in sc["localiser"]["train"].items() if k != "threads"}
    params = simulate.SimParams.from_config(data, args.scenario)
    length = params.sequence_length
    info = machine.describe() | {
        "load_average_start": list(os.getloadavg()),
        "command": " ".join(sys.argv),
        "scenario": args.scenario,
        "localiser": dict(sc["localiser"]),
    }
    t0 = time.perf_counter()
    neutral = evaluation(
        params, args.scenario, "neutral", args.neutral_replicates, eval_seed, args.cache
    )
    sweeps = {}
    for sim in args.eval_simulators:
        p_sim = sweep_params(data, args.scenario, sim)
        sweeps[sim] = evaluation(
            p_sim, args.scenario, "sweep", args.eval_replicates, eval_seed, args.cache, sim
        )
    info["eval_simulation_seconds"] = time.perf_counter() - t0
    density = localiser.snp_density([len(r.positions) for r in neutral], length * len(neutral))
    rows = []
    for n in args.train_replicates:
        t0 = time.perf_counter()
        pools = [
            training_pool(params, args.scenario, cls, n, data["batch_size"], seed, args.cache)
            for cls in ("sweep", "neutral")
        ]
        t1 = time.perf_counter()
        trained = localiser.train(
            *pools,
            length,
            settings,
            train_cfg,
            seed=derive_seed(seed, "localiser_train", args.scenario),
            validation_fraction=data["validation_fraction"],
        )
        t2 = time.perf_counter()
        engine = TorchEngine(
            trained.model,
            threads=args.threads,
            input_shape=localiser.input_shape(settings, data["haplotypes"]),
            input_dtypes=("float32",),
        )
        tracks = {
            name: localiser.scan_replicates(
                reps,
                engine,
                settings=settings,
                sequence_length=length,
                n_points=args.grid,
                density=density,
                model_haplotypes=data["haplotypes"],
            )
            for name, reps in [("neutral", neutral), *sweeps.items()]
        }
        row = {
            "train_replicates": n,
            "epochs": len(trained.history),
            "best_val_loss": min(h["val_loss"] for h in trained.history),
            **trained.quality,
            "simulate_seconds": t1 - t0,
            "train_seconds": t2 - t1,
            "scan_seconds": time.perf_counter() - t2,
        }
        for sim, stat in itertools.product(sweeps, STATISTICS):
            m = scan_metrics.evaluate(
                tracks[sim].scans(stat), tracks["neutral"].scans(stat), length
            )
            k = m["n_sweep"]
            row.setdefault(f"{sim}_sweeps", {})[stat] = {
                "success_rate": m["success_rate"],
                "success_se": float(np.sqrt(m["success_rate"] * (1 - m["success_rate"]) / k)),
                "distance_error_pct": m["distance_error_pct"],
                "sensitivity_at_fpr": m["sensitivity_at_fpr"],
                "n_sweep": k,
                "n_neutral": m["n_neutral"],
            }
        rows.append(row)
        print(json.dumps(row), flush=True)
    info["load_average_end"] = list(os.getloadavg())
    write_text(args.out, json.dumps(info | {"rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
