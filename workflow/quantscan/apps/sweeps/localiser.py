"""The sweep localiser: a position-keeping CNN that says *where* a sweep lies, and how its votes
become a scan track.

SweepNet ends in a global average pool, so it can say whether a window holds a sweep but not where
in the window: on sweeps at random positions its top grid point lands within 1 % of L in about a
fifth of replicates, against three quarters for RAiSD's mu (Alachiotis & Pavlidis 2018). The
localiser keeps the genomic axis to its output, as ASDEC's Flatten + Dense does (Mo & Siepel's
ASDEC, 2023), and classifies the sweep's *offset* in the window:

* **window by physical span**: ``span`` bp centred on a point, cut into ``columns`` equal columns,
  so a column is always the same distance from the centre. Four channels, one row per haplotype,
  rows sorted by Hamming distance to the most central haplotype of the window (SweepNet's row
  order): (0) the share of the column's SNPs at which the haplotype carries the derived allele;
  (1) the column's SNP count over the data set's mean (clipped at 3), the same on every row (a
  sweep empties the columns near it); (2) 1 where the column lies inside the scanned sequence;
  (3) the share of the column's SNPs at which the haplotype carries the central haplotype's allele
  (1 in an empty column): the sweeping haplotype's extent, which recombination frays away from
  the sweep (the footprint that localises; channel 0 averages it away). Adding channel 3 lifted
  success under the mild bottleneck from 0.81 to 0.84 on the same training and 1,000 test sweeps.
* **model** (:class:`quantscan.models.position.PositionNet`): logits over ``bins`` equal offset
  bins across the window and one last class, "no sweep in the window".
* **training**, from a scenario's training simulations (sweep at the centre of each replicate):
  ``in_windows`` windows per sweep replicate at uniform offsets around the sweep (labelled with
  its bin), ``out_windows`` linked windows whose sweep lies half a span to 0.4 L away, and
  ``neutral_windows`` windows per neutral replicate (both "none"); ``flip`` adds every window
  mirrored (columns reversed, bin k -> bins - 1 - k).
* **scan**: windows every ``step`` bp on a lattice fixed by the sequence's start (so region jobs
  add up to the whole-sequence scan); a grid point x collects, from every window c that covers it,
  ``log p(bin of x - c) - log p(none)`` split linearly between the two bins whose centres bracket
  x - c, and zero outside the window's span. Each window's vote is then averaged over a box of
  +-``smooth`` bins around x (default half a bin; integrated exactly, so it does not depend on the
  grid): without it the summed track is piecewise linear with its kinks at bin centres, so its
  maximum always sits on a bin centre, up to half a bin from the sweep; with it the maximum falls
  between them (on 1,000 test sweeps under the mild bottleneck, success 0.83 -> 0.86 on a 250 bp
  grid). The sum is the grid point's ``log_odds`` column (the log-likelihood ratio of "sweep at x"
  against "no sweep here", were the windows independent); ``p_sweep`` is the box-averaged
  probability the windows give a sweep at x over their box-averaged coverage of x. Neither is
  averaged over neighbouring grid points again (the votes already pool ``span / step`` windows).

Measured (``benchmarks/localiser_training.py``, 20 haplotypes, 100 kb, theta = rho = 2000, the mild
bottleneck, 1,000 test sweeps at random positions, a 250 bp grid): within 1 % of L in 0.855 of
replicates (0.882 on the same sweeps simulated by fwdpy11, whose footprints are symmetric where
msprime's are not); SweepNet about 0.25 and RAiSD's mu 0.69-0.76 on the workflow's evaluation.
"""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np

from ...errors import ConfigError, InputFormatError
from .io import MISSING

#: the scan model name of the localiser (beside fp32 and the compression methods)
LOCALISER = "position"
#: engines that run the localiser (its inputs are four-channel float windows)
ENGINES = ("onnx_fp32", "onnx_int8", "torch_fp32")
#: input channels of a window (module doc)
CHANNELS = 4
#: trunk depth of PositionNet (each 2x2 valid convolution and pool drops one column)
DEPTH = 3


@dataclasses.dataclass(frozen=True)
class LocaliserSettings:
    """Window, model and training-window settings (``apps.sweeps.scan.localiser`` in the config)."""

    span: float = 21_000.0
    columns: int = 84
    bins: int = 21
    step: float = 1_000.0
    in_windows: int = 8
    out_windows: int = 2
    neutral_windows: int = 4
    flip: bool = True
    filters: int = 32
    hidden: int = 64
    smooth: float = 0.5

    @classmethod
    def from_config(cls, cfg: dict, key: str = "apps.sweeps.scan.localiser") -> LocaliserSettings:
        names = {f.name for f in dataclasses.fields(cls)}
        s = cls(**{k: v for k, v in cfg.items() if k in names})
        checks = [
            ("span", s.span > 0, "must be > 0 bp"),
            ("step", 0 < s.step <= s.span, "must be > 0 and at most span"),
            ("columns", s.columns > 2 * DEPTH, f"must exceed {2 * DEPTH}"),
            ("bins", s.bins >= 2, "must be >= 2"),
            ("in_windows", s.in_windows >= 1, "must be >= 1"),
            ("out_windows", s.out_windows >= 0, "must be >= 0"),
            ("neutral_windows", s.neutral_windows >= 1, "must be >= 1"),
            ("filters", s.filters >= 1, "must be >= 1"),
            ("hidden", s.hidden >= 1, "must be >= 1"),
            ("smooth", 0 <= s.smooth <= s.bins, "must be >= 0 and at most bins"),
        ]
        for name, ok, why in checks:
            if not ok:
                raise ConfigError(f"config key {key}.{name}: {getattr(s, name)!r} {why}")
        return s

    @staticmethod
    def training_keys(cfg: dict) -> dict:
        """The keys of ``apps.sweeps.scan.localiser`` that shape the trained model (window, model and
        training windows), without those only the scan reads (``step``, ``smooth``, ``statistic``,
        ``engines``, ``enabled``): the training rule's params, so that changing how the scan reads
        the model does not retrain it."""
        scan_only = {"step", "smooth"}
        names = {f.name for f in dataclasses.fields(LocaliserSettings)} - scan_only
        return {k: v for k, v in cfg.items() if k in names}

    def arch(self) -> dict:
        """The model's ``arch`` (``quantscan.models.build_model``)."""
        return {
            "name": "position",
            "columns": self.columns,
            "n_bins": self.bins,
            "in_channels": CHANNELS,
            "filters": self.filters,
            "depth": DEPTH,
            "hidden": self.hidden,
        }


def input_shape(settings: LocaliserSettings, haplotypes: int) -> tuple[int, int, int]:
    return (CHANNELS, int(haplotypes), settings.columns)


def snp_density(n_sites, length) -> float:
    """Mean SNPs per bp (the expectation channel 1 divides by); refuses an empty data set."""
    n, length = float(np.sum(n_sites)), float(np.sum(length))
    if not length > 0 or n <= 0:
        raise InputFormatError(
            f"the localiser needs SNPs to scale its density channel (got {n:g} SNPs over "
            f"{length:g} bp)"
        )
    return n / length


# --------------------------------------------------------------------------------------------------
# windows


class SpanWindows:
    """Physical-span windows of one sequence, vectorised over window centres.

    ``positions`` (sites,) sorted; ``haplotypes`` (sites, n) 0/1; ``bounds`` = (start, end) of the
    scanned sequence (channel 2); ``density``: SNPs per bp that channel 1 divides by.
    Memory: two ``(sites + 1, n)`` cumulative sums.
    """

    def __init__(self, positions, haplotypes, bounds, settings: LocaliserSettings, density: float):
        self.pos = np.asarray(positions, np.float64)
        hap = np.asarray(haplotypes)
        if hap.ndim != 2 or len(hap) != len(self.pos):
            raise InputFormatError(
                f"haplotypes of shape {hap.shape} do not match {len(self.pos)} positions"
            )
        hap = np.where(hap == MISSING, 0, hap)  # a missing call counts as ancestral, as in scan
        self.hap = hap.astype(np.float32, copy=False)  # BLAS for the reference haplotype's column
        h = hap.astype(np.int32, copy=False)
        n = h.shape[1]
        self.n = n
        self.cs = np.zeros((len(h) + 1, n), np.int32)
        np.cumsum(h, axis=0, out=self.cs[1:])
        # sum over the window's sites of h[s, i] * (derived count at s): row i of the Gram
        # matrix summed, so the most central haplotype needs no n x n matrix per window
        weighted = h.astype(np.int64) * h.sum(axis=1, dtype=np.int64)[:, None]
        self.cw = np.zeros((len(h) + 1, n), np.int64)
        np.cumsum(weighted, axis=0, out=self.cw[1:])
        self.s = settings
        self.bounds = (float(bounds[0]), float(bounds[1]))
        self.expected = density * settings.span / settings.columns

    def images(self, centres) -> np.ndarray:
        """(C, CHANNELS, n, columns) float32 windows centred on ``centres``."""
        s = self.s
        centres = np.asarray(centres, np.float64)
        w = s.span / s.columns
        edges = centres[:, None] - s.span / 2 + w * np.arange(s.columns + 1)
        b = np.searchsorted(self.pos, edges)  # (C, cols + 1)
        counts = self.cs[b[:, 1:]] - self.cs[b[:, :-1]]  # (C, cols, n)
        nsnp = (b[:, 1:] - b[:, :-1]).astype(np.float32)
        frac = counts / np.maximum(nsnp, 1)[:, :, None]
        b0, b1 = b[:, 0], b[:, -1]
        r = (self.cs[b1] - self.cs[b0]).astype(np.int64)  # derived alleles per haplotype
        # sum_j Hamming(i, j) = n r_i + sum_j r_j - 2 (G 1)_i: its arg-min is the central haplotype
        total = self.n * r - 2 * (self.cw[b1] - self.cw[b0])
        ref = np.argmin(total, axis=1)
        order = np.empty((len(centres), self.n), np.int64)
        same = np.ones((len(centres), s.columns, self.n), np.float32)
        for k in range(len(centres)):
            h = self.hap[b0[k] : b1[k]]
            g = h.T @ h[:, ref[k]]  # (n,)
            dist = r[k] + r[k, ref[k]] - 2 * np.rint(g).astype(np.int64)
            order[k] = np.argsort(dist, kind="stable")
            cm = np.zeros((len(h) + 1, self.n), np.int32)
            np.cumsum(h == h[:, ref[k], None], axis=0, out=cm[1:])
            e = b[k] - b0[k]
            n_k = nsnp[k][:, None]
            same[k] = np.where(n_k > 0, (cm[e[1:]] - cm[e[:-1]]) / np.maximum(n_k, 1), 1.0)
        frac = np.take_along_axis(frac, order[:, None, :], axis=2)
        same = np.take_along_axis(same, order[:, None, :], axis=2)
        mid = (edges[:, 1:] + edges[:, :-1]) / 2
        lo, hi = self.bounds
        inside = ((mid >= lo) & (mid <= hi)).astype(np.float32)
        out = np.empty((len(centres), CHANNELS, self.n, s.columns), np.float32)
        out[:, 0] = frac.transpose(0, 2, 1)
        out[:, 1] = np.minimum(nsnp / self.expected, 3.0)[:, None, :]
        out[:, 2] = inside[:, None, :]
        out[:, 3] = same.transpose(0, 2, 1)
        return out


def offset_bin(offset, settings: LocaliserSettings) -> np.ndarray:
    """Class of a sweep ``offset`` bp from the window centre: its bin, or ``bins`` (none)."""
    s = settings
    k = np.floor((np.asarray(offset, np.float64) + s.span / 2) / (s.span / s.bins))
    return np.where((k >= 0) & (k < s.bins), k, s.bins).astype(np.int64)


def training_windows(
    sweeps: list, neutrals: list, settings: LocaliserSettings, density: float, length: float, rng
) -> tuple[np.ndarray, np.ndarray]:
    """(x (N, 3, n, columns) float32, y (N,) int64) from simulated replicates (module doc)."""
    s = settings
    half = s.span / 2
    x, y = [], []
    for rep in sweeps:
        win = SpanWindows(rep.positions, rep.haplotypes, (0.0, length), s, density)
        off_in = rng.uniform(-half, half, s.in_windows)
        off_out = rng.uniform(half, max(half, 0.4 * length), s.out_windows) * rng.choice(
            [-1, 1], s.out_windows
        )
        off = np.concatenate([off_in, off_out])
        x.append(win.images(rep.sweep_position - off))
        y.append(offset_bin(off, s))
    for rep in neutrals:
        win = SpanWindows(rep.positions, rep.haplotypes, (0.0, length), s, density)
        x.append(win.images(rng.uniform(-half, length + half, s.neutral_windows)))
        y.append(np.full(s.neutral_windows, s.bins, np.int64))
    if not x:
        raise ConfigError("the localiser needs training replicates (none given)")
    x, y = np.concatenate(x), np.concatenate(y)
    if s.flip:  # a sweep's footprint is symmetric: mirrored windows, mirrored bins
        x = np.concatenate([x, x[..., ::-1]])
        y = np.concatenate([y, np.where(y < s.bins, s.bins - 1 - y, y)])
    return np.ascontiguousarray(x), y


@dataclasses.dataclass
class Trained:
    """A trained localiser: the model (eval mode), its ``arch``, the training history, validation
    quality and the training windows (the int8 calibration pool)."""

    model: object
    arch: dict
    history: list
    quality: dict
    x_train: np.ndarray
    density: float


def train(
    sweeps: list,
    neutrals: list,
    length: float,
    settings: LocaliserSettings,
    train_config: dict,
    *,
    seed: int,
    validation_fraction: float,
    device="cpu",
    checkpoint=None,
    log=None,
) -> Trained:
    """Train a localiser on simulated replicates (sweep at the centre of each sweep replicate):
    the first ``validation_fraction`` of each class validates, the rest trains; windows drawn
    with a generator seeded from ``seed`` (the workflow's rule and the benchmarks call this)."""
    import torch

    from ...models import build_model
    from ...seeds import derive_seed
    from ...train import TrainConfig, fit

    density = snp_density([len(r.positions) for r in neutrals], length * len(neutrals))
    n_val = max(1, round(validation_fraction * min(len(sweeps), len(neutrals))))
    rng = np.random.default_rng(derive_seed(seed, "windows"))
    x_tr, y_tr = training_windows(sweeps[n_val:], neutrals[n_val:], settings, density, length, rng)
    x_va, y_va = training_windows(sweeps[:n_val], neutrals[:n_val], settings, density, length, rng)
    torch.manual_seed(derive_seed(seed, "weights"))
    arch = settings.arch()
    model = build_model(arch)
    if log is not None:
        from ... import modelio

        log.info(
            "%d + %d training replicates -> %d training and %d validation windows %s, "
            "%d parameters, %.4f SNPs/bp",
            len(sweeps),
            len(neutrals),
            len(y_tr),
            len(y_va),
            x_tr.shape[1:],
            modelio.n_parameters(model),
            density,
        )
    history = fit(
        model,
        x_tr,
        y_tr,
        x_va,
        y_va,
        TrainConfig(**train_config),
        seed,
        checkpoint=checkpoint,
        device=device,
    )
    model.eval()
    with torch.no_grad():
        pred = model(torch.from_numpy(x_va)).argmax(1).numpy()
    inside = y_va < settings.bins
    quality = {
        "val_bin_accuracy": float((pred[inside] == y_va[inside]).mean()),
        "val_bin_within_one": float((np.abs(pred[inside] - y_va[inside]) <= 1).mean()),
        "val_none_recall": float((pred[~inside] == settings.bins).mean()),
    }
    return Trained(model, arch, history, quality, x_tr, density)


# --------------------------------------------------------------------------------------------------
# scan


def reach(settings: LocaliserSettings) -> float:
    """How far (bp) from a window's centre its smoothed votes reach: half a span plus the box."""
    return settings.span / 2 + settings.smooth * settings.span / settings.bins


def lattice(bounds, grid, settings: LocaliserSettings) -> np.ndarray:
    """Window centres every ``step`` bp from ``bounds[0] - span / 2`` whose votes reach a grid
    point; the same lattice for every region of a sequence, so regions add up to the whole scan."""
    s = settings
    grid = np.asarray(grid, np.float64)
    if len(grid) == 0:
        return np.zeros(0)
    c0 = float(bounds[0]) - s.span / 2
    r = reach(s)
    k0 = max(0, math.ceil((grid.min() - r - c0) / s.step - 1e-9))
    k1 = math.floor((grid.max() + r - c0) / s.step + 1e-9)
    return c0 + s.step * np.arange(k0, k1 + 1)


def _segment(u, rows, t):
    """(knot index j, fraction t - j, u at j, u at j + 1) of ``t`` in [0, bins + 1] on rows ``rows``."""
    j = np.clip(np.floor(t).astype(np.int64), 0, u.shape[1] - 2)
    return j, t - j, u[rows, j], u[rows, j + 1]


def _integral(u, q, rows, t):
    """Integral from 0 to ``t`` (in [0, bins + 1]) of the piecewise-linear function with values
    ``u[rows]`` at 0, 1, ..., bins + 1; ``q``: its cumulative integrals at those knots."""
    j, fr, a, b = _segment(u, rows, t)
    return q[rows, j] + fr * a + 0.5 * fr * fr * (b - a)


def _box(u, q, rows, t, eta: float):
    """Each window's vote at ``t`` (bin-centre units, bin k's centre at k + 1): ``u`` interpolated
    linearly and zero outside the window's span [0.5, bins + 0.5], averaged over [t - eta, t + eta]."""
    lo, hi = 0.5, u.shape[1] - 1.5
    if eta == 0:
        _, fr, a, b = _segment(u, rows, t)
        return np.where((t >= lo) & (t <= hi), a + fr * (b - a), 0.0)
    upper = _integral(u, q, rows, np.clip(t + eta, lo, hi))
    return (upper - _integral(u, q, rows, np.clip(t - eta, lo, hi))) / (2 * eta)


def votes(logp: np.ndarray, centres: np.ndarray, grid: np.ndarray, settings: LocaliserSettings):
    """(p_sweep, log_odds) of each grid point from the windows' log-probabilities (C, bins + 1)
    at ``centres`` (sorted): the interpolated votes of the windows around the point, each averaged
    over a box of +-``smooth`` bins around it (module doc)."""
    s = settings
    grid = np.asarray(grid, np.float64)
    if len(centres) == 0 or len(grid) == 0:
        return np.full(len(grid), np.nan), np.full(len(grid), np.nan)
    width = s.span / s.bins
    # knot values of each window's votes at bin centres 1..bins (0 and bins + 1: zero beyond)
    shape = (len(centres), s.bins + 2)
    u_llr, u_p, u_one = np.zeros(shape), np.zeros(shape), np.ones(shape)
    u_llr[:, 1:-1] = logp[:, : s.bins] - logp[:, s.bins, None]
    u_p[:, 1:-1] = np.exp(logp[:, : s.bins])
    knots = []
    for u in (u_llr, u_p, u_one):
        q = np.zeros(shape)
        np.cumsum((u[:, 1:] + u[:, :-1]) / 2, axis=1, out=q[:, 1:])
        knots.append((u, q))
    llr, prob, cover = np.zeros(len(grid)), np.zeros(len(grid)), np.zeros(len(grid))
    r = reach(s)
    first = np.searchsorted(centres, grid - r, side="left")
    last = np.searchsorted(centres, grid + r, side="right")
    for k in range(int((last - first).max(initial=0))):
        c = first + k
        ok = c < last
        ci = np.where(ok, c, 0)
        t = (grid - centres[ci] + s.span / 2) / width + 0.5
        for out, (u, q) in zip((llr, prob, cover), knots, strict=True):
            out += np.where(ok, _box(u, q, ci, t, s.smooth), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(cover > 0, prob / np.maximum(cover, 1e-12), np.nan)
    return p, np.where(cover > 0, llr, np.nan)


def window_log_probs(engine, windows: list[SpanWindows], centres, batch_size: int) -> np.ndarray:
    """Mean over ``windows`` (one per haplotype subset) of the engine's log-probabilities."""
    total = np.zeros((len(centres), 0))
    for win in windows:
        parts = []
        for i in range(0, len(centres), batch_size):
            z = engine.logits(win.images(centres[i : i + batch_size]))
            z = z - z.max(axis=1, keepdims=True)
            parts.append(z - np.log(np.exp(z).sum(axis=1, keepdims=True)))
        lp = np.concatenate(parts) if parts else np.zeros((0, 0))
        total = lp if total.shape[1] == 0 else total + lp
    return total / max(1, len(windows))


def scan_track(
    positions,
    haplotypes,
    grid,
    *,
    bounds,
    engine,
    settings: LocaliserSettings,
    density: float,
    subsets: np.ndarray | None = None,
    batch_size: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """(p_sweep, log_odds) of the localiser at ``grid`` over one sequence (module doc).

    ``haplotypes`` (sites, n) may be a lazy array that unpacks row ranges; only the sites under
    the windows are read. ``subsets``: ``(K, m)`` haplotype indices (``sample_size``); the
    windows' log-probabilities are averaged over them.
    """
    s = settings
    pos = np.asarray(positions, np.float64)
    grid = np.asarray(grid, np.float64)
    centres = lattice(bounds, grid, s)
    if len(centres) == 0:
        return np.full(len(grid), np.nan), np.full(len(grid), np.nan)
    a = int(np.searchsorted(pos, centres[0] - s.span / 2, side="left"))
    b = int(np.searchsorted(pos, centres[-1] + s.span / 2, side="right"))
    hap = np.asarray(haplotypes[a:b])
    if subsets is None:
        subsets = np.arange(hap.shape[1])[None]
    windows = [SpanWindows(pos[a:b], hap[:, rows], bounds, s, density) for rows in subsets]
    logp = window_log_probs(engine, windows, centres, batch_size)
    return votes(logp, centres, grid, s)


def scan_chromosome(
    hd,
    engine,
    *,
    settings: LocaliserSettings,
    n_points: int,
    span: str = "snps",
    n_regions: int = 1,
    region: int = 0,
    subsets: np.ndarray | None = None,
    batch_size: int = 256,
    timings: dict | None = None,
):
    """The localiser's score table of one chromosome (or one region of its grid), with the
    columns of ``scan.scan_chromosome``: ``window_start``/``window_end`` are the first and last
    SNP within ``span / 2`` of the grid point and ``n_snps`` their count. The density channel
    divides by the chromosome's own mean SNP density over its grid span."""
    import time

    from .scan import grid_span, make_grid, region_slice, score_table

    lo, hi = grid_span(hd, span)
    grid = make_grid(lo, hi, n_points)[region_slice(n_points, n_regions, region)]
    pos = np.asarray(hd.positions, np.float64)
    density = snp_density(hd.n_sites, max(hi - lo, 1.0))
    t0 = time.perf_counter()
    p_sweep, log_odds = scan_track(
        pos,
        hd.haplotypes,
        grid,
        bounds=(lo, hi),
        engine=engine,
        settings=settings,
        density=density,
        subsets=subsets,
        batch_size=batch_size,
    )
    if timings is not None:
        timings["score"] = timings.get("score", 0.0) + time.perf_counter() - t0
        k = 1 if subsets is None else len(subsets)
        timings["windows"] = timings.get("windows", 0) + len(lattice((lo, hi), grid, settings)) * k
    a = np.searchsorted(pos, grid - settings.span / 2, side="left")
    b = np.searchsorted(pos, grid + settings.span / 2, side="right")
    return score_table(hd.chrom, grid, pos, a, b, p_sweep, log_odds)


def scan_replicates(
    replicates,
    engine,
    *,
    settings: LocaliserSettings,
    sequence_length: float,
    n_points: int,
    density: float,
    model_haplotypes: int,
    subsets: int = 1,
    seed: int = 0,
    batch_size: int = 256,
):
    """``scan_metrics.ReplicateTracks`` of the localiser over simulated replicates on a grid over
    [0, L]: each replicate scanned as a sequence of its own, with its own haplotype subsets (from
    ``seed`` and its index), as ``scan_metrics.scan_replicates`` does for the classifier."""
    from ...seeds import derive_seed
    from .sample_size import draw_subsets, resolve
    from .scan import make_grid
    from .scan_metrics import ReplicateTracks

    grid = make_grid(0.0, sequence_length, n_points)
    p_sweep = np.full((len(replicates), len(grid)), np.nan)
    lodds = np.full((len(replicates), len(grid)), np.nan)
    for k, rep in enumerate(replicates):
        n = rep.haplotypes.shape[1]
        size = resolve(n, model_haplotypes, subsets=subsets, source=f"replicate {k}")
        rows = draw_subsets(n, model_haplotypes, size.subsets, derive_seed(seed, "subsets", k))
        if len(rep.positions) == 0:
            continue
        p_sweep[k], lodds[k] = scan_track(
            rep.positions,
            rep.haplotypes,
            grid,
            bounds=(0.0, sequence_length),
            engine=engine,
            settings=settings,
            density=density,
            subsets=rows,
            batch_size=batch_size,
        )
    true = np.array([r.sweep_position for r in replicates], np.float64)
    return ReplicateTracks(grid, p_sweep, lodds, true)


# --------------------------------------------------------------------------------------------------
# engines


def open_engine(
    kind: str,
    model_path: str | os.PathLike,
    *,
    onnx_path: str | os.PathLike | None,
    settings: LocaliserSettings,
    haplotypes: int,
    batch_size: int = 256,
    threads: int = 1,
):
    """(engine, None), or (None, reason) when engine ``kind`` cannot run the localiser."""
    from ...runtime import make_engine

    if kind not in ENGINES:
        return None, (
            f"model {LOCALISER} cannot run in engine {kind}: it runs in {', '.join(ENGINES)} "
            "(four-channel float windows; the lookup engines take binary images)"
        )
    shape = input_shape(settings, haplotypes)
    path = model_path
    if kind.startswith("onnx"):
        if onnx_path is None:
            return None, f"model {LOCALISER} in engine {kind} needs its ONNX export"
        path = onnx_path
    engine = make_engine(
        kind,
        path,
        batch_size=batch_size,
        threads=threads,
        input_shape=shape,
        input_dtypes=("float32",),
    )
    model = getattr(engine, "model", None)  # a torch engine holds the PositionNet itself
    channels = model.trunk[0].in_channels if model is not None else (engine.input_shape or [0])[0]
    if channels and channels != CHANNELS:
        raise InputFormatError(
            f"{path}: a localiser of {channels}-channel windows; this version makes "
            f"{CHANNELS}-channel windows (module doc): retrain it (delete results/sweeps/localiser "
            "and the scan's ONNX exports of model 'position', then rerun)"
        )
    if engine.input_shape is not None and tuple(engine.input_shape) != shape:
        return None, (
            f"model {LOCALISER} in engine {kind} takes inputs of shape {engine.input_shape}, "
            f"not {shape}"
        )
    if engine.n_classes != settings.bins + 1:
        raise InputFormatError(
            f"{path}: the localiser has {engine.n_classes} outputs, but apps.sweeps.scan.localiser.bins = "
            f"{settings.bins} needs {settings.bins + 1}"
        )
    return engine, None


__all__ = [
    "ENGINES",
    "LOCALISER",
    "LocaliserSettings",
    "SpanWindows",
    "input_shape",
    "lattice",
    "offset_bin",
    "open_engine",
    "scan_chromosome",
    "scan_replicates",
    "scan_track",
    "snp_density",
    "Trained",
    "train",
    "training_windows",
    "votes",
]
