"""Static int8 in PyTorch (FX graph mode post-training quantization, x86/fbgemm kernels).

ONNX Runtime runs a 3-D int8 convolution as im2col (single-threaded) + integer GEMM, which on a
2-core CPU is barely faster than its fp32 path; PyTorch's quantized ``Conv3d`` (fbgemm) runs direct
int8 kernels and is several times faster for 3-D U-Nets. This module gives the int8 methods a
second artifact beside the ONNX model: the same fp32 network quantized by
``torch.ao.quantization.quantize_fx`` (``prepare_fx`` with the backend's default qconfig mapping:
per-channel symmetric int8 weights, histogram-calibrated uint8 activations, Conv + BatchNorm + ReLU
fused; Jacob et al. 2018, "Quantization and training of neural networks for efficient
integer-arithmetic-only inference"), calibrated on the same training inputs. Transposed
convolutions stay fp32 between a dequantize and a quantize: fbgemm's quantized ConvTranspose3d cost
a trained U-Net 13 points of voxel accuracy (0.78 against 0.91 for fp32), fp32 ones 0.3 points.

File format (``torch.save``, read back with ``weights_only=True`` so that loading cannot execute
code): ``{"format": FORMAT, "arch": ..., "backend": "x86", "available": True, "state_dict": ...}``,
the quantized GraphModule's state dict (int8 weights, scales, zero points). :func:`load` rebuilds
the fp32 architecture, converts it the same way without calibration and loads the state dict, so
the file holds no code. A model that FX cannot trace (data-dependent control flow) gets
``{"available": False, "reason": ...}`` and :func:`load` raises ``ConfigError`` with that reason.
"""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_path
from ..errors import ConfigError, InputFormatError

FORMAT = "quantscan-torch-int8-v1"
#: quantized engine and default qconfig mapping (fbgemm + oneDNN on x86 CPUs)
BACKEND = "x86"


def sibling_path(onnx_path: str | os.PathLike) -> Path:
    """The torch int8 file written beside an int8 method's ``model.onnx``: ``model.int8.pt``."""
    p = Path(onnx_path)
    return p.with_name(p.name.removesuffix(".onnx") + ".int8.pt")


def _backend() -> None:
    if BACKEND not in torch.backends.quantized.supported_engines:
        raise ConfigError(
            f"this PyTorch build has no {BACKEND!r} quantized engine (has "
            f"{torch.backends.quantized.supported_engines}); use engine onnx_int8"
        )
    torch.backends.quantized.engine = BACKEND


def _prepare(model: nn.Module, example: torch.Tensor) -> torch.fx.GraphModule:
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import prepare_fx

    _backend()
    mapping = get_default_qconfig_mapping(BACKEND)
    for transposed in (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d):
        mapping = mapping.set_object_type(transposed, None)
    with warnings.catch_warnings():  # FX quantization announces its move to torchao
        warnings.simplefilter("ignore")
        return prepare_fx(copy.deepcopy(model).eval(), mapping, (example,))


def _convert(prepared: torch.fx.GraphModule) -> torch.fx.GraphModule:
    from torch.ao.quantization.quantize_fx import convert_fx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return convert_fx(prepared).eval()


def quantize(model: nn.Module, calib_x: np.ndarray, *, batch_size: int = 8) -> nn.Module:
    """``model`` (fp32, eval mode) quantized to static int8, activations calibrated on ``calib_x``
    (training inputs, ``(n, *input_shape)``). Raises ``ConfigError`` when FX cannot trace it."""
    calib = torch.from_numpy(np.ascontiguousarray(calib_x, dtype=np.float32))
    if len(calib) == 0:
        raise ConfigError("torch int8 calibration needs at least one input")
    try:
        prepared = _prepare(model, calib[:1])
    except ConfigError:
        raise
    except Exception as err:  # torch.fx TraceError, NotImplementedError, RuntimeError ...
        raise ConfigError(
            f"{type(model).__name__} cannot be quantized by PyTorch FX ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}); use engine onnx_int8"
        ) from err
    with torch.inference_mode():
        for i in range(0, len(calib), batch_size):
            prepared(calib[i : i + batch_size])
    return _convert(prepared)


def save(path: str | os.PathLike, arch: dict, qmodel: nn.Module | None, reason: str = "") -> int:
    """Write a torch int8 file (``qmodel`` None: an 'unavailable' file with ``reason``); returns
    its size in bytes."""
    blob = {"format": FORMAT, "arch": dict(arch), "backend": BACKEND}
    if qmodel is None:
        blob |= {"available": False, "reason": reason or "not quantized"}
    else:
        state = {
            k: (v.detach().cpu() if isinstance(v, torch.Tensor) else v)
            for k, v in qmodel.state_dict().items()
        }
        blob |= {"available": True, "state_dict": state}
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)
    return Path(path).stat().st_size


def load(path: str | os.PathLike) -> tuple[nn.Module, nn.Module, dict]:
    """(int8 model, the fp32 architecture it came from with untrained weights, arch) of a file
    written by :func:`save`. An 'unavailable' file raises ``ConfigError`` naming the reason."""
    from ..models import build_model, validate_arch

    try:
        with warnings.catch_warnings():  # quantized tensors are rebuilt from TypedStorage
            warnings.simplefilter("ignore")
            blob = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as err:
        raise InputFormatError(f"{path}: no torch int8 model file") from err
    except Exception as err:
        raise InputFormatError(f"{path}: not a readable torch int8 model file ({err})") from err
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise InputFormatError(f"{path}: field 'format' is not {FORMAT!r}")
    if not blob.get("available"):
        raise ConfigError(
            f"{path}: this model has no PyTorch int8 version ({blob.get('reason')}); use engine "
            "onnx_int8"
        )
    arch, state = blob.get("arch"), blob.get("state_dict")
    validate_arch(arch, path)
    if not isinstance(state, dict):
        raise InputFormatError(f"{path}: field 'state_dict' is not a mapping")
    fp32 = build_model(arch).eval()
    example = _example(fp32)
    qmodel = _convert(_prepare(fp32, example))
    # quantized modules replace their packed weights without a shape check: check every entry
    expected = qmodel.state_dict()
    bad = sorted(set(expected) ^ set(state)) or [
        k
        for k, v in expected.items()
        if isinstance(v, torch.Tensor)
        and (not isinstance(state[k], torch.Tensor) or state[k].shape != v.shape)
    ]
    if bad:
        raise InputFormatError(
            f"{path}: field 'state_dict' does not fit 'arch' = {arch!r:.200} (entries {bad[:3]} "
            "missing, unexpected or of another shape)"
        )
    try:
        qmodel.load_state_dict(state)
    except (RuntimeError, KeyError) as err:
        raise InputFormatError(
            f"{path}: field 'state_dict' does not fit 'arch' = {arch!r:.200} ({err})"
        ) from err
    return qmodel.eval(), fp32, dict(arch)


def _example(model: nn.Module) -> torch.Tensor:
    """A small input the model accepts, for tracing (shapes do not enter the traced graph)."""
    multiple = getattr(model, "input_multiple", None)
    first = next(m for m in model.modules() if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d))
    spatial = multiple() if multiple else (8,) * (first.weight.ndim - 2)
    return torch.zeros(1, first.in_channels, *spatial)


__all__ = ["BACKEND", "FORMAT", "load", "quantize", "save", "sibling_path"]
