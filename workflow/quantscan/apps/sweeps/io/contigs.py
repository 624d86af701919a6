"""Which contigs of a VCF or BCF have records (``record_contigs``), read cheaply when the workflow
is parsed: the tabix/CSI index through pysam when there is one, else the CHROM column of one
streaming pass (1 MiB blocks); never the ``##contig`` header lines, which reference-wide headers
fill with every contig of the assembly.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from quantscan.errors import ConfigError, InputFormatError

from .bcf import _bcf_error, _bcf_record_contigs
from .formats import _head, _open_binary, _read_errors, detect_format
from .tabix import _tabix_contigs, _tabix_ok

_CHROM_RE = re.compile(rb"^([^\t\r\n#][^\t\r\n]*)\t", re.MULTILINE)


def record_contigs(path: str | os.PathLike, fmt: str = "auto") -> list[str]:
    """Contigs of a VCF/BCF that have at least one record, in file order (``##contig`` lines are
    not trusted: reference-wide headers list every contig of the assembly).

    VCF: the tabix/CSI index when there is one (one lookup per indexed contig), else the CHROM
    column of a streaming pass (1 MiB at a time; the file is never held in memory). BCF (through
    pysam): its index, else one pass over the records. No record at all: ``InputFormatError``.
    """
    path = Path(path)
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt == "bcf" or _head(path, 4096)[0].startswith(b"BCF"):
        try:
            import pysam
        except ImportError:
            raise _bcf_error(path) from None
        verbosity = pysam.set_verbosity(0)
        try:
            with pysam.VariantFile(str(path)) as bcf:
                names = _bcf_record_contigs(path, bcf)
        except (OSError, ValueError) as e:
            raise InputFormatError(f"{path}: not a readable BCF: {e}") from e
        finally:
            pysam.set_verbosity(verbosity)
    elif fmt == "vcf":
        names = _indexed_record_contigs(path) if _tabix_ok(path) else None
        if names is None:
            names = _stream_contigs(path)
    else:
        raise ConfigError(f"{path}: record_contigs reads VCF or BCF, not {fmt!r}")
    if not names:
        raise InputFormatError(f"{path}: no variant records (the file has a header only)")
    return names


def _indexed_record_contigs(path: Path) -> list[str] | None:
    import pysam

    names = _tabix_contigs(path)
    if names is None:
        return None
    out = []
    with pysam.TabixFile(str(path)) as tbx:
        for c in names:
            try:
                if next(iter(tbx.fetch(c)), None) is not None:
                    out.append(c)
            except ValueError:
                continue
    return out


def _stream_contigs(path: Path) -> list[str]:
    """Distinct CHROM values in order of first appearance, reading the file once in 1 MiB blocks;
    a block that starts and ends on the contig of the previous block's last record is skipped
    (decompression, not the search, then sets the speed)."""
    seen: dict[bytes, None] = {}
    at = {"line": 0, "bytes": 0}

    def where():
        if at["bytes"]:
            return f"{at['bytes']:,} bytes of records"
        return f"line {at['line']}"

    with _open_binary(path) as fh, _read_errors(path, where):
        while True:  # the header, line by line
            line = fh.readline()
            at["line"] += 1
            if not line:
                raise InputFormatError(f"{path}: not a VCF: no '#CHROM' header line")
            if line.startswith(b"#CHROM"):
                break
            if not line.startswith(b"#"):
                raise InputFormatError(
                    f"{path}: line {at['line']}: not a VCF: data before the '#CHROM' header line"
                )
        tail, cur = b"", None
        while block := fh.read(1 << 20):
            at["bytes"] += len(block)
            buf = tail + block
            cut = buf.rfind(b"\n") + 1
            if cut:
                # Records of a contig are contiguous (read_vcf rejects a file where they are
                # not), so a block that starts and ends on the current contig holds no other.
                last = buf.rfind(b"\n", 0, cut - 1) + 1
                c0, c1 = buf[: buf.find(b"\t", 0, cut)], buf[last : buf.find(b"\t", last, cut)]
                if not (c0 == c1 == cur and b"\n" not in c0):
                    seen.update(dict.fromkeys(_CHROM_RE.findall(buf, 0, cut)))
                    m = _CHROM_RE.search(buf, last, cut)
                    cur = m.group(1) if m else None
            tail = buf[cut:]
        seen.update(dict.fromkeys(_CHROM_RE.findall(tail + b"\n")))
    return [c.decode("utf-8", errors="replace") for c in seen]
