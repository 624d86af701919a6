"""Static int8 in PyTorch (FX graph mode post-training quantization, x86/fbgemm kernels).

ONNX Runtime runs a 3-D int8 convolution as im2col (single-threaded) + integer GEMM, which on a
2-core CPU is barely faster than its fp32 path; PyTorch's quantized ``Conv3d`` (fbgemm) runs direct
int8 kernels and is several times faster for 3-D U-Nets. This module gives the int8 methods a
second artifact beside the ONNX model: the same fp32 network quantized by
``torch.ao.quantization.quantize_fx`` (``prepare_fx`` with the backend's default qconfig mapping:
per-channel symmetric int8 weights, histogram-calibrated uint8 activations, Conv + BatchNorm + ReLU
fused; Jacob et al. 2018, "Quantization and training of neural networks for efficient
integer-arithmetic-only inference"), calibrated on the same training inputs.

Transposed convolutions whose stride equals their kernel (a U-Net's upsampling) are rewritten
before quantization as what they compute: a 1 x 1 convolution to ``out_channels x prod(kernel)``
channels and a depth-to-space shuffle (the sub-pixel convolution of Shi et al. 2016), exact in fp32.
fbgemm's own quantized ConvTranspose3d cost a trained U-Net 13 points of voxel accuracy (0.78
against 0.91 for fp32), and leaving it in fp32 halved the int8 network's speed; the 1 x 1
convolution quantizes like every other one. Other transposed convolutions stay fp32.

Joins of a skip and an upsampled map (``torch.cat``) get one output scale for both producers
(:func:`share_concat_qparams`, covering both calibrated ranges) and run as int8 copies into one
channels-last buffer (:func:`upsample_concat`): PyTorch's quantized cat of 5-D tensors
dequantizes and requantizes every input, which with the shuffle's copy took about half of the
U-Net's time. Measured on a 16-filter U-Net, blocks of 36 x 176 x 176 voxels, 2 threads: 0.9-1.1
M voxels/s with fp32 transposed convolutions and PyTorch's cat, 1.9-2.2 M voxels/s like this.

PyTorch 2.13 warns that its quantized tensor types (``quint8``) will be removed in a future
release (pytorch/pytorch#184982); this module needs a PyTorch that still has them.

File format (``torch.save``, read back with ``weights_only=True`` so that loading cannot execute
code; FORMAT v2): ``{"format": FORMAT, "arch": ..., "backend": "x86", "available": True, "pools":
..., "tensors": ..., "other": ...}``. ``pools`` maps a dtype name to one 1-D tensor holding the
values of every state dict tensor of that dtype, concatenated (so the zip has a few records, not
three per layer): the quantized weights' integer values (``int_repr``, int8), their per-channel
scales as float32 (the observers compute them in float32, so float32 holds PyTorch's float64
values exactly; float64 is kept for any that it does not), per-channel zero points only when not
all 0 (symmetric weights: none), biases and the activations' scales and zero points. ``tensors``
is the index, one list per state dict entry: ``[key, "t", dtype, offset, shape]`` (a plain
tensor), ``[key, "q", qdtype, offset, shape, scale, zero_point]`` (per-tensor quantized) or
``[key, "c", qdtype, offset, shape, axis, scale pool, scale offset, zero point offset or None]``
(per-channel); ``other`` holds any other entry as ``torch.save`` stores it. For the connectomics
U-Net (16 filters, 3 levels) the file is 329,785 bytes, 3.93x smaller than its fp32 state dict
file (1,296,493); v1 (the state dict as ``torch.save`` stores quantized tensors: float64 scales,
int64 zero points, one record per tensor) took 356,803 bytes, 3.63x. :func:`load` rebuilds the
fp32 architecture, converts it the same way without calibration, checks every index entry
against the converted state dict (key, kind, dtype, shape, offsets within their pool) before
building a tensor (``torch._make_per_channel_quantized_tensor`` and
``torch._make_per_tensor_quantized_tensor``, the same values: outputs are bit-identical) and loads
the state dict, so the file holds no code; v1 files (``FORMAT_V1``) are still read. A model that
FX cannot trace (data-dependent control flow) gets ``{"available": False, "reason": ...}`` and
:func:`load` raises ``ConfigError`` with that reason.
"""

from __future__ import annotations

import copy
import math
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_path
from ..errors import ConfigError, InputFormatError
from ..modelio import check_zip

FORMAT = "quantscan-torch-int8-v2"
#: the first format (the state dict as ``torch.save`` stores it), still read
FORMAT_V1 = "quantscan-torch-int8-v1"
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


class ShuffleUp(nn.Module):
    """A ``ConvTranspose{1,2,3}d`` with stride equal to its kernel (no padding, dilation or
    groups), as a 1 x 1 convolution to ``out_channels x prod(kernel)`` channels followed by a
    depth-to-space shuffle: each input voxel writes its own ``kernel`` block of the output, so the
    two are the same map (equal up to float summation order)."""

    def __init__(self, up: nn.Module):
        super().__init__()
        self.kernel = tuple(up.kernel_size)
        self.out_channels = up.out_channels
        nd, n = len(self.kernel), math.prod(self.kernel)
        conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[nd - 1]
        self.conv = conv(up.in_channels, up.out_channels * n, 1, bias=up.bias is not None)
        with torch.no_grad():
            # (in, out, *kernel) -> (out * prod(kernel), in, 1, ...), channels ordered (out, *kernel)
            w = up.weight.permute(1, *range(2, 2 + nd), 0).reshape(-1, up.in_channels)
            self.conv.weight.copy_(w.reshape(*w.shape, *(1,) * nd))
            if up.bias is not None:
                self.conv.bias.copy_(up.bias.repeat_interleave(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        nd = len(self.kernel)
        n = y.size(0)
        size = [y.size(2 + a) for a in range(nd)]  # (indexed one by one: traceable by FX)
        y = y.reshape(n, self.out_channels, *self.kernel, *size)
        # (n, out, k0.., s0..) -> (n, out, s0, k0, s1, k1, ...)
        order = [0, 1] + [i for a in range(nd) for i in (2 + nd + a, 2 + a)]
        y = y.permute(*order)
        return y.reshape(n, self.out_channels, *[size[a] * self.kernel[a] for a in range(nd)])


def shuffle_upsampling(model: nn.Module) -> nn.Module:
    """``model`` with every transposed convolution whose stride equals its kernel (no padding,
    output padding, dilation or groups) replaced by :class:`ShuffleUp`, in place."""
    transposed = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
    for name, child in list(model.named_children()):
        if (
            isinstance(child, transposed)
            and tuple(child.stride) == tuple(child.kernel_size)
            and not any(child.padding)
            and not any(child.output_padding)
            and all(d == 1 for d in child.dilation)
            and child.groups == 1
        ):
            setattr(model, name, ShuffleUp(child))
        else:
            shuffle_upsampling(child)
    return model


def _prepare(model: nn.Module, example: torch.Tensor) -> torch.fx.GraphModule:
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import prepare_fx

    _backend()
    mapping = get_default_qconfig_mapping(BACKEND)
    for transposed in (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d):
        mapping = mapping.set_object_type(transposed, None)  # those not rewritten: fp32
    fp32 = shuffle_upsampling(copy.deepcopy(model).eval())
    with warnings.catch_warnings():  # FX quantization announces its move to torchao
        warnings.simplefilter("ignore")
        return prepare_fx(fp32, mapping, (example,))


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
    return fast_concat(share_concat_qparams(_convert(prepared)))


#: methods and functions that keep a quantized tensor's scale and zero point
_SHAPE_OPS = {"reshape", "permute", "view", "contiguous", "flatten", "transpose"}


def _producer(gm: torch.fx.GraphModule, node):
    """The quantized module whose output ``node`` is, through shape-only ops; else None."""
    while isinstance(node, torch.fx.Node):
        if node.op == "call_module":
            mod = gm.get_submodule(node.target)
            return mod if hasattr(mod, "scale") and hasattr(mod, "zero_point") else None
        if node.op == "call_method" and node.target in _SHAPE_OPS:
            node = node.args[0]
            continue
        return None
    return None


def share_concat_qparams(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Give the quantized modules whose outputs one ``torch.cat`` joins (a U-Net's skip and
    upsampled maps) one output scale and zero point, covering the union of their calibrated
    ranges, so the concatenation copies int8 values instead of dequantizing and requantizing
    every input (which took most of a quantized U-Net's time on CPU). In place; returns ``gm``."""
    for node in gm.graph.nodes:
        if node.op != "call_function" or node.target is not torch.cat:
            continue
        mods = [_producer(gm, a) for a in node.args[0]]
        if not mods or any(m is None for m in mods):
            continue
        lo = min(float(m.scale) * (0 - int(m.zero_point)) for m in mods)
        hi = max(float(m.scale) * (255 - int(m.zero_point)) for m in mods)
        lo, hi = min(lo, 0.0), max(hi, 0.0)
        scale = max((hi - lo) / 255.0, 1e-8)
        zero = int(min(max(round(-lo / scale), 0), 255))
        for m in mods:
            m.scale, m.zero_point = scale, zero
    return gm


def int8_cat(tensors: list[torch.Tensor], dim: int = 0) -> torch.Tensor:
    """``torch.cat`` of quantized tensors with one scale and zero point as a copy of their int8
    values (PyTorch's quantized cat dequantizes and requantizes 5-D tensors); else ``torch.cat``."""
    first = tensors[0]
    if first.is_quantized and all(
        t.is_quantized
        and t.qscheme() == torch.per_tensor_affine
        and t.dtype == first.dtype
        and t.q_scale() == first.q_scale()
        and t.q_zero_point() == first.q_zero_point()
        for t in tensors
    ):
        ints = torch.cat([t.int_repr() for t in tensors], dim)
        return torch._make_per_tensor_quantized_tensor(ints, first.q_scale(), first.q_zero_point())
    return torch.cat(tensors, dim)


def upsample_concat(
    skip: torch.Tensor, y: torch.Tensor, kernel: tuple[int, ...], out_channels: int
) -> torch.Tensor:
    """``torch.cat([skip, shuffle(y)], 1)``, ``shuffle`` being :class:`ShuffleUp`'s
    depth-to-space of the 1 x 1 convolution's output ``y``: for quantized inputs with one scale
    and zero point, written straight into one channels-last int8 buffer (the layout fbgemm's
    convolutions take and return), two strided copies of int8 values instead of a shuffle, a
    concatenation and their requantizations; otherwise the same computation on whatever the
    tensors are."""
    nd = len(kernel)
    n, cs = skip.shape[:2]
    size = tuple(y.shape[2:])
    full = tuple(skip.shape[2:])
    same = (
        skip.is_quantized
        and y.is_quantized
        and skip.qscheme() == y.qscheme() == torch.per_tensor_affine
        and skip.dtype == y.dtype
        and skip.q_scale() == y.q_scale()
        and skip.q_zero_point() == y.q_zero_point()
    )
    last = (0, *range(2, 2 + nd), 1)  # (n, c, *s) -> (n, *s, c)
    # y's channels are (out, *kernel); element (s..., (o, k...)) goes to (s * kernel + k..., o)
    order = [0] + [i for a in range(nd) for i in (1 + a, 1 + nd + 1 + a)] + [1 + nd]
    split = [n] + [v for a in range(nd) for v in (size[a], kernel[a])] + [out_channels]
    if not same:
        yy = y.permute(*last).reshape(n, *size, out_channels, *kernel).permute(*order)
        up = yy.reshape(n, *full, out_channels).permute(0, 1 + nd, *range(1, 1 + nd))
        if not (skip.is_quantized and y.is_quantized):
            return torch.cat([skip, up], 1)
        # two scales: join in float, requantize to the skip's (as PyTorch's quantized cat)
        joined = torch.cat([skip.dequantize(), up.dequantize()], 1)
        return torch.quantize_per_tensor(joined, skip.q_scale(), skip.q_zero_point(), skip.dtype)
    out = torch._empty_affine_quantized(
        (n, *full, cs + out_channels),
        scale=skip.q_scale(),
        zero_point=skip.q_zero_point(),
        dtype=skip.dtype,
    )
    out[..., :cs].copy_(skip.permute(*last))  # quantized to quantized, one scale: int8 copies
    yy = y.permute(*last).reshape(n, *size, out_channels, *kernel)
    out[..., cs:].view(*split).copy_(yy.permute(*order))
    return out.permute(0, 1 + nd, *range(1, 1 + nd))


def _shuffle_of(node) -> tuple[torch.fx.Node, tuple[int, ...], int] | None:
    """(the convolution node, kernel, out_channels) when ``node`` is :class:`ShuffleUp`'s
    reshape(permute(reshape(conv))) in a converted graph; else None."""
    chain = []
    for method in ("reshape", "permute", "reshape"):
        if not (
            isinstance(node, torch.fx.Node)
            and node.op == "call_method"
            and node.target == method
            and len(node.users) == 1
        ):
            return None
        chain.append(node)
        node = node.args[0]
    if not (isinstance(node, torch.fx.Node) and node.op == "call_module"):
        return None
    args = chain[-1].args[1:]  # (n, out_channels, *kernel, *size)
    nd = (len(args) - 2) // 2
    if len(args) != 2 + 2 * nd or not all(isinstance(v, int) for v in args[1 : 2 + nd]):
        return None
    return node, tuple(args[2 : 2 + nd]), int(args[1])


def fast_concat(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Every ``torch.cat`` of a skip and a :class:`ShuffleUp` output through
    :func:`upsample_concat`, the others through :func:`int8_cat`. In place."""
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target is not torch.cat:
            continue
        parts = node.args[0]
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        found = _shuffle_of(parts[1]) if dim == 1 and len(parts) == 2 else None
        if found is None:
            node.target = int8_cat
            continue
        conv, kernel, out_channels = found
        with gm.graph.inserting_before(node):
            fused = gm.graph.call_function(upsample_concat, (parts[0], conv, kernel, out_channels))
        node.replace_all_uses_with(fused)
        gm.graph.erase_node(node)
    gm.graph.eliminate_dead_code()
    gm.recompile()
    return gm


#: quantized dtype -> the dtype of its integer values (``int_repr``)
_INT_REPR = {"qint8": torch.int8, "quint8": torch.uint8, "qint32": torch.int32}


def _pack(state: dict) -> tuple[dict, list, dict]:
    """(pools, tensors, other) of a quantized state dict: every tensor's values appended to the
    1-D pool of their dtype (quantized tensors: their integer values; per-channel scales as float32
    where float32 holds them exactly, zero points only when not all 0), ``tensors`` the index,
    ``other`` the entries that are not tensors of a known quantization scheme, as they are."""
    parts: dict[str, list[torch.Tensor]] = {}
    sizes: dict[str, int] = {}

    def put(t: torch.Tensor) -> tuple[str, int]:
        name = str(t.dtype).removeprefix("torch.")
        offset = sizes.get(name, 0)
        flat = t.detach().cpu().reshape(-1)
        parts.setdefault(name, []).append(flat)
        sizes[name] = offset + flat.numel()
        return name, offset

    tensors, other = [], {}
    for key, v in state.items():
        kind = _kind(v)
        if kind is None:
            other[key] = v.detach().cpu() if isinstance(v, torch.Tensor) else v
            continue
        shape = list(v.shape)
        if kind == "t":
            tensors.append([key, "t", *put(v), shape])
            continue
        qdtype = str(v.dtype).removeprefix("torch.")
        _, offset = put(v.int_repr())
        if kind == "q":
            tensors.append(
                [key, "q", qdtype, offset, shape, float(v.q_scale()), int(v.q_zero_point())]
            )
            continue
        scales = v.q_per_channel_scales()
        if torch.equal(scales.float().double(), scales):  # (observers compute them in float32)
            scales = scales.float()
        zeros = v.q_per_channel_zero_points()
        zero_offset = put(zeros.long())[1] if bool(zeros.any()) else None
        axis = int(v.q_per_channel_axis())
        tensors.append([key, "c", qdtype, offset, shape, axis, *put(scales), zero_offset])
    pools = {name: torch.cat(ts) for name, ts in parts.items()}
    return pools, tensors, other


def _kind(v) -> str | None:
    """How :func:`_pack` stores a state dict value: "t" a plain tensor, "q" a per-tensor and "c"
    a per-channel quantized one; None: as it is."""
    if not isinstance(v, torch.Tensor):
        return None
    if not v.is_quantized:
        return "t"
    if str(v.dtype).removeprefix("torch.") not in _INT_REPR:
        return None
    return {torch.per_tensor_affine: "q", torch.per_channel_affine: "c"}.get(v.qscheme())


def save(path: str | os.PathLike, arch: dict, qmodel: nn.Module | None, reason: str = "") -> int:
    """Write a torch int8 file (``qmodel`` None: an 'unavailable' file with ``reason``); returns
    its size in bytes."""
    blob = {"format": FORMAT, "arch": dict(arch), "backend": BACKEND}
    if qmodel is None:
        blob |= {"available": False, "reason": reason or "not quantized"}
    else:
        pools, tensors, other = _pack(qmodel.state_dict())
        blob |= {"available": True, "pools": pools, "tensors": tensors, "other": other}
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)
    return Path(path).stat().st_size


def _misfit(path, arch, detail: str) -> InputFormatError:
    return InputFormatError(
        f"{path}: field 'state_dict' does not fit 'arch' = {arch!r:.200} ({detail})"
    )


def _unpack(path, blob: dict, expected: dict, arch) -> dict:
    """The state dict of a v2 file's ``pools``, ``tensors`` and ``other``: every entry checked
    against ``expected`` (the state dict the arch converts to) before a tensor is built, so that
    nothing is allocated for a size that the file declares."""
    pools, entries, other = blob.get("pools"), blob.get("tensors"), blob.get("other")
    if not isinstance(pools, dict) or not all(
        isinstance(name, str)
        and isinstance(t, torch.Tensor)
        and not t.is_quantized
        and t.dim() == 1
        and str(t.dtype) == f"torch.{name}"
        for name, t in pools.items()
    ):
        raise InputFormatError(
            f"{path}: field 'pools' is not a mapping of dtype names to 1-D tensors"
        )
    if not isinstance(other, dict):
        raise InputFormatError(f"{path}: field 'other' is not a mapping")
    if not isinstance(entries, list) or not all(
        isinstance(e, list) and len(e) >= 5 and isinstance(e[0], str) for e in entries
    ):
        raise InputFormatError(f"{path}: field 'tensors' is not a list of [key, kind, ...] entries")
    keys = [e[0] for e in entries] + list(other)
    if len(set(keys)) != len(keys):
        raise InputFormatError(f"{path}: field 'tensors' repeats a key")
    bad = sorted(set(expected) ^ set(keys), key=str) or [
        e[0]
        for e in entries
        if not isinstance(e[4], list)
        or not isinstance(expected[e[0]], torch.Tensor)
        or tuple(e[4]) != tuple(expected[e[0]].shape)
    ]
    if bad:
        raise _misfit(path, arch, f"entries {bad[:3]} missing, unexpected or of another shape")
    state = dict(other)
    for entry in entries:
        key = entry[0]
        try:
            state[key] = _decode(entry, pools, expected[key])
        except (ValueError, TypeError, IndexError, RuntimeError) as err:
            raise InputFormatError(f"{path}: field 'tensors' entry {key!r}: {err}") from err
    return state


def _slice(pools: dict, name, offset, n: int) -> torch.Tensor:
    if name not in pools:
        raise ValueError(f"no pool {name!r}")
    pool = pools[name]
    if not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset <= len(pool) - n:
        raise ValueError(
            f"offset {offset!r} and {n} values do not fit pool {name!r} of {len(pool)}"
        )
    return pool[offset : offset + n].clone()


def _decode(entry: list, pools: dict, like) -> torch.Tensor:
    """One tensor of :func:`_unpack`, of the kind, dtype and (already checked) shape of ``like``."""
    kind, shape = entry[1], tuple(like.shape)
    if kind != _kind(like):
        raise ValueError(f"kind {kind!r}, the arch's is {_kind(like)!r}")
    n = math.prod(shape)
    if kind == "t":
        if entry[2] != str(like.dtype).removeprefix("torch.") or len(entry) != 5:
            raise ValueError(f"dtype {entry[2]!r}, the arch's is {like.dtype}")
        return _slice(pools, entry[2], entry[3], n).reshape(shape)
    qdtype = str(like.dtype).removeprefix("torch.")
    if entry[2] != qdtype:
        raise ValueError(f"dtype {entry[2]!r}, the arch's is {qdtype!r}")
    ints = _slice(pools, str(_INT_REPR[qdtype]).removeprefix("torch."), entry[3], n).reshape(shape)
    if kind == "q":
        if len(entry) != 7:
            raise ValueError("not [key, 'q', dtype, offset, shape, scale, zero_point]")
        scale, zero = entry[5], entry[6]
        if not isinstance(scale, float) or not math.isfinite(scale) or scale <= 0:
            raise ValueError(f"scale {scale!r} is not a positive number")
        if not isinstance(zero, int) or isinstance(zero, bool):
            raise ValueError(f"zero point {zero!r} is not an integer")
        return torch._make_per_tensor_quantized_tensor(ints, scale, zero)
    if len(entry) != 9:
        raise ValueError("not [key, 'c', dtype, offset, shape, axis, scale pool, offset, zeros]")
    axis, scale_pool, scale_offset, zero_offset = entry[5:]
    if axis != like.q_per_channel_axis():
        raise ValueError(f"axis {axis!r}, the arch's is {like.q_per_channel_axis()}")
    if scale_pool not in ("float32", "float64"):
        raise ValueError(f"scales in pool {scale_pool!r}, not float32 or float64")
    channels = shape[axis]
    scales = _slice(pools, scale_pool, scale_offset, channels).double()
    if zero_offset is None:
        zeros = torch.zeros(channels, dtype=torch.int64)
    else:
        zeros = _slice(pools, "int64", zero_offset, channels)
    return torch._make_per_channel_quantized_tensor(ints, scales, zeros, axis)


def load(path: str | os.PathLike) -> tuple[nn.Module, nn.Module, dict]:
    """(int8 model, the fp32 architecture it came from with untrained weights, arch) of a file
    written by :func:`save` (this format or ``FORMAT_V1``). An 'unavailable' file raises
    ``ConfigError`` naming the reason."""
    from ..models import build_model, validate_arch

    check_zip(path, "torch int8 model file")
    try:
        with warnings.catch_warnings():  # quantized tensors are rebuilt from TypedStorage
            warnings.simplefilter("ignore")
            blob = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as err:
        raise InputFormatError(f"{path}: no torch int8 model file") from err
    except Exception as err:
        raise InputFormatError(f"{path}: not a readable torch int8 model file ({err})") from err
    if not isinstance(blob, dict) or blob.get("format") not in (FORMAT, FORMAT_V1):
        raise InputFormatError(
            f"{path}: field 'format' is not {FORMAT!r} (nor {FORMAT_V1!r}); rerun the int8 "
            "method's rule to write it again"
        )
    if not blob.get("available"):
        raise ConfigError(
            f"{path}: this model has no PyTorch int8 version ({blob.get('reason')}); use engine "
            "onnx_int8"
        )
    arch = blob.get("arch")
    validate_arch(arch, path)
    fp32 = build_model(arch).eval()
    example = _example(fp32)
    qmodel = _convert(_prepare(fp32, example))
    # quantized modules replace their packed weights without a shape check: check every entry
    expected = qmodel.state_dict()
    if blob["format"] == FORMAT:
        with warnings.catch_warnings():  # (quantized tensor creation is deprecated)
            warnings.simplefilter("ignore")
            state = _unpack(path, blob, expected, arch)
    else:
        state = blob.get("state_dict")
        if not isinstance(state, dict):
            raise InputFormatError(f"{path}: field 'state_dict' is not a mapping")
    bad = sorted(set(expected) ^ set(state)) or [
        k
        for k, v in expected.items()
        if isinstance(v, torch.Tensor)
        and (not isinstance(state[k], torch.Tensor) or state[k].shape != v.shape)
    ]
    if bad:
        raise _misfit(path, arch, f"entries {bad[:3]} missing, unexpected or of another shape")
    try:
        qmodel.load_state_dict(state)
    except (RuntimeError, KeyError) as err:
        raise _misfit(path, arch, str(err)) from err
    return fast_concat(qmodel).eval(), fp32, dict(arch)


def _example(model: nn.Module) -> torch.Tensor:
    """A small input the model accepts, for tracing (shapes do not enter the traced graph)."""
    multiple = getattr(model, "input_multiple", None)
    first = next(m for m in model.modules() if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d))
    spatial = multiple() if multiple else (8,) * (first.weight.ndim - 2)
    return torch.zeros(1, first.in_channels, *spatial)


__all__ = [
    "BACKEND",
    "FORMAT",
    "FORMAT_V1",
    "ShuffleUp",
    "load",
    "quantize",
    "save",
    "shuffle_upsampling",
    "sibling_path",
]
