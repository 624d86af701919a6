"""Demographic models (demes files, stdpopsim) for the sweep simulations, and their msprime limits."""

import copy
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import yaml

from quantscan import config as qconfig
from quantscan.apps.sweeps import demography as dg
from quantscan.apps.sweeps import settings as sweeps_settings
from quantscan.apps.sweeps import simulate
from quantscan.errors import ConfigError

ROOT = Path(__file__).resolve().parents[4]
DEMES = ROOT / "resources" / "demes"

BASE = {
    "population_size": 10_000,
    "sequence_length": 20_000,
    "haplotypes": 16,
    "mutation_rate": 5e-7,
    "recombination_rate": 5e-7,
    "selection_coefficient": 0.05,
    "sweep_end_time": 0,
    "scenarios": {"constant": {}},
}

# the shorthands that config/config.yaml used before its scenarios moved to resources/demes/
SHORTHANDS = {
    "constant": {},
    "mild_bottleneck": {"bottleneck": {"start": 0.1, "end": 0.101, "size": 0.5}},
    "severe_bottleneck": {
        "bottleneck": {"start": 0.01, "end": 0.012, "size": 0.005},
        "sweep_end_time": 500,
    },
    "island_migration": {"island": {"size": 0.05, "migration": 3.0, "split_time": 0.003}},
}


def write(path, text):
    path.write_text(text)
    return str(path)


def params(scenario_spec, name="x", **globals_):
    cfg = copy.deepcopy(BASE) | globals_
    cfg["scenarios"] = {name: scenario_spec}
    return simulate.SimParams.from_config(cfg, name)


def tables(ts):
    """Every table but provenance (which records the demography object and the call)."""
    t = ts.dump_tables()
    t.provenances.clear()
    return t


def default_config():
    return yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


ONE_DEME = """
time_units: generations
demes:
  - name: pop
    epochs:
      - {end_time: 3000, start_size: 2000}
      - {end_time: 0, start_size: 10000}
"""


# --- the shipped models equal the shorthands ---------------------------------------------------------


@pytest.mark.parametrize("name", list(SHORTHANDS))
def test_shipped_demes_files_simulate_exactly_as_the_shorthands(name):
    """config/config.yaml's demes scenarios give the same tree sequences, table for table, as the
    hand-built msprime models of the shorthands it replaced: switching changed no output."""
    cfg = qconfig.validate(default_config())["apps"]["sweeps"]["data"]
    cfg["sequence_length"], cfg["haplotypes"] = 20_000, 16  # fast; the rates are the config's
    old = copy.deepcopy(cfg)
    old["scenarios"][name] = SHORTHANDS[name]
    if name == "constant":  # not switched in the config: compare with the file directly
        cfg["scenarios"][name] = {"demography": {"demes": "resources/demes/constant.yaml"}}
    else:
        assert "demography" in cfg["scenarios"][name]
    new_p = simulate.SimParams.from_config(cfg, name)
    old_p = simulate.SimParams.from_config(old, name)
    assert new_p.population_size == old_p.population_size == 10_000 or name == "island_migration"
    assert new_p.classes() == old_p.classes()
    assert sweeps_settings.is_neutral_only(cfg, name) == sweeps_settings.is_neutral_only(old, name)
    for cls in old_p.classes():
        for seed in (1, 2, 3):
            a = simulate.simulate_tree_sequence(new_p, cls, seed, name)
            b = simulate.simulate_tree_sequence(old_p, cls, seed, name)
            assert tables(a) == tables(b), (name, cls, seed)
            # through the Snakemake params path (dataclasses.asdict -> SimParams(**dict)) too
            c = simulate.SimParams(**dataclasses.asdict(new_p))
            r1 = simulate.simulate_replicate(c, cls, seed, name)
            r2 = simulate.simulate_replicate(old_p, cls, seed, name)
            assert np.array_equal(r1.positions, r2.positions)
            assert np.array_equal(r1.haplotypes, r2.haplotypes)


def test_default_config_scenarios_use_the_shipped_files():
    cfg = qconfig.validate(default_config())["apps"]["sweeps"]["data"]
    for name in ("mild_bottleneck", "severe_bottleneck", "island_migration"):
        assert cfg["scenarios"][name]["demography"]["demes"] == f"resources/demes/{name}.yaml"
    assert sweeps_settings.neutral_scenarios(cfg) == ["island_migration"]
    island = simulate.SimParams.from_config(cfg, "island_migration")
    assert island.demography["population"] == "island" and island.population_size == 500
    assert island.classes() == ("neutral",)


# --- stdpopsim ----------------------------------------------------------------------------------------


def test_stdpopsim_model_runs_neutral_and_is_neutral_only():
    spec = {
        "demography": {
            "stdpopsim": {"species": "HomSap", "model": "OutOfAfrica_3G09", "population": "CEU"}
        },
        "mutation_rate": 1.25e-8,
        "recombination_rate": 1e-8,
        "sequence_length": 50_000,
    }
    p = params(spec, "ooa", haplotypes=8)
    assert p.demography["source"] == "stdpopsim HomSap/OutOfAfrica_3G09"
    assert p.present_at_sampling() == ["YRI", "CEU", "CHB"] and p.classes() == ("neutral",)
    assert p.population_size == pytest.approx(29725.34, rel=1e-5)  # CEU at time 0 (growth)
    ts = simulate.simulate_tree_sequence(p, "neutral", seed=4, scenario="ooa")
    ceu = [pop.id for pop in ts.populations() if pop.metadata["name"] == "CEU"]
    assert ts.num_samples == 8 and set(ts.tables.nodes.population[ts.samples()]) == set(ceu)
    assert ts.num_sites > 0
    with pytest.raises(ConfigError, match=r"'ooa' cannot simulate class 'sweep'.*3 populations "):
        simulate.simulate_tree_sequence(p, "sweep", seed=4, scenario="ooa")
    cfg = copy.deepcopy(BASE)
    cfg["scenarios"]["ooa"] = spec
    full = qconfig.validate({"apps": {"sweeps": {"data": cfg}}})["apps"]["sweeps"]["data"]
    assert sweeps_settings.neutral_scenarios(full) == ["ooa"] and sweeps_settings.sweep_scenarios(
        full
    ) == ["constant"]


def test_stdpopsim_errors():
    with pytest.raises(ConfigError, match=r"scenario 'x'.*Species 'Nope' not in catalog"):
        params({"demography": {"stdpopsim": {"species": "Nope", "model": "m"}}})
    with pytest.raises(ConfigError, match=r"scenario 'x'.*'HomSap/Nope' not in catalog"):
        params({"demography": {"stdpopsim": {"species": "HomSap", "model": "Nope"}}})
    with pytest.raises(ConfigError, match=r"scenario 'x'.*3 populations at time 0.*'population'"):
        params({"demography": {"stdpopsim": {"species": "HomSap", "model": "OutOfAfrica_3G09"}}})
    with pytest.raises(ConfigError, match=r"needs 'species' and 'model'"):
        params({"demography": {"stdpopsim": {"species": "HomSap"}}})


# --- sweeps under a demes model -----------------------------------------------------------------------


def test_sweep_under_a_one_deme_size_history(tmp_path):
    """An expansion 3000 generations ago, older than the sweep: msprime simulates it, N from the model."""
    p = params({"demography": {"demes": write(tmp_path / "exp.yaml", ONE_DEME)}})
    assert p.population_size == 10_000 and p.classes() == ("neutral", "sweep")
    assert p.check_sweep("x") == 10_000

    def near_centre(cls):
        return np.mean(
            [
                np.sum(np.abs(simulate.simulate_replicate(p, cls, s).positions - 10_000) < 2_000)
                for s in range(1, 6)
            ]
        )

    assert near_centre("sweep") < 0.5 * near_centre("neutral")
    # an old sweep inside the small ancestral epoch starts at 1/2N of that epoch's N
    old = params(
        {"demography": {"demes": str(tmp_path / "exp.yaml")}, "sweep_end_time": 4000}, "old"
    )
    assert old.check_sweep("old") == 2000
    assert simulate.simulate_replicate(old, "sweep", 2).haplotypes.shape[1] == 16


def test_a_chain_of_demes_is_one_population(tmp_path):
    """anc -> pop (one founded by the other, no overlap) simulates as the one-deme model."""
    chain = write(
        tmp_path / "chain.yaml",
        """
time_units: generations
demes:
  - name: anc
    epochs: [{end_time: 3000, start_size: 2000}]
  - name: pop
    ancestors: [anc]
    epochs: [{start_size: 10000}]
""",
    )
    one = write(tmp_path / "one.yaml", ONE_DEME)
    a, b = params({"demography": {"demes": chain}}), params({"demography": {"demes": one}})
    assert a.classes() == ("neutral", "sweep") and a.check_sweep("x") == 10_000
    for cls in ("neutral", "sweep"):
        ta = tables(simulate.simulate_tree_sequence(a, cls, 5))
        tb = tables(simulate.simulate_tree_sequence(b, cls, 5))
        assert ta == tb, cls


def test_relative_paths_cwd_first_then_base_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = {"demography": {"demes": "resources/demes/constant.yaml"}}
    assert params(spec).population_size == 10_000  # from the workflow's directory
    (tmp_path / "resources" / "demes").mkdir(parents=True)
    write(tmp_path / "resources" / "demes" / "constant.yaml", ONE_DEME.replace("10000", "8000"))
    assert params(spec).population_size == 8000  # the working directory wins
    other = tmp_path / "resources" / "demes"
    write(other / "only_here.yaml", ONE_DEME)
    assert dg.find_file("only_here.yaml", "x", base_dir=other) == other / "only_here.yaml"
    assert dg.find_file(str(other / "only_here.yaml"), "x") == other / "only_here.yaml"


# --- error messages -----------------------------------------------------------------------------------


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(
        ConfigError, match=r"scenario 'x': demography.demes file 'nope/m.yaml' not found"
    ):
        params({"demography": {"demes": "nope/m.yaml"}})
    bad = write(
        tmp_path / "bad.yaml",
        "time_units: generations\ndemes:\n  - name: a\n    epochs: [{start_size: -1}]\n",
    )
    with pytest.raises(
        ConfigError, match=r"scenario 'x'.*bad\.yaml is not a valid demes model.*epoch"
    ):
        params({"demography": {"demes": bad}})
    broken = write(tmp_path / "broken.yaml", "demes: [\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml is not a valid demes model"):
        params({"demography": {"demes": broken}})


def test_population_errors(tmp_path):
    island = str(DEMES / "island_migration.yaml")
    with pytest.raises(
        ConfigError, match=r"2 populations at time 0 \(continent, island\).*'population'"
    ):
        params({"demography": {"demes": island}})
    with pytest.raises(ConfigError, match=r"population 'mainland' is not in the demography"):
        params({"demography": {"demes": island, "population": "mainland"}})
    chain = write(
        tmp_path / "chain.yaml",
        "time_units: generations\ndemes:\n  - name: anc\n    epochs: [{end_time: 100, start_size: 10}]\n"
        "  - name: pop\n    ancestors: [anc]\n    epochs: [{start_size: 10}]\n",
    )
    with pytest.raises(
        ConfigError, match=r"population 'anc' .* ends 100 generations ago.*one of: pop"
    ):
        params({"demography": {"demes": chain, "population": "anc"}})


def test_spec_errors():
    with pytest.raises(ConfigError, match=r"exactly one of 'demes'.*or 'stdpopsim'"):
        params({"demography": {"population": "a"}})
    both = {
        "demes": "resources/demes/constant.yaml",
        "stdpopsim": {"species": "HomSap", "model": "m"},
    }
    with pytest.raises(ConfigError, match=r"exactly one of"):
        params({"demography": both})
    with pytest.raises(ConfigError, match=r"'demography' cannot be combined with 'bottleneck'"):
        params(
            {
                "demography": {"demes": "resources/demes/constant.yaml"},
                "bottleneck": {"start": 0.1, "end": 0.2, "size": 0.5},
            }
        )


def test_population_size_must_agree_with_the_model():
    spec = {"demography": {"demes": "resources/demes/severe_bottleneck.yaml"}}
    assert params(spec | {"population_size": 10_000}).population_size == 10_000
    assert params(spec, population_size=20_000).population_size == 10_000  # the global is not used
    with pytest.raises(
        ConfigError, match=r"scenario 'x': population_size 20000 conflicts.*'pop_0' has size 10000"
    ):
        params(spec | {"population_size": 20_000})


def test_event_inside_the_sweep(tmp_path):
    spec = {"demography": {"demes": write(tmp_path / "m.yaml", ONE_DEME.replace("3000", "300"))}}
    p = params(spec)
    msg = r"scenario 'x': a demographic event at 300 generations ago falls inside the sweep.*above 300"
    with pytest.raises(ConfigError, match=msg):
        p.check_sweep("x")
    with pytest.raises(ConfigError, match=msg):
        simulate.simulate_tree_sequence(p, "sweep", 1, "x")
    assert simulate.simulate_tree_sequence(p, "neutral", 1, "x").num_samples == 16
    assert params(spec | {"sweep_end_time": 301}).check_sweep("x") == 2000
    # the config check stops the run before any job
    cfg = copy.deepcopy(BASE)
    cfg["scenarios"]["x"] = spec
    with pytest.raises(ConfigError, match=msg):
        qconfig.validate({"apps": {"sweeps": {"data": cfg}}})


def test_growth_inside_the_sweep(tmp_path):
    growth = ONE_DEME.replace(
        "{end_time: 0, start_size: 10000}", "{end_time: 0, start_size: 5000, end_size: 10000}"
    )
    p = params({"demography": {"demes": write(tmp_path / "g.yaml", growth)}})
    with pytest.raises(
        ConfigError, match=r"'x': the population size changes continuously.*constant size"
    ):
        p.check_sweep("x")


def test_several_populations_during_or_before_the_sweep(tmp_path):
    # one deme at time 0, but a sister deme that ended 200 (during the sweep) or 5000 generations ago
    text = """
time_units: generations
demes:
  - name: anc
    epochs: [{end_time: 8000, start_size: 10000}]
  - name: pop
    ancestors: [anc]
    epochs: [{start_size: 10000}]
  - name: sister
    ancestors: [anc]
    epochs: [{start_size: 1000, end_time: END}]
"""
    during = params(
        {"demography": {"demes": write(tmp_path / "d.yaml", text.replace("END", "200"))}}
    )
    assert during.classes() == ("neutral", "sweep")  # one population at the time of sampling
    with pytest.raises(
        ConfigError,
        match=r"'x' cannot simulate class 'sweep'.*several populations during the sweep: 'sister' "
        r"exists from 200 generations ago.*one deme",
    ):
        simulate.simulate_tree_sequence(during, "sweep", 1, "x")
    assert simulate.simulate_tree_sequence(during, "neutral", 1, "x").num_samples == 16
    before = params(
        {"demography": {"demes": write(tmp_path / "b.yaml", text.replace("END", "5000"))}}
    )
    with pytest.raises(
        ConfigError, match=r"several populations before the sweep.*'sister' exists from 5000"
    ):
        before.check_sweep("x")


def test_island_sweep_names_the_populations_at_sampling():
    p = params(
        {"demography": {"demes": "resources/demes/island_migration.yaml", "population": "island"}}
    )
    with pytest.raises(
        ConfigError,
        match=r"'x' cannot simulate class 'sweep'.*2 populations present at the time of sampling "
        r"\(continent, island\).*neutral-only",
    ):
        p.check_sweep("x")
