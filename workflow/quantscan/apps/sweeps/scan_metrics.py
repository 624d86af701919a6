"""ASDEC's localisation and detection metrics for sweep scans against simulated truth.

Definitions follow ``pephco/ASDEC`` (``src/accuracy.py``, ``src/TPRFPR.py``; RAiSD ``-T -d -k -l``):

* a replicate's reported position is the grid point with the highest P(sweep); ties: the middle of
  the tied points (ASDEC's summary rule);
* **success rate**: share of sweep replicates whose reported position is within ``tolerance`` x L
  of the true sweep (inclusive; ASDEC uses 1 % of L);
* **distance error**: mean |reported - true| over sweep replicates, in % of L;
* **sensitivity at 5 % FPR**: the neutral replicates' maximum scores sorted in decreasing order give
  the threshold at index ``round((n - 1) * fpr)``; sensitivity is the share of sweep replicates
  whose maximum score is strictly above it. ``observed_fpr`` is the share of neutral replicates
  above it (ties and small n make it differ from the nominal rate).

Replicates without any finite score count as misses for the success rate and are left out of the
distance error. ``scan_replicates`` scans simulated replicates; a long simulated chromosome
(``chromosome.py``) is evaluated segment by segment: each segment is a replicate of length
``segment_length`` whose scores are the grid points inside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ...errors import ConfigError

METRIC_COLUMNS = (
    "success_rate",
    "distance_error_pct",
    "sensitivity_at_fpr",
    "fpr_threshold",
    "observed_fpr",
    "n_sweep",
    "n_neutral",
)


@dataclass
class ReplicateScan:
    """Grid positions and P(sweep) of one scanned replicate; ``true_position`` NaN if neutral."""

    positions: np.ndarray
    scores: np.ndarray
    true_position: float = float("nan")

    def peak(self) -> tuple[float, float]:
        return replicate_peak(self.positions, self.scores)


def replicate_peak(positions: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """(position, score) of the maximum score; ties: the middle one of the tied grid points."""
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0 or not np.isfinite(s).any():
        return float("nan"), float("nan")
    best = np.nanmax(s)
    tied = np.flatnonzero(s == best)
    return float(np.asarray(positions)[tied[(len(tied) - 1) // 2]]), float(best)


def success_rate(reported, true, length: float, tolerance: float = 0.01) -> float:
    reported, true = np.asarray(reported, np.float64), np.asarray(true, np.float64)
    if reported.size == 0:
        return float("nan")
    return float(np.mean(np.abs(reported - true) <= tolerance * length))


def distance_error(reported, true, length: float) -> float:
    """Mean absolute distance between reported and true positions, in % of ``length``."""
    reported, true = np.asarray(reported, np.float64), np.asarray(true, np.float64)
    if reported.size == 0:
        return float("nan")
    return float(np.mean(np.abs(reported - true)) / length * 100.0)


def fpr_threshold(neutral_max, fpr: float = 0.05) -> float:
    """ASDEC's threshold: neutral maxima in decreasing order, element ``round((n - 1) * fpr)``."""
    if not 0 <= fpr <= 1:
        raise ConfigError(f"fpr must be in [0, 1], got {fpr}")
    s = np.sort(np.asarray(neutral_max, np.float64))[::-1]
    if s.size == 0:
        raise ConfigError("a false-positive-rate threshold needs neutral replicates")
    return float(s[int(round((s.size - 1) * fpr))])


def sensitivity(sweep_max, neutral_max, fpr: float = 0.05) -> tuple[float, float, float]:
    """(sensitivity, threshold, observed FPR): sweep maxima strictly above the threshold."""
    thr = fpr_threshold(neutral_max, fpr)
    sweep_max = np.asarray(sweep_max, np.float64)
    neutral_max = np.asarray(neutral_max, np.float64)
    tpr = float(np.mean(sweep_max > thr)) if sweep_max.size else float("nan")
    return tpr, thr, float(np.mean(neutral_max > thr))


def evaluate(
    sweeps: list[ReplicateScan],
    neutrals: list[ReplicateScan],
    length: float,
    *,
    fpr: float = 0.05,
    tolerance: float = 0.01,
) -> dict:
    """The metrics of ``METRIC_COLUMNS`` for sweep and neutral replicates of length ``length``."""
    if not sweeps:
        raise ConfigError("evaluation needs at least one sweep replicate")
    if any(not np.isfinite(r.true_position) for r in sweeps):
        raise ConfigError("every sweep replicate needs a finite true_position")
    peaks = np.array([r.peak() for r in sweeps])
    reported, smax = peaks[:, 0], peaks[:, 1]
    true = np.array([r.true_position for r in sweeps])
    ok = np.isfinite(reported)  # replicates without any score count as misses
    out = {
        "success_rate": float(
            np.mean(np.where(ok, np.abs(reported - true) <= tolerance * length, False))
        ),
        "distance_error_pct": distance_error(reported[ok], true[ok], length),
        "n_sweep": len(sweeps),
        "n_neutral": len(neutrals),
    }
    if neutrals:
        nmax = np.array([r.peak()[1] for r in neutrals])
        nmax = np.where(np.isfinite(nmax), nmax, -np.inf)
        tpr, thr, ofpr = sensitivity(np.where(np.isfinite(smax), smax, -np.inf), nmax, fpr)
        out |= {"sensitivity_at_fpr": tpr, "fpr_threshold": thr, "observed_fpr": ofpr}
    else:
        out |= {"sensitivity_at_fpr": np.nan, "fpr_threshold": np.nan, "observed_fpr": np.nan}
    out["fpr"] = fpr
    out["tolerance"] = tolerance
    return out


@dataclass
class ReplicateTracks:
    """Raw grid scores of scanned replicates: ``p_sweep`` and ``log_odds`` are ``(R, G)``."""

    positions: np.ndarray
    p_sweep: np.ndarray
    log_odds: np.ndarray
    true_position: np.ndarray  # (R,), NaN for neutral replicates

    def scans(self, statistic: str = "log_odds_smoothed", smooth_bp: float = 0.0) -> list:
        """One ``ReplicateScan`` per replicate, scored by ``statistic`` (``scan.STATISTICS``)."""
        from .scan import ranking_score

        return [
            ReplicateScan(
                self.positions,
                ranking_score(self.positions, p, lo, statistic, smooth_bp),
                float(t),
            )
            for p, lo, t in zip(self.p_sweep, self.log_odds, self.true_position, strict=True)
        ]


def scan_replicates(
    replicates,
    engine,
    *,
    sequence_length: float,
    width: int,
    n_points: int,
    encoding: str = "sweepnet",
    column_order: str = "descending",
    model_haplotypes: int | None = None,
    subsets: int = 1,
    seed: int = 0,
) -> ReplicateTracks:
    """Scan simulated replicates (``simulate.Replicate``) on a grid over [0, L], as ASDEC does.

    Replicates with more haplotypes than ``model_haplotypes`` are scored on ``subsets`` random
    subsets of the model's size (``sample_size``; each replicate's own subsets, from ``seed`` and
    its index), exactly as a chromosome of that sample size is. Windows without SNPs score NaN.
    """
    from ...seeds import derive_seed
    from . import CLASSES
    from .sample_size import draw_subsets, resolve
    from .scan import encode_windows, make_grid, window_bounds

    grid = make_grid(0.0, sequence_length, n_points)
    p_sweep = np.full((len(replicates), len(grid)), np.nan)
    lodds = np.full((len(replicates), len(grid)), np.nan)
    owners, k_subsets = [], 1
    for k, rep in enumerate(replicates):
        n = rep.haplotypes.shape[1]
        m = n if model_haplotypes is None else int(model_haplotypes)
        size = resolve(n, m, subsets=subsets, source=f"replicate {k}")
        rows = draw_subsets(n, m, size.subsets, derive_seed(seed, "subsets", k))
        k_subsets = max(k_subsets, len(rows))
        starts, stops = window_bounds(rep.positions, grid, width)
        ok = np.flatnonzero(stops > starts)
        if len(ok):
            owners.append((k, ok, starts[ok], stops[ok], rows))
    # one engine call per subset index over every replicate's windows (full batches)
    sweep = CLASSES.index("sweep")
    total = {k: np.zeros(len(ok)) for k, ok, *_ in owners}
    prob = {k: np.zeros(len(ok)) for k, ok, *_ in owners}
    for j in range(k_subsets):
        images, used = [], []
        for k, ok, a, b, rows in owners:
            if j < len(rows):
                hap = replicates[k].haplotypes[:, rows[j]]
                images.append(encode_windows(hap, a, b, width, encoding, column_order))
                used.append((k, len(ok)))
        if not images:
            continue
        lo = engine.predict_log_odds(np.concatenate(images), sweep)
        at = 0
        for k, n_ok in used:
            total[k] += lo[at : at + n_ok]
            prob[k] += 1.0 / (1.0 + np.exp(-lo[at : at + n_ok]))
            at += n_ok
    for k, ok, _, _, rows in owners:
        lodds[k, ok] = total[k] / len(rows)
        p_sweep[k, ok] = prob[k] / len(rows)
    true = np.array([r.sweep_position for r in replicates], np.float64)
    return ReplicateTracks(grid, p_sweep, lodds, true)


def chromosome_replicates(
    scores: pd.DataFrame, truth: pd.DataFrame
) -> tuple[list[ReplicateScan], list[ReplicateScan], float]:
    """Split a scanned simulated chromosome into per-segment replicates (sweep, neutral, length).

    A grid point belongs to the segment with ``start <= position < end`` (the last segment also
    takes its end). Segments with hotspots stay in their class: their neutral maxima are part of
    the FPR null, as in a genome with hotspots.
    """
    chrom = str(truth["chrom"].iat[0])
    sc = scores[scores["chrom"].astype(str) == chrom]
    pos = sc["position"].to_numpy(np.float64)
    val = sc["score" if "score" in sc else "p_sweep"].to_numpy(np.float64)
    lengths = (truth["end"] - truth["start"]).to_numpy(np.float64)
    if not np.allclose(lengths, lengths[0]):
        raise ConfigError("chromosome segments must have one length to be evaluated as replicates")
    sweeps, neutrals = [], []
    last = len(truth) - 1
    for k, r in enumerate(truth.to_dict("records")):
        inside = (pos >= r["start"]) & ((pos < r["end"]) | ((k == last) & (pos <= r["end"])))
        rep = ReplicateScan(pos[inside], val[inside], float(r["sweep_position"]))
        (sweeps if r["class"] == "sweep" else neutrals).append(rep)
    return sweeps, neutrals, float(lengths[0])


def evaluate_chromosome(
    scores: pd.DataFrame, truth: pd.DataFrame, *, fpr: float = 0.05, tolerance: float = 0.01
) -> dict:
    """``evaluate`` over the segments of a scanned simulated chromosome."""
    sweeps, neutrals, length = chromosome_replicates(scores, truth)
    return evaluate(sweeps, neutrals, length, fpr=fpr, tolerance=tolerance)


__all__ = [
    "METRIC_COLUMNS",
    "ReplicateScan",
    "ReplicateTracks",
    "chromosome_replicates",
    "distance_error",
    "evaluate",
    "evaluate_chromosome",
    "fpr_threshold",
    "replicate_peak",
    "scan_replicates",
    "sensitivity",
    "success_rate",
]
