"""Affinities -> segmentation (quantscan.apps.connectomics.segment) on synthetic toys."""

import numpy as np
import pytest
from scipy.spatial import cKDTree

from quantscan.apps.connectomics import segment as S
from quantscan.apps.connectomics.metrics import adapted_rand, voi

pytest.importorskip("skimage")

#: ARAND bound for the noisy toy (measured: below 1e-3 for both seeding modes)
NOISY_ARAND_BOUND = 0.02


def voronoi(shape=(12, 40, 40), n=15, seed=0):
    """Voronoi cells of random seeds, touching without membranes, split into their
    6-connected pieces (a discrete convex cell can fall apart along a thin edge)."""
    from skimage.measure import label

    rng = np.random.default_rng(seed)
    pts = rng.uniform(0, 1, (n, 3)) * np.array(shape)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1)
    cells = (cKDTree(pts).query(grid.reshape(-1, 3))[1] + 1).reshape(shape)
    return label(cells, connectivity=1).astype(np.uint64)


def same_partition(a, b):
    """Whether two label volumes are equal up to relabelling (0 included as a label)."""
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1]


def test_affinities_from_labels_convention():
    labels = np.array([[1, 1, 2], [1, 0, 2]])
    affs = S.affinities_from_labels(labels)
    assert affs.shape == (2, 2, 3)
    # axis 0: (row 1, col c) against (row 0, col c)
    assert affs[0][1].tolist() == [1, 0, 1]
    assert affs[0][0].tolist() == [0, 0, 0]
    # axis 1: (r, c) against (r, c - 1)
    assert affs[1][:, 1:].tolist() == [[1, 0], [0, 0]]


def test_components_follow_affinity_edges_exactly():
    labels = np.ones((7, 6, 5), dtype=np.uint64)
    labels[3] = 2  # a one-voxel-thin sheet between two slabs of different labels
    labels[4:] = 3
    labels[4:, :, 2] = 4  # a one-voxel-thin wall
    labels[4:, :, 3:] = 5
    affs = S.affinities_from_labels(labels)
    seg = S.affinity_components(affs, 0.5, min_size=1)
    assert seg.dtype == np.uint64
    assert same_partition(seg, labels)
    # thresholding a voxel mask instead would lose the sheet (its voxels have a cut edge)
    mask = affs.min(axis=0)[1:] >= 0.5
    assert not mask[2].any()


def test_min_size_and_within():
    affs = np.zeros((3, 2, 2, 3), dtype=np.float32)
    affs[2, 0, 0, 1] = 1  # joins (0,0,0)-(0,0,1)
    seg = S.affinity_components(affs, 0.5)
    assert sorted(np.unique(seg).tolist()) == [0, 1]
    assert seg[0, 0, 0] == seg[0, 0, 1] == 1
    within = np.ones((2, 2, 3), dtype=np.uint64)
    within[0, 0, 1] = 2
    assert S.affinity_components(affs, 0.5, within=within).max() == 0


@pytest.mark.parametrize(
    "method, options",
    [
        ("components", {}),
        ("watershed", {}),
        ("watershed", {"seeds": "components"}),
        ("waterz", {}),
        ("waterz", {"fragments": "waterz"}),
        ("waterz", {"scoring": "quantile50", "sampling": (3, 1, 1)}),
    ],
)
def test_perfect_affinities_recover_labels(method, options):
    gt = voronoi()
    seg = S.segment(S.affinities_from_labels(gt), method=method, **options)
    assert seg.dtype == np.uint64 and seg.shape == gt.shape
    assert same_partition(seg, gt)
    assert adapted_rand(seg, gt)["arand"] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("seeds", ["distance", "components"])
def test_noisy_affinities_stay_below_bound(seeds):
    gt = voronoi(seed=1)
    rng = np.random.default_rng(7)
    affs = S.affinities_from_labels(gt)
    noisy = np.clip(affs + rng.normal(0, 0.2, affs.shape), 0, 1).astype(np.float32)
    seg = S.segment(noisy, method="watershed", seeds=seeds)
    assert adapted_rand(seg, gt)["arand"] < NOISY_ARAND_BOUND
    assert voi(seg, gt)["voi"] < 0.2


def test_region_graph_statistics():
    frags = np.zeros((1, 2, 4), dtype=np.uint64)
    frags[0, :, :2] = 5
    frags[0, :, 2:] = 9
    frags[0, 1, 3] = 0  # background has no edges
    affs = np.zeros((3, 1, 2, 4))
    affs[2, 0, :, 2] = [0.2, 0.6]  # the two x-edges between 5 and 9
    u, v, s, c = S.region_graph(frags, affs)
    assert u.tolist() == [5] and v.tolist() == [9]
    assert s.tolist() == pytest.approx([0.8]) and c.tolist() == [2]


def test_agglomerate_merges_oversegmentation_and_respects_threshold():
    gt = voronoi(seed=2)
    affs = S.affinities_from_labels(gt)
    # over-segment: cut every cell by a 4 x 4 x 4 grid of boxes
    zz, yy, xx = np.indices(gt.shape)
    box = (zz // 4) * 100 + (yy // 4) * 10 + xx // 4
    frags = S.relabel_consecutive(gt * np.uint64(1000) + box.astype(np.uint64))
    assert len(np.unique(frags)) > 3 * len(np.unique(gt))
    assert same_partition(S.agglomerate(frags, affs, 0.5), gt)
    untouched = S.agglomerate(frags, affs, 1.5)
    assert same_partition(untouched, frags)


def two_objects(noise=0.05, seed=0):
    """Two boxes side by side along x (no membrane between them) and noisy affinities."""
    gt = np.ones((4, 10, 12), dtype=np.uint64)
    gt[:, :, 6:] = 2
    rng = np.random.default_rng(seed)
    affs = S.affinities_from_labels(gt) * 0.8 + 0.1
    noisy = np.clip(affs + rng.normal(0, noise, affs.shape), 0, 1).astype(np.float32)
    return gt, noisy


@pytest.mark.parametrize("fragments", ["distance", "waterz"])
@pytest.mark.parametrize("scoring", ["mean", "quantile50"])
def test_waterz_two_objects(fragments, scoring):
    gt, affs = two_objects()
    before = affs.copy()
    frags, seg = S.fragments_and_segmentation(
        affs, method="waterz", threshold=0.5, scoring=scoring, fragments=fragments
    )
    assert seg.dtype == np.uint64 and frags.dtype == np.uint64
    assert same_partition(seg, gt)
    assert np.array_equal(affs, before)  # waterz leaves its input alone
    # every fragment lies inside one segment
    pairs = np.unique(np.stack([frags.ravel(), seg.ravel()]), axis=1)
    assert pairs.shape[1] == len(np.unique(frags))


def test_waterz_uses_this_modules_affinity_convention():
    """affs[c][p] joins p and p - e_c: moving the x affinities one voxel (the p, p + e_x
    convention) leaves the boundary between the objects without a low affinity."""
    gt, affs = two_objects(noise=0.0)
    assert same_partition(S.segment(affs, threshold=0.5, fragments="waterz"), gt)
    shifted = affs.copy()
    shifted[2, :, :, :-1] = affs[2, :, :, 1:]
    seg = S.segment(shifted, threshold=0.5, fragments="waterz")
    assert len(np.unique(seg[:, :, 5:7])) == 1


def test_waterz_threshold_monotone():
    """A lower threshold only merges: each segmentation coarsens the one above it."""
    gt = voronoi(seed=3)
    rng = np.random.default_rng(4)
    affs = np.clip(S.affinities_from_labels(gt) + rng.normal(0, 0.2, (3, *gt.shape)), 0, 1)
    frags = S.watershed_fragments(affs)  # split: membrane-free Voronoi cells touch
    sweep = list(S.waterz_sweep(affs, [0.2, 0.9, 0.5, 0.7], fragments=frags))
    assert [t for t, _ in sweep] == [0.9, 0.7, 0.5, 0.2]
    counts = [len(np.unique(seg)) for _, seg in sweep]
    assert counts == sorted(counts, reverse=True) and counts[0] > counts[-1]
    for (_, fine), (_, coarse) in zip(sweep, sweep[1:], strict=False):
        pairs = np.unique(np.stack([fine.ravel(), coarse.ravel()]), axis=1)
        assert pairs.shape[1] == len(np.unique(fine))  # every fine segment in one coarse one
    assert adapted_rand(dict(sweep)[0.5], gt)["arand"] < NOISY_ARAND_BOUND


def test_waterz_mean_equals_the_numpy_agglomeration():
    """On the same fragments, waterz's OneMinus<MeanAffinity> and agglomerate() agree."""
    gt = voronoi(seed=1)
    rng = np.random.default_rng(7)
    affs = np.clip(S.affinities_from_labels(gt) + rng.normal(0, 0.2, (3, *gt.shape)), 0, 1)
    frags = S.watershed_fragments(affs)
    _, seg = S.waterz_segment(affs, 0.5, scoring="mean", fragments=frags)
    assert same_partition(seg, S.agglomerate(frags, affs, 0.5))


def test_agglomerate_graph_and_scoring_names():
    # 0-1 joined by two edges of 0.9, 1-2 by one of 0.6 and one of 0.2 (mean 0.4): merge 0, 1
    root = S.agglomerate_graph(3, [0, 1, 1, 2], [1, 0, 2, 1], [0.9, 0.9, 0.6, 0.2], [1, 1, 1, 1])
    assert root[0] == root[1] != root[2]
    # counts weigh the means: 1-2 has mean 0.8 / 2 = 0.4
    assert len(set(S.agglomerate_graph(3, [0, 1], [1, 2], [0.9, 0.8], [1, 2], 0.3).tolist())) == 1
    assert len(set(S.agglomerate_graph(3, [0, 1], [1, 2], [0.9, 0.8], [1, 2], 0.5).tolist())) == 2
    assert S.waterz_scoring("quantile75").startswith("OneMinus<HistogramQuantileAffinity")
    with pytest.raises(ValueError, match="quantile10"):
        S.waterz_scoring("quantile42")
    with pytest.raises(ValueError, match="method"):
        S.segment(np.zeros((3, 2, 2, 2), np.float32), method="mws")


def test_relabel_consecutive_lookup_table_equals_sorted_unique():
    """The lookup-table path (ids bounded by the voxel count) and np.unique's give the same ids."""
    rng = np.random.default_rng(0)
    for labels in [
        rng.integers(0, 50, (4, 5, 6)).astype(np.uint64),  # lookup table
        rng.integers(1, 50, (4, 5, 6)).astype(np.int32),  # no 0
        rng.integers(0, 2**40, (4, 5, 6)).astype(np.uint64),  # sorted unique
        np.array([[-3, 0, 5]]),  # negative ids: sorted unique
    ]:
        ids, inv = np.unique(labels, return_inverse=True)
        expected = (np.arange(len(ids)) + (0 if ids[0] == 0 else 1))[inv.reshape(labels.shape)]
        out = S.relabel_consecutive(labels)
        assert out.dtype == np.uint64 and np.array_equal(out, expected)


@pytest.mark.parametrize("shape", [(3, 6, 7, 8), (2, 9, 11), (3, 5, 12, 10)])
def test_cc3d_components_equal_the_sparse_graph_route(shape):
    """cc3d's voxel connectivity graph gives the same components, numbered the same (by first
    voxel in C order), as scipy's csgraph on the same kept edges, with and without ``within``."""
    rng = np.random.default_rng(len(shape))
    affs = rng.random(shape).astype(np.float32)
    within = rng.integers(0, 3, shape[1:]).astype(np.uint64)
    for w in (None, within):
        a = S._components_cc3d(affs, 0.6, w)
        b = S._components_csgraph(affs, 0.6, w)
        np.testing.assert_array_equal(a, b)
        assert len(np.unique(a)) > 1


@pytest.mark.parametrize("shape", [(40, 50), (12, 30, 34)])
def test_itk_watershed_equals_scikit_image(shape):
    """``seeded_watershed`` (ITK on uint16 levels) floods exactly as scikit-image's watershed when
    the heights are distinct levels (no ties, nothing lost to the quantisation), in 2-D and 3-D;
    with a mask, or heights outside [0, 1], it is scikit-image's (checked as the same result)."""
    from skimage.segmentation import watershed

    rng = np.random.default_rng(len(shape))
    n = int(np.prod(shape))
    height = (rng.permutation(n)[:n].reshape(shape) + 1).astype(np.float64) / S.HEIGHT_LEVELS
    markers = np.zeros(shape, np.int64)
    markers.flat[rng.choice(n, 25, replace=False)] = rng.permutation(25) + 1
    got = S.seeded_watershed(height, markers)
    want = watershed(height, markers=markers)
    assert got.dtype == np.int64 and set(np.unique(got)) == set(range(1, 26))
    np.testing.assert_array_equal(got, want)
    # scikit-image's route: a mask, or heights outside [0, 1] (which quantisation would clip)
    mask = height < np.median(height)
    np.testing.assert_array_equal(
        S.seeded_watershed(height, markers, mask), watershed(height, markers=markers, mask=mask)
    )
    steep = height * 3.0 - 1.0
    np.testing.assert_array_equal(
        S.seeded_watershed(steep, markers), watershed(steep, markers=markers)
    )
