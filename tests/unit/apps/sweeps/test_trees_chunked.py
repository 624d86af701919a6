"""Tree sequences decoded in chunks of sites (io.trees: read_trees, read_trees_packed) against the
whole-matrix semantics of tskit's genotype_matrix, and the packed path of scan_prepare
(check_usable, save_chromosome, load_chromosome) on isolated samples, multi-allelic, monomorphic
and uncalled sites, across chunk boundaries and worker processes."""

import runpy
import types
from pathlib import Path

import msprime
import numpy as np
import pytest
import tskit

from quantscan.apps.sweeps import scan_inputs
from quantscan.apps.sweeps.io import MISSING, check_usable, read_trees
from quantscan.apps.sweeps.io.trees import read_trees_packed
from quantscan.errors import InputFormatError

ROOT = Path(__file__).resolve().parents[4]


def reference(ts):
    """(positions, haplotypes with MISSING, stats) from the whole int32 genotype matrix."""
    g = ts.genotype_matrix()
    multi = (g > 1).any(axis=1)
    poly = ~multi & (g == 0).any(axis=1) & (g == 1).any(axis=1)
    called = (g >= 0).any(axis=1)
    hap = np.where(g[poly] < 0, MISSING, g[poly]).astype(np.uint8)
    stats = dict(
        input_sites=ts.num_sites,
        kept=int(poly.sum()),
        duplicate_records=0,
        multiallelic=int(multi.sum()),
        non_snp=0,
        uncalled=int((~multi & ~called).sum()),
        monomorphic=int((~multi & called & ~poly).sum()),
        missing_calls=int((hap == MISSING).sum()),
    )
    return ts.sites_position[poly], hap, stats


def _unknown_times(tables):
    tables.mutations.time = np.full(tables.mutations.num_rows, tskit.UNKNOWN_TIME)


def _finish(tables):
    tables.sort()
    tables.build_index()
    tables.compute_mutation_parents()
    return tables.tree_sequence()


@pytest.fixture(scope="module")
def messy():
    """Diploid msprime tree sequence with every kind of site: biallelic SNPs, multi-allelic sites
    (a second derived state added at a few sites), monomorphic sites (no mutation; a silent
    mutation), sample 3 isolated over [30 kb, 45 kb) (missing calls), all samples isolated over
    [80 kb, 85 kb) with an uncalled site and a site called only where a mutation sits on an
    isolated sample, and one extra sample node with no edge at all."""
    ts = msprime.sim_ancestry(
        8, sequence_length=100_000, recombination_rate=1e-8, population_size=10_000, random_seed=3
    )
    ts = msprime.sim_mutations(ts, rate=2e-8, model=msprime.BinaryMutationModel(), random_seed=3)
    tables = ts.dump_tables()
    _unknown_times(tables)
    edges = tables.edges.copy()
    tables.edges.clear()
    for e in edges:
        for lo, hi in ((e.left, e.right),):
            cuts = [(lo, hi)]
            if e.child == 3:
                cuts = [(lo, min(hi, 30_000)), (max(lo, 45_000), hi)]
            if e.child in ts.samples():
                cuts = [
                    piece for a, b in cuts for piece in ((a, min(b, 80_000)), (max(a, 85_000), b))
                ]
            for a, b in cuts:
                if a < b:
                    tables.edges.append(e.replace(left=a, right=b))
    keep = ~((tables.sites.position >= 80_000) & (tables.sites.position < 85_000))
    tables.delete_sites(np.flatnonzero(~keep))
    s = tables.sites.add_row(81_000.5, "0")  # every sample isolated: uncalled
    s = tables.sites.add_row(82_000.5, "0")  # only sample 5 called, by a mutation on it
    tables.mutations.add_row(site=s, node=5, derived_state="1", time=tskit.UNKNOWN_TIME)
    tables.sites.add_row(10_000.5, "0")  # no mutation: monomorphic
    s = tables.sites.add_row(11_000.5, "0")  # a silent mutation: monomorphic
    tables.mutations.add_row(site=s, node=0, derived_state="0", time=tskit.UNKNOWN_TIME)
    # multi-allelic: a second derived state on another sample at a few sites
    sites = tables.sites.position
    for j in np.flatnonzero(sites < 80_000)[5:60:11]:
        node = 1 if tables.mutations.node[tables.mutations.site == j][0] != 1 else 2
        tables.mutations.add_row(site=int(j), node=node, derived_state="2", time=tskit.UNKNOWN_TIME)
    tables.nodes.add_row(flags=tskit.NODE_IS_SAMPLE, time=0)  # a sample with no edges
    return _finish(tables)


def test_messy_has_every_kind_of_site(messy):
    _, hap, stats = reference(messy)
    assert messy.num_sites > 150
    assert stats["multiallelic"] >= 5 and stats["monomorphic"] >= 3 and stats["uncalled"] == 1
    assert 0 < stats["missing_calls"] < hap.size
    assert (hap == MISSING).all(axis=0)[-1]  # the sample without edges
    assert not (hap == MISSING).all(axis=0)[3]  # partly isolated


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 16])
def test_read_trees_matches_genotype_matrix(messy, chunk):
    pos, hap, stats = reference(messy)
    (hd,) = read_trees(messy, chunk_sites=chunk)
    np.testing.assert_array_equal(hd.positions, pos)
    np.testing.assert_array_equal(hd.haplotypes, hap)
    assert hd.stats == stats
    assert hd.n_haplotypes == messy.num_samples and hd.ploidy == 1  # the extra sample: no ploidy


@pytest.mark.parametrize("chunk", [7, 1 << 16])
def test_read_trees_packed_matches_genotype_matrix(messy, chunk):
    pos, hap, stats = reference(messy)
    hd = read_trees_packed(messy, chrom="chrM", chunk_sites=chunk)
    assert isinstance(hd, scan_inputs.PackedChromosome)
    np.testing.assert_array_equal(hd.positions, pos)
    np.testing.assert_array_equal(hd.haplotypes.packed, np.packbits(hap == 1, axis=1))
    np.testing.assert_array_equal(hd.haplotypes[0 : len(pos)], np.where(hap == 1, 1, 0))
    np.testing.assert_array_equal(hd.missing_per_haplotype, (hap == MISSING).sum(axis=0))
    assert hd.stats == stats and hd.chrom == "chrM" and hd.length == messy.sequence_length


def test_processes_split_the_genome_with_the_same_result(messy, tmp_path):
    messy.dump(tmp_path / "m.trees")
    one = read_trees_packed(tmp_path / "m.trees", chunk_sites=5)
    for n in (2, 3):
        more = read_trees_packed(tmp_path / "m.trees", chunk_sites=5, processes=n)
        np.testing.assert_array_equal(more.positions, one.positions)
        np.testing.assert_array_equal(more.haplotypes.packed, one.haplotypes.packed)
        np.testing.assert_array_equal(more.missing_per_haplotype, one.missing_per_haplotype)
        assert more.stats == one.stats and more.chrom == one.chrom == "m"


def test_more_than_127_alleles_at_a_site_is_multiallelic():
    """int8 decoding buffers clip allele indices when a site can have 128+ alleles: unclipped,
    allele 131 would wrap to -125 and read as a missing call at a biallelic SNP."""
    ts = msprime.sim_ancestry(5, sequence_length=10_000, population_size=10_000, random_seed=8)
    ts = msprime.sim_mutations(ts, rate=1e-7, model=msprime.BinaryMutationModel(), random_seed=8)
    tables = ts.dump_tables()
    _unknown_times(tables)
    s = tables.sites.add_row(5_000.5, "A")
    tables.mutations.add_row(site=s, node=0, derived_state="b", time=tskit.UNKNOWN_TIME)
    for k in range(130):  # a chain of mutations above sample 1: it carries the last, allele 131
        tables.mutations.add_row(site=s, node=1, derived_state=f"c{k}", time=tskit.UNKNOWN_TIME)
    ts = _finish(tables)
    g = ts.genotype_matrix()[np.searchsorted(ts.sites_position, 5_000.5)]
    assert g[:2].tolist() == [1, 131] and (g[2:] == 0).all()
    pos, hap, stats = reference(ts)
    (hd,) = read_trees(ts, chunk_sites=16)
    assert stats["multiallelic"] == 1 and 5_000.5 not in hd.positions
    np.testing.assert_array_equal(hd.haplotypes, hap)
    assert hd.stats == stats
    assert read_trees_packed(ts).stats == stats


def test_check_usable_and_files_the_same_from_packed(messy, tmp_path):
    (hd,) = read_trees(messy, chrom="chrM")
    packed = read_trees_packed(messy, chrom="chrM", chunk_sites=9)
    warn_hd = check_usable(hd, window=64, source="m.trees")
    assert check_usable(packed, window=64, source="m.trees") == warn_hd
    extra = f"n{messy.num_nodes - 1}"  # the sample node added last, named by its node id
    assert any(f"1 of 17 haplotypes have no genotype call ({extra})" in w for w in warn_hd)
    scan_inputs.save_chromosome(hd, tmp_path / "a.npz", warnings=warn_hd)
    scan_inputs.save_chromosome(packed, tmp_path / "b.npz", warnings=warn_hd)
    a, info_a = scan_inputs.load_chromosome(tmp_path / "a.npz")
    b, info_b = scan_inputs.load_chromosome(tmp_path / "b.npz")
    assert info_a == info_b and info_b["stats"] == hd.stats and info_b["warnings"] == warn_hd
    np.testing.assert_array_equal(b.positions, hd.positions)
    np.testing.assert_array_equal(b.haplotypes, hd.filled(0))  # missing as ancestral
    np.testing.assert_array_equal(a.haplotypes, b.haplotypes)
    lazy, _ = scan_inputs.load_chromosome(tmp_path / "b.npz", lazy=True)
    np.testing.assert_array_equal(lazy.haplotypes[3:40], hd.filled(0)[3:40])
    # the file is a zip of .npy members that np.load reads (deflated, level ZLIB_LEVEL)
    import zipfile

    with zipfile.ZipFile(tmp_path / "b.npz") as zf:
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_DEFLATED}


def test_old_compressed_files_still_load(tmp_path):
    hd = read_trees_packed(
        msprime.sim_mutations(
            msprime.sim_ancestry(4, sequence_length=20_000, population_size=10_000, random_seed=2),
            rate=5e-8,
            model=msprime.BinaryMutationModel(),
            random_seed=2,
        )
    )
    scan_inputs.save_chromosome(hd, tmp_path / "new.npz")
    with np.load(tmp_path / "new.npz") as z:
        np.savez_compressed(tmp_path / "old.npz", **{k: z[k] for k in z.files})
    old, _ = scan_inputs.load_chromosome(tmp_path / "old.npz", lazy=True)
    np.testing.assert_array_equal(old.haplotypes.packed, hd.haplotypes.packed)


def test_prepare_script_on_a_tree_sequence(messy, tmp_path):
    """The rule's script reads a .trees file packed (in 2 processes) to the same file contents."""
    messy.dump(tmp_path / "chrM.trees")
    out, log = tmp_path / "out" / "chrM.npz", tmp_path / "prepare.log"
    inp = {"name": "m", "format": "trees", "path": str(tmp_path / "chrM.trees"), "options": {}}
    smk = types.SimpleNamespace(
        input=types.SimpleNamespace(source=str(tmp_path / "chrM.trees")),
        output=types.SimpleNamespace(npz=str(out)),
        params=types.SimpleNamespace(inp=inp, window=64),
        wildcards=types.SimpleNamespace(chrom="chrM", scan_input="m"),
        log=[str(log)],
        rule="scan_prepare",
        threads=2,
        scriptdir=str(ROOT / "workflow" / "scripts"),
    )
    runpy.run_path(str(ROOT / "workflow/scripts/scan_prepare.py"), init_globals={"snakemake": smk})
    back, info = scan_inputs.load_chromosome(out)
    pos, hap, stats = reference(messy)
    np.testing.assert_array_equal(back.positions, pos)
    np.testing.assert_array_equal(back.haplotypes, np.where(hap == 1, 1, 0))
    assert info["stats"] == stats and info["chrom"] == "chrM" and info["base"] == 0
    assert any("have no genotype call" in w for w in info["warnings"])
    assert "have no genotype call" in log.read_text()


def test_packed_read_without_snps_is_a_clean_error(tmp_path):
    ts = msprime.sim_ancestry(4, sequence_length=5_000, population_size=10_000, random_seed=1)
    ts.dump(tmp_path / "chrE.trees")
    inp = {"format": "trees", "path": str(tmp_path / "chrE.trees"), "options": {}}
    with pytest.raises(InputFormatError, match="chrE: no usable SNPs"):
        scan_inputs.read_chromosome(inp, "chrE", packed=True, processes=2)
    hd = read_trees_packed(tmp_path / "chrE.trees", processes=2)
    assert hd.n_sites == 0 and hd.haplotypes.packed.shape == (0, 1) and hd.stats["kept"] == 0
