"""The viral summary: every row - a window-based CNN engine, a record-level baseline - in the same
units (per record, per fragment, open set), computed from the same pieces."""

import json

import numpy as np
import pytest

from quantscan.apps.viral import classify, dataset, evaluation, openset, report
from quantscan.summary import metrics_json

NAMES = ["A_rich", "C_rich"]
OUTPUTS = [*NAMES, "background"]


class WindowEngine:
    """Window-based (N = 100): A-rich -> class 0, C-rich -> class 1, else background."""

    length = 100
    n_classes = 3

    def predict_logits(self, x):
        a, c = x[:, 0].sum(1).astype(float), x[:, 1].sum(1).astype(float)
        n = np.maximum(x[:, :4].sum((1, 2)), 1)
        return np.stack([8 * a / n, 8 * c / n, np.full(len(x), 3.0)], axis=1)

    def predict_proba(self, x):
        z = self.predict_logits(x)
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)


class RecordEngine:
    """Record-level (length None): always class 0 - right on A-rich records only."""

    length = None
    n_classes = 3

    def predict_record_logits(self, seqs):
        return np.tile([5.0, 0.0, 0.0], (len(seqs), 1))


@pytest.fixture(scope="module")
def pieces(tmp_path_factory):
    d = tmp_path_factory.mktemp("summary")
    rng = np.random.default_rng(0)

    def rich(base, n):
        return "".join(rng.choice([base, "G", "T"], n, p=[0.8, 0.1, 0.1]))

    val = [rich("A", 300), rich("C", 300), rich("A", 250), rich("C", 260)]
    test = [rich("A", 320), rich("C", 210), rich("A", 90), rich("C", 400)]
    for name, seqs in (("val", val), ("test", test)):
        dataset.save_onehot(d / f"{name}.npz", seqs, [0, 1, 0, 1], OUTPUTS, length=100, stride=50)
    split = {s: dataset.read_split(d / f"{s}.npz") for s in ("val", "test")}
    ood = [evaluation.Piece(f"o{i}", "GT" * 60, -1, "ood", "random") for i in range(3)]
    return {
        "val": evaluation.split_pieces(split["val"], 2, [100], None, 0, "val"),
        "test": evaluation.split_pieces(split["test"], 2, [100], None, 0, "test"),
        "ood": ood,
    }


def assess(engine, pieces):
    rule = openset.OpenSetRule(2, background=True, min_length=50)
    options = classify.ClassifyOptions(stride=50, openset=rule)
    rows = {k: evaluation.score_pieces(engine, p, OUTPUTS, options) for k, p in pieces.items()}
    return evaluation.assess(
        rows["val"],
        pieces["val"],
        rows["test"],
        pieces["test"],
        rows["ood"],
        pieces["ood"],
        NAMES,
        background=True,
        score="msp",
        fpr=0.0,
    )


def test_fragments_are_non_overlapping_tiles(pieces):
    frags = [p for p in pieces["test"] if p.group == "100"]
    # 320 -> 3 pieces, 210 -> 2, 90 -> none, 400 -> 4
    assert len(frags) == 9 and all(len(p.sequence) == 100 for p in frags)
    assert [p.id for p in frags][:3] == ["#0:1-100", "#0:101-200", "#0:201-300"]
    rng = np.random.default_rng(0)
    assert len(openset.fragments("A" * 1000, 150, 4, rng)) == 4


def test_every_row_in_the_same_units(pieces, tmp_path):
    cnn, base = assess(WindowEngine(), pieces), assess(RecordEngine(), pieces)
    # per record: the window engine is right on all 4 test records, the baseline on the 2 A-rich
    assert cnn["headline"]["full_accuracy"] == 1.0 and cnn["headline"]["full_n"] == 4
    assert base["headline"]["full_accuracy"] == 0.5
    # per fragment: 9 pieces of 100 bp, 3 of them A-rich (record #0); units are pieces, not windows
    assert cnn["headline"]["100_n"] == base["headline"]["100_n"] == 9
    assert base["headline"]["100_accuracy"] == pytest.approx(3 / 9)
    assert cnn["headline"]["100_accuracy"] == 1.0
    # the GT repeats are background for the window engine, a class for the baseline
    assert cnn["headline"]["reject_random"] == 1.0 and base["headline"]["reject_random"] == 0.0
    paths = []
    for name, ev in (("fp32", cnn), ("kmer5", base)):
        p = tmp_path / f"{name}.json"
        p.write_text(metrics_json({**ev, "method": name, "scenario": "sim", "engine": name}))
        paths.append(p)
    m = tmp_path / "metrics.json"
    m.write_text(
        json.dumps({"scenario": "sim", "method": "fp32", "accuracy": 0.25, "model_bits": 64})
    )
    table, strategies = report.viral_summary(paths, [m], NAMES)
    assert table.method.tolist() == ["fp32", "kmer5"]
    assert list(table.columns[:6]) == [
        "scenario",
        "method",
        "accuracy",
        "mcc",
        "acc_A_rich",
        "acc_C_rich",
    ]
    for col in (
        "accuracy",
        "open_accuracy",
        "frag100_accuracy",
        "frag100_open_accuracy",
        "reject_random",
    ):
        assert table[col].notna().all(), col  # every row has every unit
    assert table.accuracy.tolist() == [1.0, 0.5]
    # the CNN's own per-window number is kept apart, named as what it is
    assert table.window_accuracy.tolist()[0] == 0.25 and np.isnan(table.window_accuracy[1])
    assert table.model_bits.tolist()[0] == 64 and np.isnan(table.model_bits[1])
    assert set(strategies.method) == {"fp32", "kmer5"} and strategies.configured.sum() == 2


def test_tradeoff_curve_counts_each_threshold():
    in_right = np.array([True, True, True, False, True])
    in_score = np.array([0.9, 0.6, 0.3, 0.8, np.nan])  # NaN: never below a threshold (decide)
    out_unclassified = np.array([False, False, True, False])
    out_score = np.array([0.7, 0.2, np.nan, np.nan])  # the 3rd unscored, the 4th NaN: kept
    curve = evaluation.tradeoff_curve(in_right, in_score, out_unclassified, out_score)
    # thresholds: none, then the scores of in-class records that are right, then just above
    assert curve["threshold"][:4] == [None, 0.3, 0.6, 0.9]
    assert len(curve["threshold"]) == 5 and 0.9 < curve["threshold"][4] < 0.9 + 1e-12
    assert curve["kept"] == pytest.approx([0.8, 0.8, 0.6, 0.4, 0.2])
    assert curve["rejected"] == pytest.approx([0.25, 0.5, 0.5, 0.75, 0.75])
    # each point: a record is unclassified when its score is below t (openset.decide's rule)
    points = zip(curve["threshold"][1:], curve["kept"][1:], curve["rejected"][1:], strict=True)
    for t, kept, rejected in points:
        assert kept == np.mean(in_right & ~(in_score < t))
        assert rejected == np.mean(out_unclassified | (out_score < t))
    # bounded: evenly thinned beyond max_points, keeping the first and the last threshold
    rng = np.random.default_rng(0)
    right, score = rng.random(5000) < 0.9, rng.random(5000)
    big = evaluation.tradeoff_curve(right, score, rng.random(3000) < 0.1, rng.random(3000), 50)
    assert len(big["threshold"]) == 51 and big["threshold"][0] is None
    assert big["threshold"][1] == score[right].min() and big["kept"][-1] == 0.0
    assert np.all(np.diff(big["kept"]) <= 0) and np.all(np.diff(big["rejected"]) >= 0)
    empty = evaluation.tradeoff_curve(in_right, in_score, np.zeros(0, bool), np.zeros(0))
    assert all(np.isnan(empty["rejected"]))


def test_fixed_answers_before_any_threshold():
    rows = [
        {"windows": 0},  # not scored: unclassified, never right
        {"windows": 2, "_proba": [0.1, 0.2, 0.7], "_scores": {"msp": 0.6}},  # background largest
        {"windows": 1, "_proba": [0.7, 0.2, 0.1], "_scores": {"msp": 0.7}},
    ]
    labels = np.array([0, 1, 0])
    right, unclassified, score = evaluation._fixed_answers(rows, labels, 2, True, "msp")
    assert right.tolist() == [False, False, True]
    assert unclassified.tolist() == [True, True, False]
    assert np.isnan(score[0]) and score[1:].tolist() == [0.6, 0.7]
    right, unclassified, _ = evaluation._fixed_answers(rows, labels, 2, False, "msp")
    assert right.tolist() == [False, True, True] and unclassified.tolist() == [True, False, False]


def test_the_calibrated_thresholds_lie_on_the_tradeoff_curves(pieces, tmp_path):
    ev = assess(WindowEngine(), pieces)
    by_name = {s["strategy"]: s for s in ev["strategies"]}
    assert set(ev["tradeoff"]) == {n for n in by_name if ":" in n or "+" in n}
    for name, curve in ev["tradeoff"].items():
        st = by_name[name]
        # full-length records only: at most one threshold per record, plus none and the end
        assert len(curve["threshold"]) <= st["full_n"] + 2, name
        # calibrated on validation scores: between two listed ones, it answers as the next one up
        scores = np.array(curve["threshold"][1:])
        i = 1 + int(np.searchsorted(scores, st["threshold"]))
        assert i < len(curve["threshold"]), name
        assert curve["kept"][i] == pytest.approx(st["full_open_accuracy"]), name
        assert curve["rejected"][i] == pytest.approx(st["reject_all"]), name
    # with no threshold, background+msp is the background class alone; threshold:msp rejects none
    assert ev["tradeoff"]["background+msp"]["rejected"][0] == by_name["background"]["reject_all"]
    assert by_name["background"]["reject_all"] == 1.0
    assert ev["tradeoff"]["threshold:msp"]["rejected"][0] == 0.0
    assert ev["tradeoff"]["threshold:msp"]["kept"][0] == by_name["background"]["full_accuracy"]
    path = tmp_path / "fp32.json"
    path.write_text(metrics_json({**ev, "method": "fp32", "scenario": "sim", "engine": "torch"}))
    old = tmp_path / "old.json"  # written before the curves: markers only
    old.write_text(metrics_json({**ev, "tradeoff": {}, "method": "x", "scenario": "sim"}))
    png = tmp_path / "openset.png"
    assert report.openset_plot([path, path, old], png) == 2 * len(ev["tradeoff"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report.openset_plot([old], tmp_path / "old.png") == 0  # no curves, no legend
    with pytest.raises(report.InputFormatError, match="no evaluations"):
        report.openset_plot([], tmp_path / "none.png")
