"""Read VCF (plain, gzip or bgzip) and BCF into ``HaplotypeData``, one per chromosome.
``read_vcf`` resolves the requested chromosomes and region (``regions``), slices a bgzipped,
indexed file through tabix (pysam, ``tabix``) or streams the whole file, runs the validating pass
(``vcf_validate``), then scikit-allel parses CHROM, POS, REF, ALT and GT in chunks of ``_CHUNK``
records and only biallelic polymorphic SNPs are kept, the rest counted. A BCF is first decoded to
text VCF by pysam (``bcf``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from quantscan.errors import ConfigError, InputFormatError

from .bcf import _decode_bcf
from .formats import _head, _open_binary
from .haplotype_count import _first_call
from .haplotypes import _STAT_KEYS, MISSING, HaplotypeData, _log_stats, _where
from .regions import _chrom_aliases, _no_contig_error, _parse_region, _resolve_contig
from .tabix import _tabix_contigs, _tabix_ok, _tabix_span, _warn_bgzf_eof
from .vcf_validate import _DUP, _INT32_MAX, _MULTI, _scan_vcf

log = logging.getLogger(__name__)
PHASED_MODES = ("auto", "require", "pseudo")
_CHUNK = 65536


class _LineStream(io.RawIOBase):
    """A binary stream over an iterator of byte strings (the lines of a tabix query)."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks, self._buf = chunks, b""

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self._buf:
            self._buf = next(self._chunks, b"")
            if not self._buf:
                return 0
        n = min(len(b), len(self._buf))
        b[:n], self._buf = self._buf[:n], self._buf[n:]
        return n


@contextlib.contextmanager
def _vcf_source(path: Path, tabix_region: str | None):
    """Yield a binary stream of the VCF text: the whole file, or its header and the records in
    ``tabix_region`` read through the index (htslib's tabix, via pysam)."""
    if tabix_region is None:
        with _open_binary(path) as fh:
            yield fh
        return
    import pysam

    def lines():
        with pysam.TabixFile(str(path)) as tbx:
            for line in tbx.header:
                yield line.encode() + b"\n"
            for line in tbx.fetch(region=tabix_region):
                yield line.encode() + b"\n"

    try:
        with io.BufferedReader(_LineStream(lines()), _CHUNK) as fh:
            yield fh
    except (OSError, ValueError) as e:
        raise InputFormatError(f"{path}: tabix query {tabix_region!r} failed: {e}") from e


def read_vcf(
    path: str | os.PathLike,
    *,
    chroms: Sequence[str] | str | None = None,
    region: str | None = None,
    samples: Sequence[str] | None = None,
    phased: str = "auto",
) -> list[HaplotypeData]:
    """Read biallelic SNP haplotypes from a VCF (plain, gzip or bgzip), one object per chromosome.

    chroms: keep only these chromosomes (returned in file order). region: 'chrom' or
    'chrom:start-end' (1-based, inclusive, by POS). A name that differs from the file's only by
    a 'chr' prefix is read under the file's name (see the package doc); a name without records is a
    ``ConfigError``. A bgzipped file with a .tbi/.csi index is sliced through the index (htslib's
    tabix, via pysam); otherwise the whole file is scanned and filtered. samples: subset, returned
    in the given order. phased: 'require' fails on any unphased heterozygous call; 'pseudo' takes
    unphased calls as if phased (the order of an individual's haplotypes is then arbitrary, which
    images with sorted rows tolerate); 'auto' (default) does the same as 'pseudo' and logs a
    warning. Missing calls are kept as MISSING. BCF (bgzipped or not) is decoded by pysam into a
    temporary text VCF first (allel cannot read it). A region without SNPs gives an empty object
    (``check_usable`` makes that an error).
    """
    path = Path(path)
    if phased not in PHASED_MODES:
        raise ConfigError(f"phased must be one of {PHASED_MODES}, got {phased!r}")
    head, _ = _head(path, 4096)  # a few kB: 64 compressed bytes may inflate to almost nothing
    if head.startswith(b"BCF"):
        return _read_bcf(path, chroms=chroms, region=region, samples=samples, phased=phased)
    return _read_vcf_text(
        path, chroms=chroms, region=region, samples=samples, phased=phased, ploidy_source=path
    )


def _read_vcf_text(path, *, chroms, region, samples, phased, ploidy_source):
    """``read_vcf`` of a text VCF; ``ploidy_source``: the file whose first call gives the ploidy
    when the records read have none (an empty region must still have the right haplotype count)."""
    _warn_bgzf_eof(path)
    if isinstance(chroms, str):
        chroms = [chroms]
    want = None if chroms is None else list(dict.fromkeys(chroms))
    reg_chrom, start, end = _parse_region(region) if region is not None else (None, None, None)
    if reg_chrom is not None:
        if want is not None and reg_chrom not in want:
            raise ConfigError(f"region {region!r} is on a chromosome not in chroms={want}")
        want = [reg_chrom]
    lo, hi = start or 0, end or _INT32_MAX
    # Before the file's names are known, accept the requested names and their 'chr' aliases.
    accept = None if want is None else {a for c in want for a in (c, *_chrom_aliases(c))}

    def select(chrom, pos):
        return (accept is None or chrom in accept) and lo <= pos <= hi

    file_name: dict[str, str] = {}  # requested name -> the file's name
    tabix_region = None
    if reg_chrom is not None and _tabix_ok(path):
        names = _tabix_contigs(path)
        if names is not None:
            fc = _resolve_contig(path, reg_chrom, names)
            file_name[reg_chrom] = fc
            tabix_region = fc if start is None else f"{fc}:{start}-{end}"
    if reg_chrom is not None and tabix_region is None:
        log.info("%s: no usable tabix index (or no pysam): scanning the whole file", path)
    label = "line of the tabix output" if tabix_region else "line"
    with _vcf_source(path, tabix_region) as stream:
        scan = _scan_vcf(path, stream, label=label, select=select, phased=phased)

    if want is None:
        out = [(c, c) for c in scan.chroms]
    else:
        if tabix_region is None:
            absent = []
            for c in want:
                try:
                    file_name[c] = _resolve_contig(path, c, scan.chroms)
                except ConfigError:
                    absent.append(c)
            if absent:
                raise _no_contig_error(path, absent, scan.chroms)
        twice = {f for f in file_name.values() if list(file_name.values()).count(f) > 1}
        if twice:
            raise ConfigError(
                f"{path}: chromosomes {sorted(c for c in want if file_name[c] in twice)} are all "
                f"contig {sorted(twice)[0]!r} of the file (a 'chr' prefix apart): request it once"
            )
        order = {c: i for i, c in enumerate(scan.chroms)}
        # in file order; a tabix-indexed contig without records in the region goes last (empty)
        out = sorted(((c, file_name[c]) for c in want), key=lambda x: order.get(x[1], len(order)))

    if samples is not None:
        samples = list(samples)
        missing = [s for s in samples if s not in set(scan.samples)]
        if missing:
            raise ConfigError(f"{path}: sample(s) not in the VCF header: {', '.join(missing)}")
        dup = sorted({s for s in samples if samples.count(s) > 1})
        if dup or not samples:
            raise ConfigError(f"samples must be distinct and non-empty; repeated: {dup}")

    n_unphased = sum(scan.unphased.get(f, 0) for _, f in out)
    if n_unphased and phased == "auto":
        log.warning(
            "%s: %d records have unphased heterozygous calls; treating them as phased "
            "(haplotype order within an individual is arbitrary; phased='pseudo' silences this, "
            "'require' refuses such files)",
            path,
            n_unphased,
        )

    ploidy = scan.ploidy
    if ploidy is None:  # no call in what was read (an empty region): ask the file's first call
        ploidies = _first_call(ploidy_source, samples).ploidies
        ploidy = max(ploidies.values(), default=1)
    with _vcf_source(path, tabix_region) as stream:
        blocks = _read_vcf_genotypes(
            path, stream, scan, ploidy, samples, {f for _, f in out}, lo, hi
        )
    names = samples if samples is not None else scan.samples
    result = []
    for chrom, fc in out:
        pos_parts, hap_parts, st = blocks.get(fc, ([], [], {}))
        stats = {k: st.get(k, 0) for k in _STAT_KEYS}
        stats["unphased_records"] = scan.unphased.get(fc, 0)
        span = scan.spans.get(fc) if tabix_region is None else None
        if tabix_region is not None and stats["input_sites"] == 0:
            span = _tabix_span(path, fc)  # only for the error message: ~30 index lookups
        hd = HaplotypeData(
            chrom=chrom,
            positions=np.concatenate(pos_parts) if pos_parts else np.zeros(0),
            haplotypes=(
                np.concatenate(hap_parts)
                if hap_parts
                else np.zeros((0, len(names) * ploidy), dtype=np.uint8)
            ),
            sample_names=list(names),
            ploidy=ploidy,
            length=scan.contig_lengths.get(fc, scan.contig_lengths.get(chrom)),
            source=str(path),
            region=(start, end) if start is not None else None,
            stats=stats,
            contig_span=span,
        )
        if fc != chrom:
            hd.notes.append(f"chromosome {chrom!r} read as the file's contig {fc!r} ('chr' prefix)")
            log.info("%s: %s", path, hd.notes[-1])
        if stats["duplicate_records"]:
            hd.notes.append(
                f"{stats['duplicate_records']} records repeat an earlier record's POS, REF, ALT and "
                "genotypes; all are kept (distinct mutations at one rounded position in simulated "
                "data; in real data repeated lines: bcftools norm --rm-dup exact removes them)"
            )
            log.warning("%s: %s: %s", path, _where(hd), hd.notes[-1])
        _log_stats(path, hd)
        result.append(hd)
    return result


def _read_bcf(path: Path, **kw) -> list[HaplotypeData]:
    """``read_vcf`` on the text decoding of a BCF; errors and results name the BCF file."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="quantscan-bcf-") as tmp:
        text = Path(tmp) / f"{path.stem}.vcf"
        _decode_bcf(path, text, kw.get("region"))
        try:
            result = _read_vcf_text(text, ploidy_source=path, **kw)
        except (InputFormatError, ConfigError) as e:
            raise type(e)(str(e).replace(str(text), f"{path} (decoded from BCF)")) from None
    for hd in result:
        hd.source = str(path)
    return result


def _read_vcf_genotypes(path, stream, scan, ploidy, samples, want, lo, hi):
    """Second pass: allel parses CHROM/POS/REF/ALT/GT in chunks; keep biallelic polymorphic SNPs.

    Chromosome and region filtering is done here on the parsed chunks rather than by allel's
    ``region``, which misreads chromosome names containing ':'.
    """
    import allel

    cols = None
    if samples is not None:
        # allel returns the selected samples in file order; reorder to the caller's order.
        rank = {s: i for i, s in enumerate(s for s in scan.samples if s in set(samples))}
        perm = np.array([rank[s] for s in samples], dtype=np.intp)
        cols = (perm[:, None] * ploidy + np.arange(ploidy)).ravel()
    blocks: dict[str, tuple[list, list, dict]] = {}
    stacked = {c: (np.array(sorted(v), dtype=np.int64), v) for c, v in scan.stacked.items()}
    # records of each stacked POS met so far: a chunk boundary can split a stack
    seen_at: dict[tuple[str, int], int] = {}
    with warnings.catch_warnings():
        # allel warns about absent FORMAT/INFO header lines; the first pass checked what matters.
        warnings.simplefilter("ignore")
        try:
            _, _, _, chunks = allel.iter_vcf_chunks(
                stream,
                fields=[
                    "variants/CHROM",
                    "variants/POS",
                    "variants/REF",
                    "variants/ALT",
                    "calldata/GT",
                ],
                # Two ALT slots tell multi-allelic records apart, two characters of REF/ALT tell
                # SNPs from indels and symbolic alleles; that is all we need.
                numbers={"variants/ALT": 2, "calldata/GT": ploidy},
                types={"variants/REF": "S2", "variants/ALT": "S2", "calldata/GT": "i1"},
                samples=samples,
                chunk_length=_CHUNK,
            )
            for chunk, *_ in chunks:
                _process_chunk(path, chunk, cols, want, lo, hi, blocks, stacked, seen_at)
        except InputFormatError:
            raise
        except Exception as e:  # the first pass should have caught it; never show a bare traceback
            raise InputFormatError(f"{path}: scikit-allel could not parse the VCF: {e}") from e
    return blocks


_NOT_SNP = np.frombuffer(b"*.Nn<", dtype=np.uint8)


def _single_base(a: np.ndarray) -> np.ndarray:
    """For an S2 array: is the value one allele character (A, C, G, T in any case, or the 0/1 of
    tskit's binary-model VCFs), not '*', '.', 'N', an indel or a symbolic allele?"""
    b = np.ascontiguousarray(a, dtype="S2").view(np.uint8).reshape(-1, 2)
    return (b[:, 0] != 0) & ~np.isin(b[:, 0], _NOT_SNP) & (b[:, 1] == 0)


def _process_chunk(path, chunk, cols, want, lo, hi, blocks, stacked, seen_at):
    chrom = chunk["variants/CHROM"]
    pos = chunk["variants/POS"]
    gt = chunk["calldata/GT"]
    # int8 -1 (allel's fill for missing) reinterpreted as uint8 is 255 == MISSING.
    hap = gt.reshape(gt.shape[0], -1).view(np.uint8)
    if cols is not None:
        hap = hap[:, cols]
    for c in dict.fromkeys(chrom.tolist()):
        if c not in want:
            continue
        idx = np.flatnonzero((chrom == c) & (pos >= lo) & (pos <= hi))
        p, r, a, h = pos[idx], chunk["variants/REF"][idx], chunk["variants/ALT"][idx], hap[idx]
        n_alt = (a[:, 0] != b"").astype(np.int64) + (a[:, 1] != b"")
        multi = n_alt >= 2
        top = np.where(h == MISSING, 0, h).max(axis=1, initial=0)
        bad = ~multi & (top > n_alt)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputFormatError(
                f"{path}: record {c}:{int(p[i])}: GT field has allele index {int(top[i])} but "
                f"ALT lists {int(n_alt[i])} allele(s)"
            )
        # Records sharing a POS (see the package doc): split multi-allelic sites, repeated lines.
        dup = np.zeros(len(idx), dtype=bool)
        if c in stacked:
            at, verdicts = stacked[c]
            for i in np.flatnonzero(np.isin(p, at)):
                k = (c, int(p[i]))
                j = seen_at.get(k, 0)
                seen_at[k] = j + 1
                dup[i] = verdicts[k[1]][j] == _DUP
                multi[i] |= verdicts[k[1]][j] == _MULTI
        # ALT '.' (n_alt 0) is an invariant site of an all-sites VCF: monomorphic, not a non-SNP.
        snp = (n_alt == 1) & _single_base(r) & _single_base(a[:, 0])
        non_snp = ~multi & (n_alt == 1) & ~snp
        rest = ~multi & ~non_snp
        called = (h != MISSING).any(axis=1)
        poly = (h == 0).any(axis=1) & (h == 1).any(axis=1)
        keep = rest & snp & poly
        kept = np.ascontiguousarray(h[keep])
        pos_parts, hap_parts, st = blocks.setdefault(c, ([], [], {}))
        for key, n in (
            ("input_sites", len(idx)),
            ("duplicate_records", dup.sum()),
            ("multiallelic", multi.sum()),
            ("non_snp", non_snp.sum()),
            ("uncalled", (rest & ~called).sum()),
            ("monomorphic", (rest & called & ~poly).sum()),
            ("kept", keep.sum()),
            ("missing_calls", (kept == MISSING).sum()),
        ):
            st[key] = st.get(key, 0) + int(n)
        pos_parts.append(p[keep].astype(np.float64))
        hap_parts.append(kept)
