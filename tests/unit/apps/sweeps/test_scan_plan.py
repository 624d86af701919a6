"""The scan plan from the config (quantscan.apps.sweeps.scan_plan): inputs, models, engines,
evaluations, replicate scans, and the config errors that name their key."""

import copy
import json
from pathlib import Path

import pytest
import yaml
from scan_helpers import vcf

from quantscan import config as qconfig
from quantscan.apps.sweeps import scan_plan
from quantscan.errors import ConfigError

ROOT = Path(__file__).resolve().parents[4]


TRAINED = ["constant", "mild_bottleneck"]


JOBS = [("constant", "mixed_table6"), ("mild_bottleneck", "mixed_table6"), ("constant", "uni")]


def default_config(**scan):
    """The validated sweeps' section (apps.sweeps) of config/config.yaml with keys of its scan
    replaced: what ``plan`` reads."""
    with open(ROOT / "config" / "config.yaml") as fh:
        cfg = yaml.safe_load(fh)
    cfg["apps"]["sweeps"]["scan"].update(scan)
    return qconfig.validate(cfg)["apps"]["sweeps"]


def test_default_plan():
    cfg = default_config()
    p = scan_plan.plan(cfg, trained=TRAINED, compress_jobs=JOBS)
    assert p.window == cfg["data"]["image"]["snps"]
    sim = p.inputs[scan_plan.SIMULATED]
    assert sim.chroms == ["chrSim"] and sim.scenario == sim.null_scenario == "constant"
    spec = p.simulated["chrSim"]
    assert spec["n_segments"] * spec["segment_length"] == cfg["scan"]["simulated"]["length"]
    # the simulated chromosome has more haplotypes than the models: subsampled, null at its size
    assert spec["haplotypes"] == cfg["scan"]["simulated"]["haplotypes"] == sim.haplotypes == 80
    assert p.model_haplotypes == {"constant": 64, "mild_bottleneck": 64}
    assert sim.sample_size["subsets"] == cfg["scan"]["sample_size"]["subsets"] > 1
    assert "80 input haplotypes, model 64" in sim.sample_size["action"]
    # the localiser (apps.sweeps.scan.localiser.enabled) scans last, through its own engines
    assert p.models == {
        "constant": ["fp32", "mixed_table6", "uni", "position"],
        "mild_bottleneck": ["fp32", "mixed_table6", "position"],
    }
    assert p.engines_for("position") == ["onnx_fp32", "onnx_int8"]
    scans = p.scans()
    assert ("simulated", "chrSim", "position", "onnx_int8") in scans
    assert ("simulated", "chrSim", "position", "packed") not in scans
    assert ("simulated", "chrSim", "fp32", "onnx_int8") in scans
    assert ("simulated", "chrSim", "uni", "packed") in scans
    assert ("simulated", "chrSim", "uni", "onnx_int8") not in scans
    # every evaluated triple and the null of every chromosome scan is a replicate scan
    reps = set(p.replicate_scans())
    assert {(s, m, e, s, 64) for s, m, e in p.evaluate} <= reps
    assert ("constant", "fp32", "onnx_fp32", "constant", 80) in reps  # the chromosome's null
    # neutral replicates at both sizes, sweeps (random positions) at the model's only
    assert p.simulation_sets() == {
        ("constant", 64): ("neutral", "sweep"),
        ("constant", 80): ("neutral",),
    }
    # the default evaluates constant and severe_bottleneck; the latter is not trained here
    assert {s for s, _, _ in p.evaluate} == {"constant"}
    assert ("mild_bottleneck", "mixed_table6", "packed", "mild_bottleneck", 64) not in reps
    json.dumps(spec)  # plain types: a Snakemake param
    cfg["scan"]["evaluate"]["scenarios"] = []  # every trained scenario
    p = scan_plan.plan(cfg, trained=TRAINED, compress_jobs=JOBS)
    assert {s for s, _, _ in p.evaluate} == set(TRAINED)
    assert ("mild_bottleneck", "mixed_table6", "packed", "mild_bottleneck", 64) in (
        p.replicate_scans()
    )


def test_plan_models_filter_and_other_scenarios():
    cfg = default_config(
        models=["fp32"], simulated={"scenario": "mild_bottleneck", "model": "constant"}
    )
    p = scan_plan.plan(cfg, trained=TRAINED, compress_jobs=JOBS)
    assert p.models == {"constant": ["fp32"], "mild_bottleneck": ["fp32"]}
    sim = p.inputs[scan_plan.SIMULATED]
    assert (sim.scenario, sim.null_scenario) == ("constant", "mild_bottleneck")
    assert ("constant", "fp32", "onnx_fp32", "mild_bottleneck", 64) in p.replicate_scans()
    p = scan_plan.plan(default_config(simulated={"names": []}), trained=TRAINED, compress_jobs=JOBS)
    assert p.inputs == {} and p.scans() == []


@pytest.mark.parametrize(
    "scan_cfg, sweeps_cfg, message",
    [
        ({"window": 128}, {}, "apps.sweeps.scan.window: 128 SNPs per window"),
        ({"simulated": {"haplotypes": 65}}, {}, "apps.sweeps.scan.simulated.haplotypes"),
        ({"simulated": {"haplotypes": 32}}, {}, "32 haplotypes, fewer than the 64"),
        ({"simulated": {"length": 1_234_567}}, {}, "whole number of segments"),
        ({"simulated": {"sweep_segments": [99]}}, {}, "sweep_segments [99] outside"),
        ({"simulated": {"scenario": "hotspot_high"}}, {}, "not a trained sweep scenario"),
        ({"simulated": {"names": ["chr 1"]}}, {}, "cannot be used in file names"),
        ({"models": ["nope"]}, {}, "unknown model(s) ['nope']"),
        (
            {"evaluate": {"scenarios": ["island_migration"]}},
            {},
            "apps.sweeps.scan.evaluate.scenarios",
        ),
        (
            {"inputs": [{"name": "data", "path": "x.vcf", "format": "vcf", "chroms": ["1"]}]},
            {},
            "reserved",
        ),
        (
            {"inputs": [{"name": "a", "path": "x.ms", "format": "ms", "chroms": ["rep1"]}]},
            {},
            "needs the length",
        ),
        (
            {
                "inputs": [
                    {
                        "name": "a",
                        "path": "x.trees",
                        "format": "trees",
                        "chroms": ["c"],
                        "samples": ["s1"],
                    }
                ]
            },
            {},
            "only VCF/BCF inputs",
        ),
    ],
)
def test_plan_errors_name_the_key(scan_cfg, sweeps_cfg, message):
    cfg = default_config()
    for key, value in scan_cfg.items():
        if isinstance(value, dict):
            cfg["scan"][key].update(value)
        else:
            cfg["scan"][key] = value
    with pytest.raises(ConfigError) as err:
        scan_plan.plan(cfg, trained=TRAINED, compress_jobs=JOBS, read_headers=False)
    assert message in str(err.value)


def test_schema_rejects_bad_scan_keys():
    with pytest.raises(ConfigError, match="apps.sweeps.scan.peaks.column"):
        default_config(peaks={"column": "score"})
    with pytest.raises(ConfigError, match="unknown config key 'grid'"):
        default_config(grid=5)


def test_user_inputs_chromosomes_from_files(tmp_path):
    import msprime

    v = vcf(tmp_path / "a.vcf", [("chr1", 5, "0|1", "1|0")])
    ms = tmp_path / "a.ms"
    ms.write_text("ms 4 2\n1 2\n\n//\nsegsites: 1\npositions: 0.5\n0\n1\n1\n0\n\n//\nsegsites: 0\n")
    ts = msprime.sim_mutations(
        msprime.sim_ancestry(2, sequence_length=1000, random_seed=1), rate=1e-3, random_seed=1
    )
    ts.dump(tmp_path / "chrT.trees")
    import pysam

    with pysam.VariantFile(str(v)) as src:  # the same records as BCF
        with pysam.VariantFile(str(tmp_path / "a.bcf"), "wb", header=src.header) as dst:
            for record in src:
                dst.write(record)
    items = [
        {"name": "v", "path": str(v)},
        {"name": "b", "path": str(tmp_path / "a.bcf")},
        {"name": "vr", "path": str(v), "region": "chr2:1-100"},
        {"name": "m", "path": str(ms), "length": 1e4},
        {"name": "t", "path": str(tmp_path / "chrT.trees"), "scenario": "mild_bottleneck"},
    ]
    cfg = default_config(inputs=items, simulated={"names": []})
    cfg["data"]["haplotypes"] = 4  # the inputs' size: models of 4 rows
    p = scan_plan.plan(cfg, trained=TRAINED, compress_jobs=[])
    got = {
        k: (i.format, i.chroms, i.scenario, i.base, i.haplotypes)
        for k, i in p.inputs.items()
        if k != scan_plan.SIMULATED
    }
    # only contigs with records are planned (the header lists chr1 and chr2)
    assert got == {
        "v": ("vcf", ["chr1"], "constant", 1, 4),
        "b": ("bcf", ["chr1"], "constant", 1, 4),
        "vr": ("vcf", ["chr2"], "constant", 1, 4),
        "m": ("ms", ["rep1", "rep2"], "constant", 0, 4),
        "t": ("trees", ["chrT"], "mild_bottleneck", 0, 4),
    }
    assert all(i.sample_size["subsets"] == 1 for i in p.inputs.values())
    nohead = tmp_path / "b.vcf"
    nohead.write_text(
        v.read_text()
        .replace("##contig=<ID=chr1,length=1000>\n", "")
        .replace("##contig=<ID=chr2,length=1000>\n", "")
    )
    cfg["scan"]["inputs"] = [{"name": "b", "path": str(nohead)}]
    assert scan_plan.plan(cfg, trained=TRAINED, compress_jobs=[]).inputs["b"].chroms == ["chr1"]
    # more models rows than the input has haplotypes: an error naming both numbers
    cfg["data"]["haplotypes"] = 8
    with pytest.raises(ConfigError, match=r"4 haplotypes, fewer than the 8"):
        scan_plan.plan(cfg, trained=TRAINED, compress_jobs=[])
    with pytest.raises(ConfigError, match="does not exist"):
        scan_plan.plan(
            default_config(inputs=[{"name": "b", "path": str(tmp_path / "no.vcf")}]),
            trained=TRAINED,
            compress_jobs=[],
        )


def test_config_copy_is_untouched():
    cfg = default_config()
    before = copy.deepcopy(cfg)
    scan_plan.plan(cfg, trained=TRAINED, compress_jobs=JOBS)
    assert cfg == before


def test_plan_leaves_out_int8_methods():
    """int8 methods have no packed model: not scanned as compressed models, refused in
    apps.sweeps.scan.models."""
    cfg = default_config()
    cfg["compress"]["methods"]["q8"] = {"type": "int8"}
    p = scan_plan.plan(cfg, trained=TRAINED, compress_jobs=[*JOBS, ("constant", "q8")])
    assert p.models["constant"] == ["fp32", "mixed_table6", "uni", "position"]
    assert not any(m == "q8" for _, _, m, _ in p.scans())
    assert ("simulated", "chrSim", "fp32", "onnx_int8") in p.scans()
    cfg["scan"]["models"] = ["fp32", "q8"]
    with pytest.raises(ConfigError, match=r"apps.sweeps.scan.models: \['q8'\] are int8 methods"):
        scan_plan.plan(cfg, trained=TRAINED, compress_jobs=[*JOBS, ("constant", "q8")])


def test_statistic_for_the_localiser_and_the_cnns():
    """The localiser ranks by its own statistic (P(sweep) unless configured), the CNNs by the scan's."""
    cfg = {"statistic": "log_odds_smoothed", "localiser": {}}
    assert scan_plan.statistic_for("position", cfg) == "p_sweep"
    assert scan_plan.statistic_for("fp32", cfg) == "log_odds_smoothed"
    assert scan_plan.statistic_for("mixed_table6", cfg) == "log_odds_smoothed"
    cfg["localiser"]["statistic"] = "log_odds"
    assert scan_plan.statistic_for("position", cfg) == "log_odds"
