"""Simulated viral classes: determinism, lengths, composition and relatedness."""

import dataclasses

import numpy as np
import pytest

from quantscan.apps.viral import simulate
from quantscan.apps.viral.fasta import parse_label, read_fasta
from quantscan.errors import ConfigError


def kmer_set(seq, k=12):
    return {seq[i : i + k] for i in range(len(seq) - k + 1)}


def jaccard(a, b):
    return len(a & b) / len(a | b)


@pytest.fixture(scope="module")
def recs():
    return simulate.simulate_dataset(n_per_class=100, seed=11)


def test_complete(recs):
    assert len(recs) == 400
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


def test_lengths_in_class_ranges(recs):
    for spec in simulate.DEFAULT_CLASSES:
        lengths = np.array([len(r) for r in recs if r.label == spec.name])
        assert lengths.min() >= spec.min_length and lengths.max() <= spec.max_length
        assert lengths.max() - lengths.min() > 0.5 * (spec.max_length - spec.min_length)
        assert all(set(r.sequence) <= set("ACGTN") for r in recs if r.label == spec.name)


def test_composition_differs_between_classes(recs):
    gc = {}
    for spec in simulate.DEFAULT_CLASSES:
        s = "".join(r.sequence for r in recs if r.label == spec.name).replace("N", "")
        gc[spec.name] = (s.count("G") + s.count("C")) / len(s)
        assert gc[spec.name] == pytest.approx(spec.gc, abs=0.02)
    assert gc["Anelloviridae"] - gc["Tolecusatellitidae"] > 0.1


def test_within_class_more_similar_than_across(recs):
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
    alpha = [r for r in recs if r.label == "Alphasatellitidae"]
    same_lineage = [r for r in alpha if r.description == alpha[0].description][:10]
    sims = [
        jaccard(kmer_set(a.sequence), kmer_set(b.sequence))
        for k, a in enumerate(same_lineage)
        for b in same_lineage[k + 1 :]
    ]
    assert np.mean(sims) > 0.1
    assert min(sims) > 0.01  # unrelated sequences share ~0.0001 of their 12-mers


def test_n_runs_and_indels_optional():
    spec = simulate.ClassSpec("x", 1000, 1200, gc=0.5, diversity=0.0, partial_fraction=1.0)
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


def test_complete_genomes_start_at_the_origin_with_their_lineage_length():
    spec = simulate.ClassSpec(
        "x", 500, 900, diversity=0.05, n_lineages=3, lineage_divergence=0.5, partial_fraction=0.0
    )
    clean = simulate.SimulationOptions(indel_rate=0.0, n_run_probability=0.0)
    recs = simulate.simulate_class(spec, 30, seed=5, options=clean)
    by_lineage = {}
    for r in recs:
        by_lineage.setdefault(r.description, []).append(r.sequence)
    assert len(by_lineage) == 3
    lengths = {k: {len(s) for s in seqs} for k, seqs in by_lineage.items()}
    # one genome length per lineage (species), different between lineages
    assert all(len(v) == 1 for v in lengths.values())
    assert len({v.pop() for v in lengths.values()}) == 3
    for seqs in by_lineage.values():
        # aligned from the origin: isolates of a lineage agree at ~97.5 % of sites
        same = np.mean(
            [np.mean([a == b for a, b in zip(seqs[0], s, strict=True)]) for s in seqs[1:]]
        )
        assert same > 0.9


def test_partial_records_are_windows_of_any_length():
    spec = simulate.ClassSpec("x", 300, 900, diversity=0.0, partial_fraction=1.0)
    clean = simulate.SimulationOptions(indel_rate=0.0, n_run_probability=0.0)
    recs = simulate.simulate_class(spec, 40, seed=2, options=clean)
    lengths = np.array([len(r) for r in recs])
    assert len(set(lengths)) > 30 and lengths.min() >= 300 and lengths.max() <= 900
    # zero diversity, one lineage: every partial record is a substring of the longest one
    longest = max((r.sequence for r in recs), key=len)
    starts = [longest.find(r.sequence) for r in recs if len(r) < len(longest)]
    assert -1 not in starts
    assert len(set(starts)) > 10  # at random offsets


def test_conserved_blocks_keep_diverged_lineages_alike():
    spec = simulate.ClassSpec(
        "x",
        800,
        800,
        diversity=0.0,
        n_lineages=6,
        lineage_divergence=1.5,
        conserved_fraction=0.25,
        partial_fraction=0.0,
    )
    opts = simulate.SimulationOptions(indel_rate=0.0, n_run_probability=0.0)
    blocks = simulate.conserved_blocks(spec, 900, opts, seed=3)
    inside = np.zeros(800, bool)
    for a, b in blocks:
        assert 0 <= a < b <= 800 and b - a == opts.conserved_block
        assert not inside[a:b].any()  # disjoint
        inside[a:b] = True
    assert inside.mean() == pytest.approx(0.25, abs=0.03)
    recs = simulate.simulate_class(spec, 6, seed=3, options=opts)
    assert len({r.description for r in recs}) == 6
    seqs = np.array([np.frombuffer(r.sequence.encode(), np.uint8) for r in recs])
    pairs = [(i, j) for i in range(6) for j in range(i + 1, 6)]
    same = np.array([seqs[i] == seqs[j] for i, j in pairs])
    # conserved sites: ~0.15 expected substitutions between lineages; elsewhere near saturation
    # (unrelated sequences of GC 0.5 agree at 25 % of sites)
    assert same[:, inside].mean() > 0.7
    assert same[:, ~inside].mean() < 0.5
    no_blocks = dataclasses.replace(spec, conserved_fraction=0.0)
    assert simulate.conserved_blocks(no_blocks, 900, opts, seed=3) == []


def test_new_keys_are_checked():
    with pytest.raises(ConfigError, match="partial_fraction must be in"):
        simulate.ClassSpec("a", 10, 20, partial_fraction=1.5)
    with pytest.raises(ConfigError, match="lineage_divergence must be >= 0"):
        simulate.ClassSpec("a", 10, 20, lineage_divergence=-1)
    with pytest.raises(ConfigError, match="conserved_rate"):
        simulate.SimulationOptions(conserved_rate=2.0)


def log_odds(seqs):
    """Dinucleotide log odds ratios log(f_ab / (f_a f_b)) of the sequences, pooled."""
    codes = {ord(b): i for i, b in enumerate("ACGT")}
    pairs, singles = np.zeros((4, 4)), np.zeros(4)
    for s in seqs:
        c = np.array([codes.get(b, -1) for b in s.encode()])
        ok = (c[:-1] >= 0) & (c[1:] >= 0)
        np.add.at(pairs, (c[:-1][ok], c[1:][ok]), 1)
        np.add.at(singles, c[c >= 0], 1)
    f = singles / singles.sum()
    return np.log(pairs / pairs.sum() / np.outer(f, f))


def test_dinucleotide_signature_beyond_gc():
    opts = simulate.SimulationOptions(indel_rate=0.0, n_run_probability=0.0)
    common = dict(min_length=2000, max_length=3000, gc=0.45, n_lineages=4, diversity=0.05)
    plain = [simulate.ClassSpec(n, **common) for n in ("p", "q")]
    marked = [simulate.ClassSpec(n, **common, signature=0.6) for n in ("p", "q")]
    lo = {
        s.name: log_odds(r.sequence for r in simulate.simulate_class(s, 20, 1, opts)) for s in plain
    }
    hi = {
        s.name: log_odds(r.sequence for r in simulate.simulate_class(s, 20, 1, opts))
        for s in marked
    }
    # independent bases: no dinucleotide preference; with a signature, each class has its own
    # (substitutions since the class ancestor and sampling noise leave ~0.1 either way)
    assert np.abs(lo["p"]).max() < 0.12 and np.abs(lo["p"] - lo["q"]).mean() < 0.05
    assert np.abs(hi["p"]).max() > 0.15 and np.abs(hi["p"] - hi["q"]).mean() > 0.09
    # it follows the class's odds ratios (up to row and column factors) and keeps the GC content
    odds = np.log(simulate.dinucleotide_odds(marked[0], 1))
    centred = [m - m.mean(0) - m.mean(1)[:, None] for m in (odds, hi["p"])]
    assert np.corrcoef(centred[0].ravel(), centred[1].ravel())[0, 1] > 0.8
    genome = simulate.ancestral_genome(marked[0], 20000, seed=1).decode()
    assert (genome.count("G") + genome.count("C")) / len(genome) == pytest.approx(0.45, abs=0.02)
    with pytest.raises(ConfigError, match="signature must be >= 0"):
        simulate.ClassSpec("a", 10, 20, signature=-0.1)
