"""Ternary (ttq, attq, dorefa) and pruning (q_then_p_iter, p_then_q_iter, p_then_q_epochs) method
types on a tiny SweepNet and a small viral CNN; compression metrics on every variant; bit accounting
of ternary and pruned layers; packed round trips; schema and default-config entries."""

import copy
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from quantscan import config as qconfig
from quantscan.apps.sweeps import settings as sweeps_settings
from quantscan.apps.sweeps.compress_presets import LAYER_PRESETS
from quantscan.compress import methods
from quantscan.compress.cost import bits_per_layer, model_bits, weight_bits
from quantscan.compress.metrics import compression_report, effective_weights
from quantscan.compress.prune import GRID_BITS, make_schedule, weight_layers
from quantscan.compress.ternary import DoReFaActivation, ternarize_model, ternary_layers
from quantscan.errors import ConfigError
from quantscan.export.packed import load_packed, save_packed
from quantscan.models import SweepNet, build_model
from quantscan.summary import COLUMNS
from quantscan.train import TrainConfig, fit, predict_proba

ARCH = {"name": "sweepnet", "n_classes": 2, "filters": 4, "se_ratio": 2}
CLASSES = ["neutral", "sweep"]
FT = TrainConfig(epochs=1, batch_size=16, learning_rate=0.01, patience=1)
LOG = logging.getLogger("test_compress_methods_more")
METRIC_KEYS = ("density", "srqw", "cr_g", "cr_g_q", "ec_g", "nops", "nops_x_bits", "weights_mbit")
PRUNING = ["q_then_p_iter", "p_then_q_iter", "p_then_q_epochs"]
ROOT = Path(__file__).resolve().parents[3]


def run(tiny_sweepnet, name, cfg, finetune=FT, arch=ARCH, seed=11):
    model, train, val, test = tiny_sweepnet
    return methods.run_method(
        name,
        cfg,
        model,
        arch,
        train,
        val,
        test,
        CLASSES,
        finetune,
        seed,
        LOG,
        layer_presets=LAYER_PRESETS,
    )


def hand_bits(model) -> int:
    """Every weight at its layer's bits (ternary: .bits, pruned: grid_bits), every bias at 32."""
    total = 0
    for name, m in weight_layers(model).items():
        bits = m.bits if name in ternary_layers(model) else getattr(m, GRID_BITS, None) or 32
        total += m.weight.numel() * bits + (0 if m.bias is None else 32 * m.bias.numel())
    return total


def check_metrics(v, fp32_nops):
    """The compression metrics against independent counts on the variant's deployed weights."""
    m = v.metrics
    assert set(METRIC_KEYS) <= set(m)
    weights = effective_weights(v.model)
    bits = weight_bits(v.model)
    nnz = {n: int(torch.count_nonzero(w)) for n, w in weights.items()}
    total = sum(w.numel() for w in weights.values())
    assert m["density"] == pytest.approx(sum(nnz.values()) / total)
    assert m["weights_mbit"] == pytest.approx(sum(nnz[n] * bits[n] for n in nnz) / 1e6)
    quantized = [n for n in weights if bits[n] < 32]
    zeros = sum(weights[n].numel() - nnz[n] for n in quantized)
    assert m["srqw"] == pytest.approx(zeros / sum(weights[n].numel() for n in quantized))
    fp32_nbits = 32 * total
    assert m["cr_g"] == pytest.approx(1 - sum(nnz[n] * bits[n] for n in nnz) / fp32_nbits)
    assert 0 < m["cr_g"] < 1 and 0 < m["cr_g_q"] <= 1 and 0 < m["ec_g"] < 1
    assert 0 < m["nops"] <= fp32_nops and m["nops_x_bits"] < 32 * fp32_nops


def check_packed(v, x, tmp_path, fp32_model, arch=ARCH):
    """Exact round trip and a file smaller than the fp32 one; the loaded model keeps its bits."""
    size = save_packed(v.model, tmp_path / "v.qsp", arch)
    fp32_size = save_packed(fp32_model, tmp_path / "fp32.qsp", arch)
    loaded, _ = load_packed(tmp_path / "v.qsp")
    assert np.array_equal(predict_proba(v.model, x), predict_proba(loaded, x))
    assert model_bits(loaded) == model_bits(v.model)
    assert size < fp32_size
    return size, fp32_size


# --------------------------------------------------------------------------------------------------
# ternary / binary


@pytest.mark.parametrize(
    ("type_name", "cfg", "max_values"),
    [
        ("ttq", {}, 3),
        ("attq", {"t_min": -0.5, "t_max": 0.5}, 3),
        ("dorefa", {"layers": "all"}, 2),
    ],
)
def test_ternary_types(tiny_sweepnet, tmp_path, type_name, cfg, max_values):
    res = run(tiny_sweepnet, f"{type_name}_run", {"type": type_name, **cfg})
    fp32 = tiny_sweepnet[0]
    fp32_bits = model_bits(fp32)
    assert len(res.variants) == 1 and res.primary is res.variants[0]
    v = res.primary
    assert v.name == f"{type_name}_run" and v.epochs == 1
    layers = ternary_layers(v.model)
    expected = list(weight_layers(fp32))
    assert list(layers) == (expected if cfg.get("layers") == "all" else expected[1:-1])
    for name, layer in layers.items():
        assert torch.unique(layer.effective_weight()).numel() <= max_values, name
    assert v.metrics["model_bits"] == model_bits(v.model) == hand_bits(v.model) < fp32_bits
    assert v.metrics["size_pct"] == pytest.approx(100 * v.metrics["model_bits"] / fp32_bits)
    assert all(f"{n}={layers[n].bits}/32" in v.metrics["bits_per_layer"] for n in layers)
    fp32_nops = compression_report(fp32, torch.zeros(1, 1, 8, 8))["nops"]
    check_metrics(v, fp32_nops)
    if type_name == "dorefa":
        assert v.metrics["density"] == 1.0 and v.metrics["srqw"] == 0.0  # binary: never zero
    # details: one row per weight layer with what the notes print; the paste block reproduces it
    d = res.details.set_index("layer")
    assert list(d.index) == expected and d.quantized.sum() == len(layers)
    assert (d.loc[list(layers), "bits"] == (1 if type_name == "dorefa" else 2)).all()
    block = res.notes.split("retrain this configuration:\n", 1)[1]
    ((name, entry),) = yaml.safe_load(block).items()
    assert name == f"{type_name}_run_copy" and entry["layers"] == list(layers)
    assert methods.normalize_method(entry)["type"] == type_name
    check_packed(v, tiny_sweepnet[3][0], tmp_path, fp32)
    res.plot(tmp_path / "t.png", "t")
    assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"


def test_attq_hessian_layers_are_reported_and_seeded(tiny_sweepnet, tmp_path):
    cfg = {
        "type": "attq",
        "layers": "hessian",
        "hessian": {"fraction": 0.5, "samples": 16, "max_iter": 6},
    }
    res = run(tiny_sweepnet, "attq", cfg)
    d = res.details.set_index("layer")
    assert d.trace.notna().all() and (d.trace_samples >= 2).all()
    # the selection: ascending trace per weight until half of the weights
    order = d.sort_values(["hessian_rank"])
    assert order.trace_per_weight.is_monotonic_increasing
    assert list(order.hessian_rank) == list(range(1, len(d) + 1))
    n = d.n_weights.astype(int)
    chosen, taken = [], 0
    for layer in order.index:
        if taken < 0.5 * n.sum():
            chosen.append(layer)
            taken += n[layer]
    assert list(ternary_layers(res.primary.model)) == [x for x in d.index if x in chosen]
    assert d.hessian_selected.astype(bool).equals(d.quantized.astype(bool))
    assert res.primary.info["selection"] == "hessian"
    assert "# Hessian traces (Hutchinson, 16 training inputs" in res.notes
    for layer in d.index:
        assert layer in res.notes.split("# Hessian traces", 1)[1]
    again = run(tiny_sweepnet, "attq", cfg)
    assert again.details.trace.equals(res.details.trace)  # seeded inputs and probes
    res.plot(tmp_path / "h.png", "h")
    assert (tmp_path / "h.png").stat().st_size > 1000


def test_dorefa_activation_bits_on_every_relu(tiny_sweepnet, tmp_path):
    res = run(tiny_sweepnet, "dorefa", {"type": "dorefa", "k": 2, "activation_bits": 2})
    v = res.primary
    relus = [n for n, m in tiny_sweepnet[0].named_modules() if isinstance(m, torch.nn.ReLU)]
    acts = [n for n, m in v.model.named_modules() if isinstance(m, DoReFaActivation)]
    assert acts == relus and len(acts) == 5
    assert all(f"{a}=2" in v.metrics["bits_per_layer"].split(",") for a in acts)
    for layer in ternary_layers(v.model).values():
        assert torch.unique(layer.effective_weight()).numel() <= 4  # k = 2: four levels
    assert res.details.layer.tolist()[-len(acts) :] == acts
    check_packed(v, tiny_sweepnet[3][0], tmp_path, tiny_sweepnet[0])


def test_ternary_errors_name_the_method(tiny_sweepnet):
    with pytest.raises(ConfigError, match=r"method 'attq' \(attq\).*t_min <= t_max"):
        run(tiny_sweepnet, "attq", {"type": "attq", "t_min": 1.0, "t_max": 0.0})
    with pytest.raises(ConfigError, match="method 'ttq'.*conv9"):
        run(tiny_sweepnet, "ttq", {"type": "ttq", "layers": ["conv9"]})


# --------------------------------------------------------------------------------------------------
# pruning + quantization


@pytest.mark.parametrize("type_name", PRUNING)
def test_pruning_types(tiny_sweepnet, tmp_path, type_name):
    cfg = {"type": type_name, "bits": 4, "gammas": [0.5, 1.5], "tolerance": 0.05}
    res = run(tiny_sweepnet, type_name, cfg, finetune=TrainConfig(2, 16, 0.01, 2))
    fp32 = tiny_sweepnet[0]
    names = [v.name for v in res.variants]
    assert names == [f"{type_name}_g0.5", f"{type_name}_g1.5"]
    assert sum(v.primary for v in res.variants) == 1
    fp32_nops = compression_report(fp32, torch.zeros(1, 1, 8, 8))["nops"]
    for v in res.variants:
        m = v.metrics
        assert m["density"] < 1 and v.info["bits"] == 4 and v.epochs == 2
        assert m["model_bits"] == model_bits(v.model) == hand_bits(v.model) < model_bits(fp32)
        assert all(f"{n}=4/32" in m["bits_per_layer"] for n in weight_layers(fp32))
        check_metrics(v, fp32_nops)
        for name, layer in weight_layers(v.model).items():
            # on a 4-bit grid: at most 2^4 values (p_then_q_iter: 2^4 non-zero + 0)
            assert torch.unique(layer.weight).numel() <= 17, name
    low, high = res.variants
    assert high.metrics["density"] < low.metrics["density"]
    assert high.metrics["weights_mbit"] < low.metrics["weights_mbit"]
    # the primary: sparsest within tolerance on validation, else the most accurate
    d = res.details.set_index("variant")
    fp32_val = d.loc["fp32", "val_accuracy"]
    ok = [n for n in names if d.loc[n, "val_accuracy"] >= fp32_val - 0.05 - 1e-12]
    expected = (
        min(ok, key=lambda n: d.loc[n, "density"]) if ok else d.loc[names].val_accuracy.idxmax()
    )
    assert res.primary.name == expected
    assert list(d.loc[names, "gamma"]) == [0.5, 1.5]
    assert (d.loc[names, "within_tolerance"].astype(bool) == [n in ok for n in names]).all()
    sizes = [check_packed(v, tiny_sweepnet[3][0], tmp_path, fp32)[0] for v in res.variants]
    assert sizes[1] < sizes[0]  # sparser, smaller file (the tiny model's header is most of it)
    block = res.notes.split("retrain this configuration:\n", 1)[1]
    ((_, entry),) = yaml.safe_load(block).items()
    assert entry["gammas"] == [res.primary.info["gamma"]] and entry["bits"] == 4
    methods.normalize_method(entry)
    res.plot(tmp_path / "p.png", "p")
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_pruned_zeros_persist_through_fit_and_finalize(tiny_sweepnet):
    """fit restores its best epoch; the finalized weights keep every mask of the schedule."""
    model, train, val, _ = tiny_sweepnet
    model = copy.deepcopy(model)
    schedule = make_schedule("q_then_p_iter", 1.0, 8)
    fit(model, *train, *val, TrainConfig(3, 16, 0.01, 1), 3, step=schedule.step)
    schedule.finalize(model)
    for name, layer in weight_layers(model).items():
        assert torch.all(layer.weight[~schedule.masks[name]] == 0), name
        assert getattr(layer, GRID_BITS) == 8


def test_sparsest_within_falls_back_to_the_most_accurate():
    def v(name, density, val, ok):
        return methods.Variant(
            name, None, {}, {"density": density}, val, 1, 0.0, {"within_tolerance": ok}
        )

    a, b, c = v("a", 0.5, 0.8, True), v("b", 0.2, 0.7, True), v("c", 0.1, 0.9, False)
    assert methods.sparsest_within([a, b, c]) == (b, True)
    a.info["within_tolerance"] = b.info["within_tolerance"] = False
    assert methods.sparsest_within([a, b, c]) == (c, False)
    assert methods.sparsest_within([a, b]) == (a, False)


def test_viral_cnn_through_q_then_p_iter(tmp_path):
    arch = {"name": "viralcnn", "n_classes": 2, "length": 64, "dropout": 0.0}
    torch.manual_seed(3)
    model = build_model(arch).eval()

    def split(n, seed):
        rng = np.random.default_rng(seed)
        y = (np.arange(n) % 2).astype(np.int64)
        x = np.zeros((n, 5, 64), np.float32)
        x[np.arange(n)[:, None], rng.integers(0, 4, (n, 64)), np.arange(64)] = 1.0
        x[y == 1, :, 20:30] = 0.0
        x[y == 1, 2, 20:30] = 1.0  # class 1: a G run
        return x, y

    data = (model, split(32, 1), split(16, 2), split(16, 3))
    cfg = {"type": "q_then_p_iter", "gammas": [1.0], "bits": 8, "layers": ["conv2", "dense1"]}
    res = run(data, "q_then_p_iter", cfg, TrainConfig(1, 16, 0.001, 1), arch)
    (v,) = res.variants
    assert v.primary and v.name == "q_then_p_iter_g1.0"
    layers = weight_layers(v.model)
    for name in ("conv2", "dense1"):
        assert getattr(layers[name], GRID_BITS) == 8
        assert 0 < int(torch.count_nonzero(layers[name].weight)) < layers[name].weight.numel()
    assert getattr(layers["conv1"], GRID_BITS, None) is None  # not listed: fp32, dense
    assert torch.count_nonzero(layers["conv1"].weight) == layers["conv1"].weight.numel()
    assert "conv2=8,conv3=32" in v.metrics["bits_per_layer"]
    assert v.metrics["model_bits"] == model_bits(v.model) < model_bits(model)
    assert v.metrics["density"] < 1 and v.metrics["nops"] > 0
    size, fp32_size = check_packed(v, data[3][0], tmp_path, model, arch)
    assert size < 0.6 * fp32_size  # conv2 and dense1 hold most of the weights
    with pytest.raises(ConfigError, match="'layers'"):
        run(data, "q_then_p_iter", {**cfg, "layers": ["conv1_bn"]}, FT, arch)


# --------------------------------------------------------------------------------------------------
# every method type gets the metrics; bit accounting; schema and config


def test_mixed_variants_carry_the_compression_metrics(tiny_sweepnet):
    res = run(tiny_sweepnet, "mixed", {"type": "mixed"})
    fp32_nops = compression_report(tiny_sweepnet[0], torch.zeros(1, 1, 8, 8))["nops"]
    check_metrics(res.primary, fp32_nops)
    assert "# density " in res.notes


def test_cost_counts_ternary_and_grid_layers():
    net = SweepNet(filters=4, se_ratio=2)
    t = ternarize_model(
        net, "dorefa", ["sweepnet_second_conv"], k=3, activations={"sweepnet_first_activation": 2}
    )
    conv = net.sweepnet_second_conv
    assert model_bits(t) == model_bits(net) - conv.weight.numel() * (32 - 3)
    assert bits_per_layer(t).startswith(
        "sweepnet_first_conv=32,sweepnet_first_activation=2,sweepnet_second_conv=3/32,"
    )
    assert weight_bits(t)["sweepnet_second_conv"] == 3
    schedule = make_schedule("p_then_q_iter", 1.0, 6, ["sweepnet_first_dense"])
    schedule.finalize(net)
    dense = net.sweepnet_first_dense
    assert getattr(dense, GRID_BITS) == 6 and weight_bits(net)["sweepnet_first_dense"] == 6
    assert (
        model_bits(net) == model_bits(SweepNet(filters=4, se_ratio=2)) - dense.weight.numel() * 26
    )


def test_schema_defaults_and_rejections():
    ttq = methods.normalize_method({"type": "ttq"})
    assert (ttq["t"], ttq["init"], ttq["layers"]) == (0.05, "mean", "default")
    assert ttq["hessian"] == {"fraction": 0.9, "samples": 64, "max_iter": 50, "tol": 0.001}
    attq = methods.normalize_method({"type": "attq"})
    assert (attq["t_min"], attq["t_max"]) == (-1.0, 0.5)
    dorefa = methods.normalize_method({"type": "dorefa"})
    assert (dorefa["k"], dorefa["activation_bits"]) == (1, None)
    for t in PRUNING:
        cfg = methods.normalize_method({"type": t})
        assert cfg["bits"] == 8 and cfg["gammas"] == [0.5, 0.75, 1.0, 1.25, 1.5]
        assert cfg["layers"] is None and cfg["tolerance"] == 0.01
    bad = [
        {"type": "ttq", "gammas": [1.0]},
        {"type": "ttq", "t": 1.0},
        {"type": "ttq", "layers": "first"},
        {"type": "attq", "hessian": {"fraction": 1.5}},
        {"type": "dorefa", "k": 0},
        {"type": "q_then_p_iter", "bits": 1},
        {"type": "p_then_q_iter", "gammas": []},
        {"type": "p_then_q_epochs", "hessian": {}},
    ]
    for cfg in bad:
        with pytest.raises(ConfigError):
            methods.normalize_method(cfg)


def test_default_config_runs_the_new_types_on_one_scenario():
    cfg = qconfig.validate(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()))
    sweeps = cfg["apps"]["sweeps"]
    types = {"ttq", "attq", "dorefa", *PRUNING}
    new = {n: m for n, m in sweeps["compress"]["methods"].items() if m["type"] in types}
    assert {m["type"] for m in new.values()} == types
    jobs = [j for j in sweeps_settings.compress_jobs(sweeps) if j[1] in new]
    assert sorted(jobs) == sorted(("severe_bottleneck", n) for n in new)
    for m in new.values():
        assert m["finetune"]["epochs"] <= 2
    assert any(m["type"] == "attq" and m["layers"] == "hessian" for m in new.values())
    full = yaml.safe_load((ROOT / "config" / "presets" / "full.yaml").read_text())
    merged = qconfig.validate(
        _merge(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()), full)
    )
    methods = merged["apps"]["sweeps"]["compress"]["methods"]
    for n in new:
        if methods[n]["type"] in PRUNING:
            assert methods[n]["gammas"] == [0.5, 0.75, 1.0, 1.25, 1.5]


def _merge(base, over):
    for k, v in over.items():
        base[k] = _merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return base


def test_summary_columns_list_the_compression_metrics():
    cols = COLUMNS[COLUMNS.index("bits_per_layer") + 1 :]
    new = ["density", "srqw", "cr_g", "ec_g", "nops", "nops_x_bits", "weights_mbit"]
    assert [c for c in cols if c in new] == new


def test_deployed_metrics_of_an_fp32_model(tiny_sweepnet):
    """The fp32 summary rows get the same columns: dense 32-bit weights, no quantized layers."""
    model, _, _, test = tiny_sweepnet
    x = torch.from_numpy(test[0][:1]).float()
    m = methods.deployed_metrics(model, x)
    n_weights = sum(w.numel() for w in effective_weights(model).values())
    nonzero = sum(int((w != 0).sum()) for w in effective_weights(model).values())
    assert m["density"] == pytest.approx(nonzero / n_weights)
    assert m["weights_mbit"] == pytest.approx(nonzero * 32 / 1e6)
    assert m["cr_g"] == pytest.approx(0.0, abs=1e-12)
    assert np.isnan(m["srqw"])
    assert m["nops"] > 0 and m["nops_x_bits"] == pytest.approx(32 * m["nops"])
