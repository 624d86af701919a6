"""Packed model files: integer codes at their bit width, scales, and a JSON header. No pickle.

Layout (all integers little-endian)::

    magic   4 bytes  b"QSPK"
    version u16      1
    flags   u16      0 (reserved)
    hlen    u32      length of the compressed header
    plen    u32      length of the payload
    crc32   u32      CRC-32 of header + payload
    header  hlen     zlib-compressed compact JSON
    payload plen     the arrays, back to back, in header order

The header holds ``arch`` (to rebuild the model with ``quantscan.models.build_model``),
``layer_config`` (``compress.layers.layer_config_of``), ``extra`` (caller's metadata) and ``tensors``: one
entry per state_dict tensor, ``[key, shape, codec, meta, arrays]`` where ``arrays`` lists
``[name, numpy dtype, shape]`` and array bytes follow each other in the payload.

Codecs turn a tensor into named arrays and back. They are looked up by name in ``CODECS``; which codec
a quantizer uses is ``QUANTIZER_CODECS[quantizer.name]``. ``register_codec`` adds one (e.g. a sparse
ternary format) without touching the container.

Unquantized tensors are stored by the smallest of ``raw`` and the *auto* codecs (``register_codec(...,
auto=True)``; an auto codec may decline a tensor). The built-in auto codec ``levels`` stores float
tensors that are sparse or take few distinct values (pruned weights on a b-bit grid, ternary weights)
exactly, through :func:`encode_levels`: where the non-zeros are (``full``, a bit ``mask`` or run-length
``gaps``, whichever is smallest) plus their values (b-bit codes on an inferred ``grid`` ``offset + k·step``
replaying the float32 arithmetic of ``compress/prune.py``, verified bit for bit; else a lookup ``tab``le of the
distinct values or of the magnitudes plus sign bits; else ``raw`` floats), or ``dense`` table codes
when that is smaller. The layout chosen is recorded in the tensor's header entry.

Modules that need more than ``layers.quantize_model`` to be rebuilt (``compress/ternary.py``'s layers) register a
*transform* (``register_transform(name, describe, apply)``): ``describe(model)`` is stored under the
header's ``transforms`` and ``apply`` replays it on the rebuilt model before its tensors are loaded.
Modules may expose ``packing_quantizers() -> {parameter name: quantizer}`` to choose the codec of their
own parameters.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_path
from ..compress.layers import QuantizedWeights, layer_config_of, quantize_model
from ..compress.quantizers import QuantizedTensor, WeightQuantizer
from ..errors import ConfigError, InputFormatError
from ..models import build_model, validate_arch

MAGIC = b"QSPK"
VERSION = 1
_PREFIX = struct.Struct("<4sHHIII")
_MAX_HEADER = 64 << 20  # decompressed header cap: a corrupt file must not exhaust memory
#: array dtypes a file may declare; np.frombuffer on these never runs code
_DTYPES = frozenset(
    {"|u1", "|i1", "|b1", "<u2", "<i2", "<u4", "<i4", "<u8", "<i8", "<f2", "<f4", "<f8"}
)


# --------------------------------------------------------------------------------------------------
# bit packing


def pack_bits(values: np.ndarray, width: int) -> np.ndarray:
    """Unsigned integers (< 2**width) as a little-endian bit stream of ``width`` bits each (uint8)."""
    values = np.ascontiguousarray(values, dtype=np.uint64).ravel()
    if values.size and int(values.max()) >> width:
        raise ValueError(f"code does not fit in {width} bits")
    if width in (8, 16, 32):
        return values.astype(f"<u{width // 8}").view(np.uint8)
    bits = ((values[:, None] >> np.arange(width, dtype=np.uint64)) & 1).astype(np.uint8)
    return np.packbits(bits.ravel(), bitorder="little")


def unpack_bits(buf: np.ndarray, width: int, count: int) -> np.ndarray:
    """Inverse of ``pack_bits``: ``count`` codes of ``width`` bits as uint64."""
    buf = np.ascontiguousarray(buf, dtype=np.uint8)
    if buf.size != packed_size(width, count):
        raise ValueError(f"{buf.size} bytes cannot hold {count} codes of {width} bits")
    if width in (8, 16, 32):
        return buf.view(f"<u{width // 8}").astype(np.uint64)
    bits = np.unpackbits(buf, count=count * width, bitorder="little").reshape(count, width)
    return bits.astype(np.uint64) @ (np.uint64(1) << np.arange(width, dtype=np.uint64))


def packed_size(width: int, count: int) -> int:
    return math.ceil(width * count / 8)


# --------------------------------------------------------------------------------------------------
# codecs


class Codec:
    """Encodes one tensor as JSON metadata plus named numpy arrays, and decodes it back.

    ``quantizer`` is the layer's quantizer for that tensor (None for float tensors). An auto codec
    (for float tensors) may return None from ``encode`` to decline a tensor.
    """

    name = ""
    needs_quantizer = True  #: False for formats of unquantized tensors

    def encode(self, tensor: torch.Tensor, quantizer) -> tuple[dict, dict[str, np.ndarray]]:
        raise NotImplementedError

    def decode(self, meta: dict, arrays: dict[str, np.ndarray], shape: tuple, quantizer):
        raise NotImplementedError


class RawCodec(Codec):
    """The tensor as it is (float32 weights of unquantized layers, buffers)."""

    name = "raw"
    needs_quantizer = False

    def encode(self, tensor, quantizer):
        return {}, {"v": tensor.detach().cpu().contiguous().numpy()}

    def decode(self, meta, arrays, shape, quantizer):
        return torch.from_numpy(arrays["v"].reshape(shape))


class CodesCodec(Codec):
    """Any ``WeightQuantizer``: codes bit-packed at ``QuantizedTensor.bits``, parameters as arrays.

    Power-of-two parameters are stored as int8 exponents when that is exact, else in their dtype.
    """

    name = "codes"

    def encode(self, tensor, quantizer: WeightQuantizer):
        q = quantizer.export(tensor.detach().cpu())
        arrays = {"codes": pack_bits(q.codes.numpy(), q.bits)}
        kinds = {}
        for pname, value in q.params.items():
            if pname in q.po2:
                exponent = torch.round(torch.log2(value))
                if torch.all(exponent.abs() <= 127) and torch.equal(
                    torch.exp2(exponent).to(value.dtype), value
                ):
                    arrays[pname] = exponent.numpy().astype(np.int8)
                    kinds[pname] = "po2"
                    continue
            arrays[pname] = value.contiguous().numpy()
            kinds[pname] = "raw"
        return {"w": q.bits, "dt": str(q.dtype).removeprefix("torch."), "p": kinds}, arrays

    def decode(self, meta, arrays, shape, quantizer: WeightQuantizer):
        dtype = getattr(torch, meta["dt"], None)
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ValueError(f"bad dtype {meta['dt']!r}")
        if meta["w"] != quantizer.code_bits:
            raise ValueError(
                f"code width {meta['w']!r} is not {quantizer.spec}'s {quantizer.code_bits}"
            )
        count = math.prod(shape)
        codes = unpack_bits(arrays["codes"], int(meta["w"]), count).astype(np.int64)
        if count and int(codes.max()) >= quantizer.n_levels:
            raise ValueError("code out of range for the quantizer")
        params = {}
        for pname, kind in meta["p"].items():
            value = torch.from_numpy(arrays[pname])
            params[pname] = torch.exp2(value.to(dtype)) if kind == "po2" else value
        q = QuantizedTensor(
            torch.from_numpy(codes).reshape(shape), int(meta["w"]), params, dtype=dtype
        )
        return quantizer.dequantize(q)


# --------------------------------------------------------------------------------------------------
# sparse and few-level float tensors

_F4 = np.dtype("<f4")
_MAX_TABLE = 1 << 16  #: most distinct values a lookup table (or a grid's code range) may span
_MIN_SAVING = 48  #: bytes ``levels`` must save over raw to pay for its header entry


def _width(n: int) -> int:
    """Bits that index ``n`` distinct values (0 for one or none)."""
    return max(0, int(n) - 1).bit_length()


def _nbytes(arrays: dict) -> int:
    return sum(np.asarray(a).nbytes for a in arrays.values())


def _unpack(arrays: dict, name: str, width: int, count: int) -> np.ndarray:
    buf = arrays.get(name, np.zeros(0, np.uint8))
    if buf.dtype != np.uint8 or buf.ndim != 1:
        raise ValueError(f"array {name!r} must be 1-D uint8")
    if width == 0:
        if buf.size:
            raise ValueError(f"zero-width codes {name!r} take no bytes")
        return np.zeros(count, np.int64)
    return unpack_bits(buf, width, count).astype(np.int64)


def _meta_int(meta: dict, key: str, lo: int, hi: int) -> int:
    value = meta.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{key}={value!r} must be an integer in [{lo}, {hi}]")
    return value


def _encode_positions(nonzero: np.ndarray) -> tuple[dict, dict]:
    """Where the non-zeros of a flat bool array are: ``full``, bit ``mask`` or ``gaps``, smallest.

    ``gaps``: the zero-run before each non-zero as a ``gw``-bit code; the all-ones code means "a run of
    2^gw - 1 zeros, no non-zero yet", so long runs cost several codes. ``gw`` minimises the size.
    """
    idx = np.flatnonzero(nonzero)
    if idx.size == nonzero.size:
        return {"pos": "full"}, {}
    mask = np.packbits(nonzero, bitorder="little")
    gaps = (np.diff(idx, prepend=-1) - 1).astype(np.int64)
    best = None
    for width in range(1, 33):
        run = (1 << width) - 1
        n_codes = int((gaps // run).sum()) + idx.size
        size = packed_size(width, n_codes)
        if best is None or size < best[0]:
            best = (size, width, n_codes)
    size, width, n_codes = best
    if size >= mask.size:
        return {"pos": "mask"}, {"m": mask}
    run = (1 << width) - 1
    codes = np.full(n_codes, run, dtype=np.uint64)
    codes[np.cumsum(gaps // run + 1) - 1] = (gaps % run).astype(np.uint64)
    meta = {"pos": "gaps", "gw": width, "nc": n_codes}
    return meta, ({"g": pack_bits(codes, width)} if n_codes else {})


def _decode_positions(meta: dict, arrays: dict, n: int) -> np.ndarray:
    kind = meta.get("pos")
    if kind == "full":
        return np.arange(n)
    if kind == "mask":
        mask = arrays.get("m")
        if mask is None or mask.dtype != np.uint8 or mask.size != packed_size(1, n):
            raise ValueError(f"bit mask must be {packed_size(1, n)} uint8 bytes")
        return np.flatnonzero(np.unpackbits(mask, count=n, bitorder="little"))
    if kind == "gaps":
        width = _meta_int(meta, "gw", 1, 32)
        codes = _unpack(arrays, "g", width, _meta_int(meta, "nc", 0, 1 << 40))
        run = (1 << width) - 1
        last = codes != run
        if codes.size and not last[-1]:
            raise ValueError("run-length codes end without a non-zero")
        idx = np.cumsum(np.where(last, codes + 1, run))[last] - 1
        if idx.size and idx[-1] >= n:
            raise ValueError(f"non-zero position {idx[-1]} beyond {n} elements")
        return idx
    raise ValueError(f"unknown position layout {kind!r}")


def _grid_values(offset: float, step: float, k: np.ndarray) -> np.ndarray:
    """``offset + k·step`` in float32 arithmetic, exactly as torch computes ``beta + k * step`` (and
    ``round(w/q) * q`` with offset 0) on float32 tensors with Python-float scalars."""
    return np.float32(offset) + k.astype(np.float32) * np.float32(step)


def _f32_neighbours(x: float, n: int) -> list:
    """The float32 nearest ``x`` and its ``n`` neighbours on each side."""
    c = np.float32(x)
    out = [c]
    lo = hi = c
    for _ in range(n):
        lo, hi = np.nextafter(lo, np.float32(-np.inf)), np.nextafter(hi, np.float32(np.inf))
        out += [lo, hi]
    return out


def _fit_grid(mags: np.ndarray):
    """``(offset, step, k)`` with ``_grid_values(offset, step, k) == mags`` bit for bit, or None.

    ``mags``: sorted distinct positive float32 magnitudes (at least 5: below that a table is as
    small). A step estimate (the smallest spacing divided by 1..16, as unused levels make spacings
    multiples of the step, or ``max / (2^(b-1) - 1)``; largest first, as a coarser exact grid needs
    fewer bits) gives each magnitude its level relative to the smallest; a least-squares line through
    them must fit to a few float32 ulps (else: not a grid). The absolute level of the
    smallest magnitude is unknown (``prune.quantize_offset`` need not use level 0), so it is tried as 0,
    as ``u_min/step`` (offset 0: ``prune.quantize_uniform``) and as ``2^(b-1) - 1`` minus the span (the
    largest weight sits on the top level); for each, float32 steps and offsets next to the estimates
    are checked, and only an exact reproduction is accepted.
    """
    if not 5 <= mags.size <= _MAX_TABLE:
        return None
    u = mags.astype(np.float64)
    tol = 16 * float(np.spacing(mags[-1]))
    tops = [2 ** (b - 1) - 1 for b in range(2, 18)]
    spacing = float(np.diff(u).min())
    estimates = {spacing / d for d in range(1, 17)} | {u[-1] / top for top in tops}
    tried = set()
    for s0 in sorted(estimates, reverse=True):
        if not s0 > 0:
            continue
        rel = np.rint((u - u[0]) / s0)
        if rel[-1] >= _MAX_TABLE or len(set(rel.tolist())) != rel.size:
            continue
        slope, intercept = np.polyfit(rel, u, 1)
        if not slope > 0 or np.abs(intercept + rel * slope - u).max() > tol:
            continue
        span = int(rel[-1])
        starts = {0, int(np.rint(u[0] / slope))} | {top - span for top in tops if top >= span}
        for step in _f32_neighbours(slope, 4):
            if float(step) in tried:
                continue
            tried.add(float(step))
            for k0 in sorted(starts):
                k = rel + k0
                if k[-1] >= 1 << 24:
                    continue
                scaled = k.astype(np.float32) * step
                offsets = _f32_neighbours(float(u[0]) - float(scaled[0]), 2) + [np.float32(0)]
                for offset in offsets:
                    if np.array_equal(offset + scaled, mags):
                        return float(offset), float(step), k.astype(np.int64)
    return None


def _value_candidates(v: np.ndarray) -> list[tuple[dict, dict]]:
    """Ways to store the non-zero values ``v`` (float32, in position order)."""
    out = [({"val": "raw"}, {"v": v})]
    if not v.size:
        return out
    neg = v < 0
    if neg.all():
        sign_meta, sign_arrays = {"sg": "-"}, {}
    elif not neg.any():
        sign_meta, sign_arrays = {"sg": "+"}, {}
    else:
        sign_meta, sign_arrays = {"sg": "b"}, {"s": np.packbits(neg, bitorder="little")}
    values, inverse = np.unique(v, return_inverse=True)
    if values.size <= _MAX_TABLE:
        w = _width(values.size)
        codes = {"i": pack_bits(inverse, w)} if w else {}
        out.append(({"val": "tab", "w": w}, {"t": values.astype(_F4), **codes}))
    mags, inverse = np.unique(np.abs(v), return_inverse=True)
    if mags.size <= _MAX_TABLE:
        w = _width(mags.size)
        codes = {"i": pack_bits(inverse, w)} if w else {}
        out.append(({"val": "mag", "w": w, **sign_meta}, {"t": mags, **codes, **sign_arrays}))
    grid = _fit_grid(mags)
    if grid is not None:
        offset, step, k_of_mag = grid
        k = k_of_mag[inverse]
        k0 = int(k.min())
        w = _width(int(k.max()) - k0 + 1)
        meta = {"val": "grid", "w": w, "k0": k0, "st": step, "of": offset, **sign_meta}
        codes = {"k": pack_bits(k - k0, w)} if w else {}
        out.append((meta, {**codes, **sign_arrays}))
    return out


def _decode_values(meta: dict, arrays: dict, count: int) -> np.ndarray:
    kind = meta.get("val")
    if kind == "raw":
        v = arrays.get("v", np.zeros(0, _F4))
        if v.dtype != _F4 or v.shape != (count,):
            raise ValueError(f"raw values must be {count} float32")
        return v
    if kind in ("tab", "mag"):
        table = arrays.get("t")
        if table is None or table.dtype != _F4 or table.ndim != 1:
            raise ValueError("value table must be 1-D float32")
        codes = _unpack(arrays, "i", _meta_int(meta, "w", 0, 16), count)
        if count and int(codes.max()) >= table.size:
            raise ValueError("value code out of the table")
        values = table[codes]
    elif kind == "grid":
        step, offset = meta.get("st"), meta.get("of")
        if not all(isinstance(x, int | float) and math.isfinite(x) for x in (step, offset)):
            raise ValueError("grid step and offset must be finite numbers")
        k0 = _meta_int(meta, "k0", 0, 1 << 24)
        values = _grid_values(
            offset, step, k0 + _unpack(arrays, "k", _meta_int(meta, "w", 0, 16), count)
        )
    else:
        raise ValueError(f"unknown value layout {kind!r}")
    if kind == "tab":
        return values
    sign = meta.get("sg")
    if sign == "+":
        return values
    if sign == "-":
        return -values
    if sign == "b":
        neg = _unpack(arrays, "s", 1, count).astype(bool)
        return np.where(neg, -values, values)
    raise ValueError(f"unknown sign layout {sign!r}")


def encode_levels(tensor: torch.Tensor) -> tuple[dict, dict[str, np.ndarray]]:
    """The smallest exact layout of a finite float32 tensor (see the module docstring).

    ``meta["pos"]`` records the position layout (full / mask / gaps / dense) and ``meta["val"]`` the
    value layout (grid / mag / tab / raw). Zeros are stored as +0.0.
    """
    t = tensor.detach().cpu()
    if t.dtype != torch.float32:
        raise ValueError(f"levels stores float32 tensors, not {t.dtype}")
    flat = t.reshape(-1).numpy().astype(_F4)
    if not np.isfinite(flat).all():
        raise ValueError("levels cannot store inf or NaN")
    nonzero = flat != 0
    pos_meta, pos_arrays = _encode_positions(nonzero)
    v = flat[nonzero]
    val_meta, val_arrays = min(_value_candidates(v), key=lambda c: _nbytes(c[1]))
    best = ({**pos_meta, "n": int(v.size), **val_meta}, {**pos_arrays, **val_arrays})
    if pos_meta["pos"] != "full":
        values, inverse = np.unique(np.where(nonzero, flat, np.float32(0)), return_inverse=True)
        if values.size <= _MAX_TABLE:
            w = _width(values.size)
            arrays = {"t": values.astype(_F4), **({"i": pack_bits(inverse, w)} if w else {})}
            if _nbytes(arrays) < _nbytes(best[1]):
                best = ({"pos": "dense", "val": "tab", "w": w}, arrays)
    meta, arrays = best
    return meta, {name: a for name, a in arrays.items() if a.size}  # empty arrays are implied


def decode_levels(meta: dict, arrays: dict[str, np.ndarray], shape: tuple) -> torch.Tensor:
    """Inverse of :func:`encode_levels`; raises ValueError on inconsistent metadata or arrays."""
    n = math.prod(shape)
    if meta.get("pos") == "dense":
        if meta.get("val") != "tab":
            raise ValueError("dense layout needs a value table")
        out = np.ascontiguousarray(_decode_values(meta, arrays, n), dtype=_F4)
    else:
        idx = _decode_positions(meta, arrays, n)
        if idx.size != meta.get("n"):
            raise ValueError(f"{idx.size} non-zero positions, header says {meta.get('n')!r}")
        out = np.zeros(n, _F4)
        out[idx] = _decode_values(meta, arrays, idx.size)
    return torch.from_numpy(out.reshape(shape))


class LevelsCodec(Codec):
    """Auto codec for float32 tensors that are sparse or take few values; declines the others."""

    name = "levels"
    needs_quantizer = False

    def encode(self, tensor, quantizer):
        if tensor.dtype != torch.float32 or tensor.numel() * 4 <= _MIN_SAVING:
            return None
        try:
            meta, arrays = encode_levels(tensor)
        except ValueError:
            return None
        if _nbytes(arrays) + _MIN_SAVING >= tensor.numel() * 4:
            return None
        return meta, arrays

    def decode(self, meta, arrays, shape, quantizer):
        return decode_levels(meta, arrays, shape)


CODECS: dict[str, Codec] = {"raw": RawCodec(), "codes": CodesCodec(), "levels": LevelsCodec()}
#: quantizer name -> codec name used to store tensors it quantizes
QUANTIZER_CODECS: dict[str, str] = {
    "quantized_bits": "codes",
    "binary": "codes",
    "ternary": "codes",
}
#: codecs tried, besides raw, for tensors without a quantizer (the smallest result wins)
AUTO_CODECS: list[str] = ["levels"]
#: name -> (describe(model) -> JSON-able or None, apply(model, description) -> model)
TRANSFORMS: dict[str, tuple[Callable, Callable]] = {}


def register_codec(codec: Codec, quantizers: tuple[str, ...] = (), auto: bool = False) -> None:
    """Make ``codec`` loadable, the storage format of the named quantizers, and (``auto``) a
    candidate format for unquantized tensors."""
    CODECS[codec.name] = codec
    for name in quantizers:
        QUANTIZER_CODECS[name] = codec.name
    if auto and codec.name not in AUTO_CODECS:
        AUTO_CODECS.append(codec.name)


def register_transform(name: str, describe: Callable, apply: Callable) -> None:
    """Store ``describe(model)`` (when not None) in packed headers and replay it with
    ``apply(model, description) -> model`` when rebuilding; ``apply`` raises ConfigError on bad input."""
    TRANSFORMS[name] = (describe, apply)


def _load_plugins() -> None:
    """Import the modules that register codecs and transforms here (they import this module)."""
    from ..compress import ternary  # noqa: F401


def _apply_transforms(model: nn.Module, transforms: dict) -> nn.Module:
    for name, description in transforms.items():
        if name not in TRANSFORMS:
            raise ConfigError(f"unknown model transform {name!r}; known: {sorted(TRANSFORMS)}")
        model = TRANSFORMS[name][1](model, description)
    return model


# --------------------------------------------------------------------------------------------------
# save / load


def _tensor_quantizers(model: nn.Module) -> dict[str, WeightQuantizer]:
    """state_dict key -> quantizer for quantized weights and biases."""
    out = {}
    for name, module in model.named_modules():
        if isinstance(module, QuantizedWeights):
            prefix = f"{name}." if name else ""
            if module.kernel_quantizer is not None:
                out[prefix + "weight"] = module.kernel_quantizer
            if module.bias_quantizer is not None and module.bias is not None:
                out[prefix + "bias"] = module.bias_quantizer
        elif callable(getattr(module, "packing_quantizers", None)):
            prefix = f"{name}." if name else ""
            for pname, quantizer in module.packing_quantizers().items():
                out[prefix + pname] = quantizer
    return out


def _encode_float(tensor: torch.Tensor) -> tuple[str, tuple[dict, dict]]:
    """The smallest of raw and the auto codecs that accept ``tensor``."""
    best = ("raw", CODECS["raw"].encode(tensor, None))
    for name in AUTO_CODECS:
        encoded = CODECS[name].encode(tensor, None)
        if encoded is not None and _nbytes(encoded[1]) < _nbytes(best[1][1]):
            best = (name, encoded)
    return best


def save_packed(model: nn.Module, path, arch: dict, extra: dict | None = None) -> int:
    """Write ``model`` (quantized or not) as a packed file; returns the file size in bytes.

    ``arch`` must rebuild the model's float architecture with ``quantscan.models.build_model``.
    Quantized weights are stored as their quantizer's codes: the file holds what the fake-quantized
    forward pass computes, so ``load_packed`` gives the same predictions. Other tensors go raw or, when
    smaller, through an auto codec (sparse / few-level weights: ``levels``).
    """
    _load_plugins()
    transforms = {}
    for tname, (describe, _) in TRANSFORMS.items():
        description = describe(model)
        if description is not None:
            transforms[tname] = description
    try:
        reference_model = build_model(dict(arch))
    except (ValueError, TypeError, KeyError) as err:
        raise ConfigError(f"arch {arch!r} does not build a model: {err}") from None
    try:
        reference = _apply_transforms(reference_model, transforms).state_dict()
    except ConfigError as err:
        raise ConfigError(f"arch {arch!r} does not match the model's layers: {err}") from None
    state = model.state_dict()
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    if shapes != {k: tuple(v.shape) for k, v in reference.items()}:
        raise ConfigError(f"arch {arch!r} does not match the model's parameters")

    quantizers = _tensor_quantizers(model)
    entries, blobs = [], []
    for key, tensor in state.items():
        quantizer = quantizers.get(key)
        if quantizer is None:
            codec_name, (meta, arrays) = _encode_float(tensor)
        else:
            codec_name = QUANTIZER_CODECS.get(quantizer.name)
            if codec_name is None:
                raise ConfigError(f"no packed format for quantizer {quantizer.spec} ({key})")
            meta, arrays = CODECS[codec_name].encode(tensor, quantizer)
        listed = []
        for aname, arr in arrays.items():
            arr = np.ascontiguousarray(arr)
            dtype = arr.dtype.newbyteorder("<").str if arr.dtype.byteorder == ">" else arr.dtype.str
            if dtype not in _DTYPES:
                raise ConfigError(f"{key}: cannot store arrays of dtype {arr.dtype}")
            listed.append([aname, dtype, list(arr.shape)])
            blobs.append(arr.astype(dtype, copy=False).tobytes())
        entries.append([key, list(tensor.shape), codec_name, meta, listed])

    header = {"arch": dict(arch), "layer_config": layer_config_of(model), "extra": extra or {}}
    if transforms:
        header["transforms"] = transforms
    header["tensors"] = entries
    try:
        text = json.dumps(header, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"arch and extra must be JSON-serialisable: {err}") from None
    hbytes = zlib.compress(text.encode(), 9)
    payload = b"".join(blobs)
    crc = zlib.crc32(payload, zlib.crc32(hbytes))
    data = _PREFIX.pack(MAGIC, VERSION, 0, len(hbytes), len(payload), crc) + hbytes + payload
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)
    return len(data)


def read_packed_header(path) -> dict:
    """The validated header of a packed file (arch, layer_config, extra, tensors, file_bytes)."""
    header, _ = _read(path)
    return header


def _read(path) -> tuple[dict, bytes]:
    _load_plugins()  # their codec names must be known to validate the header
    path = Path(path)

    def bad(why: str) -> InputFormatError:
        return InputFormatError(f"{path}: not a valid packed model file: {why}")

    try:
        data = path.read_bytes()
    except OSError as err:
        raise InputFormatError(f"{path}: cannot read packed model: {err}") from None
    if len(data) < _PREFIX.size:
        raise bad(f"{len(data)} bytes is shorter than the {_PREFIX.size}-byte prefix")
    magic, version, _flags, hlen, plen, crc = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise bad(f"bad magic {magic!r} (expected {MAGIC!r})")
    if version != VERSION:
        raise bad(f"unsupported version {version} (this reader knows {VERSION})")
    if _PREFIX.size + hlen + plen != len(data):
        raise bad(f"declares {_PREFIX.size + hlen + plen} bytes but has {len(data)} (truncated?)")
    body = data[_PREFIX.size :]
    if zlib.crc32(body) != crc:
        raise bad("checksum mismatch (corrupted)")
    try:
        inflater = zlib.decompressobj()
        text = inflater.decompress(body[:hlen], _MAX_HEADER)
        if inflater.unconsumed_tail or not inflater.eof:
            raise ValueError("header too large or incomplete")
        header = json.loads(text)
    except (zlib.error, ValueError, UnicodeDecodeError, RecursionError) as err:
        raise bad(f"unreadable header: {err}") from None
    try:
        _check_header(header, plen)
    except (KeyError, TypeError, ValueError) as err:
        raise bad(f"malformed header: {err}") from None
    header["file_bytes"] = len(data)
    return header, body[hlen:]


def _check_header(header, plen: int) -> None:
    if not isinstance(header, dict):
        raise TypeError("header is not an object")
    if not isinstance(header["arch"], dict) or not isinstance(header["layer_config"], dict):
        raise TypeError("arch and layer_config must be objects")
    if not isinstance(header["extra"], dict) or not isinstance(header["tensors"], list):
        raise TypeError("extra must be an object and tensors a list")
    if not isinstance(header.get("transforms", {}), dict):
        raise TypeError("transforms must be an object")
    total = 0
    for entry in header["tensors"]:
        key, shape, codec, meta, arrays = entry
        if not isinstance(key, str) or codec not in CODECS or not isinstance(meta, dict):
            raise ValueError(f"bad tensor entry {entry!r:.200}")
        _check_shape(shape)
        for aname, dtype, ashape in arrays:
            if not isinstance(aname, str) or dtype not in _DTYPES:
                raise ValueError(f"{key}: bad array {aname!r} of dtype {dtype!r}")
            _check_shape(ashape)
            total += math.prod(ashape) * np.dtype(dtype).itemsize
    if total != plen:
        raise ValueError(f"arrays need {total} payload bytes, the file has {plen}")


def _check_shape(shape) -> None:
    if not isinstance(shape, list) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape
    ):
        raise ValueError(f"bad shape {shape!r}")


def load_packed(path) -> tuple[nn.Module, dict]:
    """Rebuild the model from a packed file; returns ``(model in eval mode, header)``.

    The model has the quantized layers of ``header["layer_config"]`` with their weights already
    holding the dequantized values (``weights_quantized`` set), so its predictions equal those of
    the fake-quantized model that was saved. Raises InputFormatError naming the file on any problem.
    """
    header, payload = _read(path)
    # before anything is allocated: the arch is within bounds and declares the stored shapes
    declared = validate_arch(header["arch"], path)
    for key, shape, *_ in header["tensors"]:
        if key in declared and tuple(shape) != declared[key][0]:
            raise InputFormatError(
                f"{path}: field 'tensors' entry {key!r} has shape {tuple(shape)} but field "
                f"'arch' = {header['arch']!r:.200} declares {declared[key][0]}"
            )
    try:
        model = quantize_model(build_model(dict(header["arch"])), header["layer_config"])
        model = _apply_transforms(model, header.get("transforms", {}))
    except (ConfigError, ValueError, TypeError, KeyError, AttributeError) as err:
        raise InputFormatError(f"{path}: cannot rebuild the model: {err}") from None
    quantizers = _tensor_quantizers(model)
    reference = model.state_dict()
    expected = {k: tuple(v.shape) for k, v in reference.items()}
    state, offset = {}, 0
    for key, shape, codec_name, meta, listed in header["tensors"]:
        if key in state:
            raise InputFormatError(f"{path}: tensor {key!r} is stored twice")
        arrays = {}
        for aname, dtype, ashape in listed:
            count = math.prod(ashape)
            arr = np.frombuffer(payload, dtype=np.dtype(dtype), count=count, offset=offset)
            arrays[aname] = arr.reshape(ashape).copy()
            offset += count * np.dtype(dtype).itemsize
        if expected.get(key) != tuple(shape):
            raise InputFormatError(f"{path}: tensor {key!r} {shape} does not fit the architecture")
        quantizer = quantizers.get(key)
        codec = CODECS[codec_name]
        if codec.needs_quantizer != (quantizer is not None):
            raise InputFormatError(
                f"{path}: tensor {key!r} codec {codec_name!r} disagrees with layer_config"
            )
        try:
            value = codec.decode(meta, arrays, tuple(shape), quantizer)
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise InputFormatError(f"{path}: cannot decode tensor {key!r}: {err}") from None
        if tuple(value.shape) != tuple(shape) or value.dtype != reference[key].dtype:
            raise InputFormatError(
                f"{path}: tensor {key!r} decodes to {value.dtype} {tuple(value.shape)}, "
                f"expected {reference[key].dtype} {tuple(shape)}"
            )
        state[key] = value
    missing = sorted(set(expected) - set(state))
    if missing:
        raise InputFormatError(f"{path}: missing tensors {missing}")
    model.load_state_dict(state, strict=True)
    for module in model.modules():
        if isinstance(module, QuantizedWeights):
            module.weights_quantized = True
    model.eval()
    return model, header


__all__ = [
    "AUTO_CODECS",
    "CODECS",
    "MAGIC",
    "QUANTIZER_CODECS",
    "VERSION",
    "TRANSFORMS",
    "Codec",
    "CodesCodec",
    "LevelsCodec",
    "RawCodec",
    "decode_levels",
    "encode_levels",
    "load_packed",
    "pack_bits",
    "packed_size",
    "read_packed_header",
    "register_codec",
    "register_transform",
    "save_packed",
    "unpack_bits",
]
