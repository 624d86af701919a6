"""Compression methods on a dense task: a tiny 3-D U-Net (4 filters, 2 levels: Conv3d, BatchNorm3d,
ConvTranspose3d) trained on the affinities task, compressed by every method family for one
fine-tuning epoch. Each method must run, its file must reproduce the in-memory model (packed file:
same logits; int8: ONNX Runtime close to fp32) and its metrics must be the task's (voxel accuracy,
balanced accuracy, ... of sigmoid probabilities), not a softmax classification's."""

import logging

import numpy as np
import pytest
import torch
from torch import nn

from quantscan.compress import methods
from quantscan.compress.layers import (
    OutputChannels,
    QConvTranspose3d,
    quantizable_modules,
    quantize_model,
)
from quantscan.compress.methods import registry
from quantscan.compress.methods.int8 import run_int8_method
from quantscan.compress.metrics import mac_counts
from quantscan.compress.prune import weight_layers
from quantscan.compress.quantizers import parse_quantizer
from quantscan.compress.ternary import TernaryConvTranspose3d, ternary_layers
from quantscan.export import torch_int8
from quantscan.export.onnx import OrtEngine
from quantscan.export.packed import load_packed, read_packed_header, save_packed
from quantscan.models import build_model
from quantscan.tasks import CLASSIFICATION, error_rate, get_task
from quantscan.tasks.segmentation import IGNORE, affinities, random_patches
from quantscan.train import TrainConfig, fit, predict_proba

ARCH = {"name": "unet3d", "filters": 4, "levels": 2}
CHANNELS = ["z", "y", "x"]
TASK = get_task("affinities")
FT = TrainConfig(epochs=1, batch_size=4, learning_rate=0.005, patience=1)
LOG = logging.getLogger("test_dense_task")
PATCH = (4, 16, 16)


def volume(seed: int, shape=(8, 40, 40)) -> tuple[np.ndarray, np.ndarray]:
    """Random label cubes (2-3 sections deep, 4-7 voxels wide) -> nearest-neighbour affinity
    targets; raw: dark membranes (voxels next to another label in y or x) on bright cells, plus
    noise."""
    rng = np.random.default_rng(seed)
    edges = [
        np.cumsum(rng.integers(lo, hi, 64)) - rng.integers(0, lo)
        for lo, hi in ((2, 4), (4, 8), (4, 8))
    ]
    z, y, x = (
        np.searchsorted(e, np.arange(n), side="right") for e, n in zip(edges, shape, strict=True)
    )
    labels = 1 + z[:, None, None] * 10_000 + y[None, :, None] * 100 + x[None, None, :]
    membrane = np.zeros(shape, bool)
    membrane[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    membrane[:, :, 1:] |= labels[:, :, 1:] != labels[:, :, :-1]
    raw = np.where(membrane, 0.2, 0.8) + rng.normal(0, 0.05, shape)
    return raw.astype(np.float32), affinities(labels, background=None)


def split(n: int, seed: int):
    return random_patches(*volume(seed), PATCH, n, seed)


@pytest.fixture(scope="module")
def unet():
    """(model, train, val, test): the tiny U-Net trained 5 seeded epochs on 8 patches."""
    train, val, test = split(8, 1), split(4, 2), split(4, 3)
    assert train[1].dtype == np.int8 and (train[1] == IGNORE).any()  # borders are unknown
    torch.manual_seed(0)
    model = build_model(ARCH)
    cfg = TrainConfig(epochs=5, batch_size=4, learning_rate=0.02, patience=5)
    fit(model, *train, *val, cfg, 0, task=TASK)
    return model.eval(), train, val, test


def run(unet, name, cfg, seed=3):
    model, train, val, test = unet
    return methods.run_method(
        name, cfg, model, ARCH, train, val, test, CHANNELS, FT, seed, LOG, task=TASK
    )


def logits(model, x):
    with torch.no_grad():
        return model.eval()(torch.from_numpy(x)).numpy()


def check_task_metrics(unet, v: registry.Variant):
    """The variant's metrics are the affinities task's, on its own test probabilities."""
    _, _, val, test = unet
    proba = predict_proba(v.model, test[0], task=TASK)
    assert proba.shape == test[1].shape  # per voxel and channel, not per class
    np.testing.assert_array_equal(v.test_proba, proba)
    expected = TASK.metrics(test[1], proba, CHANNELS)
    for key in ("accuracy", "balanced_accuracy", "bce", "acc_z", "acc_y", "acc_x", "n_voxels"):
        assert v.metrics[key] == expected[key], key
    assert 0.0 <= v.metrics["accuracy"] <= 1.0 and "mcc" not in v.metrics
    # validation accuracy: the mean voxel accuracy per input, as train.fit's val_accuracy
    val_proba = predict_proba(v.model, val[0], task=TASK)
    assert v.val_accuracy == pytest.approx(TASK.per_input_accuracy(val[1], val_proba).mean())
    assert 0.0 <= v.val_accuracy <= 1.0


def check_packed(unet, v: registry.Variant, tmp_path):
    """The packed file rebuilds the model: logits within 1e-5 (in fact equal) of the in-memory
    model's, and the same probabilities the compress script compares."""
    x = unet[3][0]
    path = tmp_path / "model.qsp"
    save_packed(v.model, path, ARCH)
    loaded, _ = load_packed(path)
    np.testing.assert_allclose(logits(loaded, x), logits(v.model, x), rtol=0, atol=1e-5)
    np.testing.assert_array_equal(
        predict_proba(loaded, x, task=TASK), predict_proba(v.model, x, task=TASK)
    )
    return loaded, read_packed_header(path)


def test_predict_proba_applies_the_task_activation(unet):
    model, _, _, test = unet
    x = test[0][:2]
    z = torch.from_numpy(logits(model, x))
    np.testing.assert_array_equal(predict_proba(model, x, task=TASK), torch.sigmoid(z).numpy())
    # classification (the default) is a softmax over axis 1, as before
    np.testing.assert_array_equal(predict_proba(model, x), torch.softmax(z, 1).numpy())
    assert predict_proba(model, x).shape == predict_proba(model, x, task=CLASSIFICATION).shape
    # error rate and per-input accuracy agree with train.fit's correct()
    y = torch.from_numpy(test[1][:2].astype(np.int64))
    share = TASK.correct(z, y) / 2
    proba = predict_proba(model, x, task=TASK)
    assert TASK.per_input_accuracy(test[1][:2], proba).mean() == pytest.approx(share)
    assert error_rate(TASK, test[1][:2], proba) == pytest.approx(1 - share)


def test_transposed_convolution_is_quantized_per_output_channel(unet, tmp_path):
    """ConvTranspose3d quantizes like Conv3d, with scales per output channel (weight axis 1); the
    packed file stores its codes and reproduces the quantized model, BatchNorm3d included."""
    model = unet[0]
    kinds = quantizable_modules(model)
    assert kinds["ups.0"] == "weight" and kinds["encoders.0.first.conv"] == "weight"
    spec = "quantized_bits(4, 0, 1, alpha='auto')"
    q = quantize_model(model, dict.fromkeys([n for n, k in kinds.items() if k == "weight"], spec))
    up = q.ups[0]
    assert isinstance(up, QConvTranspose3d) and isinstance(up.kernel_quantizer, OutputChannels)
    assert up.kernel_quantizer.spec == spec  # the layer_config names the plain quantizer
    w = up.weight.detach()  # (in, out, k...)
    inner = parse_quantizer(spec)
    expected = inner(w.transpose(0, 1)).transpose(0, 1)
    torch.testing.assert_close(up.quantized_weight(), expected, rtol=0, atol=0)
    scale = up.kernel_quantizer.export(w).params["scale"]
    assert tuple(scale.shape) == (1, w.shape[1], 1, 1, 1)
    # gradients pass straight through
    up.weight.grad = None
    up.quantized_weight().sum().backward()
    torch.testing.assert_close(up.weight.grad, torch.ones_like(w))
    loaded, header = check_packed(unet, registry.Variant("q", q, {}, {}, 0.0, 0, 0.0), tmp_path)
    entries = {e[0]: e[2] for e in header["tensors"]}
    assert entries["ups.0.weight"] == "codes" and entries["encoders.0.first.conv.weight"] == "codes"
    assert entries["encoders.0.first.bn.running_var"] == "raw"
    assert any(isinstance(m, nn.BatchNorm3d) for m in loaded.modules())
    for key, value in q.state_dict().items():
        if ".bn." in key:
            torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)


def test_macs_of_a_transposed_convolution_count_input_positions(unet):
    """Each weight of a transposed convolution is used once per input voxel."""
    model = unet[0]
    x = torch.from_numpy(unet[3][0][:1])
    counts = mac_counts(model, x)
    up = model.ups[0]
    positions = (PATCH[0] // 1) * (PATCH[1] // 2) * (PATCH[2] // 2)  # the bottom level's voxels
    assert counts["ups.0"]["positions"] == positions
    # = output voxels x in_channels x out_channels (stride == kernel: one input voxel each)
    assert counts["ups.0"]["macs_dense"] == np.prod(PATCH) * up.in_channels * up.out_channels


def test_mixed_precision_per_layer(unet, tmp_path):
    layers = {
        "encoders.0.first.conv": 8,
        "encoders.0.second.conv": 4,
        "encoders.1.first.conv": 4,
        "encoders.1.second.conv": 3,
        "ups.0": 4,
        "decoders.0.first.conv": 4,
        "decoders.0.second.conv": 6,
        "head": 8,
        "encoders.1.second.relu": "quantized_relu(4)",
    }
    result = run(unet, "mixed_dense", {"type": "mixed", "layers": layers})
    v = result.primary
    assert v.name == "mixed_dense" and v.metrics["size_pct"] < 30
    assert "ups.0=4" in v.metrics["bits_per_layer"]
    check_task_metrics(unet, v)
    check_task_metrics(unet, run(unet, "mixed_dense", {"type": "mixed", "layers": 4}).primary)
    assert "balanced accuracy" in result.notes and "MCC" not in result.notes
    check_packed(unet, v, tmp_path)


@pytest.mark.parametrize("kind", ["q_then_p_iter", "p_then_q_iter"])
def test_pruning_with_quantization(unet, kind, tmp_path):
    result = run(unet, kind, {"type": kind, "gammas": [0.5], "bits": 8})
    v = result.primary
    assert v.metrics["density"] < 0.9  # pruned, the transposed convolution too
    w = v.model.ups[0].weight.detach()
    assert 0 < int(torch.count_nonzero(w)) < w.numel()
    assert "ups.0=8" in v.metrics["bits_per_layer"]
    check_task_metrics(unet, v)
    assert {"accuracy", "balanced_accuracy"} <= set(result.details.columns)
    check_packed(unet, v, tmp_path)


def test_ternary_ttq(unet, tmp_path):
    """TTQ (Zhu et al. 2017) on every weight layer but the first and the last: the Conv3d layers
    and the ConvTranspose3d."""
    result = run(unet, "ttq", {"type": "ttq"})
    v = result.primary
    chosen = ternary_layers(v.model)
    assert "ups.0" in chosen and isinstance(chosen["ups.0"], TernaryConvTranspose3d)
    assert "encoders.0.first.conv" not in chosen and "head" not in chosen
    for layer in chosen.values():
        assert torch.unique(layer.effective_weight()).numel() <= 3
    check_task_metrics(unet, v)
    loaded, _ = check_packed(unet, v, tmp_path)
    assert isinstance(loaded.ups[0], TernaryConvTranspose3d) and loaded.ups[0].frozen


def test_hessian_layer_selection_uses_the_task_loss(unet):
    """``layers: hessian`` (Vindas et al.): Hutchinson traces of the affinity loss."""
    cfg = {"type": "ttq", "layers": "hessian", "hessian": {"samples": 4, "max_iter": 3}}
    result = run(unet, "ttq_hessian", cfg)
    traces = result.details.dropna(subset=["trace"])
    assert list(traces.layer) == list(weight_layers(unet[0]))  # the transposed convolution too
    assert np.isfinite(traces.trace).all() and traces.hessian_selected.any()
    check_task_metrics(unet, result.primary)


#: every other method type, with small settings (none names a configuration of an application)
OTHER_TYPES = {
    "layer_sensitivity": {"layers": ["ups.0", "head"], "bits": [4]},
    "uniform": {"bits": [4, 8], "flat_bits": [4], "mixed": None},
    "one_bit_rounds": {"layers": ["ups.0"], "activations": ["encoders.1.second.relu"]},
    "po2_vs_auto": {"configurations": {"four": 4}},
    "auto_search": {"n_trials": 2, "trial_samples": 4, "trial_epochs": 1},
    "attq": {},
    "dorefa": {"activation_bits": 4},
    "p_then_q_epochs": {"gammas": [0.5], "bits": 8},
}


@pytest.mark.parametrize("kind", OTHER_TYPES)
def test_every_other_method_type(unet, kind, tmp_path):
    result = run(unet, kind, {"type": kind, **OTHER_TYPES[kind]})
    for v in result.variants:
        assert "mcc" not in v.metrics and 0.0 <= v.metrics["accuracy"] <= 1.0
    check_task_metrics(unet, result.primary)
    check_packed(unet, result.primary, tmp_path)


def test_int8_onnx_runtime(unet, tmp_path):
    """Static int8 through ONNX Runtime, calibrated on training patches; ORT has no integer
    ConvTranspose (it runs in fp32 between DequantizeLinear and QuantizeLinear), every Conv runs
    as QLinearConv. Metrics: the task's, from the int8 session's sigmoid probabilities."""
    model, train, _, test = unet
    path = tmp_path / "model.onnx"
    cfg = {"type": "int8", "calibration_samples": 8, "latency_batch": 2, "latency_repeats": 1}
    res = run_int8_method(
        "int8",
        cfg,
        model,
        train,
        test,
        CHANNELS,
        seed=5,
        int8_path=path,
        extra_sets={"first": (test[0][:2], test[1][:2])},
        task=TASK,
        torch_int8_path=tmp_path / "model.int8.pt",
        arch=ARCH,
    )
    m = res.metrics
    # the same network quantized in PyTorch (fbgemm), from the same calibration patches
    assert m["int8"]["torch_int8"] == "written"
    assert abs(m["torch_int8_accuracy"] - m["fp32_accuracy"]) <= 0.05
    assert m["torch_int8_file_bytes"] == (tmp_path / "model.int8.pt").stat().st_size
    assert m["latency_torch_int8_s"] > 0 and "torch_int8" in res.details.columns
    qmodel, _, _ = torch_int8.load(tmp_path / "model.int8.pt")
    with torch.inference_mode():
        q = qmodel(torch.from_numpy(test[0])).numpy()
    assert np.abs(q - logits(model, test[0])).mean() < 0.1 * logits(model, test[0]).std()
    assert m["int8"]["calibration_samples"] == 8
    assert m["int8"]["runtime_ops"]["QLinearConv"] == 7
    engine = OrtEngine(path, activation=TASK.activation)
    proba = engine.predict_proba(test[0])
    assert proba.shape == test[1].shape
    expected = TASK.metrics(test[1], proba, CHANNELS)
    for key in ("accuracy", "balanced_accuracy", "acc_z", "acc_y", "acc_x"):
        assert m[key] == pytest.approx(expected[key], abs=1e-12), key
    assert "mcc" not in m and "fp32_mcc" not in m
    assert 0.0 <= m["accuracy"] <= 1.0
    assert (
        m["fp32_accuracy"]
        == TASK.metrics(test[1], predict_proba(model, test[0], task=TASK), CHANNELS)["accuracy"]
    )
    assert m["engines"]["ort_int8"] == {
        "accuracy": m["accuracy"],
        "balanced_accuracy": m["balanced_accuracy"],
    }
    # int8 close to fp32
    fp32 = logits(model, test[0])
    int8 = OrtEngine(path, activation="none").predict_logits(test[0])
    assert np.abs(int8 - fp32).mean() < 0.1 * fp32.std()
    assert m["agreement_fp32"] >= 0.95 and abs(m["accuracy_delta"]) <= 0.05
    assert m["fpr_first"] == pytest.approx(error_rate(TASK, test[1][:2], proba[:2]))
    assert "ups.0" not in m["int8"]["unmatched_layers"]
    assert "balanced_accuracy" in set(res.details["item"])


def test_dense_training_subsets_are_random_draws(unet):
    """auto_search's trial subsets: a seeded draw of inputs (no per-class shares of voxels)."""
    model, train, val, test = unet
    ctx = registry.Context(
        "s", {"type": "mixed"}, model, ARCH, train, val, test, CHANNELS, FT, 1, LOG, task=TASK
    )
    x, y = ctx.train_subset(3, "trial_samples")
    assert x.shape == (3, *train[0].shape[1:]) and y.shape == (3, *train[1].shape[1:])
    rows = [int(np.flatnonzero((train[0] == xi).all(axis=(1, 2, 3, 4)))[0]) for xi in x]
    assert rows == sorted(set(rows))
    assert ctx.train_subset(3, "trial_samples")[0].tobytes() == x.tobytes()
