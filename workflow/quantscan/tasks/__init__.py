"""Learning tasks: what a model's output means, how it is trained and scored.

A task is the part of training and evaluation that depends on the kind of prediction, not on the
application: the loss, the per-batch score watched by early stopping, what turns outputs into
probabilities and probabilities into predicted labels, the metrics written to ``metrics.json`` and
the inputs used to calibrate int8 models. ``classification``: one label per
input; ``affinities`` (:mod:`.segmentation`): a dense task, one binary label per voxel and
neighbour offset. Each provides the same attributes (:class:`Task`); an application names its task.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
from torch import nn

from .classification import CLASSIFICATION, Classification
from .segmentation import AFFINITIES, Affinities


class Task(Protocol):
    """What the engine (``train.fit``, the compression methods, evaluation) asks of a task."""

    name: str
    #: what turns the model's outputs into probabilities, as ``export.onnx.OrtEngine`` names it
    activation: str
    #: one output per input voxel (a fully convolutional model: ONNX exports keep spatial axes free)
    dense: bool
    #: what ``train.fit`` keeps the best epoch by: "loss" (the lowest validation loss) or "accuracy"
    #: (the highest validation accuracy)
    monitor: str

    def loss(self, class_weights: list[float] | None = None) -> nn.Module:
        """The training loss (mean over a batch)."""

    def correct(self, logits, y) -> float:
        """Correct predictions in a batch, in inputs (early stopping reports their share per
        input): a count for one label per input, a sum of per-input shares for dense tasks."""

    def proba(self, logits: torch.Tensor) -> torch.Tensor:
        """Probabilities of a batch of model outputs (``activation``)."""

    def labels(self, proba: np.ndarray) -> np.ndarray:
        """The predicted labels of probabilities, in the targets' format (e.g. what another
        model's predictions are compared against)."""

    def per_input_accuracy(self, y: np.ndarray, proba: np.ndarray) -> np.ndarray:
        """Per input, the share of its labels predicted right (1 or 0 for one label per input);
        its mean is ``correct`` summed over the inputs, divided by their number (``train.fit``'s
        ``val_accuracy``), and one minus its mean an error rate."""

    def metrics(self, y_true: np.ndarray, proba: np.ndarray, class_names) -> dict:
        """Metrics of test predictions, as written to ``metrics.json``."""

    def calibration_inputs(self, x: np.ndarray, n: int, seed: int) -> np.ndarray:
        """``n`` inputs (or all, when fewer) drawn reproducibly from ``x`` for int8 calibration."""


TASKS: dict[str, Task] = {CLASSIFICATION.name: CLASSIFICATION, AFFINITIES.name: AFFINITIES}


def error_rate(task: Task, y: np.ndarray, proba: np.ndarray) -> float:
    """One minus the mean per-input accuracy (:meth:`Task.per_input_accuracy`): the share of
    inputs not given their class for classification (e.g. a false-positive rate on a set of
    negatives), the mean share of wrong known voxels for a dense task."""
    return float((1 - task.per_input_accuracy(y, proba)).mean())


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(sorted(TASKS))}") from None


__all__ = [
    "AFFINITIES",
    "CLASSIFICATION",
    "TASKS",
    "Affinities",
    "Classification",
    "Task",
    "error_rate",
    "get_task",
]
