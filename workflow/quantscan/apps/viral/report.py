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


def write_tsv(table: pd.DataFrame, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")


__all__ = ["COMPRESSION_COLUMNS", "viral_summary", "write_tsv"]
