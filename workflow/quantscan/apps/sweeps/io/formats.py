"""Recognise and open input files. ``detect_format`` tells VCF, BCF, ms-style text and tskit tree
sequences apart by their first bytes (gzip/bgzip inflated; the 'BCF' and kastore magic, a
'##fileformat=VCF' or '#CHROM' line, ms '//' and 'segsites:' lines), else by the file
extension. ``_head`` reads those first bytes, ``_open_binary`` opens plain or gzip/bgzip files by
magic (scikit-allel would go by a '.gz' suffix) and ``_read_errors`` turns truncated or corrupt
compressed data and bad UTF-8 into ``InputFormatError`` naming the place.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import zlib
from pathlib import Path

from quantscan.errors import InputFormatError

FORMATS = ("vcf", "bcf", "ms", "trees")
_GZIP_MAGIC = b"\x1f\x8b"
_KASTORE_MAGIC = b"\x89KAS\r\n\x1a\n"  # tskit .trees files are kastore archives


def _head(path: Path, n: int = 65536) -> tuple[bytes, bool]:
    """First ``n`` bytes (decompressed if gzip/bgzip) and whether the file is gzip-compressed."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(n)
    except OSError as e:
        raise InputFormatError(f"{path}: cannot read: {e.strerror or e}") from e
    if not raw.startswith(_GZIP_MAGIC):
        return raw, False
    try:
        # A decompressobj tolerates a truncated tail, which a short read always is.
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        return d.decompress(raw, n), True
    except zlib.error as e:
        raise InputFormatError(f"{path}: corrupt gzip data at the start of the file: {e}") from e


def detect_format(path: str | os.PathLike) -> str:
    """Return 'vcf', 'bcf', 'ms' or 'trees': by content (magic bytes) first, else by extension.

    Compression is not part of the answer: gzip/bgzip VCF and ms files are 'vcf' and 'ms'.
    """
    path = Path(path)
    head, _ = _head(path)
    if head.startswith(_KASTORE_MAGIC):
        return "trees"
    if head.startswith(b"BCF"):
        return "bcf"
    text = head.decode("utf-8", errors="replace")
    if text.startswith("##fileformat=VCF") or text.startswith("#CHROM"):
        return "vcf"
    lines = [ln.strip() for ln in text.splitlines()[:200]]
    if any(ln.startswith("//") or ln.startswith("segsites:") for ln in lines):
        return "ms"
    name = path.name.lower()
    for ext in (".gz", ".bgz"):
        name = name.removesuffix(ext)
    if name.endswith(".vcf"):
        return "vcf"
    if name.endswith(".bcf"):
        return "bcf"
    if name.endswith((".trees", ".ts")):
        return "trees"
    if name.endswith((".ms", ".msout", ".txt", ".out")):
        return "ms"
    what = "empty file" if not head else "content is not VCF, BCF, ms or tskit"
    raise InputFormatError(f"{path}: cannot detect the input format ({what}); pass fmt= explicitly")


def _open_binary(path: Path):
    """Open plain or gzip/bgzip by magic (not by name: allel decides by the '.gz' suffix alone)."""
    try:
        with open(path, "rb") as fh:
            gz = fh.read(2) == _GZIP_MAGIC
        return gzip.open(path, "rb") if gz else open(path, "rb")
    except OSError as e:
        raise InputFormatError(f"{path}: cannot read: {e.strerror or e}") from e


@contextlib.contextmanager
def _read_errors(path: Path, where):
    """Turn decompression/decoding failures into InputFormatError naming the place (``where()``)."""
    try:
        yield
    except EOFError as e:
        raise InputFormatError(f"{path}: truncated compressed file after {where()}: {e}") from e
    except (gzip.BadGzipFile, zlib.error) as e:
        raise InputFormatError(f"{path}: corrupt compressed data after {where()}: {e}") from e
    except UnicodeDecodeError as e:
        raise InputFormatError(f"{path}: not a text file (bad UTF-8) after {where()}") from e
