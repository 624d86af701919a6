"""Regions and chromosome names of VCF/BCF requests: parse 'chrom' or 'chrom:start-end' (1-based,
inclusive, commas allowed, as bcftools and tabix take them), spell a name across the 'chr' prefix
(UCSC 'chr2' vs Ensembl/NCBI '2', 'chrM' vs 'MT') and resolve a requested chromosome to the
file's contig, or raise a ``ConfigError`` listing the contigs that have records.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from quantscan.errors import ConfigError


def _parse_region(region: str) -> tuple[str, int | None, int | None]:
    """'chrom' -> (chrom, None, None); 'chrom:start-end' (commas allowed) -> (chrom, start, end)."""
    m = re.fullmatch(r"(.+?)(?::([\d,]+)-([\d,]+))?", region.strip())
    if not m:
        raise ConfigError(f"bad region {region!r}; expected 'chrom' or 'chrom:start-end'")
    if m.group(2) is None:
        return m.group(1), None, None
    start, end = int(m.group(2).replace(",", "")), int(m.group(3).replace(",", ""))
    if start < 1 or end < start:
        raise ConfigError(f"bad region {region!r}: need 1 <= start <= end")
    return m.group(1), start, end


def _chrom_aliases(name: str) -> list[str]:
    """Other spellings of a chromosome name across a 'chr' prefix: UCSC 'chr2' and Ensembl/NCBI
    '2' (GRCh37/38 as 1000 Genomes and gnomAD write them differ exactly so), 'chrM' and 'MT'."""
    if name[:3].lower() == "chr" and len(name) > 3:
        bare = name[3:]
        return ["MT", bare] if bare == "M" else [bare]
    return ["chrM", f"chr{name}"] if name == "MT" else [f"chr{name}"]


def _resolve_contig(path: Path, name: str, available: Sequence[str]) -> str:
    """The file's name for requested chromosome ``name``: itself when it has records, else a 'chr'
    alias with records; else ``ConfigError`` naming the file and the contigs with records."""
    if name in available:
        return name
    for alias in _chrom_aliases(name):
        if alias in available:
            return alias
    raise _no_contig_error(path, [name], available)


def _no_contig_error(path, names: Sequence[str], available: Sequence[str]) -> ConfigError:
    shown = ", ".join(available[:10]) or "none"
    if len(available) > 10:
        shown += f", ... ({len(available)} contigs)"
    tried = sorted({a for n in names for a in _chrom_aliases(n)} - set(names))
    return ConfigError(
        f"{path}: chromosome(s) not in the file: {', '.join(names)} (no records; also tried "
        f"{', '.join(tried)}); contigs with records (present: {shown})"
    )
