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
``layer_config`` (``layers.layer_config_of``), ``extra`` (caller's metadata) and ``tensors``: one
entry per state_dict tensor, ``[key, shape, codec, meta, arrays]`` where ``arrays`` lists
``[name, numpy dtype, shape]`` and array bytes follow each other in the payload.

Codecs turn a tensor into named arrays and back. They are looked up by name in ``CODECS``; which codec
a quantizer uses is ``QUANTIZER_CODECS[quantizer.name]``. ``register_codec`` adds one (e.g. a sparse
ternary format) without touching the container.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_path
from ..errors import ConfigError, InputFormatError
from ..models import build_model
from .layers import QuantizedWeights, layer_config_of, quantize_model
from .quantizers import QuantizedTensor, WeightQuantizer

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

    ``quantizer`` is the layer's quantizer for that tensor (None for float tensors).
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


CODECS: dict[str, Codec] = {"raw": RawCodec(), "codes": CodesCodec()}
#: quantizer name -> codec name used to store tensors it quantizes
QUANTIZER_CODECS: dict[str, str] = {
    "quantized_bits": "codes",
    "binary": "codes",
    "ternary": "codes",
}


def register_codec(codec: Codec, quantizers: tuple[str, ...] = ()) -> None:
    """Make ``codec`` loadable, and the storage format of the named quantizers."""
    CODECS[codec.name] = codec
    for name in quantizers:
        QUANTIZER_CODECS[name] = codec.name


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
    return out


def save_packed(model: nn.Module, path, arch: dict, extra: dict | None = None) -> int:
    """Write ``model`` (quantized or not) as a packed file; returns the file size in bytes.

    ``arch`` must rebuild the model's float architecture with ``quantscan.models.build_model``.
    Quantized weights are stored as their quantizer's codes: the file holds what the fake-quantized
    forward pass computes, so ``load_packed`` gives the same predictions.
    """
    try:
        reference = build_model(dict(arch)).state_dict()
    except (ValueError, TypeError, KeyError) as err:
        raise ConfigError(f"arch {arch!r} does not build a model: {err}") from None
    state = model.state_dict()
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    if shapes != {k: tuple(v.shape) for k, v in reference.items()}:
        raise ConfigError(f"arch {arch!r} does not match the model's parameters")

    quantizers = _tensor_quantizers(model)
    entries, blobs = [], []
    for key, tensor in state.items():
        quantizer = quantizers.get(key)
        codec_name = "raw" if quantizer is None else QUANTIZER_CODECS.get(quantizer.name)
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
    try:
        model = quantize_model(build_model(dict(header["arch"])), header["layer_config"])
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
    "CODECS",
    "MAGIC",
    "QUANTIZER_CODECS",
    "VERSION",
    "Codec",
    "CodesCodec",
    "RawCodec",
    "load_packed",
    "pack_bits",
    "packed_size",
    "read_packed_header",
    "register_codec",
    "save_packed",
    "unpack_bits",
]
