"""Classification metrics from predictions: accuracy, per-class accuracy, MCC, confusion matrix."""

from __future__ import annotations

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    return cm


def mcc(cm: np.ndarray) -> float:
    """Matthews correlation coefficient for any number of classes (Gorodkin's R_K); 0 when undefined."""
    cm = np.asarray(cm, dtype=np.float64)
    t, p = cm.sum(axis=1), cm.sum(axis=0)
    n, c = cm.sum(), np.trace(cm)
    denom = np.sqrt(n**2 - p @ p) * np.sqrt(n**2 - t @ t)
    return float((c * n - t @ p) / denom) if denom > 0 else 0.0


def classification_metrics(
    y_true: np.ndarray, proba: np.ndarray, class_names: list[str] | tuple[str, ...]
) -> dict:
    """Metrics for ``metrics.json``: accuracy, ``acc_<class>``, mcc, confusion matrix, n."""
    k = len(class_names)
    y_true = np.asarray(y_true, np.int64)
    y_pred = np.argmax(proba, axis=1) if len(proba) else np.zeros(0, np.int64)
    cm = confusion_matrix(y_true, y_pred, k)
    per_class = cm.diagonal() / np.maximum(cm.sum(axis=1), 1)
    out = {
        "n": int(len(y_true)),
        "accuracy": float((y_true == y_pred).mean()) if len(y_true) else float("nan"),
        "mcc": mcc(cm),
        "confusion_matrix": {"classes": list(class_names), "rows_true_cols_pred": cm.tolist()},
    }
    for name, acc in zip(class_names, per_class, strict=True):
        out[f"acc_{name}"] = float(acc)
    return out
