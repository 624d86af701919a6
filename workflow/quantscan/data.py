"""Model-ready arrays from any application's split files, so training, compression, evaluation and
engines stay application-agnostic.

Sweep splits hold bit-packed images (``images``); viral splits hold one-hot arrays (``onehot``). Either
way ``load_split`` returns ``x`` as uint8 (batch, channels, ...) and integer labels.
"""

from __future__ import annotations

import numpy as np

from .errors import InputFormatError


def load_split(path) -> tuple[np.ndarray, np.ndarray]:
    """(x uint8 (B, C, ...), y int64) from a split file of any application."""
    try:
        with np.load(path, allow_pickle=False) as z:
            files = set(z.files)
    except Exception as err:
        raise InputFormatError(f"{path}: unreadable split file ({err})") from err
    if "images" in files:
        from .sweeps.dataset import load_images

        x, y, _ = load_images(path)
        return x[:, None], y
    if "onehot" in files:
        from .viral.dataset import load_onehot

        return load_onehot(path)
    raise InputFormatError(
        f"{path}: neither 'images' (sweeps) nor 'onehot' (viral) in {sorted(files)}"
    )
