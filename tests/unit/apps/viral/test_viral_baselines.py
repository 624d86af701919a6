import itertools

import numpy as np

from quantscan.apps.viral.baselines import kmer_baseline, kmer_frequencies
from quantscan.apps.viral.dataset import length_only_baseline

CODE = {"A": 0, "C": 1, "G": 2, "T": 3, "N": 4}


def concat(seqs):
    codes = np.array([CODE[c] for s in seqs for c in s], np.int64)
    offsets = np.concatenate(([0], np.cumsum([len(s) for s in seqs])))
    return codes, offsets


def naive(seq, k):
    kmers = ["".join(p) for p in itertools.product("ACGT", repeat=k)]
    counts = np.array([sum(seq[i : i + k] == m for i in range(len(seq) - k + 1)) for m in kmers])
    return counts / counts.sum() if counts.sum() else counts.astype(float)


def test_kmer_frequencies_count_within_records_and_skip_other_codes():
    rng = np.random.default_rng(0)
    seqs = [
        "".join(rng.choice(list("ACGTN"), rng.integers(0, 40), p=[0.24] * 4 + [0.04]))
        for _ in range(30)
    ]
    seqs += ["AC", "NNNN", ""]  # no complete 3-mer: rows of zeros
    codes, offsets = concat(seqs)
    for k in (1, 2, 3):
        got = kmer_frequencies(codes, offsets, k)
        assert got.shape == (len(seqs), 4**k)
        for s, row in zip(seqs, got, strict=True):
            np.testing.assert_allclose(row, naive(s, k))  # no k-mer spans two records


def gc_records(n, gc, lengths, rng):
    p = [(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2]
    return [
        "".join(rng.choice(list("ACGT"), int(length), p=p)) for length in rng.choice(lengths, n)
    ]


def test_kmer_baseline_learns_composition_where_length_tells_nothing():
    rng = np.random.default_rng(1)
    lengths = np.arange(300, 900)
    train = gc_records(60, 0.40, lengths, rng) + gc_records(30, 0.50, lengths, rng)
    test = gc_records(50, 0.40, lengths, rng) + gc_records(50, 0.50, lengths, rng)
    y_train, y_test = np.repeat([0, 1], [60, 30]), np.repeat([0, 1], 50)
    x_train, x_test = (kmer_frequencies(*concat(s)) for s in (train, test))
    pred = kmer_baseline(x_train, y_train, x_test, 2)
    assert (pred == y_test).mean() >= 0.95
    assert np.array_equal(pred, kmer_baseline(x_train, y_train, x_test, 2))  # no random draws
    by_length = length_only_baseline([len(s) for s in train], y_train, [len(s) for s in test], 2)
    assert (by_length == y_test).mean() < 0.75


def test_kmer_baseline_with_a_class_missing_from_training_still_predicts_known_classes():
    rng = np.random.default_rng(2)
    train = gc_records(20, 0.35, [200], rng) + gc_records(20, 0.55, [200], rng)
    x = kmer_frequencies(*concat(train))
    pred = kmer_baseline(x, np.repeat([0, 2], 20), x, 3)
    assert set(pred) <= {0, 2} and (pred == np.repeat([0, 2], 20)).mean() >= 0.95
