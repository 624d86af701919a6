"""Classifying FASTA files: flagged rows for bad records, windows combined, engines, evaluation."""

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from quantscan import modelio
from quantscan.apps.viral import classify, dataset, onehot
from quantscan.errors import ConfigError, InputFormatError
from quantscan.models import build_model

ROOT = Path(__file__).resolve().parents[4]
ODD = ROOT / "resources" / "viral" / "odd_records.fasta"
NAMES = ["A_rich", "C_rich", "G_rich", "T_rich"]


class CompositionEngine:
    """A stand-in model: softmax of each window's A, C, G, T counts (deterministic, depends on
    the window's content), and a record of every batch it was given."""

    def __init__(self, length=200):
        self.length = length
        self.n_classes = 4
        self.batches = []

    def predict_proba(self, x):
        assert x.dtype == np.uint8 and x.shape[1:] == (5, self.length)
        self.batches.append(len(x))
        z = x[:, :4].sum(axis=2).astype(float) / 20.0
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


def read_tsv(path):
    return pd.read_csv(path, sep="\t", keep_default_na=False, dtype={"id": str, "label": str})


def test_odd_records_give_rows_and_flags_never_a_crash(tmp_path):
    engine = CompositionEngine(length=1000)
    out = tmp_path / "odd.tsv"
    summary = classify.classify_fasta(ODD, out, engine, NAMES, classify.ClassifyOptions(stride=500))
    table = read_tsv(out)
    assert list(table.columns) == classify.columns(NAMES)
    expected = {
        "lowercase_record": "ok",
        "n_run_150": "n_run",
        "iupac_sparse": "ok",
        "iupac_dense": "ambiguous",
        "empty_record": "empty",
        "long_4200": "ok",
        "gapped_alignment": "invalid_char",
        "#8": "missing_id",
        "rna_record": "ok",
        "short_25": "ok",
        "digits_genbank": "invalid_char",
    }
    got = {}
    for rid, status in zip(table.id, table.status, strict=True):
        got.setdefault(rid, status)  # the first of the repeated id
    assert {k: got[k] for k in expected} == expected
    # one row per record, in input order; the repeated id is classified and flagged
    assert len(table) == 12 and table.id.tolist()[0] == "lowercase_record"
    dup = table.iloc[8]
    assert (dup.id, dup.status, dup.windows) == ("lowercase_record", "duplicate_id", 1)
    # records that are not scored: unclassified, with the reason (the dense IUPAC record and
    # the 150-N run in 700 bp are both over the 10 % ambiguity limit: too many N)
    no_pred = table[table.windows == 0]
    assert (no_pred.predicted == "unclassified").all() and (no_pred.p_A_rich == "NA").all()
    reasons = dict(zip(no_pred.id, no_pred.reason, strict=True))
    assert reasons == {
        "n_run_150": "too_many_n",
        "iupac_dense": "too_many_n",
        "empty_record": "empty",
        "gapped_alignment": "invalid_char",
        "#8": "missing_id",
        "digits_genbank": "invalid_char",
    }
    assert "position 101" in table.set_index("id").loc["gapped_alignment", "detail"]
    # without an open-set rule every scored record gets a class (closed set)
    pred = table[table.windows > 0]
    assert set(pred.predicted) <= set(NAMES) and (pred.reason == "").all()
    assert (pred.predicted == pred.best_class).all()
    probs = pred[[f"p_{c}" for c in NAMES]].astype(float).to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(pred.score.astype(float), probs.max(axis=1), atol=1e-6)  # msp
    long = table.set_index("id").loc["long_4200"]
    assert long.length == 4200 and long.windows == len(onehot.window_starts(4200, 1000, 500)) == 8
    assert summary.records == 12 and summary.scored == 6 and summary.classified == 6
    assert summary.unclassified == 6 and summary.flagged == 7 and summary.windows == 13
    assert summary.bases == int(pred.length.sum())
    assert summary.gbp_per_hour == pytest.approx(summary.bases / 1e9 / (summary.seconds / 3600))


def test_windows_combined_as_mean_and_max(tmp_path):
    rng = np.random.default_rng(0)
    # a record that is A-rich at the start and T-rich at the end
    seqs = {
        "mixed": "A" * 300 + "".join(rng.choice(list("ACGT"), 200)) + "T" * 100,
        "short": "GGGCCC",
        "exact": "C" * 200,
    }
    fasta = tmp_path / "in.fa"
    fasta.write_text("".join(f">{k}\n{v}\n" for k, v in seqs.items()))
    engine = CompositionEngine(length=200)
    wins = onehot.encode_windows(list(seqs.values()), 200, 50)
    per_window = engine.predict_proba(wins.x)
    for how in ("mean", "max"):
        out = tmp_path / f"{how}.tsv"
        classify.classify_fasta(
            fasta, out, engine, NAMES, classify.ClassifyOptions(stride=50, combine=how)
        )
        table = read_tsv(out)
        expect = onehot.combine_windows(per_window, wins.record, 3, how)
        expect = expect / expect.sum(axis=1, keepdims=True)
        np.testing.assert_allclose(table[[f"p_{c}" for c in NAMES]], expect, atol=2e-6)
        assert table.windows.tolist() == wins.counts.tolist() == [9, 1, 1]
        assert table.predicted.tolist()[1:] == ["C_rich", "C_rich"]  # ties go to the first class


def test_batching_does_not_change_results(tmp_path):
    rng = np.random.default_rng(1)
    fasta = tmp_path / "in.fa.gz"  # gzip is read too (detected by its magic bytes)
    with gzip.open(fasta, "wt") as fh:
        for i in range(30):
            fh.write(
                f">r{i} class=x\n{''.join(rng.choice(list('ACGT'), int(rng.integers(1, 700))))}\n"
            )
    tables = []
    for batch in (1, 7, 1000):
        engine = CompositionEngine()
        out = tmp_path / f"b{batch}.tsv"
        classify.classify_fasta(
            fasta, out, engine, NAMES, classify.ClassifyOptions(batch_windows=batch)
        )
        assert max(engine.batches) <= batch
        tables.append(read_tsv(out))
    pd.testing.assert_frame_equal(tables[0], tables[1])
    pd.testing.assert_frame_equal(tables[0], tables[2])
    assert (tables[0].label == "x").all()


@pytest.mark.parametrize(
    "content, message",
    [
        ("just some text\n>r1\nACGT\n", "not FASTA: the first line is 'just some text'"),
        ("\n\n", "no FASTA records"),
        ("", "no FASTA records"),
    ],
)
def test_not_fasta_is_a_clear_error_and_writes_nothing(tmp_path, content, message):
    bad = tmp_path / "bad.txt"
    bad.write_text(content)
    out = tmp_path / "out.tsv"
    with pytest.raises(InputFormatError, match=f"bad.txt: {message}"):
        classify.classify_fasta(bad, out, CompositionEngine(), NAMES)
    assert not out.exists() and not list(tmp_path.glob(".*tmp*"))
    with pytest.raises(InputFormatError, match="missing.fa: FASTA file not found"):
        classify.classify_fasta(tmp_path / "missing.fa", out, CompositionEngine(), NAMES)


def test_binary_garbage_inside_a_record_is_flagged(tmp_path):
    fasta = tmp_path / "bin.fa"
    fasta.write_bytes(b">ok\nACGT\n>junk\nAC\xff\xfeGT\n>ok2\nGGCC\n")
    out = tmp_path / "out.tsv"
    classify.classify_fasta(fasta, out, CompositionEngine(), NAMES)
    table = read_tsv(out)
    assert table.status.tolist() == ["ok", "invalid_char", "ok"]


def test_class_count_and_options_are_checked():
    with pytest.raises(ConfigError, match="4 outputs but 3 class names"):
        list(classify.classify_records([("r", "", "ACGT")], CompositionEngine(), NAMES[:3]))
    with pytest.raises(ConfigError, match="mean"):
        classify.ClassifyOptions(combine="median")
    with pytest.raises(ConfigError, match="stride must be in 1..200"):
        list(
            classify.classify_records(
                [("r", "", "ACGT")],
                CompositionEngine(),
                NAMES,
                classify.ClassifyOptions(stride=500),
            )
        )


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    arch = {"name": "viralcnn", "n_classes": 4, "length": 64}
    model = build_model(arch).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    modelio.save_fp32(model, arch, d / "model.pt")
    return model, arch, d


def test_engines_from_model_files_agree(tiny_model):
    from quantscan.export import onnx as int8
    from quantscan.export.packed import save_packed

    model, arch, d = tiny_model
    save_packed(model, d / "model.qspk", arch)
    x = onehot.encode(["ACGT" * 16, "GATTACA" * 5, "N" * 10], 64)
    int8.export_onnx(model, x[:1].astype(np.float32), d / "model.onnx")
    fp32 = classify.load_engine(d / "model.pt")
    assert (fp32.kind, fp32.length, fp32.n_classes) == ("torch-fp32", 64, 4)
    reference = fp32.predict_proba(x)
    for name, kind in (("model.qspk", "torch-packed"), ("model.onnx", "onnx")):
        engine = classify.load_engine(d / name)
        assert (engine.kind, engine.length, engine.n_classes) == (kind, 64, 4)
        np.testing.assert_allclose(engine.predict_proba(x), reference, atol=1e-5)
    with pytest.raises(InputFormatError, match="nothere.pt: model file not found"):
        classify.load_engine(d / "nothere.pt")


def test_model_engines_run_through_the_runtime(tiny_model):
    """Torch and ONNX models run as runtime engines: logits of the model itself, float64;
    windows of another length are refused naming both lengths."""
    from quantscan import runtime
    from quantscan.export import onnx as int8

    model, arch, d = tiny_model
    x = onehot.encode(["ACGT" * 16, "GATTACA" * 5, "N" * 10], 64)
    int8.export_onnx(model, x[:1].astype(np.float32), d / "runtime.onnx")
    fp32 = classify.load_engine(d / "model.pt")
    onnx = classify.load_engine(d / "runtime.onnx")
    assert isinstance(fp32.engine, runtime.TorchEngine)
    assert isinstance(onnx.engine, runtime.OnnxEngine)
    with torch.no_grad():
        ref = model(torch.from_numpy(x).float()).numpy()
    np.testing.assert_array_equal(fp32.predict_logits(x), ref.astype(np.float64))
    np.testing.assert_allclose(onnx.predict_logits(x), ref, atol=1e-5)
    for engine in (fp32, onnx):
        with pytest.raises(runtime.InputShapeError, match="takes 5 x 64 inputs .* got 5 x 32"):
            engine.predict_proba(x[:, :, :32])


def test_evaluate_split_windows_and_records(tmp_path):
    # three records of 'A', one long C-rich record cut into windows; perfect engine on windows
    seqs = ["A" * 100, "A" * 150, "A" * 80, "C" * 450]
    labels = [0, 0, 0, 1]
    dataset.save_onehot(tmp_path / "t.npz", seqs, labels, NAMES, length=200, stride=100)
    m = classify.evaluate_split(CompositionEngine(), tmp_path / "t.npz")
    assert m["n_records"] == 4 and m["n"] == 3 + len(onehot.window_starts(450, 200, 100))
    assert m["accuracy"] == 1.0 and m["record_accuracy"] == 1.0
    assert m["confusion_matrix"]["rows_true_cols_pred"][1][1] == m["n"] - 3
    with pytest.raises(ConfigError, match="differ"):
        classify.evaluate_split(CompositionEngine(), tmp_path / "t.npz", ["x", "y", "z", "w"])
