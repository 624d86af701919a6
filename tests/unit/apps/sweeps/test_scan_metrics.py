"""ASDEC metrics: peak ties, success rate, distance error, sensitivity at a fixed FPR, chromosomes."""

import numpy as np
import pandas as pd
import pytest

from quantscan.apps.sweeps.scan_metrics import (
    ReplicateScan,
    chromosome_replicates,
    distance_error,
    evaluate,
    evaluate_chromosome,
    fpr_threshold,
    replicate_peak,
    scan_replicates,
    sensitivity,
    success_rate,
)
from quantscan.errors import ConfigError


def test_replicate_peak_ties_take_the_middle():
    pos = np.array([10.0, 20.0, 30.0, 40.0, 50.0])
    assert replicate_peak(pos, [0.1, 0.9, 0.9, 0.9, 0.2]) == (30.0, 0.9)
    assert replicate_peak(pos, [0.9, 0.1, 0.1, 0.1, 0.9]) == (10.0, 0.9)  # two tied: the first
    assert replicate_peak(pos, [np.nan, 0.3, np.nan, 0.1, 0.2]) == (20.0, 0.3)
    assert np.isnan(replicate_peak(pos, [np.nan] * 5)[0])


def test_success_rate_and_distance_error():
    true = np.full(4, 50_000.0)
    reported = np.array([50_000.0, 50_999.0, 51_001.0, 40_000.0])
    assert success_rate(reported, true, 100_000) == 0.5  # within 1 % (1,000 bp), inclusive
    assert success_rate([51_000.0], [50_000.0], 100_000) == 1.0
    assert distance_error(reported, true, 100_000) == pytest.approx(
        (0 + 999 + 1001 + 10_000) / 4 / 1000
    )


def test_fpr_threshold_and_sensitivity_follow_asdec():
    neutral = np.arange(1, 21) / 20  # 0.05 .. 1.0
    # decreasing order, index round(19 * 0.05) = 1 -> 0.95
    assert fpr_threshold(neutral, 0.05) == 0.95
    tpr, thr, fpr = sensitivity([0.99, 0.95, 0.96, 0.5], neutral, 0.05)
    assert thr == 0.95 and tpr == 0.5 and fpr == 0.05  # strictly above the threshold
    assert fpr_threshold(neutral, 0.0) == 1.0
    with pytest.raises(ConfigError):
        fpr_threshold([], 0.05)
    with pytest.raises(ConfigError):
        fpr_threshold(neutral, 1.5)


def test_evaluate():
    grid = np.linspace(0, 100_000, 101)
    rng = np.random.default_rng(0)

    def rep(peak_at, height, true=np.nan):
        s = rng.uniform(0, 0.3, grid.size)
        s[np.searchsorted(grid, peak_at)] = height
        return ReplicateScan(grid, s, true)

    sweeps = [rep(50_000, 0.9, 50_000), rep(50_000 + 2_000, 0.8, 50_000), rep(10_000, 0.35, 50_000)]
    neutrals = [rep(30_000, h) for h in np.linspace(0.4, 0.7, 20)]
    m = evaluate(sweeps, neutrals, 100_000)
    assert m["success_rate"] == pytest.approx(1 / 3)
    assert m["distance_error_pct"] == pytest.approx((0 + 2 + 40) / 3)
    assert m["fpr_threshold"] == pytest.approx(np.linspace(0.4, 0.7, 20)[-2])
    assert m["sensitivity_at_fpr"] == pytest.approx(2 / 3)
    assert m["n_sweep"] == 3 and m["n_neutral"] == 20
    assert np.isnan(evaluate(sweeps, [], 100_000)["sensitivity_at_fpr"])
    with pytest.raises(ConfigError, match="true_position"):
        evaluate([rep(1, 0.5)], neutrals, 100_000)


def test_chromosome_segments_as_replicates():
    truth = pd.DataFrame(
        {
            "chrom": "c",
            "segment": [0, 1, 2],
            "start": [0.0, 1000.0, 2000.0],
            "end": [1000.0, 2000.0, 3000.0],
            "class": ["neutral", "sweep", "neutral"],
            "sweep_position": [np.nan, 1500.0, np.nan],
        }
    )
    pos = np.arange(0, 3001, 100)
    p = np.full(pos.size, 0.1)
    p[pos == 1500] = 0.95
    p[pos == 500] = 0.4
    p[pos == 3000] = 0.5  # the chromosome end belongs to the last segment
    scores = pd.DataFrame({"chrom": "c", "position": pos, "p_sweep": p})
    sweeps, neutrals, length = chromosome_replicates(scores, truth)
    assert length == 1000 and len(sweeps) == 1 and len(neutrals) == 2
    assert len(neutrals[1].positions) == 11  # 2000 .. 3000 inclusive
    m = evaluate_chromosome(scores, truth)
    assert m["success_rate"] == 1.0 and m["distance_error_pct"] == 0.0
    assert m["fpr_threshold"] == 0.5 and m["sensitivity_at_fpr"] == 1.0


def test_scan_replicates_batches_all_replicates():
    from quantscan.apps.sweeps.simulate import Replicate
    from quantscan.runtime import Engine

    class Density(Engine):
        def __init__(self):
            super().__init__("density", 1000, 1, 2)
            self.calls = 0

        def _logits(self, x):
            self.calls += 1
            m = x.reshape(len(x), -1).mean(axis=1)
            return np.stack([np.zeros_like(m), 10 * m], axis=1)

    rng = np.random.default_rng(1)
    reps = []
    for k in range(3):
        pos = np.sort(rng.uniform(0, 1000, 60))
        hap = np.zeros((60, 8), np.uint8)
        hap[(pos > 600) & (pos < 700)] = 1  # a block of derived alleles near 650
        reps.append(Replicate(pos, hap, 650.0 if k < 2 else np.nan))
    reps.append(Replicate(np.zeros(0), np.zeros((0, 8), np.uint8), np.nan))  # no SNPs
    engine = Density()
    tracks = scan_replicates(reps, engine, sequence_length=1000, width=10, n_points=21)
    scans = tracks.scans("p_sweep")
    assert engine.calls == 1 and len(scans) == 4
    # log-odds are the model's logit difference, P(sweep) its sigmoid
    ok = np.isfinite(tracks.log_odds)
    np.testing.assert_allclose(tracks.p_sweep[ok], 1 / (1 + np.exp(-tracks.log_odds[ok])))
    assert [s.peak()[0] for s in tracks.scans("log_odds")][:2] == [s.peak()[0] for s in scans[:2]]
    assert np.isnan(scans[3].scores).all() and scans[0].true_position == 650.0
    assert 600 <= scans[0].peak()[0] <= 700
    m = evaluate(scans[:2], scans[2:3], 1000, tolerance=0.06)
    assert m["success_rate"] == 1.0
    # more haplotypes than the model: K subsets, one engine call per subset index
    wide = [
        Replicate(r.positions, np.repeat(r.haplotypes, 3, axis=1), r.sweep_position) for r in reps
    ]
    engine = Density()
    sub = scan_replicates(
        wide, engine, sequence_length=1000, width=10, n_points=21, model_haplotypes=8, subsets=3
    )
    assert engine.calls == 3
    np.testing.assert_allclose(sub.log_odds, tracks.log_odds)  # rows repeat: same windows
    with pytest.raises(ConfigError, match="8 haplotypes, fewer than the 12"):
        scan_replicates(
            reps, Density(), sequence_length=1000, width=10, n_points=21, model_haplotypes=12
        )
