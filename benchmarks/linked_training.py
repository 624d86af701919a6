"""Does training with linked windows (``apps.sweeps.data.image.linked``) make the CNN's scan peak at the sweep?

A CNN trained on windows centred on a sweep against neutral windows saturates: P(sweep) stays near 1
over a broad region around a strong sweep, so the arg-max of a scan is a poor position estimate. This
harness trains two SweepNet models on the same simulated replicates, one as the workflow does by
default and one with a share ``--fraction`` of the neutral images replaced by linked windows (windows of
the sweep replicates centred at a uniform random offset in [``--min-offset``, ``--max-offset``] x L to
either side of the sweep, labelled neutral: ``dataset.linked_offsets`` / ``dataset.encode_linked``, as
the workflow's encode jobs), and evaluates both with ASDEC's metrics (``scan_metrics``).

Setting: ``--haplotypes`` haplotypes, ``--length`` bp, N = 1e4, mu = r = 5e-7 (theta = rho = 1,000 per
50 kb), msprime s = 0.05 ending now. Training: ``--train-replicates`` replicates per class with the sweep
at the centre, windows of ``--snps`` SNPs encoded as in the workflow (sweepnet, descending), split
train / validation by ``--val-fraction`` with one permutation for both classes (so a linked window is
in its sweep replicate's split; the plain model uses the same split), SweepNet 32 filters, SE ratio 16,
``quantscan.train.fit`` (Adam 1e-3, batches of 8, ``--epochs`` with patience 5: the default config's
training). Evaluation: ``--eval-replicates`` fresh sweep replicates with the sweep at a uniform random
position in [0.1 L, 0.9 L] and as many neutral ones, scanned on ``--grid`` points over [0, L]
(``scan_metrics.scan_replicates``, PyTorch fp32); for the statistics ``p_sweep``, ``log_odds`` and
``log_odds_smoothed`` (``--smooth`` x L half-width): success rate (top grid point within 1 % of L of
the sweep; also within 5 %), distance error (% of L) and sensitivity at 5 % FPR.

Writes results/benchmarks/linked_training.json (``--out``) with the machine and its load average.

    .venv/bin/python benchmarks/linked_training.py [--fraction 0.5 --min-offset 0.02 --max-offset 0.4]
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
import torch  # noqa: E402

from quantscan.apps.sweeps import dataset, scan_metrics, simulate  # noqa: E402
from quantscan.atomic import write_text  # noqa: E402
from quantscan.models import build_model  # noqa: E402
from quantscan.runtime import TorchEngine  # noqa: E402
from quantscan.seeds import derive_seed  # noqa: E402
from quantscan.train import TrainConfig, fit  # noqa: E402

STATISTICS = ("p_sweep", "log_odds", "log_odds_smoothed")
ENCODING, COLUMN_ORDER = "sweepnet", "descending"
ARCH = {"name": "sweepnet", "n_classes": 2, "filters": 32, "se_ratio": 16}


def params(args) -> simulate.SimParams:
    return simulate.SimParams(
        population_size=10_000,
        sequence_length=args.length,
        haplotypes=args.haplotypes,
        mutation_rate=5e-7,
        recombination_rate=5e-7,
        selection_coefficient=0.05,
    )


def replicate(p, cls: str, seed: int, where: float | None) -> simulate.Replicate:
    ts = simulate.simulate_tree_sequence(p, cls, seed, "constant", sweep_position=where)
    return simulate.Replicate(
        positions=ts.tables.sites.position.copy(),
        haplotypes=ts.genotype_matrix().astype(np.uint8),
        sweep_position=float("nan") if where is None else float(where),
    )


def simulate_all(args) -> tuple[dict, dict, float]:
    """Training replicates (sweep at the centre) and evaluation replicates (random positions)."""
    p, t = params(args), time.perf_counter()
    train = {
        cls: [
            replicate(
                p,
                cls,
                derive_seed(args.seed, "linked_bench", "train", cls, i),
                args.length / 2 if cls == "sweep" else None,
            )
            for i in range(args.train_replicates)
        ]
        for cls in ("neutral", "sweep")
    }
    rng = np.random.default_rng(derive_seed(args.seed, "linked_bench", "positions"))
    where = rng.uniform(0.1 * args.length, 0.9 * args.length, size=args.eval_replicates)
    evaluation = {
        cls: [
            replicate(
                p,
                cls,
                derive_seed(args.seed, "linked_bench", "eval", cls, i),
                float(where[i]) if cls == "sweep" else None,
            )
            for i in range(args.eval_replicates)
        ]
        for cls in ("neutral", "sweep")
    }
    return train, evaluation, time.perf_counter() - t


def training_data(args, train: dict, linked: bool) -> tuple[dict, int]:
    """{"train"/"val": (x (B, 1, n, w) uint8, y)} and the number of linked windows."""
    neutral, sweeps = train["neutral"], train["sweep"]
    if linked:
        offsets = dataset.linked_offsets(
            len(neutral),
            fraction=args.fraction,
            min_offset=args.min_offset,
            max_offset=args.max_offset,
            seed=derive_seed(args.seed, "linked_bench", "linked"),
        )
        x0, _ = dataset.encode_linked(
            neutral, sweeps, offsets, args.length, args.snps, ENCODING, COLUMN_ORDER
        )
        n_linked = int(np.isfinite(offsets).sum())
    else:
        x0, _ = dataset.encode_replicates(neutral, args.snps, ENCODING, COLUMN_ORDER)
        n_linked = 0
    x1, _ = dataset.encode_replicates(sweeps, args.snps, ENCODING, COLUMN_ORDER)
    # one permutation for both classes (the workflow's split with linked windows)
    idx = dataset.split_indices(
        len(neutral),
        len(neutral),
        args.val_fraction,
        derive_seed(args.seed, "linked_bench", "split"),
    )
    out = {}
    for split in ("train", "val"):
        sel = idx[split]
        x = np.concatenate([x0[sel], x1[sel]])[:, None]
        y = np.concatenate([np.zeros(len(sel), np.int64), np.ones(len(sel), np.int64)])
        out[split] = (x, y)
    return out, n_linked


def train_model(args, data: dict) -> tuple[torch.nn.Module, list[dict], float]:
    seed = derive_seed(args.seed, "linked_bench", "train")
    torch.manual_seed(seed)
    model = build_model(ARCH)
    cfg = TrainConfig(epochs=args.epochs, batch_size=8, learning_rate=1e-3, patience=5)
    t = time.perf_counter()
    history = fit(model, *data["train"], *data["val"], cfg, seed)
    return model, history, time.perf_counter() - t


def evaluate_model(args, model, evaluation: dict) -> tuple[dict, float]:
    reps = evaluation["sweep"] + evaluation["neutral"]
    t = time.perf_counter()
    tracks = scan_metrics.scan_replicates(
        reps,
        TorchEngine(model, threads=args.threads),
        sequence_length=args.length,
        width=args.snps,
        n_points=args.grid,
        encoding=ENCODING,
        column_order=COLUMN_ORDER,
    )
    seconds = time.perf_counter() - t
    n = len(evaluation["sweep"])
    out = {}
    for statistic in STATISTICS:
        scans = tracks.scans(statistic, smooth_bp=args.smooth * args.length)
        m = scan_metrics.evaluate(scans[:n], scans[n:], args.length)
        wide = scan_metrics.evaluate(scans[:n], scans[n:], args.length, tolerance=0.05)
        out[statistic] = m | {"success_rate_5pct": wide["success_rate"]}
    # how broad the saturated region is: grid points with P(sweep) > 0.99 per sweep replicate
    broad = np.nansum(tracks.p_sweep[:n] > 0.99, axis=1)
    out["p_sweep_above_0.99_points_mean"] = float(np.mean(broad))
    return out, seconds


def table(result: dict) -> str:
    head = (
        f"{'model':<8} {'statistic':<18} {'success@1%':>10} {'success@5%':>10} "
        f"{'distance %L':>12} {'TPR@5%FPR':>10} {'obs. FPR':>9}"
    )
    lines = [head, "-" * len(head)]
    for name, res in result["models"].items():
        for statistic in STATISTICS:
            m = res["metrics"][statistic]
            lines.append(
                f"{name:<8} {statistic:<18} {m['success_rate']:>10.3f} "
                f"{m['success_rate_5pct']:>10.3f} {m['distance_error_pct']:>12.2f} "
                f"{m['sensitivity_at_fpr']:>10.3f} {m['observed_fpr']:>9.3f}"
            )
    for name, res in result["models"].items():
        lines.append(
            f"{name}: {res['n_linked_train_val']} linked windows, best val loss "
            f"{res['best_val_loss']:.3f} (val accuracy {res['best_val_accuracy']:.3f}), "
            f"grid points with P(sweep) > 0.99 per sweep replicate "
            f"{res['metrics']['p_sweep_above_0.99_points_mean']:.1f}, train {res['train_seconds']:.0f} s"
        )
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--train-replicates", type=int, default=300, help="per class")
    p.add_argument("--eval-replicates", type=int, default=50, help="sweep and neutral each")
    p.add_argument("--haplotypes", type=int, default=20)
    p.add_argument("--length", type=float, default=50_000)
    p.add_argument("--snps", type=int, default=64, help="SNPs per window (image columns)")
    p.add_argument("--fraction", type=float, default=0.5, help="linked share of the neutral class")
    p.add_argument("--min-offset", type=float, default=0.02, help="fraction of L")
    p.add_argument("--max-offset", type=float, default=0.4, help="fraction of L")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--grid", type=int, default=101, help="grid points over [0, L]")
    p.add_argument("--smooth", type=float, default=0.01, help="log_odds_smoothed half-width, x L")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=ROOT / "results/benchmarks/linked_training.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    info = machine.describe() | {"load_average_start": list(os.getloadavg())}
    t0 = time.perf_counter()
    train, evaluation, sim_s = simulate_all(args)
    models = {}
    for name, linked in (("plain", False), ("linked", True)):
        data, n_linked = training_data(args, train, linked)
        model, history, train_s = train_model(args, data)
        metrics, scan_s = evaluate_model(args, model, evaluation)
        best = min(history, key=lambda h: h["val_loss"])
        models[name] = {
            "linked": linked,
            "n_linked_train_val": n_linked,
            "epochs_run": len(history),
            "best_val_loss": float(best["val_loss"]),
            "best_val_accuracy": float(best["val_accuracy"]),
            "train_seconds": train_s,
            "scan_seconds": scan_s,
            "metrics": metrics,
        }
        print(f"{name}: trained {train_s:.0f} s, scanned {scan_s:.0f} s", flush=True)
    result = {
        "machine": info | {"load_average_end": list(os.getloadavg())},
        "settings": {
            k: getattr(args, k)
            for k in (
                "train_replicates",
                "eval_replicates",
                "haplotypes",
                "length",
                "snps",
                "fraction",
                "min_offset",
                "max_offset",
                "val_fraction",
                "epochs",
                "grid",
                "smooth",
                "threads",
                "seed",
            )
        }
        | {
            "population_size": 10_000,
            "mutation_rate": 5e-7,
            "recombination_rate": 5e-7,
            "selection_coefficient": 0.05,
            "training_sweep_position": "centre",
            "eval_sweep_positions": "uniform in [0.1 L, 0.9 L]",
            "tolerance": 0.01,
            "fpr": 0.05,
            "arch": ARCH,
        },
        "simulation_seconds": sim_s,
        "total_seconds": time.perf_counter() - t0,
        "models": models,
    }
    write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"-> {args.out}")
    return result


if __name__ == "__main__":
    main()
