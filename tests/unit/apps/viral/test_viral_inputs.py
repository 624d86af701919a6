"""Classify inputs: FASTA and FASTQ, plain or gzip; lower case, U and IUPAC codes; every bad input
gives a named error or a named reason."""

import gzip

import numpy as np
import pandas as pd
import pytest

from quantscan.apps.viral import classify, openset
from quantscan.errors import InputFormatError

NAMES = ["A_rich", "C_rich", "G_rich", "T_rich"]


class CompositionEngine:
    length = 200
    n_classes = 4

    def predict_proba(self, x):
        z = x[:, :4].sum(axis=2).astype(float) / 20.0
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


def read(path):
    return pd.read_csv(path, sep="\t", keep_default_na=False, dtype=str)


FASTQ = "@r1 class=A_rich\nAAAAACCA\n+\nIIIIIIII\n@r2\nccccuGCC\n+r2\nIIIIIIII\n"


@pytest.mark.parametrize("gz", [False, True])
def test_fastq_plain_and_gzip_classify_like_fasta(tmp_path, gz):
    fq = tmp_path / ("in.fq.gz" if gz else "in.fq")
    if gz:
        with gzip.open(fq, "wt") as fh:
            fh.write(FASTQ)
    else:
        fq.write_text(FASTQ)
    fa = tmp_path / "in.fa"
    fa.write_text(">r1 class=A_rich\nAAAAACCA\n>r2\nccccuGCC\n")
    assert classify.sniff_format(fq) == "fastq" and classify.sniff_format(fa) == "fasta"
    assert list(classify.iter_records(fq)) == list(classify.iter_records(fa))
    out_q, out_a = tmp_path / "q.tsv", tmp_path / "a.tsv"
    classify.classify_fasta(fq, out_q, CompositionEngine(), NAMES)
    classify.classify_fasta(fa, out_a, CompositionEngine(), NAMES)
    pd.testing.assert_frame_equal(read(out_q), read(out_a))
    # lower case and U (RNA) are read as upper-case DNA: r2 is C-rich
    assert read(out_q).predicted.tolist() == ["A_rich", "C_rich"]
    assert read(out_q).label.tolist() == ["A_rich", ""]


def test_lower_case_u_and_iupac_codes_are_read_as_documented():
    seq, status, _ = classify.check_sequence("acgu" * 10 + "nRYk")
    assert (seq, status) == ("ACGT" * 10 + "NRYK", "ok")  # 4 of 44 ambiguous: under 10 %
    assert classify.check_sequence("acgunRYk")[1] == "ambiguous"  # half of them: flagged
    # ambiguity codes go to the N channel of the one-hot input
    x = classify.encode(["ACGTNRYK"], 8)
    assert x[0, 4].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]


@pytest.mark.parametrize(
    "content, message",
    [
        (
            "@r1\nACGTACGTAC\n+\nIIIIIIII\n",
            r"FASTQ record 1 \('r1'\): field 'quality' has 8 characters but the sequence has 10",
        ),
        (
            "@r1\nACGT\n+\nIIII\n@r2\nACGTA\n+\nIIII\n",
            r"FASTQ record 2 \('r2'\): field 'quality' has 4",
        ),
        ("@r1\nACGT\n+\n", r"FASTQ record 1"),
        ("", "no FASTA records"),
        ("\n\n  \n", "no FASTA records"),
        ("ACGT\n", "not FASTA: the first line is 'ACGT'"),
    ],
)
def test_bad_files_are_named_errors_and_write_nothing(tmp_path, content, message):
    bad = tmp_path / "bad.fq"
    bad.write_text(content)
    out = tmp_path / "out.tsv"
    with pytest.raises(InputFormatError, match=f"bad.fq: {message}"):
        classify.classify_fasta(bad, out, CompositionEngine(), NAMES)
    assert not out.exists()


def test_all_n_empty_and_short_records_are_unclassified_with_their_reason(tmp_path):
    fa = tmp_path / "in.fa"
    fa.write_text(
        ">alln\n"
        + "N" * 300
        + "\n>empty\n>short\nACGTACGT\n>mostly_n\n"
        + "N" * 40
        + "ACGT" * 20
        + "\n>ok\n"
        + "A" * 150
        + "\n"
    )
    rule = openset.OpenSetRule(4, min_length=50)
    out = tmp_path / "out.tsv"
    s = classify.classify_fasta(
        fa, out, CompositionEngine(), NAMES, classify.ClassifyOptions(openset=rule)
    )
    t = read(out).set_index("id")
    assert t.loc["alln", ["predicted", "reason"]].tolist() == ["unclassified", "too_many_n"]
    assert "ambiguous" in t.loc["alln", "detail"] or "N" in t.loc["alln", "detail"]
    assert t.loc["empty", ["predicted", "reason"]].tolist() == ["unclassified", "empty"]
    assert t.loc["short", ["reason", "detail"]].tolist() == ["too_short", "length 8 < minimum 50"]
    assert t.loc["mostly_n", "reason"] == "too_many_n"  # 40 of 120 bases: over the 10 % limit
    assert t.loc["ok", ["predicted", "reason", "windows"]].tolist() == ["A_rich", "", "1"]
    assert (s.records, s.scored, s.classified, s.unclassified) == (5, 1, 1, 4)
