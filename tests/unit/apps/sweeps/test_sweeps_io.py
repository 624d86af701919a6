"""Readers for the sweep scan: VCF, ms-style text and tskit tree sequences (quantscan.apps.sweeps.io)."""

import gzip
import logging

import msprime
import numpy as np
import pytest
import tskit
from Bio import bgzf

from quantscan.apps.sweeps.io import (
    MISSING,
    HaplotypeData,
    detect_format,
    iter_ms,
    read_haplotypes,
    read_ms,
    read_trees,
    read_vcf,
)
from quantscan.errors import ConfigError, InputFormatError, QuantscanError

# ------------------------------------------------------------------------------------------------
# helpers


def rec(chrom, pos, ref, alt, *gts, fmt="GT"):
    return "\t".join([chrom, str(pos), ".", ref, alt, ".", "PASS", ".", fmt, *gts])


def vcf_text(records, samples=("s1", "s2"), contigs=(("chr1", 1000), ("chr2", 500))):
    lines = ["##fileformat=VCFv4.2"]
    lines += [f"##contig=<ID={c},length={n}>" for c, n in contigs]
    lines.append('##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">')
    lines.append(
        "\t".join(
            ["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO"] + ["FORMAT", *samples]
        )
    )
    lines += records
    return "\n".join(lines) + "\n"


def write(path, text, how="plain"):
    data = text.encode() if isinstance(text, str) else text
    if how == "bgzf":
        with bgzf.BgzfWriter(str(path), "wb") as fh:
            fh.write(data)
    elif how == "gzip":
        with gzip.open(path, "wb") as fh:
            fh.write(data)
    else:
        path.write_bytes(data)
    return path


BASIC = [
    rec("chr1", 10, "A", "T", "0|1", "1|0"),
    rec("chr1", 20, "A", "T,C", "0|2", "1|1"),  # multi-allelic
    rec("chr1", 30, "AT", "T", "0|1", "1|1"),  # indel
    rec("chr1", 40, "C", "<DEL>", "0|1", "1|1"),  # symbolic
    rec("chr1", 50, "G", "A", "0|1", "0|0"),  # same POS, other ALT: a split multi-allelic site,
    rec("chr1", 50, "G", "C", "1|0", "0|0"),  # dropped like the unsplit G -> A,C record
    rec("chr1", 55, "G", "A", "0|0", "0|0"),  # monomorphic
    rec("chr1", 58, "T", "C", "1|0", "0|0"),
    rec("chr1", 60, "C", ".", "0|0", "0|0"),  # invariant site of an all-sites VCF
    rec("chr2", 5, "g", "c", "1|1", "0|1"),  # lower-case bases are still SNPs
]


def assert_names_record(exc, path, *parts):
    msg = str(exc.value)
    assert str(path) in msg
    for p in parts:
        assert p in msg, f"{p!r} not in {msg!r}"


# ------------------------------------------------------------------------------------------------
# VCF: values and filtering


def test_vcf_values_and_counts(tmp_path):
    path = write(tmp_path / "a.vcf", vcf_text(BASIC))
    out = read_vcf(path)
    assert [h.chrom for h in out] == ["chr1", "chr2"]
    c1, c2 = out
    assert c1.positions.dtype == np.float64 and c1.haplotypes.dtype == np.uint8
    np.testing.assert_array_equal(c1.positions, [10, 58])
    np.testing.assert_array_equal(c1.haplotypes, [[0, 1, 1, 0], [1, 0, 0, 0]])
    assert c1.sample_names == ["s1", "s2"] and c1.ploidy == 2
    assert c1.haplotype_names == ["s1_h1", "s1_h2", "s2_h1", "s2_h2"]
    assert c1.length == 1000 and c2.length == 500 and c1.region is None
    assert c1.source == str(path)
    assert c1.stats == dict(
        input_sites=9,
        kept=2,
        duplicate_records=0,
        multiallelic=3,
        non_snp=2,
        uncalled=0,
        monomorphic=2,
        missing_calls=0,
        unphased_records=0,
    )
    assert c1.notes == [] and c1.contig_span == (10, 60)
    np.testing.assert_array_equal(c2.haplotypes, [[1, 1, 0, 1]])


def test_vcf_missing_calls_kept_as_missing(tmp_path):
    recs = [
        rec("chr1", 1, "A", "T", "0|.", "1|1"),
        rec("chr1", 2, "A", "T", ".", "0|1"),  # '.' for the whole call: both haplotypes missing
        rec("chr1", 3, "A", "T", ".|.", "0|0"),  # only 0 among called: monomorphic, dropped
        rec("chr1", 4, "A", "T", "./.", "1|1"),  # only 1 among called: monomorphic, dropped
    ]
    (h,) = read_vcf(write(tmp_path / "m.vcf", vcf_text(recs)))
    M = MISSING
    np.testing.assert_array_equal(h.haplotypes, [[0, M, 1, 1], [M, M, 0, 1]])
    assert h.stats["missing_calls"] == 3 and h.stats["monomorphic"] == 2
    np.testing.assert_array_equal(h.missing.sum(axis=1), [1, 2])
    np.testing.assert_array_equal(h.filled(0), [[0, 0, 1, 1], [0, 0, 0, 1]])


def test_vcf_sample_subset_order_and_monomorphic_after_subset(tmp_path):
    recs = [
        rec("chr1", 1, "A", "T", "0|1", "0|0", "1|1"),
        rec("chr1", 2, "A", "T", "1|1", "0|0", "0|0"),  # polymorphic only through s1
    ]
    path = write(tmp_path / "s.vcf", vcf_text(recs, samples=("s1", "s2", "s3")))
    (h,) = read_vcf(path, samples=["s3", "s2"])
    assert h.sample_names == ["s3", "s2"]
    np.testing.assert_array_equal(h.positions, [1])
    np.testing.assert_array_equal(h.haplotypes, [[1, 1, 0, 0]])
    assert h.stats["monomorphic"] == 1
    with pytest.raises(ConfigError) as e:
        read_vcf(path, samples=["s1", "nobody", "ghost"])
    assert_names_record(e, path, "nobody", "ghost")


def test_vcf_unphased_modes(tmp_path, caplog):
    recs = [
        rec("chr1", 1, "A", "T", "0|1", "0/0"),  # homozygous unphased: no phase to lose
        rec("chr1", 2, "A", "T", "0|1", "./."),
        rec("chr1", 3, "A", "T", "1|1", "0/1"),  # unphased heterozygote
        rec("chr2", 4, "A", "T", "1/0", "0|0"),
    ]
    path = write(tmp_path / "u.vcf", vcf_text(recs))
    with caplog.at_level(logging.WARNING, logger="quantscan.apps.sweeps.io"):
        out = read_vcf(path)
    assert "2 records have unphased" in caplog.text
    assert [h.stats["unphased_records"] for h in out] == [1, 1]
    # 'pseudo' keeps the written allele order, same as 'auto', without the warning.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="quantscan.apps.sweeps.io"):
        pseudo = read_vcf(path, phased="pseudo")
    assert "unphased" not in caplog.text
    np.testing.assert_array_equal(pseudo[0].haplotypes, out[0].haplotypes)
    np.testing.assert_array_equal(pseudo[0].haplotypes[2], [1, 1, 0, 1])
    with pytest.raises(InputFormatError) as e:
        read_vcf(path, phased="require")
    assert_names_record(e, path, "line 8 (chr1:3)", "'s2'", "unphased")
    # Only the selected records matter: chr1:1-2 has no unphased heterozygote.
    (h,) = read_vcf(path, phased="require", region="chr1:1-2")
    assert h.n_sites == 2
    with pytest.raises(ConfigError):
        read_vcf(path, phased="maybe")


def test_vcf_region_and_chroms(tmp_path):
    path = write(tmp_path / "r.vcf", vcf_text(BASIC))
    (h,) = read_vcf(path, region="chr1:20-58")
    np.testing.assert_array_equal(h.positions, [58])
    assert h.region == (20, 58) and h.stats["input_sites"] == 7
    (h,) = read_vcf(path, region="chr1:1,000-2,000")  # commas allowed; nothing there
    assert h.n_sites == 0 and h.haplotypes.shape == (0, 4)
    (h,) = read_vcf(path, region="chr2")
    assert h.chrom == "chr2" and h.region is None and h.n_sites == 1
    assert [h.chrom for h in read_vcf(path, chroms=["chr2", "chr1"])] == ["chr1", "chr2"]
    assert [h.chrom for h in read_vcf(path, chroms="chr2")] == ["chr2"]
    with pytest.raises(ConfigError) as e:
        read_vcf(path, chroms=["chr1", "chrX"])
    assert_names_record(e, path, "chrX", "present: chr1, chr2")
    with pytest.raises(ConfigError):
        read_vcf(path, region="chrX:1-10")
    with pytest.raises(ConfigError):
        read_vcf(path, region="chr1:10-5")
    with pytest.raises(ConfigError):
        read_vcf(path, region="chr1:1-10", chroms=["chr2"])


@pytest.mark.parametrize(
    "how,name", [("bgzf", "b.vcf.gz"), ("gzip", "g.vcf.gz"), ("bgzf", "misnamed.vcf")]
)
def test_vcf_compressed_same_as_plain(tmp_path, how, name):
    plain = read_vcf(write(tmp_path / "p.vcf", vcf_text(BASIC)))
    packed = read_vcf(write(tmp_path / name, vcf_text(BASIC), how))
    for a, b in zip(plain, packed, strict=True):
        np.testing.assert_array_equal(a.haplotypes, b.haplotypes)
        np.testing.assert_array_equal(a.positions, b.positions)


def test_vcf_haploid_and_mixed_ploidy(tmp_path):
    recs = [rec("chr1", 1, "A", "T", "0", "1"), rec("chr1", 2, "A", "T", "1", ".")]
    (h,) = read_vcf(write(tmp_path / "h.vcf", vcf_text(recs)))
    assert h.ploidy == 1 and h.haplotype_names == ["s1", "s2"]
    np.testing.assert_array_equal(h.haplotypes, [[0, 1]])  # site 2 is monomorphic among calls
    # A haploid call (chrX of a male) in a diploid file: the second haplotype is missing.
    recs = [rec("chr1", 1, "A", "T", "0|1", "1"), rec("chr1", 2, "A", "T", "1|0", "0")]
    (h,) = read_vcf(write(tmp_path / "x.vcf", vcf_text(recs)))
    assert h.ploidy == 2
    np.testing.assert_array_equal(h.haplotypes, [[0, 1, 1, MISSING], [1, 0, 0, MISSING]])


def test_vcf_slow_path_layouts_match(tmp_path):
    """FORMAT with extra keys and multi-digit alleles go through the regex path."""
    recs = [
        rec("chr1", 1, "A", "T", "0|1:3", "1|1:.", fmt="GT:DP"),
        rec("chr1", 2, "A", "T,G,C,AA,AT,AG,AC,TT,TA,TG", "10|1", "0|0"),  # multi-allelic
        rec("chr1", 3, "A", "T", "1|0", "0|1"),
    ]
    (h,) = read_vcf(write(tmp_path / "f.vcf", vcf_text(recs)))
    np.testing.assert_array_equal(h.haplotypes, [[0, 1, 1, 1], [1, 0, 0, 1]])
    assert h.stats["multiallelic"] == 1


def test_vcf_random_roundtrip(tmp_path):
    rng = np.random.default_rng(3)
    n_sites, n_samples = 400, 7
    g = (rng.random((n_sites, 2 * n_samples)) < 0.3).astype(np.uint8)
    g[rng.random(g.shape) < 0.05] = MISSING
    pos = np.sort(rng.choice(10_000, n_sites, replace=False)) + 1
    allele = {0: "0", 1: "1", MISSING: "."}
    recs = [
        rec(
            "chr1",
            p,
            "A",
            "G",
            *(f"{allele[row[2 * j]]}|{allele[row[2 * j + 1]]}" for j in range(n_samples)),
        )
        for p, row in zip(pos, g, strict=True)
    ]
    samples = [f"i{j}" for j in range(n_samples)]
    (h,) = read_vcf(write(tmp_path / "rnd.vcf.gz", vcf_text(recs, samples), "bgzf"))
    poly = (g == 0).any(axis=1) & (g == 1).any(axis=1)
    np.testing.assert_array_equal(h.positions, pos[poly])
    np.testing.assert_array_equal(h.haplotypes, g[poly])
    assert h.stats["monomorphic"] == int((~poly).sum())


def test_vcf_matches_tree_sequence(tmp_path):
    ts = msprime.sim_ancestry(
        6, sequence_length=20_000, recombination_rate=1e-8, population_size=10_000, random_seed=5
    )
    ts = msprime.sim_mutations(ts, rate=5e-8, model=msprime.BinaryMutationModel(), random_seed=5)
    ts = ts.delete_sites(np.flatnonzero(ts.tables.sites.position == 0))  # VCF has no POS 0
    with open(tmp_path / "t.vcf", "w") as fh:
        ts.write_vcf(fh)
    (v,) = read_vcf(tmp_path / "t.vcf", phased="require")
    (t,) = read_trees(ts)
    assert v.n_sites > 20 and v.ploidy == t.ploidy == 2
    assert v.sample_names == t.sample_names
    np.testing.assert_array_equal(v.positions, t.positions)
    np.testing.assert_array_equal(v.haplotypes, t.haplotypes)


def test_vcf_region_via_tabix_index(tmp_path, caplog):
    import pysam

    path = write(tmp_path / "ix.vcf.gz", vcf_text(BASIC), "bgzf")
    pysam.tabix_index(str(path), preset="vcf")
    with caplog.at_level(logging.INFO, logger="quantscan.apps.sweeps.io"):
        (h,) = read_vcf(path, region="chr1:20-58")
    assert "scanning the whole file" not in caplog.text  # the index was used
    np.testing.assert_array_equal(h.positions, [58])
    assert h.stats["input_sites"] == 7 and h.stats["kept"] == 1
    assert h.stats["multiallelic"] == 3  # the split site at 50 spans the tabix slice too
    (h,) = read_vcf(path, region="chr2:100-200")  # indexed chromosome, empty region
    assert h.n_sites == 0 and h.n_haplotypes == 4  # ploidy from the file's first call
    assert h.contig_span == (5, 5)  # through the index, for the error message
    with pytest.raises(ConfigError) as e:
        read_vcf(path, region="chrX:1-5")
    assert "chrX" in str(e.value)


# ------------------------------------------------------------------------------------------------
# VCF: malformed input


MALFORMED = {
    "no_header": ("chr1\t1\t.\tA\tT\t.\t.\t.\tGT\t0|1\t0|0\n", "line 1", "#CHROM"),
    "spaces_in_header": (
        "##fileformat=VCFv4.2\n#CHROM POS ID REF ALT QUAL FILTER INFO FORMAT s1 s2\n",
        "line 2",
        "tab-separated",
    ),
    "no_samples": ("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n", "line 1", "no FORMAT"),
    "pos_not_int": (
        vcf_text([rec("chr1", "12x", "A", "T", "0|1", "0|0")]),
        "line 6 (chr1:12x)",
        "POS",
    ),
    "pos_too_big": (vcf_text([rec("chr1", 2**31, "A", "T", "0|1", "0|0")]), "line 6", "POS"),
    "bad_gt": (
        vcf_text([rec("chr1", 1, "A", "T", "0|1", "0|0"), rec("chr1", 2, "A", "T", "0-1", "0|0")]),
        "line 7 (chr1:2)",
        "GT field of sample 's1'",
    ),
    "too_many_alleles": (
        vcf_text(
            [rec("chr1", 1, "A", "T", "0|1", "0|0"), rec("chr1", 2, "A", "T", "0|1", "0|1|1")]
        ),
        "line 7 (chr1:2)",
        "ploidy 2",
    ),
    "gt_not_first": (
        vcf_text([rec("chr1", 1, "A", "T", "3:0|1", "3:0|0", fmt="DP:GT")]),
        "line 6 (chr1:1)",
        "FORMAT",
    ),
    "unsorted": (
        vcf_text([rec("chr1", 9, "A", "T", "0|1", "0|0"), rec("chr1", 3, "A", "T", "0|1", "0|0")]),
        "line 7 (chr1:3)",
        "not sorted",
    ),
    "chrom_not_contiguous": (
        vcf_text(
            [
                rec("chr1", 1, "A", "T", "0|1", "0|0"),
                rec("chr2", 1, "A", "T", "0|1", "0|0"),
                rec("chr1", 5, "A", "T", "0|1", "0|0"),
            ]
        ),
        "line 8 (chr1:5)",
        "not contiguous",
    ),
    "short_record": (vcf_text([rec("chr1", 1, "A", "T", "0|1")]), "line 6 (chr1:1)", "found 10"),
    "allele_beyond_alt": (
        vcf_text([rec("chr1", 7, "A", "T", "0|2", "0|0")]),
        "chr1:7",
        "allele index 2",
    ),
    "header_after_data": (
        vcf_text([rec("chr1", 1, "A", "T", "0|1", "0|0"), "#late"]),
        "line 7",
        "header line",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_vcf_malformed(tmp_path, case):
    text, *expect = MALFORMED[case]
    path = write(tmp_path / f"{case}.vcf", text)
    with pytest.raises(InputFormatError) as e:
        read_vcf(path)
    assert_names_record(e, path, *expect)


def test_vcf_truncated_gzip(tmp_path, caplog):
    recs = [rec("chr1", i, "A", "T", "0|1", "1|0") for i in range(1, 6001)]
    path = write(tmp_path / "t.vcf.gz", vcf_text(recs), "bgzf")
    data = path.read_bytes()
    cut = write(tmp_path / "cut.vcf.gz", data[: len(data) * 2 // 3])
    with pytest.raises(InputFormatError) as e:
        read_vcf(cut)
    assert_names_record(e, cut, "truncated", "after line")
    # Cut exactly at a BGZF block boundary: gzip reads it cleanly, only the EOF block is missing.
    first_block = int.from_bytes(data[16:18], "little") + 1
    at_block = write(tmp_path / "block.vcf.gz", data[:first_block])
    with (
        caplog.at_level(logging.WARNING, logger="quantscan.apps.sweeps.io"),
        pytest.raises(InputFormatError),
    ):  # the block ends mid-record, so the column check fires too
        read_vcf(at_block)
    assert "no BGZF end-of-file block" in caplog.text


def to_bcf(vcf_path, bcf_path, mode="wb"):
    """Convert with pysam (htslib), as bcftools view -Ob would."""
    import pysam

    with pysam.VariantFile(str(vcf_path)) as src:
        with pysam.VariantFile(str(bcf_path), mode, header=src.header) as dst:
            for record in src:
                dst.write(record)
    return bcf_path


@pytest.mark.parametrize("mode", ["wb", "wb0"])  # BGZF-compressed and stored BCF
def test_bcf_same_as_vcf(tmp_path, mode):
    # htslib cannot encode an undeclared symbolic allele (<DEL>); add unphased and missing calls
    records = [r for r in BASIC[:-1] if "<DEL>" not in r]
    records += [rec("chr1", 70, "A", "G", "0/1", "./."), BASIC[-1]]
    vcf = write(tmp_path / "x.vcf", vcf_text(records))
    bcf = to_bcf(vcf, tmp_path / "x.bcf", mode)
    assert detect_format(bcf) == "bcf"
    if mode == "wb":  # indexed (.csi): regions are fetched through the index
        import pysam

        pysam.tabix_index(str(bcf), preset="vcf", csi=True, keep_original=True)
        assert (tmp_path / "x.bcf.csi").exists()
    for kw in ({}, {"region": "chr1:15-60", "samples": ["s2"]}):
        want, got = read_vcf(vcf, **kw), read_haplotypes(bcf, **kw)
        assert [h.chrom for h in got] == [h.chrom for h in want]
        for a, b in zip(want, got, strict=True):
            np.testing.assert_array_equal(a.positions, b.positions)
            np.testing.assert_array_equal(a.haplotypes, b.haplotypes)
            assert a.stats == b.stats and a.length == b.length
            assert b.source == str(bcf)


def test_bcf_corrupt_names_the_file(tmp_path):
    vcf = write(tmp_path / "x.vcf", vcf_text(BASIC))
    data = to_bcf(vcf, tmp_path / "x.bcf", "wb0").read_bytes()
    cut = write(tmp_path / "cut.bcf", data[: len(data) - 40])  # last record truncated
    with pytest.raises(InputFormatError) as e:
        read_vcf(cut)
    assert_names_record(e, cut, "BCF", "record")
    bad = write(tmp_path / "bad.bcf", b"BCF\x02\x02" + b"\0" * 20, "bgzf")
    with pytest.raises(InputFormatError) as e:
        read_haplotypes(bad)
    assert_names_record(e, bad, "BCF")


def test_missing_file_is_input_error(tmp_path):
    with pytest.raises(InputFormatError):
        read_vcf(tmp_path / "nope.vcf")
    with pytest.raises(InputFormatError):
        read_ms(tmp_path / "nope.ms", length=1)


# ------------------------------------------------------------------------------------------------
# ms


MS = """ms 4 3 -t 5 -r 2 100
1 2 3

//
segsites: 3
positions: 0.1000 0.2500 0.2500
010
110
001
000

//
segsites: 0

//
((1:1,2:1):1,(3:1,4:1):1);
segsites: 2
positions: 0.5 0.9
11
01
10
00
"""


def test_ms_replicates(tmp_path):
    reps = read_ms(write(tmp_path / "a.ms", MS), length=100_000)
    assert [r.chrom for r in reps] == ["rep1", "rep2", "rep3"]
    r1, r2, r3 = reps
    np.testing.assert_array_equal(r1.positions, [10_000, 25_000, 25_000])  # duplicates kept
    np.testing.assert_array_equal(r1.haplotypes, [[0, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0]])
    assert r1.length == 100_000 and r1.ploidy == 1 and r1.n_haplotypes == 4
    assert r2.haplotypes.shape == (0, 4) and r2.positions.shape == (0,)
    np.testing.assert_array_equal(r3.haplotypes, [[1, 0, 1, 0], [1, 1, 0, 0]])
    assert r3.stats["input_sites"] == 2 and r3.stats["kept"] == 2


def test_ms_gzip_no_header_and_monomorphic(tmp_path):
    text = "//\nsegsites: 0\n\n//\nsegsites: 2\npositions: 0.1 0.2\n10\n10\n00\n"
    a, b = read_ms(write(tmp_path / "a.ms.gz", text, "gzip"), length=10)
    assert a.haplotypes.shape == (0, 3)  # haplotype count learnt from the later replicate
    np.testing.assert_array_equal(b.positions, [1.0])
    assert b.stats["monomorphic"] == 1 and b.stats["kept"] == 1


def test_ms_tskit_roundtrip(tmp_path):
    sims = msprime.sim_ancestry(
        8,
        sequence_length=1e5,
        recombination_rate=5e-7,
        population_size=10_000,
        random_seed=2,
        ploidy=1,
        num_replicates=2,
    )
    tss = [
        msprime.sim_mutations(
            ts, rate=5e-7, model=msprime.BinaryMutationModel(), discrete_genome=False, random_seed=2
        )
        for ts in sims
    ]
    with open(tmp_path / "sim.ms", "w") as fh:
        tskit.write_ms(tss, fh, num_replicates=2)  # precision 4: colliding positions
    reps = list(iter_ms(tmp_path / "sim.ms", length=1e5))
    assert len(reps) == 2
    for ts, r in zip(tss, reps, strict=True):
        g = ts.genotype_matrix()
        assert r.n_sites == ts.num_sites
        np.testing.assert_array_equal(r.haplotypes, g)
        np.testing.assert_allclose(r.positions, np.round(ts.tables.sites.position / 1e5, 4) * 1e5)
    assert any(np.any(np.diff(r.positions) == 0) for r in reps)


def _ms(body, header="ms 3 2\n1 2 3\n\n"):
    return header + body


MS_BAD = {
    "row_length": (
        _ms(
            "//\nsegsites: 2\npositions: 0.1 0.2\n10\n10\n01\n\n"
            "//\nsegsites: 2\npositions: 0.1 0.2\n10\n1\n01\n"
        ),
        "replicate 2, line 15",
        "haplotype 2 has 1 characters",
    ),
    "too_few_rows": (
        _ms("//\nsegsites: 2\npositions: 0.1 0.2\n10\n01\n"),
        "replicate 1",
        "2 haplotype rows, expected 3",
    ),
    "too_many_rows": (
        _ms("//\nsegsites: 1\npositions: 0.1\n1\n0\n0\n1\n"),
        "replicate 1",
        "4 haplotype rows, expected 3",
    ),
    "bad_char": (
        _ms("//\nsegsites: 2\npositions: 0.1 0.2\n10\n1N\n01\n"),
        "replicate 1, line 8",
        "'N' is not 0 or 1",
    ),
    "positions_count": (
        _ms("//\nsegsites: 3\npositions: 0.1 0.2\n100\n"),
        "replicate 1, line 6",
        "2 values but segsites is 3",
    ),
    "positions_range": (_ms("//\nsegsites: 1\npositions: 1.5\n1\n0\n0\n"), "replicate 1", "[0, 1]"),
    "no_segsites": (_ms("//\npositions: 0.1\n"), "replicate 1, line 5", "segsites"),
    "stray_text": (
        _ms("//\nsegsites: 1\npositions: 0.1\n1\n0\n0\n\nhello\n"),
        "replicate 1, line 11",
        "unexpected line",
    ),
    "not_ms": ("just some text\n", "not ms output", ""),
}


@pytest.mark.parametrize("case", sorted(MS_BAD))
def test_ms_malformed(tmp_path, case):
    text, *expect = MS_BAD[case]
    path = write(tmp_path / f"{case}.ms", text)
    with pytest.raises(InputFormatError) as e:
        read_ms(path, length=1000)
    assert_names_record(e, path, *expect)


def test_ms_arguments(tmp_path):
    path = write(tmp_path / "a.ms", MS)
    with pytest.raises(ConfigError):
        read_ms(path, length=0)
    with pytest.raises(ConfigError):
        read_ms(path, length=10, n_haplotypes=5)  # command line says 4
    assert read_ms(path, length=10, n_haplotypes=4)[0].n_haplotypes == 4


# ------------------------------------------------------------------------------------------------
# tree sequences


def _sim(seed=1, model=None, ploidy=2, n=5):
    ts = msprime.sim_ancestry(
        n,
        sequence_length=50_000,
        recombination_rate=1e-8,
        population_size=10_000,
        random_seed=seed,
        ploidy=ploidy,
    )
    return msprime.sim_mutations(
        ts, rate=2e-8, random_seed=seed, model=model or msprime.BinaryMutationModel()
    )


def test_trees_file(tmp_path):
    ts = _sim()
    ts.dump(tmp_path / "chr9.trees")
    (h,) = read_trees(tmp_path / "chr9.trees")
    assert h.chrom == "chr9" and h.length == 50_000 and h.ploidy == 2
    assert h.sample_names == [f"tsk_{i}" for i in range(5)]
    np.testing.assert_array_equal(h.positions, ts.tables.sites.position)  # unshifted
    np.testing.assert_array_equal(h.haplotypes, ts.genotype_matrix())
    assert h.stats["kept"] == ts.num_sites
    assert read_trees(ts, chrom="x")[0].chrom == "x"


def test_trees_metadata_chrom_and_haploid(tmp_path):
    tables = _sim(ploidy=1, n=6).dump_tables()
    tables.metadata_schema = tskit.MetadataSchema.permissive_json()
    tables.metadata = {"chrom": "chr7"}
    tables.tree_sequence().dump(tmp_path / "sim.trees")
    (h,) = read_trees(tmp_path / "sim.trees")
    assert h.chrom == "chr7" and h.ploidy == 1 and h.n_haplotypes == 6


def test_trees_multiallelic_dropped_and_counted():
    ts = msprime.sim_mutations(
        msprime.sim_ancestry(10, sequence_length=2_000, population_size=10_000, random_seed=4),
        rate=1e-6,
        random_seed=4,  # JC69 on a discrete genome: some sites get 3+ alleles
    )
    g = ts.genotype_matrix()
    multi = (g > 1).any(axis=1)
    assert multi.sum() > 0
    (h,) = read_trees(ts)
    assert h.stats["multiallelic"] == multi.sum()
    assert h.stats["kept"] + h.stats["multiallelic"] + h.stats["monomorphic"] == ts.num_sites
    assert h.haplotypes.max() <= 1


def test_trees_corrupt(tmp_path):
    path = write(tmp_path / "bad.trees", b"\x89KAS\r\n\x1a\n" + b"\0" * 40)
    assert detect_format(path) == "trees"
    with pytest.raises(InputFormatError) as e:
        read_trees(path)
    assert str(path) in str(e.value)


# ------------------------------------------------------------------------------------------------
# detection, dispatch, the data type


def test_detect_format_and_dispatch(tmp_path):
    vcf = write(tmp_path / "a.vcf.gz", vcf_text(BASIC), "bgzf")
    ms = write(tmp_path / "a.txt", MS)
    trees = tmp_path / "a.trees"
    _sim().dump(trees)
    assert detect_format(vcf) == "vcf" and detect_format(ms) == "ms"
    assert detect_format(trees) == "trees"
    assert detect_format(write(tmp_path / "noext", vcf_text(BASIC), "gzip")) == "vcf"
    assert detect_format(write(tmp_path / "empty.vcf", "")) == "vcf"  # extension fallback
    with pytest.raises(InputFormatError):
        detect_format(write(tmp_path / "what.dat", "hello\n"))
    assert len(read_haplotypes(vcf)) == 2
    assert len(read_haplotypes(ms, length=1e4)) == 3
    assert read_haplotypes(trees)[0].chrom == "a"
    with pytest.raises(ConfigError):
        read_haplotypes(vcf, fmt="plink")
    with pytest.raises(QuantscanError):
        read_vcf(write(tmp_path / "empty2.vcf", ""))


def test_haplotype_data_validates():
    ok = dict(
        chrom="c",
        positions=[1.0, 2.0],
        haplotypes=np.zeros((2, 4), np.uint8),
        sample_names=["a", "b"],
        ploidy=2,
    )
    HaplotypeData(**ok)
    with pytest.raises(TypeError):
        HaplotypeData(**{**ok, "haplotypes": np.zeros((2, 4), np.int64)})
    with pytest.raises(ValueError):
        HaplotypeData(**{**ok, "positions": [2.0, 1.0]})
    with pytest.raises(ValueError):
        HaplotypeData(**{**ok, "ploidy": 1})
