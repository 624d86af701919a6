import numpy as np
import pytest

from quantscan.tasks.classification_metrics import classification_metrics, confusion_matrix, mcc


def test_mcc_known_values():
    assert mcc(np.array([[5, 0], [0, 5]])) == pytest.approx(1.0)
    assert mcc(np.array([[0, 5], [5, 0]])) == pytest.approx(-1.0)
    # y_true [1,1,1,0], y_pred [1,0,1,1]: TP 2, FN 1, FP 1, TN 0 -> MCC = -1/3
    cm = confusion_matrix(np.array([1, 1, 1, 0]), np.array([1, 0, 1, 1]), 2)
    assert cm.tolist() == [[0, 1], [1, 2]]
    assert mcc(cm) == pytest.approx(-1 / 3)
    # a constant predictor has undefined MCC, reported as 0
    assert mcc(np.array([[5, 0], [5, 0]])) == 0.0


def test_multiclass_mcc_matches_the_binary_formula_for_two_classes():
    tp, fn, fp, tn = 40, 10, 5, 45
    binary = (tp * tn - fp * fn) / np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert mcc(np.array([[tn, fp], [fn, tp]])) == pytest.approx(binary)


def test_classification_metrics_per_class():
    y = np.array([0, 0, 0, 1, 1])
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7], [0.4, 0.6]])
    m = classification_metrics(y, proba, ["neutral", "sweep"])
    assert m["accuracy"] == pytest.approx(0.8)
    assert m["acc_neutral"] == pytest.approx(2 / 3)
    assert m["acc_sweep"] == pytest.approx(1.0)
    assert m["confusion_matrix"]["rows_true_cols_pred"] == [[2, 1], [0, 2]]
    assert m["n"] == 5
