"""Simulated test chromosome: segments as training replicates, offsets, hotspots, files, truth."""

import dataclasses

import numpy as np
import pytest

from quantscan.apps.sweeps.chromosome import (
    TRUTH_COLUMNS,
    ChromosomeSpec,
    read_truth,
    simulate_chromosome,
    simulate_segment,
    write_trees,
    write_truth,
    write_truth_bed,
    write_vcf,
)
from quantscan.apps.sweeps.io import read_trees, read_vcf
from quantscan.apps.sweeps.simulate import SimParams, simulate_replicate
from quantscan.errors import ConfigError, InputFormatError

SWEEPS_CFG = {
    "population_size": 10000,
    "haplotypes": 8,
    "mutation_rate": 5e-7,
    "recombination_rate": 5e-7,
    "selection_coefficient": 0.05,
    "sweep_end_time": 0,
    "scenarios": {
        "constant": {},
        "mild": {"bottleneck": {"start": 0.1, "end": 0.101, "size": 0.5}},
    },
}
SPEC = ChromosomeSpec(
    name="chrT",
    n_segments=4,
    segment_length=5000,
    sweep_segments=(1, 3),
    hotspot_segments=(2, 3),
    hotspot={"left": 0.4, "right": 0.6, "intensity": 20},
)


@pytest.fixture(scope="module")
def chrom():
    return simulate_chromosome(SPEC, SPEC.params(SWEEPS_CFG), master_seed=7)


def test_segments_are_training_replicates(chrom):
    ts, truth = chrom
    p = SPEC.params(SWEEPS_CFG)
    for k in (0, 1):  # neutral and sweep segments without hotspot
        row = truth.iloc[k]
        rep = simulate_replicate(p, row["class"], int(row["seed"]))
        seg = ts.keep_intervals([[row["start"], row["end"]]], simplify=False)
        pos = seg.sites_position
        np.testing.assert_allclose(pos - row["start"], rep.positions)
        np.testing.assert_array_equal(seg.genotype_matrix(), rep.haplotypes)
        assert row["n_sites"] == len(rep.positions)


def test_truth_table(chrom, tmp_path):
    ts, truth = chrom
    assert list(truth.columns) == list(TRUTH_COLUMNS)
    assert ts.sequence_length == 4 * 5000 and ts.num_samples == 8
    assert truth["class"].tolist() == ["neutral", "sweep", "neutral", "sweep"]
    assert truth["sweep_position"].tolist()[1::2] == [7500.0, 17500.0]
    assert truth["hotspot_start"].tolist()[2:] == [12000.0, 17000.0]
    assert truth["n_sites"].sum() == ts.num_sites
    assert len(set(truth["seed"])) == 4
    write_truth(truth, tmp_path / "t.tsv")
    back = read_truth(tmp_path / "t.tsv")
    assert back["sweep_position"].isna().tolist() == truth["sweep_position"].isna().tolist()
    write_truth_bed(truth, tmp_path / "t.bed")
    bed = (tmp_path / "t.bed").read_text().splitlines()
    assert bed == [
        "chrT\t7500\t7501\tsweep_s1",
        "chrT\t12000\t13000\thotspot_s2",
        "chrT\t17000\t18000\thotspot_s3",
        "chrT\t17500\t17501\tsweep_s3",
    ]
    (tmp_path / "bad.tsv").write_text(
        (tmp_path / "t.tsv").read_text().replace("\tsweep\t", "\tswep\t")
    )
    with pytest.raises(InputFormatError, match="class"):
        read_truth(tmp_path / "bad.tsv")


def test_files_round_trip(chrom, tmp_path):
    ts, _ = chrom
    write_trees(ts, tmp_path / "c.trees")
    (hd,) = read_trees(tmp_path / "c.trees")
    assert hd.chrom == "chrT" and hd.length == 20000 and hd.ploidy == 2
    g = ts.genotype_matrix()
    poly = (g.min(axis=1) == 0) & (g.max(axis=1) == 1)
    np.testing.assert_array_equal(hd.haplotypes, g[poly])
    np.testing.assert_allclose(hd.positions, ts.sites_position[poly])
    write_vcf(ts, tmp_path / "c.vcf", "chrT")
    (vcf,) = read_vcf(tmp_path / "c.vcf")
    assert vcf.chrom == "chrT"
    np.testing.assert_array_equal(vcf.positions, np.floor(hd.positions) + 1)
    np.testing.assert_array_equal(vcf.haplotypes, hd.haplotypes)


def test_hotspot_concentrates_recombination():
    p = dataclasses.replace(SPEC.params(SWEEPS_CFG), sequence_length=5000.0)
    hot = dataclasses.replace(p, hotspot={"left": 2000, "right": 2500, "intensity": 50})
    breaks = []
    for seed in range(1, 4):
        bp = np.array(simulate_segment(hot, "neutral", seed).breakpoints(as_array=True))[1:-1]
        breaks.append(bp)
    bp = np.concatenate(breaks)
    inside = np.mean((bp >= 2000) & (bp < 2500))
    assert len(bp) > 30 and inside > 0.5  # 10 % of the length, ~85 % of the rate


def test_sweep_position_off_centre():
    p = dataclasses.replace(
        SPEC.params(SWEEPS_CFG), selection_coefficient=0.5, recombination_rate=5e-5
    )
    ts = simulate_segment(p, "sweep", 3, sweep_position=1000.0)
    # every lineage at the selected site coalesces during the sweep (tens of generations)
    at_site = ts.at(1000.0).time(ts.at(1000.0).root)
    far = np.median([t.time(t.root) for t in ts.trees() if t.interval.left > 3500])
    assert at_site < 200 < far


def test_spec_validation_and_config():
    with pytest.raises(ConfigError, match="sweep_segments"):
        ChromosomeSpec(n_segments=3, sweep_segments=(3,))
    with pytest.raises(ConfigError, match="hotspot"):
        ChromosomeSpec(hotspot={"left": 0.6, "right": 0.4, "intensity": 2})
    with pytest.raises(ConfigError, match="unknown chromosome key"):
        ChromosomeSpec.from_config({"name": "x", "sweeps": [1]})
    spec = ChromosomeSpec.from_config(
        {
            "name": "x",
            "n_segments": 2,
            "sweep_segments": [1],
            "hotspot_segments": [],
            "scenario": "mild",
            "haplotypes": 6,
        }
    )
    p = spec.params(SWEEPS_CFG)
    assert isinstance(p, SimParams) and p.bottleneck is not None
    assert p.haplotypes == 6 and p.sequence_length == 100_000
    assert spec.length == 200_000
