"""Scan workflow helpers: the plan from the config, inputs, chromosome files, engines, tables."""

import copy
import json
import runpy
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from quantscan import config as qconfig
from quantscan.apps.sweeps import scan, scan_metrics
from quantscan.apps.sweeps import scan_workflow as qs
from quantscan.apps.sweeps.compress_presets import SEED000_TABLE6
from quantscan.apps.sweeps.io import MISSING, HaplotypeData
from quantscan.apps.sweeps.simulate import Replicate, save_replicates
from quantscan.compress.layers import quantize_model
from quantscan.errors import ConfigError, InputFormatError
from quantscan.export.packed import save_packed
from quantscan.modelio import save_fp32
from quantscan.models import SweepNet
from quantscan.runtime import Engine

ROOT = Path(__file__).resolve().parents[4]
ARCH = {"name": "sweepnet", "n_classes": 2, "filters": 8, "se_ratio": 2}
TRAINED = ["constant", "mild_bottleneck"]
JOBS = [("constant", "mixed_table6"), ("mild_bottleneck", "mixed_table6"), ("constant", "uni")]


def default_config(**scan):
    """The validated sweeps' section (apps.sweeps) of config/config.yaml with keys of its scan
    replaced: what ``plan`` reads."""
    with open(ROOT / "config" / "config.yaml") as fh:
        cfg = yaml.safe_load(fh)
    cfg["apps"]["sweeps"]["scan"].update(scan)
    return qconfig.validate(cfg)["apps"]["sweeps"]


class MeanEngine(Engine):
    """P(sweep) grows with the window's derived-allele density (deterministic)."""

    def __init__(self):
        super().__init__("mean", 64, 1, 2)

    def _logits(self, x):
        m = x.reshape(len(x), -1).mean(axis=1)
        return np.stack([np.zeros_like(m), 12 * (m - 0.3)], axis=1)


def chromosome(n_sites=400, n_haps=10, length=40_000, seed=0, missing=0.0):
    rng = np.random.default_rng(seed)
    pos = np.sort(rng.uniform(1, length, n_sites))
    hap = (rng.random((n_sites, n_haps)) < rng.beta(0.4, 1.2, n_sites)[:, None]).astype(np.uint8)
    if missing:
        hap[rng.random(hap.shape) < missing] = MISSING
    names = [f"s{i}" for i in range(n_haps // 2)]
    return HaplotypeData("chr7", pos, hap, names, ploidy=2, length=length, source="x.vcf")


def vcf(path, records, contigs=("chr1", "chr2")):
    head = ["##fileformat=VCFv4.2", *(f"##contig=<ID={c},length=1000>" for c in contigs)]
    head.append('##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">')
    head.append("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\ts1\ts2")
    body = [
        "\t".join([c, str(p), ".", "A", "T", ".", "PASS", ".", "GT", *g]) for c, p, *g in records
    ]
    path.write_text("\n".join(head + body) + "\n")
    return path


# --------------------------------------------------------------------------------------------------
# plan


def test_default_plan():
    cfg = default_config()
    p = qs.plan(cfg, trained=TRAINED, compress_jobs=JOBS)
    assert p.window == cfg["data"]["image"]["snps"]
    sim = p.inputs[qs.SIMULATED]
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
    p = qs.plan(cfg, trained=TRAINED, compress_jobs=JOBS)
    assert {s for s, _, _ in p.evaluate} == set(TRAINED)
    assert ("mild_bottleneck", "mixed_table6", "packed", "mild_bottleneck", 64) in (
        p.replicate_scans()
    )


def test_plan_models_filter_and_other_scenarios():
    cfg = default_config(
        models=["fp32"], simulated={"scenario": "mild_bottleneck", "model": "constant"}
    )
    p = qs.plan(cfg, trained=TRAINED, compress_jobs=JOBS)
    assert p.models == {"constant": ["fp32"], "mild_bottleneck": ["fp32"]}
    sim = p.inputs[qs.SIMULATED]
    assert (sim.scenario, sim.null_scenario) == ("constant", "mild_bottleneck")
    assert ("constant", "fp32", "onnx_fp32", "mild_bottleneck", 64) in p.replicate_scans()
    p = qs.plan(default_config(simulated={"names": []}), trained=TRAINED, compress_jobs=JOBS)
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
        qs.plan(cfg, trained=TRAINED, compress_jobs=JOBS, read_headers=False)
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
    p = qs.plan(cfg, trained=TRAINED, compress_jobs=[])
    got = {
        k: (i.format, i.chroms, i.scenario, i.base, i.haplotypes)
        for k, i in p.inputs.items()
        if k != qs.SIMULATED
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
    assert qs.plan(cfg, trained=TRAINED, compress_jobs=[]).inputs["b"].chroms == ["chr1"]
    # more models rows than the input has haplotypes: an error naming both numbers
    cfg["data"]["haplotypes"] = 8
    with pytest.raises(ConfigError, match=r"4 haplotypes, fewer than the 8"):
        qs.plan(cfg, trained=TRAINED, compress_jobs=[])
    with pytest.raises(ConfigError, match="does not exist"):
        qs.plan(
            default_config(inputs=[{"name": "b", "path": str(tmp_path / "no.vcf")}]),
            trained=TRAINED,
            compress_jobs=[],
        )


# --------------------------------------------------------------------------------------------------
# inputs and chromosome files


def test_read_chromosome_and_malformed_vcf(tmp_path):
    v = vcf(
        tmp_path / "a.vcf",
        [("chr1", 5, "0|1", "1|0"), ("chr1", 9, "0|1", "0|0"), ("chr2", 3, "1|1", "0|1")],
    )
    inp = {"format": "vcf", "path": str(v), "options": {"samples": ["s2"], "phased": "auto"}}
    hd = qs.read_chromosome(inp, "chr1")
    assert hd.chrom == "chr1" and hd.positions.tolist() == [5.0] and hd.n_haplotypes == 2
    bad = vcf(tmp_path / "bad.vcf", [("chr1", 5, "0|1", "1|0"), ("chr1", 9, "0-1", "0|0")])
    with pytest.raises(InputFormatError) as err:
        qs.read_chromosome({"format": "vcf", "path": str(bad), "options": {}}, "chr1")
    assert str(bad) in str(err.value) and "line 7 (chr1:9)" in str(err.value)


def test_prepare_script_fails_cleanly_on_a_malformed_vcf(tmp_path):
    """The rule's script: a clean error naming file and record in the log, no output file."""
    bad = vcf(tmp_path / "bad.vcf", [("chr1", 5, "0|1", "1|0"), ("chr1", 9, "0|1", "0/.|1")])
    out, log = tmp_path / "out" / "chr1.npz", tmp_path / "prepare.log"
    smk = types.SimpleNamespace(
        input=types.SimpleNamespace(source=str(bad)),
        output=types.SimpleNamespace(npz=str(out)),
        params=types.SimpleNamespace(
            inp={"name": "bad", "format": "vcf", "path": str(bad), "options": {}}, haplotypes=4
        ),
        wildcards=types.SimpleNamespace(chrom="chr1", scan_input="bad"),
        log=[str(log)],
        rule="scan_prepare",
        threads=1,
        scriptdir=str(ROOT / "workflow" / "scripts"),
    )
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(
            str(ROOT / "workflow/scripts/scan_prepare.py"), init_globals={"snakemake": smk}
        )
    assert exit_.value.code == 1
    text = log.read_text()
    assert str(bad) in text and "chr1:9" in text and "Traceback" not in text
    assert not out.exists() and not list(tmp_path.rglob("*.tmp*"))


def test_chromosome_file_round_trip_and_lazy_scan(tmp_path):
    hd = chromosome(missing=0.05)
    qs.save_chromosome(hd, tmp_path / "c.npz", base=1)
    back, info = qs.load_chromosome(tmp_path / "c.npz")
    assert info["base"] == 1 and back.chrom == "chr7" and back.length == hd.length
    np.testing.assert_array_equal(back.positions, hd.positions)
    np.testing.assert_array_equal(back.haplotypes, hd.filled(0))  # missing as ancestral
    lazy, _ = qs.load_chromosome(tmp_path / "c.npz", lazy=True)
    np.testing.assert_array_equal(lazy.haplotypes[10:20], hd.filled(0)[10:20])
    kw = dict(width=16, n_points=60, n_regions=3, column_order="descending")
    for region in range(3):
        a = scan.scan_chromosome(hd, MeanEngine(), region=region, **kw)
        b = scan.scan_chromosome(lazy, MeanEngine(), region=region, **kw)
        pd.testing.assert_frame_equal(a, b)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(InputFormatError, match="junk.npz"):
        qs.load_chromosome(tmp_path / "junk.npz")


# --------------------------------------------------------------------------------------------------
# test replicates


def test_test_batches_and_loading(tmp_path):
    # 7 training + 5 test replicates in batches of 4: test indices 7..11 in batches 1 and 2
    assert qs.test_batches(7, 5, 4, neutral_only=False) == [1, 2]
    assert qs.test_batches(7, 5, 4, neutral_only=True) == [0, 1]
    assert qs.test_batches(8, 4, 4, neutral_only=False) == [2]
    shards = {}
    for b, size in ((1, 4), (2, 4)):
        reps = [
            Replicate(np.array([float(b * 4 + i)]), np.ones((1, 4), np.uint8), 50.0)
            for i in range(size)
        ]
        shards[b] = tmp_path / f"batch{b}.npz"
        save_replicates(shards[b], reps, sequence_length=100.0, meta={})
    reps, length = qs.load_test_replicates(shards, first_test=7, batch_size=4)
    assert length == 100.0 and [r.positions[0] for r in reps] == [7, 8, 9, 10, 11]
    reps, _ = qs.load_test_replicates(shards, first_test=7, batch_size=4, max_replicates=2)
    assert len(reps) == 2


# --------------------------------------------------------------------------------------------------
# engines


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    m = SweepNet(filters=8, se_ratio=2).eval()
    save_fp32(m, ARCH, d / "model.pt")
    save_packed(quantize_model(m, SEED000_TABLE6), d / "model.qsp", ARCH)
    return d


def test_open_engine_runs_or_says_why_not(models):
    x = (np.random.default_rng(1).random((5, 1, 12, 16)) < 0.3).astype(np.uint8)
    kw = dict(shape=(12, 16), batch_size=4)
    fp32, why = qs.open_engine("onnx_fp32", models / "model.pt", model="fp32", **kw)
    assert why is None
    packed, why = qs.open_engine("packed", models / "model.qsp", model="m", **kw)
    assert why is None and packed.predict_proba(x).shape == (5, 2)
    ref, _ = qs.open_engine("packed_torch", models / "model.qsp", model="m", **kw)
    np.testing.assert_allclose(packed.predict_proba(x), ref.predict_proba(x), atol=1e-5)
    for kind, path, model, reason in [
        ("onnx_int8", "model.qsp", "m", "fp32 model's int8 ONNX export only"),
        ("onnx_int8", "model.pt", "fp32", "needs the int8 ONNX file"),
        ("packed", "model.pt", "fp32", "needs a packed model file"),
        ("lut_fp32", "model.qsp", "m", "needs an fp32 model file"),
    ]:
        engine, why = qs.open_engine(kind, models / path, model=model, **kw)
        assert engine is None and reason in why and f"engine {kind}" in why
    (models / "broken.qsp").write_bytes(b"QSPK" + b"\0" * 20)
    with pytest.raises(InputFormatError):  # a corrupt model file is an error, not a skip
        qs.open_engine("packed", models / "broken.qsp", model="m", **kw)


# --------------------------------------------------------------------------------------------------
# replicate scans, p-values, merged outputs, summary


def test_replicate_scans_round_trip_and_null(tmp_path):
    grid = np.linspace(0, 100, 5)

    def tracks(p, true):
        p = np.asarray(p, np.float64)
        with np.errstate(divide="ignore"):
            lo = np.log(p) - np.log1p(-p)
        return scan_metrics.ReplicateTracks(grid, p, lo, np.asarray(true, np.float64))

    sweeps = tracks([[0.1, 0.2, 0.9, 0.3, np.nan]], [50.0])
    neutrals = tracks([[0.1, 0.2, 0.3, 0.4, 0.5], [np.nan, 0.6, 0.1, 0.1, 0.1]], [np.nan] * 2)
    info = {"engine": "x", "sample_size": {"input_haplotypes": 10}}
    qs.save_replicate_scans(tmp_path / "r.npz", sweeps, neutrals, 100.0, info)
    s, n, length, back = qs.load_replicate_scans(tmp_path / "r.npz")
    assert (len(s.p_sweep), len(n.p_sweep), length, back) == (1, 2, 100.0, info)
    np.testing.assert_array_equal(s.p_sweep, sweeps.p_sweep)
    assert s.true_position[0] == 50.0 and np.isnan(n.true_position).all()
    assert sorted(qs.neutral_null(tmp_path / "r.npz", "p_sweep")) == pytest.approx(
        [0.1, 0.1, 0.1, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    )
    # the null of log-odds is the logit of the same numbers, in the same order
    null_lo = sorted(qs.neutral_null(tmp_path / "r.npz", "log_odds"))
    assert null_lo == pytest.approx(
        np.log(
            np.array(sorted([0.1] * 4 + [0.2, 0.3, 0.4, 0.5, 0.6]))
            / (1 - np.array(sorted([0.1] * 4 + [0.2, 0.3, 0.4, 0.5, 0.6])))
        )
    )
    for statistic in scan.STATISTICS:
        m = scan_metrics.evaluate(s.scans(statistic, 10.0), n.scans(statistic, 10.0), length)
        assert m["n_sweep"] == 1 and m["n_neutral"] == 2
    m = scan_metrics.evaluate(s.scans("p_sweep"), n.scans("p_sweep"), length)
    assert m["success_rate"] == 1.0 and m["distance_error_pct"] == 0.0
    # a neutral-only file (the null of an input at another size) and a corrupt one
    qs.save_replicate_scans(tmp_path / "n.npz", None, neutrals, 100.0, {})
    s, n, _, _ = qs.load_replicate_scans(tmp_path / "n.npz")
    assert len(s.p_sweep) == 0 and len(n.p_sweep) == 2
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(InputFormatError, match="bad.npz: unreadable replicate scan file"):
        qs.load_replicate_scans(tmp_path / "bad.npz")


@pytest.mark.parametrize("seed", range(4))
def test_score_threshold_matches_empirical_pvalues(seed):
    rng = np.random.default_rng(seed)
    null = np.round(rng.random(200), 2)  # ties
    for t in (0.001, 0.01, 0.05, 0.5, 1.0):
        s = qs.score_threshold(null, t)
        probe = np.unique(np.concatenate([null, null + 1e-9, [0.0, 1.0]]))
        p = scan.empirical_pvalues(probe, null)
        passing = probe[p <= t]
        if not np.isfinite(s):
            assert (s == -np.inf and passing.size == probe.size) or (
                np.isnan(s) and not passing.size
            )
        else:
            assert passing.size and passing.min() > s and (p[probe <= s] > t).all()


def test_merge_chromosome_outputs(tmp_path):
    hd = chromosome(n_sites=600, length=60_000, seed=4)
    hd.haplotypes[280:330] = 1  # a derived block: high scores there
    hd.haplotypes[280:330, 0] = 0
    tables = [
        scan.scan_chromosome(hd, MeanEngine(), width=16, n_points=120, n_regions=2, region=r)
        for r in (0, 1)
    ]
    null = np.concatenate(
        [tables[0]["p_sweep"].to_numpy()[:40], tables[1]["p_sweep"].to_numpy()[-40:]]
    )
    truth = pd.DataFrame(
        {
            "class": ["sweep"],
            "sweep_position": [hd.positions[305]],
            "hotspot_start": [np.nan],
            "hotspot_end": [np.nan],
        }
    )
    out = {k: tmp_path / f"c.{k}" for k in ("tsv", "bedgraph", "bed", "png")}
    peaks = {"column": "p_value", "threshold": 0.05, "max_gap": 1, "min_points": 1}
    counts = qs.merge_chromosome(
        tables,
        null,
        peaks=peaks,
        base=1,
        out=out,
        statistic="p_sweep",
        header=["input_haplotypes: 10", "model_haplotypes: 10"],
        truth=truth,
    )
    head = out["tsv"].read_text().splitlines()[:3]
    assert head[:2] == ["# input_haplotypes: 10", "# model_haplotypes: 10"]
    table = pd.read_csv(out["tsv"], sep="\t", comment="#")
    extra = ["score", "p_value", "q_value", "rank"]
    assert list(table.columns) == [*scan.SCORE_COLUMNS, *extra] and len(table) == 120
    assert counts["peaks"] >= 1 and counts["null_windows"] == null.size
    q = scan.bh_qvalues(table["p_value"].to_numpy())
    np.testing.assert_allclose(table["q_value"], q, rtol=1e-5)
    assert table.loc[table["score"].idxmax(), "rank"] == 1
    assert (table["q_value"] >= table["p_value"] - 1e-12).all()
    back = scan.read_scores_tsv(out["tsv"])  # the comment lines are skipped
    assert len(back) == 120
    bed = pd.read_csv(out["bed"], sep="\t")
    top = bed.iloc[bed["score"].argmax()]
    assert top["start"] <= hd.positions[305] <= top["end"]
    assert out["png"].read_bytes()[:4] == b"\x89PNG"
    assert out["bedgraph"].read_text().startswith("track type=bedGraph")
    # no null: p-values NA, no p-value peaks, files still written
    counts = qs.merge_chromosome(tables, np.zeros(0), peaks=peaks, base=0, out=out)
    assert counts["peaks"] == 0
    assert pd.read_csv(out["tsv"], sep="\t", comment="#")["p_value"].isna().all()


def test_summary_rows(tmp_path):
    metrics = {
        "success_rate": 0.5,
        "distance_error_pct": 1.0,
        "sensitivity_at_fpr": 0.9,
        "n_sweep": 2,
    }
    rows = [
        qs.summary_row(
            "constant",
            "fp32",
            "onnx_fp32",
            "test_replicates",
            metrics,
            {"windows": 10, "seconds": 2.0},
        ),
        qs.summary_row(
            "constant", "m", "onnx_int8", "test_replicates", None, {"skipped": "model m cannot run"}
        ),
    ]
    qs.write_summary(rows, tmp_path / "s.tsv")
    t = pd.read_csv(tmp_path / "s.tsv", sep="\t")
    assert list(t.columns) == list(qs.SUMMARY_COLUMNS)
    assert t.loc[0, "windows_per_s"] == 5.0 and t.loc[1, "note"] == "model m cannot run"
    assert np.isnan(t.loc[1, "success_rate"])
    assert {"success_rate", "distance_error_pct", "sensitivity_at_fpr"} <= set(t.columns)


def test_config_copy_is_untouched():
    cfg = default_config()
    before = copy.deepcopy(cfg)
    qs.plan(cfg, trained=TRAINED, compress_jobs=JOBS)
    assert cfg == before


def test_plan_leaves_out_int8_methods():
    """int8 methods have no packed model: not scanned as compressed models, refused in
    apps.sweeps.scan.models."""
    cfg = default_config()
    cfg["compress"]["methods"]["q8"] = {"type": "int8"}
    p = qs.plan(cfg, trained=TRAINED, compress_jobs=[*JOBS, ("constant", "q8")])
    assert p.models["constant"] == ["fp32", "mixed_table6", "uni", "position"]
    assert not any(m == "q8" for _, _, m, _ in p.scans())
    assert ("simulated", "chrSim", "fp32", "onnx_int8") in p.scans()
    cfg["scan"]["models"] = ["fp32", "q8"]
    with pytest.raises(ConfigError, match=r"apps.sweeps.scan.models: \['q8'\] are int8 methods"):
        qs.plan(cfg, trained=TRAINED, compress_jobs=[*JOBS, ("constant", "q8")])
