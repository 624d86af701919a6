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

from ..atomic import atomic_path
from ..errors import ConfigError, InputFormatError
from ..tables import read_tsv
from . import CLASSES
from . import images as img
from .io import MISSING, HaplotypeData

SCORE_COLUMNS = ("chrom", "position", "window_start", "window_end", "n_snps", "p_sweep")
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
    timings: dict | None = None,
) -> pd.DataFrame:
    """Scan one chromosome (or one region of its grid) with ``engine``; returns the score table.

    Columns ``SCORE_COLUMNS``: grid ``position``, first and last SNP position of the window,
    ``n_snps`` in it, and ``p_sweep`` (NaN where the window has fewer than ``min_snps`` SNPs).
    ``timings`` (a dict) receives seconds spent in ``extract_encode`` and ``infer``.
    """
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
    p_sweep = np.full(len(grid), np.nan)
    t_enc = t_inf = 0.0
    for i in range(0, len(grid), batch_size):
        sl = slice(i, i + batch_size)
        keep = np.flatnonzero(n_snps[sl] >= max(min_snps, 1)) + i
        if len(keep) == 0:
            continue
        t0 = time.perf_counter()
        x = encode_windows(
            hap, starts[keep] - first, stops[keep] - first, width, encoding, column_order
        )
        t1 = time.perf_counter()
        p_sweep[keep] = engine.predict_proba(x)[:, SWEEP_CLASS]
        t_inf += time.perf_counter() - t1
        t_enc += t1 - t0
    if timings is not None:
        timings["extract_encode"] = timings.get("extract_encode", 0.0) + t_enc
        timings["infer"] = timings.get("infer", 0.0) + t_inf
    pos = hd.positions
    if len(pos):
        has = n_snps > 0
        w_start = np.where(has, pos[np.minimum(starts, len(pos) - 1)], grid)
        w_end = np.where(has, pos[np.clip(stops - 1, 0, len(pos) - 1)], grid)
    else:
        w_start = w_end = grid
    return pd.DataFrame(
        {
            "chrom": hd.chrom,
            "position": np.round(grid).astype(np.int64),
            "window_start": np.round(w_start).astype(np.int64),
            "window_end": np.round(w_end).astype(np.int64),
            "n_snps": n_snps.astype(np.int64),
            "p_sweep": p_sweep,
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
    """The table with a ``p_value`` column against ``null_scores`` (per-window neutral scores)."""
    out = table.copy()
    out["p_value"] = empirical_pvalues(out["p_sweep"].to_numpy(), null_scores)
    return out


def null_scores(tables: list[pd.DataFrame]) -> np.ndarray:
    """Pooled finite per-window ``p_sweep`` of neutral scans (the null for ``empirical_pvalues``)."""
    if not tables:
        raise ConfigError("no neutral scans for the p-value null")
    s = np.concatenate([t["p_sweep"].to_numpy(np.float64) for t in tables])
    return s[np.isfinite(s)]


PEAK_COLUMNS = (
    "chrom",
    "start",
    "end",
    "peak_position",
    "max_p_sweep",
    "min_p_value",
    "n_points",
)


def call_peaks(
    table: pd.DataFrame, threshold: float, *, column: str = "p_sweep", max_gap: int = 0
) -> pd.DataFrame:
    """Runs of grid points passing ``threshold`` merged into peaks.

    ``column="p_sweep"`` passes scores >= threshold; ``column="p_value"`` passes p-values <=
    threshold. Runs separated by at most ``max_gap`` failing grid points are merged. A peak spans
    the windows of its grid points (first window_start .. last window_end, input coordinates) and
    reports the grid position of its highest p_sweep (ties: the first).
    """
    if column not in ("p_sweep", "p_value"):
        raise ConfigError(f"peaks are called on p_sweep or p_value, not {column!r}")
    if column not in table:
        raise ConfigError(f"the score table has no {column!r} column")
    v = table[column].to_numpy(np.float64)
    ok = (v >= threshold) if column == "p_sweep" else (v <= threshold)
    ok &= np.isfinite(v)
    rows = []
    idx = np.flatnonzero(ok)
    if idx.size:
        breaks = np.flatnonzero(np.diff(idx) > max_gap + 1)
        runs = np.split(idx, breaks + 1)
        score = table["p_sweep"].to_numpy(np.float64)
        pv = table["p_value"].to_numpy(np.float64) if "p_value" in table else None
        for run in runs:
            span = np.arange(run[0], run[-1] + 1)
            best = span[np.nanargmax(np.where(ok[span], score[span], -np.inf))]
            rows.append(
                {
                    "chrom": table["chrom"].iat[run[0]],
                    "start": int(table["window_start"].iloc[span].min()),
                    "end": int(table["window_end"].iloc[span].max()),
                    "peak_position": int(table["position"].iat[best]),
                    "max_p_sweep": float(score[best]),
                    "min_p_value": float(np.nanmin(pv[span])) if pv is not None else np.nan,
                    "n_points": int(ok[span].sum()),
                }
            )
    return pd.DataFrame(rows, columns=list(PEAK_COLUMNS))


# --------------------------------------------------------------------------------------------------
# writers and readers (atomic)


def write_scores_tsv(table: pd.DataFrame, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False, na_rep="NA", float_format="%.6g")


def read_scores_tsv(path: str | os.PathLike) -> pd.DataFrame:
    """A score table written by ``write_scores_tsv``; a wrong file raises ``InputFormatError``."""
    table = read_tsv(path, SCORE_COLUMNS, "score table", na_values=["NA"], keep_default_na=False)
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
    hotspots: list[tuple[float, float]] | None = None,
    title: str | None = None,
) -> None:
    """PNG track of p_sweep along the chromosome, with true sweeps, peaks and hotspots marked."""
    from .. import plots

    plt = plots.plt
    fig, ax = plt.subplots(figsize=(11, 3.2))
    x = table["position"].to_numpy(np.float64) / 1e6
    ax.plot(x, table["p_sweep"].to_numpy(np.float64), lw=0.6, color="0.2", label="P(sweep)")
    for lo, hi in hotspots or []:
        ax.axvspan(lo / 1e6, hi / 1e6, color="C2", alpha=0.25, lw=0)
    if peaks is not None:
        for row in peaks.itertuples(index=False):
            ax.axvspan(row.start / 1e6, row.end / 1e6, color="C1", alpha=0.35, lw=0)
    for k, t in enumerate(truth if truth is not None else []):
        ax.axvline(t / 1e6, color="C3", ls="--", lw=0.9, label="true sweep" if k == 0 else None)
    if threshold is not None:
        ax.axhline(threshold, color="C1", ls=":", lw=0.9, label=f"threshold {threshold:g}")
    ax.set(xlabel="position (Mb)", ylabel="P(sweep)", ylim=(-0.02, 1.02))
    ax.set_title(title or str(table["chrom"].iat[0]) if len(table) else title or "")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper right", fontsize=8)
    plots.save(fig, path)


__all__ = [
    "PEAK_COLUMNS",
    "SCORE_COLUMNS",
    "add_pvalues",
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
    "read_scores_tsv",
    "region_grid",
    "region_slice",
    "scan_chromosome",
    "window_bounds",
    "write_bedgraph",
    "write_peaks_bed",
    "write_peaks_tsv",
    "write_scores_tsv",
]
