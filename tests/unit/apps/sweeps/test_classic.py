import allel
import numpy as np
import pytest

from quantscan.apps.sweeps import classic, scan_metrics, simulate
from quantscan.apps.sweeps.io import MISSING
from quantscan.apps.sweeps.scan import make_grid, window_bounds
from quantscan.errors import ConfigError

L = 100_000
GRID = make_grid(0, L, 101)
PARAMS = simulate.SimParams(
    sequence_length=L,
    haplotypes=20,
    mutation_rate=5e-7,
    recombination_rate=5e-7,
    population_size=10_000,
    selection_coefficient=0.05,
)
N_REPS = 10


def _replicate(cls: str, seed: int, x: float | None = None) -> simulate.Replicate:
    ts = simulate.simulate_tree_sequence(PARAMS, cls, seed, sweep_position=x)
    return simulate.Replicate(
        positions=ts.tables.sites.position.copy(),
        haplotypes=ts.genotype_matrix().astype(np.uint8),
        sweep_position=float("nan") if x is None else float(x),
    )


@pytest.fixture(scope="module")
def reps():
    """10 sweep replicates (sweep uniform in [0.1 L, 0.9 L]) and 10 neutral ones, seeded."""
    where = np.random.default_rng(1000).uniform(0.1 * L, 0.9 * L, N_REPS)
    sweeps = [_replicate("sweep", i + 1, x) for i, x in enumerate(where)]
    neutrals = [_replicate("neutral", 1000 + i) for i in range(N_REPS)]
    return sweeps, neutrals


@pytest.fixture(scope="module")
def scans(reps):
    sweeps, neutrals = reps
    return {
        s: (
            classic.scan_replicates_classic(sweeps, s, sequence_length=L, n_points=101),
            classic.scan_replicates_classic(neutrals, s, sequence_length=L, n_points=101),
        )
        for s in classic.STATISTICS
    }


# Measured over 12 seeded sets of 10 replicates (chance: median ~0.27 L, mean ~0.30 L): worst
# median 0.07 L (h12), 0.03 L (tajima_d), 0.02 L (clr), 0.01 L (pi), 0.008 L (mu); worst mean
# 0.08 L (clr), 0.04 L (pi), 0.02 L (mu). A score with its sign flipped or a random arg-max fails.
MEDIAN_TOL = {"h12": 0.10, "tajima_d": 0.10, "mu": 0.05, "clr": 0.05, "pi": 0.05}
MEAN_TOL = {"mu": 0.2, "clr": 0.2, "pi": 0.2}


@pytest.mark.parametrize("statistic", classic.STATISTICS)
def test_argmax_localises_the_sweep(scans, statistic):
    sweep_scans, _ = scans[statistic]
    dist = np.array([abs(s.peak()[0] - s.true_position) for s in sweep_scans]) / L
    assert np.median(dist) < MEDIAN_TOL[statistic], dist
    if statistic in MEAN_TOL:
        assert dist.mean() < MEAN_TOL[statistic], dist


@pytest.mark.parametrize("statistic", classic.STATISTICS)
def test_sweeps_score_higher_than_neutral(scans, statistic):
    sweep_scans, neutral_scans = scans[statistic]
    sweep_max = np.mean([s.peak()[1] for s in sweep_scans])
    neutral_max = np.mean([s.peak()[1] for s in neutral_scans])
    assert sweep_max > neutral_max
    m = scan_metrics.evaluate(sweep_scans, neutral_scans, L)
    assert m["sensitivity_at_fpr"] >= 0.5


def test_scan_grid_and_shapes(scans):
    sweep_scans, neutral_scans = scans["mu"]
    for s in sweep_scans + neutral_scans:
        assert np.array_equal(s.positions, GRID)
        assert s.scores.shape == GRID.shape and np.isfinite(s.scores).all()
    assert all(np.isnan(s.true_position) for s in neutral_scans)


def test_h12_is_allel_garud_h_on_the_cnn_window(reps):
    rep = reps[0][0]
    scores = classic.classic_scores(
        rep.positions, rep.haplotypes, GRID, "h12", sequence_length=L, window_snps=50
    )
    start, stop = window_bounds(rep.positions, GRID, 50)
    for k in (0, 37, 50, 100):
        assert scores[k] == allel.garud_h(rep.haplotypes[start[k] : stop[k]])[1]
    in_bp = classic.classic_scores(
        rep.positions, rep.haplotypes, GRID[[40]], "h12", sequence_length=L, window_bp=1000
    )
    near = np.abs(rep.positions - GRID[40]) <= 500
    assert in_bp[0] == allel.garud_h(rep.haplotypes[near])[1]


def test_pi_and_tajima_d_are_allels(reps):
    rep = reps[1][0]
    pos, h = rep.positions, rep.haplotypes
    ac = allel.HaplotypeArray(h.astype(np.int8)).count_alleles()
    near = np.abs(pos - 30_000) <= 1000
    pi = classic.classic_scores(pos, h, [30_000], "pi", sequence_length=L, window_bp=2000)
    assert pi[0] == pytest.approx(-allel.mean_pairwise_difference(ac[near]).sum() / 2000)
    d = classic.classic_scores(pos, h, [30_000], "tajima_d", sequence_length=L, window_bp=2000)
    assert d[0] == pytest.approx(-allel.tajima_d(ac[near]))


# --------------------------------------------------------------------------- RAiSD mu

# six SNPs on four haplotypes (rows: sites), plus a monomorphic site that must be dropped
TINY_POS = np.array([10.0, 20.0, 40.0, 50.0, 70.0, 80.0, 130.0])
TINY_H = np.array(
    [
        [1, 0, 0, 0],  # A, singleton
        [1, 1, 0, 0],  # B
        [1, 0, 0, 0],  # A, singleton
        [0, 0, 0, 0],  # monomorphic: not a SNP
        [1, 1, 1, 0],  # C, derived count n - 1
        [0, 1, 1, 0],  # D
        [1, 1, 0, 0],  # B
    ],
    dtype=np.uint8,
)


def test_mu_hand_computed():
    mu = classic.raisd_mu(TINY_POS, TINY_H, sequence_length=200, window_snps=4)
    # S = 6 SNPs, L = 200, W = 4, a_4 = 1 + 1/2 + 1/3 = 11/6
    # window 0 (10..70): left {A, B}, right {A, C}: exclusive patterns B | C, one SNP each
    #   mu_VAR = 60 / 800 * 6, mu_SFS = 11/6 * 3/4 (A, A, C), mu_LD = (1*1 + 1*1) / (2*2)
    # window 1 (20..80): left {B, A}, right {C, D}: nothing shared, mu_LD = (2*2 + 2*2) / 4
    #   mu_SFS = 11/6 * 2/4 (A, C)
    # window 2 (40..130): left {A, C}, right {D, B}: mu_VAR = 90 / 800 * 6, mu_LD = 2
    assert np.allclose(mu["centre"], [40, 50, 85])
    assert np.allclose(mu["mu_var"], [0.45, 0.45, 0.675])
    assert np.allclose(mu["mu_sfs"], [11 / 6 * 3 / 4, 11 / 12, 11 / 12])
    assert np.allclose(mu["mu_ld"], [0.5, 2.0, 2.0])
    assert np.allclose(mu["mu"], [0.45 * 1.375 * 0.5, 0.45 * 11 / 12 * 2, 0.675 * 11 / 12 * 2])


def test_mu_epsilon_when_both_halves_share_every_pattern():
    h = np.array([[1, 0, 0], [1, 1, 0], [1, 0, 0], [1, 1, 0]], np.uint8)  # A B | A B
    mu = classic.raisd_mu([1, 2, 3, 4], h, sequence_length=10, window_snps=4)
    assert mu["mu_ld"][0] == classic.MU_EPSILON


def _mu_ld_reference(h: np.ndarray, w: int) -> np.ndarray:
    """RAiSD's getPatternCounts, one window at a time."""
    ids = [tuple(r) for r in h]
    out = []
    for i in range(len(ids) - w + 1):
        left, right = ids[i : i + w // 2], ids[i + w // 2 : i + w]
        pl, pr = set(left), set(right)
        num = len(pl - pr) * sum(p not in pr for p in left) + len(pr - pl) * sum(
            p not in pl for p in right
        )
        out.append(num / (len(pl) * len(pr)) if num else classic.MU_EPSILON)
    return np.array(out)


@pytest.mark.parametrize("w", [4, 7, 10])
def test_mu_ld_matches_a_window_by_window_reference(w):
    rng = np.random.default_rng(w)
    h = (rng.random((60, 6)) < 0.3).astype(np.uint8)
    h[:, 0] = 1  # no monomorphic sites (all SNPs stay)
    h[:, 1] = 0
    mu = classic.raisd_mu(np.arange(60.0), h, sequence_length=100, window_snps=w)
    assert np.allclose(mu["mu_ld"], _mu_ld_reference(h, w))


def test_mu_grid_takes_the_best_window_near_each_point():
    rng = np.random.default_rng(3)
    pos = np.sort(rng.uniform(0, 1000, 200))
    h = (rng.random((200, 10)) < 0.4).astype(np.uint8)
    h[:, 0], h[:, 1] = 1, 0
    grid = make_grid(0, 1000, 11)
    mu = classic.raisd_mu(pos, h, sequence_length=1000, window_snps=20)
    scores = classic.classic_scores(pos, h, grid, "mu", sequence_length=1000, window_snps=20)
    best = mu["centre"][np.argmax(mu["mu"])]
    assert scores.max() == mu["mu"].max()
    assert grid[np.argmax(scores)] == grid[np.argmin(np.abs(grid - best))]


# --------------------------------------------------------------------------- CLR


def test_sweep_sfs_table_limits():
    n = 10
    p = np.zeros(n + 1)
    p[1:n] = 1.0 / np.arange(1, n)
    p /= p.sum()
    t = classic.sweep_sfs_table(p, np.array([1e-6, 0.5, 40.0]))
    assert np.allclose(t.sum(axis=1), 1.0)
    assert np.allclose(t[2], p)  # far from the sweep: the background
    seg = t[0, 1:n] / t[0, 1:n].sum()  # on the sweep: only singletons and (n-1)-tons segregate
    assert seg[0] + seg[-1] > 1 - 1e-5
    assert t[0, 0] + t[0, n] > 0.99  # and almost every site is monomorphic


def test_clr_missing_data_and_monomorphic_sites(reps):
    rep = reps[0][2]
    base = classic.classic_scores(rep.positions, rep.haplotypes, GRID, "clr", sequence_length=L)
    # an all-missing and a monomorphic site change nothing
    pos = np.concatenate([rep.positions, [0.5, 1.5]])
    extra = np.vstack([np.full(20, MISSING, np.uint8), np.zeros(20, np.uint8)])
    h = np.vstack([rep.haplotypes, extra])
    order = np.argsort(pos, kind="stable")
    same = classic.classic_scores(pos[order], h[order], GRID, "clr", sequence_length=L)
    assert np.allclose(same, base)
    # missing calls: projected site likelihoods, still a finite scan peaking near the sweep
    h = rep.haplotypes.copy()
    h[np.random.default_rng(0).random(h.shape) < 0.05] = MISSING
    miss = classic.classic_scores(rep.positions, h, GRID, "clr", sequence_length=L)
    assert np.isfinite(miss).all() and (miss >= 0).all()
    assert abs(GRID[np.argmax(miss)] - GRID[np.argmax(base)]) <= 0.05 * L


# --------------------------------------------------------------------------- edge cases


@pytest.mark.parametrize("statistic", classic.STATISTICS)
def test_no_snps_gives_nan(statistic):
    empty = classic.classic_scores(
        np.zeros(0), np.zeros((0, 8), np.uint8), GRID, statistic, sequence_length=L
    )
    assert empty.shape == GRID.shape and np.isnan(empty).all()
    mono = classic.classic_scores(
        [5.0, 9.0],
        np.array([[0] * 8, [MISSING] * 8], np.uint8),
        GRID,
        statistic,
        sequence_length=L,
    )
    assert np.isnan(mono).all()


@pytest.mark.parametrize("statistic", classic.STATISTICS)
def test_fewer_snps_than_the_window(statistic):
    rng = np.random.default_rng(5)
    pos = np.sort(rng.uniform(0, L, 12))
    h = (rng.random((12, 8)) < 0.5).astype(np.uint8)
    h[:, 0], h[:, 1] = 1, 0
    s = classic.classic_scores(pos, h, GRID, statistic, sequence_length=L, window_snps=50)
    assert s.shape == GRID.shape and np.isfinite(s).all()
    if statistic in ("h12", "mu", "tajima_d"):  # one window: all SNPs, one value
        assert np.all(s == s[0])


def test_missing_calls_count_as_ancestral_for_haplotype_identity(reps):
    rep = reps[0][3]
    h = rep.haplotypes.copy()
    hit = (np.random.default_rng(1).random(h.shape) < 0.02) & (h == 0)
    h[hit] = MISSING
    for statistic in ("h12", "mu"):
        a = classic.classic_scores(rep.positions, h, GRID, statistic, sequence_length=L)
        b = classic.classic_scores(
            rep.positions, rep.haplotypes, GRID, statistic, sequence_length=L
        )
        if statistic == "h12":
            assert np.array_equal(a, b)
        else:  # mu_VAR and mu_LD agree, mu_SFS counts edges among called haplotypes
            assert np.isfinite(a).all() and abs(GRID[np.argmax(a)] - GRID[np.argmax(b)]) <= L / 20


def test_bp_window_without_snps_is_nan():
    pos = np.array([100.0, 200.0, 300.0, 90_000.0])
    h = np.array([[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [1, 0, 1, 0]], np.uint8)
    s = classic.classic_scores(pos, h, [200.0, 50_000.0], "h12", sequence_length=L, window_bp=1000)
    assert np.isfinite(s[0]) and np.isnan(s[1])


def test_bad_arguments():
    h = np.ones((3, 4), np.uint8)
    with pytest.raises(ConfigError, match="unknown statistic"):
        classic.classic_scores([1, 2, 3], h, GRID, "ihs", sequence_length=L)
    with pytest.raises(ConfigError, match="window_bp"):
        classic.classic_scores([1, 2, 3], h, GRID, "mu", sequence_length=L, window_bp=100)
    with pytest.raises(ConfigError, match="n_haplotypes"):
        classic.classic_scores([1, 2], h, GRID, "h12", sequence_length=L)
