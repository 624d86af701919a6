"""The open-set answer: generators of out-of-class sequences, calibration, decisions, and
rejection of shuffled and random sequences by a classifier trained with a background class."""

from collections import Counter

import numpy as np
import pytest

from quantscan.apps.viral import classify, dataset, evaluation, openset
from quantscan.apps.viral.fasta import Record, write_fasta
from quantscan.errors import ConfigError

CLASSES = ["alpha", "beta"]


def test_dinucleotide_shuffle_keeps_dinucleotides_and_ends_but_not_the_sequence():
    rng = np.random.default_rng(0)
    seq = "".join(rng.choice(list("ACGT"), 400)) + "NNACGTRY"
    for i in range(5):
        out = openset.dinucleotide_shuffle(seq, np.random.default_rng(i))

        def pairs(s):
            return Counter(s[j : j + 2] for j in range(len(s) - 1))

        assert len(out) == len(seq) and out[0] == seq[0] and out[-1] == seq[-1]
        assert pairs(out) == pairs(seq)
        assert out != seq
    assert openset.dinucleotide_shuffle("AC", rng) == "AC"
    assert sorted(openset.mono_shuffle(seq, rng)) == sorted(seq)


def test_generators_are_seeded_and_follow_the_lengths_of_their_records():
    rng = np.random.default_rng(1)
    recs = [
        Record(f"r{i}", "".join(rng.choice(list("ACGT"), 150 + 10 * i)), "alpha") for i in range(6)
    ]
    lengths = {len(r) for r in recs}
    for cat in openset.CATEGORIES:
        a = openset.generate(cat, 12, recs, seed=3, key="k")
        assert a == openset.generate(cat, 12, recs, seed=3, key="k")  # reproducible
        assert a != openset.generate(cat, 12, recs, seed=3, key="other")  # keys are independent
        assert len(a) == 12 and all(set(s) <= set("ACGT") for s in a)
        assert {len(s) for s in a} <= lengths, cat
    with pytest.raises(ConfigError, match="unknown out-of-class category"):
        openset.generate("plasmid", 1, recs, 0, "k")
    bg = openset.background_records(recs, 10, seed=3, split="train")
    assert [r.label for r in bg] == [openset.BACKGROUND] * 10
    assert Counter(dataset.tokens(r.description)["category"] for r in bg) == {
        "shuffled": 3,
        "random": 3,
        "other_family": 2,
        "host_like": 2,
    }
    ood = openset.ood_records(recs, 4, seed=3, extra={"host_genome": [Record("h1", "ACGT" * 50)]})
    assert len(ood) == 17 and {r.label for r in ood} == {openset.UNCLASSIFIED}
    # the test records never repeat a background record (other seeds, other simulated families)
    assert not {r.sequence for r in ood} & {r.sequence for r in bg}


def test_calibrate_and_decide():
    scores = np.linspace(0.0, 1.0, 101)
    assert openset.calibrate(scores, 0.0) == 0.0  # nothing below the smallest in-class score
    t = openset.calibrate(scores, 0.05)
    assert (scores < t).mean() <= 0.05 and (scores <= t).mean() > 0.05
    with pytest.raises(ConfigError, match="no in-class held-out scores"):
        openset.calibrate([np.nan], 0.01)
    rule = openset.OpenSetRule(2, background=True, score="msp", threshold=0.6)
    assert openset.decide(np.array([0.7, 0.2, 0.1]), {"msp": 0.7}, rule) == (0, "")
    assert openset.decide(np.array([0.55, 0.05, 0.4]), {"msp": 0.55}, rule) == (
        -1,
        "below_threshold",
    )
    assert openset.decide(np.array([0.3, 0.1, 0.6]), {"msp": 0.3}, rule) == (-1, "background")
    with pytest.raises(ConfigError, match="score must be one of"):
        openset.OpenSetRule(2, score="entropy")


def motif_class(rng, motif: str, n: int, length=300):
    """iid sequences (GC 0.5) carrying six copies of a class motif: composition says little,
    the motif says everything; a dinucleotide shuffle keeps the composition, loses the motif."""
    out = []
    for _ in range(n):
        s = list(rng.choice(list("ACGT"), length))
        for at in rng.choice(np.arange(0, length - len(motif), len(motif)), 6, replace=False):
            s[at : at + len(motif)] = motif
        out.append("".join(s))
    return out


@pytest.fixture(scope="module")
def motif_splits(tmp_path_factory):
    d = tmp_path_factory.mktemp("openset")
    rng = np.random.default_rng(7)
    motifs = {"alpha": "GATTACAGGCTA", "beta": "CCGTTAACGGAT"}
    records = [
        Record(f"{c}_{i}", s, c, f"taxon={c}{i % 6}")
        for c, m in motifs.items()
        for i, s in enumerate(motif_class(rng, m, 60))
    ]
    out = {s: d / f"{s}.npz" for s in ("train", "val", "test")}
    result = dataset.build_splits(
        records,
        CLASSES,
        out,
        length=300,
        stride=150,
        fractions=(0.5, 0.25, 0.25),
        holdout="none",
        balance="none",
        background=2.0,
        seed=11,
    )
    test = [r for r, s in zip(result.records, result.assignment, strict=True) if s == "test"]
    return {s: dataset.read_split(p) for s, p in out.items()}, test


def test_background_class_rejects_shuffled_and_random_sequences(motif_splits):
    """k-mer baseline (5-mers see the motifs) with the background class: in-class test records
    keep their class, dinucleotide shuffles and random sequences are called unclassified."""
    splits, test = motif_splits
    assert splits["train"].class_names == ("alpha", "beta", "background")
    assert (splits["test"].labels < 2).all()  # the test split stays in-class
    engine = evaluation.KmerEngine(splits["train"], 5)
    names = list(splits["train"].class_names)
    options = classify.ClassifyOptions(openset=openset.OpenSetRule(2, background=True))
    ood = openset.ood_records(test, 30, seed=5)
    rows = list(
        classify.classify_records(((r.id, "", r.sequence) for r in ood), engine, names, options)
    )
    cats = [dataset.tokens(r.description)["category"] for r in ood]
    rejected = {
        c: np.mean(
            [r["predicted"] == "unclassified" for r, k in zip(rows, cats, strict=True) if k == c]
        )
        for c in ("shuffled", "random")
    }
    assert rejected["shuffled"] >= 0.9 and rejected["random"] >= 0.9, rejected
    kept = list(
        classify.classify_records(((r.id, "", r.sequence) for r in test), engine, names, options)
    )
    correct = np.mean([r["predicted"] == t.label for r, t in zip(kept, test, strict=True)])
    assert correct >= 0.9


def test_evaluation_compares_strategies_and_calibrates_on_validation(motif_splits, tmp_path):
    splits, test = motif_splits
    engine = evaluation.KmerEngine(splits["train"], 5)
    names = list(splits["train"].class_names)
    rule = openset.OpenSetRule(2, background=True, min_length=50)
    options = classify.ClassifyOptions(openset=rule)
    pieces = {
        "val": evaluation.split_pieces(splits["val"], 2, [100], 2, 0, "val"),
        "test": evaluation.split_pieces(splits["test"], 2, [100], 2, 0, "test"),
        # as rule viral_split writes them and viral_assess reads them
        "ood": evaluation.ood_pieces(
            write_fasta(openset.ood_records(test, 10, seed=5), tmp_path / "ood.fasta")
        ),
    }
    rows = {k: evaluation.score_pieces(engine, p, names, options) for k, p in pieces.items()}
    result = evaluation.assess(
        rows["val"],
        pieces["val"],
        rows["test"],
        pieces["test"],
        rows["ood"],
        pieces["ood"],
        CLASSES,
        background=True,
        score="msp",
        fpr=0.05,
    )
    names_ = [s["strategy"] for s in result["strategies"]]
    assert names_[0] == "background" and "threshold:energy" in names_ and "background+msp" in names_
    h = result["headline"]
    assert h["strategy"] == "background+msp" and result["threshold"] == result["thresholds"]["msp"]
    # the threshold lets at most 5 % of the in-class full-length validation records fall below it
    val_full = [
        r["_scores"]["msp"]
        for r, p in zip(rows["val"], pieces["val"], strict=True)
        if p.group == "full"
    ]
    assert np.mean(np.array(val_full) < result["threshold"]) <= 0.05
    assert h["full_n"] == splits["test"].n_records and h["100_n"] > 0
    assert h["full_open_accuracy"] <= h["full_accuracy"]  # unclassified counts as wrong
    assert set(result["categories"]) == set(openset.CATEGORIES)
    # thresholds alone never reject more than background + the same threshold
    by = {s["strategy"]: s for s in result["strategies"]}
    assert by["threshold:msp"]["reject_all"] <= by["background+msp"]["reject_all"]


def test_cnn_with_background_class_rejects_shuffled_and_random_sequences(motif_splits):
    """The same with a small global-head ViralCNN trained on the splits (seeded)."""
    import torch

    from quantscan.models import build_model
    from quantscan.train import TrainConfig, fit

    splits, test = motif_splits
    torch.manual_seed(0)
    arch = {
        "name": "viralcnn",
        "n_classes": 3,
        "length": 300,
        "dropout": 0.0,
        "channels": [32, 16, 16, 16],
        "kernels": [12, 8, 8, 8],
        "head": "global",
    }
    model = build_model(arch)
    tr, va = splits["train"], splits["val"]
    cfg = TrainConfig(epochs=12, batch_size=16, patience=12, recalibrate_bn=True)
    fit(model, tr.onehot(), tr.window_labels, va.onehot(), va.window_labels, cfg, seed=1)
    engine = classify.TorchEngine(model, arch)
    names = list(tr.class_names)
    options = classify.ClassifyOptions(openset=openset.OpenSetRule(2, background=True))
    ood = openset.ood_records(test, 30, seed=5)
    rows = list(
        classify.classify_records(((r.id, "", r.sequence) for r in ood), engine, names, options)
    )
    cats = [dataset.tokens(r.description)["category"] for r in ood]
    for cat in ("shuffled", "random"):
        got = [
            r["predicted"] == "unclassified" for r, k in zip(rows, cats, strict=True) if k == cat
        ]
        assert np.mean(got) >= 0.8, (cat, np.mean(got))
    kept = list(
        classify.classify_records(((r.id, "", r.sequence) for r in test), engine, names, options)
    )
    assert np.mean([r["predicted"] == t.label for r, t in zip(kept, test, strict=True)]) >= 0.75
