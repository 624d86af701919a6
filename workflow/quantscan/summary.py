"""Summary tables: one row per (data set, method) gathered from ``metrics.json`` files.

The data set column is called ``scenario`` (the name of the first application's data sets; kept so
that existing tables read the same). Per-class accuracies ``acc_<class>`` follow ``mcc`` in the
order of the classes in the metrics' confusion matrix."""

from __future__ import annotations

import json
import math

import pandas as pd

from .atomic import atomic_path
from .errors import InputFormatError

#: leading columns, in order (``acc_<class>`` columns go after ``mcc``); further numeric metrics
#: follow alphabetically
COLUMNS = [
    "scenario",
    "method",
    "accuracy",
    "mcc",
    "model_bits",
    "file_bytes",
    "size_pct",
    "bits_per_layer",
    # int8 methods (ONNX Runtime): latency of fp32 PyTorch / fp32 ORT over the int8 session's
    "speedup_vs_torch_fp32",
    "speedup_vs_ort_fp32",
    # compression metrics of the deployed weights (compress.metrics; every compressed method)
    "density",
    "srqw",
    "cr_g",
    "ec_g",
    "nops",
    "nops_x_bits",
    "weights_mbit",
]


def metrics_json(metrics: dict) -> str:
    """JSON with NaN written as null (strict JSON readers reject NaN)."""

    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(metrics), indent=2, sort_keys=True) + "\n"


def read_metrics(path) -> dict:
    try:
        with open(path) as fh:
            data = json.load(fh)
    except (OSError, json.JSONDecodeError) as err:
        raise InputFormatError(f"{path}: unreadable metrics file ({err})") from err
    for key in ("scenario", "method", "accuracy"):
        if key not in data:
            raise InputFormatError(f"{path}: field {key!r} missing")
    return data


def class_columns(rows: list[dict]) -> list[str]:
    """``acc_<class>`` columns in class order (the confusion matrix's), then any others by name."""
    ordered = []
    for m in rows:
        classes = (m.get("confusion_matrix") or {}).get("classes") or []
        ordered += [f"acc_{c}" for c in classes if f"acc_{c}" not in ordered]
    rest = sorted({k for m in rows for k in m if k.startswith("acc_")} - set(ordered))
    return [c for c in ordered if any(c in m for m in rows)] + rest


def rows_table(rows: list[dict], columns: list[str] = COLUMNS) -> pd.DataFrame:
    """Metrics dicts as a table: scalar fields only, ``columns`` first (with the per-class
    accuracies after ``mcc``), the rest alphabetically."""
    table = pd.DataFrame(
        [{k: v for k, v in m.items() if not isinstance(v, dict | list)} for m in rows]
    )
    columns = list(columns)
    if "mcc" in columns:
        at = columns.index("mcc") + 1
        columns[at:at] = [c for c in class_columns(rows) if c not in columns]
    lead = [c for c in columns if c in table.columns]
    rest = sorted(c for c in table.columns if c not in lead)
    return (
        table[lead + rest].sort_values(["scenario", "method"], kind="stable").reset_index(drop=True)
    )


def summary_table(paths: list, columns: list[str] = COLUMNS) -> pd.DataFrame:
    metrics = [read_metrics(path) for path in paths]
    seen = {}
    for path, m in zip(paths, metrics, strict=True):
        key = (m["scenario"], m["method"])
        if key in seen:
            raise InputFormatError(
                f"{path}: scenario {key[0]!r} and method {key[1]!r} also come from {seen[key]}; "
                "give one of the methods another name"
            )
        seen[key] = path
    return rows_table(metrics, columns)


def write_summary(paths: list, out, columns: list[str] = COLUMNS) -> pd.DataFrame:
    table = summary_table(paths, columns)
    with atomic_path(out) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    return table
