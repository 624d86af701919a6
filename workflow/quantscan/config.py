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
    # each application checks what a schema cannot (names that refer to each other, files)
    from .apps import enabled

    for app in enabled(config).values():
        app.check()
    return config
