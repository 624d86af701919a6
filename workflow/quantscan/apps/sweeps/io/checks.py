"""Whether a chromosome that was read can be scanned; these read no file, they check the
``HaplotypeData`` of any reader (or a ``scan_inputs.PackedChromosome`` with its missing calls per
haplotype). ``_check_snps`` raises ``InputFormatError`` on no usable SNP or an all-missing
genotype matrix, naming the range, the drop counts and the likely causes; ``check_usable`` adds
warnings: fewer SNPs than one window, haplotypes without any call, more than 10 % missing calls.
"""

from __future__ import annotations

import numpy as np

from quantscan.errors import InputFormatError

from .haplotypes import MISSING, _where


def _missing_per_haplotype(hd, rows: int = 1 << 16) -> np.ndarray:
    """Missing calls per haplotype column, in row blocks (a whole-matrix mask can be GBs); a
    reader's own count when it has one (``missing_per_haplotype``: a ``PackedChromosome`` of
    ``io.trees.read_trees_packed``, whose packed matrix stores missing calls as 0)."""
    known = getattr(hd, "missing_per_haplotype", None)
    if known is not None:
        return known
    out = np.zeros(hd.n_haplotypes, dtype=np.int64)
    for i in range(0, hd.n_sites, rows):
        out += (hd.haplotypes[i : i + rows] == MISSING).sum(axis=0)
    return out


def _check_snps(hd, source: str, per_hap: np.ndarray | None = None) -> None:
    """Raise ``InputFormatError`` when ``hd`` has no SNP or only missing genotype calls
    (``per_hap``: ``_missing_per_haplotype(hd)`` when the caller has it)."""
    s, where = hd.stats, _where(hd)
    n = s.get("input_sites", 0)
    candidates = n - s.get("multiallelic", 0) - s.get("non_snp", 0)
    n_samples = len(hd.sample_names)
    if (hd.n_sites == 0 and candidates > 0 and s.get("uncalled", 0) == candidates) or (
        hd.n_sites > 0
        and (_missing_per_haplotype(hd) if per_hap is None else per_hap).sum()
        == hd.n_sites * hd.n_haplotypes
    ):
        raise InputFormatError(
            f"{source}: {where}: all genotype calls are missing ({max(candidates, hd.n_sites):,} "
            f"SNP records, no called genotype among the {n_samples} selected samples): check the "
            "sample selection and the file's GT fields"
        )
    if hd.n_sites:
        return
    vcf = "unphased_records" in s  # only read_vcf sets it
    if n == 0:
        what = "no variant records" + (" in this range" if hd.region else "")
        if hd.contig_span:
            a, b = hd.contig_span
            what += f"; the file's records on this contig span {a:,}-{b:,}"
    else:
        unit = "records" if vcf else "sites"
        counts = [
            f"{s.get(k, 0):,} {label}"
            for k, label in (
                ("multiallelic", "multi-allelic"),
                ("non_snp", "non-SNP (indel, symbolic)"),
                ("uncalled", "without calls"),
                ("monomorphic", f"monomorphic among the {hd.n_haplotypes} haplotypes"),
            )
            if s.get(k, 0)
        ]
        what = f"{n:,} {unit}, none kept; dropped: {', '.join(counts)}"
    if vcf:
        causes = (
            "likely causes: the region's coordinates are from another genome build than the file "
            "(GRCh37 and GRCh38 positions differ by up to megabases), the sample selection (a SNP "
            "polymorphic only outside the selected samples is dropped as monomorphic), or the "
            "filters (only biallelic SNPs are kept: multi-allelic sites, indels and monomorphic "
            "sites are dropped)"
        )
    else:
        causes = (
            "a simulated replicate without segregating sites ('segsites: 0', or a tree sequence "
            "without mutations) cannot be scanned: check the mutation rate or leave it out of "
            "the input's 'chroms'"
        )
    raise InputFormatError(f"{source}: {where}: no usable SNPs ({what}); {causes}")


def check_usable(hd, *, window: int, source: str) -> list[str]:
    """Check that ``hd`` can be scanned with windows of ``window`` SNPs; return warnings to log.

    Raises ``InputFormatError`` on zero SNPs (naming the contig, the range, the drop counts and
    the likely causes) and on an all-missing genotype matrix ("all genotype calls are missing").
    Warns about fewer SNPs than one window, haplotypes without any call, and more than 10 % of
    missing calls (the images read a missing call as ancestral, which looks like a sweep's lost
    diversity).
    """
    per_hap = _missing_per_haplotype(hd)
    _check_snps(hd, source, per_hap)
    where = _where(hd)
    out = []
    if hd.n_sites < window:
        out.append(
            f"{source}: {where}: only {hd.n_sites} SNPs, fewer than one window of {window}: every "
            f"grid point scores the same window of all {hd.n_sites} SNPs, zero-padded"
        )
    empty = np.flatnonzero(per_hap == hd.n_sites)
    if empty.size:
        names = [hd.haplotype_names[i] for i in empty[:5]]
        more = ", ..." if empty.size > 5 else ""
        out.append(
            f"{source}: {where}: {empty.size} of {hd.n_haplotypes} haplotypes have no genotype "
            f"call ({', '.join(names)}{more}): the images read them as all-ancestral rows; leave "
            "those samples out with the input's 'samples'"
        )
    frac = per_hap.sum() / max(hd.n_sites * hd.n_haplotypes, 1)
    if frac > 0.1:
        out.append(
            f"{source}: {where}: {frac:.1%} of the genotype calls are missing; the images read "
            "them as ancestral, which looks like lost diversity (a false sweep signal): filter "
            "sites or samples with many missing calls"
        )
    return out
