"""PyTorch static int8 (export.torch_int8) and its engine: file round trip, closeness to fp32,
named errors, and blockwise stitching equal to one whole-volume pass, bit for bit."""

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
    with pytest.raises(InputFormatError, match="not a readable torch int8 model file"):
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
