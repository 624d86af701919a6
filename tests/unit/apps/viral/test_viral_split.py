"""Balancing, stratified splits and hold-out by cluster of near-identical sequences."""

import numpy as np
import pytest

from quantscan.apps.viral import split
from quantscan.errors import ConfigError

BASES = np.frombuffer(b"ACGT", dtype=np.uint8)


def random_seq(rng, n):
    return rng.choice(BASES, size=n).tobytes().decode()


def mutate(rng, seq, rate):
    s = np.frombuffer(seq.encode(), dtype=np.uint8).copy()
    hits = rng.random(s.size) < rate
    s[hits] = rng.choice(BASES, size=int(hits.sum()))
    return s.tobytes().decode()


def revcomp(seq):
    return seq[::-1].translate(str.maketrans("ACGT", "TGCA"))


LABELS = np.array(["a"] * 50 + ["b"] * 20 + ["c"] * 10)


def test_downsample_to_smallest_class():
    idx = split.downsample(LABELS, seed=1)
    assert split.class_counts(LABELS[idx]) == {"a": 10, "b": 10, "c": 10}
    assert (np.diff(idx) > 0).all()
    assert set(idx[LABELS[idx] == "c"]) == set(np.flatnonzero(LABELS == "c"))
    assert not np.array_equal(idx, split.downsample(LABELS, seed=2))
    np.testing.assert_array_equal(idx, split.downsample(LABELS, seed=1))


def test_class_weights_equalise_total_weight():
    bal = split.balance(LABELS, method="weights")
    assert bal.indices.size == LABELS.size
    totals = {c: bal.sample_weights[LABELS == c].sum() for c in "abc"}
    assert totals["a"] == pytest.approx(totals["b"]) == pytest.approx(totals["c"])
    assert bal.class_weights["c"] == pytest.approx(80 / (3 * 10))
    bal = split.balance(LABELS, method="downsample", seed=0)
    assert bal.indices.size == 30 and (bal.sample_weights == 1).all()
    with pytest.raises(ConfigError, match="downsample.*weights"):
        split.balance(LABELS, method="duplicate")


def test_stratified_split_fractions_and_seed():
    labels = np.array(["a"] * 100 + ["b"] * 40)
    s = split.stratified_split(labels, (0.8, 0.1, 0.1), seed=5)
    for c, n in (("a", 100), ("b", 40)):
        got = {k: int(((labels == c) & (s == k)).sum()) for k in split.SPLITS}
        assert got == {"train": round(0.8 * n), "val": round(0.1 * n), "test": round(0.1 * n)}
    np.testing.assert_array_equal(s, split.stratified_split(labels, (0.8, 0.1, 0.1), seed=5))
    assert not np.array_equal(s, split.stratified_split(labels, (0.8, 0.1, 0.1), seed=6))
    # a tiny class still gets one item in every non-empty split
    tiny = np.array(["a"] * 3 + ["b"] * 50)
    s = split.stratified_split(tiny, (0.8, 0.1, 0.1), seed=0)
    assert sorted(s[tiny == "a"]) == ["test", "train", "val"]
    with pytest.raises(ConfigError, match="summing to 1"):
        split.stratified_split(labels, (0.8, 0.3, 0.1))


@pytest.fixture(scope="module")
def families():
    """30 families of 1-8 near-identical sequences (1 % divergence, some reverse-complemented),
    10 families per class; unrelated between families."""
    rng = np.random.default_rng(42)
    seqs, labels, truth = [], [], []
    for fam in range(30):
        base = random_seq(rng, int(rng.integers(1000, 3000)))
        for _ in range(int(rng.integers(1, 9))):
            s = mutate(rng, base, 0.01)
            seqs.append(revcomp(s) if rng.random() < 0.3 else s)
            labels.append("abc"[fam % 3])
            truth.append(fam)
    return seqs, np.array(labels), np.array(truth)


def test_clusters_recover_near_identical_families(families):
    seqs, _, truth = families
    clusters = split.cluster_sequences(seqs, threshold=0.5, k=16)
    # same family <=> same cluster (reverse complements included)
    same_truth = truth[:, None] == truth[None, :]
    same_cluster = clusters[:, None] == clusters[None, :]
    np.testing.assert_array_equal(same_truth, same_cluster)
    assert clusters[0] == 0 and clusters.max() == 29


def test_sketch_similarity_tracks_identity():
    rng = np.random.default_rng(3)
    base = random_seq(rng, 3000)
    variants = [base, mutate(rng, base, 0.01), mutate(rng, base, 0.05), random_seq(rng, 3000)]
    sk = split.minhash_sketches(variants, k=16, n_hashes=256)
    sim = split.sketch_similarity(sk[:1], sk)[0]
    assert sim[0] == 1.0
    assert sim[1] > 0.6 > sim[2] > 0.2 > 0.05 > sim[3]
    # N runs do not create k-mers; a sequence shorter than k has an empty sketch
    sk = split.minhash_sketches(["N" * 100, "ACG"], k=16)
    assert (split.sketch_similarity(sk, sk) == 0).all()


def test_no_cluster_spans_two_splits(families):
    seqs, labels, _ = families
    clusters = split.cluster_sequences(seqs, threshold=0.5)
    s = split.stratified_split(labels, (0.6, 0.2, 0.2), seed=1, groups=clusters)
    for c in np.unique(clusters):
        assert len(set(s[clusters == c])) == 1, f"cluster {c} spans {set(s[clusters == c])}"
    # every class still reaches every split, and train is the biggest
    for lab in "abc":
        assert set(s[labels == lab]) == set(split.SPLITS)
    frac = np.mean(s == "train")
    assert 0.45 < frac < 0.75
    # without groups, families are split up (the leak the option prevents)
    loose = split.stratified_split(labels, (0.6, 0.2, 0.2), seed=1)
    assert any(len(set(loose[clusters == c])) > 1 for c in np.unique(clusters))


def test_connected_components_chain():
    # 0-1, 1-2, 3-4 and a lone 5: single linkage joins the chain
    roots = split._components(6, np.array([1, 2, 4]), np.array([0, 1, 3]))
    assert roots[0] == roots[1] == roots[2] and roots[3] == roots[4]
    assert len({roots[0], roots[3], roots[5]}) == 3


def test_cluster_ids_numbered_by_first_member():
    # pairs (4, 1) and (3, 4) join 1, 3, 4; 0 and 2 stand alone; no pairs: every item its own
    ids = split.cluster_ids(5, np.array([4, 3]), np.array([1, 4]))
    assert ids.tolist() == [0, 1, 2, 1, 1]
    assert split.cluster_ids(3, np.zeros(0, np.int64), np.zeros(0, np.int64)).tolist() == [0, 1, 2]


def test_clustering_thousands_finds_every_family():
    # 2,000 sequences in 200 families (speed: benchmarks/viral_prep.py)
    rng = np.random.default_rng(0)
    seqs = [random_seq(rng, 1500) for _ in range(200)]
    seqs = [mutate(rng, s, 0.005) for s in seqs for _ in range(10)]
    clusters = split.cluster_sequences(seqs)
    assert clusters.max() + 1 == 200
    assert (clusters.reshape(200, 10) == clusters[::10, None]).all()
