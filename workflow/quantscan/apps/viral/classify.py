"""Classify the records of any FASTA or FASTQ file with a (compressed) viral model.

records -> validation -> windows of the model input N -> engine -> window scores combined per
record -> open-set decision (a class or ``unclassified`` with its reason) -> one TSV row per
record, in input order.

The file is streamed: records are read one at a time (Biopython's ``SimpleFastaParser`` or
``FastqGeneralIterator``; plain or gzip, detected from the first bytes), their windows are
batched across records, and a row is written as soon as all windows of its record are scored, so
memory does not grow with the file. Sequences are upper-cased, U is read as T, and IUPAC
ambiguity codes go to the N channel. A bad record never stops the run: it gets a row with its
status, ``predicted = unclassified`` and the reason (``empty``, ``invalid_char``, ``missing_id``,
``too_short``, ``too_many_n``), or a prediction and a flag (a long run of N, a repeated id). Only
a file that is not FASTA/FASTQ at all, a FASTQ record whose quality line does not fit its
sequence, or a model that does not fit the class list is an error (``InputFormatError`` naming
the file, the record and the field); the TSV appears (atomically) only when every record has its
row.

Window scores are combined by the mean of the window probabilities (``"mean"``) or by the
class-wise maximum renormalised to sum to one (``"max"``); the open-set scores (``openset``) of
the window logits are averaged. The open-set rule (``openset.OpenSetRule``: background class,
score, threshold, minimum length) turns a record's scores into a class or ``unclassified``.

Engines: anything with ``length`` (N), ``n_classes`` and ``predict_proba(x uint8 (B, 5, N))``
(``predict_logits`` too if it has it; else the log-probabilities stand in); an engine whose
``length`` is None scores whole records (``predict_record_logits(list of str)``, the k-mer
baselines). :func:`load_engine` opens fp32 model files (``modelio``), packed compressed models
(``export.packed``, fake-quantized torch) and ONNX files (fp32 or int8), and runs them through the
inference runtime (``quantscan.runtime``: ``TorchEngine``, ``OnnxEngine``).
"""

from __future__ import annotations

import gzip
import io
import os
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...atomic import atomic_path
from ...errors import ConfigError, InputFormatError
from .fasta import (
    EMPTY,
    INVALID_CHAR,
    MISSING_ID,
    OK,
    ValidationRules,
    check_sequence,
)
from .onehot import encode, window_starts
from .openset import (
    TOO_MANY_N,
    TOO_SHORT,
    UNCLASSIFIED,
    MahalanobisDetector,
    OpenSetRule,
    decide,
)

#: statuses whose records get no prediction
UNCLASSIFIABLE = frozenset({EMPTY, INVALID_CHAR, MISSING_ID})
DUPLICATE_ID = "duplicate_id"
COMBINE = ("mean", "max")


# ----------------------------------------------------------------------------- engines


#: dtypes of the one-hot windows (``onehot.encode``)
WINDOW_DTYPES = ("uint8", "float32")


class RuntimeEngine:
    """A ``quantscan.runtime`` engine as a window classifier: ``length`` (N), ``n_classes``,
    ``kind``, ``predict_logits`` (float64) and ``predict_proba`` of one-hot windows
    ``(B, 5, N)``; windows of another shape are refused by the engine (``InputShapeError``)."""

    def __init__(self, engine, kind: str, length: int):
        self.engine = engine
        self.kind = kind
        self.length = int(length)
        self.n_classes = int(engine.n_classes)
        self.batch_size = engine.batch_size

    def predict_logits(self, x: np.ndarray) -> np.ndarray:
        return self.engine.logits(x)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return self.engine.predict_proba(x)


class TorchEngine(RuntimeEngine):
    """A torch model (fp32 or fake-quantized packed) in eval mode, on CPU, through
    ``runtime.TorchEngine``; ``threads`` None: the current torch setting."""

    def __init__(
        self,
        model,
        arch: dict,
        kind: str = "torch",
        batch_size: int = 64,
        threads: int | None = None,
    ):
        import torch

        from ...runtime import TorchEngine as RuntimeTorch

        self.model = model.eval()
        self.arch = dict(arch)
        length = int(arch.get("length", 3500))
        engine = RuntimeTorch(
            self.model,
            batch_size=batch_size,
            threads=torch.get_num_threads() if threads is None else threads,
            name=kind,
            channels_last=False,
            input_shape=(int(arch.get("in_channels", 5)), length),
            input_dtypes=WINDOW_DTYPES,
        )
        engine.n_classes = int(arch.get("n_classes", 4))  # as the model file declares it
        super().__init__(engine, kind, length)


class OnnxEngine(RuntimeEngine):
    """An ONNX Runtime session (fp32 or int8 QDQ) through ``runtime.OnnxEngine``."""

    def __init__(self, path, threads: int = 1, batch_size: int = 64):
        from ...runtime import OnnxEngine as RuntimeOnnx

        engine = RuntimeOnnx(
            path, batch_size=batch_size, threads=threads, name="onnx", input_dtypes=WINDOW_DTYPES
        )
        shape_in = engine.session.get_inputs()[0].shape
        shape_out = engine.session.get_outputs()[0].shape
        if not isinstance(shape_in[-1], int) or not isinstance(shape_out[-1], int):
            raise InputFormatError(f"{path}: ONNX input/output shapes {shape_in} {shape_out}")
        super().__init__(engine, "onnx", int(shape_in[-1]))


def load_engine(path: str | os.PathLike, *, threads: int = 1, batch_size: int = 64):
    """An engine for a model file: packed (``QSPK`` magic), ONNX (``.onnx``) or fp32 torch."""
    from ...runtime import load_model_arch, model_format

    path = Path(path)
    if not path.is_file():
        raise InputFormatError(f"{path}: model file not found")
    fmt = model_format(path)
    if fmt == "onnx":
        return OnnxEngine(path, threads=threads, batch_size=batch_size)
    model, arch = load_model_arch(path)
    kind = "torch-packed" if fmt == "packed" else "torch-fp32"
    return TorchEngine(model, arch, kind=kind, batch_size=batch_size, threads=threads)


# ----------------------------------------------------------------------------- FASTA stream


def _open(path: Path):
    """Text handle (utf-8 with replacement: a stray byte becomes an invalid character of its
    record, not a decoding error halfway through); gzip by magic bytes."""
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    if gz:
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def sniff_format(path: str | os.PathLike) -> str:
    """``"fasta"`` or ``"fastq"`` from the first non-blank character (``>`` or ``@``); raises
    InputFormatError for a missing file, an empty one or anything else."""
    path = Path(path)
    if not path.is_file():
        raise InputFormatError(f"{path}: FASTA file not found")
    try:
        with _open(path) as handle:
            for line in handle:
                if line.strip():
                    first = line.strip()
                    break
            else:
                raise InputFormatError(f"{path}: no FASTA records (a record starts with '>')")
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise InputFormatError(f"{path}: unreadable FASTA file ({err})") from None
    if first.startswith(">"):
        return "fasta"
    if first.startswith("@"):
        return "fastq"
    raise InputFormatError(
        f"{path}: not FASTA: the first line is {first[:40]!r}, a record header starts with '>' "
        "(FASTA) or '@' (FASTQ)"
    )


def iter_records(path: str | os.PathLike) -> Iterator[tuple[str, str, str]]:
    """``(id, description, sequence)`` per record of a FASTA or FASTQ file (plain or gzip),
    streamed. Raises InputFormatError, before yielding anything, for a missing or empty file or
    one that is neither; a FASTQ record whose quality line is not as long as its sequence (or is
    missing) raises InputFormatError naming the file, the record and the field."""
    from Bio.SeqIO.FastaIO import SimpleFastaParser
    from Bio.SeqIO.QualityIO import FastqGeneralIterator

    path = Path(path)
    fmt = sniff_format(path)
    index, last = 0, None
    try:
        with _open(path) as handle:
            if fmt == "fasta":
                for title, seq in SimpleFastaParser(handle):
                    rid, _, desc = title.strip().partition(" ")
                    yield rid, desc.strip(), seq
                return
            for title, seq, qual in FastqGeneralIterator(handle):
                index += 1
                rid, _, desc = title.strip().partition(" ")
                last = rid
                if len(qual) != len(seq):  # Biopython checks it too; this names the field
                    raise InputFormatError(
                        f"{path}: FASTQ record {index} ({rid!r}): field 'quality' has "
                        f"{len(qual)} characters but the sequence has {len(seq)}"
                    )
                yield rid, desc.strip(), seq
    except InputFormatError:
        raise
    except ValueError as err:  # Biopython's FASTQ structure errors
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        m = re.search(r"differs for (.*) \((\d+) and (\d+)\)", msg)
        if m:
            rid = m.group(1).split(" ")[0]
            raise InputFormatError(
                f"{path}: FASTQ record {index + 1} ({rid!r}): field 'quality' has {m.group(3)} "
                f"characters but the sequence has {m.group(2)}"
            ) from None
        after = f" (after {last!r})" if last else ""
        raise InputFormatError(f"{path}: FASTQ record {index + 1}{after}: {msg}") from None
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise InputFormatError(f"{path}: unreadable {fmt.upper()} file ({err})") from None


#: the former name: reads FASTQ too
iter_fasta = iter_records


# ----------------------------------------------------------------------------- classification


@dataclass(frozen=True)
class ClassifyOptions:
    """``stride`` between windows of records longer than the model input (None: N/2),
    ``combine`` ("mean" or "max"), ``batch_windows`` windows per engine call, the validation
    thresholds (``rules``; a record whose share of ambiguity codes exceeds
    ``rules.max_ambiguous_fraction`` is ``unclassified``, ``too_many_n``), the open-set rule
    (``openset``; None: closed set, every scored record gets the arg-max of all outputs) and a
    fitted ``openset.MahalanobisDetector`` (``detector``; None: no ``mahalanobis`` score)."""

    stride: int | None = None
    combine: str = "mean"
    batch_windows: int = 64
    rules: ValidationRules = field(default_factory=ValidationRules)
    openset: OpenSetRule | None = None
    detector: MahalanobisDetector | None = None

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
    reason: str = ""
    sequence: str = ""
    n_windows: int = 0
    done: int = 0
    score: np.ndarray | None = None
    energy: float = 0.0
    max_logit: float = 0.0

    @property
    def finished(self) -> bool:
        return self.done >= self.n_windows


def _label(description: str) -> str:
    for tok in description.split():
        if tok.startswith("class="):
            return tok[len("class=") :]
    return ""


def _logits(engine, x) -> np.ndarray:
    if hasattr(engine, "predict_logits"):
        return np.asarray(engine.predict_logits(x), dtype=np.float64)
    return np.log(np.clip(np.asarray(engine.predict_proba(x), dtype=np.float64), 1e-300, None))


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def classify_records(
    records, engine, class_names: Sequence[str], options: ClassifyOptions = ClassifyOptions()
) -> Iterator[dict]:
    """Rows (dicts) for ``(id, description, sequence)`` tuples, in input order.

    Row keys: ``id, length, status, predicted, reason, best_class, score, p_<class>..., windows,
    detail, label`` (:func:`columns`), plus ``_proba`` (the combined probabilities) and
    ``_scores`` (every open-set score) for evaluation. Records that are not scored have
    ``predicted = "unclassified"``, their reason, probabilities NaN and 0 windows.
    """
    k = len(class_names)
    if engine.n_classes != k:
        raise ConfigError(
            f"the model has {engine.n_classes} outputs but {k} class names were given "
            f"({list(class_names)})"
        )
    rule = options.openset or OpenSetRule(n_classes=k)
    if rule.n_classes + (1 if rule.background else 0) != k:
        raise ConfigError(
            f"open-set rule: {rule.n_classes} target classes"
            + (" and a background class" if rule.background else "")
            + f" do not match the {k} outputs {list(class_names)}"
        )
    if rule.score == "mahalanobis" and rule.threshold is not None and options.detector is None:
        raise ConfigError("open-set score 'mahalanobis' needs a fitted Mahalanobis detector")
    n = engine.length
    whole = n is None  # a record-level engine (k-mer baselines): one "window" per record
    if not whole:
        stride = n // 2 if options.stride is None else options.stride
        if not 1 <= stride <= n:
            raise ConfigError(f"window stride must be in 1..{n}, got {stride}")
    max_amb = options.rules.max_ambiguous_fraction
    seen: set[str] = set()
    pending: list[_Pending] = []  # records waiting for their row, in input order
    queue: list[tuple[_Pending, int]] = []  # windows waiting for the engine

    def flush():
        batch, queue[:] = list(queue), []
        if not batch:
            return
        if whole:
            z = np.asarray(engine.predict_record_logits([p.sequence for p, _ in batch]), float)
        else:
            z = _logits(engine, encode([p.sequence[s : s + n] for p, s in batch], n))
        proba = _softmax(z)
        zin = z[:, : rule.n_classes]
        top = zin.max(axis=1)
        lse = top + np.log(np.exp(zin - top[:, None]).sum(axis=1))
        for (p, _), row, e, m in zip(batch, proba, lse, top, strict=True):
            if options.combine == "mean":
                p.score = row if p.score is None else p.score + row
            else:
                p.score = row if p.score is None else np.maximum(p.score, row)
            p.energy += float(e)
            p.max_logit += float(m)
            p.done += 1

    def ready() -> Iterator[dict]:
        while pending and pending[0].finished:
            yield _row(pending.pop(0), class_names, options.combine, rule, options.detector)

    for index, (rid, desc, raw) in enumerate(records, start=1):
        seq, status, detail = check_sequence(raw, options.rules)
        if not rid:
            status, detail, rid = MISSING_ID, f"record {index} has an empty header", f"#{index}"
        elif rid in seen and status not in UNCLASSIFIABLE:
            status, detail = DUPLICATE_ID, f"record id {rid!r} already seen"
        seen.add(rid)
        p = _Pending(index, rid, len(seq), status, detail, _label(desc))
        if status in UNCLASSIFIABLE:
            p.reason = status
        elif len(seq) < rule.min_length:
            p.reason = TOO_SHORT
            p.detail = (p.detail + "; " if p.detail else "") + (
                f"length {len(seq)} < minimum {rule.min_length}"
            )
        elif max_amb is not None and _ambiguous_share(seq) > max_amb:
            p.reason = TOO_MANY_N
            if not p.detail:
                p.detail = (
                    f"{_ambiguous_share(seq):.1%} of the bases are ambiguous (limit {max_amb:.1%})"
                )
        else:
            p.sequence = seq
            starts = [0] if whole else window_starts(len(seq), n, stride)
            p.n_windows = len(starts)
            for s in starts:
                queue.append((p, int(s)))
                if len(queue) >= options.batch_windows:
                    flush()
        pending.append(p)
        yield from ready()
    flush()
    yield from ready()


_ACGT = np.zeros(256, dtype=bool)
_ACGT[np.frombuffer(b"ACGT", dtype=np.uint8)] = True


def _ambiguous_share(seq: str) -> float:
    raw = np.frombuffer(seq.encode("ascii", errors="replace"), dtype=np.uint8)
    return float((~_ACGT[raw]).mean()) if raw.size else 0.0


def _row(
    p: _Pending,
    class_names: Sequence[str],
    combine: str,
    rule: OpenSetRule,
    detector: MahalanobisDetector | None = None,
) -> dict:
    row = {"id": p.id, "length": p.length, "status": p.status, "predicted": UNCLASSIFIED}
    row["reason"], row["best_class"], row["score"] = p.reason, "NA", float("nan")
    scores = {}
    if p.n_windows:
        probs = p.score / p.n_windows if combine == "mean" else p.score / p.score.sum()
        w = p.n_windows
        scores = {
            "msp": float(np.max(probs[: rule.n_classes])),
            "energy": p.energy / w,
            "max_logit": p.max_logit / w,
        }
        if detector is not None:  # of the whole record's k-mer frequencies
            scores["mahalanobis"] = float(detector.score_sequences([p.sequence])[0])
        best, reason = decide(probs, scores, rule)
        row["best_class"] = class_names[int(np.argmax(probs[: rule.n_classes]))]
        row["score"] = scores[rule.score]
        if best >= 0:
            row["predicted"] = class_names[best]
        row["reason"] = reason
    else:
        probs = np.full(len(class_names), np.nan)
    for name, v in zip(class_names, probs, strict=True):
        row[f"p_{name}"] = float(v)
    row["windows"] = p.n_windows
    row["detail"] = p.detail
    row["label"] = p.label
    row["_proba"] = probs
    row["_scores"] = scores
    return row


def columns(class_names: Sequence[str]) -> list[str]:
    return [
        "id",
        "length",
        "status",
        "predicted",
        "reason",
        "best_class",
        "score",
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
    """Counts of a classification pass: ``scored`` records went through the model (``bases``
    and ``windows`` are theirs), ``classified`` got a class, ``unclassified`` did not (unusable,
    too short, too many N, background or below the threshold), ``flagged`` have a status other
    than ok; ``seconds`` is the wall time of the whole pass."""

    records: int
    scored: int
    classified: int
    unclassified: int
    flagged: int
    bases: int
    windows: int
    seconds: float

    @property
    def sequences_per_second(self) -> float:
        return self.scored / self.seconds if self.seconds > 0 else float("nan")

    @property
    def bp_per_second(self) -> float:
        return self.bases / self.seconds if self.seconds > 0 else float("nan")

    @property
    def gbp_per_hour(self) -> float:
        return self.bases / 1e9 / (self.seconds / 3600) if self.seconds > 0 else float("nan")

    def as_dict(self) -> dict:
        return {
            **self.__dict__,
            "sequences_per_second": self.sequences_per_second,
            "bp_per_second": self.bp_per_second,
            "gbp_per_hour": self.gbp_per_hour,
        }


def classify_fasta(
    fasta: str | os.PathLike,
    out: str | os.PathLike,
    engine,
    class_names: Sequence[str],
    options: ClassifyOptions = ClassifyOptions(),
) -> ClassifySummary:
    """Classify every record of ``fasta`` (FASTA or FASTQ, plain or gzip) into the TSV ``out``
    (written atomically; columns: :func:`columns`).

    ``bases`` and the throughput count scored records only; ``seconds`` is the wall time of the
    whole pass (reading, encoding, inference, writing).
    """
    start = time.perf_counter()
    records = iter_records(fasta)
    # the first record is read before the output is opened: a non-FASTA file fails cleanly
    first = next(records)

    def chained():
        yield first
        yield from records

    counts = dict(records=0, scored=0, classified=0, unclassified=0, flagged=0, bases=0, windows=0)
    cols = columns(class_names)
    with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write("\t".join(cols) + "\n")
        for row in classify_records(chained(), engine, class_names, options):
            fh.write("\t".join(_cell(row[c]) for c in cols) + "\n")
            counts["records"] += 1
            if row["windows"]:
                counts["scored"] += 1
                counts["bases"] += row["length"]
                counts["windows"] += row["windows"]
            if row["predicted"] == UNCLASSIFIED:
                counts["unclassified"] += 1
            else:
                counts["classified"] += 1
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
    from ...tasks.classification_metrics import classification_metrics
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
    "WINDOW_DTYPES",
    "OnnxEngine",
    "RuntimeEngine",
    "TorchEngine",
    "classify_fasta",
    "classify_records",
    "columns",
    "evaluate_split",
    "iter_fasta",
    "iter_records",
    "load_engine",
    "sniff_format",
]
