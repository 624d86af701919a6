"""Simulated viral classes: determinism, lengths, composition and relatedness."""

import time

import numpy as np
import pytest

from quantscan.errors import ConfigError
from quantscan.viral import simulate
from quantscan.viral.fasta import parse_label, read_fasta


def kmer_set(seq, k=12):
    return {seq[i : i + k] for i in range(len(seq) - k + 1)}


def jaccard(a, b):
    return len(a & b) / len(a | b)


@pytest.fixture(scope="module")
def dataset():
    t = time.perf_counter()
    recs = simulate.simulate_dataset(n_per_class=100, seed=11)
    return recs, time.perf_counter() - t


def test_fast_and_complete(dataset):
    recs, elapsed = dataset
    assert len(recs) == 400
    assert elapsed < 5.0  # a few hundred 1-3.5 kb sequences in seconds
    names = [c.name for c in simulate.DEFAULT_CLASSES]
    assert [r.label for r in recs] == [n for n in names for _ in range(100)]
    assert len({r.id for r in recs}) == 400


def test_deterministic_for_a_seed():
    spec = simulate.DEFAULT_CLASSES[0]
    a = simulate.simulate_class(spec, 20, seed=3)
    b = simulate.simulate_class(spec, 20, seed=3)
    c = simulate.simulate_class(spec, 20, seed=4)
    assert [r.sequence for r in a] == [r.sequence for r in b]
    assert [r.sequence for r in a] != [r.sequence for r in c]
    # a class does not depend on the other classes simulated with it
    both = simulate.simulate_dataset(simulate.DEFAULT_CLASSES[:2], 20, seed=3)
    assert [r.sequence for r in both[:20]] == [r.sequence for r in a]


def test_lengths_in_class_ranges(dataset):
    recs, _ = dataset
    for spec in simulate.DEFAULT_CLASSES:
        lengths = np.array([len(r) for r in recs if r.label == spec.name])
        assert lengths.min() >= spec.min_length and lengths.max() <= spec.max_length
        assert lengths.max() - lengths.min() > 0.5 * (spec.max_length - spec.min_length)
        assert all(set(r.sequence) <= set("ACGTN") for r in recs if r.label == spec.name)


def test_composition_differs_between_classes(dataset):
    recs, _ = dataset
    gc = {}
    for spec in simulate.DEFAULT_CLASSES:
        s = "".join(r.sequence for r in recs if r.label == spec.name).replace("N", "")
        gc[spec.name] = (s.count("G") + s.count("C")) / len(s)
        assert gc[spec.name] == pytest.approx(spec.gc, abs=0.02)
    assert gc["Anelloviridae"] - gc["Tolecusatellitidae"] > 0.1


def test_within_class_more_similar_than_across(dataset):
    recs, _ = dataset
    rng = np.random.default_rng(0)
    sub = [recs[i] for i in rng.choice(len(recs), size=60, replace=False)]
    sets = [kmer_set(r.sequence) for r in sub]
    within, across = [], []
    for i in range(len(sub)):
        for j in range(i + 1, len(sub)):
            (within if sub[i].label == sub[j].label else across).append(jaccard(sets[i], sets[j]))
    assert np.mean(within) > 0.05
    assert np.mean(across) < 0.005
    # isolates of one lineage share far more than unrelated ones
    same_lineage = [r for r in recs if r.label == "Alphasatellitidae"][:10]
    sims = [
        jaccard(kmer_set(a.sequence), kmer_set(b.sequence))
        for k, a in enumerate(same_lineage)
        for b in same_lineage[k + 1 :]
    ]
    assert np.mean(sims) > 0.1
    assert min(sims) > 0.01  # unrelated sequences share ~0.0001 of their 12-mers


def test_n_runs_and_indels_optional():
    spec = simulate.ClassSpec("x", 1000, 1200, gc=0.5, diversity=0.0)
    clean = simulate.SimulationOptions(indel_rate=0.0, n_run_probability=0.0)
    recs = simulate.simulate_class(spec, 10, seed=1, options=clean)
    assert all("N" not in r.sequence for r in recs)
    # zero diversity, no indels: every isolate is a window (>= 1000 of 1310 bases) of one
    # ancestor, so bases 400-430 of each lie in the part that every window covers
    assert all(r.sequence[400:430] in recs[0].sequence for r in recs)
    noisy = simulate.SimulationOptions(indel_rate=0.0, n_run_probability=1.0, n_run_length=(20, 20))
    recs = simulate.simulate_class(spec, 10, seed=1, options=noisy)
    assert all("N" * 20 in r.sequence for r in recs)


def test_jc69_and_config(tmp_path):
    specs = simulate.classes_from_config(
        [
            {"name": "a", "min_length": 1000, "max_length": 1100, "gc": 0.3},
            {"name": "b", "min_length": 1000, "max_length": 1100, "gc": 0.7, "n_lineages": 2},
        ]
    )
    recs = simulate.simulate_dataset(
        specs, {"a": 5, "b": 6}, seed=2, options=simulate.SimulationOptions(model="jc69")
    )
    assert [r.label for r in recs].count("b") == 6
    path = simulate.write_dataset(recs, tmp_path / "sim.fasta")
    back = [parse_label(r) for r in read_fasta(path)]
    assert [(r.id, r.label, r.sequence) for r in back] == [
        (r.id, r.label, r.sequence) for r in recs
    ]
    with pytest.raises(ConfigError, match="unknown keys.*gc_content"):
        simulate.classes_from_config(
            [{"name": "a", "min_length": 1, "max_length": 2, "gc_content": 1}]
        )
    with pytest.raises(ConfigError, match="min_length <= max_length"):
        simulate.ClassSpec("a", 2000, 1000)
    with pytest.raises(ConfigError, match="no count"):
        simulate.simulate_dataset(specs, {"a": 5}, seed=0)


def test_hky_model_valid_for_awkward_gc():
    # msprime.HKY rejects GC 0.37 through rounding; ours must not
    for gc in (0.05, 0.37, 0.5, 0.63, 0.95):
        f = [(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2]
        model = simulate.hky_model(2.0, f)
        assert np.allclose(model.transition_matrix.sum(axis=1), 1.0)
        assert (model.transition_matrix >= 0).all()
