"""The open-set Mahalanobis detector (Lee et al. 2018) on k-mer frequencies: the distances, the
rejection of shuffled and random toys while in-class toys are kept, the calibration at the stated
FPR, and the detector in classification, the evaluation and the config."""

import copy
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from quantscan import config as qconfig
from quantscan.apps.viral import classify, dataset, evaluation, openset
from quantscan.apps.viral.fasta import Record, write_fasta
from quantscan.errors import ConfigError

ROOT = Path(__file__).resolve().parents[4]
CLASSES = ["alpha", "beta"]
#: each toy class is a random string of its own "codons": its 3-mer frequencies are its own,
#: a dinucleotide shuffle keeps its 2-mers but not its 3-mers, random sequence has neither
CODONS = {
    "alpha": ["GAT", "TAC", "CAG", "GCT", "AAG", "TTC"],
    "beta": ["CCG", "TTA", "ACG", "GGA", "ATC", "TGC"],
}


def codon_records(rng, cls: str, n: int, length: int = 300) -> list[str]:
    codons = CODONS[cls]
    return ["".join(rng.choice(codons, length // 3)) for _ in range(n)]


def detector_for(rng, k=3, n=80):
    seqs = [s for c in CLASSES for s in codon_records(rng, c, n)]
    labels = np.repeat(np.arange(2), n)
    return openset.MahalanobisDetector(k, 0.1).fit_sequences(seqs, labels, 2)


def test_distances_are_the_mahalanobis_distances_of_the_pooled_covariance():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3)) + np.repeat([[0, 0, 0], [3, 0, 0]], 30, axis=0)
    labels = np.repeat([0, 1], 30)
    # background rows (label 2 of 2 target classes) are left out of the fit
    extra = rng.normal(size=(10, 3)) * 50
    det = openset.MahalanobisDetector(k=1, ridge=0.01).fit(
        np.vstack([x, extra]), np.concatenate([labels, np.full(10, 2)]), 2
    )
    means = np.stack([x[:30].mean(0), x[30:].mean(0)])
    centred = x - means[labels]
    cov = centred.T @ centred / 60
    cov += 0.01 * np.trace(cov) / 3 * np.eye(3)
    p = np.linalg.inv(cov)
    q = rng.normal(size=(5, 3))
    want = np.stack([np.einsum("if,fg,ig->i", q - m, p, q - m) for m in means], axis=1)
    np.testing.assert_allclose(det.distances(q), want, rtol=1e-10)
    np.testing.assert_allclose(det.score(q), -want.min(axis=1))
    assert det.score(means).max() == pytest.approx(0.0, abs=1e-12)  # a class mean is in-class
    with pytest.raises(ConfigError, match="not fitted"):
        openset.MahalanobisDetector().score(q)
    with pytest.raises(ConfigError, match="k must be in"):
        openset.MahalanobisDetector(k=0)
    with pytest.raises(ConfigError, match="ridge must be"):
        openset.MahalanobisDetector(ridge=0.0)
    with pytest.raises(ConfigError, match="in-class training records"):
        openset.MahalanobisDetector().fit(x, np.full(60, 5), 2)


def test_mahalanobis_rejects_shuffled_and_random_toys_and_keeps_in_class_ones():
    rng = np.random.default_rng(1)
    det = detector_for(rng)
    val = [s for c in CLASSES for s in codon_records(rng, c, 50)]
    threshold = openset.calibrate(det.score_sequences(val), 0.02)
    test = [s for c in CLASSES for s in codon_records(rng, c, 50)]
    kept = np.mean(det.score_sequences(test) >= threshold)
    assert kept >= 0.95, kept
    recs = [Record(f"t{i}", s, "alpha") for i, s in enumerate(test)]
    ood = {c: openset.generate(c, 40, recs, seed=2, key="ood") for c in ("shuffled", "random")}
    for cat, seqs in ood.items():
        rejected = np.mean(det.score_sequences(seqs) < threshold)
        assert rejected >= 0.95, (cat, rejected)
    # 2-mer frequencies do not see a dinucleotide shuffle
    det2 = detector_for(np.random.default_rng(1), k=2)
    t2 = openset.calibrate(det2.score_sequences(val), 0.02)
    assert np.mean(det2.score_sequences(ood["shuffled"]) < t2) < 0.5


def test_calibration_reaches_the_stated_fpr():
    rng = np.random.default_rng(3)
    det = detector_for(rng)
    for fpr in (0.02, 0.05, 0.1):
        val = det.score_sequences([s for c in CLASSES for s in codon_records(rng, c, 100)])
        t = openset.calibrate(val, fpr)
        # on the calibration records: at most fpr below, just above fpr at or below
        assert np.mean(val < t) <= fpr < np.mean(val <= t)
        # on fresh in-class records of the same classes: close to fpr
        fresh = det.score_sequences([s for c in CLASSES for s in codon_records(rng, c, 200)])
        assert np.mean(fresh < t) <= fpr + 0.04, (fpr, np.mean(fresh < t))


class CodonEngine:
    """A record-level toy engine: logits from the share of each class's codons."""

    length = None
    kind = "toy"
    n_classes = 3  # alpha, beta, background

    def predict_record_logits(self, seqs):
        out = []
        for s in seqs:
            trip = [s[i : i + 3] for i in range(0, len(s) - 2, 3)]
            a = np.mean([t in CODONS["alpha"] for t in trip])
            b = np.mean([t in CODONS["beta"] for t in trip])
            out.append([5 * a, 5 * b, 1.0])
        return np.array(out)


def test_classify_and_assess_use_the_detector(tmp_path):
    rng = np.random.default_rng(4)
    records = [
        Record(f"{c}_{i}", s, c, f"taxon={c}{i % 6}")
        for c in CLASSES
        for i, s in enumerate(codon_records(rng, c, 60))
    ]
    out = {s: tmp_path / f"{s}.npz" for s in ("train", "val", "test")}
    result = dataset.build_splits(
        records,
        CLASSES,
        out,
        length=300,
        stride=150,
        fractions=(0.5, 0.25, 0.25),
        holdout="none",
        balance="none",
        background=1.0,
        seed=11,
    )
    splits = {s: dataset.read_split(p) for s, p in out.items()}
    test = [r for r, s in zip(result.records, result.assignment, strict=True) if s == "test"]
    det = evaluation.mahalanobis_detector(splits["train"], 2, {"k": 3, "ridge": 0.1})
    assert evaluation.mahalanobis_detector(splits["train"], 2, None) is None
    names = list(splits["train"].class_names)
    engine = CodonEngine()
    ood = openset.ood_records(test, 10, seed=5)
    # a threshold on the mahalanobis score: the shuffled records fall below it
    rule = openset.OpenSetRule(2, background=True, score="mahalanobis", threshold=-1e9)
    with pytest.raises(ConfigError, match="needs a fitted Mahalanobis detector"):
        list(
            classify.classify_records(
                [("a", "", "ACGT" * 50)], engine, names, classify.ClassifyOptions(openset=rule)
            )
        )
    options = classify.ClassifyOptions(
        openset=openset.OpenSetRule(2, background=True), detector=det
    )
    pieces = {
        "val": evaluation.split_pieces(splits["val"], 2, [150], 2, 0, "val"),
        "test": evaluation.split_pieces(splits["test"], 2, [150], 2, 0, "test"),
        # as rule viral_split writes them and viral_assess reads them
        "ood": evaluation.ood_pieces(write_fasta(ood, tmp_path / "ood.fasta")),
    }
    rows = {k: evaluation.score_pieces(engine, p, names, options) for k, p in pieces.items()}
    assert all("mahalanobis" in r["_scores"] for r in rows["test"])
    ev = evaluation.assess(
        rows["val"],
        pieces["val"],
        rows["test"],
        pieces["test"],
        rows["ood"],
        pieces["ood"],
        CLASSES,
        background=True,
        score="mahalanobis",
        fpr=0.05,
    )
    by = {s["strategy"]: s for s in ev["strategies"]}
    assert {"threshold:mahalanobis", "background+mahalanobis", "background+msp"} <= set(by)
    assert ev["headline"]["strategy"] == "background+mahalanobis"
    assert ev["threshold"] == ev["thresholds"]["mahalanobis"]
    assert by["threshold:mahalanobis"]["reject_shuffled"] >= 0.9
    assert by["threshold:mahalanobis"]["full_open_accuracy"] >= 0.9
    # without a detector the mahalanobis strategies are absent, and asking for one is an error
    plain = classify.ClassifyOptions(openset=openset.OpenSetRule(2, background=True))
    rows = {k: evaluation.score_pieces(engine, p, names, plain) for k, p in pieces.items()}
    args = (rows["val"], pieces["val"], rows["test"], pieces["test"], rows["ood"], pieces["ood"])
    ev = evaluation.assess(*args, CLASSES, background=True, score="msp", fpr=0.05)
    assert not any("mahalanobis" in s["strategy"] for s in ev["strategies"])
    with pytest.raises(ConfigError, match="was not computed"):
        evaluation.assess(*args, CLASSES, background=True, score="mahalanobis", fpr=0.05)


def test_config_keys_of_the_detector():
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    viral = qconfig.validate(copy.deepcopy(cfg))["apps"]["viral"]
    assert viral["scan"]["openset"]["mahalanobis"] == {"k": 3, "ridge": 0.1}
    cfg["apps"]["viral"]["scan"]["openset"].update(score="mahalanobis", mahalanobis=None)
    with pytest.raises(ConfigError, match="apps.viral.scan.openset.score: 'mahalanobis' needs"):
        dataset.check_config(qconfig.validate(copy.deepcopy(cfg))["apps"]["viral"])
    cfg["apps"]["viral"]["scan"]["openset"]["mahalanobis"] = {"k": 4}
    osc = qconfig.validate(cfg)["apps"]["viral"]["scan"]["openset"]
    dataset.check_config(qconfig.validate(cfg)["apps"]["viral"])
    # a missing key takes the detector's default
    rng = np.random.default_rng(0)
    seqs = [s for c in CLASSES for s in codon_records(rng, c, 8)]
    codes = np.concatenate([np.array([b"ACGT".index(ch) for ch in s.encode()]) for s in seqs])
    offsets = np.concatenate(([0], np.cumsum([len(s) for s in seqs])))
    split = SimpleNamespace(codes=codes, offsets=offsets, labels=np.repeat([0, 1], 8))
    det = evaluation.mahalanobis_detector(split, 2, osc["mahalanobis"])
    assert (det.k, det.ridge) == (4, 0.1) and det.means.shape == (2, 256)
