import numpy as np
import pytest

from quantscan.apps.sweeps import simulate
from quantscan.errors import ConfigError, InputFormatError

BASE = {
    "population_size": 10_000,
    "sequence_length": 20_000,
    "haplotypes": 16,
    "mutation_rate": 5e-7,
    "recombination_rate": 5e-7,
    "selection_coefficient": 0.05,
    "sweep_end_time": 0,
    "scenarios": {
        "constant": {},
        "bottleneck": {"bottleneck": {"start": 0.1, "end": 0.101, "size": 0.5}},
        "hotspot": {"hotspot": {"left": 9000, "right": 11000, "intensity": 20}},
        "island": {"island": {"size": 0.05, "migration": 3.0, "split_time": 0.003}},
        "tight": {"bottleneck": {"start": 0.001, "end": 0.012, "size": 0.005}},
    },
}


def params(name):
    return simulate.SimParams.from_config(BASE, name)


def test_shapes_positions_and_seeding():
    p = params("constant")
    a = simulate.simulate_replicate(p, "sweep", seed=7)
    b = simulate.simulate_replicate(p, "sweep", seed=7)
    c = simulate.simulate_replicate(p, "sweep", seed=8)
    assert a.haplotypes.shape == (len(a.positions), 16) and a.haplotypes.dtype == np.uint8
    assert np.all(np.diff(a.positions) > 0) and 0 <= a.positions[0] and a.positions[-1] < 20_000
    assert set(np.unique(a.haplotypes)) <= {0, 1}
    assert a.sweep_position == 10_000
    assert np.array_equal(a.positions, b.positions) and np.array_equal(a.haplotypes, b.haplotypes)
    assert len(a.positions) != len(c.positions) or not np.array_equal(a.positions, c.positions)
    assert np.isnan(simulate.simulate_replicate(p, "neutral", seed=7).sweep_position)


def test_batches_derive_distinct_reproducible_seeds():
    p = params("constant")
    one = simulate.simulate_batch(p, "constant", "neutral", 0, 2, master_seed=1)
    again = simulate.simulate_batch(p, "constant", "neutral", 0, 2, master_seed=1)
    other = simulate.simulate_batch(p, "constant", "neutral", 1, 2, master_seed=1)
    assert np.array_equal(one[1].positions, again[1].positions)
    assert not np.array_equal(one[0].positions, one[1].positions)
    assert not np.array_equal(one[0].positions, other[0].positions)


def test_sweep_removes_diversity_near_the_centre():
    p = params("constant")

    def near_centre_sites(cls):
        counts = []
        for seed in range(1, 7):
            r = simulate.simulate_replicate(p, cls, seed)
            counts.append(np.sum(np.abs(r.positions - 10_000) < 2_000))
        return np.mean(counts)

    assert near_centre_sites("sweep") < 0.5 * near_centre_sites("neutral")


def test_confounder_scenarios_run():
    for name in ("bottleneck", "hotspot"):
        rep = simulate.simulate_replicate(params(name), "sweep", seed=3)
        assert rep.haplotypes.shape[1] == 16
    island = params("island")
    assert island.classes() == ("neutral",)
    assert simulate.simulate_replicate(island, "neutral", seed=3).haplotypes.shape[1] == 16
    with pytest.raises(ConfigError, match="cannot simulate class 'sweep'"):
        simulate.simulate_replicate(island, "sweep", seed=3, scenario="island")


def test_event_during_sweep_is_a_clear_config_error():
    with pytest.raises(ConfigError, match="scenario 'tight'.*inside the sweep"):
        simulate.simulate_replicate(params("tight"), "sweep", seed=3, scenario="tight")


def test_unknown_scenario():
    with pytest.raises(ConfigError, match="unknown scenario 'nope'"):
        params("nope")


def test_shard_round_trip_and_corruption(tmp_path):
    reps = simulate.simulate_batch(params("constant"), "constant", "sweep", 0, 3, master_seed=5)
    path = tmp_path / "batch0.npz"
    simulate.save_replicates(path, reps, sequence_length=20_000, meta={"x": 1})
    back, length = simulate.load_replicates(path)
    assert length == 20_000 and len(back) == 3
    for a, b in zip(reps, back, strict=True):
        assert np.array_equal(a.positions, b.positions)
        assert np.array_equal(a.haplotypes, b.haplotypes)
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary leftovers
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFormatError, match=r"batch0\.npz"):
        simulate.load_replicates(path)
    np.savez(path, positions=np.zeros(3))
    with pytest.raises(InputFormatError, match="missing"):
        simulate.load_replicates(path)
