"""The scan's fast paths (issue 24): the lookup engine's fused numba kernels against plain numpy /
torch references and the PyTorch model, and the ONNX export's means as ``GlobalAveragePool`` (so
that ORT runs them in int8) with the same outputs as the model."""

import numpy as np
import pytest
import torch

from quantscan.apps.sweeps.compress_presets import SEED000_TABLE6
from quantscan.compress.layers import quantize_model
from quantscan.export.onnx import build_int8, export_onnx, runtime_op_counts
from quantscan.models import SweepNet
from quantscan.runtime import BinaryConvLutEngine, numba_available
from quantscan.runtime.onnx_engine import ort_session

needs_numba = pytest.mark.skipif(not numba_available(), reason="numba not installed")


def sweep_images(n, h, w, seed):
    """Binary images like encoded scan windows: rows sorted, dense left columns, sparse right."""
    rng = np.random.default_rng(seed)
    density = np.linspace(0.8, 0.02, w)[None, None, :]
    x = (rng.random((n, h, w)) < density).astype(np.uint8)
    x[: n // 3, 1::2] = x[: n // 3, ::2][:, : h // 2]  # repeated rows
    order = np.argsort(x.sum(axis=2), axis=1, kind="stable")
    return np.take_along_axis(x, order[:, :, None], axis=1)[:, None]


@needs_numba
def test_fused_kernels_equal_references():
    from quantscan.runtime import lutkernels as lk

    rng = np.random.default_rng(0)
    table = rng.standard_normal((1 << 16, 12)).astype(np.float32)
    codes5 = rng.integers(0, 1 << 37, 500, dtype=np.uint64)
    codes5 &= np.uint64(sum(0x1F << (8 * r) for r in range(5)))  # a 5x5 patch: 5 bits a byte

    def code4(s):
        return ((s & 0xF) | ((s >> 4) & 0xF0) | ((s >> 8) & 0xF00) | ((s >> 12) & 0xF000)).astype(
            np.int64
        )

    ref = np.max([table[code4(codes5 >> np.uint64(k))] for k in (0, 1, 8, 9)], axis=0)
    assert np.array_equal(lk.pool_table4(codes5, table), ref)

    rows = rng.standard_normal((300, 12)).astype(np.float32)
    inverse = rng.integers(0, 300, (700, 4))
    assert np.array_equal(lk.gather_max4(rows, inverse), rows[inverse].max(axis=1))

    # padded to a product's row count: the same rows, then zeros
    padded = lk.pool_table4(codes5, table, 512)
    assert padded.shape == (512, 12) and np.array_equal(padded[:500], ref)
    assert not padded[500:].any()
    padded = lk.gather_max4(rows, inverse, 1024)
    assert padded.shape == (1024, 12) and not padded[700:].any()
    assert np.array_equal(padded[:700], rows[inverse].max(axis=1))
    assert lk.gather_max4(rows, inverse, 100).shape == (700, 12)  # never fewer rows than n

    per_offset = rng.standard_normal((300, 4, 12)).astype(np.float32)
    bias = rng.standard_normal(12).astype(np.float32)
    z = per_offset[inverse, np.arange(4)].sum(axis=1) + bias
    for relu in (False, True):
        got = lk.gather_sum4(per_offset, inverse, bias, relu)
        np.testing.assert_allclose(got, np.maximum(z, 0) if relu else z, rtol=0, atol=1e-5)
        assert not relu or (got >= 0).all()

    img = np.sort(rng.integers(0, 5, 900))
    patch = rng.integers(0, 300, 900)
    count = rng.integers(1, 9, 900).astype(np.float32)
    for relu in (False, True):
        f = np.maximum(rows[patch] + bias, 0) if relu else rows[patch] + bias
        ref = np.zeros((5, 12), np.float64)
        np.add.at(ref, img, count[:, None] * f)
        got = lk.pair_sums(rows, img, patch, count, 5, bias, relu)
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-4)


@needs_numba
@pytest.mark.parametrize("config", ["fp32", "table6"])
def test_fused_lookup_engine_equals_the_pytorch_model(config):
    """Full-width SweepNet (32 filters) on 48 x 40 scan-like windows: the numba engine (fused
    conv-3 tail, fused dense bias/ReLU/mean) gives the model's own P(sweep) to 1e-6."""
    torch.manual_seed(5)
    model = SweepNet(filters=32, se_ratio=16).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2.0)
    if config == "table6":
        model = quantize_model(model, SEED000_TABLE6).eval()
    x = sweep_images(24, 48, 40, seed=1)
    with torch.inference_mode():
        ref = torch.softmax(model(torch.from_numpy(x).float()).double(), 1).numpy()
    engine = BinaryConvLutEngine(model, kernels="numba", chunk=8, threads=2, batch_size=16)
    got = engine.predict_proba(x)
    assert np.abs(got - ref).max() < 1e-6
    assert engine.last_stats["kernels"] == "numba"
    numpy_engine = BinaryConvLutEngine(model, kernels="numpy", chunk=8)
    assert np.abs(numpy_engine.predict_proba(x) - got).max() < 1e-6
    # the products through torch.mm instead of oneDNN (where oneDNN was chosen): same answer,
    # and the patch counts are the real ones, not the padded row counts
    stats = engine.last_stats
    engine.products = "torch"
    assert np.abs(engine.predict_proba(x) - got).max() < 1e-6
    assert engine.last_stats["patches7"] == stats["patches7"]


@needs_numba
def test_onednn_products_reproduce_torch_mm():
    """Where the engine uses oneDNN's linear kernel, it gives torch.mm's float32 product on
    row counts rounded up to the bucket (zero rows after the data)."""
    from quantscan.runtime import lut

    torch.manual_seed(0)
    model = SweepNet(filters=8, se_ratio=2).eval()
    engine = BinaryConvLutEngine(model, kernels="numba")
    assert engine.products == ("onednn" if lut.onednn_linear() else "torch")
    assert BinaryConvLutEngine(model, kernels="numpy").products == "torch"  # no products to route
    if engine.products == "onednn":
        assert engine._rows(1) == engine._rows(lut.BinaryConvLutEngine.ROW_BUCKET) == 512
        a = torch.zeros(engine._rows(700), engine.channels)
        a[:700] = torch.rand(700, engine.channels)
        got = engine._product(a, engine.w3_rows)
        torch.testing.assert_close(got, a @ engine.w3, rtol=1e-6, atol=1e-6)
        assert not got[700:].any()
    engine.products = "torch"
    assert engine._rows(700) == 700


@needs_numba
@pytest.mark.parametrize("products", ["torch", "onednn"])
def test_padded_products_change_nothing(products, monkeypatch):
    """Rows rounded up to an odd size (zero rows after the data) through either product route:
    the model's own P(sweep), and the engine's patch counts are the real ones."""
    from quantscan.runtime import lut

    if products == "onednn" and not lut.onednn_linear():
        products = "torch"  # this torch has no usable oneDNN linear: check the padding alone
    torch.manual_seed(7)
    model = quantize_model(SweepNet(filters=16, se_ratio=4).eval(), SEED000_TABLE6).eval()
    x = sweep_images(10, 30, 26, seed=4)
    with torch.inference_mode():
        ref = torch.softmax(model(torch.from_numpy(x).float()).double(), 1).numpy()
    exact = BinaryConvLutEngine(model, kernels="numba", chunk=10)
    exact.products = products
    monkeypatch.setattr(exact, "_rows", lambda n: n)
    got = exact.predict_proba(x)
    stats = exact.last_stats
    padded = BinaryConvLutEngine(model, kernels="numba", chunk=10)
    padded.products = products
    monkeypatch.setattr(padded, "_rows", lambda n: n + 37)
    assert np.abs(padded.predict_proba(x) - ref).max() < 1e-6
    assert np.abs(got - ref).max() < 1e-6
    assert padded.last_stats["patches7"] == stats["patches7"]
    assert padded.last_stats["pairs"] == stats["pairs"]


def test_onnx_means_are_global_average_pools_and_run_in_int8(tmp_path):
    torch.manual_seed(2)
    model = SweepNet(filters=8, se_ratio=2).eval()
    x = sweep_images(32, 20, 24, seed=3).astype(np.float32)
    path = export_onnx(model, x[:1], tmp_path / "m.onnx")
    ops = runtime_op_counts(path)
    assert "ReduceMean" not in ops and ops["GlobalAveragePool"] == 2
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    got = ort_session(path).run(None, {"input": x})[0]
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5)

    paths = build_int8(model, x, tmp_path / "f.onnx", tmp_path / "q.onnx")
    ops = runtime_op_counts(paths["int8"])
    # both means in int8; the only dequantization left is the logits'
    assert ops.get("QLinearGlobalAveragePool") == 2 and ops.get("DequantizeLinear") == 1
    q = ort_session(paths["int8"]).run(None, {"input": x})[0]
    assert np.abs(q - ref).max() < 0.05 * np.abs(ref).max() + 1e-3
