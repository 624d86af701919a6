"""Random augmentation of one-hot sequence batches during training (viral inputs).

A CNN that ends in a flattening FC layer (Fernandes & Kung Table III) sees where a record ends, so it can
learn record length, the amount of zero padding, or strand instead of sequence content (the
confounds of viral.md section 8). Two augmentations, drawn afresh for every mini-batch, take those
cues away:

- **crop**: with probability ``crop`` a record is replaced by a random window of it, of a length
  uniform in [``min_length``, its length] at a uniform offset, moved to the start (zero padding
  after it, as a short record has) - the partial sequences a database holds;
- **reverse complement**: with probability ``reverse_complement`` the record (or window) is read
  from the other strand (A<->T, C<->G; "other" stays).

A record's length is its last non-zero column (runs of N are set in the "other" channel, so they
count). Draws come from the training loop's generator, so they follow the seed and resume with a
checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError

#: channel order A, C, G, T, other -> its complement T, G, C, A, other
COMPLEMENT = np.array([3, 2, 1, 0, 4])


@dataclass(frozen=True)
class SequenceAugment:
    """Random crops and reverse complements of one-hot batches ``(batch, 5, N)``."""

    reverse_complement: float = 0.0
    crop: float = 0.0
    min_length: int = 1

    def __post_init__(self):
        for name in ("reverse_complement", "crop"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ConfigError(f"augment.{name} must be a probability in [0, 1], got {p}")
        if self.min_length < 1:
            raise ConfigError(f"augment.min_length must be >= 1, got {self.min_length}")

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if x.ndim != 3 or x.shape[1] != len(COMPLEMENT):
            raise ValueError(f"sequence augmentation needs (batch, 5, N) inputs, got {x.shape}")
        b, _, n = x.shape
        present = x.any(axis=1)
        lengths = np.where(present.any(axis=1), n - np.argmax(present[:, ::-1], axis=1), 0)
        # draw every record's three numbers whether or not it is cropped or flipped, so one
        # record's draws do not shift another's
        u_crop, u_len, u_off, u_rc = rng.random((4, b))
        crop = (u_crop < self.crop) & (lengths > self.min_length)
        span = np.floor(u_len * (lengths - self.min_length + 1)).astype(np.int64)  # u_len < 1
        win = np.where(crop, self.min_length + span, lengths)
        off = np.where(crop, np.floor(u_off * (lengths - win + 1)).astype(np.int64), 0)
        rc = u_rc < self.reverse_complement
        pos = np.arange(n)[None, :]
        src = np.where(rc[:, None], off[:, None] + win[:, None] - 1 - pos, off[:, None] + pos)
        src = np.where(pos < win[:, None], src, n)  # column n: an all-zero pad column
        padded = np.concatenate([x, np.zeros((b, x.shape[1], 1), x.dtype)], axis=2)
        out = np.take_along_axis(padded, src[:, None, :], axis=2)
        out[rc] = out[rc][:, COMPLEMENT]
        return out


def build_augment(spec: Mapping | None) -> SequenceAugment | None:
    """The augmentation an ``apps.viral.train.augment`` section describes; None when empty or absent."""
    if not spec:
        return None
    aug = SequenceAugment(**dict(spec))
    return aug if aug.crop > 0 or aug.reverse_complement > 0 else None
