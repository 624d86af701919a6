"""Learning tasks: what a model's output means, how it is trained and scored.

A task is the part of training and evaluation that depends on the kind of prediction, not on the
application: the loss, the per-batch score watched by early stopping, the metrics written to
``metrics.json`` and the inputs used to calibrate int8 models. ``classification`` (one label per
input) is the only task today; a dense task (one label per voxel, for segmentation) is added as a
module beside it that provides the same attributes (:class:`Task`), and an application names it.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from torch import nn

from .classification import CLASSIFICATION, Classification


class Task(Protocol):
    """What the engine (``train.fit``, the compression methods, evaluation) asks of a task."""

    name: str

    def loss(self, class_weights: list[float] | None = None) -> nn.Module:
        """The training loss (mean over a batch)."""

    def correct(self, logits, y) -> int:
        """Correct predictions in a batch (early stopping reports their share)."""

    def metrics(self, y_true: np.ndarray, proba: np.ndarray, class_names) -> dict:
        """Metrics of test predictions, as written to ``metrics.json``."""

    def calibration_inputs(self, x: np.ndarray, n: int, seed: int) -> np.ndarray:
        """``n`` inputs (or all, when fewer) drawn reproducibly from ``x`` for int8 calibration."""


TASKS: dict[str, Task] = {CLASSIFICATION.name: CLASSIFICATION}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(sorted(TASKS))}") from None


__all__ = ["CLASSIFICATION", "TASKS", "Classification", "Task", "get_task"]
