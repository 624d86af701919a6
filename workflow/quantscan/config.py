"""Configuration validation: JSON Schema (draft 2020-12) with defaults, then cross-key checks.

Errors name the key (``apps.sweeps.train.epochs``) so a wrong type or an unknown key stops the run
before any job with a message a user can act on; so does a key of the former layout (top-level
``sweeps``, ``viral``, ``compress``, ``scan``: :func:`check_moved_keys`).
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


#: the former top-level sections whose keys moved as a whole, and where to
_MOVED_SECTIONS = {"compress": "apps.sweeps.compress", "scan": "apps.sweeps.scan"}
#: the former ``sweeps`` keys that did not move into ``apps.sweeps.data``
_MOVED_SWEEPS = {"model": "apps.sweeps.model", "train": "apps.sweeps.train"}
#: where each former ``viral`` key moved
_MOVED_VIRAL = {
    **{
        k: f"apps.viral.data.{k}"
        for k in ("source", "length", "stride", "validation", "simulate", "ncbi", "local", "split")
    },
    **{k: f"apps.viral.scan.{k}" for k in ("combine", "openset", "classify")},
    **{k: f"apps.viral.{k}" for k in ("model", "train", "compress", "evaluate")},
    "augment": "apps.viral.train.augment",
}


def check_moved_keys(config: dict) -> None:
    """Refuse a config in the former layout (top-level ``sweeps``, ``viral``, ``compress``,
    ``scan``), naming every such key and its new place in ``apps.<app>``, before any job."""
    moves = []
    for top, section in config.items():
        if top in _MOVED_SECTIONS:
            moves.append((top, _MOVED_SECTIONS[top]))
        elif top in ("sweeps", "viral") and isinstance(section, dict) and section:
            for key in section:
                if top == "sweeps":
                    new = _MOVED_SWEEPS.get(key, f"apps.sweeps.data.{key}")
                else:
                    new = _MOVED_VIRAL.get(key, f"apps.viral.{key}")
                moves.append((f"{top}.{key}", new))
        elif top in ("sweeps", "viral"):
            moves.append((top, f"apps.{top}"))
    if moves:
        listed = "; ".join(f"{old!r} moved to {new!r}" for old, new in moves)
        raise ConfigError(f"config key {listed} (see config/README.md)")


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
    check_moved_keys(config)
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
    # each application checks what a schema cannot (names that refer to each other, files)
    from .apps import enabled

    for app in enabled(config).values():
        app.check()
    return config
