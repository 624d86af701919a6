import math

import pytest

from quantscan.errors import InputFormatError
from quantscan.tables import read_tsv


def test_reads_a_table_with_its_columns(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text("a\tb\n1\tNA\n")
    table = read_tsv(path, ["a", "b"], "test table", na_values=["NA"], keep_default_na=False)
    assert table.a.tolist() == [1] and math.isnan(table.b[0])


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "t.tsv: unreadable test table"),
        ("a\n1\n", "t.tsv: test table lacks column\\(s\\) b"),
        ('a\tb\n"1\t2\n', "t.tsv: unreadable test table"),
    ],
)
def test_bad_tables_name_the_file_and_what_is_wrong(tmp_path, text, message):
    path = tmp_path / "t.tsv"
    path.write_text(text)
    with pytest.raises(InputFormatError, match=message):
        read_tsv(path, ["a", "b"], "test table")


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(InputFormatError, match="nope.tsv: unreadable test table"):
        read_tsv(tmp_path / "nope.tsv", ["a"], "test table")
