"""Inference engines: the lookup engine equals the model, all engines agree, inputs are validated."""

import numpy as np
import pytest
import torch
from torch import nn

from quantscan.compress.cost import SEED000_TABLE6
from quantscan.compress.int8 import build_int8
from quantscan.compress.layers import quantize_model
from quantscan.compress.pack import save_packed
from quantscan.errors import ConfigError
from quantscan.modelio import save_fp32
from quantscan.models import SweepNet
from quantscan.runtime import (
    SweepNetLutEngine,
    TorchEngine,
    make_engine,
    model_format,
    patch_codes7,
)

ARCH = {"name": "sweepnet", "n_classes": 2, "filters": 8, "se_ratio": 2}


def images(n=20, h=12, w=15, seed=0):
    """Binary images with SweepNet-like structure: dense left columns, sparse right ones."""
    rng = np.random.default_rng(seed)
    density = np.linspace(0.7, 0.05, w)[None, None, :]
    x = (rng.random((n, h, w)) < density).astype(np.uint8)
    x[: n // 4, : h // 2] = x[: n // 4, :1]  # some images with repeated rows
    return x[:, None]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(3)
    m = SweepNet(filters=8, se_ratio=2).eval()
    with torch.no_grad():  # larger biases so that ReLUs and max-pools actually select
        for p in m.parameters():
            p.mul_(2.0)
    return m


@pytest.fixture(scope="module")
def files(model, tmp_path_factory):
    d = tmp_path_factory.mktemp("engines")
    save_fp32(model, ARCH, d / "model.pt")
    q = quantize_model(model, SEED000_TABLE6)
    save_packed(q, d / "model.qspk", ARCH)
    calib = images(64, seed=9).astype(np.float32)
    build_int8(model, calib, d / "model.onnx", d / "model.int8.onnx")
    return d


def test_patch_codes_match_brute_force():
    x = images(3, 10, 11, seed=1)[:, 0]
    codes = patch_codes7(x)
    assert codes.shape == (3, 11 - 6, 10 - 6)
    for b, i, j in [(0, 0, 0), (1, 3, 4), (2, 2, 1), (2, 3, 0)]:
        patch = x[b, i : i + 7, j : j + 7].astype(np.uint64)
        ref = sum(int(patch[r, c]) << (8 * r + c) for r in range(7) for c in range(7))
        assert int(codes[b, j, i]) == ref


def test_lookup_engine_equals_fp32_model(model):
    x = images()
    ref = TorchEngine(model).predict_proba(x)
    lut = SweepNetLutEngine(model, chunk=8)
    got = lut.predict_proba(x)
    assert got.shape == (len(x), 2)
    np.testing.assert_allclose(got, ref, atol=2e-6)
    assert lut.last_stats["dense_path"] == "per_pair"  # continuous SE scales
    lut.dense_path = "per_patch"
    np.testing.assert_allclose(lut.predict_proba(x), ref, atol=2e-6)
    lut.dense_path = "auto"
    twice = np.concatenate([x[:4], x[:4]])
    np.testing.assert_allclose(lut.predict_proba(twice), np.concatenate([ref[:4]] * 2), atol=2e-6)
    assert lut.last_stats["patches7"] <= lut.last_stats["positions"] // 2  # patches are shared


def test_lookup_engine_equals_packed_table6_model(files):
    x = images(24, seed=4)
    dense = make_engine("packed_torch", files / "model.qspk").predict_proba(x)
    lut = make_engine("packed", files / "model.qspk", chunk=6)
    np.testing.assert_allclose(lut.predict_proba(x), dense, atol=2e-6)
    assert lut.kind == "packed" and isinstance(lut, SweepNetLutEngine)
    for path in ("per_patch", "per_pair"):  # both ways of running the dense layer
        lut.dense_path = path
        np.testing.assert_allclose(lut.predict_proba(x), dense, atol=2e-6)
        assert lut.last_stats["dense_path"] == path


@pytest.mark.parametrize("chunk,threads,batch", [(1, 1, 5), (3, 2, 7), (256, 1, 256)])
def test_lookup_engine_independent_of_chunking(model, chunk, threads, batch):
    x = images(17, seed=5)
    ref = SweepNetLutEngine(model).predict_proba(x)
    got = SweepNetLutEngine(model, chunk=chunk, threads=threads, batch_size=batch).predict_proba(x)
    np.testing.assert_allclose(got, ref, atol=1e-6)


def test_engines_agree(files):
    x = images(12, seed=6)
    ref = make_engine("torch_fp32", files / "model.pt").predict_proba(x)
    for kind, path, tol in [
        ("torch_fp32_per_window", "model.pt", 1e-6),
        ("lut_fp32", "model.pt", 2e-6),
        ("onnx_fp32", "model.onnx", 1e-5),
    ]:
        engine = make_engine(kind, files / path, batch_size=4)
        np.testing.assert_allclose(engine.predict_proba(x), ref, atol=tol, err_msg=kind)
        assert engine.name == kind
    onnx_from_pt = make_engine("onnx_fp32", files / "model.pt", example_shape=(12, 15))
    np.testing.assert_allclose(onnx_from_pt.predict_proba(x), ref, atol=1e-5)
    int8 = make_engine("onnx_int8", files / "model.int8.onnx").predict_proba(x)
    assert np.abs(int8 - ref).max() < 0.1  # int8 is an approximation, but a close one
    assert make_engine("torch_fp32_per_window", files / "model.pt").batch_size == 1


def test_model_format(files):
    assert model_format(files / "model.pt") == "fp32"
    assert model_format(files / "model.qspk") == "packed"
    assert model_format(files / "model.onnx") == "onnx"


def test_factory_errors(files):
    with pytest.raises(ConfigError, match="unknown engine kind"):
        make_engine("tensorrt", files / "model.pt")
    with pytest.raises(ConfigError, match="int8 .onnx"):
        make_engine("onnx_int8", files / "model.pt")
    with pytest.raises(ConfigError, match="packed model file"):
        make_engine("packed", files / "model.pt")
    with pytest.raises(ConfigError, match="example_shape"):
        make_engine("onnx_fp32", files / "model.pt")


def test_input_validation(model):
    engine = SweepNetLutEngine(model)
    x = images(4)
    with pytest.raises(ConfigError, match="uint8"):
        engine.predict_proba(x.astype(np.float32))
    with pytest.raises(ConfigError, match="shape"):
        engine.predict_proba(x[:, 0])
    with pytest.raises(ConfigError, match="binary"):
        engine.predict_proba(x * 2)
    with pytest.raises(ConfigError, match="7 x 7"):
        engine.predict_proba(x[:, :, :6])
    assert engine.predict_proba(x[:0]).shape == (0, 2)
    with pytest.raises(ConfigError, match="SweepNet"):
        SweepNetLutEngine(nn.Sequential(nn.Conv2d(1, 2, 2)))
    with pytest.raises(ConfigError, match="chunk"):
        SweepNetLutEngine(model, chunk=300)
