"""Classification: one label per input, cross-entropy loss, accuracy, per-class accuracy and MCC."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .classification_metrics import classification_metrics


@dataclass(frozen=True)
class Classification:
    """The classification task (:class:`quantscan.tasks.Task`)."""

    name: str = "classification"
    #: what turns the model's outputs into probabilities (as ``export.onnx.OrtEngine`` names it)
    activation: str = "softmax"
    #: one output per input (not per voxel)
    dense: bool = False
    #: early stopping keeps the epoch with the lowest validation loss
    monitor: str = "loss"

    def loss(self, class_weights: list[float] | None = None) -> nn.Module:
        weight = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32)
        return nn.CrossEntropyLoss(weight=weight)

    def correct(self, logits: torch.Tensor, y: torch.Tensor) -> int:
        return int((logits.argmax(1) == y).sum())

    def proba(self, logits: torch.Tensor) -> torch.Tensor:
        """Class probabilities: softmax over the classes (axis 1)."""
        return torch.softmax(logits, dim=1)

    def labels(self, proba: np.ndarray) -> np.ndarray:
        """The most probable class of each input."""
        return np.asarray(proba).argmax(1)

    def per_input_accuracy(self, y: np.ndarray, proba: np.ndarray) -> np.ndarray:
        """Per input, whether its most probable class is the true one (bool)."""
        return self.labels(proba) == y

    def metrics(self, y_true: np.ndarray, proba: np.ndarray, class_names) -> dict:
        return classification_metrics(y_true, proba, class_names)

    def calibration_inputs(self, x: np.ndarray, n: int, seed: int) -> np.ndarray:
        """A seeded random subset of ``n`` inputs (every input when there are fewer)."""
        rng = np.random.default_rng(seed)
        return x[rng.permutation(len(x))[:n]]


CLASSIFICATION = Classification()
