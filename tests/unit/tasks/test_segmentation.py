"""The affinities task: targets from labels, balanced BCE with an ignore mask, metrics, training."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from quantscan.models import build_model
from quantscan.tasks import AFFINITIES, TASKS, get_task
from quantscan.tasks.segmentation import (
    IGNORE,
    AffinityLoss,
    affinities,
    affinity_metrics,
    random_patches,
)
from quantscan.train import TrainConfig, fit

I = IGNORE  # noqa: E741

#: two sections of 3 x 3: objects 1, 2 and 3, background 0
LABELS = np.array(
    [
        [[1, 1, 2], [1, 1, 2], [0, 0, 2]],
        [[1, 1, 2], [3, 3, 2], [0, 0, 2]],
    ]
)


def reference_affinities(labels, offsets, background=0, ignore_label=None, outside=IGNORE):
    """Voxel by voxel, as the definition reads."""
    out = np.full((len(offsets), *labels.shape), outside, np.int8)
    for c, off in enumerate(offsets):
        for v in np.ndindex(labels.shape):
            u = tuple(a + o for a, o in zip(v, off, strict=True))
            if not all(0 <= a < n for a, n in zip(u, labels.shape, strict=True)):
                continue
            if ignore_label is not None and ignore_label in (labels[v], labels[u]):
                out[(c, *v)] = IGNORE
            else:
                out[(c, *v)] = labels[v] == labels[u] and labels[v] != background
    return out


def synthetic_volume(seed, shape=(8, 32, 32), cells=8):
    """Voronoi cells of seeded centres (z spacing 4x y, x), dark membranes where the y or x
    affinity is 0, light interiors, Gaussian noise: raw (float32), affinities, labels."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, shape, (cells, 3))
    grid = np.indices(shape).astype(np.float32)
    scale = np.array([4.0, 1.0, 1.0])[:, None, None, None]
    dist = (((grid[None] - centres[:, :, None, None, None]) * scale) ** 2).sum(1)
    labels = dist.argmin(0).astype(np.uint32) + 1
    aff = affinities(labels)
    membrane = (aff[1:] == 0).any(0)
    raw = np.where(membrane, 0.1, 0.9) + rng.normal(0, 0.1, shape)
    return raw.astype(np.float32), aff, labels


def test_registered_with_the_classification_interface():
    task = get_task("affinities")
    assert task is AFFINITIES and TASKS["affinities"] is task
    for attr in ("loss", "correct", "metrics", "calibration_inputs"):
        assert callable(getattr(task, attr))
    assert task.activation == "sigmoid"
    x = np.arange(10)[:, None]
    a, b = task.calibration_inputs(x, 4, seed=3), task.calibration_inputs(x, 4, seed=3)
    assert np.array_equal(a, b) and len(np.unique(a)) == 4
    assert len(task.calibration_inputs(x, 50, seed=3)) == 10


def test_nearest_neighbour_affinities_of_a_hand_made_volume():
    aff = affinities(LABELS)
    assert aff.dtype == np.int8 and aff.shape == (3, 2, 3, 3)
    # z: section 0 has no neighbour below; in section 1 object 1 and 2 continue, 3 is new
    np.testing.assert_array_equal(aff[0, 0], np.full((3, 3), I))
    np.testing.assert_array_equal(aff[0, 1], [[1, 1, 1], [0, 0, 1], [0, 0, 1]])
    # y: row 0 has no neighbour; background rows never connect
    np.testing.assert_array_equal(aff[1, 0], [[I, I, I], [1, 1, 1], [0, 0, 1]])
    np.testing.assert_array_equal(aff[1, 1], [[I, I, I], [0, 0, 1], [0, 0, 1]])
    # x: column 0 has no neighbour; 1 | 2 is a boundary, 0 0 is background
    np.testing.assert_array_equal(aff[2, 0], [[I, 1, 0], [I, 1, 0], [I, 0, 0]])
    np.testing.assert_array_equal(aff[2, 1], [[I, 1, 0], [I, 1, 0], [I, 0, 0]])


def test_affinity_options_ignore_background_outside_and_long_range():
    # background as unknown: pairs touching label 0 are ignored instead of boundaries
    aff = affinities(LABELS, ignore_label=0)
    np.testing.assert_array_equal(aff[1, 0], [[I, I, I], [1, 1, 1], [I, I, 1]])
    np.testing.assert_array_equal(aff[2, 1], [[I, 1, 0], [I, 1, 0], [I, I, I]])
    # no background: label 0 is an object like any other
    assert affinities(LABELS, background=None)[2, 0, 2, 1] == 1
    # neighbours outside the volume as boundaries
    assert (affinities(LABELS, outside=0)[0, 0] == 0).all()
    # long-range and positive offsets, and one longer than the volume, against the definition
    labels = np.random.default_rng(0).integers(0, 4, (3, 5, 6))
    offsets = [(-1, 0, 0), (0, -3, 0), (0, 0, -4), (0, 2, 1), (-3, 0, 0), (0, -7, 0)]
    for kwargs in ({}, {"ignore_label": 2}, {"background": None, "outside": 0}):
        np.testing.assert_array_equal(
            affinities(labels, offsets, **kwargs), reference_affinities(labels, offsets, **kwargs)
        )
    assert (affinities(labels, [(-3, 0, 0)]) == IGNORE).all()
    # 2-D labels and uint64 labels with CREMI's ignore value 2**64 - 1
    unknown = np.uint64(2**64 - 1)
    seg = np.array([[5, 5, unknown]], np.uint64)
    np.testing.assert_array_equal(affinities(seg, [(0, -1)], ignore_label=unknown), [[[I, 1, I]]])
    with pytest.raises(ValueError, match="every offset needs 3 entries"):
        affinities(LABELS, [(-1, 0)])


def test_random_patches_are_seeded_crops():
    raw, aff, _ = synthetic_volume(0)
    x, y = random_patches(raw, aff, (4, 16, 16), 5, seed=1)
    assert x.shape == (5, 1, 4, 16, 16) and x.dtype == np.float32
    assert y.shape == (5, 3, 4, 16, 16) and y.dtype == np.int8
    x2, y2 = random_patches(raw, aff, (4, 16, 16), 5, seed=1)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    # each patch is a crop of the volume, raw and target at the same place
    hits = [
        (z, r, c)
        for z in range(5)
        for r in range(17)
        for c in range(17)
        if np.array_equal(raw[z : z + 4, r : r + 16, c : c + 16], x[0, 0])
    ]
    assert len(hits) == 1
    z, r, c = hits[0]
    assert np.array_equal(aff[:, z : z + 4, r : r + 16, c : c + 16], y[0])
    with pytest.raises(ValueError, match="does not fit"):
        random_patches(raw, aff, (9, 16, 16), 1, seed=0)


def test_balanced_loss_weighs_both_classes_equally():
    """Nine positives, one negative, all predicted positive (logit 2): the plain mean BCE is
    dominated by the easy positives, the balanced one is the mean of the two classes' means."""
    logits = torch.full((1, 1, 1, 2, 5), 2.0)
    target = torch.ones(1, 1, 1, 2, 5, dtype=torch.int64)
    target[..., 0, 0] = 0
    pos, neg = F.softplus(torch.tensor(-2.0)), F.softplus(torch.tensor(2.0))
    plain = AffinityLoss(balance=False)(logits, target)
    balanced = AffinityLoss()(logits, target)
    assert plain == pytest.approx(float(0.9 * pos + 0.1 * neg))
    assert plain == pytest.approx(float(F.binary_cross_entropy_with_logits(logits, target.float())))
    assert balanced == pytest.approx(float(0.5 * pos + 0.5 * neg))
    assert balanced > 2 * plain
    # fixed [negative, positive] weights: sum(w * bce) / sum(w)
    fixed = AffinityLoss(class_weights=[10.0, 1.0])(logits, target)
    assert fixed == pytest.approx(float((9 * pos + 10 * neg) / 19))
    # one class only: the plain mean
    assert AffinityLoss()(logits, torch.ones_like(target)) == pytest.approx(float(pos))
    with pytest.raises(ValueError, match=r"\[negative, positive\]"):
        AffinityLoss(class_weights=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="differ"):
        AffinityLoss()(logits, target[..., :3])


def test_ignored_entries_do_not_count():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 2, 4, 4)
    target = torch.randint(0, 2, (2, 3, 2, 4, 4))
    ignored = target.clone()
    ignored[:, :, 0] = IGNORE
    wild = logits.clone()
    wild[:, :, 0] = 1e4  # anything at ignored entries
    loss = AffinityLoss()
    assert loss(wild, ignored) == pytest.approx(float(loss(logits[:, :, 1:], target[:, :, 1:])))
    everything_ignored = torch.full_like(target, IGNORE)
    assert float(loss(logits, everything_ignored)) == 0.0
    # so does the accuracy: known entries only, per input, summed over the batch
    y = torch.tensor([[[[[1, 0, IGNORE, 1]]]], [[[[0, 0, 0, 0]]]]])
    z = torch.tensor([[[[[3.0, -1.0, 5.0, -2.0]]]], [[[[-1.0, -1.0, -1.0, -1.0]]]]])
    assert AFFINITIES.correct(z, y) == pytest.approx(2 / 3 + 1.0)


def test_metrics_of_probabilities():
    y = np.array([[[1, 1, 1, 0]], [[1, IGNORE, 0, 0]]])  # (N=2, C=1, 4)
    p = np.array([[[0.9, 0.8, 0.4, 0.2]], [[0.6, 0.99, 0.7, 0.1]]])
    m = AFFINITIES.metrics(y, p, ["z"])
    assert m["n"] == 2 and m["n_voxels"] == 7
    assert m["accuracy"] == pytest.approx(5 / 7)
    assert m["acc_z"] == pytest.approx(5 / 7)
    assert m["balanced_accuracy"] == pytest.approx(0.5 * (3 / 4 + 2 / 3))
    bce = -np.log([0.9, 0.8, 0.4, 0.8, 0.6, 0.3, 0.9])
    assert m["bce"] == pytest.approx(bce.mean())
    assert m["balanced_bce"] == pytest.approx(
        0.5 * (bce[[0, 1, 2, 4]].mean() + bce[[3, 5, 6]].mean())
    )
    assert m["positive_share"] == pytest.approx(4 / 7)
    assert set(affinity_metrics(np.zeros((1, 3, 2)), np.zeros((1, 3, 2)))) >= {
        "acc_aff0",
        "acc_aff2",
    }
    with pytest.raises(ValueError, match="one shape"):
        affinity_metrics(y, p[:, :, :3])


def test_fit_trains_the_unet_on_random_patches():
    """A 4-filter, 2-level U-Net, 8 seeded epochs on 16 patches of a synthetic volume: the
    balanced training loss falls by over 15 % and the validation metrics are sane."""
    raw, aff, _ = synthetic_volume(0)
    x, y = random_patches(raw, aff, (4, 16, 16), 16, seed=1)
    raw_v, aff_v, _ = synthetic_volume(5)
    xv, yv = random_patches(raw_v, aff_v, (4, 16, 16), 8, seed=2)
    torch.manual_seed(0)
    model = build_model({"name": "unet3d", "filters": 4, "levels": 2})
    cfg = TrainConfig(epochs=8, batch_size=4, learning_rate=0.01, patience=8, recalibrate_bn=True)
    history = fit(model, x, y, xv, yv, cfg, seed=0, task=get_task("affinities"))
    assert len(history) == 8
    first, last = history[0]["train_loss"], history[-1]["train_loss"]
    assert last < 0.85 * first, [round(h["train_loss"], 4) for h in history]
    assert history[-1]["val_loss"] < history[0]["val_loss"]
    assert all(0.0 <= h["val_accuracy"] <= 1.0 for h in history)
    assert all(math.isfinite(h["val_loss"]) for h in history)
    # the trained model's test metrics go through the task
    with torch.no_grad():
        proba = AFFINITIES.proba(model.eval()(torch.from_numpy(xv))).numpy()
    metrics = AFFINITIES.metrics(yv, proba, ["z", "y", "x"])
    assert metrics["n"] == 8 and 0.0 <= metrics["accuracy"] <= 1.0
    assert math.isfinite(metrics["bce"])
