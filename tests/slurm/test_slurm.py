"""The workflow on a real SLURM, through ``--workflow-profile workflow/profiles/slurm``.

tests/slurm/start.sh installs (Debian packages) and starts a private single-node SLURM sized from
nproc and /proc/meminfo; a small target set (training, and the genome scan's region jobs) runs through
the profile as a user would type it, while the test cancels the training job with ``scancel``. Then:
every job went through sbatch (the controller's job completion log and the plugin's logs), each job's
CPUs and memory in SLURM are those Snakemake asked for, the profile's per-rule values capped to the
node, the cancelled job was retried, the outputs equal those of a local run of the same configuration,
and a rerun submits nothing. tests/slurm/stop.sh stops the cluster.

Opt-in (it installs packages and runs daemons as root): ``QUANTSCAN_SLURM_TEST=1``, as .ci/run sets
it. Without root or the packages it is skipped, with the reason.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
PROFILE = ROOT / "workflow" / "profiles" / "slurm"
SCAN = "results/sweeps/scan/regions/simulated/fp32/torch_fp32/chrSim.region{}.tsv"
TARGETS = ["results/sweeps/models/constant/fp32/model.pt", SCAN.format(0), SCAN.format(1)]
#: the rule whose job is cancelled while it runs
KILLED = "train"
TIMEOUT = 600


def _profile_asks(rules=("train", "scan_region")) -> dict[str, tuple[int, int | None]]:
    """Threads and mem_mb (None: the rule's own) the profile asks for, before its caps."""
    text = (PROFILE / "config.yaml").read_text()
    threads = dict(re.findall(r'\?node\.threads\("(\w+)", (\d+)\)', text))
    mem = dict(re.findall(r'\?node\.mem_mb\("(\w+)", (\d+)\)', text))
    return {r: (int(threads[r]), int(mem[r]) if r in mem else None) for r in rules}


#: what the profile asks for the training and scan jobs: threads, mem_mb
PROFILE_ASKS = _profile_asks()

pytestmark = pytest.mark.workflow


def _env():
    env = dict(os.environ)
    for var in ("QUANTSCAN_MAX_THREADS", "QUANTSCAN_MAX_MEM_MB", "SBATCH_PARTITION"):
        env.pop(var, None)
    return env


def _workdir(path: Path) -> Path:
    (path / "config").mkdir(parents=True)
    shutil.copy(ROOT / "config" / "config.yaml", path / "config" / "config.yaml")
    shutil.copy(ROOT / "tests" / "workflow" / "tiny.yaml", path / "tiny.yaml")
    shutil.copy(HERE / "slurm.yaml", path / "slurm.yaml")
    return path


def _snakemake(workdir: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "snakemake",
        *TARGETS,
        "--snakefile",
        str(ROOT / "workflow" / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(workdir / "tiny.yaml"),
        str(workdir / "slurm.yaml"),
        *args,
    ]


def _slurm_args() -> list[str]:
    """The profile as a user runs it, plus test settings: no account on this cluster, keep the
    plugin's logs of successful jobs (one per sbatch), and a short first status check (default
    40 s; the plugin waits 10 s longer after every check that finds no job finished, so checks at
    5, 20, 45 s suit these 8-20 s jobs better than 1, 12, 33 s)."""
    return [
        "--workflow-profile",
        str(PROFILE),
        "--slurm-no-account",
        "--slurm-keep-successful-logs",
        "--slurm-init-seconds-before-status-checks",
        "5",
    ]


class Cluster:
    def __init__(self, directory: Path, cpus: int, mem_mb: int):
        self.dir, self.cpus, self.mem_mb = directory, cpus, mem_mb

    def jobs(self, workdir: Path) -> dict[str, dict[str, str]]:
        """Finished jobs run in ``workdir``, by SLURM job id, from the job completion log."""
        path = self.dir / "log" / "jobcomp.txt"
        out = {}
        for line in path.read_text().splitlines() if path.exists() else []:
            fields = dict(re.findall(r"(\w+)=(\S*)", line))
            if fields.get("WorkDir") == str(workdir):
                out[fields["JobId"]] = fields
        return out


@pytest.fixture(scope="module")
def cluster():
    if os.environ.get("QUANTSCAN_SLURM_TEST") != "1":
        pytest.skip(
            "SLURM test is opt-in (it installs slurm-wlm and munge and runs their daemons as "
            "root): run with QUANTSCAN_SLURM_TEST=1, as .ci/run does"
        )
    directory = Path(os.environ.get("QUANTSCAN_SLURM_DIR", "/tmp/quantscan-slurm"))
    t0 = time.monotonic()
    proc = subprocess.run(
        ["bash", str(HERE / "start.sh")],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=_env(),
    )
    if proc.returncode == 77:
        reasons = [ln[5:].strip() for ln in proc.stderr.splitlines() if ln.startswith("SKIP:")]
        pytest.skip(f"SLURM test skipped: {'; '.join(reasons) or proc.stderr.strip()}")
    if proc.returncode != 0:
        subprocess.run(["bash", str(HERE / "stop.sh")], capture_output=True, timeout=120)
        pytest.fail(f"tests/slurm/start.sh failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    from quantscan.cluster import SlurmLimits

    node = SlurmLimits.probe(env=_env(), quiet=True)
    assert node.cpus and node.memory_mb, "sinfo does not show the test cluster's node"
    print(f"cluster started in {time.monotonic() - t0:.0f} s: {proc.stderr.strip()}")
    try:
        yield Cluster(directory, node.cpus, node.memory_mb)
    finally:
        subprocess.run(
            ["bash", str(HERE / "stop.sh")], capture_output=True, timeout=120, env=_env()
        )


def _capped_threads(cluster: Cluster) -> dict[str, int]:
    return {rule: min(threads, cluster.cpus) for rule, (threads, _) in PROFILE_ASKS.items()}


def _local_run(cluster: Cluster, workdir: Path, log) -> subprocess.Popen:
    """The same configuration and targets on the local executor, with the threads the SLURM jobs
    get (thread counts change floating-point summation order); it runs beside the SLURM run."""
    threads = [f"{r}={n}" for r, n in _capped_threads(cluster).items()]
    return subprocess.Popen(
        _snakemake(workdir, "--cores", str(cluster.cpus), "--set-threads", *threads),
        stdout=log,
        stderr=subprocess.STDOUT,
        env=_env(),
    )


def _cancel_when_running(rule: str, stop: threading.Event, cancelled: list[str]) -> None:
    """scancel the first job of ``rule`` seen running (the plugin's comment names the rule)."""
    while not stop.is_set():
        out = subprocess.run(
            ["squeue", "-h", "-o", "%i|%T|%k"], capture_output=True, text=True, env=_env()
        ).stdout
        for line in out.splitlines():
            jobid, state, comment = (line.split("|") + ["", ""])[:3]
            if state == "RUNNING" and comment.startswith(f"rule_{rule}_"):
                subprocess.run(["scancel", jobid], check=True, env=_env())
                cancelled.append(jobid)
                return
        time.sleep(0.3)


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory):
    """The SLURM run (scancelling the training job once it runs) and, beside it, the local run."""
    slurm_dir = _workdir(tmp_path_factory.mktemp("slurm"))
    local_dir = _workdir(tmp_path_factory.mktemp("local"))
    cancelled: list[str] = []
    stop = threading.Event()
    watcher = threading.Thread(target=_cancel_when_running, args=(KILLED, stop, cancelled))
    t0 = time.monotonic()
    watcher.start()
    local_log_path = local_dir.parent / f"{local_dir.name}.log"
    with open(local_log_path, "w") as local_log_file:
        local = _local_run(cluster, local_dir, local_log_file)
        try:
            proc = subprocess.run(
                _snakemake(slurm_dir, *_slurm_args()),
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
                env=_env(),
            )
            print(f"SLURM run: {time.monotonic() - t0:.0f} s")
            local.wait(timeout=TIMEOUT)
        finally:
            stop.set()
            watcher.join()
            local.kill()
    print(f"SLURM and local runs: {time.monotonic() - t0:.0f} s")
    local_log = local_log_path.read_text()
    log = proc.stdout + proc.stderr
    assert local.returncode == 0, f"the local run failed:\n{local_log[-8000:]}"
    assert proc.returncode == 0, f"the SLURM run failed:\n{log[-8000:]}"
    return {"slurm": (slurm_dir, log, cancelled), "local": (local_dir, local_log)}


@pytest.fixture(scope="module")
def slurm_run(runs):
    return runs["slurm"]


@pytest.fixture(scope="module")
def local_run(runs):
    return runs["local"]


def _plugin_logs(workdir: Path) -> dict[str, str]:
    """SLURM job id -> rule, from the plugin's logs (.snakemake/slurm_logs/rule_<rule>/.../<id>.log)."""
    logs = workdir / ".snakemake" / "slurm_logs"
    return {p.stem: p.relative_to(logs).parts[0].removeprefix("rule_") for p in logs.rglob("*.log")}


def _asked(log: str) -> dict[str, tuple[int, int]]:
    """SLURM job id -> (threads, mem_mb) Snakemake asked for, from the main process's log."""
    out, asked = {}, {}
    job = r"^rule \w+:\n(?P<body>(?:    .*\n)+)"
    sub = r"^Job (?P<job>\d+) has been submitted with SLURM jobid (?P<slurm>\d+)"
    for m in re.finditer(f"{job}|{sub}", log, flags=re.M):
        if m.group("body"):
            body = m.group("body")
            jobid = re.search(r"^\s+jobid: (\d+)", body, flags=re.M).group(1)
            threads = re.search(r"^\s+threads: (\d+)", body, flags=re.M)
            mem = re.search(r"\bmem_mb=(\d+)", body)
            asked[jobid] = (int(threads.group(1)) if threads else 1, int(mem.group(1)))
        else:
            out[m.group("slurm")] = asked[m.group("job")]
    return out


def _tres_mem_mb(tres: str) -> int:
    value, unit = re.search(r"mem=([\d.]+)([KMGT]?)", tres).groups()
    return round(float(value) * {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024**2, "": 1}[unit])


def test_every_job_went_through_sbatch(cluster, local_run, slurm_run):
    workdir, log, cancelled = slurm_run
    local_rules = Counter(re.findall(r"^localrule (\w+):", local_run[1], flags=re.M))
    assert sum(local_rules.values()) == 10, local_rules
    assert not re.search(r"^localrule ", log, flags=re.M), "a job ran on the submit host"
    submitted = _plugin_logs(workdir)
    finished = cluster.jobs(workdir)
    # one sbatch per job, and one more for the cancelled job's retry
    expected = local_rules + Counter({KILLED: 1})
    assert Counter(submitted.values()) == expected
    assert set(finished) == set(submitted), "SLURM's and the plugin's job lists differ"
    states = Counter(job["JobState"] for job in finished.values())
    assert states == Counter({"COMPLETED": sum(expected.values()) - 1, "CANCELLED": 1}), states


def test_scancelled_job_is_retried(cluster, slurm_run):
    workdir, log, cancelled = slurm_run
    assert len(cancelled) == 1, f"no running {KILLED} job was seen to cancel"
    finished = cluster.jobs(workdir)
    assert finished[cancelled[0]]["JobState"] == "CANCELLED"
    rules = _plugin_logs(workdir)
    retries = [j for j, r in rules.items() if r == KILLED and j != cancelled[0]]
    assert len(retries) == 1 and finished[retries[0]]["JobState"] == "COMPLETED"
    assert int(retries[0]) > int(cancelled[0])
    assert "Trying to restart job" in log
    assert (workdir / TARGETS[0]).exists()


def test_rule_resources_reached_slurm(cluster, slurm_run):
    workdir, log, _ = slurm_run
    finished, rules, asked = cluster.jobs(workdir), _plugin_logs(workdir), _asked(log)
    assert set(asked) == set(finished), "a submitted job without its resources in the log"
    got = {
        j: (int(job["ProcCnt"]), _tres_mem_mb(job["Tres"]), rules[j]) for j, job in finished.items()
    }
    for j, (cpus, mem, rule) in got.items():
        assert (cpus, mem) == asked[j], f"{rule} (SLURM job {j}): SLURM gave {cpus, mem}"
    threads = _capped_threads(cluster)
    for rule, (_, mem_mb) in PROFILE_ASKS.items():
        jobs = [(cpus, mem) for cpus, mem, r in got.values() if r == rule]
        assert jobs, rule
        for cpus, mem in jobs:
            assert cpus == threads[rule], (rule, cpus)
            assert cpus <= cluster.cpus and mem <= cluster.mem_mb, (rule, cpus, mem)
            if mem_mb is not None:
                assert mem == min(mem_mb, cluster.mem_mb), (rule, mem)
            else:  # the rule's own memory: scan_mem(2000, 10 per MB of input)
                assert 2000 <= mem < 2200, (rule, mem)
    if cluster.cpus < 8:
        assert f"rule {KILLED}: 8 threads capped to {cluster.cpus}" in log


def _strip_timings(obj):
    if isinstance(obj, dict):
        return {
            k: _strip_timings(v)
            for k, v in obj.items()
            if k not in ("seconds", "timings", "windows_per_s")
        }
    if isinstance(obj, list):
        return [_strip_timings(v) for v in obj]
    return obj


def _same(a: Path, b: Path) -> bool:
    """Equal outputs, but for timings (and the model file's zip layout and tskit provenance)."""
    if a.read_bytes() == b.read_bytes():
        return True
    if a.suffix == ".json":
        return _strip_timings(json.loads(a.read_text())) == _strip_timings(
            json.loads(b.read_text())
        )
    if a.name == "history.tsv":  # the last column is seconds per epoch
        rows = [[ln.split("\t")[:-1] for ln in p.read_text().splitlines()] for p in (a, b)]
        return rows[0] == rows[1]
    if a.suffix == ".pt":
        import torch

        x, y = (torch.load(p, map_location="cpu", weights_only=False) for p in (a, b))
        sx, sy = x.pop("state_dict"), y.pop("state_dict")
        return x == y and sx.keys() == sy.keys() and all(torch.equal(sx[k], sy[k]) for k in sx)
    if a.suffix == ".npz":
        with np.load(a) as x, np.load(b) as y:
            if x.files != y.files:
                return False
            for k in x.files:
                if k == "info":
                    if _strip_timings(json.loads(str(x[k]))) != _strip_timings(
                        json.loads(str(y[k]))
                    ):
                        return False
                elif not np.array_equal(x[k], y[k], equal_nan=x[k].dtype.kind == "f"):
                    return False
            return True
    if a.suffix == ".trees":
        import tskit

        return tskit.load(a).tables.equals(tskit.load(b).tables, ignore_provenance=True)
    return False


def test_outputs_match_a_local_run(local_run, slurm_run):
    local, slurm = local_run[0] / "results", slurm_run[0] / "results"
    files = sorted(
        p.relative_to(local)
        for p in local.rglob("*")
        if p.is_file() and "benchmarks" not in p.relative_to(local).parts
    )
    assert len(files) >= 15 and Path(TARGETS[0]).relative_to("results") in files
    missing = [f for f in files if not (slurm / f).is_file()]
    assert not missing, f"missing from the SLURM run: {missing}"
    differ = [str(f) for f in files if not _same(local / f, slurm / f)]
    assert not differ, f"SLURM and local outputs differ: {differ}"


def test_rerun_submits_nothing(cluster, slurm_run):
    workdir, _, _ = slurm_run
    before = set(cluster.jobs(workdir)), set(_plugin_logs(workdir))
    proc = subprocess.run(
        _snakemake(workdir, *_slurm_args()),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=_env(),
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "Nothing to be done" in log
    assert "has been submitted with SLURM jobid" not in log
    assert (set(cluster.jobs(workdir)), set(_plugin_logs(workdir))) == before
