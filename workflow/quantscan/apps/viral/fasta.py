"""Read, validate and write nucleotide FASTA files (the local-file data source for viral classes).

Every record is read with Biopython ``SeqIO``, upper-cased, and checked for empty sequences,
characters outside the IUPAC nucleotide alphabet, long runs of N and too many ambiguous bases.
A bad record is either kept with a ``status`` other than ``"ok"`` (``on_invalid="flag"``) or
reported as an :class:`~quantscan.errors.InputFormatError` naming the file, the record and the
offending character and position (``on_invalid="raise"``). The whole file is read and checked
before anything is raised, so a bad record never leaves a half-processed result behind.
"""

from __future__ import annotations

import gzip
import io
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from Bio import SeqIO

from ...atomic import atomic_path
from ...errors import ConfigError, InputFormatError

#: IUPAC nucleotide codes accepted in a sequence. U (RNA) is rewritten to T; every code other
#: than A, C, G, T is "ambiguous" and goes to the N channel of the one-hot encoding.
IUPAC = "ACGTURYSWKMBDHVN"
AMBIGUOUS = frozenset("RYSWKMBDHVN")

#: record statuses; anything but ``OK`` is a flagged record
OK = "ok"
EMPTY = "empty"
INVALID_CHAR = "invalid_char"
N_RUN = "n_run"
AMBIGUOUS_FRACTION = "ambiguous"
LENGTH = "length"
DUPLICATE_ID = "duplicate_id"
MISSING_ID = "missing_id"
STATUSES = (OK, EMPTY, INVALID_CHAR, N_RUN, AMBIGUOUS_FRACTION, LENGTH, DUPLICATE_ID, MISSING_ID)

# byte -> 1 where the (upper-cased) byte is an accepted code
_VALID = np.zeros(256, dtype=bool)
_VALID[np.frombuffer(IUPAC.encode(), dtype=np.uint8)] = True


@dataclass(frozen=True)
class Record:
    """One nucleotide sequence with its class label and validation status."""

    id: str
    sequence: str
    label: str | None = None
    description: str = ""
    source: str = ""
    status: str = OK
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == OK

    def __len__(self) -> int:
        return len(self.sequence)

    def __bool__(self) -> bool:  # truthy even when empty (``__len__`` would make it falsy)
        return True


@dataclass(frozen=True)
class ValidationRules:
    """Thresholds for flagging records; ``None`` switches a check off."""

    max_n_run: int | None = 100
    max_ambiguous_fraction: float | None = 0.1
    min_length: int | None = None
    max_length: int | None = None

    def __post_init__(self):
        if self.max_n_run is not None and self.max_n_run < 1:
            raise ConfigError(f"max_n_run must be >= 1, got {self.max_n_run}")
        frac = self.max_ambiguous_fraction
        if frac is not None and not 0.0 <= frac <= 1.0:
            raise ConfigError(f"max_ambiguous_fraction must be in [0, 1], got {frac}")
        if (
            self.min_length is not None
            and self.max_length is not None
            and self.min_length > self.max_length
        ):
            raise ConfigError(f"min_length {self.min_length} > max_length {self.max_length}")


def _longest_run(mask: np.ndarray) -> tuple[int, int]:
    """Length and 0-based start of the longest run of True in ``mask`` (0, -1 if none)."""
    if not mask.any():
        return 0, -1
    padded = np.concatenate(([False], mask, [False])).astype(np.int8)
    edges = np.diff(padded)
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    lengths = ends - starts
    i = int(np.argmax(lengths))
    return int(lengths[i]), int(starts[i])


def check_sequence(
    sequence: str, rules: ValidationRules = ValidationRules()
) -> tuple[str, str, str]:
    """Normalise one sequence and check it: returns ``(sequence, status, detail)``.

    The sequence is upper-cased and U becomes T. ``detail`` says what is wrong, with 1-based
    positions, and is empty for a good record. Checks run in order of severity and the first
    failure is reported.
    """
    seq = sequence.upper().replace("U", "T")
    if not seq:
        return seq, EMPTY, "empty sequence"
    raw = np.frombuffer(seq.encode("utf-8", errors="replace"), dtype=np.uint8)
    if raw.size != len(seq) or not _VALID[raw].all():
        # non-ASCII input makes byte and character positions differ: find the position on str
        pos = next(i for i, ch in enumerate(seq) if ch not in IUPAC)
        return seq, INVALID_CHAR, f"invalid character {seq[pos]!r} at position {pos + 1}"
    n_mask = raw == ord("N")
    if rules.max_n_run is not None:
        run, start = _longest_run(n_mask)
        if run > rules.max_n_run:
            return (
                seq,
                N_RUN,
                f"run of {run} N at positions {start + 1}-{start + run} (limit {rules.max_n_run})",
            )
    if rules.max_ambiguous_fraction is not None:
        n_amb = int(np.isin(raw, np.frombuffer("".join(AMBIGUOUS).encode(), np.uint8)).sum())
        frac = n_amb / raw.size
        if frac > rules.max_ambiguous_fraction:
            return (
                seq,
                AMBIGUOUS_FRACTION,
                f"{n_amb} of {raw.size} bases ambiguous ({frac:.1%}, limit "
                f"{rules.max_ambiguous_fraction:.1%})",
            )
    if rules.min_length is not None and raw.size < rules.min_length:
        return seq, LENGTH, f"length {raw.size} < minimum {rules.min_length}"
    if rules.max_length is not None and raw.size > rules.max_length:
        return seq, LENGTH, f"length {raw.size} > maximum {rules.max_length}"
    return seq, OK, ""


def _open_text(path: Path):
    # utf-8 with replacement: a stray binary byte becomes U+FFFD and is reported as an invalid
    # character of its record instead of a UnicodeDecodeError halfway through the file
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def read_fasta(
    path: str | os.PathLike,
    *,
    label: str | None = None,
    rules: ValidationRules = ValidationRules(),
    on_invalid: str = "flag",
    seen_ids: set[str] | None = None,
) -> list[Record]:
    """Read and validate every record of a FASTA file (plain or ``.gz``).

    ``on_invalid="flag"`` keeps bad records with their status; ``"raise"`` raises an
    InputFormatError listing the bad records (the first few in full). ``seen_ids`` carries record
    ids across files so a repeated id is flagged as ``duplicate_id``.
    """
    if on_invalid not in ("flag", "raise"):
        raise ConfigError(f"on_invalid must be 'flag' or 'raise', got {on_invalid!r}")
    path = Path(path)
    if not path.is_file():
        raise InputFormatError(f"{path}: FASTA file not found")
    seen = set() if seen_ids is None else seen_ids
    records: list[Record] = []
    try:
        with _open_text(path) as handle:
            # bytes(): str(Seq) would fail on a non-ASCII byte, which is reported per record below
            parsed = [
                (r.id, r.description, bytes(r.seq).decode("utf-8", errors="replace"))
                for r in SeqIO.parse(handle, "fasta")
            ]
    except (ValueError, OSError, EOFError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputFormatError(f"{path}: not a readable FASTA file: {first}") from None
    if not parsed:
        raise InputFormatError(f"{path}: no FASTA records (a record starts with '>')")
    for index, (rid, description, raw_seq) in enumerate(parsed, start=1):
        seq, status, detail = check_sequence(raw_seq, rules)
        if not rid:
            status, detail, rid = MISSING_ID, f"record {index} has an empty header", f"#{index}"
        elif status == OK and rid in seen:
            status, detail = DUPLICATE_ID, f"record id {rid!r} already seen"
        seen.add(rid)
        # Biopython's description repeats the id; keep only the free text after it
        desc = description[len(rid) :].strip() if description.startswith(rid) else description
        records.append(Record(rid, seq, label, desc, str(path), status, detail))
    bad = [r for r in records if not r.ok]
    if bad and on_invalid == "raise":
        lines = [f"{path}: record {r.id!r}: {r.status}: {r.detail}" for r in bad[:5]]
        more = f"\n... and {len(bad) - 5} more bad records" if len(bad) > 5 else ""
        raise InputFormatError("\n".join(lines) + more)
    return records


def read_class_fastas(
    sources: Mapping[str, str | os.PathLike | Iterable[str | os.PathLike]],
    *,
    rules: ValidationRules = ValidationRules(),
    on_invalid: str = "flag",
) -> list[Record]:
    """Read local FASTA files per class: ``{class label: path or list of paths}``.

    Record ids must be unique over all files (repeats are flagged or raised as ``duplicate_id``).
    """
    if not sources:
        raise ConfigError("no classes given: expected {class label: FASTA path(s)}")
    seen: set[str] = set()
    records: list[Record] = []
    for label, paths in sources.items():
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        paths = list(paths)
        if not paths:
            raise ConfigError(f"class {label!r}: no FASTA files given")
        for path in paths:
            records += read_fasta(
                path, label=str(label), rules=rules, on_invalid=on_invalid, seen_ids=seen
            )
    return records


def only_ok(records: Iterable[Record]) -> list[Record]:
    """The records whose status is ``"ok"``."""
    return [r for r in records if r.ok]


def write_fasta(
    records: Iterable[Record], path: str | os.PathLike, *, line_width: int = 70
) -> Path:
    """Write records atomically; the header is ``>id class=<label> description``.

    ``line_width=0`` writes each sequence on one line.
    """
    path = Path(path)
    chunks: list[str] = []
    for r in records:
        header = r.id
        if r.label is not None:
            header += f" class={r.label}"
        if r.description:
            header += f" {r.description}"
        chunks.append(f">{header}\n")
        seq = r.sequence
        if line_width and line_width > 0:
            chunks.extend(seq[i : i + line_width] + "\n" for i in range(0, len(seq), line_width))
        elif seq:
            chunks.append(seq + "\n")
    with atomic_path(path) as tmp:
        if path.suffix == ".gz":
            with gzip.open(tmp, "wt", encoding="utf-8") as fh:
                fh.write("".join(chunks))
        else:
            tmp.write_text("".join(chunks), encoding="utf-8")
    return path


def parse_label(record: Record) -> Record:
    """Take the class from a ``class=<label>`` token in the description (as written by
    :func:`write_fasta`); the record is returned unchanged if there is none."""
    tokens = record.description.split()
    for tok in tokens:
        if tok.startswith("class="):
            rest = " ".join(t for t in tokens if t is not tok)
            return replace(record, label=tok[len("class=") :], description=rest)
    return record


__all__ = [
    "AMBIGUOUS",
    "IUPAC",
    "OK",
    "STATUSES",
    "Record",
    "ValidationRules",
    "check_sequence",
    "only_ok",
    "parse_label",
    "read_class_fastas",
    "read_fasta",
    "write_fasta",
]
