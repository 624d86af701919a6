"""Classic summary-statistic sweep scanners, a baseline beside the CNN on the same grid.

``classic_scores`` gives one score per grid point, higher = more sweep-like, and
``scan_replicates_classic`` wraps it into ``scan_metrics.ReplicateScan`` objects on the grid of the
CNN's replicate scans (``scan.make_grid(0, L, n_points)``), so ``scan_metrics.evaluate`` applies
unchanged. Statistics (``STATISTICS``):

* ``h12``: Garud et al.'s (2015) H12, ``allel.garud_h`` on the window of ``window_snps`` SNPs
  nearest each grid point (``scan.window_bounds``, the CNN's windows) or on the SNPs within
  ``window_bp / 2`` of it.
* ``mu``: RAiSD's mu statistic (Alachiotis & Pavlidis 2018, RAiSD >= 2.0 normalisation) over every
  sliding window of ``window_snps`` SNPs (step 1 SNP), at the window centre; a grid point takes the
  largest mu among the windows whose centre is nearer to it than to any other grid point (so the
  grid's arg-max is RAiSD's best window rounded to the grid); a grid point without such a window
  takes the linear interpolation of the window-centre values (RAiSD ``-G``). See ``raisd_mu``.
* ``clr``: a SweepFinder/SweeD composite likelihood ratio (Nielsen et al. 2005; Pavlidis et al.
  2013) with each grid point as the candidate sweep position, alpha maximised on a grid; the
  background SFS is the replicate's own unfolded SFS (``allel.sfs``), as SweeD does without
  ``-isfs``, unless ``background_sfs`` is given. See ``clr_scores``.
* ``pi``: the diversity dip, minus nucleotide diversity per bp in the window
  (``allel.mean_pairwise_difference`` summed over the window's SNPs, divided by the window's span:
  the first to last SNP of a SNP window, or ``window_bp`` clipped to [0, L]).
* ``tajima_d``: minus Tajima's D of the window (``allel.tajima_d``; NaN below 3 SNPs).

Input: ``positions`` (n_sites,) increasing, ``haplotypes`` (n_sites, n_haplotypes) uint8 with
0 = ancestral, 1 = derived and ``io.MISSING`` (255) = no call. Sites that are not segregating
among their called haplotypes (monomorphic, all missing) are dropped first, so "SNP" means a
segregating site throughout. Missing calls: allele counts (``mu``'s SFS factor, ``clr``, ``pi``,
``tajima_d``) count called haplotypes only (``clr`` projects the SFS to each site's called sample
size, as SweeD does); haplotype identity (``h12``, ``mu``'s LD factor) reads a missing call as
ancestral, because ``allel.garud_h`` would count a haplotype with a missing call as a distinct
haplotype. A grid point scores NaN when there is no SNP at all (or, for ``window_bp``, none within
the window); with fewer SNPs than ``window_snps`` every window is all the SNPs there are.
"""

from __future__ import annotations

from collections.abc import Sequence

import allel
import numpy as np

from ...errors import ConfigError
from .io import MISSING
from .scan import make_grid, window_bounds
from .scan_metrics import ReplicateScan

STATISTICS = ("h12", "mu", "clr", "pi", "tajima_d")
DEFAULT_WINDOW_SNPS = 50
"""RAiSD's default window (``-w 50``), also ASDEC's; used for every window statistic."""
MU_EPSILON = 1e-10
"""RAiSD's stand-in for a zero mu_SFS or mu_LD numerator."""

# SweepFinder-style sweep likelihood: p*(alpha * d) tabulated on a log grid of this step
_LOG_STEP = 0.02
_LOG_FLOOR = 1e-300
_CLR_BLOCK = 2_000_000  # grid points x classes x distance bins binned at once (memory bound)


# ----------------------------------------------------------------------------- input


def _segregating(positions, haplotypes):
    """(positions, haplotypes, derived counts, called counts) of the segregating sites only."""
    pos = np.asarray(positions, dtype=np.float64)
    h = np.asarray(haplotypes)
    if h.ndim != 2 or h.shape[0] != pos.shape[0]:
        raise ConfigError(
            f"haplotypes must be (n_sites, n_haplotypes) with n_sites = {pos.shape[0]}, "
            f"got shape {h.shape}"
        )
    h = h.astype(np.uint8, copy=False)
    called = (h != MISSING).sum(axis=1)
    dac = (h == 1).sum(axis=1)
    keep = (dac > 0) & (dac < called)
    if pos.size > 1 and np.any(np.diff(pos[keep]) < 0):
        raise ConfigError("positions must be sorted in increasing order")
    return pos[keep], h[keep], dac[keep].astype(np.int64), called[keep].astype(np.int64)


def _as_ancestral(h: np.ndarray) -> np.ndarray:
    """Missing calls read as ancestral (0)."""
    return np.where(h == MISSING, np.uint8(0), h)


def _allele_counts(dac: np.ndarray, called: np.ndarray) -> allel.AlleleCountsArray:
    return allel.AlleleCountsArray(np.stack([called - dac, dac], axis=1).astype(np.int32))


def _windows(pos, grid, window_snps, window_bp):
    """(start, stop) SNP indices of each grid point's window (empty: start == stop)."""
    if window_bp is not None:
        if not window_bp > 0:
            raise ConfigError(f"window_bp must be positive, got {window_bp}")
        start = np.searchsorted(pos, grid - window_bp / 2.0, side="left")
        stop = np.searchsorted(pos, grid + window_bp / 2.0, side="right")
        return start.astype(np.int64), stop.astype(np.int64)
    if window_snps < 1:
        raise ConfigError(f"window_snps must be at least 1, got {window_snps}")
    return window_bounds(pos, grid, int(window_snps))


# ----------------------------------------------------------------------------- H12, pi, D


def _h12(h, grid, start, stop):
    h = _as_ancestral(h)
    out = np.full(len(grid), np.nan)
    for k, (a, b) in enumerate(zip(start, stop, strict=True)):
        if b > a:
            out[k] = allel.garud_h(h[a:b])[1]
    return out


def _pi_dip(pos, dac, called, grid, start, stop, window_bp, sequence_length):
    mpd = allel.mean_pairwise_difference(_allele_counts(dac, called))
    csum = np.concatenate([[0.0], np.cumsum(mpd)])
    total = csum[stop] - csum[start]
    if window_bp is not None:
        span = np.minimum(grid + window_bp / 2.0, sequence_length) - np.maximum(
            grid - window_bp / 2.0, 0.0
        )
    else:
        last = np.clip(stop - 1, 0, max(len(pos) - 1, 0))
        span = (pos[last] - pos[np.minimum(start, last)] + 1.0) if len(pos) else np.ones(len(grid))
    out = -total / np.maximum(span, 1.0)
    return np.where(stop > start, out, np.nan)


def _tajima(dac, called, grid, start, stop):
    ac = _allele_counts(dac, called)
    out = np.full(len(grid), np.nan)
    for k, (a, b) in enumerate(zip(start, stop, strict=True)):
        if b - a >= 3:
            out[k] = -allel.tajima_d(ac[a:b])
    return out


# ----------------------------------------------------------------------------- RAiSD mu


def raisd_mu(
    positions,
    haplotypes,
    *,
    sequence_length: float,
    window_snps: int = DEFAULT_WINDOW_SNPS,
    sfs_slack: int = 1,
) -> dict[str, np.ndarray]:
    """RAiSD's mu over every sliding window of W SNPs (step 1), at the window centres.

    For the window of SNPs i .. i+W-1 (positions x_i .. x_{i+W-1}), with S the number of SNPs in
    the region, L its length in bp, n the number of haplotypes and a_n = sum_{j=1}^{n-1} 1/j::

        mu_VAR = (x_{i+W-1} - x_i) / (L * W) * S
        mu_SFS = a_n * #{SNPs in the window with derived count <= c or >= n_called - c} / W
        mu_LD  = (P_exL * S_exL + P_exR * S_exR) / (P_L * P_R)
        mu     = mu_VAR * mu_SFS * mu_LD

    (c = ``sfs_slack``, RAiSD ``-c``, default 1: singletons and (n-1)-tons.) For mu_LD the window
    splits into its first floor(W/2) SNPs (left) and the rest (right); a SNP's pattern is its 0/1
    vector over the haplotypes (identical vectors, not complements, are one pattern, as RAiSD's
    pattern pool); P_L, P_R count the distinct patterns on each side, P_exL the left patterns that
    do not occur on the right, S_exL the left SNPs whose pattern does not occur on the right
    (likewise for the right). As in RAiSD, a zero edge count stands in as ``MU_EPSILON`` in mu_SFS
    and a zero mu_LD numerator makes mu_LD = ``MU_EPSILON``. The window centre is (x_i + x_{i+W-1}) / 2. mu_VAR and mu_SFS are the RAiSD >= 2.0
    versions, scaled to be about 1 under neutrality. With fewer than W SNPs the one window is all
    of them (W = S). Returns ``centre``, ``start``, ``end``, ``mu_var``, ``mu_sfs``, ``mu_ld``,
    ``mu`` (empty arrays without SNPs).
    """
    pos, h, dac, called = _segregating(positions, haplotypes)
    n_snps, n_haps = h.shape
    keys = ("centre", "start", "end", "mu_var", "mu_sfs", "mu_ld", "mu")
    if n_snps == 0:
        return {k: np.zeros(0) for k in keys}
    w = int(min(window_snps, n_snps))
    if w < 1:
        raise ConfigError(f"window_snps must be at least 1, got {window_snps}")
    first = np.arange(n_snps - w + 1)
    last = first + w - 1
    start, end = pos[first], pos[last]
    mu_var = (end - start) / (float(sequence_length) * w) * n_snps

    a_n = float(np.sum(1.0 / np.arange(1, n_haps)))
    edge = ((dac <= sfs_slack) | (dac >= called - sfs_slack)).astype(np.int64)
    csum = np.concatenate([[0], np.cumsum(edge)])
    n_edge = csum[last + 1] - csum[first]
    mu_sfs = a_n * np.where(n_edge > 0, n_edge, MU_EPSILON) / w

    mu_ld = _mu_ld(_as_ancestral(h), w)
    return {
        "centre": (start + end) / 2.0,
        "start": start,
        "end": end,
        "mu_var": mu_var,
        "mu_sfs": mu_sfs,
        "mu_ld": mu_ld,
        "mu": mu_var * mu_sfs * mu_ld,
    }


def _mu_ld(h: np.ndarray, w: int, block: int = 20_000) -> np.ndarray:
    """mu_LD of every window of ``w`` consecutive SNPs of ``h`` (sites x haplotypes, 0/1)."""
    _, ids = np.unique(h, axis=0, return_inverse=True)
    ids = ids.reshape(-1)
    n_win = len(ids) - w + 1
    half = w // 2
    out = np.empty(n_win)
    if half == 0:  # a one-SNP window has no left half
        out[:] = MU_EPSILON
        return out
    views = np.lib.stride_tricks.sliding_window_view(ids, w)
    earlier_l = np.tril(np.ones((half, half), bool), -1)
    earlier_r = np.tril(np.ones((w - half, w - half), bool), -1)
    for a in range(0, n_win, block):
        v = views[a : a + block]
        left, right = v[:, :half], v[:, half:]
        cross = left[:, :, None] == right[:, None, :]
        l_shared, r_shared = cross.any(axis=2), cross.any(axis=1)
        l_first = ~((left[:, :, None] == left[:, None, :]) & earlier_l).any(axis=2)
        r_first = ~((right[:, :, None] == right[:, None, :]) & earlier_r).any(axis=2)
        num = (l_first & ~l_shared).sum(1) * (~l_shared).sum(1) + (r_first & ~r_shared).sum(1) * (
            ~r_shared
        ).sum(1)
        den = l_first.sum(1) * r_first.sum(1)
        out[a : a + block] = np.where(num > 0, num / den, MU_EPSILON)
    return out


def _pool_max(centres: np.ndarray, values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Per grid point the largest value among the centres nearest to it; none: interpolation."""
    if len(grid) == 1:
        return np.array([values.max()])
    order = np.argsort(grid)
    g = grid[order]
    nearest = np.searchsorted((g[1:] + g[:-1]) / 2.0, centres, side="left")
    pooled = np.full(len(g), -np.inf)
    np.maximum.at(pooled, nearest, values)
    empty = ~np.isfinite(pooled)
    pooled[empty] = np.interp(g[empty], centres, values)
    out = np.empty(len(g))
    out[order] = pooled
    return out


# ----------------------------------------------------------------------------- CLR


def _log_comb(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """log C(a, b), -inf where b < 0 or b > a."""
    a, b = np.broadcast_arrays(np.asarray(a, np.int64), np.asarray(b, np.int64))
    ok = (b >= 0) & (b <= a)
    lf = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, max(int(a.max()), 1) + 1)))])
    out = np.full(a.shape, -np.inf)
    out[ok] = lf[a[ok]] - lf[b[ok]] - lf[a[ok] - b[ok]]
    return out


def _hypergeom_matrix(n: int, m: int) -> np.ndarray:
    """H[i, x] = P(x derived among m of n haplotypes drawn without replacement | i derived)."""
    i = np.arange(n + 1)[:, None]
    x = np.arange(m + 1)[None, :]
    return np.exp(_log_comb(i, x) + _log_comb(n - i, m - x) - _log_comb(n, m))


def sweep_sfs_table(background: np.ndarray, ad: np.ndarray) -> np.ndarray:
    """SweepFinder's SFS at scaled distance ``ad`` = alpha * d from a sweep, (len(ad), n + 1).

    Each of the n sampled lineages escapes the sweep (recombines away) with probability
    P_e = 1 - exp(-ad); the k lineages that escape keep their neutral genealogy and the n - k that
    do not coalesce into one swept lineage, so the sample behaves as k + 1 lineages drawn from the
    neutral population (Nielsen et al. 2005; SweeD ``createPROBS``). With p the background SFS of n
    haplotypes (``background[b]``, b = 0..n) and q_m(x) its hypergeometric projection to m
    lineages::

        p*_b = Binom(n; n, P_e) p_b
             + sum_{k=0}^{n-1} Binom(k; n, P_e) [ q_{k+1}(x1) x1 + q_{k+1}(b) (k + 1 - b) ] / (k + 1)

    with x1 = b + 1 - n + k (the swept lineage carries the derived allele and adds n - k copies)
    and q_{k+1}(x) = 0 outside 0 <= x <= k + 1. Rows are not conditioned on segregation.
    """
    p = np.asarray(background, dtype=np.float64)
    n = len(p) - 1
    m_mat = np.zeros((n + 1, n + 1))  # m_mat[k, b]: SFS given k escaping lineages
    m_mat[n] = p
    b = np.arange(n + 1)
    for k in range(n):
        m = k + 1
        q = p @ _hypergeom_matrix(n, m)  # q[x], x = 0..m
        x1 = b + 1 - n + k
        ok1 = (x1 >= 0) & (x1 <= m)
        ok2 = b <= m
        m_mat[k] = np.where(ok1, q[np.clip(x1, 0, m)] * x1, 0.0) + np.where(
            ok2, q[np.clip(b, 0, m)] * (m - b), 0.0
        )
        m_mat[k] /= m
    # Binom(k; n, P_e) with log P_e = log(1 - exp(-ad)) and log(1 - P_e) = -ad
    ad = np.asarray(ad, dtype=np.float64)[:, None]
    k = np.arange(n + 1)[None, :]
    with np.errstate(divide="ignore"):
        log_pe = np.log(-np.expm1(-ad))
    log_w = _log_comb(n, k) + np.where(k > 0, k * log_pe, 0.0) - (n - k) * ad
    return np.exp(log_w) @ m_mat


def _segregating_log(sfs_rows: np.ndarray) -> np.ndarray:
    """log of rows conditioned on classes 1..n-1 (classes 0 and n: -inf)."""
    n = sfs_rows.shape[-1] - 1
    seg = sfs_rows[..., 1:n]
    seg = seg / np.maximum(seg.sum(axis=-1, keepdims=True), _LOG_FLOOR)
    out = np.full(sfs_rows.shape, -np.inf)
    out[..., 1:n] = np.log(np.maximum(seg, _LOG_FLOOR))
    return out


def clr_scores(
    positions,
    haplotypes,
    grid,
    *,
    alphas: Sequence[float] | None = None,
    background_sfs: np.ndarray | None = None,
    sequence_length: float | None = None,
) -> np.ndarray:
    """SweepFinder/SweeD composite likelihood ratio with each grid point as the sweep position.

    CLR(X) = max(0, max_alpha sum_i [log p*_{b_i}(alpha d_i) - log p_{b_i}]), d_i = |x_i - X|,
    over the SNPs i (derived count b_i of n_i called haplotypes), where p is the background SFS
    conditioned on segregation and p* the sweep model of ``sweep_sfs_table``, also conditioned on
    segregation (SNP data have no invariant sites). alpha -> infinity gives p* = p, so CLR >= 0.
    Sites with fewer called haplotypes use p and p* projected hypergeometrically to their n_i.
    d_i < 1 bp counts as 1 bp (SweepFinder's rule for a SNP on the candidate site).

    ``background_sfs``: unfolded SFS counts or frequencies over 0..n (n = the largest number of
    called haplotypes); default ``allel.sfs`` of the fully called sites. ``alphas`` (1/bp):
    default 1 / D for 24 sweep footprints D log-spaced from 100 bp to the region's length
    (``sequence_length``, else the SNPs' span).

    Computation: p*(alpha d) is tabulated on a log grid of alpha * d with step ``_LOG_STEP``
    (2 %, SweeD also tabulates it), with alphas rounded onto that grid, so log(alpha d) = log alpha
    + log d splits into a per-alpha table offset and a per-(grid point, SNP) position: each grid
    point's SNPs are binned (linear interpolation weights) by class and log-distance, and one matrix
    product with the shifted tables gives the log-likelihood ratio of every (grid point, alpha).
    """
    pos, _, dac, called = _segregating(positions, haplotypes)
    grid = np.asarray(grid, dtype=np.float64)
    if len(pos) == 0:
        return np.full(len(grid), np.nan)
    n = int(called.max())
    if alphas is None:
        length = float(sequence_length) if sequence_length else max(pos[-1] - pos[0], 1.0)
        alphas = 1.0 / np.geomspace(100.0, max(length, 200.0), 24)
    alphas = np.asarray(alphas, dtype=np.float64)
    if alphas.ndim != 1 or alphas.size == 0 or not np.all(alphas > 0):
        raise ConfigError("alphas must be a non-empty list of positive numbers")
    if background_sfs is None:
        background = allel.sfs(dac[called == n], n=n).astype(np.float64)
    else:
        background = np.array(background_sfs, dtype=np.float64)
        if background.shape != (n + 1,):
            raise ConfigError(f"background_sfs must have n + 1 = {n + 1} classes")
    background[0] = background[n] = 0.0  # SNPs only
    if background.sum() <= 0:
        background[1:n] = 1.0
    background /= background.sum()

    # table index t <-> alpha * d = alpha_min * exp(t * step); alpha_a sits at offset[a]
    log_alpha_min = np.log(alphas.min())
    offset = np.rint((np.log(alphas) - log_alpha_min) / _LOG_STEP).astype(np.int64)
    span = max(float(np.max(np.abs(pos[:, None] - grid[None, [0, -1]]))), 1.0)
    n_dist = int(np.ceil(np.log(span) / _LOG_STEP)) + 2  # log d in [0, log span]
    n_table = n_dist + int(offset.max()) + 1
    ad = np.exp(log_alpha_min + _LOG_STEP * np.arange(n_table))
    sweep = sweep_sfs_table(background, ad)  # (n_table, n + 1)

    # classes: (called sample size, derived count) pairs present; table of log p* - log p
    sizes, size_idx = np.unique(called, return_inverse=True)
    classes, class_idx = np.unique(size_idx * (n + 1) + dac, return_inverse=True)
    table = np.zeros((len(classes), n_table))
    for j, m in enumerate(sizes):
        proj = _hypergeom_matrix(n, int(m))
        mine = np.flatnonzero(classes // (n + 1) == j)
        b = classes[mine] % (n + 1)  # 1 <= b < m: segregating classes only
        table[mine] = (
            _segregating_log(sweep @ proj)[:, b] - _segregating_log(background @ proj)[b]
        ).T
    shifted = np.stack([table[:, o : o + n_dist] for o in offset])  # (A, C, n_dist)
    shifted = shifted.reshape(len(offset), -1)

    n_cls = len(classes)
    out = np.empty(len(grid))
    block = max(1, _CLR_BLOCK // (n_cls * n_dist))
    for a in range(0, len(grid), block):
        g = grid[a : a + block]
        u = np.log(np.maximum(np.abs(pos[None, :] - g[:, None]), 1.0)) / _LOG_STEP  # (G, S)
        i0 = np.minimum(u.astype(np.int64), n_dist - 2)
        f = u - i0
        base = (np.arange(len(g))[:, None] * n_cls + class_idx[None, :]) * n_dist + i0
        size = len(g) * n_cls * n_dist
        counts = np.bincount(base.ravel(), weights=(1.0 - f).ravel(), minlength=size)
        counts += np.bincount(base.ravel() + 1, weights=f.ravel(), minlength=size)[:size]
        llr = counts.reshape(len(g), -1) @ shifted.T  # (G, A)
        out[a : a + block] = np.maximum(llr.max(axis=1), 0.0)
    return out


# ----------------------------------------------------------------------------- API


def classic_scores(
    positions,
    haplotypes,
    grid,
    statistic: str,
    *,
    sequence_length: float,
    window_snps: int = DEFAULT_WINDOW_SNPS,
    window_bp: float | None = None,
    alphas: Sequence[float] | None = None,
    background_sfs: np.ndarray | None = None,
) -> np.ndarray:
    """One score per grid point, higher = more sweep-like (see the module docstring).

    ``window_snps`` / ``window_bp`` choose the window of ``h12``, ``pi`` and ``tajima_d``
    (``window_bp`` wins when given); ``mu`` slides ``window_snps`` SNPs (RAiSD has no bp windows,
    so ``window_bp`` is an error there); ``clr`` uses every SNP (``alphas``, ``background_sfs``:
    see ``clr_scores``).
    """
    if statistic not in STATISTICS:
        raise ConfigError(f"unknown statistic {statistic!r}; choose from {', '.join(STATISTICS)}")
    grid = np.atleast_1d(np.asarray(grid, dtype=np.float64))
    if statistic == "clr":
        return clr_scores(
            positions,
            haplotypes,
            grid,
            alphas=alphas,
            background_sfs=background_sfs,
            sequence_length=sequence_length,
        )
    if statistic == "mu":
        if window_bp is not None:
            raise ConfigError("mu slides windows of window_snps SNPs; window_bp does not apply")
        mu = raisd_mu(
            positions, haplotypes, sequence_length=sequence_length, window_snps=window_snps
        )
        if len(mu["mu"]) == 0:
            return np.full(len(grid), np.nan)
        return _pool_max(mu["centre"], mu["mu"], grid)
    pos, h, dac, called = _segregating(positions, haplotypes)
    if len(pos) == 0:
        return np.full(len(grid), np.nan)
    start, stop = _windows(pos, grid, window_snps, window_bp)
    if statistic == "h12":
        return _h12(h, grid, start, stop)
    if statistic == "pi":
        return _pi_dip(pos, dac, called, grid, start, stop, window_bp, float(sequence_length))
    return _tajima(dac, called, grid, start, stop)


def scan_replicates_classic(
    replicates,
    statistic: str,
    *,
    sequence_length: float,
    n_points: int,
    **kwargs,
) -> list[ReplicateScan]:
    """Score simulated replicates (``simulate.Replicate``) on the CNN's grid over [0, L].

    The grid is ``scan.make_grid(0, sequence_length, n_points)``, as ``scan_metrics
    .scan_replicates``; ``kwargs`` go to ``classic_scores``.
    """
    grid = make_grid(0.0, sequence_length, n_points)
    return [
        ReplicateScan(
            grid.copy(),
            classic_scores(
                rep.positions,
                rep.haplotypes,
                grid,
                statistic,
                sequence_length=sequence_length,
                **kwargs,
            ),
            rep.sweep_position,
        )
        for rep in replicates
    ]


__all__ = [
    "DEFAULT_WINDOW_SNPS",
    "MU_EPSILON",
    "STATISTICS",
    "classic_scores",
    "clr_scores",
    "raisd_mu",
    "scan_replicates_classic",
    "sweep_sfs_table",
]
