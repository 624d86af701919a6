"""The int8 compression method (ONNX Runtime static int8) on a tiny trained SweepNet."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from quantscan.compress import methods
from quantscan.compress.cost import model_bits
from quantscan.compress.methods import int8 as int8_method
from quantscan.compress.methods.int8 import run_int8_method, stored_layers
from quantscan.errors import ConfigError
from quantscan.export import torch_int8
from quantscan.models import SweepNet
from quantscan.summary import COLUMNS, metrics_json, rows_table
from quantscan.train import TrainConfig


def easy(rng, n):  # SweepNet-like 0/1 images: class 1 has more derived alleles
    y = rng.integers(0, 2, n)
    p = np.where(y == 1, 0.7, 0.3)[:, None, None, None]
    x = (rng.random((n, 1, 12, 12)) < p).astype(np.uint8)
    return x, y.astype(np.int64)


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    # 32 filters (the workflow's SweepNet): with fewer weights the QDQ graph's own bytes (node and
    # tensor names, scales) outweigh the 4x on the weights and the int8 file is the larger one
    model = SweepNet(filters=32)
    rng = np.random.default_rng(0)
    train = easy(rng, 160)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    xt, yt = torch.from_numpy(train[0]).float(), torch.from_numpy(train[1])
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(model(xt), yt).backward()
        opt.step()
    return model.eval(), train, easy(np.random.default_rng(1), 80)


@pytest.fixture(scope="module")
def result(trained, tmp_path_factory):
    model, train, test = trained
    path = tmp_path_factory.mktemp("int8") / "model.onnx"
    neutral = (test[0][test[1] == 0], test[1][test[1] == 0])
    cfg = {"type": "int8", "calibration_samples": 64, "latency_batch": 32, "latency_repeats": 2}
    res = run_int8_method(
        "int8",
        cfg,
        model,
        train,
        test,
        ["neutral", "sweep"],
        seed=3,
        int8_path=path,
        extra_sets={"island": neutral},
        scenario="easy",
        torch_int8_path=path.with_name("model.int8.pt"),
        arch={"name": "sweepnet", "filters": 32},
    )
    return res, path, model


def test_a_model_fx_cannot_trace_gets_a_torch_int8_file_that_says_why(result):
    res, path, _ = result
    assert "cannot be quantized by PyTorch FX" in res.metrics["int8"]["torch_int8"]
    assert "torch_int8_accuracy" not in res.metrics and "torch_int8" not in res.details.columns
    with pytest.raises(ConfigError, match="no PyTorch int8 version"):
        torch_int8.load(path.with_name("model.int8.pt"))


def test_metrics_from_the_int8_engine_close_to_fp32(result):
    res, path, model = result
    m = res.metrics
    assert m["method"] == "int8" and m["scenario"] == "easy"
    assert m["fp32_accuracy"] >= 0.95  # the task is easy: the comparison means something
    assert abs(m["accuracy"] - m["fp32_accuracy"]) <= 0.05
    assert m["agreement_fp32"] >= 0.95
    assert m["n"] == 80 and sum(map(sum, m["confusion_matrix"]["rows_true_cols_pred"])) == 80
    assert 0 <= m["acc_neutral"] <= 1 and 0 <= m["acc_sweep"] <= 1 and -1 <= m["mcc"] <= 1
    assert 0 <= m["fpr_island"] <= 1
    # the int8 model in the file is what was evaluated: ORT on it reproduces the accuracy
    from quantscan.export.onnx import OrtEngine

    x, y = easy(np.random.default_rng(1), 80)
    acc = float((OrtEngine(path).predict_proba(x).argmax(1) == y).mean())
    assert acc == pytest.approx(m["accuracy"])
    assert m["int8"]["runtime_ops"].get("QLinearConv", 0) >= 1  # really runs integer kernels


def test_sizes_latencies_and_bits(result):
    res, path, model = result
    m = res.metrics
    assert m["file_bytes"] == path.stat().st_size
    assert m["file_bytes"] < m["fp32_onnx_bytes"]
    assert m["size_ratio"] == pytest.approx(m["fp32_onnx_bytes"] / m["file_bytes"])
    assert m["size_ratio"] > 2.0  # short tensor names (int8.shorten_names); 1.4 with the exporters
    for k in ("speedup_vs_torch_fp32", "speedup_vs_ort_fp32", "latency_ort_int8_s"):
        assert np.isfinite(m[k]) and m[k] > 0
    assert m["speedup_vs_torch_fp32"] == pytest.approx(
        m["latency_torch_fp32_s"] / m["latency_ort_int8_s"]
    )
    # 8 bits per weight, 32 per bias (int32 as ORT stores it): SweepNet has no folded layers
    n_w = sum(p.numel() for n, p in model.named_parameters() if n.endswith("weight"))
    n_b = sum(p.numel() for n, p in model.named_parameters() if n.endswith("bias"))
    assert m["model_bits"] == 8 * n_w + 32 * n_b
    assert m["size_pct"] == pytest.approx(100 * m["model_bits"] / model_bits(model))
    assert m["bits_per_layer"].startswith("sweepnet_first_conv=8/32")
    assert m["quant_param_bits"] > 0
    assert 0.5 < m["density"] <= 1.0 and m["weights_mbit"] <= 8 * n_w / 1e6
    assert m["nops"] > 0 and m["int8"]["unmatched_layers"] == []
    assert m["latency_batch"] == 32  # 80 test inputs, the first 32 timed


def test_rows_details_notes_plot(result, tmp_path):
    res, _, _ = result
    assert len(res.rows) == 1
    table = rows_table(res.rows, COLUMNS)
    assert table.method.tolist() == ["int8"]
    at = list(table.columns).index("bits_per_layer")
    assert list(table.columns[at + 1 : at + 3]) == ["speedup_vs_torch_fp32", "speedup_vs_ort_fp32"]
    assert "size_ratio" in table.columns and "fp32_accuracy" in table.columns
    json.loads(metrics_json(res.metrics))  # strict JSON
    d = res.details.set_index(["section", "item"])
    assert d.loc[("size", "file_bytes"), "ort_int8"] == res.metrics["file_bytes"]
    assert d.loc[("accuracy", "accuracy"), "ort_int8"] == res.metrics["accuracy"]
    assert d.loc[("runtime_ops", "QLinearConv"), "ort_int8"] >= 1
    assert np.isnan(d.loc[("runtime_ops", "QLinearConv"), "ort_fp32"])
    assert "speedup_vs_torch_fp32" in res.notes and "int32" in res.notes
    res.plot(tmp_path / "plot.png", "int8")
    assert (tmp_path / "plot.png").read_bytes()[:4] == b"\x89PNG"


def test_stored_layers_dequantize_to_the_fp32_weights(result):
    _, path, model = result
    layers, _ = stored_layers(path)
    params = dict(model.named_parameters())
    assert len(layers) == 7
    for sl in layers:
        w = params[sl.param].detach().numpy()
        assert sl.weight.dtype == "int8" and sl.bias.dtype == "int32"
        # per-channel symmetric: at most half a step (max|w| / 63 with 7-bit weights) away
        step = np.abs(w).reshape(len(w), -1).max(1) / 63
        err = np.abs(sl.weight.values - w).reshape(len(w), -1).max(1)
        assert np.all(err <= step / 2 + 1e-6)


def test_wrong_type_and_unknown_key(trained, tmp_path):
    model, train, test = trained
    with pytest.raises(ConfigError, match="not 'int8'"):
        run_int8_method("x", {"type": "mixed"}, model, train, test, ["a", "b"], 0, tmp_path / "m")
    with pytest.raises(ConfigError, match="calibraton"):
        cfg = {"type": "int8", "calibraton": "minmax"}
        run_int8_method("x", cfg, model, train, test, ["a", "b"], 0, tmp_path / "m.onnx")
    assert int8_method.method_name("fast") == "int8_fast"
    assert int8_method.method_name("int8_entropy") == "int8_entropy"
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------------------------------
# the viral 1-D CNN: uint8 one-hot (B, 5, N), Conv1d + BatchNorm1d + MaxPool1d, 3-D input


def onehot_data(rng, n, length=64, n_classes=3):
    """Random one-hot windows; class c draws base c (A, C, G) five times as often as the others."""
    y = rng.integers(0, n_classes, n)
    p = np.ones((n, 4))
    p[np.arange(n), y] = 5.0
    p /= p.sum(1, keepdims=True)
    codes = (rng.random((n, length, 1)) > p.cumsum(1)[:, None, :]).sum(-1)
    x = np.zeros((n, 5, length), np.uint8)
    x[np.arange(n)[:, None], codes, np.arange(length)[None]] = 1
    return x, y.astype(np.int64)


@pytest.fixture(scope="module")
def viral_result(tmp_path_factory):
    """A seeded ViralCNN (N = 64): random conv filters with batch-norm statistics of the training
    inputs, dense layers trained on their features (training the ~800k conv weights too takes
    ~20 s on 2 busy cores), then the int8 method."""
    from quantscan.models.viralcnn import ViralCNN

    torch.manual_seed(0)
    model = ViralCNN(n_classes=3, length=64, dropout=0.0)
    rng = np.random.default_rng(0)
    train = onehot_data(rng, 96)
    xt, yt = torch.from_numpy(train[0]).float(), torch.from_numpy(train[1])
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.momentum = None  # exact mean and variance over the one pass below
    feats = {}
    hook = model.flatten.register_forward_hook(lambda m, i, o: feats.update(x=o.detach()))
    model.train()
    with torch.no_grad():
        model(xt)
    hook.remove()
    head = nn.Sequential(
        *(getattr(model, f"dense{i}{s}") for i in (1, 2, 3) for s in ("", "_activation")),
        model.dense4,
    )
    opt = torch.optim.Adam(head.parameters(), lr=0.02)
    for _ in range(40):
        opt.zero_grad()
        nn.functional.cross_entropy(head(feats["x"]), yt).backward()
        opt.step()
    model.eval()
    test = onehot_data(np.random.default_rng(1), 64)
    path = tmp_path_factory.mktemp("int8_viral") / "model.onnx"
    cfg = {"type": "int8", "calibration_samples": 48, "latency_batch": 16, "latency_repeats": 2}
    res = run_int8_method(
        "int8", cfg, model, train, test, ["a", "b", "c"], 5, path, scenario="simulated"
    )
    return res, path, model, test


def test_viral_cnn_int8_agrees_with_fp32_and_is_smaller(viral_result):
    res, path, model, (x, y) = viral_result
    m = res.metrics
    assert m["fp32_accuracy"] >= 0.9  # a signal the comparison can measure
    assert m["agreement_fp32"] >= 0.95 and abs(m["accuracy_delta"]) <= 0.05
    assert {"acc_a", "acc_b", "acc_c"} <= set(m) and m["n"] == 64
    # the ONNX file loads and is the evaluated model: uint8 one-hot in, (B, 3) out
    from quantscan.export.onnx import OrtEngine

    engine = OrtEngine(path)
    shape = engine.session.get_inputs()[0].shape
    assert shape[1:] == [5, 64] and engine.session.get_outputs()[0].shape[1:] == [3]
    proba = engine.predict_proba(x)
    assert float((proba.argmax(1) == y).mean()) == pytest.approx(m["accuracy"])
    with torch.no_grad():
        fp32 = torch.softmax(model(torch.from_numpy(x).float()), 1).numpy()
    assert np.abs(proba - fp32).max() < 0.2  # per-class probability, not only the argmax
    # ~800k weights: the QDQ graph's own bytes are small, the file is close to 4x smaller
    assert m["file_bytes"] == path.stat().st_size and m["size_ratio"] > 3.5
    for k in ("speedup_vs_torch_fp32", "speedup_vs_ort_fp32"):
        assert np.isfinite(m[k]) and m[k] > 0
    row = rows_table(res.rows, COLUMNS)
    at = list(row.columns).index("bits_per_layer")
    assert list(row.columns[at + 1 : at + 3]) == ["speedup_vs_torch_fp32", "speedup_vs_ort_fp32"]


def test_viral_cnn_int8_folds_batch_norm_and_runs_integer_kernels(viral_result):
    res, path, model, _ = viral_result
    m = res.metrics
    stored = m["int8"]["stored_ops"]
    # eval-mode export folds BatchNorm1d into the (bias-free) convolutions; ORT's pre-processing
    # fuses the padding into them
    assert "BatchNormalization" not in stored and "Pad" not in stored
    ops = m["int8"]["runtime_ops"]
    assert ops.get("QLinearConv") == 4 and ops.get("QGemm") == 4 and ops.get("MaxPool") == 4
    assert m["int8"]["latency"]["torch_channels_last"] is False  # 3-D input
    assert m["int8"]["unmatched_layers"] == []
    # every conv now stores a folded int32 bias: 8 bits per weight, 32 per bias
    n_w = sum(
        p.numel() for n, p in model.named_parameters() if n.endswith(".weight") and "_bn" not in n
    )
    n_b = sum(getattr(model, f"conv{i}").out_channels for i in range(1, 5)) + sum(
        getattr(model, f"dense{i}").bias.numel() for i in range(1, 5)
    )
    assert m["model_bits"] == 8 * n_w + 32 * n_b
    assert m["bits_per_layer"].split(",")[0] == "conv1=8/32"
    # compression metrics of the dequantized stored weights, through the 1-D model
    assert 0.9 < m["density"] <= 1.0 and m["nops"] > 0 and m["weights_mbit"] <= 8 * n_w / 1e6
    layers, _ = stored_layers(path)
    assert [sl.op for sl in layers] == ["Conv"] * 4 + ["Gemm"] * 4


def test_int8_is_a_registered_type_that_run_method_sends_to_run_int8_method(trained):
    model, train, test = trained
    assert "int8" in methods.METHOD_TYPES
    with pytest.raises(ConfigError, match="run_int8_method"):
        methods.run_method(
            "q8", {"type": "int8"}, model, {}, train, train, test, ["a", "b"], TrainConfig(), 0
        )
