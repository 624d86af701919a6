"""How many haplotypes an input has, read cheaply when the workflow is parsed
(``count_haplotypes``): for VCF/BCF the selected samples times the ploidy of the first genotype
call (``_first_call``, which ``vcf.read_vcf`` also asks when a region has no call; BCF through
pysam), for ms-style output the ``nsam`` of the command line (ms, discoal, scrm, msHOT, mssel) or
the first replicate with sites, for tskit tree sequences ``num_samples``.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from quantscan.errors import ConfigError, InputFormatError

from .bcf import _bcf_error
from .formats import FORMATS, _head, _open_binary, _read_errors, detect_format
from .ms import _ms_header_nsam, iter_ms

_FIRST_CALL_RECORDS = 10_000


@dataclass
class _FirstCall:
    samples: list[str]  # of the header
    ploidies: dict[str, int]  # selected sample -> alleles in its call, first record with a call
    where: str  # that record: "line 12 (chr1:10583)" or "record 3 (chr1:10583)"
    records: int  # records looked at


def _select(path: Path, header: list[str], samples: Sequence[str] | None) -> list[int]:
    if samples is None:
        return list(range(len(header)))
    samples = list(samples)
    missing = [s for s in samples if s not in set(header)]
    if missing:
        raise ConfigError(f"{path}: sample(s) not in the VCF header: {', '.join(missing)}")
    dup = sorted({s for s in samples if samples.count(s) > 1})
    if dup or not samples:
        raise ConfigError(f"samples must be distinct and non-empty; repeated: {dup}")
    return [header.index(s) for s in samples]


def _first_call(path: Path, samples: Sequence[str] | None = None) -> _FirstCall:
    """Header samples and the ploidy of each selected sample's call in the first record where one
    of them has a call (a bare '.' says nothing about ploidy; './.' says 2). Reads the header and
    at most ``_FIRST_CALL_RECORDS`` records."""
    path = Path(path)
    if _head(path, 4096)[0].startswith(b"BCF"):
        return _first_call_bcf(path, samples)
    lineno = 0

    def where():
        return f"line {lineno}"

    header: list[str] | None = None
    sel: list[int] = []
    records = 0
    with (
        io.TextIOWrapper(_open_binary(path), encoding="utf-8", newline=None) as fh,
        _read_errors(path, where),
    ):
        for line in fh:
            lineno += 1
            if line.startswith("##"):
                continue
            if line.startswith("#CHROM"):
                header = line.rstrip("\r\n").split("\t")[9:]
                sel = _select(path, header, samples)
                continue
            if header is None:
                raise InputFormatError(f"{path}: line {lineno}: not a VCF: no '#CHROM' header line")
            f = line.rstrip("\r\n").split("\t")
            if len(f) < 2:
                continue
            records += 1
            rec = f"line {lineno} ({f[0]}:{f[1]})"
            if len(f) != 9 + len(header):
                raise InputFormatError(
                    f"{path}: {rec}: expected {9 + len(header)} tab-separated columns, "
                    f"found {len(f)}"
                )
            keys = f[8].split(":")
            if "GT" not in keys:
                raise InputFormatError(f"{path}: {rec}: FORMAT has no GT field: {f[8]!r}")
            gi = keys.index("GT")
            ploidies = {}
            for i in sel:
                parts = f[9 + i].split(":")
                gt = parts[gi] if gi < len(parts) else "."
                if gt != ".":
                    ploidies[header[i]] = gt.count("|") + gt.count("/") + 1
            if ploidies:
                return _FirstCall(header, ploidies, rec, records)
            if records >= _FIRST_CALL_RECORDS:
                break
    if header is None:
        what = "empty file" if lineno == 0 else "no '#CHROM' header line"
        raise InputFormatError(f"{path}: not a VCF: {what}")
    return _FirstCall(header, {}, "", records)


def _first_call_bcf(path: Path, samples) -> _FirstCall:
    try:
        import pysam
    except ImportError:
        raise _bcf_error(path) from None
    verbosity = pysam.set_verbosity(0)
    records = 0
    try:
        with pysam.VariantFile(str(path)) as bcf:
            header = list(bcf.header.samples)
            names = [header[i] for i in _select(path, header, samples)]
            for record in bcf:
                records += 1
                ploidies = {}
                if "GT" in record.format:
                    for s in names:
                        gt = record.samples[s]["GT"]
                        if gt and gt != (None,):
                            ploidies[s] = len(gt)
                if ploidies:
                    return _FirstCall(
                        header, ploidies, f"record {records} ({record.chrom}:{record.pos})", records
                    )
                if records >= _FIRST_CALL_RECORDS:
                    break
    except (OSError, ValueError) as e:
        raise InputFormatError(f"{path}: corrupt BCF at record {records + 1}: {e}") from e
    finally:
        pysam.set_verbosity(verbosity)
    return _FirstCall(header, {}, "", records)


def count_haplotypes(
    path: str | os.PathLike,
    fmt: str = "auto",
    *,
    samples: Sequence[str] | None = None,
    length: float | None = None,
) -> int:
    """The input's haplotype count, read cheaply (bounded work on a multi-GB file).

    VCF/BCF: selected samples (``samples``, else all of the ``#CHROM`` line) x the ploidy of the
    first record where one of them has a genotype call (haploid and diploid files both occur; a
    record mixing ploidies, as chrX of males and females does, is an ``InputFormatError`` naming
    it). BCF through pysam. ms: ``nsam`` from the command line ('ms 20 10 -t ...', discoal,
    scrm, msHOT, mssel), else the haplotype lines of the first replicate with sites. Tree
    sequences: tskit's ``num_samples``. ``length`` is accepted for ms (its value does not matter).
    """
    path = Path(path)
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt in ("vcf", "bcf"):
        fc = _first_call(path, samples)
        n = len(fc.samples) if samples is None else len(samples)
        if not fc.ploidies:
            if fc.records == 0:
                raise InputFormatError(f"{path}: no variant records (the file has a header only)")
            raise InputFormatError(
                f"{path}: no genotype call of the selected samples in the first "
                f"{fc.records:,} records: cannot tell their ploidy"
            )
        by: dict[int, list[str]] = {}
        for s, k in fc.ploidies.items():
            by.setdefault(k, []).append(s)
        if len(by) > 1:
            detail = "; ".join(
                f"{k} allele(s) for {', '.join(map(repr, v[:3]))}{' ...' if len(v) > 3 else ''}"
                for k, v in sorted(by.items())
            )
            raise InputFormatError(
                f"{path}: {fc.where}: mixed ploidy ({detail}): the haplotype count is ambiguous; "
                "select samples of one ploidy with the input's 'samples'"
            )
        return n * next(iter(by))
    if fmt == "ms":
        header = []
        with (
            io.TextIOWrapper(_open_binary(path), encoding="utf-8", newline=None) as fh,
            _read_errors(path, lambda: "the header"),
        ):
            for line in fh:
                if line.startswith("//"):
                    break
                header.append(line.strip())
        nsam = _ms_header_nsam(header)
        if nsam is not None:
            return nsam
        with contextlib.closing(iter_ms(path, length=length or 1.0)) as reps:
            first = next(reps, None)
        if first is None or first.n_haplotypes == 0:
            raise InputFormatError(
                f"{path}: no command line and no replicate with segregating sites: cannot tell "
                "the number of haplotypes"
            )
        return first.n_haplotypes
    if fmt == "trees":
        import tskit

        try:
            return int(tskit.load(path).num_samples)
        except OSError as e:
            raise InputFormatError(f"{path}: cannot read: {e.strerror or e}") from e
        except Exception as e:  # tskit's exception types vary by version
            raise InputFormatError(f"{path}: not a readable tskit tree sequence: {e}") from e
    raise ConfigError(f"unknown input format {fmt!r}; expected 'auto' or one of {FORMATS}")
