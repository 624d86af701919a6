"""PyTorch static int8 (export.torch_int8) and its engine: file round trip, closeness to fp32,
named errors, and blockwise stitching equal to one whole-volume pass, bit for bit."""

import numpy as np
import pytest
import torch

from quantscan.apps.connectomics import scoring
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


def test_engine_from_the_onnx_sibling_and_stitching_is_bit_identical(quantized, tmp_path):
    """make_engine('torch_int8', model.onnx) reads model.int8.pt beside it; stitched blocks equal
    one pass over the reflect-padded volume exactly (integer kernels per voxel)."""
    model, q = quantized
    onnx_path = tmp_path / "model.onnx"
    onnx_path.write_bytes(b"")  # only its name matters to the torch_int8 engine
    torch_int8.save(torch_int8.sibling_path(onnx_path), ARCH, q)
    engine = make_engine("torch_int8", onnx_path, batch_size=1, input_dtypes=("float32",))
    assert engine.kind == "torch_int8" and engine.n_classes == 3
    raw = np.random.default_rng(2).random((12, 40, 36)).astype(np.float32)
    block, halo = scoring.geometry(model, (4, 16, 16))
    affs = scoring.predict_volume(engine, raw, block=block, halo=halo)
    padded = np.pad(raw, [(h, h) for h in halo], mode="reflect")
    extra = [(0, -s % m) for s, m in zip(padded.shape, model.input_multiple(), strict=True)]
    padded = np.pad(padded, extra, mode="reflect")
    z = engine.logits(padded[None, None])[0]
    whole = (1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))).astype(np.float32)
    core = (slice(None), *(slice(h, h + s) for h, s in zip(halo, raw.shape, strict=True)))
    np.testing.assert_array_equal(affs, whole[core])
