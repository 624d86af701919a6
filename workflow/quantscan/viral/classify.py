"""Classify the records of any FASTA file with a (compressed) viral model.

records -> validation -> windows of the model input N -> engine -> window probabilities combined
per record -> one TSV row per record, in input order.

The file is streamed: records are read one at a time (Biopython's ``SimpleFastaParser``), their
windows are batched across records, and a row is written as soon as all windows of its record
are scored, so memory does not grow with the file. A bad record never stops the run: it gets a
row with its status and what is wrong, and no prediction (empty sequence, characters that are
not IUPAC nucleotide codes, an empty header) or a prediction and a flag (a long run of N, many
ambiguity codes, a repeated id). Only a file that is not FASTA at all, or a model that does not
fit the class list, is an error, and it is raised before any row is written; the TSV appears
(atomically) only when every record has its row.

Window scores are combined by the mean of the window probabilities (``"mean"``) or by the
class-wise maximum renormalised to sum to one (``"max"``).

Engines: anything with ``length`` (N), ``n_classes`` and ``predict_proba(x uint8 (B, 5, N))``.
:func:`load_engine` opens fp32 model files (``modelio``), packed compressed models
(``compress.pack``, fake-quantized torch) and ONNX files (``compress.int8.OrtEngine``).
"""

from __future__ import annotations

import gzip
import io
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..errors import ConfigError, InputFormatError
from .fasta import (
    EMPTY,
    INVALID_CHAR,
    MISSING_ID,
    OK,
    ValidationRules,
    check_sequence,
)
from .onehot import encode, window_starts

#: statuses whose records get no prediction
UNCLASSIFIABLE = frozenset({EMPTY, INVALID_CHAR, MISSING_ID})
DUPLICATE_ID = "duplicate_id"
COMBINE = ("mean", "max")


# ----------------------------------------------------------------------------- engines


class TorchEngine:
    """A torch model (fp32 or fake-quantized packed) in eval mode, on CPU."""

    def __init__(self, model, arch: dict, kind: str = "torch", batch_size: int = 64):
        self.model = model.eval()
        self.arch = dict(arch)
        self.length = int(arch.get("length", 3500))
        self.n_classes = int(arch.get("n_classes", 4))
        self.kind = kind
        self.batch_size = batch_size

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        from ..train import predict_proba

        return predict_proba(self.model, x, self.batch_size)


class OnnxEngine:
    """An ONNX Runtime session (fp32 or int8 QDQ) through ``compress.int8.OrtEngine``."""

    def __init__(self, path, threads: int = 1, batch_size: int = 64):
        from ..compress.int8 import OrtEngine

        self.ort = OrtEngine(path, intra_op_threads=threads)
        shape_in = self.ort.session.get_inputs()[0].shape
        shape_out = self.ort.session.get_outputs()[0].shape
        if not isinstance(shape_in[-1], int) or not isinstance(shape_out[-1], int):
            raise InputFormatError(f"{path}: ONNX input/output shapes {shape_in} {shape_out}")
        self.length, self.n_classes = int(shape_in[-1]), int(shape_out[-1])
        self.kind = "onnx"
        self.batch_size = batch_size

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return self.ort.predict_proba(x, self.batch_size)


def load_engine(path: str | os.PathLike, *, threads: int = 1, batch_size: int = 64):
    """An engine for a model file: packed (``QSPK`` magic), ONNX (``.onnx``) or fp32 torch."""
    path = Path(path)
    if not path.is_file():
        raise InputFormatError(f"{path}: model file not found")
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if path.suffix == ".onnx":
        return OnnxEngine(path, threads=threads, batch_size=batch_size)
    import torch

    torch.set_num_threads(max(1, int(threads)))
    if magic == b"QSPK":
        from ..compress.pack import load_packed

        model, header = load_packed(path)
        return TorchEngine(model, header["arch"], kind="torch-packed", batch_size=batch_size)
    from ..modelio import load_fp32

    model, arch = load_fp32(path)
    return TorchEngine(model, arch, kind="torch-fp32", batch_size=batch_size)


# ----------------------------------------------------------------------------- FASTA stream


def _open(path: Path):
    """Text handle (utf-8 with replacement: a stray byte becomes an invalid character of its
    record, not a decoding error halfway through); gzip by magic bytes."""
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    if gz:
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def iter_fasta(path: str | os.PathLike) -> Iterator[tuple[str, str, str]]:
    """``(id, description, sequence)`` per record, streamed. Raises InputFormatError, before
    yielding anything, for a missing file or one whose first non-blank line is not a header."""
    from Bio.SeqIO.FastaIO import SimpleFastaParser

    path = Path(path)
    if not path.is_file():
        raise InputFormatError(f"{path}: FASTA file not found")
    try:
        with _open(path) as handle:
            for line in handle:
                if line.strip():
                    if not line.startswith(">"):
                        raise InputFormatError(
                            f"{path}: not FASTA: the first line is {line.strip()[:40]!r}, "
                            "a record header starts with '>'"
                        )
                    break
            else:
                raise InputFormatError(f"{path}: no FASTA records (a record starts with '>')")
            handle.seek(0)
            for title, seq in SimpleFastaParser(handle):
                rid, _, desc = title.strip().partition(" ")
                yield rid, desc.strip(), seq
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise InputFormatError(f"{path}: unreadable FASTA file ({err})") from None


# ----------------------------------------------------------------------------- classification


@dataclass(frozen=True)
class ClassifyOptions:
    """``stride`` between windows of records longer than the model input (None: N/2),
    ``combine`` ("mean" or "max"), ``batch_windows`` windows per engine call, and the
    validation thresholds (``rules``)."""

    stride: int | None = None
    combine: str = "mean"
    batch_windows: int = 64
    rules: ValidationRules = field(default_factory=ValidationRules)

    def __post_init__(self):
        if self.combine not in COMBINE:
            raise ConfigError(f"window combination must be one of {COMBINE}, got {self.combine!r}")
        if self.batch_windows < 1:
            raise ConfigError(f"batch_windows must be >= 1, got {self.batch_windows}")


@dataclass
class _Pending:
    index: int
    id: str
    length: int
    status: str
    detail: str
    label: str
    sequence: str = ""
    n_windows: int = 0
    done: int = 0
    score: np.ndarray | None = None

    @property
    def finished(self) -> bool:
        return self.done >= self.n_windows


def _label(description: str) -> str:
    for tok in description.split():
        if tok.startswith("class="):
            return tok[len("class=") :]
    return ""


def classify_records(
    records, engine, class_names: Sequence[str], options: ClassifyOptions = ClassifyOptions()
) -> Iterator[dict]:
    """Rows (dicts) for ``(id, description, sequence)`` tuples, in input order.

    Row keys: ``id, length, status, predicted, p_<class>..., windows, detail, label``; records
    without a prediction have ``predicted = "NA"``, probabilities NaN and 0 windows.
    """
    k = len(class_names)
    if engine.n_classes != k:
        raise ConfigError(
            f"the model has {engine.n_classes} outputs but {k} class names were given "
            f"({list(class_names)})"
        )
    n = engine.length
    stride = n // 2 if options.stride is None else options.stride
    if not 1 <= stride <= n:
        raise ConfigError(f"window stride must be in 1..{n}, got {stride}")
    seen: set[str] = set()
    pending: list[_Pending] = []  # records waiting for their row, in input order
    queue: list[tuple[_Pending, int]] = []  # windows waiting for the engine

    def flush():
        batch, queue[:] = list(queue), []
        if not batch:
            return
        x = encode([p.sequence[s : s + n] for p, s in batch], n)
        proba = np.asarray(engine.predict_proba(x), dtype=np.float64)
        for (p, _), row in zip(batch, proba, strict=True):
            if options.combine == "mean":
                p.score = row if p.score is None else p.score + row
            else:
                p.score = row if p.score is None else np.maximum(p.score, row)
            p.done += 1

    def ready() -> Iterator[dict]:
        while pending and pending[0].finished:
            yield _row(pending.pop(0), class_names, options.combine)

    for index, (rid, desc, raw) in enumerate(records, start=1):
        seq, status, detail = check_sequence(raw, options.rules)
        if not rid:
            status, detail, rid = MISSING_ID, f"record {index} has an empty header", f"#{index}"
        elif rid in seen and status not in UNCLASSIFIABLE:
            status, detail = DUPLICATE_ID, f"record id {rid!r} already seen"
        seen.add(rid)
        p = _Pending(index, rid, len(seq), status, detail, _label(desc))
        if status not in UNCLASSIFIABLE:
            p.sequence = seq
            starts = window_starts(len(seq), n, stride)
            p.n_windows = len(starts)
            for s in starts:
                queue.append((p, int(s)))
                if len(queue) >= options.batch_windows:
                    flush()
        pending.append(p)
        yield from ready()
    flush()
    yield from ready()


def _row(p: _Pending, class_names: Sequence[str], combine: str) -> dict:
    row = {"id": p.id, "length": p.length, "status": p.status, "predicted": "NA"}
    if p.n_windows:
        score = p.score / p.n_windows if combine == "mean" else p.score / p.score.sum()
        row["predicted"] = class_names[int(np.argmax(score))]
        probs = score
    else:
        probs = np.full(len(class_names), np.nan)
    for name, v in zip(class_names, probs, strict=True):
        row[f"p_{name}"] = float(v)
    row["windows"] = p.n_windows
    row["detail"] = p.detail
    row["label"] = p.label
    return row


def columns(class_names: Sequence[str]) -> list[str]:
    return [
        "id",
        "length",
        "status",
        "predicted",
        *(f"p_{c}" for c in class_names),
        "windows",
        "detail",
        "label",
    ]


def _cell(v) -> str:
    if isinstance(v, float):
        return "NA" if not np.isfinite(v) else f"{v:.6f}"
    # ids and details come from the input: keep the table one line per record
    return str(v).replace("\t", " ").replace("\n", " ")


@dataclass(frozen=True)
class ClassifySummary:
    records: int
    classified: int
    flagged: int
    unclassified: int
    bases: int
    windows: int
    seconds: float

    @property
    def sequences_per_second(self) -> float:
        return self.classified / self.seconds if self.seconds > 0 else float("nan")

    @property
    def gbp_per_hour(self) -> float:
        return self.bases / 1e9 / (self.seconds / 3600) if self.seconds > 0 else float("nan")

    def as_dict(self) -> dict:
        return {
            **self.__dict__,
            "sequences_per_second": self.sequences_per_second,
            "gbp_per_hour": self.gbp_per_hour,
        }


def classify_fasta(
    fasta: str | os.PathLike,
    out: str | os.PathLike,
    engine,
    class_names: Sequence[str],
    options: ClassifyOptions = ClassifyOptions(),
) -> ClassifySummary:
    """Classify every record of ``fasta`` into the TSV ``out`` (written atomically).

    ``bases`` and the throughput count classified records only; ``seconds`` is the wall time of
    the whole pass (reading, encoding, inference, writing).
    """
    start = time.perf_counter()
    records = iter_fasta(fasta)
    # the first record is read before the output is opened: a non-FASTA file fails cleanly
    first = next(records)

    def chained():
        yield first
        yield from records

    counts = dict(records=0, classified=0, flagged=0, unclassified=0, bases=0, windows=0)
    cols = columns(class_names)
    with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write("\t".join(cols) + "\n")
        for row in classify_records(chained(), engine, class_names, options):
            fh.write("\t".join(_cell(row[c]) for c in cols) + "\n")
            counts["records"] += 1
            if row["windows"]:
                counts["classified"] += 1
                counts["bases"] += row["length"]
                counts["windows"] += row["windows"]
            else:
                counts["unclassified"] += 1
            if row["status"] != OK:
                counts["flagged"] += 1
    return ClassifySummary(**counts, seconds=time.perf_counter() - start)


# ----------------------------------------------------------------------------- evaluation


def evaluate_split(engine, split, class_names: Sequence[str] | None = None) -> dict:
    """Metrics of an engine on a split (``dataset.OneHotSplit`` or a path).

    Window-level metrics are the headline (``accuracy``, ``mcc``, ``acc_<class>``,
    ``confusion_matrix``, ``n``: what the generic engine computes from ``load_split``); the
    record-level ones combine each record's windows by their mean probability
    (``record_accuracy``, ``record_mcc``, ``n_records``). They agree when every record fits the
    model input.
    """
    from ..evaluate import classification_metrics
    from .dataset import read_split
    from .onehot import combine_windows

    if not hasattr(split, "onehot"):
        split = read_split(split)
    names = list(class_names or split.class_names)
    if list(split.class_names) != names:
        raise ConfigError(f"split classes {list(split.class_names)} differ from {names}")
    proba = np.asarray(engine.predict_proba(split.onehot()), dtype=np.float64)
    metrics = classification_metrics(split.window_labels, proba, names)
    rec = combine_windows(proba, split.window_record, split.n_records, "mean")
    rec_metrics = classification_metrics(split.labels, rec, names)
    metrics.update(
        record_accuracy=rec_metrics["accuracy"],
        record_mcc=rec_metrics["mcc"],
        n_records=split.n_records,
    )
    return metrics


__all__ = [
    "COMBINE",
    "UNCLASSIFIABLE",
    "ClassifyOptions",
    "ClassifySummary",
    "OnnxEngine",
    "TorchEngine",
    "classify_fasta",
    "classify_records",
    "columns",
    "evaluate_split",
    "iter_fasta",
    "load_engine",
]
