"""Inference engines behind one interface (``base.Engine``), for fp32 and compressed models.

Every engine returns ``(B, n_classes)`` float64 logits from ``logits``, float32 probabilities
from ``predict_proba`` and the log-odds of one class from ``predict_log_odds`` (from the logits,
so it does not saturate where the probability rounds to 1); ``name``, ``kind``, ``batch_size``,
``threads`` and ``describe()`` describe it. Each engine declares the input it takes
(``input_shape`` without the batch axis, ``input_dtypes``) and refuses other arrays with an
``InputShapeError`` naming both: an ONNX graph declares its own dimensions, a torch model the
channels of its first layer, the lookup engine one-channel images; :func:`make_engine` fixes the
model's training shape (``input_shape=`` or, for one-channel images, ``example_shape=(H, W)``).

Engine kinds (the ``kind`` values of the configuration, :data:`ENGINES`):

========================  ======================================================================
kind                      what runs
========================  ======================================================================
torch_fp32_per_window     PyTorch fp32, one input per call (the per-window baseline)
torch_fp32                PyTorch fp32, batched, channels-last
onnx_fp32                 ONNX Runtime fp32 (``.onnx``; a torch file is exported on the fly)
onnx_int8                 ONNX Runtime static int8 (an ``.onnx`` from ``export.onnx.build_int8``)
torch_int8                PyTorch static int8, fbgemm kernels (``export.torch_int8``; the
                          ``model.int8.pt`` beside an int8 method's ``model.onnx``)
packed                    a packed low-bit model (``export.packed``) through the lookup engine
packed_torch              the same packed model, dequantized weights in PyTorch (dense reference)
lut_fp32                  an fp32 model through the lookup engine (shows what binary inputs buy)
========================  ======================================================================

Modules: ``base`` (the interface, input checks, softmax/log-odds), ``torch_engine``,
``onnx_engine`` (sessions, thread settings, named errors for unreadable files), ``lut`` and
``lutkernels`` (the exact lookup engine for binary-input nets and its numba kernels).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch import nn

from ..errors import ConfigError, InputFormatError
from .base import Engine, InputShapeError, log_odds, n_classes_of, softmax, torch_threads
from .lut import (
    BinaryConvLutEngine,
    ConvBlock,
    LutTrunk,
    lut_trunk_of,
    numba_available,
    patch_codes7,
)
from .onnx_engine import OnnxEngine, load_onnx, ort_session, session_options
from .torch_engine import TorchEngine, infer_input_shape

#: engine kind (configuration value) -> engine class
ENGINES: dict[str, type[Engine]] = {
    "torch_fp32_per_window": TorchEngine,
    "torch_fp32": TorchEngine,
    "onnx_fp32": OnnxEngine,
    "onnx_int8": OnnxEngine,
    "torch_int8": TorchEngine,
    "packed": BinaryConvLutEngine,
    "packed_torch": TorchEngine,
    "lut_fp32": BinaryConvLutEngine,
}
KINDS = tuple(ENGINES)

_PACKED_MAGIC = b"QSPK"


def model_format(path: str | os.PathLike) -> str:
    """'packed', 'onnx' or 'fp32' (a ``modelio`` file), by content."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as err:
        raise InputFormatError(f"{path}: cannot read model file: {err.strerror or err}") from err
    if head == _PACKED_MAGIC:
        return "packed"
    if path.suffix == ".onnx":
        return "onnx"
    return "fp32"


def load_model_arch(path: str | os.PathLike) -> tuple[nn.Module, dict]:
    """(torch model in eval mode, its ``arch`` dict) of an fp32 (``modelio``) or packed
    (``export.packed``) file."""
    fmt = model_format(path)
    if fmt == "packed":
        from ..export.packed import load_packed

        model, header = load_packed(path)
        return model.eval(), dict(header["arch"])
    if fmt == "fp32":
        from ..modelio import load_fp32

        model, arch = load_fp32(path)
        return model.eval(), dict(arch)
    raise ConfigError(f"{path}: an ONNX file has no torch model; use kind onnx_fp32 or onnx_int8")


def load_model(path: str | os.PathLike) -> nn.Module:
    """The torch model of an fp32 (``modelio``) or packed (``export.packed``) file, in eval mode."""
    return load_model_arch(path)[0]


def make_engine(
    kind: str,
    model_path: str | os.PathLike,
    *,
    batch_size: int = 256,
    threads: int = 1,
    chunk: int | None = None,
    kernels: str = "auto",
    name: str | None = None,
    example_shape: tuple[int, int] | None = None,
    input_shape: Sequence[int] | None = None,
    input_dtypes: Sequence[str] = ("uint8",),
) -> Engine:
    """Build an engine of ``kind`` (see :data:`ENGINES`) from a model file.

    ``torch_int8`` takes a torch int8 file (``export.torch_int8``) or the int8 ``.onnx`` it was
    written beside; ``torch_fp32*`` and ``lut_fp32`` take an fp32 file (a packed file also works for ``torch_*``);
    ``packed``/``packed_torch`` a packed file; ``onnx_int8`` an int8 ``.onnx``; ``onnx_fp32`` an
    ``.onnx`` or an fp32 file, exported to a temporary ONNX file with an input of ``input_shape``.
    ``input_shape`` (one input without the batch axis, e.g. ``(1, H, W)`` or ``(C, L)``) is also
    the shape the torch and lookup engines declare (an ONNX graph declares its own fixed
    dimensions); ``example_shape=(H, W)`` is short for ``input_shape=(1, H, W)``.
    ``input_dtypes``: the dtypes the engine accepts (the lookup engine takes uint8 only).
    """
    if kind not in ENGINES:
        raise ConfigError(f"unknown engine kind {kind!r}; known: {', '.join(KINDS)}")
    if input_shape is None and example_shape is not None:
        input_shape = (1, *example_shape)
    fmt = model_format(model_path)
    name = name or kind
    cls = ENGINES[kind]
    if cls is OnnxEngine:
        opts = dict(batch_size=batch_size, threads=threads, name=name, input_dtypes=input_dtypes)
        if fmt == "onnx":
            engine = OnnxEngine(model_path, **opts)
            engine.kind = kind
            return engine
        if kind == "onnx_int8":
            raise ConfigError(
                f"{model_path}: engine onnx_int8 needs an int8 .onnx file "
                "(built by quantscan.export.onnx.build_int8)"
            )
        if input_shape is None:
            raise ConfigError(
                "engine onnx_fp32 from a torch model needs example_shape=(H, W) or input_shape"
            )
        from ..export.onnx import export_onnx

        with tempfile.TemporaryDirectory(prefix="quantscan-onnx-") as tmpdir:
            tmp = Path(tmpdir) / "model.onnx"  # the session keeps the graph in memory
            x = np.zeros((1, *input_shape), np.float32)
            export_onnx(load_model(model_path), x, tmp)
            engine = OnnxEngine(tmp, **opts)
        engine.kind = kind
        return engine
    if kind == "torch_int8":
        from ..export import torch_int8

        path = torch_int8.sibling_path(model_path) if fmt == "onnx" else Path(model_path)
        model, reference, _ = torch_int8.load(path)
    else:
        if fmt == "onnx":
            raise ConfigError(
                f"{model_path}: engine {kind} needs a torch or packed model, not ONNX"
            )
        if kind in ("packed", "packed_torch") and fmt != "packed":
            raise ConfigError(f"{model_path}: engine {kind} needs a packed model file")
        if kind == "lut_fp32" and fmt != "fp32":
            raise ConfigError(f"{model_path}: engine lut_fp32 needs an fp32 model file")
        model, reference = load_model(model_path), None
    if kind == "torch_fp32_per_window":
        engine = TorchEngine(
            model,
            batch_size=1,
            threads=threads,
            name=name,
            channels_last=False,
            input_dtypes=input_dtypes,
        )
    elif cls is TorchEngine:
        engine = TorchEngine(
            model,
            batch_size=batch_size,
            threads=threads,
            name=name,
            # quantized kernels take NCHW / NCDHW
            channels_last=reference is None,
            input_dtypes=input_dtypes,
            reference=reference,
        )
    else:
        engine = cls(
            model, batch_size=batch_size, threads=threads, chunk=chunk, kernels=kernels, name=name
        )
    engine.kind = kind
    if input_shape is not None:  # the model's training shape: other inputs are refused
        engine.input_shape = input_shape
    return engine


__all__ = [
    "ENGINES",
    "KINDS",
    "BinaryConvLutEngine",
    "ConvBlock",
    "Engine",
    "InputShapeError",
    "LutTrunk",
    "OnnxEngine",
    "TorchEngine",
    "infer_input_shape",
    "load_model",
    "load_model_arch",
    "load_onnx",
    "log_odds",
    "lut_trunk_of",
    "make_engine",
    "model_format",
    "n_classes_of",
    "numba_available",
    "ort_session",
    "patch_codes7",
    "session_options",
    "softmax",
    "torch_threads",
]
