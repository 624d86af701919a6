"""Model-ready arrays from any application's split files, so training, compression, evaluation and
engines stay application-agnostic.

A split file is a NumPy ``.npz``. The engine's own layout holds ``x`` (uint8 or float32, (batch,
channels, ...)) and ``y``: integer labels (batch,), or integer dense targets (batch, ...) of a
dense task (per-voxel affinities, kept in their own integer dtype). An application with a compact layout of its own (bit-packed
images, 2-bit sequences) registers a decoder for the array name that marks it
(:func:`register_format`, from the application's package); ``load_split`` returns ``x`` as
(batch, channels, ...) and integer labels whatever the layout.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from .atomic import atomic_path
from .errors import InputFormatError

Decoder = Callable[[str | os.PathLike], tuple[np.ndarray, np.ndarray]]

#: array name -> decoder of the files that hold it (filled by the applications' packages)
FORMATS: dict[str, Decoder] = {}


def register_format(key: str, decoder: Decoder) -> None:
    """Split files holding array ``key`` are read by ``decoder(path) -> (x, y)``."""
    if key in ("x", "y"):
        raise ValueError("'x' and 'y' mark the engine's own split layout")
    FORMATS[key] = decoder


def save_split(path, x: np.ndarray, y: np.ndarray) -> None:
    """Write a split in the engine's own layout (``x``, ``y``), atomically."""
    x, y = np.asarray(x), np.asarray(y)
    if y.ndim <= 1 or not np.issubdtype(y.dtype, np.integer):
        y = y.astype(np.int64)
    if x.ndim < 2 or y.ndim < 1 or len(x) != len(y):
        raise ValueError(f"split arrays: x {x.shape} and y {y.shape} do not pair up")
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, x=x, y=y)


def load_split(path) -> tuple[np.ndarray, np.ndarray]:
    """(x (B, C, ...), y) from a split file of any application: labels as int64 (B,), dense
    targets (B, ...) in their stored integer dtype."""
    try:
        with np.load(path, allow_pickle=False) as z:
            files = set(z.files)
            if {"x", "y"} <= files:
                x, y = z["x"], z["y"]
                if x.ndim < 2 or y.ndim < 1 or len(x) != len(y):
                    raise InputFormatError(
                        f"{path}: fields 'x' {x.shape} and 'y' {y.shape} are not "
                        "(inputs, channels, ...) and one label (or target) per input"
                    )
                if not np.issubdtype(y.dtype, np.integer):
                    raise InputFormatError(f"{path}: field 'y' is {y.dtype}, not integer labels")
                return x, (y.astype(np.int64) if y.ndim == 1 else y)
    except InputFormatError:
        raise
    except Exception as err:
        raise InputFormatError(f"{path}: unreadable split file ({err})") from err
    for key, decoder in FORMATS.items():
        if key in files:
            return decoder(path)
    known = ", ".join(["x/y", *FORMATS]) if FORMATS else "x/y"
    raise InputFormatError(f"{path}: no known split layout ({known}) in arrays {sorted(files)}")
