"""What the SLURM profile (workflow/profiles/slurm/config.yaml) may ask of the cluster.

The profile is a YTE template: its ``?`` values call :meth:`SlurmLimits.probe` once, on the login
node, when Snakemake reads the profile. The limits are the largest node of the partition the jobs go
to (``slurm_partition`` of the profile's default-resources, else ``$SBATCH_PARTITION``, else the
cluster's default partition), read with ``sinfo``; the environment variables ``QUANTSCAN_MAX_THREADS``
and ``QUANTSCAN_MAX_MEM_MB`` replace them (where ``sinfo`` is not available, or to ask for less). The
profile passes them to Snakemake as ``--max-threads`` and ``--resources mem_mb=...``, which cap every
job's threads and memory (a per-job cap in cluster mode, not a sum), and caps its own per-rule values
with :meth:`SlurmLimits.threads` and :meth:`SlurmLimits.mem_mb`, naming each capped rule. A job never
asks for more than a node has, so it cannot stay pending forever (reason ``PartitionConfig``).

:meth:`SlurmLimits.status_command` picks the plugin's job-status command: ``sacct`` where accounting
answers, else ``squeue`` (with ``sacct`` but no slurmdbd the plugin would wait forever).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping

ENV_THREADS = "QUANTSCAN_MAX_THREADS"
ENV_MEM = "QUANTSCAN_MAX_MEM_MB"
#: seconds a SLURM client command may take (a stopped controller makes them retry for a while)
TIMEOUT = 20

Runner = Callable[[list[str]], "str | None"]


def _run(cmd: list[str]) -> str | None:
    """stdout of a SLURM client command, or None when it is missing, fails or hangs."""
    if shutil.which(cmd[0]) is None:
        return None
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def _say(msg: str) -> None:
    print(f"quantscan SLURM profile: {msg}", file=sys.stderr)


def _env_int(env: Mapping[str, str], name: str) -> int | None:
    value = env.get(name, "").strip()
    if not value:
        return None
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} must be a whole number") from None
    if n < 1:
        raise ValueError(f"{name}={value!r} must be at least 1")
    return n


def parse_sinfo_nodes(text: str) -> dict[str, list[tuple[int, int]]]:
    """``sinfo -h -N -o '%P|%c|%m'`` -> partition -> [(CPUs, memory MB) per node]; the default
    partition is also listed under the key ``"*"``."""
    out: dict[str, list[tuple[int, int]]] = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 3:
            continue
        name, cpus, mem = parts
        try:
            node = (int(cpus.rstrip("+")), int(mem.rstrip("+")))
        except ValueError:
            continue
        out.setdefault(name.rstrip("*"), []).append(node)
        if name.endswith("*"):
            out.setdefault("*", []).append(node)
    return out


@dataclasses.dataclass(frozen=True)
class SlurmLimits:
    """The largest node jobs may get: ``cpus`` and ``memory_mb`` (None: unknown, not capped)."""

    cpus: int | None = None
    memory_mb: int | None = None
    partition: str | None = None
    #: where the numbers come from (for the messages)
    source: str = "none"
    #: whether ``sacct`` answers (accounting through slurmdbd); None: no SLURM here
    accounting: bool | None = None
    quiet: bool = False

    @classmethod
    def probe(
        cls,
        profile: Mapping | None = None,
        env: Mapping[str, str] | None = None,
        run: Runner | None = None,
        quiet: bool = False,
    ) -> SlurmLimits:
        """Ask the cluster (``sinfo``, ``sacct``; ``run`` runs a command and returns its stdout,
        None when it fails) and the environment; say what was found. ``profile``: the profile's
        settings read so far (YTE's ``doc``), for ``default-resources: slurm_partition``."""
        env = os.environ if env is None else env
        run = run or _run
        profile = profile or {}
        res = profile["default-resources"] if "default-resources" in profile else {}
        partition = res["slurm_partition"] if "slurm_partition" in res else None
        partition = str(partition or env.get("SBATCH_PARTITION") or "") or None

        cpus = mem = None
        source = "none"
        text = run(["sinfo", "-h", "-N", "-o", "%P|%c|%m"])
        if text is not None:
            nodes = parse_sinfo_nodes(text)
            names = partition.split(",") if partition else ["*"]
            found = [n for name in names for n in nodes.get(name.strip(), [])]
            if found:
                cpus, mem = max(c for c, _ in found), max(m for _, m in found)
                where = f"partition {partition}" if partition else "the default partition"
                source = f"sinfo: largest node of {where}"
            elif not quiet:
                _say(
                    f"sinfo lists no nodes for partition {partition or '(default)'}: "
                    f"requests are not capped (partitions: {', '.join(sorted(nodes)) or 'none'})"
                )
        env_cpus, env_mem = _env_int(env, ENV_THREADS), _env_int(env, ENV_MEM)
        if env_cpus is not None or env_mem is not None:
            source = f"{ENV_THREADS}/{ENV_MEM}" + (f", else {source}" if cpus or mem else "")
            cpus = env_cpus if env_cpus is not None else cpus
            mem = env_mem if env_mem is not None else mem

        accounting = None
        if text is not None:
            accounting = run(["sacct", "-X", "-n", "-S", "now", "-o", "JobID"]) is not None
        limits = cls(cpus, mem, partition, source, accounting, quiet)
        if not quiet:
            if cpus or mem:
                _say(
                    f"jobs get at most {cpus or 'any number of'} CPUs and {mem or 'any'} MB "
                    f"({source}; --max-threads, --resources mem_mb)"
                )
            elif text is None:
                _say(
                    f"no SLURM here (sinfo): requests are not capped (set {ENV_THREADS}, {ENV_MEM})"
                )
            if accounting is False:
                _say("sacct does not answer (no accounting database): job status from squeue")
        return limits

    @property
    def status_command(self) -> str | None:
        """The plugin's ``--slurm-status-command``: sacct with accounting, else squeue."""
        if self.accounting is None:
            return None
        return "sacct" if self.accounting else "squeue"

    @property
    def max_threads(self) -> int | None:
        return self.cpus

    def resources(self, extra: list[str] | tuple[str, ...] = ()) -> list[str]:
        """``--resources``: ``extra`` plus ``mem_mb=`` the node's memory (a per-job cap)."""
        return [*extra, *([f"mem_mb={self.memory_mb}"] if self.memory_mb else [])]

    def threads(self, rule: str, n: int) -> int:
        """A rule's threads, at most the node's CPUs (saying so when it caps)."""
        if self.cpus and n > self.cpus:
            if not self.quiet:
                _say(f"rule {rule}: {n} threads capped to {self.cpus} ({self.source})")
            return self.cpus
        return n

    def mem_mb(self, rule: str, mb: int) -> int:
        """A rule's memory in MB, at most the node's (saying so when it caps)."""
        if self.memory_mb and mb > self.memory_mb:
            if not self.quiet:
                _say(f"rule {rule}: mem_mb {mb} capped to {self.memory_mb} ({self.source})")
            return self.memory_mb
        return mb
