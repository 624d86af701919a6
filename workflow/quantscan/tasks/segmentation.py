"""Affinities: a dense task, one binary label per voxel and neighbour offset (boundary detection
for instance segmentation of volumes).

A model predicts, for every voxel and every offset ``(dz, dy, dx)`` (by default the three
nearest-neighbour offsets ``(-1, 0, 0), (0, -1, 0), (0, 0, -1)``), the logit of the voxel
belonging to the same object as its neighbour at that offset: the affinity graph of Turaga et al.
2010, trained as in Funke et al. 2019 (MALIS/affinities, IEEE TPAMI) and Lee et al. 2017
(superhuman accuracy on SNEMI3D; long-range offsets as auxiliary targets). Watershed and
agglomeration of the predicted affinities give the segmentation (outside this module).

Targets are int8 arrays ``(C, *spatial)`` (a batch ``(N, C, *spatial)``) with 1 = same object,
0 = boundary and :data:`IGNORE` (-1) = unknown (unlabelled voxels, neighbours outside the volume),
as :func:`affinities` computes them from a label volume. ``train.fit`` passes them on as int64.

* Loss (:class:`AffinityLoss`): binary cross-entropy on the logits over the known entries,
  class-balanced per batch (positives and negatives each weigh half, however rare boundaries
  are; the frequency balancing of Lee et al. 2017), or with fixed ``[negative, positive]`` weights
  (``TrainConfig.class_weights``), or plain.
* ``correct``: per input, the share of known entries whose thresholded prediction is right,
  summed over the batch; ``train.fit`` divides by the batch size, so its ``val_accuracy`` is the
  mean voxel accuracy of the thresholded affinities and its ``val_loss`` the mean (balanced) BCE.
* ``metrics``: voxel accuracy, balanced accuracy, plain and balanced mean BCE and per-channel
  accuracy of sigmoid probabilities (:meth:`Affinities.proba`, ``activation = "sigmoid"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

#: target value of an affinity that is not known (excluded from loss and metrics)
IGNORE = -1
#: the three nearest-neighbour offsets (z, y, x): each voxel and its predecessor along an axis
NEAREST_NEIGHBOUR = ((-1, 0, 0), (0, -1, 0), (0, 0, -1))


def affinities(
    labels: np.ndarray,
    offsets: Sequence[Sequence[int]] = NEAREST_NEIGHBOUR,
    *,
    background: int | None = 0,
    ignore_label: int | None = None,
    outside: int = IGNORE,
) -> np.ndarray:
    """Affinity targets ``(len(offsets), *labels.shape)`` int8 of a label volume.

    Channel ``c`` at voxel ``v`` is 1 iff ``labels[v] == labels[v + offsets[c]]`` and that label
    is not ``background`` (None: every label is an object), else 0; :data:`IGNORE` where
    either voxel has ``ignore_label`` (unknown: unannotated voxels, or the background itself
    when ``ignore_label == background``), and ``outside`` (default :data:`IGNORE`) where
    ``v + offsets[c]`` lies outside the volume. Offsets have one entry per axis of ``labels``;
    long-range ones (e.g. ``(0, -3, 0)``) work alike. Vectorised: one comparison of two shifted
    views per offset.
    """
    labels = np.asarray(labels)
    offsets = [tuple(int(o) for o in off) for off in offsets]
    if any(len(off) != labels.ndim for off in offsets):
        raise ValueError(
            f"every offset needs {labels.ndim} entries (one per axis of labels "
            f"{labels.shape}), got {offsets}"
        )
    if not -128 <= outside <= 127:
        raise ValueError(f"outside must fit int8, got {outside}")
    out = np.full((len(offsets), *labels.shape), outside, dtype=np.int8)
    for c, off in enumerate(offsets):
        here, there = [], []  # slices of the voxels and of their neighbours at ``off``
        for o, n in zip(off, labels.shape, strict=True):
            if abs(o) >= n:
                break
            here.append(slice(max(-o, 0), n - max(o, 0)))
            there.append(slice(max(o, 0), n - max(-o, 0)))
        else:
            a, b = labels[tuple(here)], labels[tuple(there)]
            same = a == b
            if background is not None:
                same &= a != background
            aff = same.astype(np.int8)
            if ignore_label is not None:
                aff[(a == ignore_label) | (b == ignore_label)] = IGNORE
            out[(c, *here)] = aff
    return out


def patch_corners(spatial: Sequence[int], shape: Sequence[int], n: int, seed: int) -> np.ndarray:
    """``n`` seeded random corners ``(n, ndim)`` of patches of ``shape`` inside a volume of
    ``spatial`` voxels (what :func:`random_patches` cuts at; :func:`cut_patches` cuts more
    volumes at the same corners)."""
    shape = tuple(int(s) for s in shape)
    spatial = tuple(int(v) for v in spatial)
    if len(shape) != len(spatial) or any(
        s < 1 or s > v for s, v in zip(shape, spatial, strict=True)
    ):
        raise ValueError(f"patch shape {shape} does not fit in the volume {spatial}")
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, v - s + 1, n) for s, v in zip(shape, spatial, strict=True)], 1)


def cut_patches(volume: np.ndarray, corners: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Patches ``(n, channels, *shape)`` of ``volume`` ``(channels, *spatial)`` at ``corners``
    (:func:`patch_corners`), in its dtype."""
    shape = tuple(int(s) for s in shape)
    out = np.empty((len(corners), volume.shape[0], *shape), volume.dtype)
    for i, corner in enumerate(corners):
        window = tuple(slice(int(c), int(c) + s) for c, s in zip(corner, shape, strict=True))
        out[i] = volume[(slice(None), *window)]
    return out


def random_patches(
    raw: np.ndarray, target: np.ndarray, shape: Sequence[int], n: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` patches of ``shape`` (spatial) cut at seeded random corners from a volume:
    ``raw`` ``(*spatial)`` or ``(channels, *spatial)`` and its ``target`` ``(C, *spatial)``
    (e.g. :func:`affinities`). Returns ``x (n, channels, *shape)`` and ``y (n, C, *shape)`` in
    the dtypes of the inputs."""
    raw, target = np.asarray(raw), np.asarray(target)
    spatial = target.shape[1:]
    if raw.shape == spatial:
        raw = raw[None]
    if raw.shape[1:] != spatial:
        raise ValueError(f"raw {raw.shape} and target {target.shape} cover different volumes")
    corners = patch_corners(spatial, shape, n, seed)
    return cut_patches(raw, corners, shape), cut_patches(target, corners, shape)


class AffinityLoss(nn.Module):
    """Binary cross-entropy on logits, averaged over the known entries (target != IGNORE) with
    weights: ``class_weights = [negative, positive]`` when given; otherwise, with ``balance``,
    ``1 / count`` of each class in the batch (positives and negatives weigh half each: the loss is
    the mean of the two classes' mean BCE; a batch with one class only gets the plain mean);
    otherwise 1. The loss is ``sum(w * bce) / sum(w)`` over the known entries, 0 without any."""

    def __init__(self, balance: bool = True, class_weights: Sequence[float] | None = None):
        super().__init__()
        if class_weights is not None:
            if len(class_weights) != 2 or min(class_weights) < 0 or sum(class_weights) <= 0:
                raise ValueError(
                    "affinity class_weights are [negative, positive], non-negative and not "
                    f"both 0; got {class_weights}"
                )
            class_weights = [float(w) for w in class_weights]
        self.balance = bool(balance)
        self.class_weights = class_weights

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.shape != target.shape:
            raise ValueError(
                f"affinity logits {tuple(logits.shape)} and targets {tuple(target.shape)} differ"
            )
        known = target != IGNORE
        positive = target == 1
        bce = F.binary_cross_entropy_with_logits(
            logits, positive.to(logits.dtype), reduction="none"
        )
        if self.class_weights is not None:
            w_neg, w_pos = self.class_weights
        elif self.balance:
            n_pos = int((positive & known).sum())
            n_neg = int(known.sum()) - n_pos
            w_neg, w_pos = (1.0 / n_neg, 1.0 / n_pos) if n_pos and n_neg else (1.0, 1.0)
        else:
            w_neg, w_pos = 1.0, 1.0
        weight = torch.where(positive, w_pos, w_neg).to(logits.dtype) * known
        return (bce * weight).sum() / weight.sum().clamp_min(torch.finfo(logits.dtype).tiny)


def _bce(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    p = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
    return -np.where(y == 1, np.log(p), np.log1p(-p))


def affinity_metrics(
    y_true: np.ndarray,
    proba: np.ndarray,
    channel_names: Sequence[str] | None = None,
    threshold: float = 0.5,
) -> dict:
    """Metrics of predicted affinity probabilities ``proba`` against targets ``y_true`` (same
    shape ``(N, C, *spatial)``; :data:`IGNORE` entries excluded): ``accuracy`` (voxel accuracy of
    ``proba > threshold``), ``balanced_accuracy`` (mean of the accuracies on positives and on
    negatives), ``bce`` (mean binary cross-entropy, natural log, probabilities clipped to
    [1e-7, 1 - 1e-7]), ``balanced_bce`` (mean of the two classes' mean BCE), ``acc_<channel>``,
    the share of positives and the counts."""
    y_true, proba = np.asarray(y_true), np.asarray(proba)
    if y_true.shape != proba.shape or y_true.ndim < 2:
        raise ValueError(
            f"affinity targets {y_true.shape} and probabilities {proba.shape} must have one "
            "shape (N, C, ...)"
        )
    n_channels = y_true.shape[1]
    names = list(channel_names) if channel_names is not None else []
    if len(names) != n_channels:
        names = [f"aff{c}" for c in range(n_channels)]
    known = y_true != IGNORE
    pos, neg = known & (y_true == 1), known & (y_true == 0)
    right = (proba > threshold) == (y_true == 1)
    bce = _bce(y_true, proba)
    nan = float("nan")

    def mean(values, mask):
        count = int(mask.sum())
        return float(values[mask].mean()) if count else nan

    out = {
        "n": int(len(y_true)),
        "n_voxels": int(known.sum()),
        "positive_share": mean(y_true == 1, known),
        "accuracy": mean(right, known),
        "balanced_accuracy": float(np.nanmean([mean(right, pos), mean(right, neg)]))
        if pos.any() or neg.any()
        else nan,
        "bce": mean(bce, known),
        "balanced_bce": float(np.nanmean([mean(bce, pos), mean(bce, neg)]))
        if pos.any() or neg.any()
        else nan,
    }
    for c, name in enumerate(names):
        out[f"acc_{name}"] = mean(right[:, c], known[:, c])
    return out


@dataclass(frozen=True)
class Affinities:
    """The affinities task (:class:`quantscan.tasks.Task`): sigmoid logits ``(N, C, *spatial)``
    against int targets of the same shape (1, 0, :data:`IGNORE`); ``threshold`` on the
    probability; ``balance``: class-balanced loss when no ``class_weights`` are given."""

    name: str = "affinities"
    threshold: float = 0.5
    balance: bool = True
    #: what turns the model's outputs into probabilities (as ``export.onnx.OrtEngine`` names it)
    activation: str = "sigmoid"
    #: one output per input voxel: a fully convolutional model, exported with dynamic spatial axes
    dense: bool = True
    #: early stopping keeps the epoch with the highest validation voxel accuracy: the balanced BCE
    #: of a young model can rise while its accuracy does (a synthetic EM training rose 0.68 -> 0.73
    #: while the accuracy went 0.27 -> 0.67, and the loss restored its useless first epoch)
    monitor: str = "accuracy"

    def loss(self, class_weights: list[float] | None = None) -> nn.Module:
        return AffinityLoss(balance=self.balance, class_weights=class_weights)

    def correct(self, logits: torch.Tensor, y: torch.Tensor) -> float:
        """Sum over the batch of each input's voxel accuracy (a float: ``train.fit`` divides it
        by the batch size)."""
        known = (y != IGNORE).flatten(1)
        right = ((self.proba(logits) > self.threshold) == (y == 1)).flatten(1) & known
        return float((right.sum(1) / known.sum(1).clamp_min(1)).sum())

    def proba(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits)

    def labels(self, proba: np.ndarray) -> np.ndarray:
        """Thresholded probabilities as int8 affinities (1 = same object, 0 = boundary)."""
        return (np.asarray(proba) > self.threshold).astype(np.int8)

    def per_input_accuracy(self, y: np.ndarray, proba: np.ndarray) -> np.ndarray:
        """Per input, the share of its known entries whose thresholded prediction is right (0
        without any): :meth:`correct` of probabilities, input by input."""
        y = np.asarray(y)
        known = (y != IGNORE).reshape(len(y), -1)
        right = ((np.asarray(proba) > self.threshold) == (y == 1)).reshape(len(y), -1) & known
        return right.sum(1) / np.maximum(known.sum(1), 1)

    def metrics(self, y_true: np.ndarray, proba: np.ndarray, class_names) -> dict:
        """:func:`affinity_metrics`; ``class_names`` name the channels (offsets), e.g. z, y, x."""
        return affinity_metrics(y_true, proba, class_names, self.threshold)

    def calibration_inputs(self, x: np.ndarray, n: int, seed: int) -> np.ndarray:
        """A seeded random subset of ``n`` input patches (every patch when there are fewer)."""
        rng = np.random.default_rng(seed)
        return x[rng.permutation(len(x))[:n]]


AFFINITIES = Affinities()
