"""bgzip (BGZF) and tabix: whether a VCF can be sliced through its .tbi/.csi index (BGZF, not plain
gzip; an index file; pysam importable), the contigs the index lists and a contig's record span
from index queries (pysam's ``TabixFile``, htslib's tabix), and the warning for a BGZF file that
lacks its end-of-file block (truncated at a block boundary; htslib warns the same way).
"""

from __future__ import annotations

import itertools
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def _tabix_ok(path: Path) -> bool:
    """bgzipped (BGZF, not plain gzip), indexed, and pysam (htslib's tabix) is importable."""
    with open(path, "rb") as fh:
        bgzf = _is_bgzf(fh.read(16))
    indexed = any(Path(f"{path}{ext}").exists() for ext in (".tbi", ".csi"))
    try:
        import pysam  # noqa: F401
    except ImportError:
        return False
    return bgzf and indexed


def _tabix_contigs(path: Path) -> list[str] | None:
    """Chromosomes in the tabix index, or None when the index cannot be read."""
    import pysam

    try:
        with pysam.TabixFile(str(path)) as tbx:
            return list(tbx.contigs)
    except (OSError, ValueError) as e:
        log.info("%s: cannot read the tabix index (%s)", path, e)
        return None


def _tabix_span(path: Path, contig: str) -> tuple[int, int] | None:
    """(first POS, last position covered) of a contig's records through the index, without
    reading the contig: the first record, then a binary search over region queries (~31 index
    lookups) for the last base any record overlaps."""
    import pysam

    try:
        with pysam.TabixFile(str(path)) as tbx:

            def covered(start: int) -> list[str]:  # a record overlapping 0-based start or later
                try:
                    return list(itertools.islice(tbx.fetch(contig, start), 1))
                except ValueError:  # beyond what the index can address
                    return []

            head = covered(0)
            if not head:
                return None
            first = int(head[0].split("\t", 2)[1])
            lo, hi = first - 1, 2**31 - 2  # a record overlaps lo; assume none overlaps hi
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if covered(mid) else (lo, mid)
            return first, lo + 1
    except (OSError, ValueError):
        return None


_BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")


def _is_bgzf(head: bytes) -> bool:
    # BGZF is gzip with a 'BC' extra subfield; plain gzip cannot be tabix-indexed.
    return head[:4] == b"\x1f\x8b\x08\x04" and head[12:14] == b"BC"


def _warn_bgzf_eof(path: Path) -> None:
    """Warn when a BGZF file lacks its end-of-file block.

    BGZF blocks are complete gzip members, so a file cut at a block boundary decompresses without
    error; only the missing EOF block shows it (htslib warns the same way).
    """
    with open(path, "rb") as fh:
        if not _is_bgzf(fh.read(16)):
            return
        fh.seek(0, os.SEEK_END)
        fh.seek(max(0, fh.tell() - len(_BGZF_EOF)))
        if fh.read() != _BGZF_EOF:
            log.warning("%s: no BGZF end-of-file block: the file may be truncated", path)
