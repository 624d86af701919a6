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
    cmd = [*SNAKEMAKE, "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir)]
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
    assert list((workdir / "results/benchmarks/rules/sweeps/train").rglob("*.tsv"))


def test_rerun_has_nothing_to_do_and_report_builds(workdir):
    out = smk(workdir, "-n")
    assert "Nothing to be done" in out.stdout
    smk(workdir, "--report", str(workdir / "report.zip"))
    assert (workdir / "report.zip").stat().st_size > 1000


def test_wrong_type_stops_before_any_job(workdir):
    (workdir / "bad.yaml").write_text("sweeps:\n  train:\n    epochs: ten\n")
    out = smk(workdir, "-n", configfiles=("tiny.yaml", "bad.yaml"), check=False)
    assert out.returncode != 0
    assert "sweeps.train.epochs: 'ten' is not of type 'integer'" in out.stdout
    assert "Job stats" not in out.stdout  # stopped before planning any job


def test_unknown_key_and_unknown_scenario(workdir):
    (workdir / "bad.yaml").write_text("sweeps:\n  imgae: {snps: 8}\n")
    out = smk(workdir, "-n", configfiles=("tiny.yaml", "bad.yaml"), check=False)
    assert out.returncode != 0 and "unknown config key 'imgae' under sweeps" in out.stdout
    (workdir / "bad.yaml").write_text("sweeps:\n  run: [constant, bottleneck_mild]\n")
    out = smk(workdir, "-n", configfiles=("tiny.yaml", "bad.yaml"), check=False)
    assert out.returncode != 0 and "unknown scenario 'bottleneck_mild'" in out.stdout


def test_slurm_profile_requests_rule_resources(workdir):
    shutil.copytree(ROOT / "workflow" / "profiles", workdir / "profiles", dirs_exist_ok=True)
    out = smk(workdir, "-n", "--forceall", "--workflow-profile", str(workdir / "profiles/slurm"))
    text = out.stdout
    jobs = re.findall(r"rule (\w+):.*?resources: ([^\n]*)", text, flags=re.S)
    resources = {rule: res for rule, res in jobs}
    assert (
        "mem_mb=16000" in resources["sweeps_train"] and "runtime=720" in resources["sweeps_train"]
    )
    assert (
        "mem_mb=2000" in resources["sweeps_simulate"]
        and "runtime=120" in resources["sweeps_simulate"]
    )
    assert "mem_mb=8000" in resources["sweeps_evaluate"]
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
