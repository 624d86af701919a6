"""envs/*.yaml (for conda users) stay in step with pyproject.toml (the pip path)."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
# PyPI name -> conda-forge name where they differ
CONDA_NAME = {"torch": "pytorch", "matplotlib": "matplotlib-base"}


def pip_requirements():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = {}
    for req in project["dependencies"]:
        name, spec = re.match(r"([A-Za-z0-9_.-]+)\s*(.*)", req).groups()
        reqs[CONDA_NAME.get(name.lower(), name.lower())] = spec.replace(" ", "")
    return reqs


def env_files():
    files = sorted((ROOT / "envs").glob("*.yaml"))
    assert files
    return {f.name: yaml.safe_load(f.read_text()) for f in files}


# packages on PyPI only: conda users get them through the env's pip section
PIP_ONLY = {"waterz"}


def conda_and_pip(env) -> tuple[list[str], list[str]]:
    """(conda dependencies, pip dependencies) of an env file."""
    conda, pip = [], []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            assert set(dep) == {"pip"}, dep
            pip += dep["pip"]
        else:
            conda.append(dep)
    return conda, pip


def test_channels_and_pins():
    for name, env in env_files().items():
        assert env["channels"][0] == "conda-forge", name
        assert "nodefaults" in env["channels"], name
        conda, pip = conda_and_pip(env)
        for dep in conda:
            assert isinstance(dep, str), name
            assert re.match(r"^[a-z0-9_.-]+ [=<>]", dep), f"{name}: {dep!r} is not pinned"
            assert not dep.startswith("snakemake"), f"{name}: snakemake must not be in a step env"
        for dep in pip:
            assert re.match(r"^[a-z0-9_.-]+[=<>]", dep), f"{name}: pip {dep!r} is not pinned"
            assert dep.split(">")[0].split("=")[0] in PIP_ONLY, f"{name}: {dep!r} is on conda-forge"
        if pip:
            assert any(d.startswith("pip ") for d in conda), f"{name}: a pip section needs pip"


def test_every_dependency_is_in_an_env_with_the_same_floor():
    reqs = pip_requirements()
    seen = {}
    for env in env_files().values():
        conda, pip = conda_and_pip(env)
        for dep in conda:
            pkg, spec = dep.split(" ", 1)
            seen.setdefault(pkg, set()).add(spec.replace(" ", ""))
        for dep in pip:
            pkg, spec = re.match(r"([a-z0-9_.-]+)(.*)", dep).groups()
            seen.setdefault(pkg, set()).add(spec)
    for pkg, spec in reqs.items():
        assert pkg in seen, f"{pkg} from pyproject.toml is in no envs/*.yaml"
        assert seen[pkg] == {spec}, f"{pkg}: pyproject {spec} vs envs {seen[pkg]}"
