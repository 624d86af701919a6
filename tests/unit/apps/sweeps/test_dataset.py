import numpy as np
import pytest

from quantscan.apps.sweeps import dataset
from quantscan.data import load_split
from quantscan.errors import InputFormatError


def make_shards(tmp_path, n_per_class=10, batch=4):
    rng = np.random.default_rng(0)
    paths = []
    for label in (0, 1):
        for b, size in enumerate(dataset.batch_sizes(n_per_class, batch)):
            imgs = (rng.random((size, 6, 5)) < 0.5).astype(np.uint8)
            index = np.arange(b * batch, b * batch + size)
            path = tmp_path / f"c{label}_b{b}.npz"
            dataset.save_images(path, imgs, np.full(size, label), index)
            paths.append(path)
    return paths


def test_batch_sizes():
    assert dataset.batch_sizes(10, 4) == [4, 4, 2]
    assert dataset.batch_sizes(8, 4) == [4, 4]


def test_build_splits_counts_disjoint_and_seeded(tmp_path):
    shards = make_shards(tmp_path)
    out = {s: tmp_path / f"{s}.npz" for s in dataset.SPLITS}
    counts = dataset.build_splits(shards, out, n_train=8, val_fraction=0.25, seed=3)
    assert counts == {
        "train": {"neutral": 6, "sweep": 6},
        "val": {"neutral": 2, "sweep": 2},
        "test": {"neutral": 2, "sweep": 2},
    }
    seen = {}
    for split in dataset.SPLITS:
        x, y, index = dataset.load_images(out[split])
        assert x.shape[1:] == (6, 5)
        for label in (0, 1):
            seen.setdefault(label, []).extend(index[y == label].tolist())
        if split == "test":
            assert sorted(index.tolist()) == [8, 8, 9, 9]
    for label in (0, 1):
        assert sorted(seen[label]) == list(range(10))  # every replicate exactly once
    x_train, y_train = load_split(out["train"])
    assert x_train.shape == (12, 1, 6, 5) and set(y_train.tolist()) == {0, 1}
    val_a = dataset.load_images(out["val"])[2]
    dataset.build_splits(shards, out, n_train=8, val_fraction=0.25, seed=3)
    assert np.array_equal(val_a, dataset.load_images(out["val"])[2])


def test_corrupted_image_shard_names_the_file(tmp_path):
    shards = make_shards(tmp_path)
    shards[0].write_bytes(b"PK\x03\x04 definitely not a zip")
    out = {s: tmp_path / f"{s}.npz" for s in dataset.SPLITS}
    with pytest.raises(InputFormatError, match=r"c0_b0\.npz: unreadable image shard"):
        dataset.build_splits(shards, out, n_train=8, val_fraction=0.25, seed=3)
    assert not any(p.exists() for p in out.values())  # nothing half-written
    np.savez(shards[1], images=np.zeros((2, 6, 1), np.uint8), width=5, labels=[0, 7], index=[0, 1])
    with pytest.raises(InputFormatError, match="labels"):
        dataset.load_images(shards[1])
    with pytest.raises(InputFormatError, match="no known split layout"):
        np.savez(tmp_path / "other.npz", foo=np.zeros(2))
        load_split(tmp_path / "other.npz")


# --- linked windows (apps.sweeps.data.image.linked) -----------------------------------------------

LINKED = {"fraction": 0.4, "min_offset": 0.1, "max_offset": 0.3}


def synthetic_replicates(n, length=10_000.0, n_sites=500, sweep=False, seed=0):
    """Replicates with evenly spaced sites (site k at k * L / n_sites) and random haplotypes."""
    from quantscan.apps.sweeps.simulate import Replicate

    rng = np.random.default_rng(seed)
    positions = (np.arange(n_sites) + 0.5) * length / n_sites
    return [
        Replicate(
            positions=positions.copy(),
            haplotypes=(rng.random((n_sites, 8)) < 0.3).astype(np.uint8),
            sweep_position=length / 2 if sweep else float("nan"),
        )
        for _ in range(n)
    ]


def test_linked_settings_off_on_and_checked():
    from quantscan.errors import ConfigError

    assert dataset.linked_settings({"snps": 64}) is None
    assert dataset.linked_settings({"linked": {"fraction": 0}}) is None
    assert dataset.linked_settings({"linked": {"fraction": 0.5}}) == {
        "fraction": 0.5,
        "min_offset": 0.02,
        "max_offset": 0.4,
    }
    with pytest.raises(ConfigError, match="min_offset <= max_offset"):
        dataset.linked_settings({"linked": {"fraction": 0.5, "min_offset": 0.3, "max_offset": 0.2}})


def test_linked_config_keys_validate_with_defaults():
    from quantscan import config as qconfig
    from quantscan.errors import ConfigError

    def validate(data):
        return qconfig.validate({"apps": {"sweeps": {"data": data}}})["apps"]["sweeps"]["data"]

    base = {"scenarios": {"constant": {}}}
    assert "linked" not in validate(base)["image"]  # absent: off
    data = validate({**base, "image": {"linked": {"fraction": 0.3}}})
    assert data["image"]["linked"] == {
        "fraction": 0.3,
        "min_offset": 0.02,
        "max_offset": 0.4,
    }
    with pytest.raises(ConfigError, match="linked"):
        validate({**base, "image": {"linked": {"fraction": 1.0}}})


def test_linked_offsets_share_range_sides_and_seed():
    off = dataset.linked_offsets(1000, **LINKED, seed=5)
    chosen = np.isfinite(off)
    assert chosen.sum() == 400  # exactly round(fraction * n)
    assert np.all((np.abs(off[chosen]) >= 0.1) & (np.abs(off[chosen]) <= 0.3))
    assert 150 < (off[chosen] < 0).sum() < 250  # both sides
    assert np.array_equal(off, dataset.linked_offsets(1000, **LINKED, seed=5), equal_nan=True)
    assert not np.array_equal(off, dataset.linked_offsets(1000, **LINKED, seed=6), equal_nan=True)
    assert np.isnan(dataset.linked_offsets(7, **{**LINKED, "fraction": 0.0}, seed=5)).all()


def test_encode_linked_windows_are_displaced_sweep_windows():
    length, width, n = 10_000.0, 16, 10
    neutral = synthetic_replicates(n, length, seed=1)
    sweeps = synthetic_replicates(n, length, sweep=True, seed=2)
    off = dataset.linked_offsets(n, **LINKED, seed=3)
    images, n_snps = dataset.encode_linked(
        neutral, sweeps, off, length, width, "sweepnet", "descending"
    )
    plain, plain_snps = dataset.encode_replicates(neutral, width, "sweepnet", "descending")
    assert images.shape == plain.shape and np.all(n_snps == width)
    for i in range(n):
        if not np.isfinite(off[i]):  # a true neutral image: as without linked windows
            assert np.array_equal(images[i], plain[i])
            continue
        centre = length / 2 + off[i] * length
        a, b = dataset.img.centre_window(sweeps[i].positions, 500, centre, width)
        # the window is centred at the configured offset from the sweep (within one site spacing)
        mid = sweeps[i].positions[a:b].mean()
        assert abs(mid - centre) <= length / 500
        assert 0.1 * length - 20 <= abs(mid - length / 2) <= 0.3 * length + 20
        window = dataset.img.pad_window(sweeps[i].haplotypes[a:b].T, width)
        expect = dataset.img.encode(window[None], "sweepnet", "descending")[0]
        assert np.array_equal(images[i], expect)  # encoded exactly as a training image
        assert not np.array_equal(images[i], plain[i])
    with pytest.raises(InputFormatError, match="same batch"):
        dataset.encode_linked(neutral, sweeps[:-1], off, length, width, "sweepnet", "descending")


def linked_shards(tmp_path, n_per_class=20, batch=6, linked=True):
    """Image shards as the encode jobs write them; neutral shards hold linked windows if ``linked``."""
    rng = np.random.default_rng(0)
    paths = []
    for label in (0, 1):
        for b, size in enumerate(dataset.batch_sizes(n_per_class, batch)):
            imgs = (rng.random((size, 6, 5)) < 0.5).astype(np.uint8)
            index = np.arange(b * batch, b * batch + size)
            off = None
            if linked and label == 0:
                off = dataset.linked_offsets(size, **LINKED, seed=b)
            path = tmp_path / f"c{label}_b{b}.npz"
            dataset.save_images(path, imgs, np.full(size, label), index, linked_offset=off)
            paths.append(path)
    return paths


def test_build_splits_keeps_linked_windows_in_their_sweep_replicates_split(tmp_path):
    on, off = tmp_path / "on", tmp_path / "off"
    on.mkdir(), off.mkdir()
    out_on = {s: on / f"{s}.npz" for s in dataset.SPLITS}
    out_off = {s: off / f"{s}.npz" for s in dataset.SPLITS}
    args = {"n_train": 16, "val_fraction": 0.25, "seed": 3}
    counts = dataset.build_splits(linked_shards(on), out_on, **args)
    dataset.build_splits(linked_shards(off, linked=False), out_off, **args)
    n_linked = 0
    for split in dataset.SPLITS:
        _, y, index = dataset.load_images(out_on[split])
        offsets = dataset.load_linked_offsets(out_on[split])
        linked = np.isfinite(offsets)
        assert np.all(y[linked] == 0)  # labelled neutral
        assert set(index[linked]) <= set(index[y == 1])  # their sweep replicate is in this split
        assert np.array_equal(np.sort(index[y == 0]), np.sort(index[y == 1]))
        assert counts[split]["linked"] == linked.sum()
        n_linked += linked.sum()
        # the sweep class is split as without linked windows
        _, y_off, index_off = dataset.load_images(out_off[split])
        assert np.array_equal(index[y == 1], index_off[y_off == 1])
        assert dataset.load_linked_offsets(out_off[split]) is None
    assert n_linked == 2 + 2 + 2 + 1  # round(0.4 x 6) per full shard, round(0.4 x 2) = 1


def test_build_splits_without_linked_windows_keeps_per_class_permutations(tmp_path):
    shards = make_shards(tmp_path)
    out = {s: tmp_path / f"{s}.npz" for s in dataset.SPLITS}
    dataset.build_splits(shards, out, n_train=8, val_fraction=0.25, seed=3)
    _, y, index = dataset.load_images(out["val"])
    for label in (0, 1):
        expect = dataset.split_indices(8, 10, 0.25, dataset.derive_seed(3, "split", label))["val"]
        assert np.array_equal(index[y == label], expect)
    with np.load(out["val"]) as z:
        assert dataset.LINKED_FIELD not in z.files


def test_build_splits_refuses_linked_shards_with_mismatched_indices(tmp_path):
    shards = linked_shards(tmp_path)
    shards.pop()  # the last sweep shard is missing
    out = {s: tmp_path / f"{s}.npz" for s in dataset.SPLITS}
    with pytest.raises(InputFormatError, match="same replicate indices"):
        dataset.build_splits(shards, out, n_train=16, val_fraction=0.25, seed=3)
