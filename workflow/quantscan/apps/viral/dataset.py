"""Viral split files: sequences stored compactly, one-hot windows built on load.

A split file (``.npz``, no pickle) holds the records' channel codes (0-4 for A, C, G, T, other;
:data:`quantscan.apps.viral.onehot.CHANNELS`) concatenated, their offsets, labels, ids and hold-out
groups, and a window table (record, start). Records no longer than the model input N are one
window; longer records are cut into overlapping windows of N (stride as in classification), all
in the split of their record. :func:`load_onehot` builds the ``(windows, 5, N)`` uint8 one-hot
arrays every engine takes, so training, compression and evaluation stay application-agnostic
(``quantscan.data.load_split``).

Storage: the codes are 2-bit packed (A, C, G, T) with the positions of "other" bases listed
apart, so a split costs about 2 bits per base whatever N is (the padded one-hot would be
5 x N bytes per window, or 5 x N bits bit-packed).

:func:`build_splits` turns validated records into train/val/test files: stratified by class,
optionally holding out whole clusters of near-identical sequences or whole sources, then
balancing the *training* split only (viral.md section 8: split before balancing), by
``downsample`` (to the smallest class), ``resample`` (Fernandes & Kung: every class to ``per_class``
records, larger classes subsampled, smaller ones duplicated at random), ``weights`` (class
weights for the loss) or ``none``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...atomic import atomic_path
from ...errors import ConfigError, InputFormatError
from . import split as vsplit
from .fasta import Record, ValidationRules, read_fasta, write_fasta
from .onehot import CHANNELS, lookup_table, window_starts

FORMAT = "quantscan-viral-onehot-v1"
BALANCE_METHODS = ("none", "downsample", "resample", "weights")
HOLDOUTS = ("none", "cluster", "source", "taxon")
SOURCES = {"simulate": "simulated", "ncbi": "ncbi", "local": "local"}
#: the open-set background class (apps.viral.scan.openset.background), the model's last output;
#: the name is reserved, as is ``unclassified`` (the open-set answer)
BACKGROUND_CLASS = "background"
RESERVED_NAMES = (BACKGROUND_CLASS, "unclassified")
#: compression method types that write an ONNX Runtime model (model.onnx, rule
#: compress_int8) instead of a packed one (model.qsp, rule compress)
UNPACKED_METHOD_TYPES = ("int8",)
_OTHER = CHANNELS.index("N")
_KEYS = (
    "onehot",
    "other",
    "n_bases",
    "offsets",
    "labels",
    "ids",
    "sources",
    "groups",
    "window_record",
    "window_start",
    "class_names",
    "length",
    "stride",
    "format",
)


# ----------------------------------------------------------------------------- split files


def _codes(seqs: Sequence, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Channel codes (uint8 0-4) of all records concatenated, and their lengths."""
    table = lookup_table()
    raw = []
    for s in seqs:
        s = getattr(s, "sequence", s)
        raw.append(s if isinstance(s, bytes) else str(s).encode("ascii", errors="replace"))
    lengths = np.fromiter((len(b) for b in raw), dtype=np.int64, count=len(raw))
    codes = table[np.frombuffer(b"".join(raw), dtype=np.uint8)]
    bad = np.flatnonzero(codes > _OTHER)
    if bad.size:
        rec = int(np.searchsorted(np.cumsum(lengths), bad[0], side="right"))
        raise InputFormatError(
            f"record {ids[rec]}: not a nucleotide code at position "
            f"{int(bad[0] - lengths[:rec].sum()) + 1} (validate records before saving)"
        )
    return codes, lengths


def _pack2(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2-bit packing of A/C/G/T codes (4 per byte) plus the sorted positions of code 4."""
    other = np.flatnonzero(codes == _OTHER).astype(np.int64)
    two = np.where(codes == _OTHER, 0, codes).astype(np.uint8)
    pad = (-two.size) % 4
    two = np.concatenate((two, np.zeros(pad, np.uint8))).reshape(-1, 4)
    packed = two[:, 0] | (two[:, 1] << 2) | (two[:, 2] << 4) | (two[:, 3] << 6)
    return packed.astype(np.uint8), other


def _unpack2(packed: np.ndarray, other: np.ndarray, n: int) -> np.ndarray:
    shifts = np.array([0, 2, 4, 6], dtype=np.uint8)
    codes = ((packed[:, None] >> shifts) & 3).reshape(-1)[:n].astype(np.uint8)
    codes[other] = _OTHER
    return codes


def save_onehot(
    path: str | os.PathLike,
    sequences: Sequence,
    labels: Sequence[int],
    class_names: Sequence[str],
    *,
    length: int,
    stride: int | None = None,
    ids: Sequence[str] | None = None,
    sources: Sequence[str] | None = None,
    groups: Sequence[int] | None = None,
) -> dict:
    """Write a split file (atomically); returns ``{"records", "windows", "bases", "file_bytes"}``.

    ``sequences`` are str, bytes or :class:`~quantscan.apps.viral.fasta.Record` (validated: IUPAC
    codes only; case does not matter), ``labels`` class indices into ``class_names``. Records
    longer than ``length`` become windows every ``stride`` bases (default ``length // 2``).
    """
    n = len(sequences)
    stride = length // 2 if stride is None else int(stride)
    ids = [getattr(s, "id", f"#{i}") for i, s in enumerate(sequences)] if ids is None else ids
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if labels.size != n or len(ids) != n:
        raise ConfigError(f"{n} sequences but {labels.size} labels and {len(ids)} ids")
    if n and (labels.min() < 0 or labels.max() >= len(class_names)):
        raise ConfigError(f"labels must index the {len(class_names)} class names")
    codes, lengths = _codes(sequences, ids)
    if n and lengths.min() == 0:
        raise InputFormatError(f"record {ids[int(np.argmin(lengths))]}: empty sequence")
    starts = [window_starts(int(m), length, stride) for m in lengths]
    window_record = np.repeat(np.arange(n, dtype=np.int64), [len(s) for s in starts])
    window_start = np.concatenate(starts) if starts else np.zeros(0, np.int64)
    packed, other = _pack2(codes)
    arrays = {
        "onehot": packed,
        "other": other,
        "n_bases": np.int64(codes.size),
        "offsets": np.concatenate(([0], np.cumsum(lengths))).astype(np.int64),
        "labels": labels,
        "ids": np.asarray([str(i) for i in ids], dtype=str),
        "sources": np.asarray(
            [""] * n if sources is None else [str(s) for s in sources], dtype=str
        ),
        "groups": np.asarray(np.arange(n) if groups is None else groups, dtype=np.int64),
        "window_record": window_record,
        "window_start": window_start.astype(np.int64),
        "class_names": np.asarray([str(c) for c in class_names], dtype=str),
        "length": np.int64(length),
        "stride": np.int64(stride),
        "format": np.str_(FORMAT),
    }
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **arrays)
    return {
        "records": n,
        "windows": int(window_record.size),
        "bases": int(codes.size),
        "file_bytes": Path(path).stat().st_size,
    }


@dataclass(frozen=True)
class OneHotSplit:
    """A loaded split file; :meth:`onehot` builds the model input."""

    codes: np.ndarray
    offsets: np.ndarray
    labels: np.ndarray
    ids: np.ndarray
    sources: np.ndarray
    groups: np.ndarray
    window_record: np.ndarray
    window_start: np.ndarray
    class_names: tuple[str, ...]
    length: int
    stride: int

    @property
    def n_records(self) -> int:
        return int(self.labels.size)

    @property
    def n_windows(self) -> int:
        return int(self.window_record.size)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def window_labels(self) -> np.ndarray:
        return self.labels[self.window_record]

    def sequence(self, i: int) -> str:
        """Record ``i`` as text (ambiguity codes come back as N)."""
        letters = np.frombuffer("".join(CHANNELS).encode(), dtype=np.uint8)
        return letters[self.codes[self.offsets[i] : self.offsets[i + 1]]].tobytes().decode()

    def onehot(self, windows: np.ndarray | None = None) -> np.ndarray:
        """uint8 ``(windows, 5, length)``, zero padded past each record's end."""
        w = np.arange(self.n_windows) if windows is None else np.asarray(windows, np.int64)
        rec, start = self.window_record[w], self.window_start[w]
        seg = np.minimum(self.length, self.lengths[rec] - start)
        out = np.zeros((w.size, len(CHANNELS), self.length), dtype=np.uint8)
        total = int(seg.sum())
        if total == 0:
            return out
        row = np.repeat(np.arange(w.size), seg)
        first = np.concatenate(([0], np.cumsum(seg)[:-1]))
        pos = np.arange(total) - np.repeat(first, seg)
        src = np.repeat(self.offsets[rec] + start, seg) + pos
        out[row, self.codes[src], pos] = 1
        return out


def read_split(path: str | os.PathLike) -> OneHotSplit:
    """Load and check a split file written by :func:`save_onehot`."""
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in _KEYS if k not in z.files]
            if missing:
                raise InputFormatError(f"{path}: not a viral split file (missing {missing})")
            d = {k: z[k] for k in _KEYS}
    except InputFormatError:
        raise
    except Exception as err:
        raise InputFormatError(f"{path}: unreadable viral split file ({err})") from None
    if str(d["format"]) != FORMAT:
        raise InputFormatError(f"{path}: field 'format' is {str(d['format'])!r}, not {FORMAT!r}")
    n_bases = int(d["n_bases"])
    offsets = d["offsets"]
    n = d["labels"].size
    ok = (
        offsets.size == n + 1
        and offsets[-1] == n_bases
        and d["onehot"].size == (n_bases + 3) // 4
        and (d["other"].size == 0 or (0 <= d["other"].min() and d["other"].max() < n_bases))
        and d["window_record"].size == d["window_start"].size
        and (d["window_record"].size == 0 or d["window_record"].max() < n)
        and d["ids"].size == n
    )
    if not ok:
        raise InputFormatError(f"{path}: inconsistent array sizes (file corrupted?)")
    return OneHotSplit(
        codes=_unpack2(d["onehot"], d["other"], n_bases),
        offsets=offsets,
        labels=d["labels"].astype(np.int64),
        ids=d["ids"],
        sources=d["sources"],
        groups=d["groups"],
        window_record=d["window_record"],
        window_start=d["window_start"],
        class_names=tuple(str(c) for c in d["class_names"]),
        length=int(d["length"]),
        stride=int(d["stride"]),
    )


def load_onehot(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """``(x uint8 (windows, 5, N), y int64 (windows,))`` from a split file."""
    s = read_split(path)
    return s.onehot(), s.window_labels


# ----------------------------------------------------------------------------- records


def class_names_for(data: Mapping) -> list[str]:
    """Class names of the configured source (``apps.viral.data``), in label order."""
    source = data["source"]
    if source == "simulate":
        return [c["name"] for c in data["simulate"]["classes"]]
    if source == "ncbi":
        return list(data["ncbi"]["classes"])
    return list(data["local"])


def check_config(viral: Mapping) -> None:
    """Cross-key checks of the ``apps.viral`` config section (the schema checks types)."""
    data = viral["data"]
    names = class_names_for(data)
    where = {"simulate": "simulate.classes", "ncbi": "ncbi.classes", "local": "local"}[
        data["source"]
    ]
    where = f"apps.viral.data.{where}"
    if len(names) < 2:
        raise ConfigError(
            f"config key {where}: need at least two classes for source "
            f"{data['source']!r}, got {names}"
        )
    if len(set(names)) != len(names):
        raise ConfigError(f"config key {where}: class names repeat: {names}")
    for name in names:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
            raise ConfigError(
                f"config key {where}: class name {name!r} must match [A-Za-z][A-Za-z0-9_]*"
            )
        if name in RESERVED_NAMES:
            raise ConfigError(
                f"config key {where}: class name {name!r} is reserved (the open-set "
                f"answers: {', '.join(RESERVED_NAMES)}); rename the class"
            )
    # (the schema fills these keys; partial dicts from library callers may lack them)
    scan = viral.get("scan", {})
    min_length = scan.get("openset", {}).get("min_length", 0)
    osc = scan.get("openset", {})
    if osc.get("score") == "mahalanobis" and not osc.get("mahalanobis", {"k": 3}):
        raise ConfigError(
            "config key apps.viral.scan.openset.score: 'mahalanobis' needs the detector "
            "apps.viral.scan.openset.mahalanobis (it is null)"
        )
    short = [f for f in viral.get("evaluate", {}).get("fragments", []) if f < min_length]
    if short:
        raise ConfigError(
            f"config key apps.viral.evaluate.fragments: {short} are shorter than "
            f"apps.viral.scan.openset.min_length ({min_length}): every such fragment would be "
            "unclassified (too_short); lower min_length or drop them"
        )
    split = data.get("split", {})
    holdout = split.get("holdout", "cluster")
    if holdout != "taxon" and split.get("taxonomy"):
        raise ConfigError(
            "config key apps.viral.data.split.taxonomy: a taxonomy table is read for holdout "
            f"'taxon' only (holdout is {holdout!r})"
        )
    if holdout != "cluster" and split.get("identity") is not None:
        raise ConfigError(
            "config key apps.viral.data.split.identity: applies to holdout 'cluster' only "
            f"(holdout is {holdout!r})"
        )
    if data["stride"] is not None and data["stride"] > data["length"]:
        raise ConfigError(
            f"config key apps.viral.data.stride: {data['stride']} exceeds apps.viral.data.length "
            f"{data['length']}"
        )
    f = data["split"]["fractions"]
    if not np.isclose(sum(f), 1.0) or f[0] <= 0 or f[2] <= 0:
        raise ConfigError(
            "config key apps.viral.data.split.fractions: need train > 0, test > 0 and a sum of "
            f"1, got {f}"
        )
    if data["source"] == "ncbi":
        email = data["ncbi"]["email"]
        if not email or "@" not in email:
            raise ConfigError(
                "config key apps.viral.data.ncbi.email: NCBI asks every client for a contact "
                "e-mail; set it (the API key, if any, goes in the NCBI_API_KEY environment "
                "variable, not here)"
            )
    if data["source"] == "local":
        for name, paths in data["local"].items():
            if not paths:
                raise ConfigError(f"config key apps.viral.data.local.{name}: no FASTA files given")
    for c in data["simulate"]["classes"]:
        if c["min_length"] > c["max_length"]:
            raise ConfigError(
                f"config key apps.viral.data.simulate.classes: {c['name']}: min_length > max_length"
            )
    methods = viral.get("compress", {}).get("methods", {})
    for name, method in methods.items():
        if method.get("scenarios"):
            raise ConfigError(
                f"config key apps.viral.compress.methods.{name}.scenarios: sweep scenarios do "
                "not apply to the viral model; remove the key"
            )
        if method["type"] in UNPACKED_METHOD_TYPES and method.get("finetune"):
            raise ConfigError(
                f"config key apps.viral.compress.methods.{name}.finetune: type "
                f"{method['type']!r} is post-training quantization without fine-tuning; remove "
                "the key"
            )
    model = scan["classify"]["model"]
    if model != "fp32" and model not in methods:
        raise ConfigError(
            f"config key apps.viral.scan.classify.model: {model!r} is neither fp32 nor a method "
            f"of apps.viral.compress.methods ({', '.join(methods) or 'none configured'})"
        )


def tokens(description: str) -> dict[str, str]:
    """``key=value`` tokens of a FASTA description (``class=``, ``source=``)."""
    return dict(t.split("=", 1) for t in description.split() if "=" in t)


def accession_prefix(record_id: str) -> str:
    """Letters (and underscore) before the first digit: NC_, MN, OQ ... (a crude source proxy)."""
    m = re.match(r"[A-Za-z_]+", record_id)
    return m.group(0) if m else ""


def read_records(
    paths: Mapping[str, str | os.PathLike], rules: ValidationRules | None = None
) -> list[Record]:
    """All records of one FASTA per class (``{class: path}``), validated and flagged (never
    raised); ``source`` is the description's ``source=`` token, else the accession prefix."""
    rules = rules or ValidationRules()
    seen: set[str] = set()
    out = []
    for label, path in paths.items():
        for r in read_fasta(path, label=label, rules=rules, on_invalid="flag", seen_ids=seen):
            src = tokens(r.description).get("source") or accession_prefix(r.id)
            out.append(Record(r.id, r.sequence, label, r.description, src, r.status, r.detail))
    return out


def resample(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Fernandes & Kung's balancing: ``per_class`` indices per class, a random subset of larger classes
    and all items of smaller ones plus random duplicates. Sorted."""
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if idx.size >= per_class:
            keep.append(rng.choice(idx, size=per_class, replace=False))
        else:
            keep.append(np.concatenate((idx, rng.choice(idx, size=per_class - idx.size))))
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)


@dataclass(frozen=True)
class SplitResult:
    counts: list[dict]
    class_weights: list[float] | None
    assignment: np.ndarray
    records: list[Record]


def build_splits(
    records: Sequence[Record],
    class_names: Sequence[str],
    out: Mapping[str, str | os.PathLike],
    *,
    length: int,
    stride: int,
    fractions=(0.7, 0.15, 0.15),
    holdout: str = "none",
    cluster_threshold: float = 0.5,
    cluster_k: int = 16,
    identity: float | None = None,
    taxa: Mapping[str, str] | None = None,
    taxon_key: str = "taxon",
    balance: str = "weights",
    per_class: int | None = None,
    background: float | None = None,
    seed: int = 0,
    log=None,
) -> SplitResult:
    """Write ``out["train"|"val"|"test"]`` from labelled records; flagged records are dropped.

    Hold-outs keep groups in one split: ``cluster`` (MinHash k-mer Jaccard >= ``cluster_threshold``,
    or, with ``identity``, the Jaccard that sequences of that identity share at ``cluster_k``:
    :func:`identity_threshold`), ``source`` (the source= token), ``taxon`` (``taxa[record id]``
    from a taxonomy table, else the description's ``<taxon_key>=`` token; a record without one is
    an error).

    ``background`` (a multiple of the mean in-class records per class of a split, or None) adds
    the class ``openset.BACKGROUND`` after ``class_names`` to the training (after balancing) and
    validation splits, generated from each split's own records (``openset.background_records``);
    the test split stays in-class (its out-of-class records are ``openset.ood_records``).

    Returns per-class counts (read, dropped, groups, records and windows per split, training
    records after balancing, class weight), the class weights for the loss (``balance="weights"``;
    None otherwise), the split of every kept record and the kept records.
    """
    if holdout not in HOLDOUTS:
        raise ConfigError(f"holdout must be one of {HOLDOUTS}, got {holdout!r}")
    if balance not in BALANCE_METHODS:
        raise ConfigError(f"balance must be one of {BALANCE_METHODS}, got {balance!r}")
    index = {c: i for i, c in enumerate(class_names)}
    unknown = {r.label for r in records} - set(index)
    if unknown:
        raise ConfigError(f"records carry classes {sorted(unknown)} not in {list(class_names)}")
    kept = [r for r in records if r.ok]
    labels = np.array([index[r.label] for r in kept], dtype=np.int64)
    present = set(labels.tolist())
    empty = [c for c in class_names if index[c] not in present]
    if empty:
        raise InputFormatError(f"no usable records for classes {empty}")

    if holdout == "cluster":
        threshold, n_hashes = cluster_threshold, 128
        if identity is not None:
            threshold, n_hashes = identity_threshold(identity, cluster_k), 1024
        groups = vsplit.cluster_sequences(
            [r.sequence for r in kept],
            threshold=threshold,
            k=cluster_k,
            n_hashes=n_hashes,
            seed=seed,
        )
    elif holdout == "source":
        _, groups = np.unique([r.source for r in kept], return_inverse=True)
    elif holdout == "taxon":
        _, groups = np.unique(record_taxa(kept, taxa, taxon_key), return_inverse=True)
    else:
        groups = np.arange(len(kept))
    assignment = vsplit.stratified_split(
        labels, fractions, seed=seed, groups=None if holdout == "none" else groups
    )

    chosen: dict[str, np.ndarray] = {}
    for name in vsplit.SPLITS:
        chosen[name] = np.flatnonzero(assignment == name)
    train = chosen["train"]
    if balance == "downsample":
        train = train[vsplit.downsample(labels[train], seed)]
    elif balance == "resample":
        target = per_class or int(np.bincount(labels[train]).max())
        train = train[resample(labels[train], target, seed)]
    chosen["train"] = train

    # the background class (open set): generated per split from that split's records only
    k = len(class_names)
    names = list(class_names)
    extra: dict[str, list[Record]] = {s: [] for s in vsplit.SPLITS}
    if background is not None:
        from . import openset

        names.append(openset.BACKGROUND)
        for name in ("train", "val"):
            idx = chosen[name]
            n_bg = round(background * len(idx) / k) if len(idx) else 0
            extra[name] = openset.background_records([kept[i] for i in idx], n_bg, seed, name)

    windows = {}
    for name in vsplit.SPLITS:
        idx = chosen[name]
        recs = [kept[i] for i in idx] + extra[name]
        lab = np.concatenate((labels[idx], np.full(len(extra[name]), k, np.int64)))
        info = save_onehot(
            out[name],
            recs,
            lab,
            names,
            length=length,
            stride=stride,
            ids=[r.id for r in recs],
            sources=[r.source for r in recs],
            groups=np.concatenate((groups[idx], np.full(len(extra[name]), -1, np.int64))),
        )
        # windows per class: count record windows through window_starts again (cheap)
        n_win = np.array([len(window_starts(len(r), length, stride)) for r in recs], int)
        windows[name] = np.bincount(lab, weights=n_win, minlength=len(names))
        if log:
            log.info(
                "%s: %d records (%d background), %d windows, %d bytes",
                name,
                info["records"],
                len(extra[name]),
                info["windows"],
                info["file_bytes"],
            )

    weights = None
    if balance == "weights":
        w_train = windows["train"]
        if (w_train == 0).any():
            missing = [c for c, n in zip(names, w_train, strict=True) if n == 0]
            raise InputFormatError(f"no training windows for classes {missing}")
        weights = (w_train.sum() / (len(names) * w_train)).tolist()

    counts = []
    read = np.array([index[r.label] for r in records], dtype=np.int64)
    for c, name in enumerate(names):
        if c == k:  # the generated background class
            row = {"class": name, "read": 0, "dropped": 0, "groups": 0}
            for split_name in vsplit.SPLITS:
                row[f"{split_name}_records"] = len(extra[split_name])
            row["train_balanced"] = len(extra["train"])
        else:
            row = {
                "class": name,
                "read": int((read == c).sum()),
                "dropped": int(sum(1 for r in records if r.label == name and not r.ok)),
                "groups": int(np.unique(groups[labels == c]).size),
            }
            for split_name in vsplit.SPLITS:
                row[f"{split_name}_records"] = int(
                    ((assignment == split_name) & (labels == c)).sum()
                )
            row["train_balanced"] = int((labels[chosen["train"]] == c).sum())
        for split_name in vsplit.SPLITS:
            row[f"{split_name}_windows"] = int(windows[split_name][c])
        row["class_weight"] = 1.0 if weights is None else float(weights[c])
        counts.append(row)
        missing = [
            s
            for s, f in zip(vsplit.SPLITS, fractions, strict=True)
            if f > 0 and not row[f"{s}_records"] and c < k
        ]
        if log and missing:
            log.warning(
                "class %s has no records in %s (hold-out %r keeps whole groups together)",
                name,
                ", ".join(missing),
                holdout,
            )
    return SplitResult(counts, weights, assignment, kept)


def identity_threshold(identity: float, k: int) -> float:
    """The k-mer Jaccard similarity two sequences of pairwise ``identity`` share on average,
    ``p^k / (2 - p^k)`` (Mash's model: each k-mer survives with probability p^k)."""
    if not 0.0 < identity <= 1.0:
        raise ConfigError(f"identity must be in (0, 1], got {identity}")
    q = float(identity) ** int(k)
    return q / (2.0 - q)


def read_taxonomy(path: str | os.PathLike) -> dict[str, str]:
    """A taxonomy table: tab-separated, a header with columns ``id`` and ``taxon`` (other columns
    are ignored); one row per record id."""
    path = Path(path)
    if not path.is_file():
        raise InputFormatError(f"{path}: taxonomy table not found")
    lines = [ln.rstrip("\n").split("\t") for ln in path.read_text().splitlines() if ln.strip()]
    if not lines or "id" not in lines[0] or "taxon" not in lines[0]:
        raise InputFormatError(f"{path}: the header needs the columns 'id' and 'taxon'")
    i, t = lines[0].index("id"), lines[0].index("taxon")
    out: dict[str, str] = {}
    for n, row in enumerate(lines[1:], start=2):
        if len(row) <= max(i, t) or not row[i] or not row[t]:
            raise InputFormatError(f"{path}: line {n}: field 'id' or 'taxon' is empty")
        if row[i] in out and out[row[i]] != row[t]:
            raise InputFormatError(f"{path}: line {n}: record {row[i]!r} has two taxa")
        out[row[i]] = row[t]
    return out


def record_taxa(
    records: Sequence[Record], taxa: Mapping[str, str] | None = None, key: str = "taxon"
) -> list[str]:
    """The taxon of every record: ``taxa[id]`` (a taxonomy table), else the description's
    ``<key>=`` token. A record without a taxon is an error naming it."""
    out = []
    for r in records:
        taxon = (taxa or {}).get(r.id) or tokens(r.description).get(key)
        if not taxon:
            where = (
                "the taxonomy table (apps.viral.data.split.taxonomy)"
                if taxa
                else f"a '{key}=' token"
            )
            raise InputFormatError(
                f"record {r.id!r} ({r.source or 'no source'}): no taxon for holdout 'taxon'; give "
                f"it {where} in its FASTA header or a row in apps.viral.data.split.taxonomy"
            )
        # a taxon is named per class: the same name in two classes is two taxa
        out.append(f"{r.label}/{taxon}")
    return out


def write_split_fasta(records: Sequence[Record], path: str | os.PathLike) -> Path:
    """The records of a split as FASTA with ``class=`` and ``source=`` tokens (classify input)."""
    return write_fasta(
        [
            Record(r.id, r.sequence, r.label, f"source={r.source}" if r.source else "")
            for r in records
        ],
        path,
    )


def length_only_baseline(
    train_lengths,
    train_labels,
    test_lengths,
    n_classes: int,
    n_bins: int = 20,
    log_posterior: bool = False,
) -> np.ndarray:
    """Predicted classes from sequence length alone (viral.md section 8: the length confound).

    A histogram naive Bayes: length bins at training quantiles, per-class bin frequencies with
    add-one smoothing, times class priors; returns the most probable class per test record (or,
    with ``log_posterior``, the unnormalised log posteriors ``(records, classes)``).
    """
    train_lengths = np.asarray(train_lengths, float)
    train_labels = np.asarray(train_labels, np.int64)
    edges = np.unique(np.quantile(train_lengths, np.linspace(0, 1, n_bins + 1)))[1:-1]
    tb = np.searchsorted(edges, train_lengths, side="right")
    table = np.ones((n_classes, edges.size + 1))
    np.add.at(table, (train_labels, tb), 1)
    prior = np.bincount(train_labels, minlength=n_classes) + 1.0
    like = table / table.sum(axis=1, keepdims=True)
    post = like[:, np.searchsorted(edges, np.asarray(test_lengths, float), side="right")]
    if log_posterior:
        return np.log(post * prior[:, None]).T
    return np.argmax(post * prior[:, None], axis=0)


def write_atomic_tsv(rows: Sequence[Mapping], path: str | os.PathLike) -> None:
    """Rows of equal keys as a tab-separated table with a header."""
    keys = list(rows[0]) if rows else []
    lines = ["\t".join(keys)]
    for r in rows:
        lines.append("\t".join(_fmt(r[k]) for k in keys))
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


__all__ = [
    "BACKGROUND_CLASS",
    "BALANCE_METHODS",
    "FORMAT",
    "HOLDOUTS",
    "SOURCES",
    "UNPACKED_METHOD_TYPES",
    "OneHotSplit",
    "SplitResult",
    "accession_prefix",
    "build_splits",
    "check_config",
    "identity_threshold",
    "read_taxonomy",
    "record_taxa",
    "class_names_for",
    "length_only_baseline",
    "load_onehot",
    "read_records",
    "read_split",
    "resample",
    "save_onehot",
    "tokens",
    "write_atomic_tsv",
    "write_split_fasta",
]
