"""The genome scan's engines (workflow/rules/sweeps/scan.smk): which engines run which model, and
opening one.

``FP32_ENGINES`` run the fp32 model (``onnx_int8`` its static int8 export), ``COMPRESSED_ENGINES``
the packed models of the compression methods, and the localiser has its own
(``localiser.ENGINES``); ``engines_for_model`` picks a model's engines from the config.

``open_engine`` builds one from a model file; a model that cannot run in an engine (a packed model
in ``lut_fp32``, an fp32 model in ``packed``, ``onnx_int8`` for a compressed model, a compressed
model the lookup engine does not support) gives ``(None, reason)`` and the jobs write NA scores
and the reason instead of failing.
"""

from __future__ import annotations

import os

import numpy as np

from ...errors import ConfigError, InputFormatError

FP32 = "fp32"
FP32_ENGINES = ("torch_fp32_per_window", "torch_fp32", "onnx_fp32", "onnx_int8", "lut_fp32")
COMPRESSED_ENGINES = ("packed", "packed_torch", "torch_fp32", "onnx_fp32")


def engines_for_model(engines: dict, model: str) -> list[str]:
    """The engines of ``apps.sweeps.scan.engines`` (fp32, compressed) or
    ``apps.sweeps.scan.localiser.engines``."""
    from .localiser import LOCALISER

    if model == LOCALISER:
        return list(engines["localiser"])
    return list(engines[FP32 if model == FP32 else "compressed"])


def open_engine(
    kind: str,
    model_path: str | os.PathLike,
    *,
    model: str,
    shape: tuple[int, int],
    batch_size: int = 256,
    threads: int = 1,
    onnx_path: str | os.PathLike | None = None,
    localiser=None,
):
    """(engine, None), or (None, reason) when this model cannot run in engine ``kind``.

    The localiser (model ``localiser.LOCALISER``) opens through ``localiser.open_engine`` with its
    ``LocaliserSettings`` (``localiser``) at ``shape[0]`` haplotypes.

    ``model`` is ``"fp32"`` or a compression method's name. ``onnx_path`` is the fp32 model's ONNX
    export (``rule scan_onnx``): ``onnx_int8`` runs its static int8 version (required), and
    ``onnx_fp32`` runs the fp32 export as is instead of exporting the model again in every job
    (which took about 4 s a job). A corrupt model file still raises.
    """
    from ...runtime import make_engine
    from .localiser import LOCALISER

    if model == LOCALISER:
        from .localiser import open_engine as open_localiser

        if localiser is None:
            raise ConfigError(
                "the localiser's engine needs its settings (apps.sweeps.scan.localiser)"
            )
        return open_localiser(
            kind,
            model_path,
            onnx_path=onnx_path,
            settings=localiser,
            haplotypes=shape[0],
            batch_size=batch_size,
            threads=threads,
        )
    try:
        if kind == "onnx_int8":
            if model != FP32:
                raise ConfigError("onnx_int8 runs the fp32 model's int8 ONNX export only")
            if onnx_path is None:
                raise ConfigError("onnx_int8 needs the int8 ONNX file of the fp32 model")
            model_path = onnx_path
        elif kind == "onnx_fp32" and model == FP32 and onnx_path is not None:
            model_path = onnx_path
        engine = make_engine(
            kind, model_path, batch_size=batch_size, threads=threads, example_shape=shape
        )
    except ConfigError as err:
        return None, f"model {model} cannot run in engine {kind}: {err}"
    except InputFormatError:
        raise
    except Exception as err:  # e.g. the ONNX export of a quantized model
        if kind != "onnx_fp32":
            raise
        return None, f"model {model} cannot run in engine {kind}: {type(err).__name__}: {err}"
    # a first tiny batch catches models the engine accepts but cannot evaluate
    try:
        engine.predict_proba(np.zeros((1, 1, *shape), np.uint8))
    except ConfigError as err:
        return None, f"model {model} cannot run in engine {kind}: {err}"
    return engine, None


__all__ = [
    "COMPRESSED_ENGINES",
    "FP32",
    "FP32_ENGINES",
    "engines_for_model",
    "open_engine",
]
