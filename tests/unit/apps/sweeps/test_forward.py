"""Forward-in-time sweeps with fwdpy11 (quantscan.apps.sweeps.forward) and the simulator dispatch.

The cross-check against msprime (constant size, N = 1e4 rescaled by Q = 10, 50 kb, 32 haplotypes, 20
replicates per simulator) compares the diversity dip at the sweep, the site frequency spectrum near it and
the diversity far from it. Tolerances are about 3.5 standard errors of the differences, measured over 100
replicates per simulator (msprime / fwdpy11): pi(centre) / pi(flanks) 0.275 / 0.285 (bootstrap sd 0.010 /
0.013 at 100 replicates), singleton share within 5 kb of the site 0.313 / 0.320 (se 0.006), share of
derived counts >= n - 3 0.129 / 0.123 (se 0.005), flank pi 0.0191 / 0.0193 per bp (neutral 0.0200 =
4 N mu).
"""

import copy
import sys

import numpy as np
import pytest

from quantscan import config as qconfig
from quantscan.apps.sweeps import forward, simulate
from quantscan.apps.sweeps import settings as sweeps_settings
from quantscan.errors import ConfigError

pytest.importorskip("fwdpy11")

ISLAND = {"demes": "resources/demes/island_migration.yaml", "population": "island"}
BASE = {
    "population_size": 10_000,
    "sequence_length": 50_000,
    "haplotypes": 32,
    "mutation_rate": 5e-7,
    "recombination_rate": 5e-7,
    "selection_coefficient": 0.05,
    "sweep_end_time": 0,
    "scenarios": {
        "constant": {},
        "fwd": {"simulator": "fwdpy11"},
        "island": {"demography": ISLAND},
        "island_fwd": {"demography": ISLAND, "simulator": "auto"},
    },
}
ONE_DEME = """
time_units: generations
demes:
  - name: pop
    epochs:
      - {end_time: 300, start_size: 2000}
      - {end_time: 0, start_size: 10000}
"""
# windows: flank | mid | centre (sweep +- 2.5 kb) | mid | flank
EDGES = [0, 5_000, 22_500, 27_500, 45_000, 50_000]


def params(name, **overrides):
    cfg = copy.deepcopy(BASE) | overrides
    return simulate.SimParams.from_config(cfg, name)


def small(name, **overrides):
    return params(name, sequence_length=10_000, haplotypes=8, **overrides)


def tables(ts):
    t = ts.dump_tables()
    t.provenances.clear()
    return t


def test_default_is_msprime_and_neutral_never_goes_forward(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("forward simulation was called")

    monkeypatch.setattr(forward, "simulate_sweep", refuse)
    p = small("constant")
    assert p.simulator == "msprime" and p.sweep_simulator() == "msprime"
    assert simulate.simulate_tree_sequence(p, "sweep", 3).num_samples == 8
    assert simulate.simulate_tree_sequence(small("fwd"), "neutral", 3).num_samples == 8
    # auto keeps msprime where its sweep model applies
    assert small("constant").sweep_simulator() == "msprime"
    auto = simulate.SimParams.from_config(BASE | {"scenarios": {"a": {"simulator": "auto"}}}, "a")
    assert auto.sweep_simulator("a") == "msprime"


def test_neutral_only_follows_the_simulator():
    sw = copy.deepcopy(BASE)
    assert sweeps_settings.is_neutral_only(sw, "island")
    assert not sweeps_settings.is_neutral_only(sw, "island_fwd")
    assert params("island").classes() == ("neutral",)
    assert params("island_fwd").classes() == ("neutral", "sweep")
    assert params("island_fwd").sweep_simulator("island_fwd") == "fwdpy11"
    sw["scenarios"]["shorthand"] = {
        "island": {"size": 0.05, "migration": 3.0, "split_time": 0.003},
        "simulator": "fwdpy11",
    }
    assert not sweeps_settings.is_neutral_only(sw, "shorthand")
    with pytest.raises(ConfigError, match="simulator must be one of msprime, fwdpy11, auto"):
        simulate.SimParams.from_config(BASE | {"scenarios": {"x": {"simulator": "slim"}}}, "x")


def test_schema_accepts_the_keys():
    cfg = copy.deepcopy(BASE)
    cfg["scenarios"]["fwd"]["forward_scaling"] = 5
    qconfig.validate({"apps": {"sweeps": {"data": cfg}}})
    cfg["scenarios"]["fwd"]["simulator"] = "slim"
    with pytest.raises(Exception, match="slim"):
        qconfig.validate({"apps": {"sweeps": {"data": cfg}}})


def test_auto_takes_what_msprime_refuses(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(ONE_DEME)
    spec = {"demography": {"demes": str(path)}}
    cfg = copy.deepcopy(BASE) | {"sequence_length": 10_000, "haplotypes": 8}
    cfg["scenarios"] = {"x": spec, "y": spec | {"simulator": "auto"}}
    with pytest.raises(ConfigError, match="inside the sweep.*simulator: fwdpy11"):
        simulate.SimParams.from_config(cfg, "x").check_sweep("x")
    y = simulate.SimParams.from_config(cfg, "y")
    assert y.sweep_simulator("y") == "fwdpy11"
    assert y.check_sweep("y") == 10_000
    qconfig.validate({"apps": {"sweeps": {"data": copy.deepcopy(cfg) | {"run": ["y"]}}}})
    ts = simulate.simulate_tree_sequence(y, "sweep", 4, "y")
    assert ts.num_samples == 8 and ts.metadata["quantscan"]["simulator"] == "fwdpy11"


def test_plan_rescales_and_converts_s():
    pl = forward.plan(params("island_fwd"), "island_fwd")
    assert pl.scaling == 10 and pl.population == "island"
    assert pl.scaled["island"].epochs[0].start_size == 50
    assert pl.scaled["island"].start_time == 12
    assert pl.scaled.migrations[0].rate == pytest.approx(7.5e-4)
    mean, sd = forward.fixation_time(1000, 0.5)
    assert 60 < mean < 75 and 5 < sd < 12
    # a new allele at 1/(2N) with fitness 1, 1+s/2, 1+s: effect s*Q/2, dominance 1 under Multiplicative(2)
    assert forward.fixation_time(1000, 0.5)[0] < forward.fixation_time(1000, 0.25)[0]


def test_plan_errors_name_the_scenario():
    with pytest.raises(ConfigError, match=r"'fwd'.*s·Q = 0.05 x 40 = 2 exceeds 1"):
        forward.plan(params("fwd", **{"scenarios": {"fwd": {"forward_scaling": 40}}}), "fwd")
    big = params("island_fwd", haplotypes=128)
    with pytest.raises(
        ConfigError, match=r"'island_fwd'.*'island' has 50 diploids.*fewer than the 64.*at most 7.8"
    ):
        forward.plan(big, "island_fwd")


def test_seeded_and_shaped():
    p = small("fwd")
    a = simulate.simulate_tree_sequence(p, "sweep", 11, "fwd")
    b = simulate.simulate_tree_sequence(p, "sweep", 11, "fwd")
    c = simulate.simulate_tree_sequence(p, "sweep", 12, "fwd")
    assert tables(a) == tables(b)
    assert tables(a) != tables(c)
    assert a.num_samples == 8 and a.num_trees >= 1 and max(t.num_roots for t in a.trees()) == 1
    assert a.sequence_length == 10_000 and a.num_sites > 0
    meta = a.metadata["quantscan"]
    assert meta["simulator"] == "fwdpy11" and meta["forward_scaling"] == 10
    assert abs(meta["sweep_position"] - 5_000) <= 0.5
    assert 0 <= meta["fixation_generations_ago"] < meta["origin_generations_ago"]
    rep = simulate.simulate_replicate(p, "sweep", 11, "fwd")
    assert rep.haplotypes.shape == (a.num_sites, 8) and set(np.unique(rep.haplotypes)) <= {0, 1}
    assert np.all(np.diff(rep.positions) > 0)  # binary infinite sites, no stacked positions


def test_sweep_position_hotspot_and_bottleneck():
    p = params(
        "fwd",
        sequence_length=20_000,
        haplotypes=8,
        scenarios={
            "fwd": {
                "simulator": "fwdpy11",
                "hotspot": {"left": 9_000, "right": 11_000, "intensity": 20},
                "bottleneck": {"start": 0.1, "end": 0.101, "size": 0.5},
            }
        },
    )
    ts = simulate.simulate_tree_sequence(p, "sweep", 5, "fwd", sweep_position=4_000)
    assert abs(ts.metadata["quantscan"]["sweep_position"] - 4_000) <= 0.5
    pi = ts.diversity(windows=[0, 3_000, 5_000, 15_000, 20_000])
    assert pi[1] < pi[3]


def test_errors_name_the_scenario(monkeypatch):
    real_import = forward.importlib.import_module

    def no_fwdpy11(name):
        if name == "fwdpy11":
            raise ImportError("No module named 'fwdpy11'")
        return real_import(name)

    p = small("fwd")
    monkeypatch.setattr(forward.importlib, "import_module", no_fwdpy11)
    with pytest.raises(
        ConfigError, match=r"scenario 'fwd'.*fwdpy11 cannot be imported.*pip install"
    ):
        simulate.simulate_tree_sequence(p, "sweep", 1, "fwd")
    monkeypatch.undo()

    fwdpy11 = sys.modules["fwdpy11"]
    monkeypatch.setattr(fwdpy11, "__version__", "0.25.0")
    with pytest.raises(ConfigError, match=r"'fwd'.*fwdpy11 0.25.0 is installed"):
        simulate.simulate_tree_sequence(p, "sweep", 1, "fwd")
    monkeypatch.undo()

    def broken(*args, **kwargs):
        raise ValueError("epoch has zero length")

    monkeypatch.setattr(fwdpy11.ForwardDemesGraph, "from_demes", broken)
    with pytest.raises(
        ConfigError, match=r"scenario 'fwd': fwdpy11 .*seed 1.*failed: ValueError: epoch has zero"
    ):
        simulate.simulate_tree_sequence(p, "sweep", 1, "fwd")
    monkeypatch.undo()

    monkeypatch.setattr(forward, "MAX_ATTEMPTS", 3)
    weak = small("fwd", selection_coefficient=0.0005)
    with pytest.raises(ConfigError, match=r"'fwd'.*did not fix in 'pop_0'.*in 3 tries"):
        simulate.simulate_tree_sequence(weak, "sweep", 1, "fwd")


def _stats(p, name, cls, n):
    pis, sfs = [], []
    for seed in range(1, n + 1):
        ts = simulate.simulate_tree_sequence(p, cls, seed, name)
        pis.append(ts.diversity(windows=EDGES))
        afs = ts.allele_frequency_spectrum(
            windows=[0, 20_000, 30_000, 50_000], polarised=True, span_normalise=False
        )[1]
        sfs.append(afs / afs.sum())
    pis, sfs = np.array(pis), np.array(sfs)
    h = p.haplotypes
    return {
        "ratio": pis[:, 2].mean() / ((pis[:, 0] + pis[:, 4]) / 2).mean(),
        "flank": ((pis[:, 0] + pis[:, 4]) / 2).mean(),
        "singletons": sfs[:, 1].mean(),
        "high": sfs[:, h - 3 : h].sum(axis=1).mean(),
    }


@pytest.mark.slow
def test_cross_check_against_msprime():
    """Constant size, both simulators apply: the forward sweeps match msprime's (see module docstring)."""
    n = 20
    msp = _stats(params("constant"), "constant", "sweep", n)
    fwd = _stats(params("fwd"), "fwd", "sweep", n)
    neutral = _stats(params("constant"), "constant", "neutral", n)
    theta = 4 * 10_000 * 5e-7
    # the dip at the site
    assert msp["ratio"] < 0.45 and fwd["ratio"] < 0.45 and neutral["ratio"] > 0.85
    assert abs(fwd["ratio"] - msp["ratio"]) < 0.12
    # the SFS near the site: excess of singletons and of high-frequency derived alleles
    assert fwd["singletons"] > neutral["singletons"] + 0.03
    assert fwd["high"] > 2 * neutral["high"]
    assert abs(fwd["singletons"] - msp["singletons"]) < 0.06
    assert abs(fwd["high"] - msp["high"]) < 0.05
    # far from the site: the neutral level
    assert abs(neutral["flank"] / theta - 1) < 0.08
    assert abs(fwd["flank"] / theta - 1) < 0.12
    assert abs(fwd["flank"] / msp["flank"] - 1) < 0.06


@pytest.mark.slow
def test_island_sweep_reduces_diversity_at_the_site():
    """Two demes at sampling (msprime has no sweep there): fwdpy11 end to end, through the dispatch."""
    p = params("island_fwd")
    neutral = [
        simulate.simulate_tree_sequence(p, "neutral", seed, "island_fwd").diversity(windows=EDGES)
        for seed in range(1, 9)
    ]
    centre_neutral = np.mean([pi[2] for pi in neutral])
    centre = []
    for seed in (1, 2, 3):
        ts = simulate.simulate_tree_sequence(p, "sweep", seed, "island_fwd")
        pi = ts.diversity(windows=EDGES)
        centre.append(pi[2])
        # the island's sweep starts in the continent (the island is 120 generations old) and ends
        # softer in some replicates (several founders carry it): below the flanks in each one
        assert pi[2] < 0.8 * (pi[0] + pi[4]) / 2
        assert ts.metadata["quantscan"]["forward_scaling"] == 10
        assert ts.num_samples == 32
    assert np.mean(centre) < 0.6 * centre_neutral
    rep = simulate.simulate_replicate(p, "sweep", 3, "island_fwd")
    assert np.array_equal(rep.positions, ts.tables.sites.position)
    assert rep.haplotypes.shape == (ts.num_sites, 32) and rep.sweep_position == 25_000
