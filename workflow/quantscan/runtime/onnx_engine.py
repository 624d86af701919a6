"""ONNX Runtime CPU sessions (fp32 or static int8 QDQ graphs) behind the engine interface.

Opening a model file: :func:`load_onnx` (the graph, ``onnx.load``) and :func:`ort_session` (a CPU
``InferenceSession``) turn a missing, truncated or foreign file into an ``InputFormatError`` that
names it, instead of protobuf's or onnxruntime's own exception types. :func:`session_options` are
the settings every engine session uses: ``threads`` intra-op threads, one inter-op thread,
sequential execution, all graph optimizations (ORT fuses QDQ patterns into integer kernels then).
``onnx`` and ``onnxruntime`` are imported when first needed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import InputFormatError, QuantscanError
from .base import Engine


def load_onnx(path: str | os.PathLike, **kwargs):
    """``onnx.load`` of a model file; a missing, truncated or foreign file raises InputFormatError
    naming it (random bytes can parse as an empty protobuf: a model needs graph inputs and outputs)."""
    import onnx

    try:
        m = onnx.load(str(path), **kwargs)
    except Exception as err:  # protobuf DecodeError, OSError, onnx's own errors
        raise InputFormatError(f"{path}: not a readable ONNX model: {err}") from err
    if not m.graph.input or not m.graph.output:
        raise InputFormatError(
            f"{path}: not a readable ONNX model: graph has {len(m.graph.input)} inputs and "
            f"{len(m.graph.output)} outputs (truncated or not ONNX?)"
        )
    return m


def session_options(intra_op_threads: int = 1, inter_op_threads: int = 1):
    """The ``SessionOptions`` of an engine session (module doc)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = int(intra_op_threads)
    so.inter_op_num_threads = int(inter_op_threads)
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return so


def ort_session(path: str | os.PathLike, options=None):
    """A CPU ``InferenceSession`` (``options``: :func:`session_options` when None); a missing,
    truncated or foreign file raises InputFormatError naming it instead of onnxruntime's own
    exception types."""
    import onnxruntime as ort

    if options is None:
        options = session_options()
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # InvalidProtobuf, NoSuchFile, Fail, InvalidGraph, ...
        raise InputFormatError(f"{path}: not a readable ONNX model: {err}") from err


class OnnxEngine(Engine):
    """An ONNX Runtime CPU session (fp32 or int8 QDQ graph), fed one float32 batch at a time.

    The graph declares the input shape (its first input without the batch axis; symbolic
    dimensions are free) and the number of classes (the last dimension of its first output; 2
    when symbolic).
    """

    kind = "onnx_fp32"

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        batch_size: int = 256,
        threads: int = 1,
        name: str | None = None,
        input_dtypes: Sequence[str] = ("uint8",),
    ):
        self.path = Path(path)
        try:
            self.session = ort_session(self.path, session_options(threads))
        except QuantscanError:  # a bad file is already an InputFormatError naming it
            raise
        except Exception as err:  # onnxruntime raises its own exception types
            raise InputFormatError(f"{path}: not a loadable ONNX model: {err}") from err
        inp, out = self.session.get_inputs()[0], self.session.get_outputs()[0]
        self.input_name, self.output_name = inp.name, out.name
        n_classes = out.shape[-1] if isinstance(out.shape[-1], int) else 2
        dims = list(inp.shape)[1:]
        super().__init__(
            name or self.kind,
            batch_size,
            threads,
            n_classes,
            tuple(d if isinstance(d, int) else None for d in dims),
            input_dtypes,
        )

    def _logits(self, x: np.ndarray) -> np.ndarray:
        feed = np.ascontiguousarray(x, dtype=np.float32)
        return self.session.run([self.output_name], {self.input_name: feed})[0]


__all__ = ["OnnxEngine", "load_onnx", "ort_session", "session_options"]
