"""The scan's results (quantscan.apps.sweeps.scan_results): score thresholds of the p-values,
the merged per-chromosome outputs and the summary table."""

import numpy as np
import pandas as pd
import pytest
from scan_helpers import MeanEngine, chromosome

from quantscan.apps.sweeps import scan, scan_results


@pytest.mark.parametrize("seed", range(4))
def test_score_threshold_matches_empirical_pvalues(seed):
    rng = np.random.default_rng(seed)
    null = np.round(rng.random(200), 2)  # ties
    for t in (0.001, 0.01, 0.05, 0.5, 1.0):
        s = scan_results.score_threshold(null, t)
        probe = np.unique(np.concatenate([null, null + 1e-9, [0.0, 1.0]]))
        p = scan.empirical_pvalues(probe, null)
        passing = probe[p <= t]
        if not np.isfinite(s):
            assert (s == -np.inf and passing.size == probe.size) or (
                np.isnan(s) and not passing.size
            )
        else:
            assert passing.size and passing.min() > s and (p[probe <= s] > t).all()


def test_merge_chromosome_outputs(tmp_path):
    hd = chromosome(n_sites=600, length=60_000, seed=4)
    hd.haplotypes[280:330] = 1  # a derived block: high scores there
    hd.haplotypes[280:330, 0] = 0
    tables = [
        scan.scan_chromosome(hd, MeanEngine(), width=16, n_points=120, n_regions=2, region=r)
        for r in (0, 1)
    ]
    null = np.concatenate(
        [tables[0]["p_sweep"].to_numpy()[:40], tables[1]["p_sweep"].to_numpy()[-40:]]
    )
    truth = pd.DataFrame(
        {
            "class": ["sweep"],
            "sweep_position": [hd.positions[305]],
            "hotspot_start": [np.nan],
            "hotspot_end": [np.nan],
        }
    )
    out = {k: tmp_path / f"c.{k}" for k in ("tsv", "bedgraph", "bed", "png")}
    peaks = {"column": "p_value", "threshold": 0.05, "max_gap": 1, "min_points": 1}
    counts = scan_results.merge_chromosome(
        tables,
        null,
        peaks=peaks,
        base=1,
        out=out,
        statistic="p_sweep",
        header=["input_haplotypes: 10", "model_haplotypes: 10"],
        truth=truth,
    )
    head = out["tsv"].read_text().splitlines()[:3]
    assert head[:2] == ["# input_haplotypes: 10", "# model_haplotypes: 10"]
    table = pd.read_csv(out["tsv"], sep="\t", comment="#")
    extra = ["score", "p_value", "q_value", "rank"]
    assert list(table.columns) == [*scan.SCORE_COLUMNS, *extra] and len(table) == 120
    assert counts["peaks"] >= 1 and counts["null_windows"] == null.size
    q = scan.bh_qvalues(table["p_value"].to_numpy())
    np.testing.assert_allclose(table["q_value"], q, rtol=1e-5)
    assert table.loc[table["score"].idxmax(), "rank"] == 1
    assert (table["q_value"] >= table["p_value"] - 1e-12).all()
    back = scan.read_scores_tsv(out["tsv"])  # the comment lines are skipped
    assert len(back) == 120
    bed = pd.read_csv(out["bed"], sep="\t")
    top = bed.iloc[bed["score"].argmax()]
    assert top["start"] <= hd.positions[305] <= top["end"]
    assert out["png"].read_bytes()[:4] == b"\x89PNG"
    assert out["bedgraph"].read_text().startswith("track type=bedGraph")
    # no null: p-values NA, no p-value peaks, files still written
    counts = scan_results.merge_chromosome(tables, np.zeros(0), peaks=peaks, base=0, out=out)
    assert counts["peaks"] == 0
    assert pd.read_csv(out["tsv"], sep="\t", comment="#")["p_value"].isna().all()


def test_summary_rows(tmp_path):
    metrics = {
        "success_rate": 0.5,
        "distance_error_pct": 1.0,
        "sensitivity_at_fpr": 0.9,
        "n_sweep": 2,
    }
    rows = [
        scan_results.summary_row(
            "constant",
            "fp32",
            "onnx_fp32",
            "test_replicates",
            metrics,
            {"windows": 10, "seconds": 2.0},
            statistic="log_odds_smoothed",
            scan_statistic=True,
        ),
        scan_results.summary_row(
            "constant", "m", "onnx_int8", "test_replicates", None, {"skipped": "model m cannot run"}
        ),
    ]
    scan_results.write_summary(rows, tmp_path / "s.tsv")
    t = pd.read_csv(tmp_path / "s.tsv", sep="\t")
    assert list(t.columns) == list(scan_results.SUMMARY_COLUMNS)
    assert t.loc[0, "windows_per_s"] == 5.0 and t.loc[1, "note"] == "model m cannot run"
    assert t["scan_statistic"].tolist() == [True, False]
    assert np.isnan(t.loc[1, "success_rate"])
    assert {"success_rate", "distance_error_pct", "sensitivity_at_fpr"} <= set(t.columns)
