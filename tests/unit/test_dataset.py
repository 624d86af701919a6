import numpy as np
import pytest

from quantscan.data import load_split
from quantscan.errors import InputFormatError
from quantscan.sweeps import dataset


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
    with pytest.raises(InputFormatError, match="neither 'images'"):
        np.savez(tmp_path / "other.npz", foo=np.zeros(2))
        load_split(tmp_path / "other.npz")
