"""quantscan.cluster: the SLURM profile's limits (largest node of the partition, status command)."""

from pathlib import Path

import pytest
from snakemake.profiles import ProfileConfigFileParser

from quantscan import cluster
from quantscan.cluster import SlurmLimits, parse_sinfo_nodes

ROOT = Path(__file__).resolve().parents[2]


SINFO = "debug*|2|7000\ndebug*|4|3000\nbig|64|500000\nbroken line\nbig|x|1\n"


def fake(sinfo=SINFO, sacct=None):
    calls = []

    def run(cmd):
        calls.append(cmd[0])
        return {"sinfo": sinfo, "sacct": sacct}[cmd[0]]

    run.calls = calls
    return run


def test_parse_sinfo_nodes_keeps_nodes_per_partition_and_the_default():
    nodes = parse_sinfo_nodes(SINFO)
    assert nodes == {
        "debug": [(2, 7000), (4, 3000)],
        "*": [(2, 7000), (4, 3000)],
        "big": [(64, 500000)],
    }


def test_default_partition_named_partition_and_sbatch_partition(capsys):
    limits = SlurmLimits.probe(env={}, run=fake())
    assert (limits.cpus, limits.memory_mb, limits.partition) == (4, 7000, None)
    assert "at most 4 CPUs and 7000 MB" in capsys.readouterr().err
    limits = SlurmLimits.probe(
        {"default-resources": {"slurm_partition": "big"}}, env={}, run=fake()
    )
    assert (limits.cpus, limits.memory_mb, limits.partition) == (64, 500000, "big")
    limits = SlurmLimits.probe({}, env={"SBATCH_PARTITION": "big"}, run=fake(), quiet=True)
    assert limits.cpus == 64
    limits = SlurmLimits.probe(
        {"default-resources": {"slurm_partition": "debug,big"}}, env={}, run=fake(), quiet=True
    )
    assert (limits.cpus, limits.memory_mb) == (64, 500000)


def test_unknown_partition_or_no_slurm_caps_nothing(capsys):
    limits = SlurmLimits.probe(
        {"default-resources": {"slurm_partition": "gpu"}}, env={}, run=fake()
    )
    assert limits.cpus is None and limits.memory_mb is None
    assert "no nodes for partition gpu" in capsys.readouterr().err
    run = fake(sinfo=None)
    limits = SlurmLimits.probe(env={}, run=run)
    assert (limits.cpus, limits.memory_mb, limits.status_command) == (None, None, None)
    assert run.calls == ["sinfo"]  # no sacct probe without SLURM
    assert "no SLURM here" in capsys.readouterr().err
    assert limits.threads("train", 8) == 8 and limits.mem_mb("train", 16000) == 16000
    assert limits.resources(["ncbi=1"]) == ["ncbi=1"] and limits.max_threads is None


def test_environment_overrides_sinfo():
    env = {cluster.ENV_THREADS: "3", cluster.ENV_MEM: "1500"}
    limits = SlurmLimits.probe(env=env, run=fake(), quiet=True)
    assert (limits.cpus, limits.memory_mb) == (3, 1500)
    limits = SlurmLimits.probe(env={cluster.ENV_MEM: "1500"}, run=fake(sinfo=None), quiet=True)
    assert (limits.cpus, limits.memory_mb) == (None, 1500)
    for bad in ("two", "0"):
        with pytest.raises(ValueError, match=cluster.ENV_THREADS):
            SlurmLimits.probe(env={cluster.ENV_THREADS: bad}, run=fake(), quiet=True)


def test_caps_name_the_rule(capsys):
    limits = SlurmLimits.probe(env={}, run=fake(), quiet=True)
    assert limits.threads("train", 8) == 4 and limits.threads("x", 2) == 2
    assert limits.mem_mb("train", 16000) == 7000 and limits.mem_mb("x", 2000) == 2000
    assert capsys.readouterr().err == ""  # quiet
    limits = SlurmLimits.probe(env={}, run=fake())
    capsys.readouterr()
    limits.threads("train", 8)
    limits.mem_mb("train", 16000)
    err = capsys.readouterr().err
    assert "rule train: 8 threads capped to 4" in err
    assert "rule train: mem_mb 16000 capped to 7000" in err
    assert limits.resources(["ncbi=1"]) == ["ncbi=1", "mem_mb=7000"] and limits.max_threads == 4


def test_status_command_follows_accounting():
    assert SlurmLimits.probe(env={}, run=fake(sacct=None), quiet=True).status_command == "squeue"
    assert SlurmLimits.probe(env={}, run=fake(sacct=""), quiet=True).status_command == "sacct"


def test_profile_renders_capped_settings(monkeypatch):
    """The shipped profile, read as Snakemake reads it, on a cluster of 2-CPU, 6000 MB nodes."""
    monkeypatch.setattr(cluster, "_run", fake(sinfo="debug*|2|6000\n", sacct=None))
    for var in (cluster.ENV_THREADS, cluster.ENV_MEM, "SBATCH_PARTITION"):
        monkeypatch.delenv(var, raising=False)
    path = ROOT / "workflow" / "profiles" / "slurm" / "config.yaml"
    with open(path) as fh:
        args = ProfileConfigFileParser().parse(fh)
    assert args["executor"] == "slurm" and int(args["retries"]) >= 1
    assert args["max-threads"] == "2"
    assert args["resources"] == ["ncbi=1", "mem_mb=6000"]
    assert args["slurm-status-command"] == "squeue"
    assert "train=2" in args["set-threads"] and "scan_region=2" in args["set-threads"]
    assert "train:mem_mb=6000" in args["set-resources"]
    assert "sweeps_simulate:mem_mb=2000" in args["set-resources"]
    assert "__use_yte__" not in args and "node" not in args


def test_profile_reads_its_partition(monkeypatch, tmp_path):
    """A partition filled in under default-resources is the one whose nodes cap the requests."""
    monkeypatch.setattr(cluster, "_run", fake(sacct=""))
    for var in (cluster.ENV_THREADS, cluster.ENV_MEM, "SBATCH_PARTITION"):
        monkeypatch.delenv(var, raising=False)
    text = (ROOT / "workflow" / "profiles" / "slurm" / "config.yaml").read_text()
    assert '# slurm_partition: "CHANGE_ME"' in text
    path = tmp_path / "config.yaml"
    path.write_text(text.replace('# slurm_partition: "CHANGE_ME"', 'slurm_partition: "big"'))
    with open(path) as fh:
        args = ProfileConfigFileParser().parse(fh)
    assert "slurm_partition=big" in args["default-resources"]
    assert args["max-threads"] == "64" and args["slurm-status-command"] == "sacct"
    assert "train=8" in args["set-threads"]
    assert "train:mem_mb=16000" in args["set-resources"]
