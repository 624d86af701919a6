"""Packed model files: bit packing, exact round trips, size, validation, codec registry."""

import json
import pickle
import struct
import zlib

import numpy as np
import pytest
import torch
from torch import nn

from quantscan.apps.sweeps.compress_presets import SEED000_TABLE6
from quantscan.compress.cost import model_bits
from quantscan.compress.layers import QuantizedWeights, layer_config_of, quantize_model
from quantscan.compress.quantizers import QuantizedTensor
from quantscan.errors import ConfigError, InputFormatError
from quantscan.export import packed as pack
from quantscan.export.packed import (
    CODECS,
    QUANTIZER_CODECS,
    Codec,
    load_packed,
    pack_bits,
    read_packed_header,
    register_codec,
    save_packed,
    unpack_bits,
)
from quantscan.models import ARCHITECTURES, SweepNet

SWEEPNET = {"name": "sweepnet"}


class Toy(nn.Module):
    """A weight layer of the given kind, a ReLU and a Linear head."""

    def __init__(self, kind: str = "conv1d", channels: int = 3):
        super().__init__()
        dims = {"conv1d": 1, "conv3d": 3, "linear": 0}[kind]
        if dims:
            conv = nn.Conv1d if dims == 1 else nn.Conv3d
            self.body = conv(2, channels, 3, padding=1)
        else:
            self.body = nn.Linear(5, channels)
        self.act = nn.ReLU()
        self.norm = nn.BatchNorm1d(channels)  # buffers (incl. an int64) travel as raw arrays
        self.head = nn.Linear(channels, 2)

    def forward(self, x):
        h = self.act(self.body(x))
        if h.ndim > 2:
            h = h.flatten(2).mean(-1)
        return self.head(self.norm(h))


@pytest.fixture
def toy_arch(monkeypatch):
    monkeypatch.setitem(ARCHITECTURES, "toy", Toy)


def predictions_match(model, loaded, x):
    model.eval()
    with torch.no_grad():
        return torch.equal(model(x), loaded(x))


# --------------------------------------------------------------------------------------------------
# bit packing


@pytest.mark.parametrize("width", [1, 2, 3, 4, 5, 7, 8, 12, 16, 32])
def test_pack_bits_round_trip(width):
    rng = np.random.default_rng(width)
    for count in (0, 1, 13, 1000):
        values = rng.integers(0, 2**width, size=count, dtype=np.uint64)
        packed = pack_bits(values, width)
        assert packed.dtype == np.uint8 and packed.size == -(-count * width // 8)
        assert np.array_equal(unpack_bits(packed, width, count), values)


def test_pack_bits_rejects_codes_that_do_not_fit():
    with pytest.raises(ValueError):
        pack_bits(np.array([4]), 2)


# --------------------------------------------------------------------------------------------------
# exact round trips


def test_sweepnet_table6_round_trip_and_size(tmp_path):
    torch.manual_seed(0)
    model = quantize_model(SweepNet(), SEED000_TABLE6)
    path = tmp_path / "t6.qspk"
    size = save_packed(model, path, SWEEPNET, extra={"dataset": "d1", "epochs": 10})
    assert size == path.stat().st_size
    assert size <= 0.10 * 9_700 * 4  # at most 10% of the fp32 weights (38,800 bytes)
    assert size >= model_bits(model) / 8  # the codes themselves must be in there
    loaded, header = load_packed(path)
    assert header["arch"] == SWEEPNET and header["extra"] == {"dataset": "d1", "epochs": 10}
    assert header["layer_config"] == layer_config_of(model) == layer_config_of(loaded)
    assert header["file_bytes"] == size
    assert not loaded.training
    x = torch.rand(8, 1, 16, 40)
    assert predictions_match(model, loaded, x)
    assert model_bits(loaded) == 19_238


def test_sweepnet_uniform_4_bits_po2(tmp_path):
    torch.manual_seed(1)
    spec = "quantized_bits(4, 0, 1, alpha='auto_po2')"
    config = {name: spec for name, _ in SweepNet.LAYERS}
    config |= {"sweepnet_first_activation": "quantized_relu(4, 2)"}
    model = quantize_model(SweepNet(filters=16), config)
    arch = {"name": "sweepnet", "filters": 16}
    save_packed(model, tmp_path / "u4.qspk", arch)
    loaded, header = load_packed(tmp_path / "u4.qspk")
    assert predictions_match(model, loaded, torch.rand(6, 1, 12, 30))
    # po2 scales are stored as int8 exponents, not float32
    kernels = [t for t in header["tensors"] if t[0] == "sweepnet_second_conv.weight"]
    (_, _, codec, meta, arrays) = kernels[0]
    assert codec == "codes" and meta["p"] == {"scale": "po2"} and meta["w"] == 4
    assert dict((a[0], a[1]) for a in arrays) == {"codes": "|u1", "scale": "|i1"}


@pytest.mark.parametrize(
    ("kind", "shape", "config"),
    [
        (
            "conv1d",
            (4, 2, 9),
            {"body": "quantized_bits(3, 0, 1, alpha='auto')", "act": "quantized_relu(3)"},
        ),
        (
            "conv3d",
            (2, 2, 4, 4, 4),
            {"body": {"kernel": "ternary(alpha='auto')", "bias": "quantized_bits(16, 4)"}},
        ),
        ("linear", (5, 5), {"body": "binary(alpha='auto_po2')", "head": "quantized_bits(5, 1)"}),
        (
            "linear",
            (5, 5),
            {"body": "quantized_bits(32, 2)", "head": {"kernel": "quantized_bits(1)"}},
        ),
        ("conv1d", (3, 2, 7), {}),  # nothing quantized: everything raw float32
    ],
)
def test_toy_models_round_trip(tmp_path, toy_arch, kind, shape, config):
    torch.manual_seed(2)
    float_model = Toy(kind, channels=4)
    float_model.train()
    float_model(torch.randn(*shape))  # move the BatchNorm running statistics off their defaults
    model = quantize_model(float_model, config)
    arch = {"name": "toy", "kind": kind, "channels": 4}
    save_packed(model, tmp_path / "toy.qspk", arch)
    loaded, _ = load_packed(tmp_path / "toy.qspk")
    assert torch.equal(loaded.norm.running_mean, model.norm.running_mean)
    assert loaded.norm.num_batches_tracked.item() == 1
    assert predictions_match(model, loaded, torch.randn(*shape))


def test_quantized_file_is_smaller_than_float_file(tmp_path):
    torch.manual_seed(3)
    model = SweepNet()
    fp = save_packed(model, tmp_path / "fp.qspk", SWEEPNET)
    q2 = save_packed(quantize_model(model, SEED000_TABLE6), tmp_path / "q.qspk", SWEEPNET)
    assert fp > 9_700 * 4 and q2 < fp / 10


def test_loaded_model_can_resume_qat(tmp_path):
    torch.manual_seed(4)
    model = quantize_model(SweepNet(filters=8), SEED000_TABLE6)
    save_packed(model, tmp_path / "m.qspk", {"name": "sweepnet", "filters": 8})
    loaded, header = load_packed(tmp_path / "m.qspk")
    layers = [m for m in loaded.modules() if isinstance(m, QuantizedWeights)]
    assert layers and all(m.weights_quantized for m in layers)
    resumed = quantize_model(loaded, header["layer_config"])
    assert not any(
        m.weights_quantized for m in resumed.modules() if isinstance(m, QuantizedWeights)
    )
    x = torch.rand(3, 1, 10, 20)
    with torch.no_grad():
        # re-quantizing already-quantized weights gives the same values (up to float rounding)
        assert torch.allclose(resumed.eval()(x), loaded(x), atol=1e-6)


def test_loading_never_unpickles(tmp_path, monkeypatch):
    model = quantize_model(SweepNet(filters=4), SEED000_TABLE6)
    save_packed(model, tmp_path / "m.qspk", {"name": "sweepnet", "filters": 4})

    def forbidden(*args, **kwargs):
        raise AssertionError("load_packed must not unpickle")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    load_packed(tmp_path / "m.qspk")


# --------------------------------------------------------------------------------------------------
# save-time errors


def test_save_rejects_an_arch_that_does_not_match(tmp_path):
    model = SweepNet(filters=8)
    with pytest.raises(ConfigError, match="does not match"):
        save_packed(model, tmp_path / "m.qspk", SWEEPNET)
    with pytest.raises(ConfigError, match="does not build"):
        save_packed(model, tmp_path / "m.qspk", {"name": "nope"})
    with pytest.raises(ConfigError, match="JSON"):
        save_packed(model, tmp_path / "m.qspk", {"name": "sweepnet", "filters": 8}, {"x": object()})
    assert not list(tmp_path.iterdir())  # nothing half-written


# --------------------------------------------------------------------------------------------------
# validation of damaged or hostile files


@pytest.fixture
def packed(tmp_path):
    torch.manual_seed(5)
    path = tmp_path / "good.qspk"
    save_packed(
        quantize_model(SweepNet(filters=4), SEED000_TABLE6),
        path,
        {"name": "sweepnet", "filters": 4},
    )
    return path


def rewrite(path, data: bytes):
    bad = path.with_name("bad.qspk")
    bad.write_bytes(data)
    return bad


def reheader(path, edit) -> bytes:
    """The file with its JSON header edited and every length and checksum made consistent again."""
    data = path.read_bytes()
    magic, version, flags, hlen, plen, _ = pack._PREFIX.unpack_from(data)
    body = data[pack._PREFIX.size :]
    header = json.loads(zlib.decompress(body[:hlen]))
    edit(header)
    hbytes = zlib.compress(json.dumps(header).encode())
    payload = body[hlen:]
    crc = zlib.crc32(payload, zlib.crc32(hbytes))
    return pack._PREFIX.pack(magic, version, flags, len(hbytes), plen, crc) + hbytes + payload


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda d: b"PK\x03\x04" + d[4:], "bad magic"),
        (lambda d: d[:4] + struct.pack("<H", 9) + d[6:], "unsupported version"),
        (lambda d: d[:-7], "truncated"),
        (lambda d: d + b"\x00", "declares"),
        (lambda d: d[:10], "shorter"),
        (lambda d: d[:-3] + bytes([d[-3] ^ 0x10]) + d[-2:], "checksum"),
    ],
)
def test_damaged_files_raise_input_format_error_naming_the_file(packed, damage, match):
    bad = rewrite(packed, damage(packed.read_bytes()))
    with pytest.raises(InputFormatError, match=match) as err:
        load_packed(bad)
    assert str(bad) in str(err.value)


def set_dtype(header, dtype):
    header["tensors"][0][4][0][1] = dtype


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda h: set_dtype(h, "|O"), "dtype"),  # object arrays would unpickle
        (lambda h: h["tensors"][0][4][0].__setitem__(2, [10**6]), "payload bytes"),
        (lambda h: h["tensors"].pop(), "payload bytes"),
        (lambda h: h.__setitem__("arch", {"name": "nope"}), "rebuild"),
        (lambda h: h["layer_config"].__setitem__("bogus", "quantized_bits(2)"), "rebuild"),
        (lambda h: h["layer_config"].__setitem__("sweepnet_first_conv", "eval('1')"), "rebuild"),
        (lambda h: h["tensors"][0][3].__setitem__("w", 3), "decode"),
        # same byte count, but a [1, 4, 1, 1] scale broadcasts the [4, 1, 2, 2] kernel to 4x the size
        (lambda h: h["tensors"][0][4][1].__setitem__(2, [1, 4, 1, 1]), "decodes to"),
        (lambda h: h["tensors"][0].__setitem__(2, "zip"), "malformed"),
        (lambda h: h.pop("tensors"), "malformed"),
    ],
)
def test_hostile_headers_raise_input_format_error(packed, edit, match):
    bad = rewrite(packed, reheader(packed, edit))
    with pytest.raises(InputFormatError, match=match) as err:
        load_packed(bad)
    assert str(bad) in str(err.value)


def test_reheader_helper_keeps_a_good_file_good(packed):
    assert load_packed(rewrite(packed, reheader(packed, lambda h: None)))[1]["arch"]["filters"] == 4
    assert read_packed_header(packed)["arch"] == {"name": "sweepnet", "filters": 4}


def test_missing_file(tmp_path):
    with pytest.raises(InputFormatError, match="missing.qspk"):
        load_packed(tmp_path / "missing.qspk")


# --------------------------------------------------------------------------------------------------
# codec registry


class DenseTernaryCodec(Codec):
    """A stand-in for a future format: ternary codes one per byte plus the scale as float64."""

    name = "test_ternary_u8"

    def encode(self, tensor, quantizer):
        q = quantizer.export(tensor)
        return {}, {"t": q.codes.numpy().astype(np.uint8), "s": q.params["scale"].double().numpy()}

    def decode(self, meta, arrays, shape, quantizer):
        codes = torch.from_numpy(arrays["t"].astype(np.int64)).reshape(shape)
        scale = torch.from_numpy(arrays["s"]).float()
        return quantizer.dequantize(QuantizedTensor(codes, 2, {"scale": scale}))


def test_registered_codec_is_used_without_changing_the_container(tmp_path, monkeypatch):
    monkeypatch.setattr(pack, "CODECS", dict(CODECS))
    monkeypatch.setattr(pack, "QUANTIZER_CODECS", dict(QUANTIZER_CODECS))
    register_codec(DenseTernaryCodec(), quantizers=("ternary",))
    torch.manual_seed(6)
    config = {
        "sweepnet_second_conv": "ternary(alpha='auto')",
        "sweepnet_third_conv": "quantized_bits(3)",
    }
    model = quantize_model(SweepNet(filters=8), config)
    save_packed(model, tmp_path / "m.qspk", {"name": "sweepnet", "filters": 8})
    loaded, header = load_packed(tmp_path / "m.qspk")
    codecs = {t[0]: t[2] for t in header["tensors"]}
    assert codecs["sweepnet_second_conv.weight"] == "test_ternary_u8"
    assert codecs["sweepnet_third_conv.weight"] == "codes"
    assert codecs["sweepnet_first_conv.weight"] == "raw"
    assert predictions_match(model, loaded, torch.rand(2, 1, 10, 20))
