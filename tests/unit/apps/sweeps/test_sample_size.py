"""The sample-size policy: inputs with other haplotype counts than the model, through every engine."""

import numpy as np
import pytest
from scan_helpers import MODEL_HAPS, WIDTH

from quantscan.apps.sweeps import sample_size, scan, scan_engines, scan_plan
from quantscan.apps.sweeps.io import HaplotypeData
from quantscan.errors import ConfigError
from quantscan.runtime import KINDS, log_odds

ENGINE_FILES = {
    "torch_fp32_per_window": ("model.pt", "fp32"),
    "torch_fp32": ("model.pt", "fp32"),
    "onnx_fp32": ("model.pt", "fp32"),
    "onnx_int8": ("model.pt", "fp32"),
    "lut_fp32": ("model.pt", "fp32"),
    "packed": ("model.qsp", "m"),
    "packed_torch": ("model.qsp", "m"),
}


def open_engine(models, kind):
    path, model = ENGINE_FILES[kind]
    engine, why = scan_engines.open_engine(
        kind,
        models / path,
        model=model,
        shape=(MODEL_HAPS, WIDTH),
        batch_size=32,
        onnx_path=models / ("fp32.int8.onnx" if kind == "onnx_int8" else "fp32.onnx"),
    )
    assert why is None, why
    return engine


def chromosome(n_haps, n_sites=300, seed=3):
    rng = np.random.default_rng(seed)
    pos = np.sort(rng.uniform(0, 30_000, n_sites))
    hap = (rng.random((n_sites, n_haps)) < rng.beta(0.5, 1.5, n_sites)[:, None]).astype(np.uint8)
    names = [f"s{i}" for i in range(n_haps // 2)]
    return HaplotypeData("chr1", pos, hap, names, ploidy=2, length=30_000, source="x.vcf")


#: the sweep scan's engines: every kind but torch_int8 (PyTorch FX cannot trace SweepNet)
SCAN_KINDS = tuple(k for k in KINDS if k != "torch_int8")


def test_every_kind_is_covered():
    assert set(ENGINE_FILES) == set(SCAN_KINDS)
    assert set(scan_engines.FP32_ENGINES) | set(scan_engines.COMPRESSED_ENGINES) == set(SCAN_KINDS)


@pytest.mark.parametrize("kind", SCAN_KINDS)
def test_engine_refuses_a_mismatched_image_and_scans_through_subsets(models, kind):
    """No engine crashes on, or silently scores, an image of another height; a 40-haplotype
    chromosome is scanned by a 12-row model on random subsets, in every engine."""
    engine = open_engine(models, kind)
    wrong = np.zeros((2, 1, 40, WIDTH), np.uint8)
    with pytest.raises(ConfigError, match=r"takes 12 x 16 images .* got 40 x 16"):
        engine.predict_proba(wrong)
    with pytest.raises(ConfigError, match=r"takes 12 x 16 images"):
        engine.predict_log_odds(np.zeros((2, 1, MODEL_HAPS, 20), np.uint8))
    hd = chromosome(40)
    size = sample_size.resolve(40, MODEL_HAPS, subsets=3)
    subsets = sample_size.draw_subsets(40, MODEL_HAPS, size.subsets, seed=11)
    table = scan.scan_chromosome(hd, engine, width=WIDTH, n_points=25, subsets=subsets)
    assert np.isfinite(table["log_odds"]).all() and np.isfinite(table["p_sweep"]).all()
    # the window score is the mean of the subsets' log-odds, each an ordinary 12-row scan
    per_subset = []
    for rows in subsets:
        names = [f"s{i}" for i in range(MODEL_HAPS // 2)]
        sub = HaplotypeData("chr1", hd.positions, hd.haplotypes[:, rows], names, 2, 30_000, "x")
        per_subset.append(scan.scan_chromosome(sub, engine, width=WIDTH, n_points=25)["log_odds"])
    np.testing.assert_allclose(table["log_odds"], np.mean(per_subset, axis=0), rtol=1e-6)


def test_engines_agree_on_subsampled_scans(models):
    """fp32 engines give the same scores on subsampled windows; int8 stays close to them."""
    hd = chromosome(40, seed=5)
    subsets = sample_size.draw_subsets(40, MODEL_HAPS, 4, seed=2)
    scores = {
        kind: scan.scan_chromosome(
            hd, open_engine(models, kind), width=WIDTH, n_points=30, subsets=subsets
        )["log_odds"].to_numpy()
        for kind in ("torch_fp32", "onnx_fp32", "lut_fp32", "onnx_int8")
    }
    np.testing.assert_allclose(scores["onnx_fp32"], scores["torch_fp32"], atol=1e-4)
    np.testing.assert_allclose(scores["lut_fp32"], scores["torch_fp32"], atol=1e-4)
    # int8 quantization error of this small untrained model: ~4e-4 in log-odds
    np.testing.assert_allclose(scores["onnx_int8"], scores["torch_fp32"], atol=1e-2)


def test_resolve_and_subsets():
    same = sample_size.resolve(64, 64, subsets=8)
    assert same.subsets == 1 and "scored as is" in same.action
    more = sample_size.resolve(198, 64, subsets=8)
    assert more.subsets == 8
    assert more.action.startswith("198 input haplotypes, model 64: mean log-odds over 8")
    with pytest.raises(ConfigError, match=r"x.vcf: 20 haplotypes, fewer than the 64"):
        sample_size.resolve(20, 64, source="x.vcf")
    with pytest.raises(ConfigError, match="policy must be one of"):
        sample_size.resolve(64, 64, policy="resize")
    s = sample_size.draw_subsets(198, 64, 8, seed=1)
    assert s.shape == (8, 64) and all(len(set(r)) == 64 for r in s)
    assert (np.diff(s, axis=1) > 0).all() and s.max() < 198
    np.testing.assert_array_equal(s, sample_size.draw_subsets(198, 64, 8, seed=1))
    assert not np.array_equal(s, sample_size.draw_subsets(198, 64, 8, seed=2))
    np.testing.assert_array_equal(sample_size.draw_subsets(64, 64, 8, seed=1), [np.arange(64)])


def test_log_odds_is_stable_where_the_probability_saturates():
    z = np.array([[0.0, 40.0], [0.0, -40.0], [1.0, 1.0], [2.0, 0.0]])
    np.testing.assert_allclose(log_odds(z), [40.0, -40.0, 0.0, -2.0])
    # three classes: log P(c) - log(1 - P(c))
    z3 = np.array([[0.0, 1.0, 2.0]])
    p = np.exp(z3) / np.exp(z3).sum()
    assert log_odds(z3, 1)[0] == pytest.approx(np.log(p[0, 1] / (1 - p[0, 1])))


def test_match_policy_adds_a_scenario_at_the_inputs_size():
    from pathlib import Path

    import yaml

    from quantscan import config as qconfig

    root = Path(__file__).resolve().parents[4]
    cfg = yaml.safe_load((root / "config" / "config.yaml").read_text())
    scan = cfg["apps"]["sweeps"]["scan"]
    scan["sample_size"] = {"policy": "match", "sizes": []}
    scan["inputs"] = [
        {"name": "vcf198", "path": "x.vcf", "format": "vcf", "chroms": ["2"], "haplotypes": 198},
        {"name": "same", "path": "y.vcf", "format": "vcf", "chroms": ["2"], "haplotypes": 64},
    ]
    cfg = qconfig.validate(cfg)
    sw = cfg["apps"]["sweeps"]  # the sweeps' section: what matched_scenarios reads and returns
    out = scan_plan.matched_scenarios(sw, read_headers=False)
    assert out["data"]["scenarios"]["constant_h198"]["haplotypes"] == 198
    assert out["data"]["scenarios"]["constant_h80"]["haplotypes"] == 80  # the simulated one
    assert "constant_h198" in out["data"]["run"] and "constant_h80" in out["data"]["run"]
    assert out["scan"]["inputs"][0]["scenario"] == "constant_h198"
    assert out["scan"]["inputs"][1]["scenario"] == "constant"  # already the model's size
    assert out["scan"]["simulated"]["model"] == "constant_h80"
    assert "constant_h198" not in sw["data"]["scenarios"]  # the input config is untouched
    # the application hands the new section to the workflow as a config update (apps.sweeps)
    from quantscan import apps

    updates = apps.get(cfg, "sweeps").config_updates()
    assert list(updates) == ["apps"] and list(updates["apps"]) == list(cfg["apps"])
    assert updates["apps"]["sweeps"] == out and updates["apps"]["viral"] is cfg["apps"]["viral"]
    # snapped to the largest configured size the input reaches, then subsampled
    sw["scan"]["sample_size"]["sizes"] = [20, 128]
    out = scan_plan.matched_scenarios(sw, read_headers=False)
    assert out["scan"]["inputs"][0]["scenario"] == "constant_h128"
    p = scan_plan.plan(
        out,
        trained=["constant", "constant_h128", "constant_h20"],
        compress_jobs=[],
        read_headers=False,
    )
    size = p.inputs["vcf198"].sample_size
    assert (size["model_haplotypes"], size["subsets"]) == (
        128,
        out["scan"]["sample_size"]["subsets"],
    )
    sw["scan"]["sample_size"]["sizes"] = [256]
    with pytest.raises(
        ConfigError, match="fewer than every size of apps.sweeps.scan.sample_size.sizes"
    ):
        scan_plan.matched_scenarios(sw, read_headers=False)
    # subsample (the default) changes nothing
    sw["scan"]["sample_size"] = {"policy": "subsample", "subsets": 4, "sizes": []}
    assert scan_plan.matched_scenarios(sw, read_headers=False) is sw
    assert apps.get(cfg, "sweeps").config_updates() == {}
