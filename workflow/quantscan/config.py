"""Configuration validation: JSON Schema (draft 2020-12) with defaults, then cross-key checks.

Errors name the key (``sweeps.train.epochs``) so a wrong type or an unknown key stops the run before any
job with a message a user can act on.
"""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import yaml

from .errors import ConfigError

SCHEMA = Path(__file__).resolve().parents[2] / "config" / "schema.yaml"


def load_schema(path: str | Path = SCHEMA) -> dict:
    with open(path) as fh:
        return yaml.safe_load(fh)


def _resolve(schema: dict, root: dict) -> dict:
    ref = schema.get("$ref")
    if ref:
        node = root
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        return _resolve(node, root)
    return schema


def fill_defaults(instance, schema: dict, root: dict | None = None):
    """Recursively insert schema defaults for missing object properties (objects default to {})."""
    root = root or schema
    schema = _resolve(schema, root)
    if not isinstance(instance, dict) or schema.get("type") != "object":
        return instance
    for key, sub in schema.get("properties", {}).items():
        sub_r = _resolve(sub, root)
        # a default next to a $ref wins over the referenced schema's own
        default_from = sub if "default" in sub else sub_r
        if key not in instance and "default" in default_from:
            instance[key] = copy.deepcopy(default_from["default"])
        if key in instance:
            fill_defaults(instance[key], sub_r, root)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for key, value in instance.items():
            if key not in schema.get("properties", {}):
                fill_defaults(value, extra, root)
    # tagged unions (e.g. compress methods by 'type'): defaults of the branch whose 'if' matches
    for branch in schema.get("allOf", []):
        if "if" in branch and "then" in branch:
            test = jsonschema.Draft202012Validator({**branch["if"], "$defs": root.get("$defs", {})})
            if test.is_valid(instance):
                fill_defaults(instance, branch["then"], root)
    return instance


def _key_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "<top level>"


def _message(error: jsonschema.ValidationError) -> str:
    where = _key_path(error)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        scope = f"under {where}" if error.absolute_path else "at the top level"
        hint = f"; allowed: {', '.join(allowed)}" if allowed else ""
        return f"unknown config key {', '.join(repr(e) for e in extra)} {scope}{hint}"
    if error.validator == "type":
        return f"config key {where}: {error.instance!r} is not of type {error.validator_value!r}"
    if error.validator == "minItems" and error.instance == []:
        return (
            f"config key {where}: an empty list is not allowed (it would read as 'all' to some "
            "and 'none' to others); leave the key out (or null) for the default, or list the items"
        )
    return f"config key {where}: {error.message}"


def validate(config: dict, schema: dict | None = None) -> dict:
    """Return a validated copy of ``config`` with defaults filled; raise ``ConfigError`` otherwise."""
    schema = schema or load_schema()
    config = fill_defaults(copy.deepcopy(dict(config)), schema)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    # a failing tagged-union branch also reports its keys as unevaluated: keep the deeper error only
    deeper = [list(e.absolute_path) for e in errors]
    errors = [
        e
        for e in errors
        if e.validator != "unevaluatedProperties"
        or not any(
            len(p) > len(e.absolute_path) and p[: len(e.absolute_path)] == list(e.absolute_path)
            for p in deeper
        )
    ]
    if errors:
        lines = [_message(e) for e in errors]
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))
    _check_sweeps(config["sweeps"])
    if "compress" in config:
        compress_jobs(config)  # checks the scenario names
    return config


def _check_sweeps(sw: dict) -> None:
    names = list(sw["scenarios"])
    for name in sw["run"] or []:
        if name not in sw["scenarios"]:
            raise ConfigError(
                f"config key sweeps.run: unknown scenario {name!r}; defined: {', '.join(names)}"
            )
    if sw["haplotypes"] % 2:
        raise ConfigError(f"config key sweeps.haplotypes: must be even, got {sw['haplotypes']}")
    for name, spec in sw["scenarios"].items():
        spec = spec or {}
        if "island" in spec and ("bottleneck" in spec or "hotspot" in spec):
            raise ConfigError(
                f"config key sweeps.scenarios.{name}: 'island' cannot be combined with other confounders"
            )
        b = spec.get("bottleneck")
        if b and b["end"] <= b["start"]:
            raise ConfigError(
                f"config key sweeps.scenarios.{name}.bottleneck: end must exceed start"
            )
        if name in active_scenarios(sw) and ("demography" in spec or "bottleneck" in spec):
            _check_demography(sw, name)
        h = spec.get("hotspot")
        length = spec.get("sequence_length", sw["sequence_length"])
        # only scenarios that run must fit the region (a preset may define more than it runs)
        if h and name in active_scenarios(sw) and not 0 <= h["left"] < h["right"] <= length:
            raise ConfigError(
                f"config key sweeps.scenarios.{name}.hotspot: need 0 <= left < right <= {length}"
            )
    trainable = sweep_scenarios(sw)
    if not trainable:
        raise ConfigError("config key sweeps.scenarios: no scenario with a sweep class to train on")


def _check_demography(sw: dict, name: str) -> None:
    """Read the scenario's demography (file, stdpopsim model) and check msprime can run its sweeps, so
    a bad model or an event inside the sweep stops the run before any job."""
    from .sweeps.simulate import SimParams

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
    from .sweeps.simulate import SimParams

    return SimParams.from_config(sw, name).neutral_only


def active_scenarios(sw: dict) -> list[str]:
    """``sweeps.run``, or every scenario when it is null (an empty list is refused by the schema)."""
    return list(sw["scenarios"]) if sw["run"] is None else list(sw["run"])


def sweep_scenarios(sw: dict) -> list[str]:
    """Scenarios with both classes (models are trained on these)."""
    return [n for n in active_scenarios(sw) if not is_neutral_only(sw, n)]


def neutral_scenarios(sw: dict) -> list[str]:
    """Neutral-only scenarios (structured populations): false-positive measurement."""
    return [n for n in active_scenarios(sw) if is_neutral_only(sw, n)]


def compress_jobs(config: dict) -> list[tuple[str, str]]:
    """(scenario, method) pairs of the compression fan-out, in config order.

    A method runs on its own ``scenarios``, else ``compress.scenarios``, else every trained sweep
    scenario. Names must be defined scenarios with a sweep class; defined ones that this run does not
    train (left out of ``sweeps.run``) are skipped, so presets can list more than a run trains.
    """
    sw, cp = config["sweeps"], config["compress"]
    trained = sweep_scenarios(sw)
    jobs = []
    for name, method in cp["methods"].items():
        where = (
            f"compress.methods.{name}.scenarios"
            if method.get("scenarios")
            else "compress.scenarios"
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
