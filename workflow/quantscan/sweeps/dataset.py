"""Simulation shards -> image shards -> train / validation / test splits (compact npz files)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..atomic import atomic_path
from ..errors import InputFormatError
from ..seeds import derive_seed
from . import CLASSES
from . import images as img

if TYPE_CHECKING:
    from .simulate import Replicate

SPLITS = ("train", "val", "test")


def n_batches(n_replicates: int, batch_size: int) -> int:
    return math.ceil(n_replicates / batch_size)


def batch_sizes(n_replicates: int, batch_size: int) -> list[int]:
    """Replicates per batch: full batches and a smaller last one."""
    k = n_batches(n_replicates, batch_size)
    return [min(batch_size, n_replicates - i * batch_size) for i in range(k)]


def encode_replicates(
    reps: list[Replicate], width: int, encoding: str, column_order: str
) -> tuple[np.ndarray, np.ndarray]:
    """Images (B, n, width) uint8 and SNPs per window (windows short of ``width`` are zero-padded)."""
    windows, n_snps = [], []
    for r in reps:
        centre = r.sweep_position if np.isfinite(r.sweep_position) else None
        if centre is None:  # neutral: the centre of the region, as for sweeps
            centre = (r.positions[0] + r.positions[-1]) / 2 if len(r.positions) else 0.0
        a, b = img.centre_window(r.positions, len(r.positions), centre, width)
        windows.append(img.pad_window(r.haplotypes[a:b].T, width))
        n_snps.append(b - a)
    batch = np.stack(windows) if windows else np.zeros((0, 0, width), np.uint8)
    return img.encode(batch, encoding, column_order), np.asarray(n_snps, dtype=np.int32)


def save_images(
    path, images: np.ndarray, labels: np.ndarray, index: np.ndarray, n_snps=None
) -> None:
    """Image shard: packed images, labels, the replicate index of each image within its class."""
    with atomic_path(path) as tmp:
        np.savez_compressed(
            tmp,
            images=img.pack(images),
            width=np.int64(images.shape[2]),
            labels=labels.astype(np.int8),
            index=index.astype(np.int64),
            n_snps=np.zeros(len(images), np.int32) if n_snps is None else n_snps,
        )


def load_images(path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images uint8 (B, n, w), labels, index); corrupted shards raise ``InputFormatError``."""
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("images", "width", "labels", "index") if k not in z.files]
            if missing:
                raise InputFormatError(f"{path}: not a quantscan image shard (missing {missing})")
            packed, width, labels, index = z["images"], int(z["width"]), z["labels"], z["index"]
    except InputFormatError:
        raise
    except Exception as err:
        raise InputFormatError(f"{path}: unreadable image shard ({err})") from err
    if packed.ndim != 3 or len(labels) != len(packed) or len(index) != len(packed):
        raise InputFormatError(
            f"{path}: field 'images' {packed.shape} does not match labels ({len(labels)})"
        )
    if packed.shape[2] != (width + 7) // 8:
        raise InputFormatError(f"{path}: field 'width' ({width}) does not match the packed images")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(CLASSES)):
        raise InputFormatError(f"{path}: field 'labels' holds values outside 0..{len(CLASSES) - 1}")
    return img.unpack(packed, width), labels.astype(np.int64), index


def split_indices(
    n_train_pool: int, n_total: int, val_fraction: float, seed: int
) -> dict[str, np.ndarray]:
    """Replicates [0, n_train_pool) -> train/val (seeded shuffle); the rest -> test."""
    rng = np.random.default_rng(seed)
    pool = rng.permutation(n_train_pool)
    n_val = int(round(val_fraction * n_train_pool))
    return {
        "train": np.sort(pool[n_val:]),
        "val": np.sort(pool[:n_val]),
        "test": np.arange(n_train_pool, n_total),
    }


def build_splits(
    shards: list[str | Path],
    out: dict[str, str | Path],
    *,
    n_train: int,
    val_fraction: float,
    seed: int,
) -> dict[str, dict[str, int]]:
    """Gather a scenario's image shards into train/val/test files; returns counts per split and class."""
    per_class: dict[int, list] = {}
    for path in shards:
        images, labels, index = load_images(path)
        for label in np.unique(labels):
            sel = labels == label
            per_class.setdefault(int(label), []).append((index[sel], images[sel]))
    parts: dict[str, list] = {s: [] for s in SPLITS}
    counts: dict[str, dict[str, int]] = {s: {} for s in SPLITS}
    for label, chunks in sorted(per_class.items()):
        index = np.concatenate([c[0] for c in chunks])
        images = np.concatenate([c[1] for c in chunks])
        order = np.argsort(index)
        index, images = index[order], images[order]
        if len(np.unique(index)) != len(index):
            raise InputFormatError(
                f"class {CLASSES[label]}: duplicate replicate indices in {shards}"
            )
        n_pool = min(n_train, len(index))
        idx = split_indices(n_pool, len(index), val_fraction, derive_seed(seed, "split", label))
        for split, sel in idx.items():
            parts[split].append((images[sel], np.full(len(sel), label, np.int64), index[sel]))
            counts[split][CLASSES[label]] = len(sel)
    for split in SPLITS:
        chunks = parts[split]
        if chunks:
            images = np.concatenate([c[0] for c in chunks])
            labels = np.concatenate([c[1] for c in chunks])
            index = np.concatenate([c[2] for c in chunks])
        else:
            width = 8
            images = np.zeros((0, 1, width), np.uint8)
            labels = index = np.zeros(0, np.int64)
        save_images(out[split], images, labels, index)
    return counts
