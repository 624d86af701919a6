"""Static int8 ONNX Runtime quantization of tiny Conv1d, Conv2d (SweepNet) and Conv3d models."""

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from quantscan.compress.methods.int8 import stored_layers
from quantscan.errors import ConfigError, InputFormatError
from quantscan.export.onnx import (
    ArrayCalibrationReader,
    OrtEngine,
    build_int8,
    calibration_sample,
    compare_latency,
    describe_onnx,
    export_int8,
    export_onnx,
    quantize_onnx,
    runtime_op_counts,
)
from quantscan.models import SweepNet
from quantscan.runtime import OnnxEngine, make_engine


def easy_1d(rng, n):
    y = rng.integers(0, 2, n)
    x = rng.standard_normal((n, 4, 48)).astype(np.float32) * 0.5
    x[:, 0] += np.where(y == 1, 1.0, -1.0)[:, None]
    return x, y


def easy_2d(rng, n):  # SweepNet images in [0, 1]: class 1 is brighter
    y = rng.integers(0, 2, n)
    x = rng.random((n, 1, 12, 12)) * 0.6 + 0.4 * y[:, None, None, None]
    return x.astype(np.float32), y


def easy_3d(rng, n):  # segmentation: a voxel is foreground where its smoothed input is positive
    x = rng.standard_normal((n, 1, 6, 6, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    return x, y


def model_1d():
    return nn.Sequential(
        nn.Conv1d(4, 8, 5),
        nn.ReLU(),
        nn.MaxPool1d(2),
        nn.Conv1d(8, 8, 3),
        nn.ReLU(),
        nn.AdaptiveAvgPool1d(1),
        nn.Flatten(),
        nn.Linear(8, 2),
    )


def model_3d():
    return nn.Sequential(nn.Conv3d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv3d(8, 2, 1))


CASES = {"conv1d": (model_1d, easy_1d), "conv2d": (lambda: SweepNet(filters=8), easy_2d)}
CASES["conv3d"] = (model_3d, easy_3d)


def trained(case, seed=0, steps=60):
    make, data = CASES[case]
    torch.manual_seed(seed)
    model = make()
    rng = np.random.default_rng(seed)
    x, y = data(rng, 128)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(xt), yt).backward()
        opt.step()
    return model.eval(), x, data(np.random.default_rng(seed + 1), 64)


@pytest.mark.parametrize("case", sorted(CASES))
def test_int8_close_to_fp32_and_really_int8(case, tmp_path):
    model, calib, (x, y) = trained(case)
    paths = build_int8(model, calib, tmp_path / "m.fp32.onnx", tmp_path / "m.int8.onnx")
    assert paths["fp32"].exists() and paths["int8"].exists()

    info = describe_onnx(paths["int8"])
    ops = info["op_counts"]
    assert ops.get("QuantizeLinear", 0) > 0 and ops.get("DequantizeLinear", 0) > 0
    n_weight_layers = sum(
        isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.Linear) for m in model.modules()
    )
    assert info["n_int8_initializers"] >= n_weight_layers
    assert info["metadata"]["quantscan.calibrate_method"] == "minmax"
    # ORT runs integer kernels, not DQ -> fp32 conv -> Q
    runtime = runtime_op_counts(paths["int8"])
    assert runtime.get("QLinearConv", 0) + runtime.get("ConvInteger", 0) >= 1
    assert "Conv" not in runtime

    with torch.no_grad():
        ref = torch.softmax(model(torch.from_numpy(x)), dim=1).numpy()
    p32 = OrtEngine(paths["fp32"]).predict_proba(x, batch_size=16)
    p8 = OrtEngine(paths["int8"]).predict_proba(x, batch_size=16)
    assert p8.shape == ref.shape
    np.testing.assert_allclose(p32, ref, atol=1e-4)
    assert np.abs(p8 - p32).mean() < 0.02 and np.abs(p8 - p32).max() < 0.2
    # logits too: easy data saturate the probabilities, which would hide int8 error
    z32 = OrtEngine(paths["fp32"], activation="none").predict_proba(x)
    z8 = OrtEngine(paths["int8"], activation="none").predict_proba(x)
    err = np.abs(z8 - z32) / z32.std()
    assert err.mean() < 0.03 and err.max() < 0.15
    agree = (p8.argmax(1) == p32.argmax(1)).mean()
    assert agree >= 0.95
    assert (p32.argmax(1) == y).mean() >= 0.9  # the data really are easy (the model learned)


def test_int8_file_about_4x_smaller(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv1d(16, 64, 9),
        nn.ReLU(),
        nn.Conv1d(64, 64, 9),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(64 * 16, 8),
    )
    calib = np.random.default_rng(0).standard_normal((32, 16, 32)).astype(np.float32)
    paths = build_int8(model, calib, tmp_path / "a.onnx", tmp_path / "b.onnx")
    fp32, int8 = (paths[k].stat().st_size for k in ("fp32", "int8"))
    assert fp32 > 4 * (9 * 16 * 64 + 9 * 64 * 64 + 1024 * 8)  # ~45k weights stored as fp32
    assert 3.3 < fp32 / int8 < 4.2


def test_calibration_methods_and_errors(tmp_path):
    model, calib, (x, _) = trained("conv1d", steps=20)
    base = OrtEngine(export_onnx(model, calib[:1], tmp_path / "fp32.onnx")).predict_proba(x)
    for method in ("percentile", "entropy"):
        out = tmp_path / f"{method}.onnx"
        build_int8(model, calib, tmp_path / "fp32.onnx", out, calibrate_method=method)
        assert describe_onnx(out)["metadata"]["quantscan.calibrate_method"] == method
        assert np.abs(OrtEngine(out).predict_proba(x) - base).mean() < 0.05
    with pytest.raises(ConfigError):
        build_int8(model, calib, tmp_path / "f.onnx", tmp_path / "g.onnx", calibrate_method="kl")
    with pytest.raises(ConfigError):
        export_onnx(model, calib[:1], tmp_path / "h.onnx", opset=13)


def test_engine_batching_activations_and_dynamic_batch(tmp_path):
    model, calib, (x, _) = trained("conv1d", steps=5)
    path = export_onnx(model, calib[:1], tmp_path / "m.onnx")
    assert onnx.load(str(path)).opset_import[0].version >= 17
    eng = OrtEngine(path, intra_op_threads=1)
    whole = eng.predict_proba(x, batch_size=len(x))
    np.testing.assert_allclose(eng.predict_proba(x, batch_size=7), whole, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(whole.sum(1), 1.0, rtol=1e-5)
    logits = OrtEngine(path, activation="none").predict_proba(x[:1])  # batch of 1 works too
    sig = OrtEngine(path, activation="sigmoid").predict_proba(x[:1])
    np.testing.assert_allclose(sig, 1 / (1 + np.exp(-logits)), rtol=1e-5)
    with pytest.raises(ConfigError):
        OrtEngine(path, activation="relu")


def test_calibration_reader_batches_and_rewinds():
    reader = ArrayCalibrationReader(np.zeros((10, 3), dtype=np.float64), "inp", batch_size=4)
    sizes = []
    while (b := reader.get_next()) is not None:
        sizes.append(len(b["inp"]))
        assert b["inp"].dtype == np.float32
    assert sizes == [4, 4, 2]
    reader.rewind()
    assert len(reader.get_next()["inp"]) == 4


def test_compare_latency_reports_all_three(tmp_path):
    model, calib, (x, _) = trained("conv1d", steps=5)
    paths = build_int8(model, calib, tmp_path / "a.onnx", tmp_path / "b.onnx")
    threads = torch.get_num_threads()
    r = compare_latency(model, paths["fp32"], paths["int8"], x[:16], warmup=1, repeats=3)
    assert torch.get_num_threads() == threads
    for k in ("torch_fp32_s", "ort_fp32_s", "ort_int8_s"):
        assert r[k] > 0
    assert r["speedup_vs_torch_fp32"] == pytest.approx(r["torch_fp32_s"] / r["ort_int8_s"])
    assert r["speedup_vs_ort_fp32"] == pytest.approx(r["ort_fp32_s"] / r["ort_int8_s"])
    assert r["batch"] == 16 and r["repeats"] == 3
    # a 200-weight model: QDQ scales and zero points outweigh the 4x on weights, honestly reported
    assert r["int8_bytes"] == paths["int8"].stat().st_size


def test_short_names_keep_the_model_and_its_weight_names(tmp_path):
    """shorten_names: same outputs and integer kernels, weight names kept, a smaller file."""
    import onnx

    from quantscan.export.onnx import runtime_op_counts, shorten_names

    model, calib, (x, _) = trained("conv2d", steps=20)
    paths = build_int8(model, calib, tmp_path / "fp32.onnx", tmp_path / "int8.onnx")
    m = onnx.load(str(paths["int8"]))
    weights = {t.name for t in m.graph.initializer if len(t.dims) >= 2}
    assert weights and all(n.endswith(".weight_quantized") for n in weights)
    assert all(not n.name for n in m.graph.node)  # already shortened by quantize_onnx
    long_ = onnx.load(str(paths["int8"]))
    g = long_.graph
    io = {"input", "output"}
    lengthen = {t.name for t in g.initializer if len(t.dims) < 2} | {
        o for n in g.node for o in n.output if o not in io
    }

    def long_name(x):  # the exporters' style: long names, repeated wherever a tensor is read
        return f"{x}_a_long_exporter_tensor_name" if x in lengthen else x

    for t in g.initializer:
        t.name = long_name(t.name)
    for i, n in enumerate(g.node):
        n.name = f"{n.op_type}_a_long_exporter_node_name_{i}"
        n.input[:] = [long_name(x) for x in n.input]
        n.output[:] = [long_name(x) for x in n.output]
    long_path = tmp_path / "long.onnx"
    onnx.save(long_, str(long_path))
    short = shorten_names(onnx.load(str(long_path)))
    short_path = tmp_path / "short.onnx"
    onnx.save(short, str(short_path))
    assert short_path.stat().st_size < long_path.stat().st_size
    assert {t.name for t in short.graph.initializer if len(t.dims) >= 2} == weights
    assert [i.name for i in short.graph.input] == ["input"]
    assert [o.name for o in short.graph.output] == ["output"]
    np.testing.assert_array_equal(
        OrtEngine(short_path, activation="none").predict_logits(x),
        OrtEngine(long_path, activation="none").predict_logits(x),
    )
    assert runtime_op_counts(short_path) == runtime_op_counts(long_path)
    # the fp32 export keeps node names (quantize_onnx's nodes_to_exclude names nodes)
    assert all(n.name for n in onnx.load(str(paths["fp32"])).graph.node)


@pytest.mark.parametrize("case", sorted(CASES))
def test_compact_encoding_drops_zero_points_but_not_a_kernel(case, tmp_path):
    """Bias and conv-weight zero points go; outputs and ORT's fused integer kernels stay."""
    import onnx

    from quantscan.export.onnx import compact_encoding, runtime_op_counts

    model, calib, (x, _) = trained(case, steps=20)
    paths = build_int8(model, calib, tmp_path / "fp32.onnx", tmp_path / "int8.onnx")
    compact = onnx.load(str(paths["int8"]))  # quantize_onnx compacted it already
    inits = {t.name: t for t in compact.graph.initializer}
    dq = [n for n in compact.graph.node if n.op_type == "DequantizeLinear"]
    of_bias = [n for n in dq if inits.get(n.input[0]) and inits[n.input[0]].data_type == 6]
    assert of_bias and all(len(n.input) == 2 for n in of_bias)
    # undo: give every bias and weight DequantizeLinear an explicit all-zero zero point
    full = onnx.load(str(paths["int8"]))
    for i, n in enumerate(full.graph.node):
        x0 = inits.get(n.input[0])
        if n.op_type == "DequantizeLinear" and len(n.input) == 2 and x0 is not None:
            dtype = onnx.helper.tensor_dtype_to_np_dtype(x0.data_type)
            shape = [x0.dims[0]] if any(a.name == "axis" for a in n.attribute) else []
            zp = onnx.numpy_helper.from_array(np.zeros(shape, dtype), f"zp{i}")
            full.graph.initializer.append(zp)
            n.input.append(zp.name)
    full_path = tmp_path / "full.onnx"
    onnx.save(full, str(full_path))
    assert paths["int8"].stat().st_size < full_path.stat().st_size
    np.testing.assert_array_equal(
        OrtEngine(paths["int8"], activation="none").predict_logits(x),
        OrtEngine(full_path, activation="none").predict_logits(x),
    )
    assert runtime_op_counts(paths["int8"]) == runtime_op_counts(full_path)
    again = compact_encoding(onnx.load(str(full_path)))  # idempotent: the same graph
    assert again.graph == compact.graph


# --------------------------------------------------------------------------------------------------
# damaged ONNX files


@pytest.fixture(scope="module")
def damaged_onnx(tmp_path_factory):
    """A real SweepNet fp32 export, and copies of it truncated, empty and replaced by random bytes."""
    d = tmp_path_factory.mktemp("damaged_onnx")
    torch.manual_seed(0)
    good = export_onnx(SweepNet(filters=4).eval(), np.zeros((1, 1, 8, 8), np.float32), d / "m.onnx")
    data = good.read_bytes()
    files = {
        "truncated": data[: len(data) // 2],
        "truncated_tail": data[:-10],
        "empty": b"",
        "random": np.random.default_rng(0).bytes(4096),
    }
    for name, content in files.items():
        (d / f"{name}.onnx").write_bytes(content)
    return good, {name: d / f"{name}.onnx" for name in [*files, "missing"]}


OPENERS = {
    "OrtEngine": OrtEngine,
    "describe_onnx": describe_onnx,
    "runtime_op_counts": runtime_op_counts,
    "stored_layers": stored_layers,
    "runtime.OnnxEngine": OnnxEngine,
    "make_engine": lambda p: make_engine("onnx_int8", p),
    "quantize_onnx": lambda p: quantize_onnx(p, p.with_suffix(".q.onnx"), np.zeros((2, 1, 8, 8))),
}


@pytest.mark.parametrize("opener", sorted(OPENERS))
@pytest.mark.parametrize("damage", ["truncated", "truncated_tail", "empty", "random", "missing"])
def test_damaged_onnx_raises_input_format_error_naming_the_file(damaged_onnx, opener, damage):
    good, bad = damaged_onnx
    OPENERS[opener](good)  # the intact export opens
    path = bad[damage]
    with pytest.raises(InputFormatError) as err:
        OPENERS[opener](path)
    # make_engine checks a file's first bytes before opening it as ONNX
    why = (
        "cannot read model file"
        if (opener, damage) == ("make_engine", "missing")
        else ("not a readable ONNX model")
    )
    assert str(err.value).startswith(f"{path}: {why}: ")
    assert not path.with_suffix(".q.onnx").exists()  # quantize_onnx wrote nothing


def test_export_int8_calibrates_on_a_seeded_sample_in_input_order(tmp_path):
    """The one int8 export path (the int8 method and the scan's onnx_int8 engine): a seeded draw of
    calibration_samples inputs, kept in their order, calibrates build_int8."""
    x = np.arange(20, dtype=np.float64).reshape(20, 1)
    a, b = calibration_sample(x, 6, seed=5), calibration_sample(x, 6, seed=5)
    assert a.dtype == np.float32 and np.array_equal(a, b) and len(a) == 6
    assert np.all(np.diff(a[:, 0]) > 0) and not np.array_equal(a, calibration_sample(x, 6, 6))
    assert len(calibration_sample(x, 500, seed=5)) == 20
    with pytest.raises(ConfigError, match="at least one"):
        calibration_sample(x, 0, seed=5)
    xs, _ = easy_1d(np.random.default_rng(0), 40)
    built = export_int8(
        model_1d().eval(),
        xs,
        tmp_path / "f.onnx",
        tmp_path / "q.onnx",
        calibration_samples=8,
        seed=1,
    )
    assert built["calibration_samples"] == 8 and built["int8"] == tmp_path / "q.onnx"
    meta = describe_onnx(built["int8"])["metadata"]
    assert meta["quantscan.calibration_samples"] == "8"
    assert meta["quantscan.calibrate_method"] == "minmax"
