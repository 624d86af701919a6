import json

import pandas as pd
import pytest

from quantscan.errors import InputFormatError
from quantscan.summary import COLUMNS, metrics_json, write_summary


def test_summary_rows_columns_and_order(tmp_path):
    paths = []
    for scenario, method, acc in [("b", "fp32", 0.9), ("a", "mixed_x", 0.8), ("a", "fp32", 0.85)]:
        p = tmp_path / f"{scenario}_{method}.json"
        metrics = {
            "scenario": scenario,
            "method": method,
            "accuracy": acc,
            "mcc": 0.5,
            "acc_neutral": 1.0,
            "acc_sweep": 0.6,
            "model_bits": 310400,
            "file_bytes": 100,
            "fpr_island": float("nan"),
            "confusion_matrix": {"classes": ["neutral", "sweep"], "rows": [[1]]},
        }
        p.write_text(metrics_json(metrics))
        paths.append(p)
    assert json.loads(paths[0].read_text())["fpr_island"] is None  # strict JSON, no NaN
    table = write_summary(paths, tmp_path / "summary.tsv")
    back = pd.read_csv(tmp_path / "summary.tsv", sep="\t")
    # the per-class accuracies follow mcc in the confusion matrix's class order
    lead = ["scenario", "method", "accuracy", "mcc", "acc_neutral", "acc_sweep"]
    lead += [c for c in COLUMNS[4:] if c in back.columns]
    assert list(back.columns[: len(lead)]) == lead
    assert "confusion_matrix" not in back.columns and "fpr_island" in back.columns
    rows = list(zip(back.scenario, back.method, strict=True))
    assert rows == [("a", "fp32"), ("a", "mixed_x"), ("b", "fp32")]
    assert len(table) == 3


def test_missing_field_names_file(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('{"scenario": "a"}')
    with pytest.raises(InputFormatError, match=r"bad\.json: field 'method'"):
        write_summary([p], tmp_path / "s.tsv")


def test_class_columns_follow_the_confusion_matrix_order(tmp_path):
    """Classes in a non-alphabetical order keep it; accuracies of unknown classes go last."""
    m = {
        "scenario": "d",
        "method": "fp32",
        "accuracy": 0.5,
        "mcc": 0.1,
        "acc_zeta": 0.2,
        "acc_alpha": 0.8,
        "acc_extra": 0.4,
        "confusion_matrix": {"classes": ["zeta", "alpha"]},
    }
    p = tmp_path / "m.json"
    p.write_text(metrics_json(m))
    table = write_summary([p], tmp_path / "s.tsv")
    assert list(table.columns[:7]) == [
        "scenario",
        "method",
        "accuracy",
        "mcc",
        "acc_zeta",
        "acc_alpha",
        "acc_extra",
    ]
