"""The engine interface: batched logits, probabilities and log-odds of a declared input format.

An engine declares what it accepts:

* ``input_shape``: the shape of one input without the batch axis, e.g. ``(channels, H, W)`` for
  images or ``(channels, L)`` for sequences; an entry ``None`` is a free dimension, and
  ``input_shape = None`` declares nothing (any shape);
* ``input_dtypes``: the NumPy dtype names it accepts (``("uint8",)`` by default).

An array of another dtype, rank or fixed dimension is refused with an :class:`InputShapeError`
naming the engine, what it takes and what it got, before anything runs: no engine crashes on a
shape, and none silently scores an input of another size than its model was built for.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, InputFormatError


class InputShapeError(InputFormatError, ConfigError):
    """An engine input of another dtype or shape than the engine declares.

    An ``InputFormatError`` (the array is malformed for this engine); also a ``ConfigError`` so
    that callers which pair an engine with inputs by configuration catch it as before.
    """


@contextlib.contextmanager
def torch_threads(n: int):
    """Run the block with ``n`` PyTorch intra-op threads, then restore the previous setting."""
    old = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def softmax(z: np.ndarray) -> np.ndarray:
    """Softmax over axis 1, stable (the maximum subtracted first)."""
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def log_odds(z: np.ndarray, cls: int = 1) -> np.ndarray:
    """``log P(cls) - log(1 - P(cls))`` of softmax logits ``z`` (B, C), computed stably."""
    z = np.asarray(z, np.float64)
    if z.ndim != 2 or not 0 <= cls < z.shape[1] or z.shape[1] < 2:
        raise ConfigError(
            f"log-odds of class {cls} need (batch, classes >= 2) logits, got {z.shape}"
        )
    rest = np.delete(z, cls, axis=1)
    m = rest.max(axis=1, keepdims=True)
    return z[:, cls] - (m[:, 0] + np.log(np.exp(rest - m).sum(axis=1)))


def n_classes_of(model: nn.Module) -> int:
    """Outputs of a torch model: those of its last Linear or Conv layer (output channels of a
    dense model)."""
    conv = nn.Conv1d | nn.Conv2d | nn.Conv3d
    layers = [mod for mod in model.modules() if isinstance(mod, nn.Linear | conv)]
    if not layers:
        raise ConfigError(f"cannot tell the outputs of {type(model).__name__}: no Linear or Conv")
    last = layers[-1]
    return int(last.out_features if isinstance(last, nn.Linear) else last.out_channels)


def _normalize_shape(shape: Sequence[int | None] | None) -> tuple[int | None, ...] | None:
    if shape is None:
        return None
    return tuple(None if v is None else int(v) for v in shape)


def shape_text(shape: Sequence[int | None]) -> str:
    """``"12 x 16 images"`` for one-channel images ``(1, H, W)``, else ``"5 x 64 inputs"``;
    free dimensions are ``*``."""
    dims = ["*" if v is None else str(v) for v in shape]
    if len(dims) == 3 and dims[0] == "1":
        return f"{dims[1]} x {dims[2]} images"
    return f"{' x '.join(dims)} inputs"


class Engine:
    """Batched class outputs for arrays of a declared format. Subclasses implement ``_logits``.

    ``name``, ``kind``, ``batch_size`` (inputs per call of ``_logits``), ``threads``, ``n_classes``,
    ``input_shape`` and ``input_dtypes`` (module doc) describe it.
    """

    kind = ""

    def __init__(
        self,
        name: str,
        batch_size: int,
        threads: int,
        n_classes: int,
        input_shape: Sequence[int | None] | None = None,
        input_dtypes: Sequence[str] = ("uint8",),
    ):
        if batch_size < 1 or threads < 1:
            raise ConfigError(f"batch_size and threads must be >= 1 (got {batch_size}, {threads})")
        self.name = name
        self.batch_size = int(batch_size)
        self.threads = int(threads)
        self.n_classes = int(n_classes)
        self.input_dtypes = tuple(np.dtype(d).name for d in input_dtypes)
        self._input_shape = _normalize_shape(input_shape)

    @property
    def input_shape(self) -> tuple[int | None, ...] | None:
        """Shape of one input without the batch axis (None entries: free); None: undeclared."""
        return self._input_shape

    @input_shape.setter
    def input_shape(self, shape: Sequence[int | None] | None) -> None:
        self._input_shape = _normalize_shape(shape)

    def check_input(self, x: np.ndarray) -> np.ndarray:
        """``x`` as a contiguous array if its dtype and shape are the declared ones, else
        :class:`InputShapeError` naming what the engine takes and what it got."""
        x = np.asarray(x)
        if self.input_dtypes and x.dtype.name not in self.input_dtypes:
            raise InputShapeError(
                f"engine {self.name} takes {' or '.join(self.input_dtypes)} inputs, "
                f"got dtype {x.dtype}"
            )
        shape = self.input_shape
        if shape is not None:
            want = "(batch, " + ", ".join("*" if v is None else str(v) for v in shape) + ")"
            if x.ndim != len(shape) + 1:
                raise InputShapeError(
                    f"engine {self.name} takes inputs of shape {want}, got an array of shape "
                    f"{x.shape}"
                )
            if any(w is not None and w != g for w, g in zip(shape, x.shape[1:], strict=True)):
                got = shape_text(x.shape[1:]).rsplit(" ", 1)[0]
                raise InputShapeError(
                    f"engine {self.name} takes {shape_text(shape)} of shape {want}, got {got} "
                    f"(array shape {x.shape}); resize, subsample or match the input to the "
                    "model's size"
                )
        return np.ascontiguousarray(x)

    def _logits(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def logits(self, x: np.ndarray) -> np.ndarray:
        """``(B, n_classes)`` float64 logits of a batch of inputs of ``input_shape``."""
        x = self.check_input(x)
        if len(x) == 0:
            return np.zeros((0, self.n_classes), np.float64)
        out = [self._logits(x[i : i + self.batch_size]) for i in range(0, len(x), self.batch_size)]
        return np.concatenate(out).astype(np.float64)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """``(B, n_classes)`` float32 softmax probabilities."""
        return softmax(self.logits(x)).astype(np.float32)

    def predict_log_odds(self, x: np.ndarray, cls: int = 1) -> np.ndarray:
        """``log P(cls) - log P(not cls)`` per input, float64, from the logits (no saturation)."""
        return log_odds(self.logits(x), cls)

    def describe(self) -> dict:
        shape = self.input_shape
        return {
            "name": self.name,
            "kind": self.kind,
            "batch_size": self.batch_size,
            "threads": self.threads,
            "input_shape": list(shape) if shape is not None else None,
            "input_dtypes": list(self.input_dtypes),
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()})"


__all__ = [
    "Engine",
    "InputShapeError",
    "log_odds",
    "n_classes_of",
    "shape_text",
    "softmax",
    "torch_threads",
]
