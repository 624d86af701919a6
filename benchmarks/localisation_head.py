"""Localising a sweep with a head that keeps position: offset classification + evidence voting.

``window_layouts.py`` showed that SweepNet (global average pool) cannot say where in a window a sweep
lies: its best layout put the sweep within 1 % of L in 0.15-0.18 of replicates (0.24-0.29 smoothed)
against 0.76 for RAiSD's mu. This harness adds the ``offset_bins`` layout:

The windows, training windows and votes are ``quantscan.apps.sweeps.localiser``'s (its module doc
describes them), exactly as the workflow's scan (model ``position``) uses them; this harness adds
its own training loop (``--label-sigma`` soft labels) and the SweepNet baselines on the same
simulations. Tracks: ``offset_bins_interp`` (the summed interpolated log-ratios log p(bin) -
log p(none): the scan's ``log_odds``) and ``offset_bins_prob_interp`` (the mean interpolated
probability: the scan's ``p_sweep``). Windows every ``--step`` bp.

The baseline ``snps_sorted`` (``window_layouts.py``, SweepNet on the workflow's images) runs on the
same simulations in the same run. Same setting and metrics as ``window_layouts.py`` (ASDEC's success
within 1 % of L, distance error, TPR at 5 % FPR). ``--cache`` keeps the simulations in a pickle so
reruns skip msprime (the first replicates of a larger cache are the same as a smaller run's).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/localisation_head.py \\
        --train-replicates 600 --eval-replicates 100 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import linked_training  # noqa: E402
import machine  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import window_layouts as wl  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from quantscan.apps.sweeps import localiser, scan_metrics  # noqa: E402
from quantscan.atomic import write_text  # noqa: E402
from quantscan.models.position import PositionNet  # noqa: E402
from quantscan.seeds import derive_seed  # noqa: E402

BASELINES = ("snps_sorted", "snps_genomic", "span_genomic", "span_regression")
OURS = ("offset_bins",)


# --------------------------------------------------------------------------- simulations
def simulations(args) -> tuple[dict, dict, float]:
    """(train, evaluation, seconds): from ``--cache`` when it holds at least as many replicates."""
    if args.cache and args.cache.exists():
        with open(args.cache, "rb") as fh:
            d = pickle.load(fh)
        tr, ev = d["train"], d["eval"]
        if len(tr["sweep"]) >= args.train_replicates and len(ev["sweep"]) >= args.eval_replicates:
            n, m = args.train_replicates, args.eval_replicates
            # eval positions: the first m of a larger draw are the m of a smaller one
            return (
                {k: v[:n] for k, v in tr.items()},
                {k: v[:m] for k, v in ev.items()},
                d["seconds"],
            )
    tr, ev, s = linked_training.simulate_all(args)
    if args.cache:
        args.cache.parent.mkdir(parents=True, exist_ok=True)
        with open(args.cache, "wb") as fh:
            pickle.dump({"train": tr, "eval": ev, "seconds": s}, fh)
    return tr, ev, s


def fresh_evaluation(args) -> tuple[dict, float]:
    """Evaluation replicates of seed ``--eval-seed`` (no training replicates), cached beside
    ``--cache`` when that is given."""
    ns = argparse.Namespace(**{**vars(args), "seed": args.eval_seed, "train_replicates": 0})
    path = None
    if args.cache:
        path = args.cache.with_name(f"{args.cache.stem}_eval{args.eval_seed}.pkl")
        if path.exists():
            with open(path, "rb") as fh:
                d = pickle.load(fh)
            if len(d["eval"]["sweep"]) >= args.eval_replicates:
                m = args.eval_replicates
                return {k: v[:m] for k, v in d["eval"].items()}, d["seconds"]
    _, ev, s = linked_training.simulate_all(ns)
    if path:
        with open(path, "wb") as fh:
            pickle.dump({"eval": ev, "seconds": s}, fh)
    return ev, s


# --------------------------------------------------------------------------- windows
def settings_of(args) -> localiser.LocaliserSettings:
    return localiser.LocaliserSettings(
        span=args.pos_span,
        columns=args.columns,
        bins=args.bins,
        step=args.step,
        in_windows=args.in_windows,
        out_windows=args.out_windows,
        neutral_windows=args.neutral_windows,
        flip=args.flip,
        filters=args.filters,
        hidden=args.hidden,
    )


def offset_examples(args, sweeps: list, neutral: list, density: float, rng) -> tuple:
    x, y = localiser.training_windows(sweeps, neutral, settings_of(args), density, args.length, rng)
    return torch.from_numpy(x), torch.from_numpy(y)


def soft_ce(logits: torch.Tensor, y: torch.Tensor, args) -> torch.Tensor:
    """Cross-entropy; with ``--label-sigma`` > 0 the bin labels are Gaussians over bins."""
    if args.label_sigma <= 0:
        return F.cross_entropy(logits, y)
    k = torch.arange(args.bins + 1, dtype=torch.float32)
    t = torch.exp(-0.5 * ((k[None, :] - y[:, None].float()) / args.label_sigma) ** 2)
    t[:, -1] = 0
    t = torch.where((y == args.bins)[:, None], F.one_hot(y, args.bins + 1).float(), t)
    t = t / t.sum(dim=1, keepdim=True)
    return -(t * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def train_offset(args, data: dict) -> tuple:
    torch.manual_seed(derive_seed(args.seed, "localisation_head", "offset_bins"))
    model = PositionNet(
        columns=args.columns, n_bins=args.bins, filters=args.filters, hidden=args.hidden
    )
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    x, y = data["train"]
    gen = torch.Generator().manual_seed(derive_seed(args.seed, "localisation_head", "order"))
    best, state, history = np.inf, None, []
    for _epoch in range(args.pos_epochs):
        t = time.perf_counter()
        model.train()
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), args.batch):
            j = perm[i : i + args.batch]
            opt.zero_grad()
            soft_ce(model(x[j]), y[j], args).backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            logits = torch.cat([model(v) for v in data["val"][0].split(512)])
            vy = data["val"][1]
            loss = soft_ce(logits, vy, args).item()
            pred = logits.argmax(1)
            inb = vy < args.bins
            h = {
                "val_loss": loss,
                "val_acc": (pred == vy).float().mean().item(),
                "val_bin_acc": (pred[inb] == vy[inb]).float().mean().item(),
                "val_bin_within1": ((pred[inb] - vy[inb]).abs() <= 1).float().mean().item(),
                "val_none_recall": (pred[~inb] == args.bins).float().mean().item(),
                "epoch_seconds": time.perf_counter() - t,
            }
        history.append(h)
        print(
            f"  epoch {_epoch}: "
            + " ".join(f"{k} {v:.3f}" for k, v in h.items() if k != "epoch_seconds"),
            f"({h['epoch_seconds']:.0f} s)",
            flush=True,
        )
        if loss < best:
            best, state = loss, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    return model.eval(), history


def fit_offset(args, train_reps: dict, n_val: int, density: float, rng) -> tuple:
    """(model, history, best epoch's record, preparation seconds, training seconds)."""
    t = time.perf_counter()
    data = {
        "train": offset_examples(
            args, train_reps["sweep"][n_val:], train_reps["neutral"][n_val:], density, rng
        ),
        "val": offset_examples(
            args, train_reps["sweep"][:n_val], train_reps["neutral"][:n_val], density, rng
        ),
    }
    prep_s = time.perf_counter() - t
    print(f"offset_bins: {len(data['train'][0])} training windows ({prep_s:.0f} s)", flush=True)
    model, history = train_offset(args, data)
    best = min(history, key=lambda h: h["val_loss"])
    return model, history, best, prep_s, time.perf_counter() - t - prep_s


#: track name -> statistic of ``localiser.votes`` (interpolated votes)
TRACKS = {"offset_bins_interp": "llr", "offset_bins_prob_interp": "prob"}


def offset_tracks(args, model, reps: list, grid: np.ndarray, density: float) -> tuple:
    """({track name: (reps, grid)} for ``TRACKS``, the windows' log-probabilities), scanned as
    the workflow's scan does (``localiser.votes``)."""
    s = settings_of(args)
    centres = localiser.lattice((0.0, args.length), grid, s)
    tracks, raw = {name: [] for name in TRACKS}, []
    for rep in reps:
        win = localiser.SpanWindows(rep.positions, rep.haplotypes, (0.0, args.length), s, density)
        x = torch.from_numpy(win.images(centres))
        with torch.no_grad():
            logp = torch.cat([F.log_softmax(model(v), 1) for v in x.split(512)]).numpy()
        raw.append(logp.astype(np.float32))
        prob, llr = localiser.votes(logp, centres, grid, s)
        tracks["offset_bins_interp"].append(llr)
        tracks["offset_bins_prob_interp"].append(prob)
    return {k: np.asarray(v) for k, v in tracks.items()}, np.asarray(raw)


def metrics(sweep: np.ndarray, neutral: np.ndarray, grid, true, length) -> dict:
    res = {}
    for s in wl.SMOOTH:
        s1, s0 = wl.smooth(sweep, s), wl.smooth(neutral, s)
        scans1 = [scan_metrics.ReplicateScan(grid, r, t) for r, t in zip(s1, true, strict=True)]
        scans0 = [scan_metrics.ReplicateScan(grid, r, np.nan) for r in s0]
        res[f"smooth_{s}"] = scan_metrics.evaluate(scans1, scans0, length)
    return res


def report(name: str, res: dict) -> None:
    m = res["smooth_0"]
    best = max(wl.SMOOTH, key=lambda s: res[f"smooth_{s}"]["success_rate"])
    print(
        f"{name:18s} success {m['success_rate']:.2f} distance {m['distance_error_pct']:.2f} % "
        f"TPR {m['sensitivity_at_fpr']:.2f}; best smoothed "
        f"{res[f'smooth_{best}']['success_rate']:.2f} (sigma {best}); "
        f"{res.get('seconds', float('nan')):.0f} s",
        flush=True,
    )


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--train-replicates", type=int, default=300, help="per class")
    p.add_argument("--eval-replicates", type=int, default=50, help="sweep and neutral each")
    p.add_argument("--haplotypes", type=int, default=20)
    p.add_argument("--length", type=float, default=100_000)
    p.add_argument("--grid", type=int, default=101)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--baselines", nargs="*", default=["snps_sorted"], choices=BASELINES)
    # window_layouts.py's settings, for the baselines
    p.add_argument("--snps", type=int, default=64)
    p.add_argument("--span", type=float, default=10_000)
    p.add_argument("--vote-sigma", type=float, default=500.0)
    p.add_argument("--epochs", type=int, default=15, help="baseline epochs")
    # offset_bins
    p.add_argument("--pos-span", type=float, default=21_000, help="bp per window")
    p.add_argument("--columns", type=int, default=84, help="physical columns per window")
    p.add_argument("--bins", type=int, default=21, help="offset bins across the window")
    p.add_argument("--in-windows", type=int, default=8, help="per sweep replicate")
    p.add_argument("--out-windows", type=int, default=2, help="per sweep replicate")
    p.add_argument("--neutral-windows", type=int, default=4, help="per neutral replicate")
    p.add_argument("--flip", action="store_true", help="add mirrored training windows")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--filters", type=int, default=32)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--pos-epochs", type=int, default=15)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--label-sigma", type=float, default=0.0, help="bins; 0: hard labels")
    p.add_argument("--step", type=float, default=1000.0, help="bp between scan windows")
    p.add_argument("--cache", type=Path, default=None, help="pickle of the simulations")
    p.add_argument("--eval-seed", type=int, default=None, help="evaluate on this seed's replicates")
    p.add_argument("--load-model", type=Path, default=None, help="offset_bins state_dict (.pt)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/localisation_head.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    info = machine.describe() | {"load_average_start": list(os.getloadavg())}
    train_reps, evaluation, sim_s = simulations(args)
    if args.eval_seed is not None:  # fresh evaluation replicates, as seed --eval-seed draws them
        evaluation, sim_s = fresh_evaluation(args)
    print(f"simulations: {sim_s:.0f} s", flush=True)
    n_val = max(1, len(train_reps["sweep"]) // 6)
    grid = np.linspace(0, args.length, args.grid)
    true = np.array([r.sweep_position for r in evaluation["sweep"]])
    results = {}
    for layout in args.baselines:
        rng = np.random.default_rng(derive_seed(args.seed, "window_layouts", "windows", layout))
        data = {
            "train": wl.examples(
                args, layout, train_reps["sweep"][n_val:], train_reps["neutral"][n_val:], rng
            ),
            "val": wl.examples(
                args, layout, train_reps["sweep"][:n_val], train_reps["neutral"][:n_val], rng
            ),
        }
        t = time.perf_counter()
        model, history = wl.train(args, layout, data)
        train_s = time.perf_counter() - t
        sweep = wl.tracks(args, model, layout, evaluation["sweep"], grid)
        neutral = wl.tracks(args, model, layout, evaluation["neutral"], grid)
        best = min(history, key=lambda h: h["val_loss"])
        results[layout] = {
            "seconds": time.perf_counter() - t,
            "train_seconds": train_s,
            "best_epoch": history.index(best),
            **best,
            **metrics(sweep, neutral, grid, true, args.length),
        }
        report(layout, results[layout])

    # offset_bins: neutral SNP density from the training neutral replicates
    density = float(np.mean([len(r.positions) for r in train_reps["neutral"]]) / args.length)
    rng = np.random.default_rng(derive_seed(args.seed, "localisation_head", "windows"))
    t = time.perf_counter()
    if args.load_model:  # a model trained by an earlier run: evaluate only
        model = PositionNet(
            columns=args.columns, n_bins=args.bins, filters=args.filters, hidden=args.hidden
        )
        model.load_state_dict(torch.load(args.load_model))
        model.eval()
        history, best, prep_s, train_s = [], {}, 0.0, 0.0
    else:
        model, history, best, prep_s, train_s = fit_offset(args, train_reps, n_val, density, rng)
    t2 = time.perf_counter()
    s1, raw1 = offset_tracks(args, model, evaluation["sweep"], grid, density)
    s0, raw0 = offset_tracks(args, model, evaluation["neutral"], grid, density)
    # the scan windows' log-probabilities and the model, to re-combine without retraining
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out.with_suffix(".logp.npz"), sweep=raw1, neutral=raw0, true=true, grid=grid
    )
    torch.save(model.state_dict(), args.out.with_suffix(".pt"))
    scan_s = time.perf_counter() - t2
    n_params = sum(q.numel() for q in model.parameters())
    for name in s1:
        results[name] = {
            "seconds": time.perf_counter() - t,
            "prepare_seconds": prep_s,
            "train_seconds": train_s,
            "scan_seconds": scan_s,
            "parameters": n_params,
            "best_epoch": history.index(best) if history else None,
            **best,
            **metrics(s1[name], s0[name], grid, true, args.length),
        }
        report(name, results[name])
    out = {
        "machine": info | {"load_average_end": list(os.getloadavg())},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "simulate_seconds": sim_s,
        "offset_bins_history": history,
        "layouts": results,
    }
    write_text(args.out, json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
