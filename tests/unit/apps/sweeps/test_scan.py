"""Sweep scan: windows as in training, regions merge to the whole scan, p-values, peaks, writers."""

import numpy as np
import pandas as pd
import pytest
import torch

from quantscan.apps.sweeps import images as img
from quantscan.apps.sweeps.dataset import encode_replicates
from quantscan.apps.sweeps.io import MISSING, HaplotypeData
from quantscan.apps.sweeps.scan import (
    SCORE_COLUMNS,
    add_pvalues,
    add_score,
    bh_qvalues,
    call_peaks,
    empirical_pvalues,
    encode_windows,
    extract_windows,
    grid_span,
    make_grid,
    merge_scores,
    plot_scan,
    read_scores_tsv,
    region_grid,
    region_slice,
    saturation,
    scan_chromosome,
    score_ranks,
    smooth,
    window_bounds,
    write_bedgraph,
    write_peaks_bed,
    write_scores_tsv,
)
from quantscan.apps.sweeps.simulate import Replicate
from quantscan.errors import ConfigError, InputFormatError
from quantscan.models import SweepNet
from quantscan.runtime import BinaryConvLutEngine, Engine


class MeanEngine(Engine):
    """Deterministic stand-in: P(sweep) grows with the image's derived-allele density."""

    def __init__(self, batch_size=7):
        super().__init__("mean", batch_size, 1, 2)
        self.calls = 0

    def _logits(self, x):
        self.calls += 1
        m = x.reshape(len(x), -1).mean(axis=1)
        return np.stack([np.zeros_like(m), 12 * (m - 0.3)], axis=1)


def chromosome(n_sites=300, n_haps=10, length=30_000, seed=0, missing=0.0):
    rng = np.random.default_rng(seed)
    pos = np.sort(rng.uniform(1, length, n_sites))
    freq = rng.beta(0.4, 1.2, n_sites)[:, None]
    hap = (rng.random((n_sites, n_haps)) < freq).astype(np.uint8)
    if missing:
        hap[rng.random(hap.shape) < missing] = MISSING
    return HaplotypeData("chr9", pos, hap, [f"h{i}" for i in range(n_haps)], length=length)


def test_window_bounds_match_centre_window():
    hd = chromosome()
    centres = np.concatenate([[-5.0, 0.0, 40_000.0], hd.positions[[0, 7, 150, -1]], [12_345.6]])
    starts, stops = window_bounds(hd.positions, centres, 16)
    for c, a, b in zip(centres, starts, stops, strict=True):
        assert (a, b) == img.centre_window(hd.positions, hd.n_sites, c, 16)
    short = hd.positions[:5]
    a, b = window_bounds(short, np.array([1.0, 1e9]), 16)
    assert a.tolist() == [0, 0] and b.tolist() == [5, 5]


def test_extract_windows_pads_and_fills_missing():
    hd = chromosome(40, 6, missing=0.05)
    starts, stops = np.array([0, 10, 35]), np.array([8, 18, 40])  # the last one is short
    win = extract_windows(hd.haplotypes, starts, stops, 8)
    filled = hd.filled(0)
    for w, a, b in zip(win, starts, stops, strict=True):
        np.testing.assert_array_equal(w, img.pad_window(filled[a:b].T, 8))
    assert win.max() == 1


def test_scan_windows_are_encoded_exactly_as_training():
    hd = chromosome(200, 12, seed=1)
    centres = np.array([3_000.0, 15_000.5, 29_000.0])
    for encoding, order in [
        ("sweepnet", "descending"),
        ("raw", "descending"),
        ("sweepnet", "ascending"),
    ]:
        reps = [Replicate(hd.positions, hd.haplotypes, float(c)) for c in centres]
        train_images, train_snps = encode_replicates(reps, 24, encoding, order)
        starts, stops = window_bounds(hd.positions, centres, 24)
        scan_images = encode_windows(hd.haplotypes, starts, stops, 24, encoding, order)
        np.testing.assert_array_equal(scan_images[:, 0], train_images)
        np.testing.assert_array_equal(stops - starts, train_snps)


def test_grid_and_regions():
    assert make_grid(10, 20, 1).tolist() == [15.0]
    np.testing.assert_allclose(make_grid(0, 100, 5), [0, 25, 50, 75, 100])
    slices = [region_slice(10, 3, r) for r in range(3)]
    assert [(s.start, s.stop) for s in slices] == [(0, 4), (4, 7), (7, 10)]
    parts = [region_grid(1000.0, 10, 3, r) for r in range(3)]
    np.testing.assert_array_equal(np.concatenate(parts), make_grid(0, 1000.0, 10))
    sizes = [region_slice(3, 5, r).stop - region_slice(3, 5, r).start for r in range(5)]
    assert sizes == [1, 1, 1, 0, 0]
    with pytest.raises(ConfigError, match="region"):
        region_slice(10, 3, 3)
    hd = chromosome()
    assert grid_span(hd) == (hd.positions[0], hd.positions[-1])
    assert grid_span(hd, "length") == (0.0, 30_000.0)
    hd.length = None
    with pytest.raises(ConfigError, match="no length"):
        grid_span(hd, "length")


@pytest.mark.parametrize("n_regions", [2, 3, 7])
def test_regions_merge_to_the_whole_scan(n_regions):
    hd = chromosome(seed=2)
    kw = dict(width=16, n_points=50, batch_size=8)
    whole = scan_chromosome(hd, MeanEngine(), **kw)
    parts = [
        scan_chromosome(hd, MeanEngine(), n_regions=n_regions, region=r, **kw)
        for r in range(n_regions)
    ]
    pd.testing.assert_frame_equal(merge_scores(parts), whole)
    assert list(whole.columns) == list(SCORE_COLUMNS)
    assert whole["n_snps"].eq(16).all() and whole["p_sweep"].between(0, 1).all()
    assert (whole["window_start"] <= whole["window_end"]).all()


def test_scan_with_lookup_engine_and_regions():
    torch.manual_seed(0)
    engine = BinaryConvLutEngine(SweepNet(filters=4).eval(), chunk=5)
    hd = chromosome(120, 10, seed=3)
    whole = scan_chromosome(hd, engine, width=12, n_points=23)
    merged = merge_scores(
        [
            scan_chromosome(hd, engine, width=12, n_points=23, n_regions=4, region=r)
            for r in range(4)
        ]
    )
    np.testing.assert_allclose(merged["p_sweep"], whole["p_sweep"], atol=1e-6)
    pd.testing.assert_frame_equal(merged.drop(columns="p_sweep"), whole.drop(columns="p_sweep"))


def test_short_and_empty_chromosomes():
    hd = chromosome(5, 8)
    table = scan_chromosome(hd, MeanEngine(), width=12, n_points=4)
    assert table["n_snps"].eq(5).all() and table["p_sweep"].notna().all()
    empty = HaplotypeData(
        "chrE", np.zeros(0), np.zeros((0, 8), np.uint8), list("abcdefgh"), length=1e4
    )
    engine = MeanEngine()
    table = scan_chromosome(empty, engine, width=12, n_points=3, span="length")
    assert table["p_sweep"].isna().all() and table["n_snps"].eq(0).all() and engine.calls == 0
    assert table["position"].tolist() == [0, 5000, 10000]


def test_empirical_pvalues():
    null = np.array([0.1, 0.5, 0.5, 0.9, np.nan])
    p = empirical_pvalues(np.array([0.5, 1.0, 0.0, np.nan, 0.9]), null)
    np.testing.assert_allclose(p[[0, 1, 2, 4]], [4 / 5, 1 / 5, 5 / 5, 2 / 5])
    assert np.isnan(p[3])
    with pytest.raises(ConfigError, match="neutral"):
        empirical_pvalues(np.array([0.5]), np.array([np.nan]))


def score_table():
    p = [0.1, 0.9, 0.95, 0.2, 0.8, 0.1, np.nan, 0.7]
    pos = np.arange(len(p)) * 100 + 1000
    return pd.DataFrame(
        {
            "chrom": "chr1",
            "position": pos,
            "window_start": pos - 30,
            "window_end": pos + 30,
            "n_snps": 16,
            "p_sweep": p,
            "log_odds": np.log(np.array(p) / (1 - np.array(p))),
        }
    )


def test_call_peaks():
    table = add_score(score_table(), "p_sweep", 0.0)
    peaks = call_peaks(table, 0.5)
    assert peaks[["start", "end", "peak_position", "n_points"]].values.tolist() == [
        [1070, 1230, 1200, 2],
        [1370, 1430, 1400, 1],
        [1670, 1730, 1700, 1],
    ]
    assert peaks["max_p_sweep"].tolist() == [0.95, 0.8, 0.7]
    merged = call_peaks(table, 0.5, max_gap=1)
    assert merged[["start", "end", "peak_position", "n_points"]].values.tolist()[0] == [
        1070,
        1430,
        1200,
        3,
    ]
    with_p = add_pvalues(table, np.linspace(0, 1, 99))
    by_p = call_peaks(with_p, 0.35, column="p_value")
    assert by_p["peak_position"].tolist() == [1200, 1400, 1700]
    assert (by_p["min_p_value"] <= 0.35).all()
    assert call_peaks(table, 0.99).empty


def test_writers_and_reader(tmp_path):
    table = score_table()
    write_scores_tsv(table, tmp_path / "s.tsv", header=["input_haplotypes: 198", "model: x"])
    assert (tmp_path / "s.tsv").read_text().startswith("# input_haplotypes: 198\n# model: x\n")
    back = read_scores_tsv(tmp_path / "s.tsv")
    pd.testing.assert_frame_equal(back, table, check_dtype=False)
    write_bedgraph(table, tmp_path / "s.bedgraph", base=1)
    lines = (tmp_path / "s.bedgraph").read_text().splitlines()
    assert lines[0].startswith("track type=bedGraph")
    rows = [ln.split("\t") for ln in lines[1:]]
    starts = [int(r[1]) for r in rows]
    ends = [int(r[2]) for r in rows]
    assert starts[0] == 999 and ends[-1] == 1700  # 1-based 1000 -> 0-based 999; last 1-bp
    assert all(a < b for a, b in zip(starts, ends, strict=True))
    assert all(e <= s for e, s in zip(ends[:-1], starts[1:], strict=True))  # sorted, no overlap
    assert len(rows) == 7  # the NaN grid point is left out
    peaks = call_peaks(table, 0.5)
    write_peaks_bed(peaks, tmp_path / "p.bed", base=1)
    bed = [ln.split("\t") for ln in (tmp_path / "p.bed").read_text().splitlines()[1:]]
    assert bed[0] == ["chr1", "1069", "1230", "peak_1", "950", ".", "1199", "1200"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", boom)
    with pytest.raises(RuntimeError):
        write_scores_tsv(score_table(), tmp_path / "s.tsv")
    assert list(tmp_path.iterdir()) == []


def test_reader_and_merge_errors(tmp_path):
    (tmp_path / "bad.tsv").write_text("chrom\tposition\np\t1\n")
    with pytest.raises(InputFormatError, match=r"bad.tsv.*window_start"):
        read_scores_tsv(tmp_path / "bad.tsv")
    a = score_table()
    b = a.assign(chrom="chr2")
    with pytest.raises(InputFormatError, match="mix chromosomes"):
        merge_scores([a, b])
    with pytest.raises(InputFormatError, match="grid order"):
        merge_scores([a.iloc[4:], a.iloc[:4]])


def test_plot_scan(tmp_path):
    table = score_table()
    plot_scan(
        table,
        tmp_path / "t.png",
        truth=[1200],
        peaks=call_peaks(table, 0.5),
        threshold=0.5,
        hotspots=[(1300, 1400)],
    )
    assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_smooth_averages_the_finite_neighbours_within_reach():
    pos = np.array([0.0, 100, 200, 300, 1000])
    v = np.array([1.0, 3.0, np.nan, 5.0, 7.0])
    np.testing.assert_allclose(smooth(pos, v, 100), [2.0, 2.0, 4.0, 5.0, 7.0])
    np.testing.assert_array_equal(smooth(pos, v, 0), v)
    assert np.isnan(smooth(pos, np.full(5, np.nan), 500)).all()
    # a statistic that is smoothed keeps NaN where the window itself was not scored
    lo = np.array([0.0, 2.0, np.nan, 4.0, 6.0])
    from quantscan.apps.sweeps.scan import ranking_score

    out = ranking_score(pos, lo, lo, "log_odds_smoothed", 100)
    assert np.isnan(out[2]) and out[1] == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="scan statistic must be one of"):
        ranking_score(pos, lo, lo, "median", 1)


def _bh_reference(p):
    """Benjamini & Hochberg (1995) step-up, written out: q_(i) = min_{j >= i} p_(j) m / j."""
    p = np.asarray(p, float)
    m = len(p)
    order = np.argsort(p)
    q = np.empty(m)
    running = 1.0
    for rank in range(m, 0, -1):
        i = order[rank - 1]
        running = min(running, p[i] * m / rank)
        q[i] = running
    return q


@pytest.mark.parametrize("seed", range(3))
def test_bh_qvalues_match_the_step_up_procedure(seed):
    rng = np.random.default_rng(seed)
    p = np.concatenate([rng.random(300), rng.random(20) * 1e-4, [1 / 1251] * 30])  # ties
    np.testing.assert_allclose(bh_qvalues(p), _bh_reference(p), rtol=1e-12)
    try:  # statsmodels, where installed, is a second reference
        from statsmodels.stats.multitest import multipletests
    except ImportError:
        pass
    else:
        np.testing.assert_allclose(bh_qvalues(p), multipletests(p, method="fdr_bh")[1])
    with_nan = np.concatenate([p[:10], [np.nan]])
    q = bh_qvalues(with_nan)
    assert np.isnan(q[-1]) and np.allclose(q[:10], _bh_reference(p[:10]))


def test_score_ranks():
    r = score_ranks(np.array([0.5, 2.0, np.nan, 2.0, -1.0]))
    np.testing.assert_array_equal(r[[0, 1, 3, 4]], [3, 1, 1, 4])
    assert np.isnan(r[2])


def test_saturation_warning_names_causes():
    table = score_table().assign(p_value=0.5)
    assert saturation(table, 1000)["warning"] is None
    flat = table.assign(p_sweep=0.999, p_value=1 / 1251)
    sat = saturation(flat, 1250)
    assert sat["share_p_floor"] == 1.0 and sat["share_p_sweep_099"] == 1.0
    assert "saturated track" in sat["warning"] and "demography or sample size" in sat["warning"]
    assert "1/1251" in sat["warning"]
    # just under the share: no warning
    some = table.assign(p_value=[1 / 1251] + [0.5] * 7)
    assert saturation(some, 1250)["warning"] is None
