"""The validating pass over VCF text that ``vcf.read_vcf`` runs before scikit-allel parses it
(allel silently mis-parses broken VCFs: ``0-1`` becomes ``0/.``, a short record missing calls, a
POS beyond int32 wraps). Checks the '#CHROM ... FORMAT samples' header and unique sample names,
the column count, POS (an integer within int32, sorted, each CHROM's records contiguous), FORMAT
starting with GT, GT syntax and ploidy, and unphased heterozygous calls ('/'; an error under
phased='require'); gives a verdict for each record that shares a POS with others (a split
multi-allelic site, a repeated line). The first problem is an ``InputFormatError`` naming the
line, CHROM:POS and field.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

from quantscan.errors import InputFormatError

from .formats import _read_errors

_VCF_FIXED = ["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO"]
_INT32_MAX = 2**31 - 1  # allel stores POS as int32 and wraps silently beyond it


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
