"""Class balancing, stratified train/val/test splits and hold-out by sequence cluster.

Fernandes & Kung balances by duplicating minority-class sequences *before* splitting, so copies of one
sequence land in both training and test sets. Here the intended order is: cluster near-identical
sequences, split by cluster (stratified by class), then balance the training split only, by
downsampling to the smallest class or by class weights for the loss.

Clustering uses one-permutation MinHash sketches of canonical k-mers (a k-mer and its reverse
complement count as one, so a sequence deposited on the other strand still clusters with its
twin). Pairs whose estimated k-mer Jaccard similarity reaches ``threshold`` are linked and clusters
are the connected components (single linkage). For two sequences of identity ``p`` the expected
Jaccard is about ``p**k / (2 - p**k)``: with k = 16, J = 0.5 is about 97.5 % identity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ...errors import ConfigError
from .onehot import lookup_table

SPLITS = ("train", "val", "test")
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)
_EMPTY = np.uint64(0xFFFFFFFFFFFFFFFF)  # sketch slot with no k-mer


# ----------------------------------------------------------------------------- balancing


def class_counts(labels: Sequence) -> dict:
    values, counts = np.unique(np.asarray(labels), return_counts=True)
    return {
        v.item() if hasattr(v, "item") else v: int(c) for v, c in zip(values, counts, strict=True)
    }


def downsample(labels: Sequence, seed: int) -> np.ndarray:
    """Sorted indices keeping a random subset of every class the size of the smallest class."""
    labels = np.asarray(labels)
    if labels.size == 0:
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    n = int(counts.min())
    keep = [rng.choice(np.flatnonzero(labels == c), size=n, replace=False) for c in classes]
    return np.sort(np.concatenate(keep))


def class_weights(labels: Sequence) -> dict:
    """``n_total / (n_classes * n_class)`` per class: every class carries the same total weight."""
    counts = class_counts(labels)
    total, k = sum(counts.values()), len(counts)
    return {c: total / (k * n) for c, n in counts.items()}


@dataclass(frozen=True)
class Balanced:
    """Result of :func:`balance`: the indices to use and a weight per kept item."""

    indices: np.ndarray
    sample_weights: np.ndarray
    class_weights: dict


def balance(labels: Sequence, method: str = "weights", seed: int = 0) -> Balanced:
    """Balance classes by ``"downsample"`` (random subset, unit weights) or ``"weights"`` (keep
    everything, weight each item by its class weight). Apply it to the training split only."""
    labels = np.asarray(labels)
    if method == "downsample":
        idx = downsample(labels, seed)
        return Balanced(idx, np.ones(idx.size), {c: 1.0 for c in class_counts(labels)})
    if method == "weights":
        cw = class_weights(labels)
        weights = np.array([cw[v.item() if hasattr(v, "item") else v] for v in labels], dtype=float)
        return Balanced(np.arange(labels.size), weights, cw)
    raise ConfigError(f"balance method must be 'downsample' or 'weights', got {method!r}")


# ----------------------------------------------------------------------------- splitting


def _check_fractions(fractions) -> np.ndarray:
    f = np.asarray(fractions, dtype=float)
    if f.shape != (3,) or (f < 0).any() or not np.isclose(f.sum(), 1.0):
        raise ConfigError(
            f"split fractions must be three non-negative numbers (train, val, test) summing to 1, "
            f"got {list(fractions)}"
        )
    return f


def _largest_remainder(n: int, f: np.ndarray) -> np.ndarray:
    """Integer counts summing to n, close to n*f; every non-zero split gets one if n allows."""
    raw = n * f
    counts = np.floor(raw).astype(int)
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[: n - counts.sum()]] += 1
    nonzero = np.flatnonzero(f > 0)
    if n >= nonzero.size:
        for j in nonzero:
            if counts[j] == 0:  # take one from the largest split
                counts[np.argmax(counts)] -= 1
                counts[j] += 1
    return counts


def stratified_split(
    labels: Sequence,
    fractions=(0.8, 0.1, 0.1),
    seed: int = 0,
    groups: Sequence | None = None,
) -> np.ndarray:
    """Assign every item to ``"train"``, ``"val"`` or ``"test"``, stratified by label.

    Without ``groups`` each class is shuffled and cut to the fractions. With ``groups`` (e.g.
    cluster ids from :func:`cluster_sequences`) whole groups are assigned, so no group spans two
    splits: each group counts for its majority class, and groups go, largest first, to the split
    furthest below its target for that class. Fractions are then only approximate.
    """
    labels = np.asarray(labels)
    f = _check_fractions(fractions)
    rng = np.random.default_rng(seed)
    out = np.empty(labels.size, dtype=object)
    if groups is None:
        for c in np.unique(labels):
            idx = rng.permutation(np.flatnonzero(labels == c))
            counts = _largest_remainder(idx.size, f)
            for name, part in zip(SPLITS, np.split(idx, np.cumsum(counts)[:-1]), strict=True):
                out[part] = name
        return out.astype(str)

    groups = np.asarray(groups)
    if groups.shape != labels.shape:
        raise ConfigError(f"{groups.size} group ids for {labels.size} labels")
    gid, inverse = np.unique(groups, return_inverse=True)
    # majority class of each group
    classes, lab_idx = np.unique(labels, return_inverse=True)
    table = np.zeros((gid.size, classes.size), dtype=np.int64)
    np.add.at(table, (inverse, lab_idx), 1)
    major = table.argmax(axis=1)
    size = table.sum(axis=1)
    assigned = np.empty(gid.size, dtype=np.int64)
    for c in range(classes.size):
        gs = np.flatnonzero(major == c)
        if gs.size == 0:
            continue
        # random order, then largest first (stable), so ties between equal sizes are random
        gs = gs[rng.permutation(gs.size)]
        gs = gs[np.argsort(-size[gs], kind="stable")]
        target = size[gs].sum() * f
        filled = np.zeros(3)
        for g in gs:
            # split with the largest unfilled share of its target; empty splits never chosen
            deficit = np.where(f > 0, (target - filled) / np.where(target > 0, target, 1), -np.inf)
            j = int(np.argmax(deficit))
            assigned[g] = j
            filled[j] += size[g]
    names = np.array(SPLITS)
    return names[assigned[inverse]]


# ----------------------------------------------------------------------------- clustering


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """A strong 64-bit mixing hash (wrapping uint64 arithmetic)."""
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
        return x ^ (x >> np.uint64(31))


def minhash_sketches(seqs: Sequence, k: int = 16, n_hashes: int = 128, seed: int = 0) -> np.ndarray:
    """One-permutation MinHash sketch ``(n_seqs, n_hashes)`` of each sequence's canonical k-mers.

    A k-mer's hash picks its bin (top bits) and the sketch keeps the smallest hash per bin.
    Empty bins hold 2**64 - 1 and are ignored when comparing. K-mers holding N (or any other
    ambiguity code) are skipped. All sequences are processed together in k vectorised passes.
    """
    if not 1 <= k <= 31:
        raise ConfigError(f"k-mer size must be in 1..31, got {k}")
    if n_hashes < 1 or n_hashes & (n_hashes - 1):
        raise ConfigError(f"n_hashes must be a power of two, got {n_hashes}")
    out = np.full((len(seqs), n_hashes), _EMPTY, dtype=np.uint64)
    raw = []
    for s in seqs:
        s = getattr(s, "sequence", s)
        raw.append(s if isinstance(s, bytes) else str(s).encode("ascii", errors="replace"))
    lengths = np.fromiter((len(b) for b in raw), dtype=np.int64, count=len(raw))
    codes = lookup_table()[np.frombuffer(b"".join(raw), dtype=np.uint8)]
    m = codes.size - k + 1  # k-mer start positions over the concatenation
    if m <= 0:
        return out
    record = np.repeat(np.arange(len(raw)), lengths)
    bad = np.concatenate(([0], np.cumsum(codes > 3)))
    # keep k-mers inside one record and free of ambiguity codes
    ok = (record[:m] == record[k - 1 :]) & (bad[k : k + m] - bad[:m] == 0)
    c = np.minimum(codes, 3).astype(np.uint64)  # masked k-mers are dropped anyway
    fwd = np.zeros(m, dtype=np.uint64)
    rev = np.zeros(m, dtype=np.uint64)
    two = np.uint64(2)
    comp = np.uint64(3) - c  # complement: A<->T, C<->G
    tmp = np.empty(m, dtype=np.uint64)
    for j in range(k):  # in-place: k passes over the concatenation, no temporaries
        np.left_shift(fwd, two, out=fwd)
        np.bitwise_or(fwd, c[j : j + m], out=fwd)
        # reverse complement read backwards: base j lands at bits 2j
        np.left_shift(comp[j : j + m], two * np.uint64(j), out=tmp)
        np.bitwise_or(rev, tmp, out=rev)
    h = _splitmix64(np.minimum(fwd, rev)[ok] ^ np.uint64(seed))
    bits = int(np.log2(n_hashes))
    bins = (h >> np.uint64(64 - bits)).astype(np.int64) if bits else np.zeros(h.size, np.int64)
    np.minimum.at(out.reshape(-1), record[:m][ok] * n_hashes + bins, h)
    return out


def sketch_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Estimated Jaccard similarity between every row of ``a`` and every row of ``b``:
    the share of bins holding the same hash, among bins not empty in both."""
    if a.shape[1] >= 2**16:
        raise ConfigError(f"at most 65535 sketch bins, got {a.shape[1]}")
    # one bin at a time keeps memory at (len(a), len(b)) instead of (len(a), len(b), bins);
    # contiguous bin rows and preallocated outputs make each pass a plain vector op
    a_t, b_t = np.ascontiguousarray(a.T), np.ascontiguousarray(b.T)
    same = np.zeros((a.shape[0], b.shape[0]), dtype=np.uint16)
    eq = np.empty(same.shape, dtype=bool)
    for h in range(a.shape[1]):
        np.equal(a_t[h][:, None], b_t[h][None, :], out=eq)
        np.add(same, eq, out=same, casting="unsafe")
    same = same.astype(np.int32)
    # empty-in-both bins matched above but carry no information: count them with one product
    both_empty = ((a == _EMPTY).astype(np.float32) @ (b == _EMPTY).astype(np.float32).T).astype(
        np.int32
    )
    used = a.shape[1] - both_empty
    return np.where(used > 0, (same - both_empty) / np.maximum(used, 1), 0.0)


def _components(n: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Root of each node's connected component (hook roots, then pointer jumping; vectorised)."""
    label = np.arange(n)
    while True:
        ru, rv = label[u], label[v]
        diff = ru != rv
        if not diff.any():
            return label
        # hook the larger root under the smaller one (labels only ever decrease)
        np.minimum.at(label, np.maximum(ru[diff], rv[diff]), np.minimum(ru[diff], rv[diff]))
        while True:  # compress every path to its root
            nxt = label[label]
            if np.array_equal(nxt, label):
                break
            label = nxt


def cluster_sequences(
    seqs: Sequence,
    threshold: float = 0.5,
    k: int = 16,
    n_hashes: int = 128,
    seed: int = 0,
    block: int = 256,
) -> np.ndarray:
    """Cluster ids ``0..C-1`` (numbered by first member) so that any two sequences with estimated
    k-mer Jaccard >= ``threshold`` share a cluster (single linkage)."""
    if not 0.0 < threshold <= 1.0:
        raise ConfigError(f"cluster threshold must be in (0, 1], got {threshold}")
    sk = minhash_sketches(seqs, k=k, n_hashes=n_hashes, seed=seed)
    n = sk.shape[0]
    us, vs = [], []
    for i0 in range(0, n, block):
        # compare the block with itself and everything after it (upper triangle only)
        sim = sketch_similarity(sk[i0 : i0 + block], sk[i0:])
        ii, jj = np.nonzero(sim >= threshold)
        keep = jj + i0 > ii + i0
        us.append(ii[keep] + i0)
        vs.append(jj[keep] + i0)
    u = np.concatenate(us) if us else np.zeros(0, dtype=np.int64)
    v = np.concatenate(vs) if vs else np.zeros(0, dtype=np.int64)
    return cluster_ids(n, u, v)


def cluster_ids(n: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Single-linkage cluster ids ``0..C-1`` of ``n`` items joined by the pairs ``(u[i], v[i])``,
    numbered in order of each cluster's first member."""
    roots = _components(n, np.asarray(u, np.int64), np.asarray(v, np.int64))
    _, first, inverse = np.unique(roots, return_index=True, return_inverse=True)
    rank = np.empty(first.size, dtype=np.int64)
    rank[np.argsort(first)] = np.arange(first.size)
    return rank[inverse]


__all__ = [
    "SPLITS",
    "Balanced",
    "balance",
    "class_counts",
    "class_weights",
    "cluster_ids",
    "cluster_sequences",
    "downsample",
    "minhash_sketches",
    "sketch_similarity",
    "stratified_split",
]
