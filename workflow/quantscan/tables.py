"""Reading the workflow's own TSV tables back, with errors that name the file and what is wrong."""

from __future__ import annotations

import os
from collections.abc import Sequence

import pandas as pd

from .errors import InputFormatError


def read_tsv(
    path: str | os.PathLike, required: Sequence[str], what: str, **read_csv_kwargs
) -> pd.DataFrame:
    """``path`` as a DataFrame; an unreadable file or a missing ``required`` column raises
    ``InputFormatError`` naming the file and the ``what`` (e.g. "score table")."""
    try:
        table = pd.read_csv(path, sep="\t", **read_csv_kwargs)
    except (OSError, ValueError) as err:  # pandas' ParserError and EmptyDataError are ValueErrors
        raise InputFormatError(f"{path}: unreadable {what} ({err})") from err
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise InputFormatError(f"{path}: {what} lacks column(s) {', '.join(missing)}")
    return table
