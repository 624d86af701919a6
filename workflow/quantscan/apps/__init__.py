"""Applications: plug-ins of the engine (:class:`quantscan.apps.base.App`).

An application is found by name: ``apps.<name>.module`` in the config (a Python file or a module
name, for an application kept outside this package), else the package ``quantscan.apps.<name>``
with a module ``app`` defining ``APP``. Adding an application adds files only: its package (or
file), its config section ``apps.<name>`` and, for steps of its own, ``workflow/rules/<name>/*.smk``.

Which applications run: every section of ``apps`` in the config, in its order (the schema always
gives the built-in ``apps.sweeps`` and ``apps.viral``).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Mapping
from pathlib import Path

from ..errors import ConfigError
from .base import App


def _import_file(name: str, path: str):
    """Import a Python file as module ``quantscan_app_<name>`` (once per process)."""
    module_name = f"quantscan_app_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config key apps.{name}.module: no such file {path}")
    spec = importlib.util.spec_from_file_location(module_name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception:
        del sys.modules[module_name]
        raise
    return module


def app_class(name: str, module: str | None = None) -> type[App]:
    """The :class:`App` subclass of application ``name``."""
    if module:
        mod = (
            _import_file(name, module)
            if module.endswith(".py")
            else importlib.import_module(module)
        )
        where = f"config key apps.{name}.module ({module})"
    else:
        try:
            mod = importlib.import_module(f"{__name__}.{name}.app")
        except ModuleNotFoundError as err:
            if err.name not in (f"{__name__}.{name}", f"{__name__}.{name}.app"):
                raise
            raise ConfigError(
                f"config key apps.{name}: no application {name!r} (no package "
                f"quantscan.apps.{name} with a module 'app'; give 'module: path/to/app.py')"
            ) from None
        where = f"quantscan.apps.{name}.app"
    cls = getattr(mod, "APP", None)
    if not (isinstance(cls, type) and issubclass(cls, App)):
        raise ConfigError(f"{where}: defines no APP (a quantscan.apps.base.App subclass)")
    return cls


def settings_of(config: Mapping, name: str) -> Mapping:
    """The config section of application ``name`` (``apps.<name>``)."""
    return config["apps"][name]


def _app(config: Mapping, name: str) -> App:
    section = settings_of(config, name)
    module = section.get("module") if isinstance(section, Mapping) else None
    return app_class(name, module)(name, section, config)


def enabled(config: Mapping) -> dict[str, App]:
    """Name -> :class:`App` of every application of ``config`` (``apps``, in its order)."""
    return {name: _app(config, name) for name in config.get("apps") or {}}


def get(config: Mapping, name: str) -> App:
    """The :class:`App` of application ``name`` (a job's ``{app}`` wildcard)."""
    if name not in (config.get("apps") or {}):
        raise ConfigError(f"no application {name!r} in the config (apps.{name})")
    return _app(config, name)


__all__ = ["App", "app_class", "enabled", "get", "settings_of"]
