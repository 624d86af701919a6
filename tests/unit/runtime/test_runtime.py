"""Inference engines: the lookup engine equals the model, all engines agree, inputs are validated.

The lookup engine has two implementations of its patch stages (``kernels``): numpy (always there)
and numba (``quantscan.runtime.lutkernels``, where numba is installed). Both are checked against the
model's own forward pass; without numba, asking for its kernels must fail with a clear error.
"""

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from quantscan.apps.sweeps.compress_presets import SEED000_TABLE6
from quantscan.compress.layers import quantize_model
from quantscan.errors import ConfigError
from quantscan.export.onnx import build_int8
from quantscan.export.packed import save_packed
from quantscan.modelio import save_fp32
from quantscan.models import SweepNet
from quantscan.runtime import (
    BinaryConvLutEngine,
    LutTrunk,
    TorchEngine,
    lut_trunk_of,
    make_engine,
    model_format,
    numba_available,
    patch_codes7,
)

ARCH = {"name": "sweepnet", "n_classes": 2, "filters": 8, "se_ratio": 2}
KERNELS = ["numpy", "numba"]
WEIGHT_LAYERS = [name for name, _ in SweepNet.LAYERS]
#: uniform 1-bit and 2-bit variants of Table 6; the 2-bit one also quantizes the trunk activations
#: (quantized_relu modules instead of nn.ReLU: the engine must apply the model's own modules)
ONE_BIT = {**SEED000_TABLE6, **dict.fromkeys(WEIGHT_LAYERS, "binary(alpha='auto')")}
TWO_BITS = {
    **SEED000_TABLE6,
    **dict.fromkeys(WEIGHT_LAYERS, "quantized_bits(2, 0, 1, alpha='auto')"),
    "sweepnet_first_activation": "quantized_relu(2)",
    "sweepnet_second_activation": "quantized_relu(2)",
    "sweepnet_third_activation": "quantized_relu(2)",
    "sweepnet_dense_activation": "quantized_relu(2)",
}


def lut(model, kernels, **kw):
    """The lookup engine with ``kernels``; None (after checking the error) where numba is absent."""
    if kernels == "numba" and not numba_available():
        with pytest.raises(ConfigError, match="numba"):
            BinaryConvLutEngine(model, kernels="numba", **kw)
        return None
    engine = BinaryConvLutEngine(model, kernels=kernels, **kw)
    assert engine.kernels == kernels and engine.describe()["kernels"] == kernels
    return engine


def forward_proba(model, x):
    """The model's own forward pass (fake-quantized for quantized models), as probabilities."""
    with torch.inference_mode():
        return torch.softmax(model(torch.from_numpy(x).float()).double(), 1).float().numpy()


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


@pytest.mark.parametrize("kernels", KERNELS)
def test_lookup_engine_equals_fp32_model(model, kernels):
    x = images()
    ref = TorchEngine(model).predict_proba(x)
    engine = lut(model, kernels, chunk=8)
    if engine is None:
        return
    got = engine.predict_proba(x)
    assert got.shape == (len(x), 2)
    np.testing.assert_allclose(got, ref, atol=2e-6)
    assert engine.last_stats["dense_path"] == "per_pair"  # continuous SE scales
    engine.dense_path = "per_patch"
    np.testing.assert_allclose(engine.predict_proba(x), ref, atol=2e-6)
    engine.dense_path = "auto"
    twice = np.concatenate([x[:4], x[:4]])
    np.testing.assert_allclose(
        engine.predict_proba(twice), np.concatenate([ref[:4]] * 2), atol=2e-6
    )
    assert engine.last_stats["patches7"] <= engine.last_stats["positions"] // 2  # shared


@pytest.mark.parametrize("kernels", KERNELS)
def test_lookup_engine_equals_packed_table6_model(files, kernels):
    x = images(24, seed=4)
    dense = make_engine("packed_torch", files / "model.qspk").predict_proba(x)
    if kernels == "numba" and not numba_available():
        with pytest.raises(ConfigError, match="numba"):
            make_engine("packed", files / "model.qspk", kernels=kernels)
        return
    engine = make_engine("packed", files / "model.qspk", chunk=6, kernels=kernels)
    np.testing.assert_allclose(engine.predict_proba(x), dense, atol=2e-6)
    assert engine.kind == "packed" and isinstance(engine, BinaryConvLutEngine)
    for path in ("per_patch", "per_pair"):  # both ways of running the dense layer
        engine.dense_path = path
        np.testing.assert_allclose(engine.predict_proba(x), dense, atol=2e-6)
        assert engine.last_stats["dense_path"] == path


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("config", ["table6", "one_bit", "two_bits"])
def test_lookup_engine_equals_fake_quant_model(model, kernels, config):
    """Random binary 20 x 24 images: probabilities equal to float rounding, same decisions."""
    layer_config = {"table6": SEED000_TABLE6, "one_bit": ONE_BIT, "two_bits": TWO_BITS}[config]
    q = quantize_model(model, layer_config).eval()
    rng = np.random.default_rng(11)
    x = (rng.random((40, 1, 20, 24)) < rng.uniform(0.05, 0.6, (40, 1, 1, 1))).astype(np.uint8)
    x[:5] = 0  # blank images: one patch, counted everywhere
    ref = forward_proba(q, x)
    engine = lut(q, kernels, chunk=16, threads=2, batch_size=32)
    if engine is None:
        return
    got = engine.predict_proba(x)
    np.testing.assert_allclose(got, ref, rtol=0, atol=2e-6)
    # the tolerance is far below the spread of the scores, and a decision threshold in the
    # widest gap of the middle scores splits both alike
    p = np.sort(ref[:, 1])
    assert p[-1] - p[0] > 100 * 2e-6
    mid = p[10:30]
    k = int(np.argmax(np.diff(mid)))
    threshold = (mid[k] + mid[k + 1]) / 2
    assert np.array_equal(got[:, 1] >= threshold, ref[:, 1] >= threshold)
    assert np.array_equal(got.argmax(1), ref.argmax(1))


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("chunk,threads,batch", [(1, 1, 5), (3, 2, 7), (256, 1, 256)])
def test_lookup_engine_independent_of_chunking(model, kernels, chunk, threads, batch):
    x = images(17, seed=5)
    ref = BinaryConvLutEngine(model, kernels="numpy").predict_proba(x)
    engine = lut(model, kernels, chunk=chunk, threads=threads, batch_size=batch)
    if engine is None:
        return
    np.testing.assert_allclose(engine.predict_proba(x), ref, atol=1e-6)


def test_numba_kernels_grow_undersized_hash_tables(model):
    """Tables are sized from the last chunk's counts; more distinct patches than that retry."""
    x = images(12, seed=8)
    ref = BinaryConvLutEngine(model, kernels="numpy").predict_proba(x)
    engine = lut(model, "numba", chunk=12)
    if engine is None:
        return
    engine._distinct = {"7": 1e-9, "6": 1e-9, "5": 1e-9}  # 256-slot tables: all overflow
    np.testing.assert_allclose(engine.predict_proba(x), ref, atol=1e-6)
    assert engine._distinct["7"] > 0.05  # and the estimates are updated
    from quantscan.runtime import lutkernels

    u7, img, patch, count = lutkernels.patches7(x[:, 0], 12)
    assert count.sum() == 12 * (12 - 6) * (15 - 6)  # every position counted once
    assert np.all(np.diff(img) >= 0)  # pairs grouped by image
    ref_codes = patch_codes7(x[:, 0])
    assert set(u7.tolist()) == set(ref_codes.ravel().tolist())
    for i in range(12):  # per image, the counts are the histogram of its codes
        codes, n = np.unique(ref_codes[i], return_counts=True)
        sel = img == i
        got = dict(zip(u7[patch[sel]].tolist(), count[sel].tolist(), strict=True))
        assert got == dict(zip(codes.tolist(), n.astype(float).tolist(), strict=True))


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
    engine = BinaryConvLutEngine(model)
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
    with pytest.raises(ConfigError, match="lut_trunk"):
        BinaryConvLutEngine(nn.Sequential(nn.Conv2d(1, 2, 2)))
    with pytest.raises(ConfigError, match="chunk"):
        BinaryConvLutEngine(model, chunk=300)
    with pytest.raises(ConfigError, match="kernels"):
        BinaryConvLutEngine(model, kernels="cuda")
    auto = BinaryConvLutEngine(model)
    assert auto.kernels == ("numba" if numba_available() else "numpy")
    assert auto.chunk == 8


# --------------------------------------------------------------------------------------------------
# the lookup engine's model contract (``lut_trunk()``), not the model's class


class Wrapped(nn.Module):
    """Another class with the same layers: the engine runs it through its ``lut_trunk()`` (a
    mapping here) without knowing the class."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)

    def lut_trunk(self):
        trunk = self.inner.lut_trunk()
        return {f.name: getattr(trunk, f.name) for f in dataclasses.fields(trunk)}


def test_lookup_engine_runs_any_model_with_the_contract(model):
    x = images(10, seed=12)
    ref = TorchEngine(model).predict_proba(x)
    engine = BinaryConvLutEngine(Wrapped(model), kernels="numpy")
    assert engine.input_shape == (1, None, None)
    np.testing.assert_allclose(engine.predict_proba(x), ref, atol=2e-6)
    trunk = lut_trunk_of(model)
    assert isinstance(trunk, LutTrunk) and trunk.blocks[0].conv is model.sweepnet_first_conv


def test_lookup_engine_contract_errors(model):
    with pytest.raises(ConfigError) as err:
        BinaryConvLutEngine(nn.Sequential(nn.Conv2d(1, 2, 2)))
    assert str(err.value) == (
        "the lookup engine needs a model with a lut_trunk() method (module doc of "
        "quantscan.runtime.lut); Sequential has none"
    )

    class Broken(Wrapped):
        def __init__(self, inner, **swap):
            super().__init__(inner)
            self.swap = swap

        def lut_trunk(self):
            trunk = self.inner.lut_trunk()
            blocks = list(trunk.blocks)
            for key, module in self.swap.items():
                i, part = key.split("_")
                blocks[int(i)] = dataclasses.replace(blocks[int(i)], **{part: module})
            return dataclasses.replace(trunk, blocks=tuple(blocks))

    cases = [
        ({"0_conv": nn.Conv2d(1, 8, 3)}, "block 1 conv is not a 2x2 stride-1 valid convolution"),
        ({"1_conv": nn.Conv2d(8, 8, 2, stride=2)}, "block 2 conv is not a 2x2 stride-1 valid"),
        ({"2_pool": nn.AvgPool2d(2, stride=1)}, "block 3 pool is not a max-pool"),
        ({"1_pool": nn.MaxPool2d(2)}, "block 2 pool is not a 2x2 stride-1 max-pool"),
        ({"0_conv": nn.Conv2d(2, 8, 2)}, "the model must take one input channel"),
    ]
    for swap, message in cases:
        with pytest.raises(ConfigError, match=message):
            BinaryConvLutEngine(Broken(model, **swap))

    class NotATrunk(Wrapped):
        def lut_trunk(self):
            return [1, 2, 3]

    with pytest.raises(ConfigError, match=r"NotATrunk.lut_trunk\(\) must return a LutTrunk"):
        BinaryConvLutEngine(NotATrunk(model))

    class GroupedGate(Wrapped):  # the engine multiplies by the gate's weights as matrices
        def lut_trunk(self):
            trunk = self.inner.lut_trunk()
            c = trunk.gate_squeeze.in_channels
            return dataclasses.replace(trunk, gate_squeeze=nn.Conv2d(c, c, 1, groups=2))

    with pytest.raises(ConfigError, match=r"gate_squeeze is not a 1x1 convolution \(groups 1\)"):
        BinaryConvLutEngine(GroupedGate(model))
