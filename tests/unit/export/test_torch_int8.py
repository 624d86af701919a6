"""PyTorch static int8 (export.torch_int8) and its engine: file round trip, closeness to fp32,
named errors, and blockwise stitching equal to one whole-volume pass, bit for bit."""

import warnings
import zipfile

import numpy as np
import pytest
import torch

from quantscan.errors import ConfigError, InputFormatError
from quantscan.export import torch_int8
from quantscan.models import build_model
from quantscan.runtime import make_engine

ARCH = {"name": "unet3d", "filters": 4, "levels": 2}


@pytest.fixture(scope="module")
def quantized():
    torch.manual_seed(0)
    model = build_model(ARCH).eval()
    rng = np.random.default_rng(0)
    calib = rng.random((6, 1, 4, 16, 16)).astype(np.float32)
    return model, torch_int8.quantize(model, calib)


def test_round_trip_is_bit_identical_and_close_to_fp32(quantized, tmp_path):
    model, q = quantized
    path = tmp_path / "model.int8.pt"
    torch_int8.save(path, ARCH, q)
    q2, reference, arch = torch_int8.load(path)
    assert arch == ARCH and type(reference).__name__ == "UNet3d"
    x = torch.from_numpy(np.random.default_rng(1).random((1, 1, 8, 32, 32)).astype(np.float32))
    with torch.inference_mode():
        a, b, f = q(x), q2(x), model(x)
    assert torch.equal(a, b)
    # int8 logits follow fp32's within a few quantization steps of the output scale
    assert float((a - f).abs().max()) < 0.05 * float(f.abs().max()) + 1e-3
    # the int8 graph really runs quantized convolutions
    kinds = {type(m).__module__ for m in q2.modules()}
    assert any("quantized" in k for k in kinds)


def test_untraceable_model_writes_a_reason_and_the_engine_names_it(tmp_path):
    model = build_model({"name": "sweepnet"}).eval()
    with pytest.raises(ConfigError, match="cannot be quantized by PyTorch FX"):
        torch_int8.quantize(model, np.zeros((2, 1, 16, 16), np.float32))
    path = tmp_path / "model.int8.pt"
    torch_int8.save(path, {"name": "sweepnet"}, None, reason="FX cannot trace SweepNet")
    with pytest.raises(ConfigError, match="FX cannot trace SweepNet"):
        torch_int8.load(path)
    with pytest.raises(ConfigError, match="FX cannot trace SweepNet"):
        make_engine("torch_int8", path, input_dtypes=("float32",))


def test_bad_files_are_named(tmp_path):
    missing = tmp_path / "none.int8.pt"
    with pytest.raises(InputFormatError, match="no torch int8 model file"):
        torch_int8.load(missing)
    junk = tmp_path / "junk.int8.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(InputFormatError, match=r"not a torch int8 model file \(not a zip"):
        torch_int8.load(junk)
    other = tmp_path / "other.int8.pt"
    torch.save({"format": "something else"}, other)
    with pytest.raises(InputFormatError, match="field 'format'"):
        torch_int8.load(other)


def test_state_dict_that_does_not_fit_the_arch_is_named(quantized, tmp_path):
    _, q = quantized
    path = tmp_path / "model.int8.pt"
    torch_int8.save(path, {**ARCH, "filters": 8}, q)
    with pytest.raises(InputFormatError, match="does not fit 'arch'"):
        torch_int8.load(path)


def test_engine_from_the_onnx_sibling(quantized, tmp_path):
    """make_engine('torch_int8', model.onnx) reads model.int8.pt beside it (the blockwise
    stitching test of both int8 engines is in the connectomics app's tests)."""
    model, q = quantized
    onnx_path = tmp_path / "model.onnx"
    onnx_path.write_bytes(b"")  # only its name matters to the torch_int8 engine
    torch_int8.save(torch_int8.sibling_path(onnx_path), ARCH, q)
    engine = make_engine("torch_int8", onnx_path, batch_size=1, input_dtypes=("float32",))
    assert engine.kind == "torch_int8" and engine.n_classes == 3
    x = np.random.default_rng(2).random((1, 1, 8, 32, 32)).astype(np.float32)
    with torch.inference_mode():
        expected = q(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(engine.logits(x), expected.astype(np.float64))


@pytest.mark.parametrize("kernel", [(1, 2, 2), (2, 2, 2)])
def test_shuffle_up_equals_the_transposed_convolution(kernel):
    torch.manual_seed(1)
    up = torch.nn.ConvTranspose3d(6, 4, kernel, stride=kernel)
    shuffle = torch_int8.ShuffleUp(up)
    x = torch.randn(2, 6, 3, 5, 4)
    with torch.no_grad():
        torch.testing.assert_close(shuffle(x), up(x), atol=1e-5, rtol=1e-5)
    # other transposed convolutions are left alone
    net = torch.nn.Sequential(up, torch.nn.ConvTranspose3d(4, 2, 3, stride=1))
    torch_int8.shuffle_upsampling(net)
    assert isinstance(net[0], torch_int8.ShuffleUp)
    assert isinstance(net[1], torch.nn.ConvTranspose3d)


@pytest.mark.parametrize("same_qparams", [True, False])
def test_upsample_concat_equals_shuffle_then_cat(same_qparams):
    """The fused int8 copy equals dequantize -> shuffle -> cat, with channels-last inputs as
    fbgemm returns them (and falls back to the plain computation when scales differ)."""
    rng = torch.Generator().manual_seed(3)
    kernel, oc = (1, 2, 2), 3
    skip = torch.rand(1, 5, 2, 6, 8, generator=rng)
    y = torch.rand(1, oc * 4, 2, 3, 4, generator=rng)
    qs = torch.quantize_per_tensor(skip, 0.01, 7, torch.quint8)
    qy = torch.quantize_per_tensor(y, 0.01 if same_qparams else 0.02, 7, torch.quint8)
    qs, qy = (t.contiguous(memory_format=torch.channels_last_3d) for t in (qs, qy))
    out = torch_int8.upsample_concat(qs, qy, kernel, oc)
    up = torch.nn.ConvTranspose3d(oc * 4, oc, kernel, stride=kernel, bias=False)
    shuffle = torch_int8.ShuffleUp(up)
    shuffle.conv = torch.nn.Identity()  # the shuffle alone
    expected = torch.cat([qs.dequantize(), shuffle(qy.dequantize())], 1)
    assert out.is_quantized
    if same_qparams:  # int8 copies: exact
        torch.testing.assert_close(out.dequantize(), expected, atol=0.0, rtol=0.0)
    else:  # requantized to the skip's scale: within half a step
        torch.testing.assert_close(out.dequantize(), expected, atol=0.005 + 1e-6, rtol=0.0)


def test_quantized_unet_joins_skips_in_int8(quantized):
    """The converted U-Net joins each skip and upsampled map with upsample_concat (one scale for
    both), with no dequantize before the head's output."""
    _, q = quantized
    targets = [n.target for n in q.graph.nodes if n.op in ("call_function", "call_method")]
    assert targets.count(torch_int8.upsample_concat) == 1  # levels=2: one skip connection
    assert targets.count("dequantize") == 1 and torch.cat not in targets


def test_file_is_compact_int8_and_3_7x_smaller_than_fp32(tmp_path):
    """Format v2: int8 weights in one pool, per-channel scales as float32 (exact: the observers
    compute them in float32), no zero points for symmetric weights, a few zip records; the
    16-filter connectomics U-Net's file is >= 3.7x smaller than its fp32 state dict file (as
    benchmarks/em_engines.py measures it), and loads bit for bit."""
    torch.manual_seed(0)
    arch = {"name": "unet3d", "filters": 16, "levels": 3}
    model = build_model(arch).eval()
    calib = np.random.default_rng(0).random((2, 1, 8, 32, 32)).astype(np.float32)
    q = torch_int8.quantize(model, calib)
    fp32_path, path = tmp_path / "m.pt", tmp_path / "m.int8.pt"
    torch.save(model.state_dict(), fp32_path)
    size = torch_int8.save(path, arch, q)
    assert size == path.stat().st_size
    assert fp32_path.stat().st_size / size >= 3.7
    blob = torch.load(path, weights_only=True)
    assert blob["format"] == torch_int8.FORMAT and blob["other"] == {}
    assert {k: v.dtype for k, v in blob["pools"].items()} == {
        "int8": torch.int8,
        "float32": torch.float32,
        "int64": torch.int64,  # the activations' zero points
    }
    assert all(e[-1] is None and e[-3] == "float32" for e in blob["tensors"] if e[1] == "c")
    with zipfile.ZipFile(path) as archive:
        assert len(archive.infolist()) < 12
    q2, _, _ = torch_int8.load(path)
    x = torch.from_numpy(np.random.default_rng(1).random((1, 1, 8, 32, 32)).astype(np.float32))
    with torch.inference_mode():
        assert torch.equal(q(x), q2(x))


def test_v1_files_are_still_read(quantized, tmp_path):
    """A v1 file (the state dict as torch.save stores quantized tensors) loads to the same model."""
    _, q = quantized
    path = tmp_path / "model.int8.pt"
    blob = {"format": torch_int8.FORMAT_V1, "arch": ARCH, "backend": "x86", "available": True}
    torch.save(blob | {"state_dict": q.state_dict()}, path)
    q2, _, _ = torch_int8.load(path)
    x = torch.from_numpy(np.random.default_rng(4).random((1, 1, 8, 32, 32)).astype(np.float32))
    with torch.inference_mode():
        assert torch.equal(q(x), q2(x))


def test_pack_keeps_every_scale_and_zero_point_exactly():
    """Per-tensor quantized tensors, non-zero per-channel zero points and float64 scales that
    float32 cannot hold (which the U-Net does not have) come back exactly."""
    w = torch.randn(4, 3, 2)
    scales = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)  # not float32 values
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        state = {
            "c": torch.quantize_per_channel(w, scales, torch.tensor([0, 1, -2, 3]), 0, torch.qint8),
            "c0": torch.quantize_per_channel(
                w, torch.tensor([0.5, 0.25, 0.125]).double(), torch.zeros(3).long(), 1, torch.qint8
            ),
            "q": torch.quantize_per_tensor(w, 0.1, 7, torch.quint8),
            "t": torch.arange(5.0),
            "z": torch.tensor(3),
        }
        pools, tensors, other = torch_int8._pack(state)
        blob = {"pools": pools, "tensors": tensors, "other": other}
        back = torch_int8._unpack("f", blob, state, ARCH)
    assert other == {} and set(pools) == {"int8", "uint8", "float32", "float64", "int64"}
    for key, v in state.items():
        b = back[key]
        assert b.dtype == v.dtype and b.shape == v.shape
        if v.is_quantized:
            assert torch.equal(b.int_repr(), v.int_repr()) and b.qscheme() == v.qscheme()
            if v.qscheme() == torch.per_tensor_affine:
                assert (b.q_scale(), b.q_zero_point()) == (v.q_scale(), v.q_zero_point())
            else:
                assert torch.equal(b.q_per_channel_scales(), v.q_per_channel_scales())
                assert torch.equal(b.q_per_channel_zero_points(), v.q_per_channel_zero_points())
                assert b.q_per_channel_axis() == v.q_per_channel_axis()
        else:
            assert torch.equal(b, v)


def test_damaged_v2_files_are_named(quantized, tmp_path):
    _, q = quantized
    good = tmp_path / "model.int8.pt"
    torch_int8.save(good, ARCH, q)
    blob = torch.load(good, weights_only=True)

    def write(name, **change):
        path = tmp_path / name
        torch.save(blob | change, path)
        return path

    entries = [list(e) for e in blob["tensors"]]
    weight = next(i for i, e in enumerate(entries) if e[1] == "c")
    entries[weight][3] = 10**9  # offset beyond the int8 pool
    with pytest.raises(InputFormatError, match=r"field 'tensors' entry .* do not fit pool 'int8'"):
        torch_int8.load(write("offset.int8.pt", tensors=entries))
    with pytest.raises(InputFormatError, match="field 'pools'"):
        torch_int8.load(write("pools.int8.pt", pools={"int8": torch.zeros(3)}))
    with pytest.raises(InputFormatError, match="does not fit 'arch'"):
        torch_int8.load(write("missing.int8.pt", tensors=blob["tensors"][1:]))
    truncated = tmp_path / "truncated.int8.pt"
    truncated.write_bytes(good.read_bytes()[:-2000])
    with pytest.raises(InputFormatError, match=str(truncated)):
        torch_int8.load(truncated)
