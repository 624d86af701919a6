"""Open-set viral classification: "none of these" as an answer.

A classifier trained on K classes gives every input one of them; most real input (assemblies,
reads) is of none. Two standard remedies, used together here and compared in the evaluation:

* **A background class** (outlier exposure as an extra class): the training and validation
  splits get a class ``background`` of sequences outside the target classes, generated from
  each split's own records and offline generators (:func:`background_records`): dinucleotide
  shuffles of the split's records (same composition up to dinucleotides, no motifs), random
  sequences of random GC content, simulated families other than the targets, and host-like
  sequence (tandem repeats, low-complexity runs, GC-shifted CpG-depleted Markov chains). Their
  lengths are drawn from the split's in-class records, so length does not give them away.
* **A confidence threshold** calibrated on held-out data: a score per record (``msp``, the
  largest in-class probability of the record's combined window probabilities; ``energy``, the
  log-sum-exp of the in-class logits, Liu et al. 2020; ``max_logit``, the largest in-class
  logit, Hendrycks et al. 2022; both averaged over a record's windows; ``mahalanobis``, minus the
  smallest Mahalanobis distance of the record's k-mer frequencies to the training classes, Lee et
  al. 2018, :class:`MahalanobisDetector`) and the threshold below which at most ``fpr`` of the
  in-class validation records fall (:func:`calibrate`).
* **A class-conditional Gaussian detector** (:class:`MahalanobisDetector`, Lee et al., NeurIPS
  2018): one Gaussian per target class with a shared covariance (plus a ridge), fitted on the
  training split's in-class records; here on k-mer frequency vectors of the whole record (the
  representation of the k-mer baselines), so the same detector serves every engine (fp32,
  compressed, ONNX). Its score is compared with its own calibrated threshold.

A record is ``unclassified`` when it is unusable (``empty``, ``invalid_char``, ``missing_id``),
shorter than ``min_length`` (``too_short``), has too many ambiguity codes (``too_many_n``), is
called background (``background``) or scores below the threshold (``below_threshold``)
(:func:`decide`).

Out-of-class **test** records (:func:`ood_records`) come from the test split's records and from
generators with other seeds and other simulated families than the background, in four
categories: ``shuffled``, ``random``, ``other_family``, ``host_like``. All of them are synthetic:
real other families and host genomes can be added as FASTA files (``apps.viral.scan.openset.ood``).

:func:`fragments` cuts records into non-overlapping pieces for the fragment-length evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ...errors import ConfigError
from ...seeds import derive_seed
from .fasta import Record

BACKGROUND = "background"  # dataset.BACKGROUND_CLASS
UNCLASSIFIED = "unclassified"
CATEGORIES = ("shuffled", "random", "other_family", "host_like")
#: ``mahalanobis`` needs a fitted :class:`MahalanobisDetector`; the others come from the logits
SCORES = ("msp", "energy", "max_logit", "mahalanobis")
LOGIT_SCORES = ("msp", "energy", "max_logit")
#: reasons of an ``unclassified`` answer (besides the unusable record statuses of ``fasta``)
TOO_SHORT = "too_short"
TOO_MANY_N = "too_many_n"
BELOW_THRESHOLD = "below_threshold"
REASON_BACKGROUND = "background"

_ACGT = np.frombuffer(b"ACGT", dtype=np.uint8)


# ----------------------------------------------------------------------------- generators


def mono_shuffle(seq: str, rng: np.random.Generator) -> str:
    """The sequence's letters in random order (base composition kept)."""
    s = np.frombuffer(seq.encode("ascii"), dtype=np.uint8)
    return s[rng.permutation(s.size)].tobytes().decode("ascii")


def dinucleotide_shuffle(seq: str, rng: np.random.Generator) -> str:
    """A random sequence with exactly the same dinucleotide counts, first and last letter
    (Altschul & Erickson 1985: a random Eulerian walk through the dinucleotide graph).

    Composition up to dinucleotides survives, motifs and longer-range order do not: what a
    classifier that only knows composition cannot tell from the original.
    """
    n = len(seq)
    if n < 3:
        return seq
    s = seq.encode("ascii")
    edges: dict[int, list[int]] = {}
    for a, b in zip(s[:-1], s[1:], strict=True):
        edges.setdefault(a, []).append(b)
    last = s[-1]
    while True:
        # a random last exit per vertex; they must form a tree leading to the last letter
        exit_ = {v: int(rng.integers(len(e))) for v, e in edges.items() if v != last}
        ok = True
        for v in exit_:
            seen, u = set(), v
            while u != last:
                if u in seen:
                    ok = False
                    break
                seen.add(u)
                u = edges[u][exit_[u]]
            if not ok:
                break
        if ok:
            break
    order: dict[int, list[int]] = {}
    for v, e in edges.items():
        if v in exit_:
            rest = e[: exit_[v]] + e[exit_[v] + 1 :]
            order[v] = [rest[i] for i in rng.permutation(len(rest))] + [e[exit_[v]]]
        else:
            order[v] = [e[i] for i in rng.permutation(len(e))]
    out = bytearray([s[0]])
    pos = dict.fromkeys(order, 0)
    u = s[0]
    for _ in range(n - 1):
        nxt = order[u][pos[u]]
        pos[u] += 1
        out.append(nxt)
        u = nxt
    return out.decode("ascii")


def random_sequence(length: int, gc: float, rng: np.random.Generator) -> str:
    """Independent bases with GC content ``gc``."""
    p = [(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2]
    return _ACGT[rng.choice(4, size=length, p=p)].tobytes().decode("ascii")


def _markov(length: int, gc: float, cpg_odds: float, rng: np.random.Generator) -> str:
    """A first-order Markov chain with GC content near ``gc`` and CpG at ``cpg_odds`` times its
    expected frequency (vertebrate and plant host DNA: 0.2-0.4)."""
    f = np.array([(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2])
    p = np.tile(f, (4, 1))
    p[1, 2] *= cpg_odds  # C -> G
    p /= p.sum(axis=1, keepdims=True)
    cum = np.cumsum(p, axis=1)
    u = rng.random(length)
    out = np.empty(length, dtype=np.int64)
    out[0] = rng.choice(4, p=f)
    for i in range(1, length):
        out[i] = min(int(np.searchsorted(cum[out[i - 1]], u[i], side="right")), 3)
    return _ACGT[out].tobytes().decode("ascii")


def host_like_sequence(length: int, rng: np.random.Generator) -> str:
    """Host-like sequence of one of three kinds: tandem repeats (micro- and minisatellites with
    5 % point changes), low-complexity runs (homopolymers and dinucleotide runs in AT-rich
    sequence), or GC-shifted, CpG-depleted Markov sequence (GC 0.30-0.36 or 0.58-0.66)."""
    kind = int(rng.integers(3))
    if kind == 0:
        unit = _ACGT[rng.choice(4, size=int(rng.integers(1, 40)))].tobytes()
        seq = np.frombuffer((unit * (length // len(unit) + 1))[:length], dtype=np.uint8).copy()
        hit = rng.random(length) < 0.05
        seq[hit] = _ACGT[rng.choice(4, size=int(hit.sum()))]
        return seq.tobytes().decode("ascii")
    if kind == 1:
        parts, total = [], 0
        while total < length:
            if rng.random() < 0.5:
                run = bytes([_ACGT[rng.choice(4, p=[0.4, 0.1, 0.1, 0.4])]]) * int(
                    rng.integers(5, 25)
                )
            else:
                pair = _ACGT[rng.choice(4, size=2)].tobytes()
                run = pair * int(rng.integers(3, 12))
            filler = random_sequence(int(rng.integers(0, 15)), 0.3, rng).encode()
            parts.append(run + filler)
            total += len(run) + len(filler)
        return b"".join(parts)[:length].decode("ascii")
    gc = float(rng.uniform(0.30, 0.36) if rng.random() < 0.5 else rng.uniform(0.58, 0.66))
    return _markov(length, gc, float(rng.uniform(0.2, 0.4)), rng)


def other_families(
    lengths: Sequence[int], seed: int, prefix: str, n_families: int = 6
) -> list[str]:
    """Records of ``n_families`` simulated families that are none of the targets (their names,
    hence ancestors, signatures and GC content, derive from ``prefix`` and the seed), one per
    entry of ``lengths`` (each cut from a random offset of its genome)."""
    from .simulate import ClassSpec, SimulationOptions, simulate_class

    n = len(lengths)
    if n == 0:
        return []
    rng = np.random.default_rng(derive_seed(seed, "viral-openset", prefix, "families"))
    longest = max(int(x) for x in lengths)
    per = math.ceil(n / n_families)
    out: list[str] = []
    for f in range(n_families):
        spec = ClassSpec(
            f"{prefix}{f}",
            longest,
            longest,
            gc=float(rng.uniform(0.32, 0.62)),
            diversity=0.15,
            n_lineages=2,
            lineage_divergence=0.6,
            partial_fraction=0.0,
            signature=0.5,
        )
        recs = simulate_class(spec, per, seed, SimulationOptions(n_run_probability=0.0))
        out += [r.sequence for r in recs]
    order = rng.permutation(len(out))[:n]
    result = []
    for i, length in zip(order, lengths, strict=True):
        s = out[int(i)]
        length = min(int(length), len(s))
        at = int(rng.integers(0, len(s) - length + 1))
        result.append(s[at : at + length])
    return result


def _lengths(records: Sequence[Record], n: int, rng) -> list[int]:
    pool = np.array([len(r) for r in records] or [500], dtype=np.int64)
    return [int(x) for x in rng.choice(pool, size=n)]


def _counts(n: int, k: int) -> list[int]:
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


def generate(
    category: str,
    n: int,
    records: Sequence[Record],
    seed: int,
    key: str,
) -> list[str]:
    """``n`` sequences of one category, lengths drawn from ``records``; ``shuffled`` ones are
    dinucleotide shuffles of random ``records``. ``key`` separates independent draws (the
    background of each split, the test set)."""
    if category not in CATEGORIES:
        raise ConfigError(f"unknown out-of-class category {category!r}; known: {CATEGORIES}")
    rng = np.random.default_rng(derive_seed(seed, "viral-openset", key, category))
    if n <= 0:
        return []
    if category == "shuffled":
        if not records:
            raise ConfigError("shuffled out-of-class records need in-class records to shuffle")
        pick = rng.integers(len(records), size=n)
        return [dinucleotide_shuffle(records[int(i)].sequence, rng) for i in pick]
    lengths = _lengths(records, n, rng)
    if category == "random":
        return [random_sequence(m, float(rng.uniform(0.25, 0.75)), rng) for m in lengths]
    if category == "host_like":
        return [host_like_sequence(m, rng) for m in lengths]
    return other_families(lengths, seed, f"{key}_family")


def background_records(records: Sequence[Record], n: int, seed: int, split: str) -> list[Record]:
    """``n`` background records for one split, about equally from every category, generated
    from that split's in-class ``records`` only (no test sequence reaches training)."""
    out = []
    for cat, m in zip(CATEGORIES, _counts(n, len(CATEGORIES)), strict=True):
        for i, s in enumerate(generate(cat, m, records, seed, f"background_{split}")):
            out.append(
                Record(f"{BACKGROUND}_{split}_{cat}_{i:05d}", s, BACKGROUND, f"category={cat}")
            )
    return out


def ood_records(
    records: Sequence[Record],
    n_per_category: int,
    seed: int,
    extra: Mapping[str, Sequence[Record]] | None = None,
) -> list[Record]:
    """Out-of-class test records: ``n_per_category`` of every category from the test split's
    in-class ``records`` and generators of their own (other seeds, other simulated families than
    the background's), plus ``extra`` records by category (user FASTA files). Their label is
    ``unclassified`` (the right answer) and their description ``category=<category>``."""
    out = []
    for cat in CATEGORIES:
        for i, s in enumerate(generate(cat, n_per_category, records, seed, "ood")):
            out.append(Record(f"ood_{cat}_{i:05d}", s, UNCLASSIFIED, f"category={cat}"))
    for cat, recs in (extra or {}).items():
        for r in recs:
            out.append(Record(r.id, r.sequence, UNCLASSIFIED, f"category={cat}"))
    return out


# ----------------------------------------------------------------------------- fragments


def fragments(
    sequence: str, length: int, max_pieces: int | None, rng: np.random.Generator
) -> list[tuple[int, str]]:
    """Non-overlapping pieces of ``length`` tiled from the start (the remainder shorter than
    ``length`` is dropped), at most ``max_pieces`` of them chosen at random; ``(start, piece)``."""
    starts = np.arange(0, len(sequence) - length + 1, length)
    if max_pieces is not None and starts.size > max_pieces:
        starts = np.sort(rng.choice(starts, size=max_pieces, replace=False))
    return [(int(a), sequence[int(a) : int(a) + length]) for a in starts]


# ----------------------------------------------------------------------------- decisions


@dataclass(frozen=True)
class OpenSetRule:
    """How a scored record becomes a class or ``unclassified``.

    ``n_classes`` target classes (outputs after them: the background class when ``background``),
    ``score`` one of :data:`SCORES`, ``threshold`` (None: no threshold), ``min_length`` (shorter
    records are not scored)."""

    n_classes: int
    background: bool = False
    score: str = "msp"
    threshold: float | None = None
    min_length: int = 0

    def __post_init__(self):
        if self.score not in SCORES:
            raise ConfigError(f"open-set score must be one of {SCORES}, got {self.score!r}")
        if self.min_length < 0:
            raise ConfigError(f"min_length must be >= 0, got {self.min_length}")


def decide(proba: np.ndarray, scores: Mapping[str, float], rule: OpenSetRule) -> tuple[int, str]:
    """``(class index, "")`` or ``(-1, reason)`` for a scored record."""
    k = rule.n_classes
    if rule.background and proba.size > k and int(np.argmax(proba)) >= k:
        return -1, REASON_BACKGROUND
    if rule.threshold is not None and scores[rule.score] < rule.threshold:
        return -1, BELOW_THRESHOLD
    return int(np.argmax(proba[:k])), ""


class MahalanobisDetector:
    """Class-conditional Gaussians with a shared covariance (Lee et al., NeurIPS 2018, "A
    simple unified framework for detecting out-of-distribution samples and adversarial
    attacks"), on the k-mer frequencies of whole records (``baselines.kmer_frequencies``).

    :meth:`fit` takes in-class training features and labels (``0..n_classes-1``; other labels,
    e.g. the background class, are left out): the class means and the pooled within-class
    covariance, plus ``ridge`` times its mean variance on the diagonal (a shrinkage that keeps
    it invertible with few records: 4^k features). :meth:`score` is minus the smallest squared
    Mahalanobis distance to a class mean (higher is more in-class, as for the other scores), so
    :func:`calibrate` applies unchanged. Deterministic (closed form)."""

    def __init__(self, k: int = 3, ridge: float = 0.1):
        if not 1 <= int(k) <= 8:
            raise ConfigError(f"mahalanobis k must be in 1..8, got {k}")
        if not ridge > 0:
            raise ConfigError(f"mahalanobis ridge must be > 0, got {ridge}")
        self.k, self.ridge = int(k), float(ridge)
        self.means: np.ndarray | None = None
        self.precision: np.ndarray | None = None

    def fit(self, x: np.ndarray, labels: np.ndarray, n_classes: int) -> MahalanobisDetector:
        x = np.asarray(x, np.float64)
        labels = np.asarray(labels, np.int64)
        keep = (labels >= 0) & (labels < n_classes)
        x, labels = x[keep], labels[keep]
        present = np.unique(labels)
        if present.size == 0:
            raise ConfigError("the Mahalanobis detector needs in-class training records")
        self.means = np.stack([x[labels == c].mean(axis=0) for c in present])
        centred = x - self.means[np.searchsorted(present, labels)]
        cov = centred.T @ centred / max(len(x), 1)
        scale = float(np.trace(cov)) / cov.shape[0]
        cov += self.ridge * (scale if scale > 0 else 1.0) * np.eye(cov.shape[0])
        self.precision = np.linalg.inv(cov)
        return self

    def fit_sequences(
        self, seqs: Sequence[str], labels: np.ndarray, n_classes: int
    ) -> MahalanobisDetector:
        return self.fit(self.features(seqs), labels, n_classes)

    def features(self, seqs: Sequence[str]) -> np.ndarray:
        """k-mer frequencies ``(records, 4^k)`` of sequences (A, C, G, T; any other code breaks
        a k-mer)."""
        from .baselines import kmer_frequencies
        from .onehot import lookup_table

        raw = [s.upper().encode("ascii", errors="replace") for s in seqs]
        codes = lookup_table()[np.frombuffer(b"".join(raw), dtype=np.uint8)]
        offsets = np.concatenate(([0], np.cumsum([len(r) for r in raw]))).astype(np.int64)
        return kmer_frequencies(codes, offsets, self.k)

    def distances(self, x: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distances ``(records, classes)``."""
        if self.means is None or self.precision is None:
            raise ConfigError("the Mahalanobis detector is not fitted")
        d = np.asarray(x, np.float64)[:, None, :] - self.means[None, :, :]
        return np.einsum("rcf,fg,rcg->rc", d, self.precision, d)

    def score(self, x: np.ndarray) -> np.ndarray:
        """Minus the smallest squared distance per record (higher: more in-class)."""
        return -self.distances(x).min(axis=1)

    def score_sequences(self, seqs: Sequence[str]) -> np.ndarray:
        return self.score(self.features(seqs))


def calibrate(scores: Sequence[float], fpr: float) -> float:
    """The threshold below which at most ``fpr`` of ``scores`` (in-class held-out records) fall:
    the ``floor(fpr * n)``-th smallest score (the smallest when ``fpr * n < 1``)."""
    s = np.sort(np.asarray(scores, dtype=np.float64))
    s = s[np.isfinite(s)]
    if s.size == 0:
        raise ConfigError("no in-class held-out scores to calibrate the open-set threshold on")
    if not 0.0 <= fpr < 1.0:
        raise ConfigError(f"open-set fpr must be in [0, 1), got {fpr}")
    return float(s[int(math.floor(fpr * s.size))])


__all__ = [
    "BACKGROUND",
    "BELOW_THRESHOLD",
    "CATEGORIES",
    "LOGIT_SCORES",
    "REASON_BACKGROUND",
    "SCORES",
    "TOO_MANY_N",
    "TOO_SHORT",
    "UNCLASSIFIED",
    "MahalanobisDetector",
    "OpenSetRule",
    "background_records",
    "calibrate",
    "decide",
    "dinucleotide_shuffle",
    "fragments",
    "generate",
    "host_like_sequence",
    "mono_shuffle",
    "ood_records",
    "other_families",
    "random_sequence",
]
