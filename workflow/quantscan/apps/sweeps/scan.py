"""Genome-wide sweep scan: grid, windows, batched encoding and inference, p-values, peaks, tracks.

A chromosome is scanned at ``n_points`` evenly spaced grid points over [first SNP, last SNP]
(``span="snps"``, default) or [0, length] (``span="length"``). Each grid point gets the window of
``width`` SNPs that training used (``images.centre_window``: the SNPs nearest the point, clipped to
the data; zero-padded on the right when the chromosome has fewer SNPs, as ``images.pad_window``),
encoded with ``images.encode`` exactly as in training. Missing genotypes (``io.MISSING``) are
encoded as 0, i.e. ancestral, which is what SweepNet images mean by an empty pixel; the input's
``stats["missing_calls"]`` says how many there were.

Windows are gathered for a whole batch of grid points with one fancy-indexing step (sites-major)
and encoded with the vectorised ``images.encode_sites_major`` (``images.encode``'s images, with
both sorts as whole-row gathers); encoding costs ~0.1 ms per 128 x 128 window, a few percent of
the fastest engine's time (benchmarks/scan_engines.py profiles it).

Regions: ``region_slice`` splits the grid into contiguous chunks; a region job scans only its grid
points (and touches only the SNPs of their windows), and ``merge_scores`` concatenates the region
tables in order. Results equal those of one whole-chromosome scan (every window is independent).

P-values: ``empirical_pvalues`` compares each score with the per-window scores of scans of matching
neutral simulations: ``p = (1 + #{null >= s}) / (1 + n_null)``. Per-window (not per-replicate
maximum) because a p-value per grid point must be calibrated against one window; the maximum of a
neutral replicate depends on the replicate's length and grid density, so it only calibrates regions
of that exact size (scan_metrics uses it for ASDEC's per-replicate FPR). Per-window p-values are
not corrected for the number of grid points: call peaks at a threshold that accounts for it.

Coordinates: the TSV keeps the input's positions (VCF: 1-based; ms and tree sequences: 0-based),
rounded to whole bp; BED and bedGraph are 0-based half-open (``base=1`` for VCF input subtracts 1).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ...atomic import atomic_path
from ...errors import ConfigError, InputFormatError
from ...tables import read_tsv
from . import CLASSES
from . import images as img
from .io import MISSING, HaplotypeData

SCORE_COLUMNS = (
    "chrom",
    "position",
    "window_start",
    "window_end",
    "n_snps",
    "p_sweep",
    "log_odds",
)
STATISTICS = ("log_odds_smoothed", "log_odds", "p_sweep")
"""Ranking statistics of a scan (``apps.sweeps.scan.statistic``): the model's log-odds averaged over the grid
points within ``apps.sweeps.scan.smooth_bp`` of each point, the log-odds itself, or P(sweep)."""
SPANS = ("snps", "length")
SWEEP_CLASS = CLASSES.index("sweep")


# --------------------------------------------------------------------------------------------------
# grid and regions


def make_grid(start: float, end: float, n_points: int) -> np.ndarray:
    """``n_points`` evenly spaced positions from ``start`` to ``end`` (one point: the midpoint)."""
    if n_points < 1:
        raise ConfigError(f"the scan grid needs at least one point, got {n_points}")
    if end < start:
        raise ConfigError(f"grid end {end} is before its start {start}")
    if n_points == 1:
        return np.array([(start + end) / 2.0])
    return np.linspace(float(start), float(end), int(n_points))


def grid_span(hd: HaplotypeData, span: str = "snps", length: float | None = None) -> tuple:
    """(start, end) of a chromosome's grid: its first and last SNP, or 0 and its length."""
    if span not in SPANS:
        raise ConfigError(f"scan span must be one of {SPANS}, got {span!r}")
    if span == "length":
        length = hd.length if length is None else length
        if length is None:
            raise ConfigError(
                f"{hd.source or hd.chrom}: chromosome {hd.chrom!r} has no length; "
                "give one or scan with span 'snps'"
            )
        return 0.0, float(length)
    if hd.n_sites == 0:
        return 0.0, float(hd.length or 0.0)
    return float(hd.positions[0]), float(hd.positions[-1])


def region_slice(n_points: int, n_regions: int, region: int) -> slice:
    """Grid indices of region ``region`` of ``n_regions`` contiguous chunks (as ``np.array_split``)."""
    if n_regions < 1 or not 0 <= region < n_regions:
        raise ConfigError(f"region {region} is not in 0..{n_regions - 1}")
    base, extra = divmod(int(n_points), int(n_regions))
    lo = region * base + min(region, extra)
    return slice(lo, lo + base + (region < extra))


def region_grid(
    chrom_length: float, n_points: int, n_regions: int, region: int, start: float = 0.0
) -> np.ndarray:
    """Grid positions of one region of the grid over [start, chrom_length]."""
    return make_grid(start, chrom_length, n_points)[region_slice(n_points, n_regions, region)]


# --------------------------------------------------------------------------------------------------
# windows


def window_bounds(positions: np.ndarray, centres: np.ndarray, width: int) -> tuple:
    """Vectorised ``images.centre_window``: (start, stop) SNP indices of each centre's window."""
    n = len(positions)
    centres = np.asarray(centres, dtype=np.float64)
    if n <= width:
        return np.zeros(len(centres), np.int64), np.full(len(centres), n, np.int64)
    idx = np.searchsorted(positions, centres)
    start = np.clip(idx - width // 2, 0, n - width).astype(np.int64)
    return start, start + width


def extract_windows(
    haplotypes: np.ndarray, starts: np.ndarray, stops: np.ndarray, width: int
) -> np.ndarray:
    """Windows ``(G, n_haplotypes, width)`` uint8 from ``(n_sites, n_haplotypes)`` genotypes.

    Equals ``images.pad_window(haplotypes[a:b].T, width)`` per window; MISSING becomes 0.
    """
    return np.ascontiguousarray(
        _sites_major_windows(haplotypes, starts, stops, width).transpose(0, 2, 1)
    )


def _sites_major_windows(
    haplotypes: np.ndarray, starts: np.ndarray, stops: np.ndarray, width: int
) -> np.ndarray:
    """``extract_windows`` before its transpose: ``(G, width, n_haplotypes)``."""
    n_sites, n_haps = haplotypes.shape
    g = len(starts)
    if n_sites == 0 or g == 0:
        return np.zeros((g, width, n_haps), np.uint8)
    cols = np.arange(width)
    idx = np.minimum(starts[:, None] + cols, n_sites - 1)
    win = haplotypes[idx]  # (G, width, n_haps)
    short = (stops - starts)[:, None] <= cols  # padding columns
    if short.any():
        win[short] = 0
    win[win == MISSING] = 0
    return win


def encode_windows(
    haplotypes: np.ndarray,
    starts: np.ndarray,
    stops: np.ndarray,
    width: int,
    encoding: str = "sweepnet",
    column_order: str = "descending",
) -> np.ndarray:
    """Engine input ``(G, 1, n_haplotypes, width)``: extracted windows encoded as in training.

    Windows are gathered sites-major and encoded with ``images.encode_sites_major`` (the images of
    ``images.encode``, with both sorts as whole-row gathers: ~2x faster on 128 x 128 windows).
    """
    windows = _sites_major_windows(haplotypes, starts, stops, width)
    return img.encode_sites_major(windows, encoding, column_order)[:, None]


# --------------------------------------------------------------------------------------------------
# scan


def scan_chromosome(
    hd: HaplotypeData,
    engine,
    *,
    width: int,
    n_points: int,
    encoding: str = "sweepnet",
    column_order: str = "descending",
    span: str = "snps",
    length: float | None = None,
    n_regions: int = 1,
    region: int = 0,
    batch_size: int = 1024,
    min_snps: int = 1,
    subsets: np.ndarray | None = None,
    timings: dict | None = None,
) -> pd.DataFrame:
    """Scan one chromosome (or one region of its grid) with ``engine``; returns the score table.

    Columns ``SCORE_COLUMNS``: grid ``position``, first and last SNP position of the window,
    ``n_snps`` in it, ``p_sweep`` and ``log_odds`` (NaN where the window has fewer than
    ``min_snps`` SNPs). ``subsets``: ``(K, m)`` haplotype indices (``sample_size.draw_subsets``);
    a window scores the mean over them (default: every haplotype as is). ``timings`` (a dict)
    receives seconds spent in ``score`` (encoding and inference of every subset).
    """
    from .sample_size import score_windows

    if width < 1 or batch_size < 1:
        raise ConfigError(f"width and batch_size must be >= 1 (got {width}, {batch_size})")
    lo, hi = grid_span(hd, span, length)
    grid = make_grid(lo, hi, n_points)[region_slice(n_points, n_regions, region)]
    starts, stops = window_bounds(hd.positions, grid, width)
    n_snps = stops - starts
    # only the SNPs under this region's windows are touched
    first = int(starts.min()) if len(starts) else 0
    last = int(stops.max()) if len(stops) else 0
    hap = hd.haplotypes[first:last]
    if subsets is None:
        subsets = np.arange(hd.n_haplotypes)[None]
    p_sweep = np.full(len(grid), np.nan)
    lodds = np.full(len(grid), np.nan)
    t_score = 0.0
    for i in range(0, len(grid), batch_size):
        sl = slice(i, i + batch_size)
        keep = np.flatnonzero(n_snps[sl] >= max(min_snps, 1)) + i
        if len(keep) == 0:
            continue
        t0 = time.perf_counter()
        # only this batch's SNPs: each subset's column gather then copies the batch, not the region
        b0, b1 = int(starts[keep].min()) - first, int(stops[keep].max()) - first
        lodds[keep], p_sweep[keep] = score_windows(
            engine,
            hap[b0:b1],
            starts[keep] - first - b0,
            stops[keep] - first - b0,
            width,
            subsets,
            encoding=encoding,
            column_order=column_order,
        )
        t_score += time.perf_counter() - t0
    if timings is not None:
        timings["score"] = timings.get("score", 0.0) + t_score
    return score_table(hd.chrom, grid, hd.positions, starts, stops, p_sweep, lodds)


def score_table(chrom, grid, positions, starts, stops, p_sweep, log_odds) -> pd.DataFrame:
    """The score table (``SCORE_COLUMNS``) of a chromosome's grid: the window of grid point ``i``
    holds the SNPs ``starts[i]:stops[i]`` of ``positions`` (``window_start``/``window_end``: its
    first and last SNP's position, the grid point for an empty window)."""
    pos = np.asarray(positions)
    n_snps = np.asarray(stops) - np.asarray(starts)
    if len(pos):
        has = n_snps > 0
        w_start = np.where(has, pos[np.minimum(starts, len(pos) - 1)], grid)
        w_end = np.where(has, pos[np.clip(np.asarray(stops) - 1, 0, len(pos) - 1)], grid)
    else:
        w_start = w_end = grid
    return pd.DataFrame(
        {
            "chrom": chrom,
            "position": np.round(grid).astype(np.int64),
            "window_start": np.round(w_start).astype(np.int64),
            "window_end": np.round(w_end).astype(np.int64),
            "n_snps": n_snps.astype(np.int64),
            "p_sweep": p_sweep,
            "log_odds": log_odds,
        },
        columns=list(SCORE_COLUMNS),
    )


def merge_scores(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate region tables of one chromosome in region order; checks they fit together."""
    if not tables:
        raise ConfigError("merge_scores needs at least one region table")
    out = pd.concat(tables, ignore_index=True)
    chroms = out["chrom"].unique()
    if len(chroms) > 1:
        raise InputFormatError(f"region tables mix chromosomes: {', '.join(map(str, chroms))}")
    if np.any(np.diff(out["position"].to_numpy()) < 0):
        raise InputFormatError("region tables are not in grid order (positions decrease)")
    return out


# --------------------------------------------------------------------------------------------------
# p-values and peaks


def smooth(positions: np.ndarray, values: np.ndarray, half_width: float) -> np.ndarray:
    """Mean of the finite ``values`` at the positions within ``half_width`` bp of each position.

    ASDEC's grid mode averages the windows within a distance of each grid point; averaging a
    track's neighbouring points sharpens a CNN's peak where single windows are noisy. NaN where no
    finite value is in reach; ``half_width`` 0 returns the values unchanged. ``positions`` sorted.
    """
    pos = np.asarray(positions, np.float64)
    v = np.asarray(values, np.float64)
    if half_width <= 0 or v.size == 0:
        return v.copy()
    ok = np.isfinite(v)
    csum = np.concatenate([[0.0], np.cumsum(np.where(ok, v, 0.0))])
    ccount = np.concatenate([[0], np.cumsum(ok)])
    lo = np.searchsorted(pos, pos - half_width, side="left")
    hi = np.searchsorted(pos, pos + half_width, side="right")
    n = ccount[hi] - ccount[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (csum[hi] - csum[lo]) / np.maximum(n, 1), np.nan)


def ranking_score(
    positions: np.ndarray,
    p_sweep: np.ndarray,
    log_odds: np.ndarray,
    statistic: str = "log_odds_smoothed",
    smooth_bp: float = 0.0,
) -> np.ndarray:
    """The ranking statistic (``STATISTICS``) of a track; NaN where the window was not scored."""
    if statistic not in STATISTICS:
        raise ConfigError(f"scan statistic must be one of {STATISTICS}, got {statistic!r}")
    if statistic == "p_sweep":
        return np.asarray(p_sweep, np.float64).copy()
    lo = np.asarray(log_odds, np.float64)
    if statistic == "log_odds":
        return lo.copy()
    out = smooth(positions, lo, smooth_bp)
    return np.where(np.isfinite(lo), out, np.nan)


def add_score(table: pd.DataFrame, statistic: str, smooth_bp: float) -> pd.DataFrame:
    """The table with the ranking ``score`` column (``ranking_score``)."""
    out = table.copy()
    out["score"] = ranking_score(
        out["position"].to_numpy(np.float64),
        out["p_sweep"].to_numpy(np.float64),
        out["log_odds"].to_numpy(np.float64),
        statistic,
        smooth_bp,
    )
    return out


def bh_qvalues(p_values: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q-values of the finite p-values (NaN stays NaN).

    Grid points of a scan are correlated (neighbouring windows share SNPs), so the BH q-values
    are approximate: BH holds under positive regression dependence, which neighbouring windows
    plausibly have, but the effective number of tests is smaller than the number of grid points.
    """
    from scipy.stats import false_discovery_control

    p = np.asarray(p_values, np.float64)
    q = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        q[ok] = false_discovery_control(np.clip(p[ok], 0.0, 1.0), method="bh")
    return q


def score_ranks(scores: np.ndarray) -> np.ndarray:
    """Rank of each score, 1 = the most sweep-like (ties share the best rank); NaN unranked."""
    s = np.asarray(scores, np.float64)
    ranks = np.full(s.shape, np.nan)
    ok = np.isfinite(s)
    if ok.any():
        ranks[ok] = pd.Series(-s[ok]).rank(method="min").to_numpy()
    return ranks


SATURATION_SHARE = 0.25
"""A track with at least this share of its scored points at the p-value floor or at
P(sweep) > 0.99 is reported as saturated."""


def saturation(table: pd.DataFrame, n_null: int, share: float = SATURATION_SHARE) -> dict:
    """Shares of a track's scored points at the p-value floor and at P(sweep) > 0.99, and a
    warning naming the likely causes when either reaches ``share`` (None otherwise)."""
    p_sweep = table["p_sweep"].to_numpy(np.float64)
    scored = np.isfinite(p_sweep)
    n = int(scored.sum())
    out = {"share_p_floor": float("nan"), "share_p_sweep_099": float("nan"), "warning": None}
    if n == 0:
        return out
    out["share_p_sweep_099"] = float(np.mean(p_sweep[scored] > 0.99))
    if n_null and "p_value" in table:
        pv = table["p_value"].to_numpy(np.float64)[scored]
        out["share_p_floor"] = float(np.mean(pv <= 1.0 / (n_null + 1) + 1e-15))
    parts = []
    if out["share_p_floor"] >= share:
        parts.append(
            f"{out['share_p_floor']:.0%} of the scored grid points are at the p-value floor "
            f"(1/{n_null + 1})"
        )
    if out["share_p_sweep_099"] >= share:
        parts.append(f"{out['share_p_sweep_099']:.0%} have P(sweep) > 0.99")
    if parts:
        out["warning"] = (
            "saturated track: "
            + " and ".join(parts)
            + "; likely causes: the input's demography or sample size differs from the model's "
            "training simulations and the null's (set the scenario's demography to the data's, "
            "check the haplotype count and the sample-size policy), or too few null windows"
        )
    return out


def empirical_pvalues(scores: np.ndarray, null_scores: np.ndarray) -> np.ndarray:
    """``(1 + #{null >= s}) / (1 + n)`` per score (NaN stays NaN); NaNs in the null are ignored."""
    null = np.asarray(null_scores, dtype=np.float64)
    null = np.sort(null[np.isfinite(null)])
    if null.size == 0:
        raise ConfigError("empirical p-values need at least one finite neutral score")
    s = np.asarray(scores, dtype=np.float64)
    ge = null.size - np.searchsorted(null, s, side="left")
    p = (1.0 + ge) / (1.0 + null.size)
    return np.where(np.isfinite(s), p, np.nan)


def add_pvalues(table: pd.DataFrame, null_scores: np.ndarray) -> pd.DataFrame:
    """The table with ``p_value`` (its ``score`` against ``null_scores``, per-window neutral
    scores of the same statistic) and ``q_value`` (Benjamini-Hochberg over its grid points)."""
    out = table.copy()
    out["p_value"] = empirical_pvalues(out["score"].to_numpy(), null_scores)
    out["q_value"] = bh_qvalues(out["p_value"].to_numpy())
    return out


def null_scores(tables: list[pd.DataFrame], column: str = "score") -> np.ndarray:
    """Pooled finite per-window ``column`` of neutral scans (the null for ``empirical_pvalues``)."""
    if not tables:
        raise ConfigError("no neutral scans for the p-value null")
    s = np.concatenate([t[column].to_numpy(np.float64) for t in tables])
    return s[np.isfinite(s)]


PEAK_COLUMNS = (
    "chrom",
    "start",
    "end",
    "peak_position",
    "max_p_sweep",
    "max_score",
    "min_p_value",
    "min_q_value",
    "n_points",
)


PEAK_COLUMNS_ALLOWED = ("p_value", "q_value", "p_sweep", "score")


def call_peaks(
    table: pd.DataFrame, threshold: float, *, column: str = "p_sweep", max_gap: int = 0
) -> pd.DataFrame:
    """Runs of grid points passing ``threshold`` merged into peaks.

    ``column`` ``p_sweep`` or ``score`` passes values >= threshold; ``p_value`` or ``q_value``
    passes values <= threshold. Runs separated by at most ``max_gap`` failing grid points are
    merged. A peak spans the windows of its grid points (first window_start .. last window_end,
    input coordinates) and reports the grid position of its highest ``score`` (``p_sweep`` when
    the table has no score; ties: the first).
    """
    if column not in PEAK_COLUMNS_ALLOWED:
        raise ConfigError(f"peaks are called on one of {PEAK_COLUMNS_ALLOWED}, not {column!r}")
    if column not in table:
        raise ConfigError(f"the score table has no {column!r} column")
    v = table[column].to_numpy(np.float64)
    ok = (v >= threshold) if column in ("p_sweep", "score") else (v <= threshold)
    ok &= np.isfinite(v)
    rows = []
    idx = np.flatnonzero(ok)
    if idx.size:
        breaks = np.flatnonzero(np.diff(idx) > max_gap + 1)
        runs = np.split(idx, breaks + 1)
        rank_by = table["score" if "score" in table else "p_sweep"].to_numpy(np.float64)
        p_sweep = table["p_sweep"].to_numpy(np.float64)
        pv = table["p_value"].to_numpy(np.float64) if "p_value" in table else None
        qv = table["q_value"].to_numpy(np.float64) if "q_value" in table else None
        for run in runs:
            span = np.arange(run[0], run[-1] + 1)
            masked = np.where(ok[span] & np.isfinite(rank_by[span]), rank_by[span], -np.inf)
            best = span[int(np.argmax(masked))]
            rows.append(
                {
                    "chrom": table["chrom"].iat[run[0]],
                    "start": int(table["window_start"].iloc[span].min()),
                    "end": int(table["window_end"].iloc[span].max()),
                    "peak_position": int(table["position"].iat[best]),
                    "max_p_sweep": float(np.nanmax(p_sweep[span])),
                    "max_score": float(rank_by[best]),
                    "min_p_value": float(np.nanmin(pv[span])) if pv is not None else np.nan,
                    "min_q_value": float(np.nanmin(qv[span])) if qv is not None else np.nan,
                    "n_points": int(ok[span].sum()),
                }
            )
    return pd.DataFrame(rows, columns=list(PEAK_COLUMNS))


# --------------------------------------------------------------------------------------------------
# writers and readers (atomic)


def write_scores_tsv(
    table: pd.DataFrame, path: str | os.PathLike, *, header: list[str] | None = None
) -> None:
    """The table as TSV, after ``# key: value`` comment lines (``header``) describing the scan."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as fh:
            for line in header or []:
                fh.write(f"# {line}\n")
            table.to_csv(fh, sep="\t", index=False, na_rep="NA", float_format="%.6g")


def read_scores_tsv(path: str | os.PathLike) -> pd.DataFrame:
    """A score table written by ``write_scores_tsv``; a wrong file raises ``InputFormatError``."""
    table = read_tsv(
        path, SCORE_COLUMNS, "score table", na_values=["NA"], keep_default_na=False, comment="#"
    )
    for col in ("position", "window_start", "window_end", "n_snps"):
        if not pd.api.types.is_integer_dtype(table[col]):
            raise InputFormatError(f"{path}: column {col!r} must hold integers")
    table["chrom"] = table["chrom"].astype(str)
    return table


def write_peaks_tsv(peaks: pd.DataFrame, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        peaks.to_csv(tmp, sep="\t", index=False, na_rep="NA", float_format="%.6g")


def write_bedgraph(
    table: pd.DataFrame, path: str | os.PathLike, *, base: int = 0, column: str = "p_sweep"
) -> None:
    """bedGraph of ``column``: each grid point covers the half-way points to its neighbours.

    Intervals are 0-based half-open, sorted and non-overlapping; NaN scores are left out.
    """
    pos = table["position"].to_numpy(np.int64) - int(base)
    val = table[column].to_numpy(np.float64)
    lines = [f'track type=bedGraph name="{column}" description="quantscan sweep scan"']
    if len(pos):
        mids = (pos[:-1] + pos[1:]) // 2
        lo = np.concatenate([[pos[0]], mids])
        hi = np.concatenate([mids, [pos[-1] + 1]])
        lo = np.maximum(lo, 0)
        chrom = table["chrom"].to_numpy()
        for c, a, b, v in zip(chrom, lo, hi, val, strict=True):
            if b > a and math.isfinite(v):
                lines.append(f"{c}\t{a}\t{b}\t{v:.6g}")
    with atomic_path(path) as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n")


def write_peaks_bed(peaks: pd.DataFrame, path: str | os.PathLike, *, base: int = 0) -> None:
    """BED8 of peaks: interval, name, score (1000 x max p_sweep), strand '.', thick = peak point."""
    lines = ["#chrom\tstart\tend\tname\tscore\tstrand\tthickStart\tthickEnd"]
    for k, row in enumerate(peaks.itertuples(index=False)):
        start = max(int(row.start) - int(base), 0)
        end = max(int(row.end) - int(base) + 1, start + 1)
        thick = min(max(int(row.peak_position) - int(base), start), end - 1)
        score = int(round(1000 * row.max_p_sweep)) if math.isfinite(row.max_p_sweep) else 0
        lines.append(f"{row.chrom}\t{start}\t{end}\tpeak_{k + 1}\t{score}\t.\t{thick}\t{thick + 1}")
    with atomic_path(path) as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n")


def coordinate_base(fmt: str) -> int:
    """1 for VCF/BCF input (1-based positions), 0 for ms and tree sequences."""
    return 1 if fmt in ("vcf", "bcf") else 0


def plot_scan(
    table: pd.DataFrame,
    path: str | os.PathLike,
    *,
    truth: list[float] | np.ndarray | None = None,
    peaks: pd.DataFrame | None = None,
    threshold: float | None = None,
    p_threshold: float | None = None,
    hotspots: list[tuple[float, float]] | None = None,
    title: str | None = None,
) -> None:
    """PNG of a scan: P(sweep) along the chromosome and, when the table has p-values, -log10 p
    below it; true sweeps, peaks and hotspots marked; positions in Mb.

    ``threshold``: a P(sweep) line on the top panel; ``p_threshold``: a p-value line below.
    """
    from ... import plots

    plt = plots.plt
    has_p = "p_value" in table and np.isfinite(table["p_value"].to_numpy(np.float64)).any()
    fig, axes = plt.subplots(
        2 if has_p else 1, 1, figsize=(11, 5.0 if has_p else 3.2), sharex=True, squeeze=False
    )
    axes = axes[:, 0]
    x = table["position"].to_numpy(np.float64) / 1e6
    axes[0].plot(x, table["p_sweep"].to_numpy(np.float64), lw=0.6, color="0.2", label="P(sweep)")
    if has_p:
        p = table["p_value"].to_numpy(np.float64)
        axes[1].plot(x, -np.log10(p), lw=0.6, color="C0", label="p-value")
        if "q_value" in table:
            q = table["q_value"].to_numpy(np.float64)
            axes[1].plot(x, -np.log10(q), lw=0.6, color="C4", alpha=0.8, label="q-value (BH)")
        if p_threshold is not None and p_threshold > 0:
            axes[1].axhline(-np.log10(p_threshold), color="C1", ls=":", lw=0.9)
        axes[1].set(ylabel="-log10 p / q")
        axes[1].legend(loc="upper right", fontsize=8)
    for ax in axes:
        for lo, hi in hotspots or []:
            ax.axvspan(lo / 1e6, hi / 1e6, color="C2", alpha=0.25, lw=0)
        if peaks is not None:
            for row in peaks.itertuples(index=False):
                ax.axvspan(row.start / 1e6, row.end / 1e6, color="C1", alpha=0.35, lw=0)
        for k, t in enumerate(truth if truth is not None else []):
            ax.axvline(t / 1e6, color="C3", ls="--", lw=0.9, label="true sweep" if k == 0 else None)
    if threshold is not None:
        axes[0].axhline(threshold, color="C1", ls=":", lw=0.9, label=f"threshold {threshold:.3g}")
    axes[0].set(ylabel="P(sweep)", ylim=(-0.02, 1.02))
    axes[-1].set(xlabel="position (Mb)")
    axes[-1].xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
    axes[0].set_title(title or (str(table["chrom"].iat[0]) if len(table) else ""), fontsize=10)
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(loc="upper right", fontsize=8)
    plots.save(fig, path)


__all__ = [
    "PEAK_COLUMNS",
    "SATURATION_SHARE",
    "SCORE_COLUMNS",
    "STATISTICS",
    "add_pvalues",
    "add_score",
    "bh_qvalues",
    "call_peaks",
    "coordinate_base",
    "empirical_pvalues",
    "encode_windows",
    "extract_windows",
    "grid_span",
    "make_grid",
    "merge_scores",
    "null_scores",
    "plot_scan",
    "ranking_score",
    "read_scores_tsv",
    "saturation",
    "score_ranks",
    "score_table",
    "smooth",
    "region_grid",
    "region_slice",
    "scan_chromosome",
    "window_bounds",
    "write_bedgraph",
    "write_peaks_bed",
    "write_peaks_tsv",
    "write_scores_tsv",
]
