"""Can a different window, or a position head, make SweepNet localise a sweep?

The workflow's scan places the sweep where the CNN's score peaks. On 20 haplotypes, 100 kb and
theta = rho = 2,000 that peak is within 1 % of L of the sweep in 0.1-0.4 of replicates, against 0.7-0.8
for RAiSD's mu (README, "Localisation"). This harness trains SweepNet on the same simulations with
four window layouts and scores each on sweeps at random positions (ASDEC's metrics, ``scan_metrics``):

* ``snps_sorted``: the workflow's images (``--snps`` SNPs nearest the point, rows and columns sorted
  as SweepNet's ``Extract.c``), sweep-centred windows against neutral ones.
* ``snps_unsorted``: the same SNPs as they come (rows in sample order, columns in genomic order),
  trained as ``snps_sorted``: the encoding under which neighbouring grid points' windows share
  columns, so that a scan could compute convolution features once per SNP block (dense inference
  over overlapping windows, as FASTER-NN does); its accuracy against ``snps_sorted`` is the cost.
* ``snps_genomic``: the same SNPs with only the rows sorted (columns in genomic order), trained with
  linked windows (sweep windows displaced by 1-40 % of L, labelled not-centred, as S/HIC's classes).
* ``span_genomic``: every SNP within ``--span`` bp of the point, thinned evenly to ``--snps``
  columns (zero-padded when fewer; the padding shows a diversity dip), genomic order, linked windows.
* ``span_regression``: ``span_genomic`` windows with a second output that regresses the sweep's
  offset from the window centre (tanh, in half-spans); windows then vote for ``centre - offset``
  weighted by P(sweep) (a Gaussian of ``--vote-sigma`` bp), and the top of the votes is the estimate.

SweepNet ends in a global average pool, so its output does not depend on where in the window a
feature lies; the regression head measures how much position the network can recover at all
(``regression_val_mse`` against 1/3, the error of always answering 0 for uniform offsets).

Setting: ``linked_training``'s msprime simulations (N = 1e4, mu = r = 5e-7, s = 0.05, constant size)
at ``--haplotypes`` and ``--length``; ``--train-replicates`` per class, the sweep at the centre;
``--eval-replicates`` fresh sweep replicates at uniform positions in [0.1, 0.9] L and as many neutral
ones, ``--grid`` points over [0, L]. Writes results/benchmarks/window_layouts.json (``--out``).

    .venv/bin/python benchmarks/window_layouts.py --train-replicates 1000 --eval-replicates 100
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

import linked_training  # noqa: E402  # benchmarks/: the same simulations
import machine  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from quantscan.apps.sweeps import images as img  # noqa: E402
from quantscan.apps.sweeps import scan_metrics  # noqa: E402
from quantscan.atomic import write_text  # noqa: E402
from quantscan.models import build_model  # noqa: E402
from quantscan.seeds import derive_seed  # noqa: E402

LAYOUTS = ("snps_sorted", "snps_unsorted", "snps_genomic", "span_genomic", "span_regression")
CENTRED = ("snps_sorted", "snps_unsorted")  # trained on centred sweeps against neutral windows
SMOOTH = (0, 1, 2, 3)  # Gaussian smoothing of the score track, in grid points


def window(rep, centre: float, layout: str, snps: int, span: float) -> np.ndarray:
    """(haplotypes, snps) uint8 window of ``rep`` at ``centre`` (not yet encoded)."""
    pos, hap = rep.positions, rep.haplotypes
    if layout.startswith("snps"):
        a, b = img.centre_window(pos, len(pos), centre, snps)
        return img.pad_window(hap[a:b].T, snps)
    a, b = np.searchsorted(pos, [centre - span / 2, centre + span / 2])
    idx = np.arange(a, b)
    if len(idx) > snps:
        idx = idx[np.linspace(0, len(idx) - 1, snps).round().astype(int)]
    return img.pad_window(hap[idx].T, snps)


def encode(windows: list, layout: str) -> np.ndarray:
    batch = np.stack(windows)
    if layout == "snps_sorted":
        return img.encode(batch, "sweepnet", "descending")
    if layout == "snps_unsorted":
        return batch
    return img.sort_rows(batch)


def examples(args, layout: str, sweeps: list, neutral: list, rng) -> tuple:
    """Images (B, 1, n, w) float32, labels and regression targets (offset / half-range)."""
    half = args.span / 2 if layout == "span_regression" else 0.0
    linked = layout not in CENTRED
    x, y, d = [], [], []
    for rep in sweeps:
        for _ in range(2 if linked else 1):
            off = rng.uniform(-half, half)
            x.append(window(rep, rep.sweep_position + off, layout, args.snps, args.span))
            y.append(1)
            d.append(off / half if half else 0.0)
        if linked:
            for _ in range(2):
                off = rng.uniform(max(half, 0.01 * args.length), 0.4 * args.length)
                where = np.clip(rep.sweep_position + rng.choice([-1, 1]) * off, 0, args.length)
                x.append(window(rep, where, layout, args.snps, args.span))
                y.append(0)
                d.append(0.0)
    for rep in neutral:
        for _ in range(4 if linked else 1):
            where = args.length / 2 if not linked else rng.uniform(0.1, 0.9) * args.length
            x.append(window(rep, where, layout, args.snps, args.span))
            y.append(0)
            d.append(0.0)
    images = encode(x, layout).astype(np.float32)[:, None]
    return torch.tensor(images), torch.tensor(y, dtype=torch.float32), torch.tensor(d)


def losses(out: torch.Tensor, y: torch.Tensor, d: torch.Tensor, regress: bool) -> tuple:
    """(total, classification BCE, regression MSE over sweep windows)."""
    bce = F.binary_cross_entropy_with_logits(out[:, 0] - out[:, 1] * (not regress), y)
    if not regress:
        return bce, bce, torch.tensor(float("nan"))
    mse = ((torch.tanh(out[:, 1]) - d) ** 2 * y).sum() / y.sum().clamp(min=1)
    return bce + mse, bce, mse


def train(args, layout: str, data: dict) -> tuple:
    """SweepNet (2 outputs) trained with Adam, best validation epoch kept."""
    torch.manual_seed(derive_seed(args.seed, "window_layouts", layout))
    model = build_model({"name": "sweepnet", "n_classes": 2, "filters": 32, "se_ratio": 16})
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    regress = layout == "span_regression"
    x, y, d = data["train"]
    best, state, history = np.inf, None, []
    gen = torch.Generator().manual_seed(derive_seed(args.seed, "window_layouts", "order"))
    for _epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), 32):
            j = perm[i : i + 32]
            opt.zero_grad()
            losses(model(x[j]), y[j], d[j], regress)[0].backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            total, bce, mse = losses(model(data["val"][0]), *data["val"][1:], regress)
        history.append({"val_loss": total.item(), "val_bce": bce.item(), "val_mse": mse.item()})
        if total.item() < best:
            best, state = total.item(), {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    return model.eval(), history


def tracks(args, model, layout: str, reps: list, grid: np.ndarray) -> np.ndarray:
    """Score tracks (replicates, grid): the logit margin, or for ``span_regression`` the votes."""
    fine = (
        np.linspace(0, args.length, 10 * (len(grid) - 1) + 1)
        if layout == "span_regression"
        else grid
    )
    out = []
    for rep in reps:
        x = torch.tensor(
            encode([window(rep, c, layout, args.snps, args.span) for c in fine], layout)
        )
        with torch.no_grad():
            o = model(x.float()[:, None]).numpy()
        if layout != "span_regression":
            out.append(o[:, 0] - o[:, 1])
            continue
        weight = 1 / (1 + np.exp(-o[:, 0]))
        where = fine - np.tanh(o[:, 1]) * args.span / 2
        kernel = np.exp(-0.5 * ((grid[:, None] - where[None, :]) / args.vote_sigma) ** 2)
        out.append(kernel @ weight)
    return np.asarray(out)


def smooth(track: np.ndarray, points: int) -> np.ndarray:
    from scipy.ndimage import gaussian_filter1d

    return gaussian_filter1d(track, points, axis=1, mode="nearest") if points else track


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--train-replicates", type=int, default=300, help="per class")
    p.add_argument("--eval-replicates", type=int, default=50, help="sweep and neutral each")
    p.add_argument("--haplotypes", type=int, default=20)
    p.add_argument("--length", type=float, default=100_000)
    p.add_argument("--snps", type=int, default=64, help="image columns")
    p.add_argument("--span", type=float, default=10_000, help="bp of the span layouts")
    p.add_argument("--vote-sigma", type=float, default=500.0, help="bp")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--grid", type=int, default=101)
    p.add_argument("--layouts", nargs="+", default=list(LAYOUTS), choices=LAYOUTS)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=ROOT / "results/benchmarks/window_layouts.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    info = machine.describe() | {"load_average_start": list(os.getloadavg())}
    train_reps, evaluation, sim_s = linked_training.simulate_all(args)
    print(f"simulated in {sim_s:.0f} s", flush=True)
    n_val = max(1, len(train_reps["sweep"]) // 6)
    grid = np.linspace(0, args.length, args.grid)
    true = np.array([r.sweep_position for r in evaluation["sweep"]])
    results = {}
    for layout in args.layouts:
        rng = np.random.default_rng(derive_seed(args.seed, "window_layouts", "windows", layout))
        data = {
            "train": examples(
                args, layout, train_reps["sweep"][n_val:], train_reps["neutral"][n_val:], rng
            ),
            "val": examples(
                args, layout, train_reps["sweep"][:n_val], train_reps["neutral"][:n_val], rng
            ),
        }
        t = time.perf_counter()
        model, history = train(args, layout, data)
        sweep = tracks(args, model, layout, evaluation["sweep"], grid)
        neutral = tracks(args, model, layout, evaluation["neutral"], grid)
        best = min(history, key=lambda h: h["val_loss"])
        res = {"seconds": time.perf_counter() - t, "best_epoch": history.index(best), **best}
        for k in SMOOTH:
            s1, s0 = smooth(sweep, k), smooth(neutral, k)
            scans1 = [
                scan_metrics.ReplicateScan(grid, row, t) for row, t in zip(s1, true, strict=True)
            ]
            scans0 = [scan_metrics.ReplicateScan(grid, row, np.nan) for row in s0]
            res[f"smooth_{k}"] = scan_metrics.evaluate(scans1, scans0, args.length)
        results[layout] = res
        m = res["smooth_0"]
        print(
            f"{layout:16s} success {m['success_rate']:.2f} distance {m['distance_error_pct']:.2f} % "
            f"TPR {m['sensitivity_at_fpr']:.2f}; best smoothed "
            f"{max(res[f'smooth_{k}']['success_rate'] for k in SMOOTH):.2f}; "
            f"val MSE {best['val_mse']:.3f}",
            flush=True,
        )
    out = {
        "machine": info | {"load_average_end": list(os.getloadavg())},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "simulate_seconds": sim_s,
        "layouts": results,
    }
    write_text(args.out, json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
