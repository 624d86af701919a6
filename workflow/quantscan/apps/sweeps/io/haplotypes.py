"""The container every reader returns, ``HaplotypeData``: positions, a uint8 haplotype matrix
(0 ancestral/REF, 1 derived/ALT, ``MISSING``), sample names and ploidy, and the site counts of what
the reader kept and dropped. Also what the VCF, ms and tskit readers share about it: the
``stats`` keys, the range label of error messages (``_where``) and the one-line log summary
(``_log_stats``). The contract (what is kept, dropped and counted) is the package doc,
``quantscan.apps.sweeps.io``. Reads no file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)
MISSING = 255
"""Haplotype code for a missing call."""


@dataclass(eq=False)  # numpy fields: compare arrays explicitly, not with ==
class HaplotypeData:
    """Haplotypes of one chromosome (VCF), replicate (ms) or tree sequence; see the package doc."""

    chrom: str
    positions: np.ndarray
    haplotypes: np.ndarray
    sample_names: list[str]
    ploidy: int = 1
    length: float | None = None
    source: str = ""
    region: tuple[int, int] | None = None
    """Inclusive 1-based (start, end) when the reader was asked for a region, else None."""
    stats: dict[str, int] = field(default_factory=dict)
    """Site counts: ``input_sites``, ``kept``, ``multiallelic``, ``non_snp``, ``uncalled``,
    ``monomorphic``, ``missing_calls`` (in kept sites), ``duplicate_records`` (kept, not dropped)
    and, for VCF, ``unphased_records``; see the package doc."""
    notes: list[str] = field(default_factory=list)
    """What the reader did that the user may not expect (a 'chr' prefix mapped), one line each."""
    contig_span: tuple[int, int] | None = None
    """VCF: first and last POS of the file's records on this contig (all of them, not only the
    region's) when known cheaply; error messages use it."""

    def __post_init__(self):
        self.positions = np.asarray(self.positions, dtype=np.float64)
        self.haplotypes = np.asarray(self.haplotypes)
        if self.haplotypes.dtype != np.uint8:
            raise TypeError(f"haplotypes must be uint8, got {self.haplotypes.dtype}")
        if self.positions.ndim != 1 or self.haplotypes.ndim != 2:
            raise ValueError("positions must be 1-D and haplotypes 2-D (n_sites, n_haplotypes)")
        if self.haplotypes.shape[0] != self.positions.shape[0]:
            raise ValueError(
                f"{self.haplotypes.shape[0]} haplotype rows for {self.positions.shape[0]} positions"
            )
        if len(self.sample_names) * self.ploidy != self.haplotypes.shape[1]:
            raise ValueError(
                f"{len(self.sample_names)} samples x ploidy {self.ploidy} != "
                f"{self.haplotypes.shape[1]} haplotype columns"
            )
        if self.positions.size and np.any(np.diff(self.positions) < 0):
            raise ValueError(f"{self.chrom}: positions are not sorted")

    @property
    def n_sites(self) -> int:
        return self.haplotypes.shape[0]

    @property
    def n_haplotypes(self) -> int:
        return self.haplotypes.shape[1]

    @property
    def haplotype_names(self) -> list[str]:
        if self.ploidy == 1:
            return list(self.sample_names)
        return [f"{s}_h{k + 1}" for s in self.sample_names for k in range(self.ploidy)]

    @property
    def missing(self) -> np.ndarray:
        """Boolean mask of missing calls, same shape as ``haplotypes``."""
        return self.haplotypes == MISSING

    def filled(self, value: int = 0) -> np.ndarray:
        """Copy of ``haplotypes`` with missing calls set to ``value`` (0: treat as ancestral)."""
        return np.where(self.haplotypes == MISSING, np.uint8(value), self.haplotypes)


_STAT_KEYS = (
    "input_sites",
    "kept",
    "multiallelic",
    "non_snp",
    "uncalled",
    "monomorphic",
    "missing_calls",
    "duplicate_records",
)


def _where(hd) -> str:
    """'2:135,000,000-136,000,000' for a region, else the chromosome (replicate) name."""
    if hd.region is not None:
        return f"{hd.chrom}:{hd.region[0]:,}-{hd.region[1]:,}"
    return hd.chrom


def _log_stats(path, hd: HaplotypeData) -> None:
    """One line per chromosome: where, what was kept and dropped, the SNPs' range (never a made-up
    position when there is none) and the haplotype count as samples x ploidy."""
    s = hd.stats
    dropped = ", ".join(
        f"{s[k]} {label}"
        for k, label in (
            ("multiallelic", "multi-allelic"),
            ("non_snp", "non-SNP"),
            ("uncalled", "without calls"),
            ("monomorphic", "monomorphic"),
        )
        if s.get(k)
    )
    at = f"SNPs at {hd.positions[0]:,.0f}-{hd.positions[-1]:,.0f}" if hd.n_sites else "no SNPs"
    log.info(
        "%s: %s: kept %d of %d sites (dropped: %s); %s; %d haplotypes (%d samples x ploidy %d), "
        "%d missing calls",
        path,
        _where(hd),
        s.get("kept", 0),
        s.get("input_sites", 0),
        dropped or "none",
        at,
        hd.n_haplotypes,
        len(hd.sample_names),
        hd.ploidy,
        s.get("missing_calls", 0),
    )
