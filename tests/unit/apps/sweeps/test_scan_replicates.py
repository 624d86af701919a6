"""Replicates of the scan (quantscan.apps.sweeps.scan_replicates): a scenario's test replicates
and the replicate scan files (with the null they give)."""

import numpy as np
import pytest

from quantscan.apps.sweeps import scan, scan_metrics, scan_replicates, scan_results
from quantscan.apps.sweeps.simulate import Replicate, save_replicates
from quantscan.errors import InputFormatError

# --------------------------------------------------------------------------------------------------
# test replicates


def test_test_batches_and_loading(tmp_path):
    # 7 training + 5 test replicates in batches of 4: test indices 7..11 in batches 1 and 2
    assert scan_replicates.test_batches(7, 5, 4, neutral_only=False) == [1, 2]
    assert scan_replicates.test_batches(7, 5, 4, neutral_only=True) == [0, 1]
    assert scan_replicates.test_batches(8, 4, 4, neutral_only=False) == [2]
    shards = {}
    for b, size in ((1, 4), (2, 4)):
        reps = [
            Replicate(np.array([float(b * 4 + i)]), np.ones((1, 4), np.uint8), 50.0)
            for i in range(size)
        ]
        shards[b] = tmp_path / f"batch{b}.npz"
        save_replicates(shards[b], reps, sequence_length=100.0, meta={})
    reps, length = scan_replicates.load_test_replicates(shards, first_test=7, batch_size=4)
    assert length == 100.0 and [r.positions[0] for r in reps] == [7, 8, 9, 10, 11]
    reps, _ = scan_replicates.load_test_replicates(
        shards, first_test=7, batch_size=4, max_replicates=2
    )
    assert len(reps) == 2


# --------------------------------------------------------------------------------------------------
# replicate scans


def test_replicate_scans_round_trip_and_null(tmp_path):
    grid = np.linspace(0, 100, 5)

    def tracks(p, true):
        p = np.asarray(p, np.float64)
        with np.errstate(divide="ignore"):
            lo = np.log(p) - np.log1p(-p)
        return scan_metrics.ReplicateTracks(grid, p, lo, np.asarray(true, np.float64))

    sweeps = tracks([[0.1, 0.2, 0.9, 0.3, np.nan]], [50.0])
    neutrals = tracks([[0.1, 0.2, 0.3, 0.4, 0.5], [np.nan, 0.6, 0.1, 0.1, 0.1]], [np.nan] * 2)
    info = {"engine": "x", "sample_size": {"input_haplotypes": 10}}
    scan_replicates.save_replicate_scans(tmp_path / "r.npz", sweeps, neutrals, 100.0, info)
    s, n, length, back = scan_replicates.load_replicate_scans(tmp_path / "r.npz")
    assert (len(s.p_sweep), len(n.p_sweep), length, back) == (1, 2, 100.0, info)
    np.testing.assert_array_equal(s.p_sweep, sweeps.p_sweep)
    assert s.true_position[0] == 50.0 and np.isnan(n.true_position).all()
    assert sorted(scan_results.neutral_null(tmp_path / "r.npz", "p_sweep")) == pytest.approx(
        [0.1, 0.1, 0.1, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    )
    # the null of log-odds is the logit of the same numbers, in the same order
    null_lo = sorted(scan_results.neutral_null(tmp_path / "r.npz", "log_odds"))
    assert null_lo == pytest.approx(
        np.log(
            np.array(sorted([0.1] * 4 + [0.2, 0.3, 0.4, 0.5, 0.6]))
            / (1 - np.array(sorted([0.1] * 4 + [0.2, 0.3, 0.4, 0.5, 0.6])))
        )
    )
    for statistic in scan.STATISTICS:
        m = scan_metrics.evaluate(s.scans(statistic, 10.0), n.scans(statistic, 10.0), length)
        assert m["n_sweep"] == 1 and m["n_neutral"] == 2
    m = scan_metrics.evaluate(s.scans("p_sweep"), n.scans("p_sweep"), length)
    assert m["success_rate"] == 1.0 and m["distance_error_pct"] == 0.0
    # a neutral-only file (the null of an input at another size) and a corrupt one
    scan_replicates.save_replicate_scans(tmp_path / "n.npz", None, neutrals, 100.0, {})
    s, n, _, _ = scan_replicates.load_replicate_scans(tmp_path / "n.npz")
    assert len(s.p_sweep) == 0 and len(n.p_sweep) == 2
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(InputFormatError, match="bad.npz: unreadable replicate scan file"):
        scan_replicates.load_replicate_scans(tmp_path / "bad.npz")
