"""Read haplotype data for the sweep scan: VCF, ms-style simulator output and tskit tree sequences.

Every reader returns ``HaplotypeData`` objects with one shared contract:

* ``positions``: float64, sorted (non-decreasing). VCF: 1-based bp as written. ms: the [0, 1]
  fraction times ``length``. Tree sequences: tskit coordinates unchanged (0-based, continuous), so
  a simulated sweep at ``L / 2`` is at ``L / 2`` here too; the offset of at most 1 bp from VCF
  coordinates is far below any window size.
* ``haplotypes``: uint8, shape (n_sites, n_haplotypes); 0 = ancestral/REF, 1 = derived/ALT,
  ``MISSING`` (255) = no call. Readers never impute: the image encoder decides what missing means
  (``HaplotypeData.filled`` gives the usual "missing as ancestral" 0/1 matrix).
* Only biallelic SNPs that are polymorphic among the returned haplotypes (at least one 0 and one
  1; missing calls ignored). Diploid (or polyploid) VCF samples give ``ploidy`` haplotypes each,
  sample-major: ``s1_h1, s1_h2, s2_h1, ...``.

What is dropped, and counted in ``stats`` (VCF counts are records; each dropped record is counted
once, under the first reason that applies, in this order; ``kept`` + the four drop counts =
``input_sites``):

1. ``multiallelic``: records with two or more ALT alleles (dropped whatever the selected samples
   carry, as ``bcftools view -m2 -M2`` would), and every record of a position that has records
   with different alleles: ``bcftools norm -m-`` splits a multi-allelic site into biallelic
   records at one POS (a carrier of the second ALT reads as REF in the first record), so they are
   not independent SNPs and keeping them would count one site twice. A site gives the same
   result whether or not it was split; a SNP next to an indel at the same POS is such a site too
   (unsplit it is REF A, ALT T,AT). ALT '.' records (all-sites VCFs) do not make a site
   multi-allelic. Tree sequences: sites where a sample carries a second derived state; the
   ancestral/derived states of the returned samples decide, not the site's mutation list.
2. ``non_snp``: indels, MNPs, symbolic alleles (``<DEL>``), '*', 'N'.
3. ``uncalled``: no genotype call among the selected haplotypes (every call missing).
4. ``monomorphic``: every call the same allele (including ALT '.' invariant sites), among the
   selected haplotypes: a sample subset can make a SNP monomorphic.

``missing_calls`` counts the MISSING entries in kept sites (a '.' allele, a whole-call '.', or the
absent second allele of a haploid call in a diploid file; tree sequences: isolated samples);
``unphased_records`` (VCF) the selected records (kept or not) with an unphased heterozygous call.

Duplicate positions that remain are kept: positions are never deduplicated (sweeps.md 3.1).
Simulators repeat positions for distinct mutations: ms prints a few digits (``tskit.write_ms``
rounds to 4, giving thousands of collisions per 100 kb), and VCFs of simulations floor positions
to integer bp (two mutations on one branch then give two identical lines). Tree sequences cannot
repeat a site position. In a VCF, records with the same POS, REF and ALT are all kept;
``duplicate_records`` counts those whose genotype calls (GT) also repeat an earlier record's,
and the log warns: in real data that is a repeated line (overlapping files concatenated), which
``bcftools norm --rm-dup exact`` removes. Records at one POS with different alleles are rule 1.

Chromosome names: a requested chromosome or region that differs from the file's contig only by a
'chr' prefix ('chr2' vs '2', 'chrM' vs 'MT') is read under the file's name; the result keeps the
requested name and says so in ``notes`` and the log. A chromosome without records in the file is
a ``ConfigError`` listing the contigs that have records. Contig lists come from the records (or
the tabix/CSI index), never from ``##contig`` header lines, which reference-wide headers fill with
every contig of the assembly.

Malformed input raises ``InputFormatError`` naming the file, the record (line and CHROM:POS, or
ms replicate and line) and the field. scikit-allel silently mis-parses some broken VCFs (``0-1``
becomes ``0/.``, a short record becomes missing calls, POS beyond int32 wraps), so ``read_vcf``
validates every line in a cheap streaming pass before allel parses the genotypes. An input with
no usable SNP is not an error for the readers (a region may legitimately be empty), but
``check_usable`` (and ``scan_workflow.read_chromosome``) turns it into one that names the likely
cause.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import itertools
import logging
import os
import re
import warnings
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from quantscan.errors import ConfigError, InputFormatError

log = logging.getLogger(__name__)

MISSING = 255
"""Haplotype code for a missing call."""

FORMATS = ("vcf", "bcf", "ms", "trees")
PHASED_MODES = ("auto", "require", "pseudo")

_GZIP_MAGIC = b"\x1f\x8b"
_KASTORE_MAGIC = b"\x89KAS\r\n\x1a\n"  # tskit .trees files are kastore archives
_VCF_FIXED = ["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO"]
_INT32_MAX = 2**31 - 1  # allel stores POS as int32 and wraps silently beyond it
_CHUNK = 65536


@dataclass(eq=False)  # numpy fields: compare arrays explicitly, not with ==
class HaplotypeData:
    """Haplotypes of one chromosome (VCF), replicate (ms) or tree sequence; see the module doc."""

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
    and, for VCF, ``unphased_records``; see the module doc."""
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


# --------------------------------------------------------------------------------------------------
# Format detection and opening


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


def read_haplotypes(path: str | os.PathLike, fmt: str = "auto", **kw) -> list[HaplotypeData]:
    """Read any supported input; ``fmt``: 'auto' or one of ``FORMATS``; ``kw`` go to the reader."""
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt in ("vcf", "bcf"):
        return read_vcf(path, **kw)
    if fmt == "ms":
        return read_ms(path, **kw)
    if fmt == "trees":
        return read_trees(path, **kw)
    raise ConfigError(f"unknown input format {fmt!r}; expected 'auto' or one of {FORMATS}")


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


# --------------------------------------------------------------------------------------------------
# VCF


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


@dataclass
class _VcfScan:
    """What the validating pass learned about a VCF (or the tabix slice of one)."""

    samples: list[str]
    contig_lengths: dict[str, int]
    chroms: list[str]  # in file order
    ploidy: int | None  # None: no record has a genotype call
    unphased: dict[str, int]  # selected records with an unphased heterozygous call, per chromosome
    spans: dict[str, tuple[int, int]]  # first and last POS per chromosome
    stacked: dict[str, dict[int, list[int]]]  # chrom -> POS -> verdict per record (_stack_verdicts)


_ALLELE = r"(?:\d+|\.)"
_ANY_SAMPLE = rf"{_ALLELE}(?:[|/]{_ALLELE})*(?::[^\t]*)?"
_ANY_SAMPLES_RE = re.compile(rf"{_ANY_SAMPLE}(?:\t{_ANY_SAMPLE})*")


class _GtChecker:
    """Validate the sample columns of a record for a known ploidy and find unphased calls.

    A regex over every call costs ~15 us per 64-sample line, most of a 200k-record scan, so the
    common layout (FORMAT=GT, single-digit alleles, full ploidy: '0|1\t1|1...') is checked with
    string slicing first and only other lines go through the regex.
    """

    def __init__(self, ploidy: int, n_samples: int):
        self.ploidy = ploidy
        # A call has 1..ploidy alleles: fewer (a haploid call on chrX in a diploid file) is allowed
        # and allel pads it with missing; more would be silently truncated by allel: an error.
        gt = rf"{_ALLELE}(?:[|/]{_ALLELE}){{0,{ploidy - 1}}}"
        sample = rf"{gt}(?::[^\t]*)?"
        self.samples_re = re.compile(rf"{sample}(?:\t{sample})*")
        if ploidy == 2:
            # Heterozygous unphased call a/b with b != a; homozygous 0/0 has no phase to lose.
            self.unphased_re = re.compile(r"(?:^|\t)(\d+)/(?!\1(?:[\t:]|$))\d+")
        else:
            self.unphased_re = re.compile(r"(?:^|\t)(?=[^\t:]*/)(?=[^\t:]*\d)")
        self.fast_len = 2 * ploidy * n_samples - 1
        self.tabs = "\t" * (n_samples - 1)
        self.n_sep = (ploidy - 1) * n_samples

    def _fast(self, part: str) -> bool:
        if len(part) != self.fast_len:
            return False
        seps = part[1::2]  # separators and tabs; alleles sit at even offsets
        return (
            seps[self.ploidy - 1 :: self.ploidy] == self.tabs
            and seps.count("|") + seps.count("/") == self.n_sep
            and not part[0::2].strip("0123456789.")
        )

    def check(self, part: str) -> tuple[bool, bool]:
        """(valid, fast layout)."""
        if self._fast(part):
            return True, True
        return self.samples_re.fullmatch(part) is not None, False

    def first_unphased(self, part: str, fast: bool) -> int | None:
        """Index of the first sample with an unphased heterozygous call, or None."""
        if "/" not in part:
            return None
        if fast and self.ploidy == 2:
            a, sep, b = part[0::4], part[1::4], part[2::4]
            i = sep.find("/")
            while i >= 0:
                if a[i] != b[i] and a[i] != "." and b[i] != ".":
                    return i
                i = sep.find("/", i + 1)
            return None
        m = self.unphased_re.search(part)
        return None if m is None else part[: m.start() + 1].count("\t")


def _record_ploidy(samples_part: str) -> int | None:
    """Largest number of alleles in a call of this record, or None if every call is '.'."""
    gts = [s.split(":", 1)[0] for s in samples_part.split("\t")]
    if all(g == "." for g in gts):
        return None
    return max(len(re.split(r"[|/]", g)) for g in gts)


def _scan_vcf(path: Path, stream, *, label: str, select, phased: str) -> _VcfScan:
    """Validate every line of a VCF stream; raise InputFormatError at the first problem.

    ``select(chrom, pos)`` says whether a record is wanted (unphased calls elsewhere don't matter).
    ``label`` names the line numbers ("line", or "line of the tabix output").
    """
    text = io.TextIOWrapper(stream, encoding="utf-8", newline=None)
    lineno = 0
    rec = ""

    def where():
        return f"{label} {lineno}" + (f" ({rec})" if rec else "")

    def fail(msg):
        raise InputFormatError(f"{path}: {where()}: {msg}")

    contig_lengths: dict[str, int] = {}
    samples: list[str] | None = None
    with _read_errors(path, where):
        for line in text:
            lineno += 1
            if line.startswith("##"):
                m = re.match(r"##contig=<.*?\bID=([^,>]+).*?\blength=(\d+)", line)
                if m:
                    contig_lengths[m.group(1)] = int(m.group(2))
                continue
            if line.startswith("#CHROM"):
                cols = line.rstrip("\r\n").split("\t")
                if cols[:8] != _VCF_FIXED:
                    fail(
                        "header line must be tab-separated '#CHROM POS ID REF ALT QUAL FILTER "
                        f"INFO FORMAT samples...'; got {line[:80].rstrip()!r}"
                    )
                if len(cols) < 10 or cols[8] != "FORMAT":
                    fail("header has no FORMAT column and samples, so there are no genotypes")
                samples = cols[9:]
                dup = sorted({s for s in samples if samples.count(s) > 1})
                if dup:
                    fail(f"duplicate sample names in the header: {', '.join(dup)}")
                break
            if line.startswith("#"):
                continue  # stray comment line; allel skips these too
            fail("data before the '#CHROM' header line (missing or malformed VCF header)")
        if samples is None:
            what = "empty file" if lineno == 0 else "no '#CHROM' header line"
            raise InputFormatError(f"{path}: not a VCF: {what}")

        ncols = 9 + len(samples)
        ploidy = None
        checker = None
        chroms: list[str] = []
        seen: set[str] = set()
        unphased: dict[str, int] = {}
        spans: dict[str, tuple[int, int]] = {}
        groups: dict[tuple[str, int], list[tuple]] = {}  # (REF, ALT, genotypes) sharing a POS
        cur, first, last, alleles = None, -1, -1, ("", "", "GT", "")
        for line in text:
            lineno += 1
            rec = ""
            line = line.rstrip("\r\n")
            if not line:
                continue
            if line.startswith("#"):
                fail("header line after the first record")
            n = line.count("\t") + 1
            f = line.split("\t", 9)
            rec = f"{f[0]}:{f[1]}" if n > 1 else ""
            if n != ncols:
                fail(
                    f"expected {ncols} tab-separated columns (8 fixed + FORMAT + {len(samples)} "
                    f"samples), found {n}"
                )
            chrom, pos_s = f[0], f[1]
            try:
                pos = int(pos_s)
            except ValueError:
                fail(f"POS field is not an integer: {pos_s!r}")
            if not 0 <= pos <= _INT32_MAX:
                fail(f"POS field out of range (0..{_INT32_MAX}): {pos}")
            if chrom != cur:
                if chrom in seen:
                    fail(f"records of {chrom!r} are not contiguous (file not sorted by CHROM, POS)")
                if cur is not None:
                    spans[cur] = (first, last)
                seen.add(chrom)
                chroms.append(chrom)
                cur, first, last = chrom, pos, -1
            elif pos < last:
                fail(f"POS {pos} is smaller than the previous POS {last} (file not sorted)")
            elif pos == last:
                groups.setdefault((chrom, pos), [alleles]).append((f[3], f[4], f[8], f[9]))
            last, alleles = pos, (f[3], f[4], f[8], f[9])
            fmt = f[8]
            if not (fmt == "GT" or fmt.startswith("GT:")):
                fail(f"FORMAT field must start with GT, got {fmt!r}")
            part = f[9]
            if checker is None:
                # Ploidy comes from the first record with a call; until then accept any call shape.
                if _ANY_SAMPLES_RE.fullmatch(part) is None:
                    fail(_explain_gt(part, samples, None))
                ploidy = _record_ploidy(part)
                if ploidy is None:
                    continue
                checker = _GtChecker(ploidy, len(samples))
            valid, fast = checker.check(part)
            if not valid:
                fail(_explain_gt(part, samples, ploidy))
            if "/" in part and select(chrom, pos):
                i = checker.first_unphased(part, fast)
                if i is None:
                    continue
                unphased[chrom] = unphased.get(chrom, 0) + 1
                if phased == "require":
                    who = samples[i]
                    fail(
                        f"GT field of sample {who!r} is unphased ('/'); phased='require' needs "
                        "phased genotypes (phased='pseudo' accepts them in arbitrary order)"
                    )
    if cur is not None:
        spans[cur] = (first, last)
    stacked: dict[str, dict[int, list[int]]] = {}
    for (chrom, pos), group in groups.items():
        stacked.setdefault(chrom, {})[pos] = _stack_verdicts(
            [(r, a, hash(_gt_only(fmt, g))) for r, a, fmt, g in group]
        )
    return _VcfScan(samples, contig_lengths, chroms, ploidy, unphased, spans, stacked)


_KEEP, _DUP, _MULTI = 0, 1, 2


def _gt_only(fmt: str, part: str) -> str:
    """The GT subfields of a record's sample columns (FORMAT starts with GT: checked)."""
    if fmt == "GT":
        return part
    return "\t".join(x.split(":", 1)[0] for x in part.split("\t"))


def _stack_verdicts(records: list[tuple[str, str, int]]) -> list[int]:
    """Per record at one POS, in file order, from (REF, ALT, hash of the GT columns): _MULTI
    (records with different alleles: a multi-allelic site, split or not), _DUP (the same REF, ALT
    and genotype calls as an earlier record: counted, not dropped) or _KEEP. ALT '.' (an
    invariant record) carries no allele and is always _KEEP."""
    lines: set[tuple[str, str, int]] = set()
    alleles: set[tuple[str, str]] = set()
    out = []
    for ref, alt, gts in records:
        key = (ref.upper(), alt.upper())
        if alt == ".":
            out.append(_KEEP)
        elif (*key, gts) in lines:
            out.append(_DUP)
        else:
            lines.add((*key, gts))
            alleles.add(key)
            out.append(_KEEP)
    if len(alleles) > 1:
        out = [_KEEP if r[1] == "." else _MULTI for r in records]
    return out


def _explain_gt(part: str, samples: list[str], ploidy: int | None) -> str:
    for name, value in zip(samples, part.split("\t"), strict=True):
        gt = value.split(":", 1)[0]
        alleles = re.split(r"[|/]", gt)
        if not all(re.fullmatch(_ALLELE, a) for a in alleles):
            return f"GT field of sample {name!r} is not a genotype: {gt!r}"
        if ploidy is not None and len(alleles) > ploidy:
            return (
                f"GT field of sample {name!r} has {len(alleles)} alleles ({gt!r}) but earlier "
                f"records have ploidy {ploidy}"
            )
    return "malformed genotype columns"  # pragma: no cover - the regexes and this loop agree


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
    a 'chr' prefix is read under the file's name (see the module doc); a name without records is a
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
        # Records sharing a POS (see the module doc): split multi-allelic sites, repeated lines.
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


# --------------------------------------------------------------------------------------------------
# ms / mssel / msHOT / discoal / scrm text output


def _ms_header_nsam(header: list[str]) -> int | None:
    """Sample size from a command line such as 'ms 128 1000 -t 2000' or 'discoal 128 100 100000'."""
    for line in header:
        tok = line.split()
        if len(tok) >= 2 and not tok[0].lstrip("-").replace(".", "").isdigit() and tok[1].isdigit():
            return int(tok[1])
        if tok:
            return None  # the first non-blank line is the command line, or there is none
    return None


def iter_ms(
    path: str | os.PathLike,
    *,
    length: float,
    n_haplotypes: int | None = None,
) -> Iterator[HaplotypeData]:
    """Yield replicates of ms-style output one at a time (constant memory); see ``read_ms``."""
    path = Path(path)
    if not length or length <= 0:
        raise ConfigError(f"length must be > 0, got {length!r}")
    fh = io.TextIOWrapper(_open_binary(path), encoding="utf-8", newline=None)
    lineno = 0
    rep = 0

    def where():
        return f"replicate {rep}, line {lineno}" if rep else f"line {lineno}"

    def fail(msg):
        raise InputFormatError(f"{path}: {where()}: {msg}")

    def next_line():
        nonlocal lineno
        line = fh.readline()
        if not line:
            return None
        lineno += 1
        return line.strip()

    with fh, _read_errors(path, where):
        header = []
        while (line := next_line()) is not None and not line.startswith("//"):
            header.append(line)
        if line is None:
            what = "empty file" if lineno == 0 else "no '//' replicate line"
            raise InputFormatError(f"{path}: not ms output: {what}")
        nsam = n_haplotypes
        header_nsam = _ms_header_nsam(header)
        if nsam is None:
            nsam = header_nsam
        elif header_nsam is not None and header_nsam != nsam:
            raise ConfigError(
                f"{path}: n_haplotypes={nsam} but the command line says {header_nsam}"
            )
        pending: list[tuple[int, dict]] = []  # zero-site replicates seen before nsam is known

        def make(r, pos, hap, stats):
            return HaplotypeData(
                chrom=f"rep{r}",
                positions=pos * float(length),
                haplotypes=hap,
                sample_names=[f"hap{i + 1}" for i in range(hap.shape[1])],
                ploidy=1,
                length=float(length),
                source=str(path),
                stats=stats,
            )

        def empty_stats():
            return dict.fromkeys(_STAT_KEYS, 0)

        while line is not None:  # `line` is a '//' line here
            rep += 1
            while True:
                line = next_line()
                if line is None:
                    fail("file ends before the 'segsites:' line")
                if not line or line.startswith(("(", "[", "time:", "prob:")):
                    continue  # trees (-T), tree lengths (-L), probabilities (mssel/msms)
                break
            m = re.fullmatch(r"segsites:\s*(\d+)", line)
            if not m:
                fail(f"expected 'segsites: N', got {line[:60]!r}")
            segsites = int(m.group(1))
            line = next_line()
            while line == "":
                line = next_line()
            if segsites == 0:
                if line is not None and line.startswith("positions:"):
                    line = next_line()
                rows = []
            else:
                if line is None or not line.startswith("positions:"):
                    fail(f"expected 'positions:' after 'segsites: {segsites}'")
                try:
                    pos = np.array(line[len("positions:") :].split(), dtype=np.float64)
                except ValueError:
                    fail("positions line has a value that is not a number")
                if pos.size != segsites:
                    fail(f"positions line has {pos.size} values but segsites is {segsites}")
                if np.any(pos < 0) or np.any(pos > 1):
                    fail("positions must be fractions in [0, 1] (scaled by `length`)")
                if np.any(np.diff(pos) < 0):
                    fail("positions are not sorted")
                rows, first_row_line = [], lineno + 1
                while (line := next_line()) and not line.startswith("//"):
                    if len(line) != segsites:
                        fail(
                            f"haplotype {len(rows) + 1} has {len(line)} characters, "
                            f"expected segsites = {segsites}"
                        )
                    rows.append(line)
            # Skip blank lines up to the next replicate; anything else is stray text.
            while line == "":
                line = next_line()
            if line is not None and not line.startswith("//"):
                fail(f"unexpected line {line[:60]!r} (more haplotypes after a blank line?)")

            if segsites == 0:
                st = empty_stats()
                if nsam is None:
                    pending.append((rep, st))
                    continue
                yield make(rep, np.zeros(0), np.zeros((0, nsam), dtype=np.uint8), st)
                continue
            if nsam is None:
                nsam = len(rows)
                for r, st in pending:
                    yield make(r, np.zeros(0), np.zeros((0, nsam), dtype=np.uint8), st)
                pending = []
            if len(rows) != nsam:
                raise InputFormatError(
                    f"{path}: replicate {rep}, lines {first_row_line}-"
                    f"{first_row_line + len(rows) - 1}: {len(rows)} haplotype rows, expected {nsam}"
                )
            mat = np.frombuffer("".join(rows).encode("ascii", errors="replace"), dtype=np.uint8)
            mat = (mat - ord("0")).reshape(nsam, segsites)
            if mat.max(initial=0) > 1:
                k, j = (int(x[0]) for x in np.nonzero(mat > 1))
                raise InputFormatError(
                    f"{path}: replicate {rep}, line {first_row_line + k}: haplotype {k + 1}, "
                    f"site {j + 1}: character {rows[k][j]!r} is not 0 or 1"
                )
            hap = np.ascontiguousarray(mat.T)
            poly = hap.any(axis=1) & ~hap.all(axis=1)
            st = empty_stats()
            st.update(
                input_sites=segsites, kept=int(poly.sum()), monomorphic=int(segsites - poly.sum())
            )
            yield make(rep, pos[poly], hap[poly], st)
        for r, st in pending:  # every replicate had zero sites and no header gave the sample size
            yield make(r, np.zeros(0), np.zeros((0, 0), dtype=np.uint8), st)


def read_ms(
    path: str | os.PathLike, *, length: float, n_haplotypes: int | None = None
) -> list[HaplotypeData]:
    """Read every replicate of ms/mssel/msHOT/discoal/scrm output (plain or gzip).

    Positions are the [0, 1] values times ``length``; duplicates are kept. Chromosome names are
    'rep1', 'rep2', ... The haplotype count comes from ``n_haplotypes``, else the command line
    ('ms 128 1000 ...'), else the first replicate with sites; all replicates must match.
    Monomorphic columns (rare in simulator output) are dropped and counted like in ``read_vcf``.
    """
    return list(iter_ms(path, length=length, n_haplotypes=n_haplotypes))


# --------------------------------------------------------------------------------------------------
# tskit tree sequences


def _ts_samples(ts) -> tuple[list[str], int]:
    """Sample names and ploidy: individuals when every sample node belongs to one, contiguously."""
    nodes = ts.samples()
    ind = ts.nodes_individual[nodes]
    if nodes.size and np.all(ind >= 0):
        starts = np.flatnonzero(np.r_[True, ind[1:] != ind[:-1]])
        runs = np.diff(np.r_[starts, ind.size])
        ids = ind[starts]
        if np.unique(ids).size == ids.size and np.all(runs == runs[0]):
            names = []
            for i in ids:
                md = ts.individual(int(i)).metadata
                name = md.get("name") if isinstance(md, dict) else None
                names.append(str(name) if name else f"tsk_{int(i)}")
            return names, int(runs[0])
    return [f"n{int(u)}" for u in nodes], 1


def _ts_chrom(ts, path: Path | None) -> str:
    md = ts.metadata
    if isinstance(md, dict):
        for key in ("chrom", "chromosome", "contig"):
            if isinstance(md.get(key), str) and md[key]:
                return md[key]
    if path is None:
        return "1"
    name = path.name
    for ext in (".trees", ".ts", ".tsz"):
        name = name.removesuffix(ext)
    return name


def read_trees(path, *, chrom: str | None = None) -> list[HaplotypeData]:
    """Read a tskit tree sequence (path or ``tskit.TreeSequence``) into one ``HaplotypeData``.

    Sites where a sample carries a second derived state (allele index >= 2) are dropped and counted
    as multi-allelic; 0 is the site's ancestral state, 1 its (first) derived state. Positions are
    tskit coordinates (0-based, float), length is ``sequence_length``. The chromosome name is
    ``chrom``, else top-level metadata 'chrom'/'chromosome'/'contig', else the file stem. Isolated
    samples (missing data) are MISSING.
    Peak memory is about 4 bytes per genotype (``genotype_matrix``).
    """
    import tskit

    if isinstance(path, tskit.TreeSequence):
        ts, src, p = path, "<TreeSequence>", None
    else:
        p = Path(path)
        try:
            ts = tskit.load(p)
        except OSError as e:
            raise InputFormatError(f"{p}: cannot read: {e.strerror or e}") from e
        except Exception as e:  # tskit raises FileFormatError, KeyError, ValueError... by version
            raise InputFormatError(f"{p}: not a readable tskit tree sequence: {e}") from e
        src = str(p)
    names, ploidy = _ts_samples(ts)
    g = ts.genotype_matrix()  # int32, -1 = missing
    pos = ts.sites_position
    # clipped at 2 (any index > 1 only marks a multi-allelic site), allele indices and -1 fit in
    # int8: the site masks then read 4x less memory (1.5 s -> 0.3 s for 5 Mb x 128 haplotypes)
    g8 = np.minimum(g, 2, out=g).astype(np.int8)
    del g
    multi = (g8 > 1).any(axis=1)
    poly = ~multi & (g8 == 0).any(axis=1) & (g8 == 1).any(axis=1)
    hap = g8[poly].view(np.uint8)  # -1 (missing) reads as 255 = MISSING
    hap[hap == 255] = MISSING
    called = (g8 >= 0).any(axis=1)
    stats = dict(
        input_sites=int(ts.num_sites),
        kept=int(poly.sum()),
        duplicate_records=0,  # tskit site positions are unique
        multiallelic=int(multi.sum()),
        non_snp=0,
        uncalled=int((~multi & ~called).sum()),
        monomorphic=int((~multi & called & ~poly).sum()),
        missing_calls=int((hap == MISSING).sum()),
    )
    hd = HaplotypeData(
        chrom=chrom or _ts_chrom(ts, p),
        positions=pos[poly],
        haplotypes=hap,
        sample_names=names,
        ploidy=ploidy,
        length=float(ts.sequence_length),
        source=src,
        stats=stats,
    )
    _log_stats(src, hd)
    return [hd]


# --------------------------------------------------------------------------------------------------
# Planning (cheap reads when the workflow is parsed) and usability checks


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


def _where(hd) -> str:
    """'2:135,000,000-136,000,000' for a region, else the chromosome (replicate) name."""
    if hd.region is not None:
        return f"{hd.chrom}:{hd.region[0]:,}-{hd.region[1]:,}"
    return hd.chrom


def _missing_per_haplotype(hd, rows: int = 1 << 16) -> np.ndarray:
    """Missing calls per haplotype column, in row blocks (a whole-matrix mask can be GBs)."""
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
