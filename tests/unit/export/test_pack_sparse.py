"""Compact packing of ternary / binary / pruned weights: layouts, exact round trips, real file sizes."""

import copy
import json
import math
import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from quantscan.compress.layers import quantize_model
from quantscan.compress.metrics import density, srqw
from quantscan.compress.prune import (
    gamma_sigma,
    make_schedule,
    prune_mask,
    quantize_offset,
    quantize_uniform,
    weight_layers,
)
from quantscan.compress.ternary import (
    DoReFaActivation,
    TernaryWeights,
    ternarize_model,
    ternary_layers,
)
from quantscan.errors import ConfigError, InputFormatError
from quantscan.export import packed as pack
from quantscan.export.packed import decode_levels, encode_levels, load_packed, save_packed
from quantscan.models import ARCHITECTURES, SweepNet

SWEEPNET = {"name": "sweepnet"}


def round_trip(t: torch.Tensor) -> tuple[dict, dict]:
    meta, arrays = encode_levels(t)
    json.dumps(meta, allow_nan=False)  # must fit in the JSON header
    back = decode_levels(meta, arrays, tuple(t.shape))
    assert back.dtype == torch.float32 and torch.equal(back, t)
    return meta, arrays


def payload(arrays) -> int:
    return sum(a.nbytes for a in arrays.values())


def file_parts(path) -> tuple[int, int]:
    """(header bytes incl. the fixed prefix, payload bytes) of a packed file."""
    data = path.read_bytes()
    _, _, _, hlen, plen, _ = pack._PREFIX.unpack_from(data)
    return pack._PREFIX.size + hlen, plen


def same_predictions(model, loaded, x) -> bool:
    model.eval()
    with torch.no_grad():
        return torch.equal(model(x), loaded(x))


# --------------------------------------------------------------------------------------------------
# layouts of single tensors


@pytest.mark.parametrize(
    ("keep", "layout"), [(1.0, "full"), (0.5, "mask"), (0.02, "gaps"), (0.0, "gaps")]
)
def test_position_layout_follows_density(keep, layout):
    g = torch.Generator().manual_seed(0)
    t = torch.randn(4000, generator=g) * (torch.rand(4000, generator=g) < keep)
    meta, arrays = round_trip(t)
    assert meta["pos"] == layout and meta["n"] == int(torch.count_nonzero(t))
    if layout == "mask":
        assert arrays["m"].nbytes == 500  # one bit per weight
    if layout == "gaps" and keep:
        # run lengths: far below the 500-byte mask at 2% density (and below 4 bytes per index)
        assert arrays["g"].nbytes < 0.35 * 500


def test_long_zero_runs_use_escape_codes():
    t = torch.zeros(20_000)
    t[:16_000:8] = 1.0  # 2,000 non-zeros 7 zeros apart (the last at 15,992) ...
    t[-1] = -2.0  # ... then a run of 4,006 zeros
    meta, arrays = round_trip(t)
    # a 4-bit run length is the cheapest; the long run costs 4006 // 15 = 267 escape codes
    assert (meta["pos"], meta["gw"], meta["n"], meta["nc"]) == ("gaps", 4, 2001, 2001 + 267)
    assert arrays["g"].nbytes == math.ceil(4 * 2268 / 8) < 2500  # the bit mask's size


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("n", [40, 3000])
def test_pruned_prune_py_weights_are_stored_on_their_grid(bits, n):
    """Both prune.py quantizers give b-bit codes on an inferred grid, bit-exact."""
    w = torch.randn(n, generator=torch.Generator().manual_seed(bits + n)) * 0.05
    beta = gamma_sigma(w, 1.3)
    offset_grid, _ = quantize_offset(w * prune_mask(w, beta), bits, beta)  # P->Q iteration
    uniform, _ = quantize_uniform(w, bits)
    uniform = uniform * prune_mask(uniform, beta)  # Q->P iteration
    for t in (offset_grid, uniform):
        meta, arrays = round_trip(t)
        nnz = meta["n"]
        if meta["val"] == "grid":  # b bits per non-zero at most: sign + (b-1)-bit level
            assert meta["w"] <= bits - 1 and arrays.get("k", np.zeros(0)).nbytes <= math.ceil(
                (bits - 1) * nnz / 8
            )
    if n == 3000 and bits >= 4:  # enough levels in use that a table would cost more
        assert round_trip(offset_grid)[0]["val"] == "grid"
        assert round_trip(uniform)[0]["val"] == "grid"


def test_value_layouts_for_ternary_binary_and_irregular_values():
    g = torch.Generator().manual_seed(1)
    n = 1000
    r = torch.rand(n, generator=g)
    # asymmetric ternary at 60% density: bit mask + 1 bit per non-zero + two float levels
    ternary = torch.where(r < 0.3, -0.7, torch.where(r < 0.6, 0.0, 0.2))
    meta, arrays = round_trip(ternary)
    assert (meta["pos"], meta["val"], meta["w"]) == ("mask", "tab", 1)
    assert payload(arrays) == 125 + math.ceil(int(torch.count_nonzero(ternary)) / 8) + 8
    # binary: one sign bit per weight plus the magnitude
    binary = torch.where(r < 0.5, -0.3, 0.3)
    meta, arrays = round_trip(binary)
    assert (meta["pos"], meta["val"], meta["sg"]) == ("full", "mag", "b")
    assert payload(arrays) == 125 + 4
    # four levels at 80% density: 2-bit dense codes (zero is a code) beat mask + 2 bits
    four = torch.tensor([-1.0, 0.0, 1.0, 2.0])[
        torch.multinomial(torch.tensor([0.3, 0.2, 0.3, 0.2]), n, True, generator=g)
    ]
    meta, arrays = round_trip(four)
    assert (meta["pos"], meta["val"], meta["w"]) == ("dense", "tab", 2)
    # pruned but unquantized weights: positions + float32 values
    cont = torch.randn(n, generator=g) * (r < 0.1)
    assert round_trip(cont)[0]["val"] == "raw"
    # -0.0 counts as zero
    meta, _ = round_trip(torch.tensor([0.0, -0.0, 1.0] * 20))
    assert meta["n"] == 20


def test_levels_codec_declines_dense_float_and_other_dtypes():
    codec = pack.CODECS["levels"]
    assert codec.encode(torch.randn(1000), None) is None
    assert codec.encode(torch.zeros(1000, dtype=torch.float64), None) is None
    assert codec.encode(torch.tensor([1.0, float("nan")] * 100), None) is None
    assert codec.encode(torch.zeros(4), None) is None  # too small to pay for its header entry
    assert codec.encode(torch.zeros(1000), None) is not None


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda m, a: m.update(pos="zip"), "position layout"),
        (lambda m, a: m.update(val="zip"), "value layout"),
        (lambda m, a: m.update(n=m["n"] + 1), "non-zero positions"),
        (lambda m, a: m.update(w=17), r"w=17"),
        (lambda m, a: a.update(m=a["m"][:-1]), "bit mask"),
        (lambda m, a: a.update(t=a["t"][:1]), "out of the table"),
        (lambda m, a: a.update(t=a["t"].astype(np.float64)), "float32"),
    ],
)
def test_decode_rejects_inconsistent_metadata(edit, match):
    t = torch.tensor([0.0, -0.5, 0.25, 0.0] * 50)
    meta, arrays = encode_levels(t)
    assert (meta["pos"], meta["val"]) == ("mask", "tab")
    edit(meta, arrays)
    with pytest.raises(ValueError, match=match):
        decode_levels(meta, arrays, tuple(t.shape))


# --------------------------------------------------------------------------------------------------
# ternarized models in packed files


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("ttq", {}),
        ("attq", {"t_min": -1.0, "t_max": 0.5}),
        ("dorefa", {"k": 1}),
        ("dorefa", {"k": 2}),
    ],
)
@pytest.mark.parametrize("layers", [None, "all"])
def test_ternary_sweepnet_round_trip(tmp_path, method, params, layers):
    torch.manual_seed(2)
    model = ternarize_model(SweepNet(filters=8), method, layers, **params)
    with torch.no_grad():  # trained-looking scales
        for layer in ternary_layers(model).values():
            for name in layer.ternarizer.scale_names:
                getattr(layer, name).mul_(1.3)
    arch = {"name": "sweepnet", "filters": 8}
    save_packed(model, tmp_path / "t.qspk", arch)
    loaded, header = load_packed(tmp_path / "t.qspk")
    assert same_predictions(model, loaded, torch.rand(5, 1, 14, 30))
    assert header["transforms"]["ternary"]["weights"].keys() == ternary_layers(model).keys()
    codecs = {t[0]: (t[2], t[3]) for t in header["tensors"]}
    for name, layer in ternary_layers(model).items():
        codec, meta = codecs[f"{name}.weight"]
        assert codec == "ternary" and meta["m"] == method
        twin = ternary_layers(loaded)[name]
        assert type(twin) is type(layer) and twin.frozen and not layer.frozen
        assert torch.equal(twin.effective_weight(), layer.effective_weight())
        for s in layer.ternarizer.scale_names:
            assert torch.equal(getattr(twin, s), getattr(layer, s))
    assert density(loaded) == density(model)
    assert srqw(loaded, list(ternary_layers(model))) == srqw(model, list(ternary_layers(model)))


def test_ternary_sweepnet_file_is_a_twelfth_of_fp32(tmp_path):
    torch.manual_seed(3)
    model = SweepNet()
    fp_size = save_packed(model, tmp_path / "fp.qspk", SWEEPNET)
    _, fp_payload = file_parts(tmp_path / "fp.qspk")
    assert fp_payload == 9_700 * 4
    sizes = {}
    for method, params in (("ttq", {}), ("attq", {}), ("dorefa", {"k": 1})):
        t = ternarize_model(model, method, "all", **params)
        sizes[method] = save_packed(t, tmp_path / f"{method}.qspk", SWEEPNET)
        header, body = file_parts(tmp_path / f"{method}.qspk")
        # weights at <= 2 bits (biases stay fp32): the payload is < 1/12 of the fp32 payload
        assert body < fp_payload / 12, method
        assert sizes[method] < fp_size / 10, method  # the whole file, header included
    assert sizes["dorefa"] < sizes["attq"] < sizes["ttq"]  # 1 bit < sparse ternary < ternary


class Toy(nn.Module):
    """A Conv1d/Conv3d body of two layers, batch norm, a DoReFa-able ReLU and a Linear head."""

    def __init__(self, kind: str = "conv1d"):
        super().__init__()
        conv = {"conv1d": nn.Conv1d, "conv3d": nn.Conv3d}[kind]
        self.first = conv(2, 6, 3, padding=1)
        self.norm = nn.BatchNorm1d(6) if kind == "conv1d" else nn.BatchNorm3d(6)
        self.act = nn.ReLU()
        self.second = conv(6, 8, 3, padding=1)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        h = self.second(self.act(self.norm(self.first(x))))
        return self.head(h.flatten(2).mean(-1))


@pytest.mark.parametrize(("kind", "shape"), [("conv1d", (4, 2, 11)), ("conv3d", (2, 2, 4, 5, 3))])
@pytest.mark.parametrize("method", ["ttq", "attq", "dorefa"])
def test_conv1d_conv3d_toys_round_trip(tmp_path, monkeypatch, kind, shape, method):
    monkeypatch.setitem(ARCHITECTURES, "toy", Toy)
    torch.manual_seed(4)
    float_model = Toy(kind)
    float_model.train()
    float_model(torch.randn(*shape))  # non-default batch-norm statistics
    params = {"k": 2} if method == "dorefa" else {}
    acts = {"act": 3} if method == "dorefa" else None
    model = ternarize_model(float_model, method, "all", activations=acts, **params)
    save_packed(model, tmp_path / "toy.qspk", {"name": "toy", "kind": kind})
    loaded, _ = load_packed(tmp_path / "toy.qspk")
    assert isinstance(loaded.act, DoReFaActivation) == (method == "dorefa")
    assert all(isinstance(m, TernaryWeights) for m in (loaded.first, loaded.second, loaded.head))
    assert same_predictions(model, loaded, torch.randn(*shape))


def test_mixed_quantized_and_ternary_layers(tmp_path):
    torch.manual_seed(5)
    model = quantize_model(SweepNet(filters=8), {"sweepnet_first_conv": "quantized_bits(4, 0, 1)"})
    model = ternarize_model(model, "attq")
    arch = {"name": "sweepnet", "filters": 8}
    save_packed(model, tmp_path / "m.qspk", arch)
    loaded, header = load_packed(tmp_path / "m.qspk")
    codecs = {t[0]: t[2] for t in header["tensors"]}
    assert codecs["sweepnet_first_conv.weight"] == "codes"
    assert codecs["sweepnet_third_conv.weight"] == "ternary"
    assert same_predictions(model, loaded, torch.rand(3, 1, 10, 20))


def test_a_fresh_process_importing_only_pack_reads_ternary_files(tmp_path):
    """pack imports ternary.py itself (its codec and transform register on import)."""
    torch.manual_seed(9)
    model = ternarize_model(SweepNet(filters=4), "attq")
    path = tmp_path / "t.qspk"
    save_packed(model, path, {"name": "sweepnet", "filters": 4})
    x = torch.rand(2, 1, 10, 20)
    torch.save(x, tmp_path / "x.pt")
    with torch.no_grad():
        torch.save(model.eval()(x), tmp_path / "y.pt")
    code = (
        "import sys, torch; from quantscan.export.packed import load_packed, read_packed_header; "
        f"p = {str(path)!r}; assert 'ternary' in read_packed_header(p)['transforms']; "
        "m, _ = load_packed(p); "
        f"y = m(torch.load({str(tmp_path / 'x.pt')!r})); "
        f"sys.exit(0 if torch.equal(y, torch.load({str(tmp_path / 'y.pt')!r})) else 3)"
    )
    workflow = Path(__file__).resolve().parents[3] / "workflow"
    env = {**os.environ, "PYTHONPATH": str(workflow)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_save_rejects_an_arch_that_lacks_the_ternary_layers(tmp_path, monkeypatch):
    monkeypatch.setitem(ARCHITECTURES, "toy", Toy)
    model = ternarize_model(Toy("conv1d"), "ttq", "all")
    with pytest.raises(ConfigError, match="does not match"):
        save_packed(model, tmp_path / "m.qspk", {"name": "sweepnet"})
    assert not list(tmp_path.iterdir())


def reheader(path, edit):
    data = path.read_bytes()
    magic, version, flags, hlen, plen, _ = pack._PREFIX.unpack_from(data)
    body = data[pack._PREFIX.size :]
    header = json.loads(zlib.decompress(body[:hlen]))
    edit(header)
    hbytes = zlib.compress(json.dumps(header).encode())
    crc = zlib.crc32(body[hlen:], zlib.crc32(hbytes))
    bad = path.with_name("bad.qspk")
    bad.write_bytes(
        pack._PREFIX.pack(magic, version, flags, len(hbytes), plen, crc) + hbytes + body[hlen:]
    )
    return bad


def first_ternary(header):
    return next(t for t in header["tensors"] if t[2] == "ternary")


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda h: h["transforms"].update(bogus={}), "unknown model transform"),
        (lambda h: h["transforms"].__setitem__("ternary", []), "rebuild"),
        (lambda h: h["transforms"]["ternary"]["weights"].update(nope={"method": "ttq"}), "nope"),
        (
            lambda h: h["transforms"]["ternary"]["weights"].update(
                sweepnet_third_conv={"method": "attq", "t_min": 2.0, "t_max": 1.0}
            ),
            "t_min <= t_max",
        ),
        (lambda h: h.__setitem__("transforms", [1]), "transforms must be an object"),
        (lambda h: first_ternary(h)[3].update(m="dorefa"), "decode"),
        (lambda h: first_ternary(h)[3].update(w=2), "decode"),
        (lambda h: h["transforms"]["ternary"]["weights"].clear(), "disagrees"),
    ],
)
def test_hostile_ternary_headers_raise_input_format_error(tmp_path, edit, match):
    torch.manual_seed(6)
    path = tmp_path / "good.qspk"
    save_packed(
        ternarize_model(SweepNet(filters=4), "ttq"), path, {"name": "sweepnet", "filters": 4}
    )
    bad = reheader(path, edit)
    with pytest.raises(InputFormatError, match=match) as err:
        load_packed(bad)
    assert str(bad) in str(err.value)


# --------------------------------------------------------------------------------------------------
# pruned models in packed files


def prune(model, schedule="p_then_q_iter", gamma=1.56, bits=8):
    model = copy.deepcopy(model)
    report = make_schedule(schedule, gamma, bits).finalize(model)
    return model, report


def test_pruned_8_bit_viral_cnn_is_under_a_quarter_of_dense_8_bit(tmp_path):
    torch.manual_seed(7)
    arch = {"name": "viralcnn", "length": 400}
    model, report = prune(ARCHITECTURES["viralcnn"](length=400))
    assert 0.09 < report["density"] < 0.11
    sparse = save_packed(model, tmp_path / "sparse.qspk", arch)
    eight = "quantized_bits(8, 0, 1, alpha='auto')"  # the same weights, dense 8-bit codes
    dense_model = quantize_model(model, dict.fromkeys(weight_layers(model), eight))
    dense = save_packed(dense_model, tmp_path / "dense.qspk", arch)
    assert sparse < 0.25 * dense
    loaded, header = load_packed(tmp_path / "sparse.qspk")
    assert same_predictions(model, loaded, torch.rand(2, 5, 400))
    layouts = {t[0]: (t[2], t[3].get("val")) for t in header["tensors"]}
    for name in weight_layers(model):
        codec, values = layouts[f"{name}.weight"]
        assert codec == "levels" and values in ("grid", "raw"), name
    # every layer with enough survivors uses the b-bit grid
    assert layouts["conv2.weight"][1] == "grid" and layouts["dense1.weight"][1] == "grid"


@pytest.mark.parametrize("schedule", ["q_then_p_iter", "p_then_q_iter", "p_then_q_epochs"])
def test_pruned_sweepnet_round_trip(tmp_path, schedule):
    torch.manual_seed(8)
    model, report = prune(SweepNet(), schedule, gamma=1.0, bits=6)
    size = save_packed(model, tmp_path / "p.qspk", SWEEPNET)
    loaded, header = load_packed(tmp_path / "p.qspk")
    assert same_predictions(model, loaded, torch.rand(4, 1, 16, 40))
    _, body = file_parts(tmp_path / "p.qspk")
    weights = sum(m.weight.numel() for m in weight_layers(model).values())
    # positions + 6 bits per survivor, plus fp32 biases: far below fp32 and dense 6-bit
    assert body < 164 * 4 + weights * (1 + 6 * report["density"]) / 8 + 200
    assert size < 0.2 * 9_700 * 4
