"""One-hot encoding of nucleotide sequences, channels-first ``(batch, 5, N)`` for ``Conv1d``.

Channels are A, C, G, T and "other" (N and every other IUPAC ambiguity code); positions past the
end of a sequence are all-zero (zero padding), as in Fernandes & Kung (N = 3500). Encoding goes through a
256-entry lookup table on the raw bytes, so there is no Python loop over bases.

Records longer than N are cut into overlapping windows of N with a given stride; the last window
is aligned to the end of the record so no base is left out. Window scores are combined back into
one score per record with :func:`combine_windows`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ...errors import ConfigError, InputFormatError

DEFAULT_LENGTH = 3500
CHANNELS = ("A", "C", "G", "T", "N")
#: lookup value of a byte that is not a nucleotide code
INVALID = 255
#: code used internally for padding (no channel set)
_PAD = 5

_TABLE = np.full(256, INVALID, dtype=np.uint8)
for _code, _letters in enumerate(("A", "C", "G", "TU", "NRYSWKMBDHV")):
    for _ch in _letters:
        _TABLE[ord(_ch)] = _code
        _TABLE[ord(_ch.lower())] = _code


def lookup_table() -> np.ndarray:
    """A copy of the byte -> channel table (255 for bytes that are not nucleotide codes)."""
    return _TABLE.copy()


def _dtype(dtype) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.uint8), np.dtype(np.float32)):
        raise ConfigError(f"one-hot dtype must be uint8 or float32, got {dt}")
    return dt


def _as_bytes(seq) -> bytes:
    if isinstance(seq, bytes | bytearray):
        return bytes(seq)
    if hasattr(seq, "sequence"):  # a fasta.Record
        seq = seq.sequence
    try:
        return str(seq).encode("ascii")
    except UnicodeEncodeError:
        # let the table lookup report it with the other invalid characters (same position)
        return str(seq).encode("ascii", errors="replace")


def _codes(seqs: Sequence, ids: Sequence[str] | None) -> tuple[np.ndarray, np.ndarray]:
    """Channel codes of all sequences concatenated, and the sequence lengths."""
    raw = [_as_bytes(s) for s in seqs]
    lengths = np.fromiter((len(b) for b in raw), dtype=np.int64, count=len(raw))
    codes = _TABLE[np.frombuffer(b"".join(raw), dtype=np.uint8)]
    bad = np.flatnonzero(codes == INVALID)
    if bad.size:
        offsets = np.concatenate(([0], np.cumsum(lengths)))
        rec = int(np.searchsorted(offsets, bad[0], side="right") - 1)
        pos = int(bad[0] - offsets[rec])
        name = ids[rec] if ids is not None else f"#{rec}"
        char = b"".join(raw)[bad[0] : bad[0] + 1].decode("ascii", errors="replace")
        raise InputFormatError(
            f"record {name}: character {char!r} at position {pos + 1} is not a nucleotide code "
            f"({bad.size} invalid characters in the batch)"
        )
    return codes, lengths


def encode(
    seqs: Sequence,
    length: int = DEFAULT_LENGTH,
    *,
    dtype=np.uint8,
    on_long: str = "error",
    ids: Sequence[str] | None = None,
) -> np.ndarray:
    """One-hot encode sequences into ``(batch, 5, length)``, zero padded at the end.

    ``seqs`` holds str, bytes or :class:`~quantscan.apps.viral.fasta.Record`. A sequence longer than
    ``length`` raises (``on_long="error"``) or is cut to its first ``length`` bases
    (``"truncate"``); use :func:`encode_windows` to keep all of it. ``ids`` name records in errors.
    """
    if length < 1:
        raise ConfigError(f"one-hot length must be >= 1, got {length}")
    if on_long not in ("error", "truncate"):
        raise ConfigError(f"on_long must be 'error' or 'truncate', got {on_long!r}")
    dt = _dtype(dtype)
    if isinstance(seqs, str | bytes):
        seqs = [seqs]
    if ids is None:
        ids = [getattr(s, "id", f"#{i}") for i, s in enumerate(seqs)]
    codes, lengths = _codes(seqs, ids)
    if on_long == "error" and lengths.size and lengths.max() > length:
        i = int(np.argmax(lengths))
        raise InputFormatError(
            f"record {ids[i]}: length {lengths[i]} exceeds the model input length {length}; "
            "encode it in windows (encode_windows) or truncate it (on_long='truncate')"
        )
    n = len(lengths)
    out = np.zeros((n, len(CHANNELS), length), dtype=dt)
    if n == 0 or codes.size == 0:
        return out
    # position of every base within its record; keep only those that fit
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    rec = np.repeat(np.arange(n), lengths)
    pos = np.arange(codes.size) - np.repeat(starts, lengths)
    keep = pos < length
    out[rec[keep], codes[keep], pos[keep]] = 1
    return out


def window_starts(seq_length: int, length: int = DEFAULT_LENGTH, stride: int | None = None):
    """0-based start of each window over a record of ``seq_length``.

    Records no longer than ``length`` get one window at 0. Longer records get windows every
    ``stride`` bases plus one aligned to the end, so the tail is always covered.
    """
    stride = length // 2 if stride is None else stride
    if stride < 1 or stride > length:
        raise ConfigError(f"window stride must be in 1..{length}, got {stride}")
    if seq_length <= length:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, seq_length - length + 1, stride, dtype=np.int64)
    if starts[-1] != seq_length - length:
        starts = np.append(starts, seq_length - length)
    return starts


@dataclass(frozen=True)
class Windows:
    """One-hot windows of a batch of records.

    ``x[i]`` is window ``i``; it belongs to record ``record[i]`` and starts at base ``start[i]``
    (0-based); ``counts[r]`` is the number of windows of record ``r``.
    """

    x: np.ndarray
    record: np.ndarray
    start: np.ndarray
    counts: np.ndarray


def encode_windows(
    seqs: Sequence,
    length: int = DEFAULT_LENGTH,
    stride: int | None = None,
    *,
    dtype=np.uint8,
    ids: Sequence[str] | None = None,
) -> Windows:
    """Encode records of any length as overlapping windows of ``length`` (default stride N/2)."""
    dt = _dtype(dtype)
    if isinstance(seqs, str | bytes):
        seqs = [seqs]
    if ids is None:
        ids = [getattr(s, "id", f"#{i}") for i, s in enumerate(seqs)]
    codes, lengths = _codes(seqs, ids)
    per_record = [window_starts(int(n), length, stride) for n in lengths]
    counts = np.fromiter((len(s) for s in per_record), dtype=np.int64, count=len(per_record))
    total = int(counts.sum())
    out = np.zeros((total, len(CHANNELS), length), dtype=dt)
    record = np.repeat(np.arange(len(lengths)), counts)
    start = np.concatenate(per_record) if per_record else np.zeros(0, dtype=np.int64)
    offsets = np.concatenate(([0], np.cumsum(lengths)))
    # one record at a time (not one base): pad the record's codes to at least ``length`` and take
    # every window as a strided view, then scatter the ones in a single fancy assignment
    row = 0
    cols = np.arange(length)
    for r, starts in enumerate(per_record):
        rc = codes[offsets[r] : offsets[r + 1]]
        if rc.size < length:
            rc = np.concatenate((rc, np.full(length - rc.size, _PAD, dtype=np.uint8)))
        win = np.lib.stride_tricks.sliding_window_view(rc, length)[starts]  # (w, length)
        rows = np.arange(row, row + len(starts))[:, None]
        mask = win != _PAD
        rr = np.broadcast_to(rows, win.shape)[mask]
        cc = np.broadcast_to(cols, win.shape)[mask]
        out[rr, win[mask], cc] = 1
        row += len(starts)
    return Windows(out, record, start, counts)


def combine_windows(scores, record: np.ndarray, n_records: int, how: str = "mean") -> np.ndarray:
    """Combine per-window scores ``(windows, classes)`` into per-record scores.

    ``how="mean"`` averages the windows of a record (for probabilities or logits); ``"max"`` takes
    the class-wise maximum.
    """
    scores = np.asarray(scores, dtype=np.float64)
    record = np.asarray(record)
    if scores.ndim != 2 or scores.shape[0] != record.shape[0]:
        raise ValueError(f"scores {scores.shape} do not match {record.shape[0]} windows")
    counts = np.bincount(record, minlength=n_records)
    if (counts == 0).any():
        raise ValueError(f"record {int(np.argmin(counts))} has no windows")
    if how == "mean":
        out = np.zeros((n_records, scores.shape[1]))
        np.add.at(out, record, scores)
        return out / counts[:, None]
    if how == "max":
        out = np.full((n_records, scores.shape[1]), -np.inf)
        np.maximum.at(out, record, scores)
        return out
    raise ConfigError(f"window combination must be 'mean' or 'max', got {how!r}")


def decode(x: np.ndarray) -> str:
    """Back to a string for one encoded ``(5, N)`` array; padding is dropped, channel 4 is N."""
    x = np.asarray(x)
    present = x.any(axis=0)
    letters = np.frombuffer("".join(CHANNELS).encode(), dtype=np.uint8)
    return letters[np.argmax(x, axis=0)[present]].tobytes().decode("ascii")


__all__ = [
    "CHANNELS",
    "DEFAULT_LENGTH",
    "Windows",
    "combine_windows",
    "decode",
    "encode",
    "encode_windows",
    "lookup_table",
    "window_starts",
]
