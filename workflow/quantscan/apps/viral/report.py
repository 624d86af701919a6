"""The viral summary table: every method in one unit (``evaluation.summary_row``), with the
compression columns of the CNN models from their ``metrics.json``.

Columns, in order (README "The viral path" documents each):

* ``scenario`` (the data set), ``method`` (``fp32``, a compressed model's primary variant, a
  baseline ``kmer<k>`` / ``length_only``);
* ``accuracy``, ``mcc``, ``acc_<class>``: per in-class test record at full length, closed set;
* the compression columns of the sweeps summary (``model_bits`` ... ``weights_mbit``; empty for
  baselines);
* ``open_accuracy``: per record with the open-set answer (``unclassified`` is wrong);
* ``frag<L>_accuracy``, ``frag<L>_open_accuracy``, ``frag<L>_n`` per fragment length;
* ``reject_<category>``, ``reject_all``: share of out-of-class test records called unclassified;
* ``openset`` (the strategy), ``threshold``, ``n_records``, ``window_accuracy`` (CNN models: the
  per-window test accuracy of the training and compression jobs), ``engine``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ...atomic import atomic_path
from ...errors import InputFormatError
from ...summary import COLUMNS
from .evaluation import summary_row

#: the compression columns taken from the models' metrics.json
COMPRESSION_COLUMNS = [c for c in COLUMNS if c not in ("scenario", "method", "accuracy", "mcc")]


def _read(path) -> dict:
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, json.JSONDecodeError) as err:
        raise InputFormatError(f"{path}: unreadable metrics file ({err})") from None


def _job(metrics: dict) -> str:
    """The job (method config name) a metrics.json belongs to: fp32 or its compression name."""
    comp = metrics.get("compression") or {}
    return comp.get("name") or metrics["method"]


def viral_summary(
    evaluations: Sequence[str | os.PathLike],
    metrics: Sequence[str | os.PathLike],
    classes: Sequence[str],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(summary, strategies)`` tables, rows in the order of ``evaluations``."""
    by_job = {}
    for path in metrics:
        m = _read(path)
        by_job[_job(m)] = m
    rows, strategies = [], []
    for path in evaluations:
        ev = _read(path)
        for key in ("method", "scenario", "headline", "records"):
            if key not in ev:
                raise InputFormatError(f"{path}: field {key!r} missing")
        job = ev["method"]
        m = by_job.get(job)
        name = m["method"] if m else job
        row = summary_row(ev, name, ev["scenario"])
        if m is not None:
            for c in COMPRESSION_COLUMNS:
                if c in m and not isinstance(m[c], dict | list):
                    row[c] = m[c]
            row["window_accuracy"] = m.get("accuracy")
        row["engine"] = ev.get("engine", "")
        rows.append(row)
        for s in ev["strategies"]:
            strategies.append(
                {
                    "scenario": ev["scenario"],
                    "method": name,
                    "configured": s["strategy"] == ev["headline"]["strategy"],
                    **s,
                }
            )
    table = pd.DataFrame(rows)
    lead = ["scenario", "method", "accuracy", "mcc", *(f"acc_{c}" for c in classes)]
    lead += [c for c in COMPRESSION_COLUMNS if c in table.columns]
    lead += [c for c in table.columns if c not in lead]
    return table.reindex(columns=lead), pd.DataFrame(strategies)


#: the target of the open-set answer: this share of out-of-class records rejected ...
TARGET_REJECTED = 0.95
#: ... at most this loss of in-class accuracy (against the closed-set answer)
TARGET_LOSS = 0.02


def _score_of(strategy: str) -> str:
    """The score a strategy thresholds (``threshold:msp``, ``background+msp`` -> ``msp``)."""
    return strategy.split(":", 1)[-1].split("+", 1)[-1]


def _number(value) -> float:
    """A JSON number, NaN for null (no records of that kind)."""
    return float("nan") if value is None else float(value)


def openset_plot(evaluations: Sequence[str | os.PathLike], path: str | os.PathLike) -> int:
    """``openset.png``: one panel per method, what each open-set strategy trades.

    Each curve is one strategy with a score (``evaluation.tradeoff_curve``): the in-class test
    records still answered right (x) against the out-of-class test records rejected (y) as its
    threshold rises from none, drawn as steps that never suggest a better trade than a threshold
    gives; dashed: the threshold alone, solid: with the background class.
    Markers are the strategies as calibrated (a square: the background class alone; a black
    ring: the configured strategy). The shaded box is the target: at least
    ``TARGET_REJECTED`` rejected at no more than ``TARGET_LOSS`` below the closed-set accuracy.
    Evaluations without curves (written before they were) get their markers only. Returns the
    number of curves drawn.
    """
    from ...plots import plt, save

    evs = [_read(p) for p in evaluations]
    if not evs:
        raise InputFormatError(f"{path}: no evaluations to plot")
    cols = min(3, len(evs))
    rows = -(-len(evs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.8 * rows), squeeze=False)
    colors: dict[str, str] = {}
    n_curves = 0
    for ax, ev in zip(axes.flat, evs, strict=False):
        closed = _number(ev["headline"].get("full_accuracy"))
        if np.isfinite(closed):
            ax.add_patch(
                plt.Rectangle(
                    (closed - TARGET_LOSS, TARGET_REJECTED),
                    1.02 - closed + TARGET_LOSS,
                    1.02 - TARGET_REJECTED,
                    color="tab:green",
                    alpha=0.15,
                    lw=0,
                )
            )
        for name, curve in ev.get("tradeoff", {}).items():
            color = colors.setdefault(_score_of(name), f"C{len(colors)}")
            ax.plot(
                [_number(v) for v in curve["kept"]],
                [_number(v) for v in curve["rejected"]],
                ls="--" if name.startswith("threshold:") else "-",
                color=color,
                lw=1.2,
                drawstyle="steps-post",
                label=name,
            )
            n_curves += 1
        for st in ev["strategies"]:
            name = st["strategy"]
            x, y = _number(st.get("full_open_accuracy")), _number(st.get("reject_all"))
            if name == "background":
                ax.plot(x, y, "s", color="black", ms=5, label="background")
            else:
                ax.plot(x, y, "o", color=colors.get(_score_of(name), "gray"), ms=4)
            if name == ev["headline"]["strategy"]:
                ax.plot(x, y, "o", mfc="none", mec="black", ms=10, mew=1.5)
        ax.set(
            title=f"{ev.get('method', '?')} ({ev.get('engine', '')})",
            xlabel="in-class test records right (full length)",
            ylabel="out-of-class records rejected",
            xlim=(0, 1.02),
            ylim=(0, 1.02),
        )
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(evs) :]:
        ax.axis("off")
    legend: dict = {}  # one entry per label, over all panels
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    labels = list(legend)
    if labels:
        fig.legend(
            legend.values(), labels, loc="lower center", ncol=min(5, len(labels)), fontsize=8
        )
    fig.suptitle(
        f"Open set: each threshold's trade (target: >= {TARGET_REJECTED:.0%} rejected at "
        f"<= {TARGET_LOSS:.0%} in-class loss, shaded; ringed: the configured strategy)",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.06 + 0.02 * (len(labels) // 5), 1, 0.95))
    save(fig, path)
    return n_curves


def write_tsv(table: pd.DataFrame, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")


__all__ = ["COMPRESSION_COLUMNS", "openset_plot", "viral_summary", "write_tsv"]
