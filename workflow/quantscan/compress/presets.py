"""Layer presets: named per-layer configurations ``{name: {module: spec}}`` that the caller of the
compression engine defines and passes in (``methods.run_method(..., layer_presets=...)``); the engine
defines none. A method's configuration entry may name one wherever a configuration is expected.

No torch here: a workflow checks the preset names of its method configs before any job runs
(:func:`check_presets`).
"""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import ConfigError

#: per method type, the keys that take configuration entries (``methods.resolve_layers``) and how:
#: one entry, a list of entries, or a mapping of labels to entries
PRESET_KEYS: dict[str, dict[str, str]] = {
    "mixed": {"layers": "one"},
    "uniform": {"mixed": "one"},
    "auto_search": {"start_with": "list"},
    "po2_vs_auto": {"configurations": "mapping"},
}


def preset(name: str, presets: Mapping[str, Mapping] | None, method: str | None = None) -> Mapping:
    """The layer preset ``name`` of the caller's ``presets``; ConfigError naming the method and the
    known presets when there is none of that name."""
    presets = presets or {}
    if name not in presets:
        where = f"method {method!r}: " if method else ""
        known = ", ".join(sorted(presets)) or "none (the caller passed no layer presets)"
        raise ConfigError(f"{where}unknown layer preset {name!r}; known: {known}")
    return presets[name]


def preset_names(config: Mapping) -> list[str]:
    """The layer preset names a method config (defaults filled) refers to, in config order."""
    names = []
    for key, how in PRESET_KEYS.get(config["type"], {}).items():
        value = config.get(key)
        if how == "one":
            entries = [value]
        elif how == "list":
            entries = value or []
        else:
            entries = (value or {}).values()
        names += [e for e in entries if isinstance(e, str)]
    return names


def check_presets(methods: Mapping[str, Mapping], presets: Mapping[str, Mapping] | None) -> None:
    """ConfigError naming the method and the known presets for the first unknown preset name in
    ``methods`` (method name -> config with defaults filled, e.g. a validated config section)."""
    for name, config in methods.items():
        for entry in preset_names(config):
            preset(entry, presets, name)


__all__ = ["PRESET_KEYS", "check_presets", "preset", "preset_names"]
