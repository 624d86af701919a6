"""VOI, adapted Rand, CREMI score and boundary F1 of quantscan.apps.connectomics.metrics."""

import numpy as np
import pytest

from quantscan.apps.connectomics import metrics as M

skm = pytest.importorskip("skimage.metrics")


def _random_pair(seed=0, shape=(6, 20, 24)):
    """A GT with background and a prediction that splits and merges some of it."""
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, 6, size=shape).astype(np.uint64)
    gt = np.repeat(gt, 2, axis=-1)  # segments of some size
    pred = gt.copy()
    pred[:, :, :10] += 7  # split every GT segment at x = 10
    pred[pred == 3] = 4  # merge GT 3 into 4 (right of the cut)
    pred[rng.random(shape[:-1] + (shape[-1] * 2,)) < 0.05] = 99  # scattered noise
    return pred, gt


def test_split_only_toy_raises_split_not_merge():
    gt = np.array([1, 1, 1, 1, 2, 2, 2, 2])
    pred = np.array([1, 1, 3, 3, 2, 2, 2, 2])  # GT 1 cut in two halves
    v = M.voi(pred, gt)
    assert v["voi_split"] == pytest.approx(0.5)  # half the voxels, 1 bit each
    assert v["voi_merge"] == pytest.approx(0.0, abs=1e-12)
    a = M.adapted_rand(pred, gt)
    assert a["arand_precision"] == pytest.approx(1.0)  # no false merge
    assert a["arand_recall"] < 1.0


def test_merge_only_toy_raises_merge_not_split():
    gt = np.array([1, 1, 1, 1, 2, 2, 2, 2])
    pred = np.ones(8, dtype=np.int64)
    v = M.voi(pred, gt)
    assert v["voi_merge"] == pytest.approx(1.0)
    assert v["voi_split"] == pytest.approx(0.0, abs=1e-12)
    assert v["voi"] == pytest.approx(1.0)


def test_adapted_rand_hand_computed_merge_toy_and_skimage_swap():
    gt = np.array([1, 1, 1, 1, 2, 2])
    pred = np.ones(6, dtype=np.int64)
    # together in both: C(4,2) + C(2,2) = 7; in prediction C(6,2) = 15; in GT 7
    a = M.adapted_rand(pred, gt)
    assert a["arand_precision"] == pytest.approx(7 / 15)
    assert a["arand_recall"] == pytest.approx(1.0)
    assert a["arand"] == pytest.approx(4 / 11)
    err, sk_second, sk_third = skm.adapted_rand_error(gt, pred, ignore_labels=(0,))
    assert err == pytest.approx(a["arand"])
    # scikit-image's "precision" and "recall" are swapped relative to SNEMI3D's names
    assert sk_second == pytest.approx(a["arand_recall"])
    assert sk_third == pytest.approx(a["arand_precision"])


def test_adapted_rand_hand_computed_with_zeros():
    gt = np.array([1, 1, 1, 2, 2, 0, 1])
    pred = np.array([1, 1, 0, 1, 2, 3, 1])
    # counted (GT != 0): GT [1,1,1,2,2,1], pred [1,1,0,1,2,1]; the predicted 0 is a singleton.
    # together in both: C(3,2) = 3 (the pred-1 / GT-1 voxels); in prediction: pred 1 has 4
    # counted voxels -> 6; in GT: C(4,2) + C(2,2) = 7
    a = M.adapted_rand(pred, gt)
    assert a["arand_precision"] == pytest.approx(3 / 6)
    assert a["arand_recall"] == pytest.approx(3 / 7)
    assert a["arand"] == pytest.approx(1 - 6 / 13)


def test_identical_segmentations_score_zero():
    _, gt = _random_pair()
    out = M.cremi_score(gt, gt)
    for key in ("voi_split", "voi_merge", "voi", "arand", "cremi"):
        assert out[key] == pytest.approx(0.0, abs=1e-12), key
    assert out["arand_precision"] == out["arand_recall"] == pytest.approx(1.0)
    assert M.boundary_f1(M.boundary_map(gt), M.boundary_map(gt))["boundary_f1"] == 1.0


def test_label_permutation_invariance_uint64():
    pred, gt = _random_pair(1)
    rng = np.random.default_rng(5)

    def permute(x, keep_zero):
        ids = np.unique(x)
        new = rng.choice(2**62, size=len(ids), replace=False).astype(np.uint64) + np.uint64(2**63)
        if keep_zero:
            new[ids == 0] = 0
        return new[np.searchsorted(ids, x)]

    ref = M.cremi_score(pred, gt)
    out = M.cremi_score(permute(pred, False), permute(gt, True))
    for key, value in ref.items():
        assert out[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key


def test_cross_check_scikit_image():
    pred, gt = _random_pair(2)
    v = M.voi(pred, gt)
    # documented order for (image0=GT, image1=pred): [H(pred|GT), H(GT|pred)]; scikit-image 0.26
    # computes them with log2 (bits), whatever its docstring's reference uses
    split, merge = skm.variation_of_information(gt, pred, ignore_labels=[0])
    assert v["voi_split"] == pytest.approx(split, rel=1e-9)
    assert v["voi_merge"] == pytest.approx(merge, rel=1e-9)
    assert split > 0 and merge > 0
    a = M.adapted_rand(pred, gt)
    err, sk_p, sk_r = skm.adapted_rand_error(gt, pred, ignore_labels=(0,))
    assert a["arand"] == pytest.approx(err, rel=1e-9)
    assert (a["arand_recall"], a["arand_precision"]) == pytest.approx((sk_p, sk_r), rel=1e-9)


def test_zero_singletons_option_of_voi():
    gt = np.array([1, 1, 1, 1])
    pred = np.array([0, 0, 0, 0])
    assert M.voi(pred, gt)["voi"] == pytest.approx(0.0, abs=1e-12)  # 0 is one segment
    v = M.voi(pred, gt, zero_singletons=True)
    assert v["voi_split"] == pytest.approx(2.0)  # 4 singletons: log2(4) bits
    assert v["voi_merge"] == pytest.approx(0.0, abs=1e-12)
    assert M.adapted_rand(pred, gt)["arand"] == pytest.approx(1.0)


def test_border_mask_and_cremi_score_ignore_border_errors():
    gt = np.ones((2, 16, 40), dtype=np.uint64)
    gt[:, :, 20:] = 2
    mask = M.border_mask(gt, voxel_size=(40, 4, 4), border_nm=25)
    # boundary pixels are columns 19 and 20; within 25 nm = 6.25 px of them: columns 13..26
    expected = np.zeros(40, dtype=bool)
    expected[13:27] = True
    assert (mask == expected).all()
    pred = gt.copy()
    pred[:, :, 17:20] = 2  # a boundary 3 px (12 nm) off: inside the ignored band
    assert M.cremi_score(pred, gt)["cremi"] > 0
    scored = M.cremi_score(pred, gt, voxel_size=(40, 4, 4), border_nm=25)
    assert scored["cremi"] == pytest.approx(0.0, abs=1e-12)
    assert scored["n_voxels"] == 2 * 16 * (40 - 14)


def test_boundary_f1_tolerance():
    gt = np.zeros((32, 32), dtype=bool)
    gt[:, 10] = True
    near = np.zeros_like(gt)
    near[:, 12] = True
    far = np.zeros_like(gt)
    far[:, 16] = True
    assert M.boundary_f1(near, gt, tolerance=2)["boundary_f1"] == pytest.approx(1.0)
    assert M.boundary_f1(near, gt, tolerance=1)["boundary_f1"] == pytest.approx(0.0)
    assert M.boundary_f1(far, gt, tolerance=2)["boundary_f1"] == pytest.approx(0.0)
    half = near.astype(float) * 0.9
    half[16:, 12] = 0.2  # below threshold: half the GT boundary is missed
    out = M.boundary_f1(half, gt, tolerance=2)
    assert out["boundary_precision"] == pytest.approx(1.0)
    assert out["boundary_recall"] == pytest.approx(0.5)


def test_segmentation_boundary_f1_by_hand():
    """GT: columns 0-2 and 3-5 of a 6 x 6 section; its boundary is columns 2 and 3 (12 px). The
    prediction cuts between columns 3 and 4: boundary columns 3 and 4 (12 px)."""
    gt = np.ones((6, 6), dtype=np.uint64)
    gt[:, 3:] = 2
    pred = np.ones((6, 6), dtype=np.uint64)
    pred[:, 4:] = 5
    # tolerance 0: only column 3 is shared: precision 6 / 12, recall 6 / 12
    out = M.segmentation_boundary_f1(pred, gt, tolerance=0)
    assert out["boundary_precision"] == pytest.approx(0.5)
    assert out["boundary_recall"] == pytest.approx(0.5)
    assert out["boundary_f1"] == pytest.approx(0.5)
    # tolerance 1: column 4 is 1 px from GT column 3, GT column 2 1 px from column 3
    assert M.segmentation_boundary_f1(pred, gt, tolerance=1)["boundary_f1"] == pytest.approx(1.0)
    # a 3-D stack pools the sections: a second section with no predicted boundary at all
    # (recall 0 there) halves the recall: 12 of 24 GT pixels found, precision stays 1
    stack_gt = np.stack([gt, gt])
    stack_pred = np.stack([pred, np.ones_like(pred)])
    out = M.segmentation_boundary_f1(stack_pred, stack_gt, tolerance=1)
    assert out["boundary_precision"] == pytest.approx(1.0)
    assert out["boundary_recall"] == pytest.approx(0.5)
    assert out["boundary_f1"] == pytest.approx(2 / 3)
    # a membrane band of label 0 (ISBI convention) is boundary, and so are its neighbours
    band = np.ones((6, 7), dtype=np.uint64)
    band[:, 3] = 0
    band[:, 4:] = 2
    cut = np.ones((6, 7), dtype=np.uint64)
    cut[:, 4:] = 2  # the prediction puts the cut inside the band
    out = M.segmentation_boundary_f1(cut, band, tolerance=1)
    assert out["boundary_precision"] == pytest.approx(1.0)  # columns 3, 4 within 1 of 2..4
    assert out["boundary_recall"] == pytest.approx(1.0)  # GT columns 2, 3, 4 within 1 of 3, 4
    with pytest.raises(ValueError, match="shape"):
        M.segmentation_boundary_f1(pred, gt[:5])
