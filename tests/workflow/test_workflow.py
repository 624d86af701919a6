"""The whole workflow through the snakemake CLI on a tiny config, in a temporary directory."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
SNAKEMAKE = [sys.executable, "-m", "snakemake"]

pytestmark = pytest.mark.workflow


def smk(workdir, *args, configfiles=("tiny.yaml",), check=True):
    cmd = [
        *SNAKEMAKE,
        "--snakefile",
        str(ROOT / "workflow" / "Snakefile"),
        "--directory",
        str(workdir),
    ]
    for cf in configfiles:
        cmd += ["--configfile", str(workdir / cf)]
    proc = subprocess.run(
        [*cmd, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=1200
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{proc.stdout[-8000:]}")
    return proc


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    (d / "config").mkdir()
    shutil.copy(ROOT / "config" / "config.yaml", d / "config" / "config.yaml")
    shutil.copy(HERE / "tiny.yaml", d / "tiny.yaml")
    smk(d, "--cores", "2")
    return d


def test_default_dag_runs_end_to_end(workdir):
    res = workdir / "results" / "sweeps"
    table = pd.read_csv(res / "summary.tsv", sep="\t")
    assert list(table.columns[:8]) == [
        "scenario",
        "method",
        "accuracy",
        "mcc",
        "acc_neutral",
        "acc_sweep",
        "model_bits",
        "file_bytes",
    ]
    fp32 = table[table.method == "fp32"]
    assert fp32.scenario.tolist() == ["constant"]
    assert fp32.model_bits.tolist() == [310_400]
    assert fp32.accuracy.between(0, 1).all() and "fpr_island_migration" in table.columns
    metrics = json.loads((res / "models/constant/fp32/metrics.json").read_text())
    assert metrics["n"] == 12  # 6 test replicates per class
    assert sum(map(sum, metrics["confusion_matrix"]["rows_true_cols_pred"])) == 12
    for png in [
        "data/constant/examples.png",
        "data/island_migration/examples.png",
        "models/constant/fp32/curves.png",
    ]:
        assert (res / png).read_bytes()[:4] == b"\x89PNG"
    history = pd.read_csv(res / "models/constant/fp32/history.tsv", sep="\t")
    assert 1 <= len(history) <= 2
    # the neutral-only scenario has a test split only
    assert (res / "sim/island_migration/neutral/batch0.npz").exists()
    assert not (res / "sim/island_migration/sweep").exists()
    assert not list(workdir.rglob("*.tmp*")), "temporary files left behind"
    left = list(workdir.rglob("checkpoint.pt")) + list(workdir.rglob("checkpoints"))
    assert not left, f"training checkpoints left behind: {left}"
    assert list((workdir / "results/benchmarks/rules/sweeps/train").rglob("*.tsv"))


def test_scan_outputs_name_the_sample_size_and_carry_q_values(workdir):
    """The simulated chromosome (20 haplotypes) is scanned by 16-row models through subsets; every
    engine runs (int8 included), outputs say so, and the evaluation uses random sweep positions."""
    res = workdir / "results" / "sweeps"
    summary = pd.read_csv(res / "scan_summary.tsv", sep="\t")
    for col in ("statistic", "input_haplotypes", "model_haplotypes", "sample_size", "null_windows"):
        assert col in summary.columns
    reps = summary[summary["data"] == "replicates"]
    cnn, classic = reps[reps["engine"] != "classic"], reps[reps["engine"] == "classic"]
    assert set(cnn["statistic"]) == {"log_odds_smoothed", "log_odds", "p_sweep", "mu_x_p_sweep"}
    assert set(classic["method"]) == set(classic["statistic"]) == {"mu", "h12", "clr"}
    assert (cnn["model_haplotypes"] == 16).all() and (cnn["input_haplotypes"] == 16).all()
    assert reps["success_rate"].between(0, 1).all()  # no engine skipped: every row scored
    assert (reps["n_sweep"] == 3).all() and (reps["n_neutral"] == 4).all()
    chrom = summary[summary["data"] == "chromosome:chrSim"]
    assert set(chrom["engine"]) >= {"onnx_fp32", "onnx_int8", "packed"}
    assert (chrom["input_haplotypes"] == 20).all() and (chrom["model_haplotypes"] == 16).all()
    assert chrom["sample_size"].str.contains("mean log-odds over 2 random subsets of 16").all()
    assert chrom["note"].str.contains("small p-value null").all()
    for engine in ("onnx_fp32", "onnx_int8"):
        tsv = res / "scan" / "simulated" / "fp32" / engine / "chrSim.scores.tsv"
        head = [ln for ln in tsv.read_text().splitlines() if ln.startswith("#")]
        assert "# input_haplotypes: 20" in head and "# model_haplotypes: 16" in head
        table = pd.read_csv(tsv, sep="\t", comment="#")
        assert {"score", "p_value", "q_value", "rank"} <= set(table.columns)
        assert table["q_value"].between(0, 1).all() and table["rank"].min() == 1
    # the localiser: trained, exported, scanned and evaluated through both ONNX engines
    loc = reps[reps["method"] == "position"]
    assert set(loc["engine"]) == {"onnx_fp32", "onnx_int8"}
    assert loc["success_rate"].between(0, 1).all()  # scored, not skipped
    assert set(chrom[chrom["method"] == "position"]["engine"]) == {"onnx_fp32", "onnx_int8"}
    # each model's replicate rows mark the one statistic its scans rank by: P(sweep) for the
    # localiser, the configured smoothed log-odds for the CNNs; chromosome scans use it
    marked = reps[reps["scan_statistic"]].groupby(["scenario", "method", "engine"])["statistic"]
    assert (marked.count() == 1).all()
    assert set(reps[reps["scan_statistic"] & (reps["method"] == "position")]["statistic"]) == {
        "p_sweep"
    }
    assert set(reps[reps["scan_statistic"] & (reps["method"] == "fp32")]["statistic"]) == {
        "log_odds_smoothed"
    }
    assert set(chrom[chrom["method"] == "position"]["statistic"]) == {"p_sweep"}
    history = pd.read_csv(res / "localiser" / "constant" / "history.tsv", sep="\t")
    assert len(history) == 1 and history["val_none_recall"].between(0, 1).all()
    assert (res / "scan" / "onnx" / "constant" / "position.int8.onnx").stat().st_size > 0
    pos = pd.read_csv(
        res / "scan" / "simulated" / "position" / "onnx_int8" / "chrSim.scores.tsv",
        sep="\t",
        comment="#",
    )
    assert len(pos) == 100 and pos["log_odds"].notna().all() and pos["p_sweep"].between(0, 1).all()
    # the scan's own simulations: neutral at both sizes, sweeps at random positions at 16
    sims = res / "scan" / "sims" / "constant"
    assert (sims / "h20" / "neutral" / "batch0.npz").exists()
    assert not (sims / "h20" / "sweep").exists()
    from quantscan.apps.sweeps.simulate import load_replicates

    sweeps, length = load_replicates(sims / "h16" / "sweep" / "batch0.npz")
    where = [r.sweep_position / length for r in sweeps]
    assert all(0.1 <= w <= 0.9 for w in where) and len(set(where)) == len(where)


def test_int8_method_and_comparison_plots(workdir):
    res = workdir / "results" / "sweeps"
    table = pd.read_csv(res / "summary.tsv", sep="\t")
    at = list(table.columns).index("bits_per_layer")
    assert list(table.columns[at + 1 : at + 3]) == ["speedup_vs_torch_fp32", "speedup_vs_ort_fp32"]
    int8 = table[table.method == "int8"]
    assert int8.scenario.tolist() == ["constant"]  # tiny.yaml moves it from severe_bottleneck
    row = int8.iloc[0]
    assert row.speedup_vs_torch_fp32 > 0 and row.speedup_vs_ort_fp32 > 0
    assert (
        0 <= row.accuracy <= 1 and row.model_bits < table[table.method == "fp32"].model_bits.min()
    )
    job = res / "compress/constant/int8"
    assert (job / "model.onnx").stat().st_size == row.file_bytes
    assert not (job / "model.qsp").exists()  # not run by rule compress
    metrics = json.loads((job / "metrics.json").read_text())
    assert row.file_bytes < metrics["fp32_onnx_bytes"]
    assert metrics["int8"]["runtime_ops"].get("QLinearConv", 0) > 0
    assert (job / "plot.png").read_bytes()[:4] == b"\x89PNG"
    details = pd.read_csv(job / "details.tsv", sep="\t")
    assert {"latency", "size", "runtime_ops"} <= set(details.section)
    # int8 methods are not scanned as packed models
    assert not list((res / "scan").glob("*/int8/*"))
    # comparison across methods: every summary row is among the variants, plus the other variants
    variants = pd.read_csv(res / "compare/variants.tsv", sep="\t")
    assert set(zip(table.scenario, table.method, strict=True)) <= set(
        zip(variants.scenario, variants.method, strict=True)
    )
    assert variants.primary.sum() == len(table)
    assert {"fp32", "int8", "mixed"} <= set(variants.family)
    for app in ("sweeps", "viral"):
        out = workdir / "results" / app / "compare"
        for png in ("pareto.png", "density.png"):
            assert (out / png).read_bytes()[:4] == b"\x89PNG"
    viral = pd.read_csv(workdir / "results/viral/compare/variants.tsv", sep="\t")
    assert "fp32" in set(viral.method)


def test_ternary_and_pruning_methods(workdir):
    res = workdir / "results" / "sweeps"
    table = pd.read_csv(res / "summary.tsv", sep="\t").set_index("method")
    fp32_bits = table.loc["fp32", "model_bits"]
    for method in ("ttq", "attq", "dorefa", "q_then_p_iter_g1.0", "p_then_q_epochs_g1.0"):
        row = table.loc[method]
        assert row.scenario == "constant" and 0 <= row.accuracy <= 1
        assert (
            row.model_bits < fp32_bits and 0 < row.weights_mbit < table.loc["fp32", "weights_mbit"]
        )
    assert table.loc["q_then_p_iter_g1.0", "density"] < 1.0  # gamma x sigma pruning removed weights
    assert table.loc["fp32", "density"] == pytest.approx(1.0)
    details = pd.read_csv(res / "compress/constant/attq/details.tsv", sep="\t")
    assert {"trace_per_weight", "hessian_selected"} <= set(details.columns)  # Hessian, per layer


def test_viral_compressed_model_joins_summary_and_classifies(workdir):
    res = workdir / "results" / "viral"
    table = pd.read_csv(res / "summary.tsv", sep="\t")
    classes = ["Alphasatellitidae", "Anelloviridae", "Riboviria", "Tolecusatellitidae"]
    # the sweeps summary's columns, the classes' accuracies in place of acc_neutral / acc_sweep
    assert list(table.columns[:10]) == [
        "scenario",
        "method",
        "accuracy",
        "mcc",
        *(f"acc_{c}" for c in classes),
        "model_bits",
        "file_bytes",
    ]
    assert {"density", "weights_mbit", "nops_x_bits", "size_pct"} <= set(table.columns)
    assert table.scenario.tolist() == ["simulated"] * 6
    # q_then_p_iter's row is its primary variant; int8 (tiny.yaml) runs in rule compress_int8;
    # the baselines are rows too, in the same units (per record, per fragment, open set)
    methods = ["fp32", "q_then_p_iter_g1.0", "int8", "kmer3", "kmer5", "length_only"]
    assert table.method.tolist() == methods
    for col in ("open_accuracy", "frag150_accuracy", "frag150_open_accuracy", "reject_shuffled"):
        assert table[col].between(0, 1).all(), col
    assert {f"reject_{c}" for c in ("random", "other_family", "host_like", "all")} <= set(
        table.columns
    )
    assert (table.n_records == table.n_records.iloc[0]).all()  # the same records for every row
    assert table.model_bits.isna().tolist() == [False] * 3 + [True] * 3
    fp32, qp, i8 = (table.iloc[i] for i in range(3))
    assert fp32.density == 1 and 0 < qp.density < 1
    assert qp.weights_mbit < fp32.weights_mbit * qp.density / 3  # 8 of 32 bits, zeros not counted
    assert qp.nops_x_bits < fp32.nops_x_bits / 3 and 0 <= qp.accuracy <= 1
    job = res / "compress/simulated/q_then_p_iter"
    assert (job / "model.qsp").stat().st_size == qp.file_bytes < fp32.file_bytes
    metrics = json.loads((job / "metrics.json").read_text())
    assert metrics["confusion_matrix"]["classes"] == [*classes, "background"]
    assert sum(map(sum, metrics["confusion_matrix"]["rows_true_cols_pred"])) == metrics["n"]
    # apps.viral.scan.classify.model (default q_then_p_iter): the packed compressed model classifies, with
    # the open-set answer; the out-of-class test records are classified too
    out = pd.read_csv(res / "classify/simulated/q_then_p_iter/simulated_test.tsv", sep="\t")
    assert len(out) == fp32.n_records and set(out.predicted) <= {*classes, "unclassified"}
    assert {"reason", "best_class", "score", "p_background"} <= set(out.columns)
    ood = pd.read_csv(res / "classify/simulated/q_then_p_iter/simulated_ood.tsv", sep="\t")
    assert (ood.label == "unclassified").all() and len(ood) == 4 * 50
    unclassified = ood[ood.predicted == "unclassified"]
    assert set(unclassified.reason) <= {"background", "below_threshold", "too_short"}
    log = workdir / "logs/viral/classify/simulated/q_then_p_iter/simulated_test.log"
    assert "torch-packed model" in log.read_text()
    strategies = pd.read_csv(res / "openset.tsv", sep="\t")
    assert set(strategies.method) == set(methods) and strategies.configured.sum() == 6
    assert (res / "openset.png").read_bytes()[:4] == b"\x89PNG"  # each threshold's trade


def test_viral_int8_method_joins_summary_compare_and_classifies(workdir):
    res = workdir / "results" / "viral"
    table = pd.read_csv(res / "summary.tsv", sep="\t").set_index("method")
    fp32, i8 = table.loc["fp32"], table.loc["int8"]
    at = list(table.reset_index().columns).index("bits_per_layer")
    assert list(table.reset_index().columns[at + 1 : at + 3]) == [
        "speedup_vs_torch_fp32",
        "speedup_vs_ort_fp32",
    ]
    assert i8.speedup_vs_torch_fp32 > 0 and i8.speedup_vs_ort_fp32 > 0
    assert 0 <= i8.accuracy <= 1 and 0 <= i8.acc_Riboviria <= 1
    # 127,000 weights (the default's narrower CNN): the int8 ONNX file is over 3x smaller
    assert i8.file_bytes < fp32.file_bytes / 3
    assert i8.model_bits < fp32.model_bits / 3
    job = res / "compress/simulated/int8"
    assert (job / "model.onnx").stat().st_size == i8.file_bytes
    assert not (job / "model.qsp").exists()  # not run by rule compress
    metrics = json.loads((job / "metrics.json").read_text())
    classes = metrics["confusion_matrix"]["classes"]
    assert classes[0] == "Alphasatellitidae" and classes[4:] == ["background"]
    assert i8.file_bytes < metrics["fp32_onnx_bytes"] / 3
    # batch norm folded, padding fused: the four conv blocks and four dense layers run as integer
    # kernels; the 1-D input stays channels-first for torch
    ops = metrics["int8"]["runtime_ops"]
    assert ops.get("QLinearConv") == 4 and ops.get("QGemm", 0) + ops.get("QLinearMatMul", 0) == 4
    assert metrics["int8"]["latency"]["torch_channels_last"] is False
    assert metrics["int8"]["unmatched_layers"] == []
    variants = pd.read_csv(res / "compare/variants.tsv", sep="\t")
    assert {"fp32", "int8"} <= set(variants.family) and "int8" in set(variants.method)
    # apps.viral.scan.classify.model may name an int8 method: its model.onnx runs through ONNX Runtime
    target = "results/viral/classify/simulated/int8/simulated_test.tsv"
    smk(workdir, "--cores", "2", target)
    out = pd.read_csv(workdir / target, sep="\t")
    assert len(out) == fp32.n_records and set(out.predicted) <= {*classes[:4], "unclassified"}
    log = workdir / "logs/viral/classify/simulated/int8/simulated_test.log"
    assert "onnx model" in log.read_text()


def test_connectomics_trains_compresses_and_segments_blockwise(workdir):
    """EM volumes -> U-Net affinities -> packed and int8 models -> blockwise segmentation, each
    model through its engines, scored against the labels; outputs readable as OME-Zarr."""
    res = workdir / "results" / "connectomics"
    table = pd.read_csv(res / "summary.tsv", sep="\t")
    got = set(zip(table["method"], table["engine"], strict=True))
    # tiny.yaml's methods merge into config.yaml's: mixed, pruning + quantization, ternary, int8
    assert got == {
        ("fp32", "torch_fp32"),
        ("fp32", "onnx_fp32"),
        ("mixed_4bit", "packed_torch"),
        ("q_then_p", "packed_torch"),
        ("ttq", "packed_torch"),
        ("int8", "onnx_int8"),
        ("int8", "torch_int8"),
    }
    assert table["voxels_per_s"].gt(0).all() and table["accuracy"].between(0, 1).all()
    # the int8 method's two engines: each row gives its own file's bytes
    int8 = table[table["method"] == "int8"].set_index("engine")
    compress = json.loads((res / "compress/synthetic/int8/metrics.json").read_text())
    assert int8.loc["onnx_int8", "file_bytes"] == compress["file_bytes"]
    assert int8.loc["torch_int8", "file_bytes"] == compress["torch_int8_file_bytes"]
    assert abs(int8.loc["torch_int8", "accuracy"] - int8.loc["onnx_int8", "accuracy"]) < 0.05
    assert table["voi"].ge(0).all() and table["arand"].between(0, 1).all()
    fp32 = table[table["method"] == "fp32"]
    # the same model through PyTorch and ONNX Runtime: the same segmentation
    assert fp32["voi"].max() - fp32["voi"].min() < 1e-6
    packed = table[table["method"] == "mixed_4bit"].iloc[0]
    assert packed["size_pct"] < 20 and packed["file_bytes"] < fp32["file_bytes"].iloc[0]
    metrics = json.loads((res / "models/synthetic/fp32/metrics.json").read_text())
    assert {"accuracy", "balanced_accuracy", "voi", "arand"} <= set(metrics)
    from quantscan.apps.connectomics.volumes import open_volume

    scan = res / "scan" / "synthetic" / "int8" / "onnx_int8"
    with open_volume({"path": scan / "segmentation.ome.zarr", "format": "ome-zarr"}) as vol:
        assert vol.shape == (8, 64, 64) and vol.voxel_size == (40.0, 4.0, 4.0)
    import zarr

    affs = zarr.open_group(scan / "affinities.ome.zarr", mode="r")
    axes = affs.attrs["ome"]["multiscales"][0]["axes"]
    assert [a["name"] for a in axes] == ["c", "z", "y", "x"]
    assert affs["0"].shape == (3, 8, 64, 64) and affs["0"].attrs["channels"][0] == "affinity_z"
    assert 0 <= float(affs["0"][:].min()) and float(affs["0"][:].max()) <= 1
    assert (scan / "section.png").read_bytes()[:4] == b"\x89PNG"


def test_rerun_has_nothing_to_do_and_report_builds(workdir):
    out = smk(workdir, "-n")
    assert "Nothing to be done" in out.stdout
    smk(workdir, "--report", str(workdir / "report.zip"))
    assert (workdir / "report.zip").stat().st_size > 1000


def test_wrong_type_stops_before_any_job(workdir):
    (workdir / "bad.yaml").write_text("apps:\n  sweeps:\n    train:\n      epochs: ten\n")
    out = smk(workdir, "-n", configfiles=("tiny.yaml", "bad.yaml"), check=False)
    assert out.returncode != 0
    assert "apps.sweeps.train.epochs: 'ten' is not of type 'integer'" in out.stdout
    assert "Job stats" not in out.stdout  # stopped before planning any job


def test_unknown_key_and_unknown_scenario(workdir):
    (workdir / "bad.yaml").write_text("apps:\n  sweeps:\n    data:\n      imgae: {snps: 8}\n")
    out = smk(workdir, "-n", configfiles=("tiny.yaml", "bad.yaml"), check=False)
    assert out.returncode != 0
    assert "unknown config key 'imgae' under apps.sweeps.data" in out.stdout
    (workdir / "bad.yaml").write_text(
        "apps:\n  sweeps:\n    data:\n      run: [constant, bottleneck_mild]\n"
    )
    out = smk(workdir, "-n", configfiles=("tiny.yaml", "bad.yaml"), check=False)
    assert out.returncode != 0 and "unknown scenario 'bottleneck_mild'" in out.stdout


def test_old_layout_stops_before_any_job_naming_the_new_keys(workdir):
    """The former top-level sections, from a --configfile or --config, merged over the new
    layout of config/config.yaml: one error that names every old key and its new key."""
    (workdir / "old.yaml").write_text(
        "sweeps:\n  train: {epochs: 2}\n  scenarios: {constant: {}}\nscan:\n  grid_points: 10\n"
    )
    out = smk(workdir, "-n", configfiles=("tiny.yaml", "old.yaml"), check=False)
    assert out.returncode != 0 and "Job stats" not in out.stdout
    assert (
        "config key 'sweeps.train' moved to 'apps.sweeps.train'; 'sweeps.scenarios' moved to "
        "'apps.sweeps.data.scenarios'; 'scan' moved to 'apps.sweeps.scan' (see config/README.md)"
    ) in out.stdout
    out = smk(workdir, "-n", "--config", "viral={length: 300}", "compress={}", check=False)
    assert out.returncode != 0 and "Job stats" not in out.stdout
    assert (
        "config key 'viral.length' moved to 'apps.viral.data.length'; 'compress' moved to "
        "'apps.sweeps.compress'"
    ) in out.stdout


def test_slurm_profile_requests_rule_resources(workdir):
    shutil.copytree(ROOT / "workflow" / "profiles", workdir / "profiles", dirs_exist_ok=True)
    out = smk(workdir, "-n", "--forceall", "--workflow-profile", str(workdir / "profiles/slurm"))
    text = out.stdout
    jobs = re.findall(r"rule (\w+):.*?resources: ([^\n]*)", text, flags=re.S)
    resources = {rule: res for rule, res in jobs}
    assert "mem_mb=16000" in resources["train"] and "runtime=720" in resources["train"]
    assert (
        "mem_mb=2000" in resources["sweeps_simulate"]
        and "runtime=120" in resources["sweeps_simulate"]
    )
    assert "mem_mb=8000" in resources["evaluate"]
    assert "mem_mb=2000" in resources["sweeps_split"]  # profile default
    assert "tasks_per_gpu=0" in resources["sweeps_split"]


def test_corrupted_shard_fails_cleanly_without_partial_outputs(workdir):
    shard = workdir / "results/sweeps/images/constant/neutral/batch0.npz"
    shard.write_bytes(b"not an npz file at all")
    out = smk(workdir, "--cores", "2", check=False)
    assert out.returncode != 0
    log = (workdir / "logs/sweeps/split/constant.log").read_text()
    assert "batch0.npz: unreadable image shard" in log
    assert "Traceback" not in log
    data = workdir / "results/sweeps/data/constant"
    assert not any((data / f).exists() for f in ["train.npz", "val.npz", "test.npz"])
    assert not list(data.glob(".*tmp*"))
