"""Compression method runner: every method type on a tiny SweepNet, the forgiving factor, configuration
helpers, the paste-able config round trip, seeded search reproducibility, config fan-out and summary."""

import copy
import json
import logging
import math

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from quantscan import config as qconfig
from quantscan.apps.sweeps import settings as sweeps_settings
from quantscan.apps.sweeps.compress_presets import LAYER_PRESETS, SEED000_TABLE6
from quantscan.compress import methods
from quantscan.compress.cost import bits_per_layer, model_bits
from quantscan.compress.layers import QuantizedWeights, layer_config_of, quantize_model
from quantscan.compress.methods import registry
from quantscan.errors import ConfigError, InputFormatError
from quantscan.export.packed import load_packed, save_packed
from quantscan.models import SweepNet
from quantscan.summary import COLUMNS, summary_table
from quantscan.train import TrainConfig, predict_proba

ARCH = {"name": "sweepnet", "n_classes": 2, "filters": 4, "se_ratio": 2}
CLASSES = ["neutral", "sweep"]
FT = TrainConfig(epochs=1, batch_size=16, learning_rate=0.01, patience=1)
LOG = logging.getLogger("test_compress_methods")
WEIGHTS = [name for name, _ in SweepNet.LAYERS]
SE_ACTS = ["se_block_first_activation", "se_block_second_activation"]


def run(tiny_sweepnet, name, cfg, seed=11, extra_eval=None, finetune=FT):
    model, train, val, test = tiny_sweepnet
    return methods.run_method(
        name,
        cfg,
        model,
        ARCH,
        train,
        val,
        test,
        CLASSES,
        finetune,
        seed,
        LOG,
        extra_eval,
        layer_presets=LAYER_PRESETS,
    )


def check_variants(result, type_name, fp32_bits):
    primary = [v for v in result.variants if v.primary]
    assert len(primary) == 1 and result.primary is primary[0]
    names = [v.name for v in result.variants]
    assert len(set(names)) == len(names) and all(n.startswith(type_name) for n in names)
    for v in result.variants:
        m = v.metrics
        assert 0 <= m["accuracy"] <= 1 and abs(m["mcc"]) <= 1 + 1e-9 and m["n"] == 24
        assert {"acc_neutral", "acc_sweep", "confusion_matrix"} <= set(m)
        assert m["model_bits"] == model_bits(v.model)
        assert m["size_pct"] == pytest.approx(100 * m["model_bits"] / fp32_bits)
        assert m["bits_per_layer"] == bits_per_layer(v.model)
        assert layer_config_of(v.model) == v.layer_config
        assert 0 <= v.val_accuracy <= 1
    assert len(result.details) >= 1 and result.notes.strip()


def check_packed(result, x):
    """The primary variant survives pack/unpack bit for bit (the workflow script asserts the same)."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        save_packed(result.primary.model, Path(tmp) / "m.qsp", ARCH)
        loaded, header = load_packed(Path(tmp) / "m.qsp")
    assert header["layer_config"] == result.primary.layer_config
    assert np.array_equal(predict_proba(result.primary.model, x), predict_proba(loaded, x))


# --------------------------------------------------------------------------------------------------
# forgiving factor (compression.md section 2; AutoQKeras defaults delta_p = delta_n = 8, rate 2)


@pytest.mark.parametrize(
    ("trial", "factor"), [(50, 1.08), (25, 1.16), (200, 0.92), (100, 1.0), (12.5, 1.24)]
)
def test_forgiving_score_hand_values(trial, factor):
    assert methods.forgiving_score(1.0, trial, 100) == pytest.approx(factor)
    assert methods.forgiving_score(0.5, trial, 100) == pytest.approx(0.5 * factor)


def test_forgiving_delta_sides_and_rate():
    # smaller than the reference uses delta_p, larger delta_n; rate 4 = per quartering
    assert methods.forgiving_delta(50, 100, delta_p=10, delta_n=2) == pytest.approx(0.10)
    assert methods.forgiving_delta(200, 100, delta_p=10, delta_n=2) == pytest.approx(-0.02)
    assert methods.forgiving_delta(25, 100, rate=4) == pytest.approx(0.08)
    with pytest.raises(ValueError):
        methods.forgiving_delta(0, 100)


def test_stats_lines_match_seed002_printouts():
    # Chen's FC-AutoEncoder and EfficientNet-B0 stats (delta_p = delta_n = 5 percent)
    text = methods.stats_lines(1259512, 4321016, 5, 5, 2)
    assert text.splitlines()[0] == (
        "stats: delta_p=0.05 delta_n=0.05 rate=2.0 trial_size=1259512 reference_size=4321016"
    )
    assert "delta=8.89%" in text and "total=1259512/4321016 (-70.85%)" in text
    assert "delta=4.28%" in methods.stats_lines(61175468, 110699218, 5, 5, 2)
    # stress scales the reference, not the percentages
    text = methods.stats_lines(100, 310, 8, 8, 2, stress=2.0)
    assert "reference_size=620" in text and "delta=21.06%" in text and "(-67.74%)" in text


# --------------------------------------------------------------------------------------------------
# configurations


def test_specs_by_bit_width():
    assert methods.weight_spec(1) == "binary(alpha='auto')"
    assert methods.weight_spec(4, "auto_po2") == "quantized_bits(4, 0, 1, alpha='auto_po2')"
    assert methods.weight_spec(3, None) == "quantized_bits(3, 0, 1)"
    assert methods.weight_spec(32) is None
    assert methods.activation_spec("relu", 1) == "quantized_relu(1)"
    assert methods.activation_spec("sigmoid", 2) == "quantized_sigmoid(2)"
    assert methods.activation_spec("relu", 32) is None
    with pytest.raises(ConfigError):
        methods.activation_spec(None, 4)
    with pytest.raises(ConfigError):
        methods.weight_spec(0)


def test_with_alpha_rewrites_only_scaled_weight_quantizers():
    assert methods.with_alpha("quantized_bits(2, 0, 1, alpha='auto')", "auto_po2") == (
        "quantized_bits(2, 0, 1, alpha='auto_po2')"
    )
    assert methods.with_alpha("binary(alpha='auto_po2')", "auto") == "binary(alpha='auto')"
    assert methods.with_alpha("quantized_bits(4)", "auto_po2") == "quantized_bits(4, 0, 0)"
    assert methods.with_alpha("quantized_relu(1)", "auto_po2") == "quantized_relu(1, 0)"
    assert methods.with_alpha({"kernel": "binary(alpha='auto')", "bias": None}, "auto_po2") == {
        "kernel": "binary(alpha='auto_po2')",
        "bias": None,
    }


def test_resolve_layers_preset_bits_and_alpha():
    net = SweepNet()
    table6 = methods.resolve_layers("seed000_table6", net, "auto", LAYER_PRESETS)
    assert model_bits(quantize_model(net, table6)) == 19_238
    po2 = methods.resolve_layers("seed000_table6", net, "auto_po2", LAYER_PRESETS)
    assert po2["sweepnet_first_conv"]["kernel"] == "quantized_bits(2, 0, 1, alpha='auto_po2')"
    assert po2["se_block_first_conv"]["kernel"] == "binary(alpha='auto_po2')"
    assert po2["se_block_second_activation"] == SEED000_TABLE6["se_block_second_activation"]
    uniform = methods.resolve_layers(4, net)
    assert set(uniform) == set(WEIGHTS) and model_bits(quantize_model(net, uniform)) == 4 * 9_700
    mixed = methods.resolve_layers({"sweepnet_first_conv": 1, "se_block_first_activation": 2}, net)
    assert mixed["se_block_first_activation"] == "quantized_relu(2, 0)"
    with pytest.raises(ConfigError, match="unknown layer"):
        methods.resolve_layers({"conv9": 2}, net)
    with pytest.raises(ConfigError, match="preset"):
        methods.resolve_layers("table7", net, presets=LAYER_PRESETS)
    # the engine defines no presets: without the caller's, a preset name is unknown
    with pytest.raises(ConfigError, match="unknown layer preset 'seed000_table6'"):
        methods.resolve_layers("seed000_table6", net)


def test_unknown_layer_preset_names_the_method_and_the_known_presets(tiny_sweepnet):
    for cfg in (
        {"type": "mixed", "layers": "table7"},
        {"type": "uniform", "bits": [2], "mixed": "table7"},
        {"type": "auto_search", "start_with": [4, "table7"]},
        {"type": "po2_vs_auto", "configurations": {"a": 2, "b": "table7"}},
    ):
        msg = r"method 'm7': unknown layer preset 'table7'; known: seed000_table6"
        with pytest.raises(ConfigError, match=msg):
            run(tiny_sweepnet, "m7", cfg)
        with pytest.raises(ConfigError, match=msg):
            methods.check_layer_presets("m7", cfg, LAYER_PRESETS)
    assert methods.check_layer_presets("m", {"type": "mixed"}, LAYER_PRESETS)["layers"] == (
        "seed000_table6"
    )
    with pytest.raises(ConfigError, match=r"known: none"):
        methods.check_layer_presets("m", {"type": "mixed"}, {})
    # ternary 'layers' values are not presets
    methods.check_layer_presets("t", {"type": "attq", "layers": "hessian"}, {})


def test_normalize_method_fills_type_defaults_and_rejects_foreign_keys():
    cfg = methods.normalize_method({"type": "auto_search"})
    assert (cfg["delta_p"], cfg["delta_n"], cfg["rate"], cfg["stress"]) == (8, 8, 2, 1)
    assert "layers" in cfg and "bits" not in cfg
    assert methods.normalize_method({"type": "mixed"})["layers"] == "seed000_table6"
    with pytest.raises(ConfigError, match="n_trials"):
        methods.normalize_method({"type": "mixed", "n_trials": 3})
    with pytest.raises(ConfigError):
        methods.normalize_method({"type": "ternary_magic"})


# --------------------------------------------------------------------------------------------------
# method types


def test_mixed_table6_and_extra_eval(tiny_sweepnet):
    x_test = tiny_sweepnet[3][0]
    seen = []

    def extra(m):
        seen.append(m)
        return {"fpr_probe": 0.25}

    res = run(tiny_sweepnet, "mixed_table6", {"type": "mixed"}, extra_eval=extra)
    fp32_bits = model_bits(tiny_sweepnet[0])
    check_variants(res, "mixed", fp32_bits)
    v = res.primary
    assert v.name == "mixed_table6" and v.epochs == 1 and v.metrics["fpr_probe"] == 0.25
    assert v.layer_config == methods.resolve_layers(
        "seed000_table6", tiny_sweepnet[0], "auto", LAYER_PRESETS
    )
    assert "se_block_first_conv=1" in v.metrics["bits_per_layer"]
    assert "se_block_second_activation=1" in v.metrics["bits_per_layer"]
    total = res.details[res.details.name == "total"].total_bits.iloc[0]
    assert int(total) == v.metrics["model_bits"] < fp32_bits / 10
    # the fp32 model was not modified (quantize_model works on a copy)
    assert not any(isinstance(m, QuantizedWeights) for m in tiny_sweepnet[0].modules())
    check_packed(res, x_test)
    assert run(tiny_sweepnet, "table6", {"type": "mixed"}).primary.name == "mixed_table6"


def test_layer_sensitivity_scan(tiny_sweepnet, tmp_path):
    layers = ["sweepnet_first_conv", "se_block_second_conv", "se_block_first_activation"]
    cfg = {"type": "layer_sensitivity", "bits": [1, 4, 32], "layers": layers, "scan_epochs": 0}
    res = run(tiny_sweepnet, "layer_sensitivity", cfg)
    fp32_bits = model_bits(tiny_sweepnet[0])
    check_variants(res, "layer_sensitivity", fp32_bits)
    scan = res.details[res.details.variant.str.endswith("bit")]
    assert len(scan) == 9 and set(scan.layer) == set(layers)
    modules = dict(tiny_sweepnet[0].named_modules())
    for _, row in scan.iterrows():
        quantized = row.bits < 32 and row.kind == "weight"
        n = sum(p.numel() for p in modules[row.layer].parameters())
        assert row.model_bits == fp32_bits - (n * (32 - row.bits) if quantized else 0)
    full = scan[scan.bits == 32]
    assert (full.accuracy == res.details.accuracy.iloc[0]).all()  # = the fp32 reference row
    assert res.primary.name == "layer_sensitivity_combined"
    res.plot(tmp_path / "fig2.png", "t")
    assert (tmp_path / "fig2.png").read_bytes()[:4] == b"\x89PNG"


def test_uniform_scan_flat_and_mixed(tiny_sweepnet, tmp_path):
    cfg = {"type": "uniform", "bits": [2, 8, 32], "flat_bits": [4, 16], "scan_epochs": 0}
    res = run(tiny_sweepnet, "uniform", cfg)
    check_variants(res, "uniform", model_bits(tiny_sweepnet[0]))
    d = res.details.set_index("variant")
    for b in (2, 8, 32):
        assert d.loc[f"uniform_scan_{b}bit", "size_pct"] == pytest.approx(100 * b / 32)
    assert d.loc["uniform_flat_16bit_po2", "size_pct"] == pytest.approx(50)
    assert "alpha='auto_po2'" in json.dumps(res.variants[3].layer_config)
    assert d.loc["uniform_mixed_po2", "model_bits"] == model_bits(
        quantize_model(
            tiny_sweepnet[0],
            methods.resolve_layers("seed000_table6", tiny_sweepnet[0], presets=LAYER_PRESETS),
        )
    )
    b = res.primary.info["bits"]
    assert res.primary.name == f"uniform_{b}bit" and b in (2, 8, 32)
    # the primary is the smallest width whose validation accuracy is within tolerance of fp32
    fp32_val = d.loc["fp32", "val_accuracy"]
    ok = [x for x in (2, 8, 32) if d.loc[f"uniform_scan_{x}bit", "val_accuracy"] >= fp32_val - 0.02]
    assert b == (ok[0] if ok else 32)
    res.plot(tmp_path / "fig3.png", "t")
    assert (tmp_path / "fig3.png").stat().st_size > 1000


def test_primary_keeps_scan_model_when_fine_tuning_hurts(tiny_sweepnet):
    # a learning rate that wrecks the model: the scanned (post-training) model must be kept
    cfg = {"type": "uniform", "bits": [32], "flat_bits": [], "mixed": None, "scan_epochs": 0}
    wreck = TrainConfig(epochs=1, batch_size=8, learning_rate=50.0, patience=1)
    res = run(tiny_sweepnet, "uniform", cfg, finetune=wreck)
    scan, primary = res.variants[0], res.primary
    assert scan.val_accuracy > 0.6  # the fixture model learned something
    assert primary.val_accuracy == scan.val_accuracy and primary.model is scan.model
    assert primary.info["kept"] == "scan model of uniform_scan_32bit"
    assert primary.metrics == scan.metrics and primary.name == "uniform_32bit"


def test_one_bit_rounds(tiny_sweepnet):
    cfg = {
        "type": "one_bit_rounds",
        "layers": ["se_block_first_conv", "sweepnet_first_dense"],
        "activations": SE_ACTS,
        "scan_epochs": 0,
        "tolerance": 1.0,  # everything is tolerated: every round runs
    }
    res = run(tiny_sweepnet, "one_bit_rounds", cfg)
    check_variants(res, "one_bit_rounds", model_bits(tiny_sweepnet[0]))
    names = [v.name for v in res.variants]
    assert names == [
        "one_bit_rounds_base_2bit",
        "one_bit_rounds_1bit_se_block_first_conv",
        "one_bit_rounds_1bit_sweepnet_first_dense",
        "one_bit_rounds_1bit_combined",
        "one_bit_rounds_1bit_act_se_block_first_activation",
        "one_bit_rounds_1bit_act_se_block_second_activation",
        "one_bit_rounds_1bit_act_all",
        "one_bit_rounds_best",
    ]
    single = res.variants[1].metrics["bits_per_layer"].split(",")
    assert "se_block_first_conv=1" in single and "sweepnet_first_dense=2" in single
    act_all = res.variants[6].metrics["bits_per_layer"]
    assert all(f"{a}=1" in act_all for a in SE_ACTS) and "sweepnet_first_dense=1" in act_all
    # fewest bits, then most 1-bit activations: both activations on top of the combined layers
    assert res.primary.layer_config == res.variants[6].layer_config
    with pytest.raises(ConfigError, match="activation modules"):
        run(tiny_sweepnet, "one_bit_rounds", {**cfg, "activations": ["sweepnet_first_conv"]})


def test_auto_search_starts_with_the_given_configurations(tiny_sweepnet):
    cfg = {
        "type": "auto_search",
        "n_trials": 3,
        "trial_epochs": 0,
        "weight_bits": [1, 2, 4],
        "start_with": ["seed000_table6", 4],
    }
    trials = run(tiny_sweepnet, "auto_search", cfg, finetune=TrainConfig(epochs=0)).details
    table6 = {n: 1 if n.startswith("se_block") else 2 for n in WEIGHTS}
    assert trials.loc[0, WEIGHTS].to_dict() == table6
    assert trials.loc[1, WEIGHTS].tolist() == [4] * len(WEIGHTS)
    assert trials.loc[0, "model_bits"] == model_bits(
        quantize_model(tiny_sweepnet[0], {n: methods.weight_spec(b) for n, b in table6.items()})
    )
    # a start configuration outside the searched bit widths is refused, naming the method
    with pytest.raises(ConfigError, match=r"auto_search.start_with: 8 sets bit widths outside"):
        run(tiny_sweepnet, "auto_search", {**cfg, "start_with": [8]})


def test_auto_search_scores_paste_and_reproducibility(tiny_sweepnet, tmp_path):
    cfg = {"type": "auto_search", "n_trials": 4, "trial_epochs": 1, "weight_bits": [1, 2, 8]}
    ft = TrainConfig(epochs=0)
    res = run(tiny_sweepnet, "auto_search", cfg, finetune=ft)
    fp32_bits = model_bits(tiny_sweepnet[0])
    check_variants(res, "auto_search", fp32_bits)
    trials = res.details
    assert len(trials) == 4 and trials.best.sum() == 1
    for _, t in trials.iterrows():
        assert t.score == pytest.approx(
            t.val_accuracy * methods.forgiving_score(1, t.model_bits, fp32_bits)
        )
        config = {n: methods.weight_spec(int(t[n])) for n in WEIGHTS}
        assert t.model_bits == model_bits(quantize_model(tiny_sweepnet[0], config))
    best = trials[trials.best].iloc[0]
    assert best.score == trials.score.max()
    assert res.primary.layer_config == methods.resolve_layers(
        {n: int(best[n]) for n in WEIGHTS}, tiny_sweepnet[0]
    )
    assert "stats: delta_p=0.08 delta_n=0.08 rate=2.0 trial_size=" in res.notes
    # same seed, same search
    again = run(tiny_sweepnet, "auto_search", cfg, finetune=ft)
    assert again.details.drop(columns="seconds").equals(trials.drop(columns="seconds"))
    # the paste-able block is a valid 'mixed' method that rebuilds the configuration exactly
    block = res.notes.split("retrain this configuration:\n", 1)[1]
    pasted = yaml.safe_load(block)
    ((name, entry),) = pasted.items()
    assert name == "mixed_auto_search" and entry["type"] == "mixed"
    full = yaml.safe_load(open(qconfig.SCHEMA.parents[0] / "config.yaml"))
    full["apps"]["sweeps"]["compress"]["methods"] = pasted
    assert qconfig.validate(full)["apps"]["sweeps"]["compress"]["methods"][name]["alpha"] is None
    rebuilt = run(tiny_sweepnet, name, entry, finetune=ft).primary
    assert rebuilt.layer_config == res.primary.layer_config
    assert rebuilt.metrics["model_bits"] == res.primary.metrics["model_bits"]
    res.plot(tmp_path / "search.png", "t")


def test_po2_vs_auto(tiny_sweepnet):
    cfg = {"type": "po2_vs_auto", "configurations": {"table6": "seed000_table6", "u2": 2}}
    res = run(tiny_sweepnet, "po2_vs_auto", cfg)
    check_variants(res, "po2_vs_auto", model_bits(tiny_sweepnet[0]))
    assert [v.name for v in res.variants] == [
        "po2_vs_auto_table6_auto",
        "po2_vs_auto_table6_po2",
        "po2_vs_auto_u2_auto",
        "po2_vs_auto_u2_po2",
    ]
    assert res.primary.name == "po2_vs_auto_table6_po2"
    # po2 scales are exact powers of two, 'auto' ones generally are not
    layer = dict(res.primary.model.named_modules())["sweepnet_second_conv"]
    scale = layer.kernel_quantizer.export(layer.weight).params["scale"]
    assert torch.equal(torch.log2(scale), torch.round(torch.log2(scale)))
    layer = dict(res.variants[0].model.named_modules())["sweepnet_second_conv"]
    scale = layer.kernel_quantizer.export(layer.weight).params["scale"]
    assert not torch.equal(torch.log2(scale), torch.round(torch.log2(scale)))
    check_packed(res, tiny_sweepnet[3][0])


# --------------------------------------------------------------------------------------------------
# config fan-out, summary, bit strings


def _config(**compress):
    cfg = yaml.safe_load(open(qconfig.SCHEMA.parents[0] / "config.yaml"))
    cfg["apps"]["sweeps"]["compress"] = compress
    return cfg


def test_compress_jobs_fan_out_and_errors():
    cfg = _config(
        methods={"a": {"type": "mixed"}, "b": {"type": "uniform", "scenarios": ["constant"]}}
    )
    sweeps, compress = cfg["apps"]["sweeps"], cfg["apps"]["sweeps"]["compress"]
    sweeps["data"]["run"] = ["constant", "hotspot_low", "island_migration"]
    jobs = sweeps_settings.compress_jobs(qconfig.validate(cfg)["apps"]["sweeps"])
    assert jobs == [("constant", "a"), ("hotspot_low", "a"), ("constant", "b")]
    compress["scenarios"] = ["hotspot_low", "severe_bottleneck"]  # not run: skipped
    assert sweeps_settings.compress_jobs(qconfig.validate(cfg)["apps"]["sweeps"]) == [
        ("hotspot_low", "a"),
        ("constant", "b"),
    ]
    compress["scenarios"] = ["nowhere"]
    with pytest.raises(
        ConfigError, match="apps.sweeps.compress.scenarios: unknown scenario 'nowhere'"
    ):
        qconfig.validate(cfg)
    compress["scenarios"] = []
    compress["methods"]["b"]["scenarios"] = ["island_migration"]
    with pytest.raises(
        ConfigError,
        match="apps.sweeps.compress.methods.b.scenarios: 'island_migration' is neutral",
    ):
        qconfig.validate(cfg)
    compress["methods"]["b"] = {"type": "uniform", "n_trials": 3}
    with pytest.raises(ConfigError, match="apps.sweeps.compress.methods.b"):
        qconfig.validate(cfg)


def test_summary_columns_and_duplicates(tmp_path):
    assert COLUMNS[COLUMNS.index("file_bytes") + 1 :][:2] == ["size_pct", "bits_per_layer"]
    paths = []
    for i, (method, size) in enumerate(
        [("fp32", 100.0), ("mixed_table6", 6.2), ("mixed_table6", 6.2)]
    ):
        p = tmp_path / f"{i}.json"
        m = {
            "scenario": "c",
            "method": method,
            "accuracy": 0.5,
            "size_pct": size,
            "layer_config": {},
        }
        p.write_text(json.dumps(m))
        paths.append(p)
    table = summary_table(paths[:2])
    assert table.method.tolist() == ["fp32", "mixed_table6"] and "layer_config" not in table
    with pytest.raises(InputFormatError, match="also come from"):
        summary_table(paths)


def test_bits_per_layer_string():
    q = quantize_model(
        SweepNet(),
        {
            "sweepnet_first_conv": {"kernel": "quantized_bits(4)"},
            **{"se_block_first_activation": "quantized_relu(1)"},
        },
    )
    text = bits_per_layer(q)
    assert text.startswith("sweepnet_first_conv=4/32,sweepnet_second_conv=32,")
    assert "se_block_first_activation=1" in text and "sweepnet_dense_activation" not in text
    assert math.isclose(len(text.split(",")), 8)


def test_auto_search_trials_train_on_one_seeded_subset(tiny_sweepnet, monkeypatch):
    """trial_samples: every trial fine-tunes on the same class-balanced subset; the best
    configuration is retrained on the whole training split."""
    seen = []
    fit = registry.fit

    def recording_fit(model, x, y, *rest, **kw):
        seen.append(y.copy())
        return fit(model, x, y, *rest, **kw)

    monkeypatch.setattr(registry, "fit", recording_fit)
    cfg = {"type": "auto_search", "n_trials": 3, "trial_epochs": 1, "weight_bits": [1, 2, 8]}
    res = run(tiny_sweepnet, "auto_search", {**cfg, "trial_samples": 40})
    y_train = tiny_sweepnet[1][1]
    *trials, final = seen
    assert len(trials) == 3 and all(np.array_equal(t, trials[0]) for t in trials)
    assert len(trials[0]) == 40 and np.array_equal(final, y_train)
    # classes in their shares of the split
    share = np.bincount(y_train) / len(y_train)
    assert np.abs(np.bincount(trials[0]) / 40 - share).max() <= 1 / 40
    assert "3 trials (TPE), 1 epochs each on 40 of 128 training inputs" in res.notes
    # at least the whole split (or null): every trial on the whole split
    seen.clear()
    run(tiny_sweepnet, "auto_search", {**cfg, "trial_samples": 1000})
    assert all(np.array_equal(t, y_train) for t in seen)


def test_a_killed_qat_job_resumes_from_its_checkpoints(tiny_sweepnet, tmp_path, monkeypatch):
    """run_method(checkpoint_dir=...): a rerun after a kill ends with the uninterrupted result."""
    import quantscan.train as train_mod

    model, train, val, test = tiny_sweepnet
    cfg = {"type": "mixed", "layers": "seed000_table6"}
    ft = TrainConfig(epochs=3, batch_size=16, learning_rate=0.01, patience=3)

    def go(ckpt):
        return methods.run_method(
            "mixed",
            cfg,
            model,
            ARCH,
            train,
            val,
            test,
            CLASSES,
            ft,
            11,
            LOG,
            None,
            ckpt,
            LAYER_PRESETS,
        ).primary

    ref = go(None)
    evaluate, calls = train_mod._evaluate, []

    def dies_in_epoch_2(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return evaluate(*args)

    monkeypatch.setattr(train_mod, "_evaluate", dies_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        go(tmp_path / "ckpt")
    assert len(list((tmp_path / "ckpt").glob("qat-*.pt"))) == 1
    calls[:] = [1, 1]  # count on, no kill: epochs 2 and 3 evaluate once each
    resumed = go(tmp_path / "ckpt")
    assert len(calls) == 2 + 2  # epoch 1 came from the checkpoint
    assert resumed.metrics["accuracy"] == ref.metrics["accuracy"]
    assert resumed.val_accuracy == ref.val_accuracy
    for a, b in zip(
        resumed.model.state_dict().values(), ref.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)


def test_auto_search_budget_never_returns_a_larger_configuration(tiny_sweepnet, monkeypatch):
    """max_bits: configurations over it score 0 without training; the result fits the budget."""
    budget = 900  # the tiny SweepNet's configurations here take 600-1,400 bits
    cfg = {
        "type": "auto_search",
        "n_trials": 6,
        "trial_epochs": 1,
        "weight_bits": [1, 2, 8],
        "max_bits": budget,
    }
    qat, trained = methods.Context.qat, []

    def counting_qat(self, config, epochs, key, *args, **kwargs):
        trained.append((key, model_bits(quantize_model(self.model, config))))
        return qat(self, config, epochs, key, *args, **kwargs)

    monkeypatch.setattr(methods.Context, "qat", counting_qat)
    res = run(tiny_sweepnet, "auto_search", cfg)
    trials = res.details
    over = trials[trials.over_budget.astype(bool)]
    assert len(over) >= 1 and (over.model_bits > budget).all() and (over.score == 0).all()
    assert (trials[~trials.over_budget.astype(bool)].model_bits <= budget).all()
    searched = [bits for key, bits in trained if key.startswith("trial")]
    assert searched and max(searched) <= budget  # nothing over the budget was trained
    assert res.primary.metrics["model_bits"] <= budget


def test_a_resumed_search_replays_finished_trials_from_their_scores(
    tiny_sweepnet, tmp_path, monkeypatch
):
    """auto_search keeps each finished trial's score: a rerun trains only the final model."""
    model, train, val, test = tiny_sweepnet
    cfg = {"type": "auto_search", "n_trials": 3, "trial_epochs": 1, "weight_bits": [1, 2, 8]}
    ft = TrainConfig(epochs=1, batch_size=16, learning_rate=0.01, patience=3)

    def go():
        return methods.run_method(
            "auto_search",
            cfg,
            model,
            ARCH,
            train,
            val,
            test,
            CLASSES,
            ft,
            11,
            LOG,
            None,
            tmp_path,
            LAYER_PRESETS,
        )

    first = go()
    assert len(list(tmp_path.glob("trial-*.json"))) == 3
    qat, keys = methods.Context.qat, []

    def counting_qat(self, config, epochs, key, *args, **kwargs):
        keys.append(key)
        return qat(self, config, epochs, key, *args, **kwargs)

    monkeypatch.setattr(methods.Context, "qat", counting_qat)
    again = go()
    assert not any(k.startswith("trial") for k in keys)  # no trial model built again
    cols = ["trial", "val_accuracy", "model_bits", "best"]
    pd.testing.assert_frame_equal(again.details[cols], first.details[cols])
    assert again.primary.metrics["accuracy"] == first.primary.metrics["accuracy"]
    # other fp32 weights: the stored scores do not apply
    other = copy.deepcopy(model)
    with torch.no_grad():
        next(other.parameters()).add_(0.01)
    keys.clear()
    methods.run_method(
        "auto_search",
        cfg,
        other,
        ARCH,
        train,
        val,
        test,
        CLASSES,
        ft,
        11,
        LOG,
        None,
        tmp_path,
        LAYER_PRESETS,
    )
    assert sum(k.startswith("trial") for k in keys) == 3


@pytest.mark.parametrize(
    "cfg",
    [
        {"type": "q_then_p_iter", "gammas": [0.5, 1.0], "bits": 8},
        {"type": "p_then_q_epochs", "gammas": [1.0], "bits": 4},  # killed in a quantize epoch
        {"type": "ttq"},
    ],
    ids=lambda c: c["type"],
)
def test_killed_pruning_and_ternary_jobs_resume_from_their_checkpoints(
    cfg, tiny_sweepnet, tmp_path, monkeypatch
):
    """Schedules keep masks (and p_then_q_epochs whether it pruned): the checkpoint holds them."""
    import quantscan.train as train_mod

    model, train, val, test = tiny_sweepnet
    ft = TrainConfig(epochs=4, batch_size=16, learning_rate=0.01, patience=4)

    def go(ckpt):
        return methods.run_method(
            cfg["type"],
            cfg,
            model,
            ARCH,
            train,
            val,
            test,
            CLASSES,
            ft,
            11,
            LOG,
            None,
            ckpt,
            LAYER_PRESETS,
        )

    ref = go(None)
    n_runs = len(ref.variants)
    evaluate, calls = train_mod._evaluate, []
    kill_at = 4 * (n_runs - 1) + 3  # epoch 3 of the last fine-tune

    def dies(*args):
        calls.append(1)
        if len(calls) == kill_at:
            raise KeyboardInterrupt
        return evaluate(*args)

    monkeypatch.setattr(train_mod, "_evaluate", dies)
    with pytest.raises(KeyboardInterrupt):
        go(tmp_path / "ckpt")
    assert len(list((tmp_path / "ckpt").glob("train-*.pt"))) == n_runs
    calls[:] = [1] * kill_at  # count on, no kill
    resumed = go(tmp_path / "ckpt")
    assert len(calls) == kill_at + 2  # only epochs 3 and 4 of the last fine-tune ran again
    for r, f in zip(resumed.variants, ref.variants, strict=True):
        assert r.metrics["accuracy"] == f.metrics["accuracy"]
        assert r.metrics["density"] == f.metrics["density"]
        for a, b in zip(r.model.state_dict().values(), f.model.state_dict().values(), strict=True):
            assert torch.equal(a, b)
