"""The sweep localiser: span windows, offset bins, votes, region additivity, engines."""

import dataclasses

import numpy as np
import pytest
import torch

from quantscan.apps.sweeps import localiser
from quantscan.apps.sweeps.io import MISSING
from quantscan.apps.sweeps.localiser import LocaliserSettings
from quantscan.apps.sweeps.scan_metrics import ReplicateTracks
from quantscan.apps.sweeps.simulate import Replicate
from quantscan.errors import ConfigError, InputFormatError
from quantscan.models import build_model
from quantscan.runtime import TorchEngine

S = LocaliserSettings(span=2_000, columns=10, bins=5, step=250, filters=4, hidden=8)


def data(seed=0, sites=300, n=10, length=10_000):
    rng = np.random.default_rng(seed)
    pos = np.sort(rng.uniform(0, length, sites))
    hap = (rng.random((sites, n)) < rng.uniform(0.05, 0.6, sites)[:, None]).astype(np.uint8)
    return pos, hap


def reference_image(pos, hap, centre, s, bounds, density):
    """One window, written out plainly: explicit Gram matrix, loops over columns."""
    w = s.span / s.columns
    edges = centre - s.span / 2 + w * np.arange(s.columns + 1)
    n = hap.shape[1]
    inwin = (pos >= edges[0]) & (pos < edges[-1])
    h = hap[inwin].astype(np.int64)
    g = h.T @ h
    r = np.diag(g)
    dist = r[:, None] + r[None, :] - 2 * g
    ref = np.argmin(dist.sum(axis=1))
    order = np.argsort(dist[ref], kind="stable")
    out = np.zeros((4, n, s.columns), np.float32)
    for c in range(s.columns):
        sel = (pos >= edges[c]) & (pos < edges[c + 1])
        k = sel.sum()
        out[0, :, c] = (hap[sel].sum(axis=0) / max(k, 1))[order]
        same = (hap[sel] == hap[sel][:, [ref]]).sum(axis=0) / k if k else np.ones(n)
        out[3, :, c] = same[order]
        out[1, :, c] = min(k / (density * w), 3.0)
        mid = (edges[c] + edges[c + 1]) / 2
        out[2, :, c] = float(bounds[0] <= mid <= bounds[1])
    return out


def test_span_windows_match_a_plain_reference():
    pos, hap = data()
    bounds, density = (0.0, 10_000.0), 0.03
    win = localiser.SpanWindows(pos, hap, bounds, S, density)
    centres = np.array([-500.0, 0.0, 1234.5, 5000.0, 9990.0, 10_800.0])
    got = win.images(centres)
    assert got.shape == (6, 4, 10, 10) and got.dtype == np.float32
    for k, c in enumerate(centres):
        np.testing.assert_allclose(
            got[k], reference_image(pos, hap, c, S, bounds, density), atol=1e-6
        )
    # columns past the ends are marked outside; an empty window is all zero in channel 0
    assert got[0, 2, 0, 0] == 0 and got[3, 2].min() == 1
    # channel 3: the central haplotype (first row) matches itself wherever there are SNPs
    assert (got[:, 3, 0] == 1).all() and got[:, 3].min() < 1
    # a missing call (VCF './.') counts as ancestral, as in SweepNet's scan
    holes = hap.copy()
    holes[np.random.default_rng(1).random(hap.shape) < 0.1] = MISSING
    filled = np.where(holes == MISSING, 0, holes).astype(np.uint8)
    np.testing.assert_array_equal(
        localiser.SpanWindows(pos, holes, bounds, S, density).images(centres),
        localiser.SpanWindows(pos, filled, bounds, S, density).images(centres),
    )
    empty = win.images(np.array([50_000.0]))
    assert empty[0, 0].max() == 0 and empty[0, 1].max() == 0


def test_offset_bins_and_training_windows_mirror():
    assert list(localiser.offset_bin([-1000, -999.9, -1, 0, 999.9, 1000, 5000], S)) == [
        0, 0, 2, 2, 4, 5, 5
    ]  # fmt: skip
    pos, hap = data(1)
    sweep = Replicate(positions=pos, haplotypes=hap, sweep_position=5_000.0)
    neutral = Replicate(positions=pos, haplotypes=hap, sweep_position=float("nan"))
    rng = np.random.default_rng(0)
    x, y = localiser.training_windows([sweep], [neutral], S, 0.03, 10_000.0, rng)
    n = S.in_windows + S.out_windows + S.neutral_windows
    assert x.shape == (2 * n, localiser.CHANNELS, 10, 10) and len(y) == 2 * n
    assert (y[: S.in_windows] < S.bins).all() and (y[S.in_windows : n] == S.bins).all()
    # the mirrored half: columns reversed, bins mirrored, none stays none
    np.testing.assert_array_equal(x[n:], x[:n][..., ::-1])
    np.testing.assert_array_equal(y[n:], np.where(y[:n] < S.bins, S.bins - 1 - y[:n], S.bins))


def reference_votes(logp, centres, grid, s):
    width = s.span / s.bins
    llr, prob, cov = np.zeros(len(grid)), np.zeros(len(grid)), np.zeros(len(grid))
    for g, x in enumerate(grid):
        for c, centre in enumerate(centres):
            d = x - centre
            if abs(d) > s.span / 2:
                continue
            cov[g] += 1
            f = (d + s.span / 2) / width - 0.5
            k0 = int(np.floor(f))
            for k, w in ((k0, 1 - (f - k0)), (k0 + 1, f - k0)):
                if 0 <= k < s.bins:
                    llr[g] += w * (logp[c, k] - logp[c, s.bins])
                    prob[g] += w * np.exp(logp[c, k])
    return prob / cov, llr


def random_logp(seed, n):
    z = np.random.default_rng(seed).normal(size=(n, S.bins + 1))
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def test_votes_match_a_plain_reference():
    centres = -1000 + 250.0 * np.arange(30)
    logp = random_logp(2, 30)
    grid = np.linspace(0, 5_000, 23)
    raw = dataclasses.replace(S, smooth=0.0)
    p, llr = localiser.votes(logp, centres, grid, raw)
    rp, rllr = reference_votes(logp, centres, grid, raw)
    np.testing.assert_allclose(p, rp, rtol=1e-10)
    np.testing.assert_allclose(llr, rllr, rtol=1e-10, atol=1e-10)
    assert (p > 0).all() and (p <= 1).all()


def test_smoothed_votes_are_the_box_average_of_the_raw_votes():
    """The default box (+-half a bin) is integrated exactly: it equals the mean of the plain
    reference over a fine sub-grid of the box (the coverage in p_sweep's denominator averaged the
    same way), and differs from the raw votes."""
    centres = -1000 + 250.0 * np.arange(30)
    logp = random_logp(3, 30)
    grid = np.linspace(0, 5_000, 23)
    h = S.smooth * S.span / S.bins
    assert h == 200
    sub = (np.arange(4000) + 0.5) / 4000 * 2 * h - h  # midpoints of 4,000 slices of the box
    raw = dataclasses.replace(S, smooth=0.0)
    llr_sum, prob_sum, cover_sum = 0.0, 0.0, 0.0
    for o in sub:
        rp, rllr = reference_votes(logp, centres, grid + o, raw)
        cover = np.array(
            [(np.abs(x + o - centres) <= S.span / 2).sum() for x in grid], dtype=np.float64
        )
        llr_sum, prob_sum, cover_sum = llr_sum + rllr, prob_sum + rp * cover, cover_sum + cover
    p, llr = localiser.votes(logp, centres, grid, S)
    np.testing.assert_allclose(llr, llr_sum / len(sub), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(p, prob_sum / cover_sum, rtol=1e-4, atol=1e-5)
    assert np.abs(llr - localiser.votes(logp, centres, grid, raw)[1]).max() > 0.05


def test_votes_place_a_sweep_between_bin_centres():
    """Windows that agree on a sweep at 1,100 bp put the track's maximum there, though no window
    centre or bin centre lies on it."""
    centres = 250.0 * np.arange(-4, 24)
    true = 1_100.0
    logp = np.full((len(centres), S.bins + 1), np.log(1e-6))
    for c, centre in enumerate(centres):
        k = localiser.offset_bin(true - centre, S)
        logp[c, k] = 0.0
    grid = np.arange(0, 5_001, 50.0)
    _, llr = localiser.votes(logp, centres, grid, S)
    assert abs(grid[np.argmax(llr)] - true) <= 200


def engine(haplotypes=8, seed=0):
    torch.manual_seed(seed)
    model = build_model(S.arch()).eval()
    return TorchEngine(
        model, input_shape=(localiser.CHANNELS, haplotypes, S.columns), input_dtypes=("float32",)
    )


def test_regions_add_up_to_the_whole_scan():
    pos, hap = data(3, sites=600, n=10, length=20_000)
    grid = np.linspace(pos[0], pos[-1], 41)
    bounds = (pos[0], pos[-1])
    subsets = np.array([[0, 1, 2, 3, 4, 5, 6, 7], [2, 3, 4, 5, 6, 7, 8, 9]])
    kw = dict(bounds=bounds, engine=engine(), settings=S, density=0.03, subsets=subsets)
    whole = localiser.scan_track(pos, hap, grid, **kw)
    parts = [localiser.scan_track(pos, hap, g, **kw) for g in np.array_split(grid, 3)]
    for i in range(2):
        np.testing.assert_allclose(np.concatenate([p[i] for p in parts]), whole[i], rtol=1e-6)
    assert np.isfinite(whole[1]).all()


def test_replicate_tracks_and_subsets():
    pos, hap = data(4, sites=300, n=8, length=10_000)
    reps = [Replicate(positions=pos, haplotypes=hap, sweep_position=3_000.0)]
    tracks = localiser.scan_replicates(
        reps,
        engine(),
        settings=S,
        sequence_length=10_000.0,
        n_points=11,
        density=0.03,
        model_haplotypes=8,
        subsets=3,
        seed=1,
    )
    assert isinstance(tracks, ReplicateTracks)
    assert tracks.log_odds.shape == (1, 11) and np.isfinite(tracks.log_odds).all()
    assert tracks.true_position[0] == 3_000.0
    with pytest.raises(ConfigError, match="4 haplotypes"):
        localiser.scan_replicates(
            [Replicate(positions=pos, haplotypes=hap[:, :4], sweep_position=1.0)],
            engine(),
            settings=S,
            sequence_length=10_000.0,
            n_points=11,
            density=0.03,
            model_haplotypes=8,
        )


def test_settings_are_checked_with_the_key():
    with pytest.raises(ConfigError, match=r"scan\.localiser\.step"):
        LocaliserSettings.from_config({"span": 1000, "step": 2000})
    with pytest.raises(ConfigError, match=r"scan\.localiser\.columns"):
        LocaliserSettings.from_config({"columns": 6})
    with pytest.raises(InputFormatError, match="SNPs"):
        localiser.snp_density([0, 0], 1000)


def test_engines(tmp_path):
    from quantscan import modelio
    from quantscan.export.onnx import export_int8

    torch.manual_seed(0)
    model = build_model(S.arch()).eval()
    path = tmp_path / "model.pt"
    modelio.save_fp32(model, S.arch(), path)
    reason = localiser.open_engine("packed", path, onnx_path=None, settings=S, haplotypes=8)[1]
    assert "cannot run in engine packed" in reason
    assert (
        "needs its ONNX export"
        in localiser.open_engine("onnx_fp32", path, onnx_path=None, settings=S, haplotypes=8)[1]
    )
    pos, hap = data(5)
    x = localiser.SpanWindows(pos, hap[:, :8], (0, 10_000), S, 0.03).images(
        np.arange(0, 10_000, 250.0)
    )
    built = export_int8(
        model, x, tmp_path / "p.onnx", tmp_path / "p.int8.onnx", calibration_samples=16, seed=0
    )
    ref = None
    for kind, onnx in (
        ("torch_fp32", None),
        ("onnx_fp32", built["fp32"]),
        ("onnx_int8", built["int8"]),
    ):
        eng, skipped = localiser.open_engine(kind, path, onnx_path=onnx, settings=S, haplotypes=8)
        assert skipped is None
        z = eng.logits(x)
        assert z.shape == (len(x), S.bins + 1)
        if ref is None:
            ref = z
        else:  # fp32 exactly, int8 close
            tol = 1e-4 if kind == "onnx_fp32" else 0.25 * np.abs(ref).max()
            assert np.abs(z - ref).max() <= tol
        # another haplotype count is refused, not scored
        with pytest.raises(InputFormatError):
            eng.logits(x[:, :, :5])
    other = LocaliserSettings(span=2_000, columns=10, bins=4, step=250)
    with pytest.raises(InputFormatError, match="outputs"):
        localiser.open_engine("torch_fp32", path, onnx_path=None, settings=other, haplotypes=8)
    # a localiser trained on the earlier three-channel windows is named, with what to do
    old = build_model(S.arch() | {"in_channels": 3}).eval()
    old_onnx = export_int8(
        old, x[:, :3], tmp_path / "o.onnx", tmp_path / "o.int8.onnx", calibration_samples=16, seed=0
    )
    with pytest.raises(InputFormatError, match="3-channel windows.*retrain"):
        localiser.open_engine(
            "onnx_fp32", path, onnx_path=old_onnx["fp32"], settings=S, haplotypes=8
        )
    modelio.save_fp32(old, S.arch() | {"in_channels": 3}, tmp_path / "old.pt")
    with pytest.raises(InputFormatError, match="old.pt: a localiser of 3-channel windows"):
        localiser.open_engine(
            "torch_fp32", tmp_path / "old.pt", onnx_path=None, settings=S, haplotypes=8
        )


def _toy_replicates(n_reps, seed, length=10_000.0):
    """Sweep replicates whose sweep empties +-400 bp of SNPs and fixes a haplotype block around it
    (a footprint a small CNN can place), and neutral replicates without it."""
    rng = np.random.default_rng(seed)
    sweeps, neutrals = [], []
    for _ in range(n_reps):
        for kind in ("sweep", "neutral"):
            pos, hap = data(seed=int(rng.integers(1 << 30)), sites=400, length=length)
            x = length / 2
            if kind == "sweep":
                keep = np.abs(pos - x) > 400
                pos, hap = pos[keep], hap[keep].copy()
                near = np.abs(pos - x) < 1_500
                hap[near, : hap.shape[1] // 2 + 3] = 1
                sweeps.append(Replicate(pos, hap, x))
            else:
                neutrals.append(Replicate(pos, hap, float("nan")))
    return sweeps, neutrals, length


def test_train_learns_the_offset_and_is_reproducible():
    torch.set_num_threads(1)
    sweeps, neutrals, length = _toy_replicates(40, seed=3)
    s = LocaliserSettings(
        span=2_000, columns=16, bins=5, step=250, in_windows=6, out_windows=2, filters=8, hidden=16
    )
    cfg = {"epochs": 6, "batch_size": 32, "learning_rate": 0.005, "patience": 6}
    a = localiser.train(sweeps, neutrals, length, s, cfg, seed=11, validation_fraction=0.25)
    b = localiser.train(sweeps, neutrals, length, s, cfg, seed=11, validation_fraction=0.25)
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k
    assert a.quality == b.quality and len(a.history) >= 1
    # chance: 'none' recall ~ 1/6, the right bin or a neighbour ~ 0.5 of the in-window windows
    assert a.quality["val_none_recall"] > 0.7, a.quality
    assert a.quality["val_bin_within_one"] > 0.75, a.quality
    assert a.x_train.shape[1:] == (4, 10, 16) and a.density > 0


def test_training_keys_leave_out_what_only_the_scan_reads():
    """Changing the scan's box, step, statistic or engines must not retrain the localiser."""
    cfg = {
        "enabled": True,
        "engines": ["onnx_fp32"],
        "span": 21000,
        "step": 1000,
        "smooth": 0.5,
        "statistic": "p_sweep",
        "filters": 16,
        "train": {"epochs": 1},
    }
    assert localiser.LocaliserSettings.training_keys(cfg) == {"span": 21000, "filters": 16}
    settings = localiser.LocaliserSettings.from_config(
        localiser.LocaliserSettings.training_keys(cfg)
    )
    assert settings.span == 21000 and settings.filters == 16
