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


def test_channels_and_pins():
    for name, env in env_files().items():
        assert env["channels"][0] == "conda-forge", name
        assert "nodefaults" in env["channels"], name
        for dep in env["dependencies"]:
            assert isinstance(dep, str), name
            assert re.match(r"^[a-z0-9_.-]+ [=<>]", dep), f"{name}: {dep!r} is not pinned"
            assert not dep.startswith("snakemake"), f"{name}: snakemake must not be in a step env"


def test_every_dependency_is_in_an_env_with_the_same_floor():
    reqs = pip_requirements()
    seen = {}
    for env in env_files().values():
        for dep in env["dependencies"]:
            pkg, spec = dep.split(" ", 1)
            seen.setdefault(pkg, set()).add(spec.replace(" ", ""))
    for pkg, spec in reqs.items():
        assert pkg in seen, f"{pkg} from pyproject.toml is in no envs/*.yaml"
        assert seen[pkg] == {spec}, f"{pkg}: pyproject {spec} vs envs {seen[pkg]}"
