"""One evaluation, in one unit, for every viral classifier: the CNN engines and the baselines.

Every method classifies the same *pieces* through :func:`classify.classify_records` (validation,
windows, open-set decision: exactly what the classify rule does):

* in-class test records at full length (``full``) and cut into non-overlapping fragments of each
  configured length (``openset.fragments``, at most ``max_pieces`` per record and length);
* out-of-class test records (``ood.fasta``: categories ``shuffled``, ``random``,
  ``other_family``, ``host_like`` and any user FASTA);
* in-class validation records and their fragments, to calibrate the open-set threshold.

Units are the same for every row: the share of records (``full``) or fragments (``<length>``) of
the in-class test set whose answer is right, closed set (``accuracy``: the best target class,
ignoring the open-set answer) and open set (``open_accuracy``: ``unclassified`` counts as wrong),
and the share of out-of-class records answered ``unclassified`` (``reject_<category>``).

Open-set strategies compared for each method (:func:`strategies`): the background class alone
(``background``), a threshold alone on each score (``threshold:<score>``: the background output,
if any, is ignored: the decision is between the target classes), and both
(``background+<score>``). The configured one (``apps.viral.scan.openset``) is the method's headline.

Baselines are record-level engines (``length = None``): :class:`KmerEngine` (logistic regression
on k-mer frequencies, ``baselines``) and :class:`LengthEngine` (length only); they are trained on
the same training split, background class included.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ...errors import ConfigError
from ...seeds import derive_seed
from ...tasks.classification_metrics import classification_metrics
from . import baselines, openset
from .classify import ClassifyOptions, classify_records, iter_records
from .dataset import OneHotSplit, length_only_baseline, tokens
from .onehot import lookup_table


@dataclass(frozen=True)
class Piece:
    """One sequence to classify: ``label`` a target class index (-1: out of class), ``group``
    ``full``, a fragment length as text, or ``ood``; ``category`` the out-of-class category."""

    id: str
    sequence: str
    label: int
    group: str
    category: str = ""


def split_pieces(
    split: OneHotSplit,
    n_classes: int,
    fragment_lengths: Sequence[int],
    max_pieces: int | None,
    seed: int,
    key: str,
) -> list[Piece]:
    """The in-class records of a split (labels below ``n_classes``) at full length and in
    fragments of each length (records shorter than a length give none of it)."""
    rng = np.random.default_rng(derive_seed(seed, "viral-fragments", key))
    out = []
    for i in range(split.n_records):
        label = int(split.labels[i])
        if label >= n_classes:
            continue
        seq, rid = split.sequence(i), str(split.ids[i])
        out.append(Piece(rid, seq, label, "full"))
        for length in fragment_lengths:
            for start, piece in openset.fragments(seq, int(length), max_pieces, rng):
                out.append(Piece(f"{rid}:{start + 1}-{start + length}", piece, label, str(length)))
    return out


def ood_pieces(path: str | os.PathLike) -> list[Piece]:
    """Out-of-class records of a FASTA file; the category is the description's ``category=``
    token (``other`` without one)."""
    return [
        Piece(rid, seq, -1, "ood", tokens(desc).get("category", "other"))
        for rid, desc, seq in iter_records(path)
    ]


# ----------------------------------------------------------------------------- record-level engines


def _codes(seqs: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    raw = [s.upper().encode("ascii", errors="replace") for s in seqs]
    codes = lookup_table()[np.frombuffer(b"".join(raw), dtype=np.uint8)]
    offsets = np.concatenate(([0], np.cumsum([len(r) for r in raw]))).astype(np.int64)
    return codes, offsets


class KmerEngine:
    """Logistic regression on k-mer frequencies, scoring whole records (``length = None``)."""

    length = None

    def __init__(self, train: OneHotSplit, k: int, l2: float = 1e-2):
        self.k = int(k)
        self.n_classes = len(train.class_names)
        self.kind = f"kmer{k}"
        x = baselines.kmer_frequencies(train.codes, train.offsets, self.k)
        self.model = baselines.fit_logistic(x, train.labels, self.n_classes, l2)

    def predict_record_logits(self, seqs: Sequence[str]) -> np.ndarray:
        codes, offsets = _codes(seqs)
        return baselines.predict_logits(
            self.model, baselines.kmer_frequencies(codes, offsets, self.k)
        )


class LengthEngine:
    """Record length only (``dataset.length_only_baseline``'s histogram naive Bayes)."""

    length = None
    kind = "length"

    def __init__(self, train: OneHotSplit):
        self.n_classes = len(train.class_names)
        self.train_lengths, self.train_labels = train.lengths, train.labels

    def predict_record_logits(self, seqs: Sequence[str]) -> np.ndarray:
        return length_only_baseline(
            self.train_lengths,
            self.train_labels,
            [len(s) for s in seqs],
            self.n_classes,
            log_posterior=True,
        )


def mahalanobis_detector(
    train: OneHotSplit, n_classes: int, settings: Mapping | None
) -> openset.MahalanobisDetector | None:
    """The open-set Mahalanobis detector (``apps.viral.scan.openset.mahalanobis``: ``k``,
    ``ridge``, the detector's defaults for missing ones; None: none) fitted on the training split's in-class records (labels below
    ``n_classes``: the background class is left out)."""
    if not settings:
        return None
    det = openset.MahalanobisDetector(**{k: v for k, v in settings.items() if k in ("k", "ridge")})
    x = baselines.kmer_frequencies(train.codes, train.offsets, det.k)
    return det.fit(x, train.labels, n_classes)


# ----------------------------------------------------------------------------- scoring


def score_pieces(
    engine, pieces: Sequence[Piece], class_names: Sequence[str], options: ClassifyOptions
) -> list[dict]:
    """classify rows (with ``_proba`` and ``_scores``) of every piece, in order."""
    records = ((p.id, "", p.sequence) for p in pieces)
    return list(classify_records(records, engine, class_names, options))


def strategies(
    background: bool, scores: Sequence[str] = openset.LOGIT_SCORES
) -> list[tuple[str, bool, str | None]]:
    """``(name, use the background output, score or None)`` of every strategy compared."""
    out = [("background", True, None)] if background else []
    for score in scores:
        out.append((f"threshold:{score}", False, score))
        if background:
            out.append((f"background+{score}", True, score))
    return out


def strategy_name(background: bool, score: str | None) -> str:
    if background:
        return "background" if score is None else f"background+{score}"
    if score is None:
        return "closed"
    return f"threshold:{score}"


def _answers(
    rows: Sequence[dict], n_classes: int, use_background: bool, score: str | None, threshold
) -> tuple[np.ndarray, np.ndarray]:
    """Best target class (-1: not scored) and open-set answer (-1: unclassified) per row."""
    best = np.full(len(rows), -1, np.int64)
    answer = np.full(len(rows), -1, np.int64)
    for i, row in enumerate(rows):
        if not row["windows"]:
            continue
        proba = np.asarray(row["_proba"])
        best[i] = int(np.argmax(proba[:n_classes]))
        rule = openset.OpenSetRule(
            n_classes,
            background=use_background and proba.size > n_classes,
            score=score or "msp",
            threshold=threshold,
        )
        answer[i], _ = openset.decide(proba, row["_scores"], rule)
    return best, answer


def _share(mask: np.ndarray) -> float:
    return float(mask.mean()) if mask.size else float("nan")


#: points on a trade-off curve at most (thinned evenly beyond that)
MAX_CURVE_POINTS = 500


def _fixed_answers(
    rows: Sequence[dict], labels: np.ndarray, n_classes: int, use_background: bool, score: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row, before any threshold (:func:`_answers` with none): right (the answer is the
    target class ``labels``), unclassified (not scored, or the background output the largest
    when ``use_background``), and the ``score`` (NaN when not scored)."""
    _, answer = _answers(rows, n_classes, use_background, None, None)
    values = np.array([r["_scores"][score] if r["windows"] else np.nan for r in rows], float)
    return answer == labels, answer < 0, values


def tradeoff_curve(
    in_right: np.ndarray,
    in_score: np.ndarray,
    out_unclassified: np.ndarray,
    out_score: np.ndarray,
    max_points: int = MAX_CURVE_POINTS,
) -> dict:
    """What a threshold on an open-set score trades, threshold by threshold.

    ``in_right``/``in_score``: the in-class records answered right without a threshold, and
    their scores; ``out_unclassified``/``out_score``: the out-of-class records answered
    ``unclassified`` without a threshold, and their scores. A threshold t leaves a record as it
    was unless its score is below t (``openset.decide``: a NaN score is never below). ``kept``
    is the share of in-class records still right, ``rejected`` the share of out-of-class records
    unclassified, for: no threshold (``threshold`` None), each distinct score of an in-class
    record that is right (the thresholds where ``kept`` steps down: any other threshold rejects
    no more out-of-class records than the next of these up, at the same ``kept``, so the curve
    holds every best trade), and one just above the largest of them (nothing kept). Exact, by
    sorting (n log n); beyond ``max_points`` thresholds, evenly thinned (the first and last kept).
    """
    in_right = np.asarray(in_right, bool)
    in_score = np.asarray(in_score, np.float64)
    out_unclassified = np.asarray(out_unclassified, bool)
    out_score = np.asarray(out_score, np.float64)
    right_scores = in_score[in_right]
    kept_nan = int(np.isnan(right_scores).sum())  # never below a threshold: always kept
    right_scores = np.sort(right_scores[~np.isnan(right_scores)])
    candidates = np.unique(right_scores[np.isfinite(right_scores)])
    if candidates.size:
        candidates = np.append(candidates, np.nextafter(candidates[-1], np.inf))
    if candidates.size > max_points:
        keep = np.unique(np.linspace(0, candidates.size - 1, max_points).round().astype(int))
        candidates = candidates[keep]
    open_scores = np.sort(out_score[~out_unclassified & ~np.isnan(out_score)])
    n_in, n_out = in_right.size, out_unclassified.size
    below_in = np.searchsorted(right_scores, candidates, side="left")
    below_out = np.searchsorted(open_scores, candidates, side="left")

    def share(count, n):
        return (
            (np.asarray(count, np.float64) / n).tolist() if n else [float("nan")] * np.size(count)
        )

    n_right = right_scores.size + kept_nan
    kept = share([n_right, *(n_right - below_in)], n_in)
    rejected = share([int(out_unclassified.sum()), *(out_unclassified.sum() + below_out)], n_out)
    return {"threshold": [None, *candidates.tolist()], "kept": kept, "rejected": rejected}


def assess(
    val_rows: Sequence[dict],
    val_pieces: Sequence[Piece],
    test_rows: Sequence[dict],
    test_pieces: Sequence[Piece],
    ood_rows: Sequence[dict],
    ood_pieces_: Sequence[Piece],
    class_names: Sequence[str],
    *,
    background: bool,
    score: str | None,
    fpr: float | None,
) -> dict:
    """The evaluation of one method from its scored pieces (see the module docstring).

    ``class_names`` are the target classes (the background output, if any, comes after them);
    ``background``/``score``/``fpr`` the configured strategy (``score`` None or ``fpr`` None: no
    threshold). Returns a JSON-ready dict: ``headline`` (the configured strategy's numbers),
    ``strategies`` (every strategy's), ``thresholds`` (per score), ``tradeoff`` (per strategy with
    a score: :func:`tradeoff_curve` over the full-length in-class and the out-of-class test
    records), ``records`` (closed-set per-record metrics: accuracy, MCC, per class, confusion
    matrix) and counts.
    """
    k = len(class_names)
    has_bg = any(r["windows"] and r["_proba"].size > k for r in test_rows)
    if background and not has_bg:
        raise ConfigError("the open-set strategy uses a background class the model does not have")
    val_labels = np.array([p.label for p in val_pieces])
    test_labels = np.array([p.label for p in test_pieces])
    groups = np.array([p.group for p in test_pieces])
    cats = np.array([p.category for p in ood_pieces_])
    # the threshold is calibrated on the full-length in-class validation records (the test
    # fragments then show what it costs at shorter lengths)
    val_full = np.array([p.group == "full" for p in val_pieces])
    # the scores every scored row has (mahalanobis only with a detector)
    scored = [r["_scores"] for r in (*val_rows, *test_rows) if r["windows"]]
    available = [s for s in openset.SCORES if scored and all(s in x for x in scored)]
    if score is not None and fpr is not None and score not in available:
        raise ConfigError(f"open-set score {score!r} was not computed (no detector?)")
    thresholds = {}
    for s in available:
        vals = [
            r["_scores"][s]
            for r, lab, f in zip(val_rows, val_labels, val_full, strict=True)
            if r["windows"] and f and lab >= 0
        ]
        thresholds[s] = openset.calibrate(vals, fpr) if fpr is not None and vals else None
    group_names = ["full"] + sorted({g for g in groups if g != "full"}, key=int)
    categories = sorted(set(cats.tolist()), key=lambda c: (c not in openset.CATEGORIES, c))

    def numbers(use_bg: bool, s: str | None) -> dict:
        thr = thresholds.get(s) if s else None
        best, answer = _answers(test_rows, k, use_bg, s, thr)
        _, ood_answer = _answers(ood_rows, k, use_bg, s, thr)
        out = {"strategy": strategy_name(use_bg, s if thr is not None else None)}
        out["threshold"] = thr
        for g in group_names:
            m = groups == g
            out[f"{g}_n"] = int(m.sum())
            out[f"{g}_accuracy"] = _share(best[m] == test_labels[m])
            out[f"{g}_open_accuracy"] = _share(answer[m] == test_labels[m])
        for c, name in enumerate(class_names):  # where the open-set answer costs in-class records
            m = (groups == "full") & (test_labels == c)
            out[f"full_open_acc_{name}"] = _share(answer[m] == c)
        for c in categories:
            out[f"reject_{c}"] = _share(ood_answer[cats == c] < 0)
            out[f"{c}_n"] = int((cats == c).sum())
        out["reject_all"] = _share(ood_answer < 0)
        return out

    compared = [numbers(bg, s) for _, bg, s in strategies(has_bg, available)]
    # every threshold of each score, not only the calibrated one (the open-set plot)
    full = groups == "full"
    full_rows = [r for r, f in zip(test_rows, full, strict=True) if f]
    ood_labels = np.full(len(ood_rows), -1)
    tradeoff = {}
    for name, bg, s in strategies(has_bg, available):
        if s is None:
            continue
        in_right, _, in_score = _fixed_answers(full_rows, test_labels[full], k, bg, s)
        _, out_unclassified, out_score = _fixed_answers(ood_rows, ood_labels, k, bg, s)
        tradeoff[name] = tradeoff_curve(in_right, in_score, out_unclassified, out_score)
    headline = numbers(background, score if fpr is not None else None)
    # closed-set per-record metrics; a record that is not scored (too short, too many N) counts
    # as an extra "not scored" prediction, wrong for every class
    best_full, _ = _answers(full_rows, k, False, None, None)
    pred = np.where(best_full >= 0, best_full, k)
    records = classification_metrics(
        test_labels[full], np.eye(k + 1)[pred], [*class_names, "not_scored"]
    )
    records.pop("acc_not_scored", None)
    return {
        "classes": list(class_names),
        "background": bool(background),
        "score": score,
        "fpr": fpr,
        "threshold": headline["threshold"],
        "thresholds": thresholds,
        "fragments": [g for g in group_names if g != "full"],
        "categories": categories,
        "headline": headline,
        "strategies": compared,
        "tradeoff": tradeoff,
        "records": records,
        "n_val_pieces": len(val_pieces),
        "n_test_pieces": len(test_pieces),
        "n_ood": len(ood_pieces_),
    }


def summary_row(evaluation: Mapping, method: str, scenario: str) -> dict:
    """The summary table's evaluation columns of one method, from its :func:`assess` dict:
    ``accuracy``/``mcc``/``acc_<class>`` per in-class test record (full length, closed set),
    ``open_accuracy`` (unclassified counts as wrong) and ``open_acc_<class>``, ``<length>_accuracy`` and
    ``<length>_open_accuracy`` per fragment length, ``reject_<category>``, ``openset`` (the
    strategy), ``threshold``, ``n_records``."""
    h = evaluation["headline"]
    rec = evaluation["records"]
    row = {
        "scenario": scenario,
        "method": method,
        "accuracy": h["full_accuracy"],
        "mcc": rec["mcc"],
        **{f"acc_{c}": rec[f"acc_{c}"] for c in evaluation["classes"]},
        "open_accuracy": h["full_open_accuracy"],
        "n_records": h["full_n"],
    }
    for g in evaluation["fragments"]:
        row[f"frag{g}_accuracy"] = h[f"{g}_accuracy"]
        row[f"frag{g}_open_accuracy"] = h[f"{g}_open_accuracy"]
        row[f"frag{g}_n"] = h[f"{g}_n"]
    for c in evaluation["classes"]:
        row[f"open_acc_{c}"] = h.get(f"full_open_acc_{c}", math.nan)
    for c in evaluation["categories"]:
        row[f"reject_{c}"] = h[f"reject_{c}"]
    row["reject_all"] = h["reject_all"]
    row["openset"] = h["strategy"]
    row["threshold"] = h["threshold"] if h["threshold"] is not None else math.nan
    return row


__all__ = [
    "KmerEngine",
    "LengthEngine",
    "Piece",
    "assess",
    "mahalanobis_detector",
    "ood_pieces",
    "score_pieces",
    "split_pieces",
    "strategies",
    "strategy_name",
    "summary_row",
    "tradeoff_curve",
]
