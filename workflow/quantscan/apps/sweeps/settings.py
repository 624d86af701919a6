"""Checks and fan-out lists of the sweeps' config section (``apps.sweeps``: its ``data`` and
``compress``): which scenarios run, which have a sweep class to train on, and which compression jobs
run where. ``sw`` is the section's ``data`` (``apps.sweeps.data``) throughout."""

from __future__ import annotations

from ...errors import ConfigError


def check_sweeps(sw: dict) -> None:
    """Cross-key checks of ``apps.sweeps.data`` (the schema checks types)."""
    names = list(sw["scenarios"])
    for name in sw["run"] or []:
        if name not in sw["scenarios"]:
            raise ConfigError(
                f"config key apps.sweeps.data.run: unknown scenario {name!r}; defined: {', '.join(names)}"
            )
    if sw["haplotypes"] % 2:
        raise ConfigError(
            f"config key apps.sweeps.data.haplotypes: must be even, got {sw['haplotypes']}"
        )
    for name, spec in sw["scenarios"].items():
        spec = spec or {}
        if "island" in spec and ("bottleneck" in spec or "hotspot" in spec):
            raise ConfigError(
                f"config key apps.sweeps.data.scenarios.{name}: 'island' cannot be combined with "
                "other confounders"
            )
        b = spec.get("bottleneck")
        if b and b["end"] <= b["start"]:
            raise ConfigError(
                f"config key apps.sweeps.data.scenarios.{name}.bottleneck: end must exceed start"
            )
        if name in active_scenarios(sw) and ("demography" in spec or "bottleneck" in spec):
            _check_demography(sw, name)
        h = spec.get("hotspot")
        length = spec.get("sequence_length", sw["sequence_length"])
        # only scenarios that run must fit the region (a preset may define more than it runs)
        if h and name in active_scenarios(sw) and not 0 <= h["left"] < h["right"] <= length:
            raise ConfigError(
                f"config key apps.sweeps.data.scenarios.{name}.hotspot: need 0 <= left < right <= {length}"
            )
    trainable = sweep_scenarios(sw)
    if not trainable:
        raise ConfigError(
            "config key apps.sweeps.data.scenarios: no scenario with a sweep class to train on"
        )


def _check_demography(sw: dict, name: str) -> None:
    """Read the scenario's demography (file, stdpopsim model) and check msprime can run its sweeps, so
    a bad model or an event inside the sweep stops the run before any job."""
    from .simulate import SimParams

    params = SimParams.from_config(sw, name)
    if not params.neutral_only:
        params.check_sweep(name)


def is_neutral_only(sw: dict, name: str) -> bool:
    """Several populations at the time of sampling ('island', or such a 'demography') with the sweeps
    left to msprime (the default 'simulator'), which has no sweeps there: the scenario is simulated
    neutral only. With 'simulator: fwdpy11' or 'auto' its sweeps are simulated forward in time."""
    spec = sw["scenarios"][name] or {}
    if "island" not in spec and "demography" not in spec:
        return False
    from .simulate import SimParams

    return SimParams.from_config(sw, name).neutral_only


def active_scenarios(sw: dict) -> list[str]:
    """``apps.sweeps.data.run``, or every scenario when it is null (an empty list is refused by the schema)."""
    return list(sw["scenarios"]) if sw["run"] is None else list(sw["run"])


def sweep_scenarios(sw: dict) -> list[str]:
    """Scenarios with both classes (models are trained on these)."""
    return [n for n in active_scenarios(sw) if not is_neutral_only(sw, n)]


def neutral_scenarios(sw: dict) -> list[str]:
    """Neutral-only scenarios (structured populations): false-positive measurement."""
    return [n for n in active_scenarios(sw) if is_neutral_only(sw, n)]


def compress_jobs(settings: dict) -> list[tuple[str, str]]:
    """(scenario, method) pairs of the compression fan-out of the ``apps.sweeps`` section
    ``settings``, in config order.

    A method runs on its own ``scenarios``, else ``apps.sweeps.compress.scenarios``, else every
    trained sweep scenario. Names must be defined scenarios with a sweep class; defined ones that
    this run does not train (left out of ``apps.sweeps.data.run``) are skipped, so presets can list
    more than a run trains.
    """
    sw, cp = settings["data"], settings["compress"]
    trained = sweep_scenarios(sw)
    jobs = []
    for name, method in cp["methods"].items():
        where = (
            f"apps.sweeps.compress.methods.{name}.scenarios"
            if method.get("scenarios")
            else "apps.sweeps.compress.scenarios"
        )
        wanted = list(method.get("scenarios") or cp["scenarios"] or trained)
        for scenario in wanted:
            if scenario not in sw["scenarios"]:
                raise ConfigError(
                    f"config key {where}: unknown scenario {scenario!r}; defined: "
                    f"{', '.join(sw['scenarios'])}"
                )
            if is_neutral_only(sw, scenario):
                raise ConfigError(
                    f"config key {where}: {scenario!r} is neutral-only (no model to compress)"
                )
            if scenario in trained:
                jobs.append((scenario, name))
    return jobs
