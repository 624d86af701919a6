"""BCF through pysam (htslib's ``VariantFile``): the contigs that have records (one lookup per contig
of the CSI index, else one pass), and ``_decode_bcf``, which writes the binary records as text VCF
for ``vcf.read_vcf`` (scikit-allel reads text only; with an index only the requested region is
decoded). Without pysam: an ``InputFormatError`` that says how to install it or convert the file
with ``bcftools view``.
"""

from __future__ import annotations

from pathlib import Path

from quantscan.errors import ConfigError, InputFormatError

from .regions import _parse_region, _resolve_contig


def _bcf_error(path: Path) -> InputFormatError:
    return InputFormatError(
        f"{path}: BCF needs pysam (pip install pysam), which is not installed. Or convert it: "
        f"bcftools view -Oz -o {path.stem}.vcf.gz {path} && bcftools index -t {path.stem}.vcf.gz"
    )


def _bcf_record_contigs(path: Path, bcf) -> list[str]:
    """Contigs with at least one record of an open pysam ``VariantFile``: one index lookup per
    contig of the index (a BCF's CSI lists every header contig, with or without records), else
    one pass over the records."""
    if bcf.index is not None:
        out = []
        for c in bcf.index:
            try:
                if next(bcf.fetch(c), None) is not None:
                    out.append(c)
            except ValueError:
                continue
        return out
    seen: dict[str, None] = {}
    n = 0
    try:
        for n, record in enumerate(bcf, 1):  # noqa: B007 - n names the failing record
            seen.setdefault(record.chrom, None)
    except (OSError, ValueError) as e:
        raise InputFormatError(f"{path}: corrupt BCF at record {n + 1}: {e}") from e
    return list(seen)


def _decode_bcf(path: Path, dest: Path, region: str | None = None) -> None:
    """Write BCF ``path`` as plain VCF text to ``dest``: htslib (through pysam) decodes the binary
    records, then the VCF path validates and parses them like any text VCF (scikit-allel reads text
    only). Costs one temporary text copy: with a .csi/.tbi index only ``region`` ('chrom' or
    'chrom:start-end', its contig resolved as in ``read_vcf``: records only, 'chr' prefix mapped)
    is decoded, else the whole file (``read_vcf`` filters it)."""
    try:
        import pysam
    except ImportError:
        raise _bcf_error(path) from None
    n, verbosity = 0, pysam.set_verbosity(0)  # htslib would also complain about a missing index
    try:
        with pysam.VariantFile(str(path)) as bcf, open(dest, "w") as out:
            out.write(str(bcf.header))
            indexed = region is not None and bcf.index is not None
            if indexed:
                chrom, start, end = _parse_region(region)
                fc = _resolve_contig(path, chrom, _bcf_record_contigs(path, bcf))
                region = fc if start is None else f"{fc}:{start}-{end}"
            try:
                records = bcf.fetch(region=region) if indexed else bcf
            except ValueError as e:  # a chromosome the index does not know
                raise ConfigError(f"{path}: cannot read region {region!r}: {e}") from e
            for n, record in enumerate(records, 1):  # noqa: B007 - n names the failing record
                out.write(str(record))
    except (OSError, ValueError) as e:
        raise InputFormatError(f"{path}: corrupt BCF at record {n + 1}: {e}") from e
    finally:
        pysam.set_verbosity(verbosity)
