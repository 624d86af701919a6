"""FASTA reading and validation: normalisation, flagged records, clear errors, atomic writing."""

import gzip
from pathlib import Path

import pytest

from quantscan.apps.viral import fasta
from quantscan.errors import ConfigError, InputFormatError

DATA = Path(__file__).resolve().parents[3] / "data" / "fasta"


def test_good_file_is_normalised():
    recs = fasta.read_fasta(DATA / "good.fasta", label="x")
    assert [r.id for r in recs] == ["seq1", "seq2", "seq3"]
    assert all(r.ok and r.label == "x" for r in recs)
    assert recs[0].sequence == "ACGTACGTACACGTNNACGT"  # lines joined, upper-cased
    assert recs[0].description == "first record"  # the id is not repeated
    assert recs[1].sequence == "ACGTTGCA"  # U -> T
    assert recs[2].sequence.endswith("ACGTRYKMSWBDHVN")  # IUPAC codes kept (the N channel later)
    assert recs[0].source == str(DATA / "good.fasta")


def test_bad_records_are_flagged_with_position():
    rules = fasta.ValidationRules(max_n_run=10)
    recs = fasta.read_fasta(DATA / "flagged.fasta", rules=rules)
    assert [(r.id, r.status) for r in recs] == [
        ("ok1", fasta.OK),
        ("bad_char", fasta.INVALID_CHAR),
        ("empty_rec", fasta.EMPTY),
        ("n_run", fasta.N_RUN),
        ("digits", fasta.INVALID_CHAR),
        ("ok1", fasta.DUPLICATE_ID),  # kept, but flagged
    ]
    assert recs[1].detail == "invalid character 'X' at position 7"
    assert "run of 12 N at positions 101-112 (limit 10)" in recs[3].detail
    assert "'1' at position 1" in recs[4].detail  # GenBank-style numbering is not sequence
    assert [r.id for r in fasta.only_ok(recs)] == ["ok1"]


def test_raise_names_file_record_and_character():
    with pytest.raises(InputFormatError) as info:
        fasta.read_fasta(DATA / "flagged.fasta", on_invalid="raise")
    msg = str(info.value)
    assert (
        "flagged.fasta: record 'bad_char': invalid_char: invalid character 'X' at position 7" in msg
    )
    assert "record 'empty_rec': empty" in msg
    # the N run (12) is within the default limit of 100: not reported
    assert "'n_run'" not in msg


def test_not_fasta_and_missing_files():
    with pytest.raises(InputFormatError, match="not_fasta.txt: not a readable FASTA file"):
        fasta.read_fasta(DATA / "not_fasta.txt")
    with pytest.raises(InputFormatError, match="not found"):
        fasta.read_fasta(DATA / "nope.fasta")
    with pytest.raises(ConfigError):
        fasta.read_fasta(DATA / "good.fasta", on_invalid="ignore")


def test_binary_garbage_is_a_flag_not_a_crash(tmp_path):
    path = tmp_path / "bin.fasta"
    path.write_bytes(b">r1\nACGT\xff\xfeACGT\n>r2\nACGT\n")
    recs = fasta.read_fasta(path)
    assert recs[0].status == fasta.INVALID_CHAR and "position 5" in recs[0].detail
    assert recs[1].ok


def test_ambiguous_fraction_and_length_rules():
    seq, status, detail = fasta.check_sequence("ACGTRYRYRY", fasta.ValidationRules())
    assert status == fasta.AMBIGUOUS_FRACTION and "6 of 10" in detail
    rules = fasta.ValidationRules(max_ambiguous_fraction=None, min_length=20)
    assert fasta.check_sequence("ACGTRYRYRY", rules)[1] == fasta.LENGTH
    assert fasta.check_sequence("acgt", fasta.ValidationRules(max_length=4)) == ("ACGT", "ok", "")
    with pytest.raises(ConfigError):
        fasta.ValidationRules(min_length=10, max_length=5)


def test_class_files_and_duplicates_across_files(tmp_path):
    recs = fasta.read_class_fastas(
        {"A": DATA / "class_a.fasta", "B": [DATA / "class_b.fasta", DATA / "class_a.fasta"]}
    )
    assert [(r.id, r.label) for r in recs][:3] == [
        ("alpha_1", "A"),
        ("alpha_2", "A"),
        ("beta_1", "B"),
    ]
    # class_a.fasta read twice: its ids repeat across classes and are flagged
    assert [r.status for r in recs[3:]] == [fasta.DUPLICATE_ID] * 2
    with pytest.raises(InputFormatError, match="alpha_1.*duplicate_id"):
        fasta.read_class_fastas(
            {"A": DATA / "class_a.fasta", "B": DATA / "class_a.fasta"}, on_invalid="raise"
        )


def test_write_round_trip_with_labels_and_gzip(tmp_path):
    recs = fasta.read_class_fastas({"A": DATA / "class_a.fasta", "B": DATA / "class_b.fasta"})
    for name in ("out.fasta", "out.fasta.gz"):
        path = fasta.write_fasta(recs, tmp_path / name, line_width=5)
        back = [fasta.parse_label(r) for r in fasta.read_fasta(path)]
        assert [(r.id, r.label, r.sequence) for r in back] == [
            (r.id, r.label, r.sequence) for r in recs
        ]
    with gzip.open(tmp_path / "out.fasta.gz", "rt") as fh:
        assert fh.readline() == ">alpha_1 class=A\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "out.fasta",
        "out.fasta.gz",
    ]  # no temp files


def test_empty_file_is_an_error(tmp_path):
    path = tmp_path / "empty.fasta"
    path.write_text("")
    with pytest.raises(InputFormatError, match="empty.fasta: no FASTA records"):
        fasta.read_fasta(path)
