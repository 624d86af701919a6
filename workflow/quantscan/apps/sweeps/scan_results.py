"""The genome scan's results (workflow/rules/sweeps/scan.smk): scores read back, p-values, the
per-chromosome outputs and the evaluation table.

``load_classic_scores`` reads the classic statistics of the replicates and ``combine_scans``
multiplies one by the CNN's P(sweep) (RAiSD-AI's mu x P(sweep)); ``neutral_null`` is the per-window
null of a replicate scan file (``scan_replicates``) and ``score_threshold`` the lowest score whose
empirical p-value can reach a level. ``merge_chromosome`` merges a chromosome's region tables into
its outputs (tsv, bedgraph, bed, png); ``summary_row`` and ``write_summary`` make
scan_summary.tsv.
"""

from __future__ import annotations

import json
import math

import numpy as np

from ...atomic import atomic_path
from ...errors import InputFormatError
from .scan_replicates import load_replicate_scans

# --------------------------------------------------------------------------------------------------
# replicate scores and the p-value null


def load_classic_scores(path) -> dict:
    """Classic statistics of a ``scan_classic.py`` file: ``{"scans": {statistic: (sweep scans,
    neutral scans)}, "positions", "length", "info"}`` (``scan_metrics.ReplicateScan`` lists)."""
    from .scan_metrics import ReplicateScan

    try:
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
        info = json.loads(str(d["info"]))
        stats = list(info["statistics"])
        grid, label, true = d["positions"], d["label"], d["true_position"]
        arrays = {s: d[f"score_{s}"] for s in stats}
    except Exception as err:
        raise InputFormatError(f"{path}: unreadable classic score file ({err})") from err
    scans = {}
    for s, a in arrays.items():
        if a.shape != (len(label), len(grid)):
            raise InputFormatError(f"{path}: field 'score_{s}' has shape {a.shape}")
        reps = [ReplicateScan(grid, row, float(t)) for row, t in zip(a, true, strict=True)]
        scans[s] = (
            [r for r, lab in zip(reps, label, strict=True) if lab == 1],
            [r for r, lab in zip(reps, label, strict=True) if lab == 0],
        )
    return {"scans": scans, "positions": grid, "length": float(d["sequence_length"]), "info": info}


def combine_scans(classic_scans: list, cnn_scans: list) -> list:
    """Replicate-wise product of a classic statistic and the CNN's P(sweep) on the same grid
    (RAiSD-AI reports mu x P(sweep)); the replicates must be the same, in the same order."""
    from .scan_metrics import ReplicateScan

    if len(classic_scans) != len(cnn_scans):
        raise InputFormatError(
            f"classic and CNN scans hold {len(classic_scans)} and {len(cnn_scans)} replicates"
        )
    out = []
    for a, b in zip(classic_scans, cnn_scans, strict=True):
        same = np.array_equal(a.positions, b.positions)
        if not same or not (a.true_position == b.true_position or np.isnan(a.true_position)):
            raise InputFormatError("classic and CNN scans are not of the same replicates and grid")
        out.append(ReplicateScan(b.positions, a.scores * b.scores, b.true_position))
    return out


def neutral_null(path, statistic: str = "log_odds_smoothed", smooth_bp: float = 0.0):
    """Per-window finite ``statistic`` of the neutral replicates of a replicate scan file."""
    _, neutrals, _, _ = load_replicate_scans(path)
    scans = neutrals.scans(statistic, smooth_bp)
    if not scans:
        return np.zeros(0)
    s = np.concatenate([n.scores for n in scans])
    return s[np.isfinite(s)]


def score_threshold(null: np.ndarray, p_threshold: float) -> float:
    """Smallest P(sweep) level whose empirical p-value can reach ``p_threshold``.

    ``p = (1 + #{null >= s}) / (1 + n) <= t`` needs ``#{null >= s} <= k = floor(t (1 + n) - 1)``,
    i.e. ``s`` above the (k + 1)-th largest null score; NaN when no score can reach it.
    """
    null = np.sort(np.asarray(null, np.float64)[np.isfinite(null)])
    n = null.size
    k = math.floor(p_threshold * (1 + n) - 1 + 1e-12)
    if n == 0 or k < 0:
        return float("nan")
    if k >= n:
        return float("-inf")
    return float(null[n - 1 - k])


# --------------------------------------------------------------------------------------------------
# per-chromosome outputs


def merge_chromosome(
    tables: list,
    null: np.ndarray,
    *,
    peaks: dict,
    base: int,
    out: dict,
    statistic: str = "log_odds_smoothed",
    smooth_bp: float = 0.0,
    header: list[str] | None = None,
    truth=None,
    title: str = "",
) -> dict:
    """Merge region tables, add the ranking score, p- and q-values and ranks, call peaks; write
    ``out`` (tsv, bedgraph, bed, png).

    ``null``: per-window neutral scores of the same ``statistic``; ``peaks``: the ``apps.sweeps.scan.peaks``
    config; ``header``: comment lines of the TSV; ``truth``: a truth table
    (``chromosome.read_truth``) whose sweeps and hotspots are marked on the PNG. Returns counts
    and the saturation check for the job's log and JSON.
    """
    from . import scan

    table = scan.add_score(scan.merge_scores(tables), statistic, smooth_bp)
    null = np.asarray(null, np.float64)
    if null.size and np.isfinite(null).any():
        table = scan.add_pvalues(table, null)
    else:
        table = table.assign(p_value=np.nan, q_value=np.nan)
    table["rank"] = scan.score_ranks(table["score"].to_numpy(np.float64))
    table["rank"] = table["rank"].astype("Int64")
    column, thr = peaks["column"], float(peaks["threshold"])
    called = scan.call_peaks(table, thr, column=column, max_gap=int(peaks["max_gap"]))
    called = called[called["n_points"] >= int(peaks["min_points"])].reset_index(drop=True)
    sat = scan.saturation(table, int(null.size))
    lines = list(header or [])
    if sat["warning"]:
        lines.append(f"warning: {sat['warning']}")
    scan.write_scores_tsv(table, out["tsv"], header=lines)
    scan.write_bedgraph(table, out["bedgraph"], base=base)
    scan.write_peaks_bed(called, out["bed"], base=base)
    sweeps, hotspots = None, None
    if truth is not None:
        sweeps = truth.loc[truth["class"] == "sweep", "sweep_position"].to_numpy(np.float64)
        hot = truth.dropna(subset=["hotspot_start"])
        hotspots = list(zip(hot["hotspot_start"], hot["hotspot_end"], strict=True))
    scan.plot_scan(
        table,
        out["png"],
        truth=sweeps,
        peaks=called,
        threshold=thr if column == "p_sweep" else None,
        p_threshold=thr if column == "p_value" else None,
        hotspots=hotspots,
        title=title or None,
    )
    scored = int(np.isfinite(table["score"].to_numpy(np.float64)).sum())
    return {
        "grid_points": len(table),
        "scored_points": scored,
        "peaks": len(called),
        "null_windows": int(null.size),
        "min_p_value": float(np.nanmin(table["p_value"])) if scored and null.size else None,
        "saturation": sat,
    }


# --------------------------------------------------------------------------------------------------
# evaluation table

SUMMARY_COLUMNS = (
    "scenario",
    "method",
    "engine",
    "data",
    "statistic",
    "scan_statistic",
    "input_haplotypes",
    "model_haplotypes",
    "sample_size",
    "success_rate",
    "distance_error_pct",
    "sensitivity_at_fpr",
    "fpr",
    "fpr_threshold",
    "observed_fpr",
    "n_sweep",
    "n_neutral",
    "grid_points",
    "null_windows",
    "windows",
    "seconds",
    "windows_per_s",
    "note",
)


def summary_row(
    scenario: str,
    method: str,
    engine: str,
    data: str,
    metrics: dict | None,
    info: dict,
    *,
    statistic: str = "",
    scan_statistic: bool = False,
) -> dict:
    """One row of scan_summary.tsv (NaN metrics and the reason when the engine was skipped).

    ``info``: the scan's JSON (replicate scans: ``scan_replicates.py``; chromosomes:
    ``scan_merge.py``); its ``sample_size``, ``null_windows``, ``skipped`` and ``warnings`` fill
    the sample-size and note columns. ``scan_statistic``: ``statistic`` is the one the genome scan
    ranks this model's grid points by (``scan_plan.statistic_for``).
    """
    row = dict.fromkeys(SUMMARY_COLUMNS, float("nan"))
    row.update(scenario=scenario, method=method, engine=engine, data=data, statistic=statistic)
    row["scan_statistic"] = bool(scan_statistic)
    if metrics:
        row.update({k: v for k, v in metrics.items() if k in SUMMARY_COLUMNS})
    seconds = info.get("seconds")
    windows = info.get("windows")
    size = info.get("sample_size") or {}
    notes = [info["skipped"]] if info.get("skipped") else []
    notes += list(info.get("warnings") or [])
    row.update(
        input_haplotypes=size.get("input_haplotypes", float("nan")),
        model_haplotypes=size.get("model_haplotypes", float("nan")),
        sample_size=size.get("action", ""),
        grid_points=info.get("grid_points", float("nan")),
        null_windows=info.get("null_windows", float("nan")),
        windows=windows if windows is not None else float("nan"),
        seconds=seconds if seconds is not None else float("nan"),
        windows_per_s=(windows / seconds) if windows and seconds else float("nan"),
        note="; ".join(notes),
    )
    return row


def write_summary(rows: list[dict], path) -> None:
    import pandas as pd

    table = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False, na_rep="NA", float_format="%.6g")


__all__ = [
    "SUMMARY_COLUMNS",
    "combine_scans",
    "load_classic_scores",
    "merge_chromosome",
    "neutral_null",
    "score_threshold",
    "summary_row",
    "write_summary",
]
