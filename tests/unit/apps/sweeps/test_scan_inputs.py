"""Scan inputs on users' data: contigs with records, 'chr' prefixes, empty regions, duplicate
positions, haplotype counts (quantscan.apps.sweeps.io, scan_inputs.input_chroms/read_chromosome),
and the packed chromosome files the region jobs read (scan_inputs.save/load_chromosome)."""

import gzip
import logging
import runpy
import types
from pathlib import Path

import msprime
import numpy as np
import pandas as pd
import pytest
from scan_helpers import MeanEngine, chromosome, vcf

from quantscan.apps.sweeps import io as qio
from quantscan.apps.sweeps import scan, scan_inputs
from quantscan.apps.sweeps.io import (
    MISSING,
    HaplotypeData,
    check_usable,
    count_haplotypes,
    read_vcf,
)
from quantscan.apps.sweeps.io import vcf as qvcf
from quantscan.errors import ConfigError, InputFormatError

pysam = pytest.importorskip("pysam")

LOGGER = "quantscan.apps.sweeps.io"
ROOT = Path(__file__).resolve().parents[4]

# GRCh38-style header: 25 primary contigs and 61 unplaced/decoy ones, 86 ##contig lines.
HEADER_CONTIGS = [f"chr{c}" for c in [*range(1, 23), "X", "Y", "M"]]
HEADER_CONTIGS += [f"chrUn_KI2707{k:02d}v1" for k in range(61)]


def rec(chrom, pos, ref, alt, *gts, fmt="GT", info="."):
    return "\t".join([chrom, str(pos), ".", ref, alt, ".", "PASS", info, fmt, *gts])


def vcf_text(records, samples=("s1", "s2"), contigs=HEADER_CONTIGS):
    lines = ["##fileformat=VCFv4.2"]
    lines += [f"##contig=<ID={c},length=250000000>" for c in contigs]
    lines.append('##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">')
    lines.append("\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO"]))
    lines[-1] += "\t" + "\t".join(["FORMAT", *samples])
    return "\n".join(lines + list(records)) + "\n"


def write_vcf(path, records, how="plain", **kw):
    """how: plain, gzip, tbi (bgzip + tabix index), csi (bgzip + CSI index), bgzip (no index)."""
    text = vcf_text(records, **kw)
    if how == "plain":
        path.write_text(text)
        return path
    if how == "gzip":
        with gzip.open(path, "wt") as fh:
            fh.write(text)
        return path
    plain = path.with_name(path.name.removesuffix(".gz"))
    plain.write_text(text)
    if how == "bgzip":
        pysam.tabix_compress(str(plain), str(path), force=True)
        return path
    out = pysam.tabix_index(str(plain), preset="vcf", force=True, csi=how == "csi")
    return type(path)(out)


def to_bcf(vcf_path, bcf_path, index=False):
    """bcftools view -Ob, through pysam. BCF needs every contig in the header (htslib exits on an
    undeclared one), so undeclared contigs of the records are declared first."""
    lines = vcf_path.read_text().splitlines()
    declared = {ln.split("ID=", 1)[1].split(",", 1)[0] for ln in lines if ln.startswith("##contig")}
    chroms = dict.fromkeys(ln.split("\t", 1)[0] for ln in lines if ln[:1] != "#")
    extra = [f"##contig=<ID={c}>" for c in chroms if c not in declared]
    full = bcf_path.with_suffix(".full.vcf")
    full.write_text("\n".join(lines[:1] + extra + lines[1:]) + "\n")
    with pysam.VariantFile(str(full)) as src:
        with pysam.VariantFile(str(bcf_path), "wb", header=src.header) as dst:
            for record in src:
                dst.write(record)
    if index:
        pysam.tabix_index(str(bcf_path), preset="vcf", csi=True, keep_original=True, force=True)
    return bcf_path


def snps(chrom, positions, gts=("0|1", "1|0")):
    return [rec(chrom, p, "A", "G", *gts) for p in positions]


def inp(path, fmt="vcf", **options):
    return {"format": fmt, "path": str(path), "options": {"phased": "auto", **options}}


# --------------------------------------------------------------------------------------------------
# 1. only contigs with records are planned


@pytest.mark.parametrize("how", ["plain", "gzip", "bgzip", "tbi", "csi"])
def test_input_chroms_ignore_contig_header_lines(tmp_path, how):
    path = write_vcf(tmp_path / "a.vcf.gz", snps("chr2", [100, 200, 300]), how)
    assert len(HEADER_CONTIGS) == 86
    assert scan_inputs.input_chroms(path, "vcf") == ["chr2"]
    # several contigs: order of first appearance, undeclared contigs too
    recs = snps("chr10", [5]) + snps("chr2", [7, 9]) + snps("HLA-A*01:01", [3])
    path = write_vcf(tmp_path / "b.vcf.gz", recs, how)
    assert scan_inputs.input_chroms(path, "vcf") == ["chr10", "chr2", "HLA-A*01:01"]


def test_input_chroms_stream_across_blocks(tmp_path):
    """Lines longer than the read block, contigs changing at block edges."""
    big = "X=" + "A" * 700_000  # a 700 kB INFO field: lines straddle the 1 MiB blocks
    recs = [rec(c, p, "A", "G", "0|1", "1|0", info=big) for c in ("c1", "c2", "c3") for p in (1, 2)]
    path = write_vcf(tmp_path / "big.vcf.gz", recs, "gzip")
    assert scan_inputs.input_chroms(path, "vcf") == ["c1", "c2", "c3"]
    # ~5 MB of short lines: runs of random length, some of one record inside a block
    rng = np.random.default_rng(1)
    runs = [(f"ctg{k}", int(n)) for k, n in enumerate(rng.choice([1, 2, 500, 40_000], 40))]
    recs = [rec(c, p, "A", "G", "0|1", "1|0") for c, n in runs for p in range(1, n + 1)]
    path = write_vcf(tmp_path / "runs.vcf.gz", recs, "gzip")
    assert scan_inputs.input_chroms(path, "vcf") == [c for c, _ in runs]


@pytest.mark.parametrize("index", [False, True])
def test_input_chroms_bcf_records_only(tmp_path, index):
    vcf = write_vcf(tmp_path / "a.vcf", snps("chr5", [10, 20]) + snps("chr7", [1]))
    bcf = to_bcf(vcf, tmp_path / "a.bcf", index=index)
    assert scan_inputs.input_chroms(bcf, "bcf") == ["chr5", "chr7"]


@pytest.mark.parametrize("how", ["plain", "tbi", "bcf"])
def test_no_records_is_a_named_error(tmp_path, how):
    path = write_vcf(tmp_path / "e.vcf.gz", [], "plain" if how == "bcf" else how)
    fmt = "vcf"
    if how == "bcf":
        path, fmt = to_bcf(path, tmp_path / "e.bcf"), "bcf"
    with pytest.raises(InputFormatError) as e:
        scan_inputs.input_chroms(path, fmt)
    assert str(path) in str(e.value) and "no variant records" in str(e.value)
    with pytest.raises(InputFormatError, match="no variant records"):
        count_haplotypes(path, fmt)


# --------------------------------------------------------------------------------------------------
# 2. 'chr' prefix mismatches


@pytest.mark.parametrize("how", ["plain", "tbi", "bcf", "bcf_indexed"])
@pytest.mark.parametrize("file_chrom,asked", [("2", "chr2"), ("chr2", "2"), ("MT", "chrM")])
def test_chr_prefix_is_mapped(tmp_path, caplog, how, file_chrom, asked):
    recs = snps("1", [5]) + snps(file_chrom, [100, 150, 200]) + snps("Z", [1])
    path = write_vcf(tmp_path / "p.vcf.gz", recs, "plain" if how.startswith("bcf") else how)
    if how.startswith("bcf"):
        path = to_bcf(path, tmp_path / "p.bcf", index=how == "bcf_indexed")
    with caplog.at_level(logging.INFO, logger=LOGGER):
        (hd,) = read_vcf(path, region=f"{asked}:120-200")
    assert hd.chrom == asked and hd.positions.tolist() == [150.0, 200.0]
    assert hd.notes == [
        f"chromosome {asked!r} read as the file's contig {file_chrom!r} ('chr' prefix)"
    ]
    assert "('chr' prefix)" in caplog.text
    # the config's chromosome, without a region, and the chroms argument
    hd = scan_inputs.read_chromosome(inp(path, "bcf" if how.startswith("bcf") else "vcf"), asked)
    assert hd.chrom == asked and hd.n_sites == 3
    assert [h.chrom for h in read_vcf(path, chroms=["Z", asked])] == [asked, "Z"]


@pytest.mark.parametrize("how", ["plain", "tbi", "bcf_indexed"])
def test_unknown_contig_names_file_and_contigs_with_records(tmp_path, how):
    contigs = [str(c) for c in range(1, 13)]
    recs = [r for c in contigs for r in snps(c, [10])]
    path = write_vcf(tmp_path / "u.vcf.gz", recs, "plain" if how == "bcf_indexed" else how)
    if how == "bcf_indexed":
        path = to_bcf(path, tmp_path / "u.bcf", index=True)
    with pytest.raises(ConfigError) as e:
        read_vcf(path, region="chrZ:1-100")
    msg = str(e.value)
    assert str(path) in msg and "chrZ" in msg and "also tried Z" in msg
    assert "present: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, ... (12 contigs)" in msg
    # a contig declared in the header but without records is not in the file either
    with pytest.raises(ConfigError, match="present: 1, 2"):
        read_vcf(path, region="chr22")


def test_both_spellings_requested_is_an_error(tmp_path):
    path = write_vcf(tmp_path / "b.vcf", snps("2", [1, 2]))
    with pytest.raises(ConfigError, match="request it once"):
        read_vcf(path, chroms=["2", "chr2"])


# --------------------------------------------------------------------------------------------------
# 3. zero usable SNPs, all-missing genotypes, fewer SNPs than a window


@pytest.mark.parametrize("how", ["plain", "tbi"])
def test_region_without_records_names_range_span_and_causes(tmp_path, how):
    path = write_vcf(tmp_path / "z.vcf.gz", snps("2", range(1000, 5001, 500)), how)
    with pytest.raises(InputFormatError) as e:
        scan_inputs.read_chromosome(inp(path, region="chr2:135,000,000-136,000,000"), "chr2")
    msg = str(e.value)
    for part in (
        str(path),
        "chr2:135,000,000-136,000,000: no usable SNPs",
        "no variant records in this range",
        "the file's records on this contig span 1,000-5,000",
        "genome build",
        "sample selection",
        "filters",
    ):
        assert part in msg, (part, msg)


def test_records_all_filtered_names_the_counts(tmp_path):
    recs = [
        rec("2", 10, "A", "G,T", "0|1", "2|0"),  # multi-allelic
        rec("2", 20, "AT", "A", "0|1", "1|0"),  # indel
        rec("2", 30, "A", "G", "0|0", "0|0"),  # monomorphic
        rec("2", 40, "A", "G", "1|1", "0|0"),  # monomorphic in s2 only
        rec("2", 50, "A", "G", ".|.", "1|1"),  # s2: monomorphic; s1: no call
    ]
    path = write_vcf(tmp_path / "f.vcf", recs)
    with pytest.raises(InputFormatError) as e:
        scan_inputs.read_chromosome(inp(path, region="2:1-100", samples=["s2"]), "2")
    msg = str(e.value)
    assert str(path) in msg and "2:1-100: no usable SNPs (5 records, none kept" in msg
    assert "1 multi-allelic, 1 non-SNP (indel, symbolic), 3 monomorphic among the 2" in msg
    hd = read_vcf(path, region="2:1-100", samples=["s2"])[0]
    assert hd.stats["monomorphic"] == 3 and hd.n_sites == 0
    with pytest.raises(InputFormatError, match="no usable SNPs"):
        check_usable(hd, window=64, source=str(path))


def test_all_missing_genotypes(tmp_path):
    recs = [rec("1", p, "A", "G", "./.", "0|1") for p in (1, 2, 3)]
    path = write_vcf(tmp_path / "m.vcf", recs)
    with pytest.raises(InputFormatError) as e:
        scan_inputs.read_chromosome(inp(path, samples=["s1"]), "1")
    assert str(path) in str(e.value) and "1: all genotype calls are missing" in str(e.value)
    (hd,) = read_vcf(path, samples=["s1"])
    assert hd.stats["uncalled"] == 3 and hd.stats["monomorphic"] == 0
    # a matrix of only missing calls (not something the readers return) is refused too
    hd = HaplotypeData("c", [1.0, 2.0], np.full((2, 2), MISSING, np.uint8), ["a", "b"])
    with pytest.raises(InputFormatError, match="all genotype calls are missing"):
        check_usable(hd, window=4, source="x.vcf")


def test_check_usable_warnings(tmp_path):
    rng = np.random.default_rng(0)
    hap = (rng.random((37, 6)) < 0.5).astype(np.uint8)
    hap[:, 0], hap[:, 1] = 0, 1
    hap[:, 5] = MISSING  # one haplotype never called
    hd = HaplotypeData("chr3", np.arange(37.0), hap, ["a", "b", "c"], ploidy=2, region=(1, 99))
    warns = check_usable(hd, window=64, source="d.vcf")
    assert warns[0].startswith("d.vcf: chr3:1-99: only 37 SNPs, fewer than one window of 64")
    assert "1 of 6 haplotypes have no genotype call (c_h2)" in warns[1]
    assert "16.7% of the genotype calls are missing" in warns[2]
    hd.haplotypes[:, 5] = 0
    assert check_usable(hd, window=16, source="d.vcf") == []


def test_read_chromosome_ms_and_trees_without_sites(tmp_path):
    ms = tmp_path / "a.ms"
    ms.write_text(
        "ms 4 2 -t 1\n1 2 3\n\n//\nsegsites: 1\npositions: 0.5\n0\n1\n1\n0\n\n//\nsegsites: 0\n"
    )
    assert scan_inputs.read_chromosome(inp(ms, "ms", length=1e4), "rep1").n_sites == 1
    with pytest.raises(InputFormatError) as e:
        scan_inputs.read_chromosome(inp(ms, "ms", length=1e4), "rep2")
    assert str(ms) in str(e.value) and "rep2: no usable SNPs" in str(e.value)
    assert "segsites: 0" in str(e.value)
    ts = msprime.sim_ancestry(3, sequence_length=1000, random_seed=1)  # no mutations
    ts.dump(tmp_path / "chrT.trees")
    with pytest.raises(InputFormatError, match="chrT: no usable SNPs"):
        scan_inputs.read_chromosome(inp(tmp_path / "chrT.trees", "trees"), "chrT")


# --------------------------------------------------------------------------------------------------
# 4. duplicate positions


def test_split_multiallelic_same_as_unsplit(tmp_path):
    common = [rec("1", 5, "C", "T", "0|1", "1|1"), rec("1", 90, "C", "T", "1|0", "0|0")]
    unsplit = [common[0], rec("1", 50, "G", "A,C", "0|1", "2|0"), common[1]]
    split = [  # bcftools norm -m- : the other ALT becomes REF in each record
        common[0],
        rec("1", 50, "G", "A", "0|1", "0|0"),
        rec("1", 50, "G", "C", "0|0", "1|0"),
        common[1],
    ]
    (a,) = read_vcf(write_vcf(tmp_path / "u.vcf", unsplit))
    (b,) = read_vcf(write_vcf(tmp_path / "s.vcf", split))
    np.testing.assert_array_equal(a.positions, [5, 90])
    np.testing.assert_array_equal(a.positions, b.positions)
    np.testing.assert_array_equal(a.haplotypes, b.haplotypes)
    assert a.stats["multiallelic"] == 1 and b.stats["multiallelic"] == 2  # records
    # a SNP and an indel at one POS are one site (REF GA, ALT A,CA unsplit): dropped
    recs = [rec("1", 50, "G", "C", "0|1", "0|0"), rec("1", 50, "GA", "G", "0|0", "1|0")]
    (c,) = read_vcf(write_vcf(tmp_path / "i.vcf", recs))
    assert c.n_sites == 0 and c.stats["multiallelic"] == 2
    # an invariant record (ALT '.') next to a SNP does not make the site multi-allelic
    recs = [rec("1", 50, "G", ".", "0|0", "0|0"), rec("1", 50, "G", "C", "0|1", "0|0")]
    (d,) = read_vcf(write_vcf(tmp_path / "v.vcf", recs))
    assert d.positions.tolist() == [50.0] and d.stats["monomorphic"] == 1


def test_repeated_records_are_kept_and_counted(tmp_path, caplog):
    recs = [
        rec("1", 7, "A", "G", "0|1", "1|0"),
        rec("1", 7, "A", "G", "0|1", "1|0"),  # the same line again (or two mutations, one branch)
        rec("1", 7, "A", "G", "1|1", "0|0"),  # same alleles, other genotypes: another mutation
        rec("1", 9, "A", "G", "0|1:30", "1|0:12", fmt="GT:DP"),
        rec("1", 9, "A", "G", "0|1:31", "1|0:12", fmt="GT:DP"),  # only DP differs: GT repeats
    ]
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        (hd,) = read_vcf(write_vcf(tmp_path / "r.vcf", recs))
    assert hd.positions.tolist() == [7.0, 7.0, 7.0, 9.0, 9.0]
    assert hd.stats["duplicate_records"] == 2 and hd.stats["kept"] == 5
    assert "2 records repeat an earlier record's POS, REF, ALT and genotypes" in caplog.text
    assert "bcftools norm --rm-dup exact" in hd.notes[0]


def test_stacked_positions_across_parse_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(qvcf, "_CHUNK", 3)  # allel chunks of 3 records split the stacks
    sizes, process = [], qvcf._process_chunk

    def spy(path, chunk, *rest):
        sizes.append(len(chunk["variants/POS"]))
        return process(path, chunk, *rest)

    monkeypatch.setattr(qvcf, "_process_chunk", spy)
    recs = snps("1", [1, 2])
    recs += [rec("1", 3, "G", "A", "0|1", "0|0"), rec("1", 3, "G", "C", "0|0", "1|0")]
    recs += snps("1", [4, 5]) + [rec("1", 6, "C", "T", "0|1", "1|0")] * 3 + snps("1", [8])
    (hd,) = read_vcf(write_vcf(tmp_path / "c.vcf", recs))
    assert hd.positions.tolist() == [1, 2, 4, 5, 6, 6, 6, 8]
    assert hd.stats["multiallelic"] == 2 and hd.stats["duplicate_records"] == 2
    assert sizes == [3, 3, 3, 1]  # the patched chunk length took effect


def test_ms_positions_never_deduplicated(tmp_path):
    ms = tmp_path / "d.ms"
    ms.write_text("//\nsegsites: 3\npositions: 0.5000 0.5000 0.5000\n110\n011\n101\n")
    (hd,) = qio.read_ms(ms, length=100)
    assert hd.positions.tolist() == [50.0, 50.0, 50.0] and hd.stats["duplicate_records"] == 0


# --------------------------------------------------------------------------------------------------
# 5. the log: the range, no made-up position, the right haplotype count


@pytest.mark.parametrize("how", ["plain", "tbi"])
def test_log_of_an_empty_region(tmp_path, caplog, how):
    path = write_vcf(tmp_path / "l.vcf.gz", snps("2", [10, 20]), how)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        (hd,) = read_vcf(path, region="2:135,000,000-136,000,000")
    assert hd.n_haplotypes == 4 and hd.ploidy == 2  # ploidy from the file, not the empty slice
    line = [r.getMessage() for r in caplog.records if "kept" in r.getMessage()][-1]
    assert "2:135,000,000-136,000,000: kept 0 of 0 sites" in line
    assert "no SNPs" in line and "4 haplotypes (2 samples x ploidy 2)" in line
    assert "position 0" not in caplog.text and "SNPs at 0" not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        read_vcf(path, region="2:1-15")
    assert "SNPs at 10-10" in caplog.text


# --------------------------------------------------------------------------------------------------
# 6. count_haplotypes


def test_count_haplotypes_vcf(tmp_path):
    samples = [f"i{k}" for k in range(5)]
    recs = [
        rec("1", 1, "A", "G", *["./."] * 5),  # missing calls still say ploidy 2
        rec("1", 2, "A", "G", "0/1", "1/1", "0/0", "./.", "0/1"),  # diploid, unphased
    ]
    path = write_vcf(tmp_path / "d.vcf.gz", recs, "gzip", samples=samples)
    assert count_haplotypes(path, "vcf") == 10
    assert count_haplotypes(path, "auto", samples=["i4", "i0"]) == 4
    with pytest.raises(ConfigError, match="nobody"):
        count_haplotypes(path, "vcf", samples=["nobody"])
    recs = [rec("1", 1, "A", "G", ".", "."), rec("1", 2, "A", "G", "0", "1")]  # haploid
    assert count_haplotypes(write_vcf(tmp_path / "h.vcf", recs), "vcf") == 2
    tetra = [rec("1", 1, "A", "G", "0/0/1/1", "0/1/1/1")]
    assert count_haplotypes(write_vcf(tmp_path / "t.vcf", tetra), "vcf") == 8


def test_count_haplotypes_mixed_ploidy_names_the_record(tmp_path):
    recs = [rec("1", 1, "A", "G", ".", ".", "."), rec("chrX", 2781480, "A", "G", "0|1", "1", "0")]
    path = write_vcf(tmp_path / "x.vcf", recs, samples=("f1", "m1", "m2"))
    with pytest.raises(InputFormatError) as e:
        count_haplotypes(path, "vcf")
    msg = str(e.value)
    assert str(path) in msg and "line 91 (chrX:2781480): mixed ploidy" in msg
    assert "1 allele(s) for 'm1', 'm2'; 2 allele(s) for 'f1'" in msg
    assert count_haplotypes(path, "vcf", samples=["m1", "m2"]) == 2


def test_count_haplotypes_reads_only_the_start(tmp_path):
    """Bounded work: a gzip file cut after its first records still gives the count."""
    recs = [rec("1", p, "A", "G", "0|1", "1|1") for p in range(1, 200_001)]
    path = write_vcf(tmp_path / "big.vcf.gz", recs, "gzip")
    data = path.read_bytes()
    cut = tmp_path / "cut.vcf.gz"
    cut.write_bytes(data[:20_000])
    assert count_haplotypes(cut, "vcf") == 4
    with pytest.raises(InputFormatError, match="truncated"):
        read_vcf(cut)


@pytest.mark.parametrize("index", [False, True])
def test_count_haplotypes_bcf(tmp_path, index):
    recs = [rec("1", 1, "A", "G", "./.", "./."), rec("1", 2, "A", "G", "0|1", "1|1")]
    bcf = to_bcf(write_vcf(tmp_path / "a.vcf", recs), tmp_path / "a.bcf", index)
    assert count_haplotypes(bcf, "bcf") == 4 and count_haplotypes(bcf, "auto", samples=["s2"]) == 2


def _ms_body(n, reps=2, sites=3, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(reps):
        pos = " ".join(f"{x:.4f}" for x in np.sort(rng.random(sites)))
        rows = ["".join(map(str, rng.integers(0, 2, sites))) for _ in range(n)]
        out += ["", "//", f"segsites: {sites}", f"positions: {pos}", *rows]
    return "\n".join(out) + "\n"


def test_count_haplotypes_ms(tmp_path):
    hudson = tmp_path / "hudson.ms"  # Hudson's ms: command line, seeds, replicates
    hudson.write_text("ms 20 2 -t 2000 -r 2000 100000\n27473 36154 10290\n" + _ms_body(20))
    assert count_haplotypes(hudson, "ms", length=100_000) == 20
    assert count_haplotypes(hudson, "auto") == 20
    discoal = tmp_path / "discoal.out"
    discoal.write_text("discoal 12 2 100000 -t 40 -r 40\n1 2\n" + _ms_body(12))
    assert count_haplotypes(discoal, "ms") == 12
    bare = tmp_path / "bare.ms"  # no command line (SLiM, msprime scripts): the first replicate
    bare.write_text("//\nsegsites: 0\n" + _ms_body(7))
    assert count_haplotypes(bare, "ms") == 7
    empty = tmp_path / "empty.ms"
    empty.write_text("//\nsegsites: 0\n\n//\nsegsites: 0\n")
    with pytest.raises(InputFormatError, match="cannot tell the number of haplotypes"):
        count_haplotypes(empty, "ms")


def test_count_haplotypes_trees(tmp_path):
    ts = msprime.sim_ancestry(6, sequence_length=1000, random_seed=2)  # 6 diploids
    ts.dump(tmp_path / "a.trees")
    assert count_haplotypes(tmp_path / "a.trees", "trees") == 12
    (tmp_path / "bad.trees").write_bytes(b"\x89KAS\r\n\x1a\n" + b"\0" * 40)
    with pytest.raises(InputFormatError, match="bad.trees"):
        count_haplotypes(tmp_path / "bad.trees", "trees")


# --------------------------------------------------------------------------------------------------
# 7. chromosome files: read once, stored packed (read_chromosome, save_chromosome, load_chromosome)


def test_read_chromosome_and_malformed_vcf(tmp_path):
    v = vcf(
        tmp_path / "a.vcf",
        [("chr1", 5, "0|1", "1|0"), ("chr1", 9, "0|1", "0|0"), ("chr2", 3, "1|1", "0|1")],
    )
    inp = {"format": "vcf", "path": str(v), "options": {"samples": ["s2"], "phased": "auto"}}
    hd = scan_inputs.read_chromosome(inp, "chr1")
    assert hd.chrom == "chr1" and hd.positions.tolist() == [5.0] and hd.n_haplotypes == 2
    bad = vcf(tmp_path / "bad.vcf", [("chr1", 5, "0|1", "1|0"), ("chr1", 9, "0-1", "0|0")])
    with pytest.raises(InputFormatError) as err:
        scan_inputs.read_chromosome({"format": "vcf", "path": str(bad), "options": {}}, "chr1")
    assert str(bad) in str(err.value) and "line 7 (chr1:9)" in str(err.value)


def test_prepare_script_fails_cleanly_on_a_malformed_vcf(tmp_path):
    """The rule's script: a clean error naming file and record in the log, no output file."""
    bad = vcf(tmp_path / "bad.vcf", [("chr1", 5, "0|1", "1|0"), ("chr1", 9, "0|1", "0/.|1")])
    out, log = tmp_path / "out" / "chr1.npz", tmp_path / "prepare.log"
    smk = types.SimpleNamespace(
        input=types.SimpleNamespace(source=str(bad)),
        output=types.SimpleNamespace(npz=str(out)),
        params=types.SimpleNamespace(
            inp={"name": "bad", "format": "vcf", "path": str(bad), "options": {}}, haplotypes=4
        ),
        wildcards=types.SimpleNamespace(chrom="chr1", scan_input="bad"),
        log=[str(log)],
        rule="scan_prepare",
        threads=1,
        scriptdir=str(ROOT / "workflow" / "scripts"),
    )
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(
            str(ROOT / "workflow/scripts/scan_prepare.py"), init_globals={"snakemake": smk}
        )
    assert exit_.value.code == 1
    text = log.read_text()
    assert str(bad) in text and "chr1:9" in text and "Traceback" not in text
    assert not out.exists() and not list(tmp_path.rglob("*.tmp*"))


def test_chromosome_file_round_trip_and_lazy_scan(tmp_path):
    hd = chromosome(missing=0.05)
    scan_inputs.save_chromosome(hd, tmp_path / "c.npz", base=1)
    back, info = scan_inputs.load_chromosome(tmp_path / "c.npz")
    assert info["base"] == 1 and back.chrom == "chr7" and back.length == hd.length
    np.testing.assert_array_equal(back.positions, hd.positions)
    np.testing.assert_array_equal(back.haplotypes, hd.filled(0))  # missing as ancestral
    lazy, _ = scan_inputs.load_chromosome(tmp_path / "c.npz", lazy=True)
    np.testing.assert_array_equal(lazy.haplotypes[10:20], hd.filled(0)[10:20])
    kw = dict(width=16, n_points=60, n_regions=3, column_order="descending")
    for region in range(3):
        a = scan.scan_chromosome(hd, MeanEngine(), region=region, **kw)
        b = scan.scan_chromosome(lazy, MeanEngine(), region=region, **kw)
        pd.testing.assert_frame_equal(a, b)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(InputFormatError, match="junk.npz"):
        scan_inputs.load_chromosome(tmp_path / "junk.npz")
