"""Simulation shards -> image shards -> train / validation / test splits (compact npz files).

Linked windows (``apps.sweeps.data.image.linked``, S/HIC's linked classes folded into the neutral
class): the neutral encode job of batch b also reads the sweep simulation shard of batch b and
replaces neutral image i, for a seeded share of the i, by a window of sweep replicate i centred at
a random offset from its sweep (``linked_offsets``, ``encode_linked``). The shard records the offsets
(``linked_offset``, NaN for true neutral images); ``build_splits`` then draws one split permutation
for both classes, so a linked window is in the same split as its sweep replicate's centred image.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...atomic import atomic_path
from ...errors import ConfigError, InputFormatError
from ...seeds import derive_seed
from . import CLASSES
from . import images as img

if TYPE_CHECKING:
    from .simulate import Replicate

SPLITS = ("train", "val", "test")
#: image-shard field of the linked windows' offsets from the sweep (fraction of L, signed; NaN: none)
LINKED_FIELD = "linked_offset"


def n_batches(n_replicates: int, batch_size: int) -> int:
    return math.ceil(n_replicates / batch_size)


def batch_sizes(n_replicates: int, batch_size: int) -> list[int]:
    """Replicates per batch: full batches and a smaller last one."""
    k = n_batches(n_replicates, batch_size)
    return [min(batch_size, n_replicates - i * batch_size) for i in range(k)]


def encode_replicates(
    reps: list[Replicate],
    width: int,
    encoding: str,
    column_order: str,
    centres: list[float | None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Images (B, n, width) uint8 and SNPs per window (windows short of ``width`` are zero-padded).

    A window is centred on the sweep (sweep replicates) or the middle of the region (neutral ones);
    ``centres[i]`` (not None) centres replicate i's window there instead."""
    windows, n_snps = [], []
    for i, r in enumerate(reps):
        centre = None if centres is None else centres[i]
        if centre is None:
            centre = r.sweep_position if np.isfinite(r.sweep_position) else None
        if centre is None:  # neutral: the centre of the region, as for sweeps
            centre = (r.positions[0] + r.positions[-1]) / 2 if len(r.positions) else 0.0
        a, b = img.centre_window(r.positions, len(r.positions), centre, width)
        windows.append(img.pad_window(r.haplotypes[a:b].T, width))
        n_snps.append(b - a)
    batch = np.stack(windows) if windows else np.zeros((0, 0, width), np.uint8)
    return img.encode(batch, encoding, column_order), np.asarray(n_snps, dtype=np.int32)


def linked_settings(image_cfg: dict) -> dict | None:
    """``{fraction, min_offset, max_offset}`` of ``apps.sweeps.data.image.linked``; None when off
    (absent or fraction 0). Offsets are fractions of the sequence length; min_offset > max_offset
    is refused."""
    linked = image_cfg.get("linked") or {}
    fraction = float(linked.get("fraction", 0.0))
    if fraction <= 0:
        return None
    lo, hi = float(linked.get("min_offset", 0.02)), float(linked.get("max_offset", 0.4))
    if not 0 <= lo <= hi <= 0.5 or fraction >= 1:
        raise ConfigError(
            "config key apps.sweeps.data.image.linked: need 0 <= min_offset <= max_offset <= 0.5 "
            f"(fractions of the sequence length) and 0 <= fraction < 1, got min_offset {lo:g}, "
            f"max_offset {hi:g}, fraction {fraction:g}"
        )
    return {"fraction": fraction, "min_offset": lo, "max_offset": hi}


def linked_offsets(
    n: int, *, fraction: float, min_offset: float, max_offset: float, seed: int
) -> np.ndarray:
    """Signed offsets (fractions of L) of the linked windows replacing the images of a shard of
    ``n``: exactly ``round(fraction * n)`` random entries hold an offset uniform in
    [min_offset, max_offset] to a random side; the others NaN (the image stays neutral)."""
    rng = np.random.default_rng(seed)
    chosen = rng.permutation(n)[: int(round(fraction * n))]
    size = rng.uniform(min_offset, max_offset, size=n)
    side = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    out = np.full(n, np.nan)
    out[chosen] = (side * size)[chosen]
    return out


def encode_linked(
    neutral: list[Replicate],
    sweeps: list[Replicate],
    offsets: np.ndarray,
    sequence_length: float,
    width: int,
    encoding: str,
    column_order: str,
) -> tuple[np.ndarray, np.ndarray]:
    """``encode_replicates`` of a neutral shard in which image i, where ``offsets[i]`` is finite, is
    sweep replicate i's window centred at ``sweep_position + offsets[i] * sequence_length``
    (clipped to [0, L]). ``sweeps`` is the sweep shard of the same batch (same replicate indices)."""
    offsets = np.asarray(offsets, np.float64)
    if len(sweeps) != len(neutral) or len(offsets) != len(neutral):
        raise InputFormatError(
            f"linked windows: the sweep shard has {len(sweeps)} replicates, the neutral shard "
            f"{len(neutral)} and the offsets {len(offsets)}; they must match (same batch)"
        )
    reps, centres = list(neutral), [None] * len(neutral)
    for i in np.flatnonzero(np.isfinite(offsets)):
        site = sweeps[i].sweep_position
        if not np.isfinite(site):
            raise InputFormatError(f"linked windows: sweep replicate {i} has no sweep position")
        reps[i] = sweeps[i]
        centres[i] = float(np.clip(site + offsets[i] * sequence_length, 0.0, sequence_length))
    return encode_replicates(reps, width, encoding, column_order, centres)


def save_images(
    path,
    images: np.ndarray,
    labels: np.ndarray,
    index: np.ndarray,
    n_snps=None,
    linked_offset=None,
) -> None:
    """Image shard: packed images, labels, the replicate index of each image within its class;
    ``linked_offset`` (only when linked windows are on) the offset of each linked window (NaN: none)."""
    extra = {} if linked_offset is None else {LINKED_FIELD: np.asarray(linked_offset, np.float64)}
    with atomic_path(path) as tmp:
        np.savez_compressed(
            tmp,
            images=img.pack(images),
            width=np.int64(images.shape[2]),
            labels=labels.astype(np.int8),
            index=index.astype(np.int64),
            n_snps=np.zeros(len(images), np.int32) if n_snps is None else n_snps,
            **extra,
        )


def load_linked_offsets(path) -> np.ndarray | None:
    """The shard's ``linked_offset`` field; None for a shard written without linked windows."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return z[LINKED_FIELD].astype(np.float64) if LINKED_FIELD in z.files else None
    except Exception as err:
        raise InputFormatError(f"{path}: unreadable image shard ({err})") from err


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
    """Gather a scenario's image shards into train/val/test files; returns counts per split and class.

    Each class is split by its own seeded permutation, unless a shard holds linked windows
    (``LINKED_FIELD``): then every class uses the sweep class's permutation (its split stays as
    without linked windows), so replicate i, whose sweep window may sit in the neutral class as a
    linked window, is in one split in both classes; the split files keep the offsets and the counts
    gain ``linked`` (linked windows per split)."""
    per_class: dict[int, list] = {}
    any_linked = False
    for path in shards:
        images, labels, index = load_images(path)
        offsets = load_linked_offsets(path)
        if offsets is None:
            offsets = np.full(len(labels), np.nan)
        elif len(offsets) != len(labels):
            raise InputFormatError(
                f"{path}: field {LINKED_FIELD!r} ({len(offsets)}) does not match labels "
                f"({len(labels)})"
            )
        else:
            any_linked = True
        for label in np.unique(labels):
            sel = labels == label
            per_class.setdefault(int(label), []).append((index[sel], images[sel], offsets[sel]))
    parts: dict[str, list] = {s: [] for s in SPLITS}
    counts: dict[str, dict[str, int]] = {s: {} for s in SPLITS}
    first_index = None
    for label, chunks in sorted(per_class.items()):
        index = np.concatenate([c[0] for c in chunks])
        images = np.concatenate([c[1] for c in chunks])
        offsets = np.concatenate([c[2] for c in chunks])
        order = np.argsort(index)
        index, images, offsets = index[order], images[order], offsets[order]
        if len(np.unique(index)) != len(index):
            raise InputFormatError(
                f"class {CLASSES[label]}: duplicate replicate indices in {shards}"
            )
        if any_linked:
            if first_index is not None and not np.array_equal(index, first_index):
                raise InputFormatError(
                    f"linked windows need the same replicate indices in every class; class "
                    f"{CLASSES[label]} differs in {shards}"
                )
            first_index = index
        n_pool = min(n_train, len(index))
        split_seed = derive_seed(seed, "split", CLASSES.index("sweep") if any_linked else label)
        idx = split_indices(n_pool, len(index), val_fraction, split_seed)
        for split, sel in idx.items():
            parts[split].append(
                (images[sel], np.full(len(sel), label, np.int64), index[sel], offsets[sel])
            )
            counts[split][CLASSES[label]] = len(sel)
            if any_linked:
                linked = int(np.isfinite(offsets[sel]).sum())
                counts[split]["linked"] = counts[split].get("linked", 0) + linked
    for split in SPLITS:
        chunks = parts[split]
        if chunks:
            images = np.concatenate([c[0] for c in chunks])
            labels = np.concatenate([c[1] for c in chunks])
            index = np.concatenate([c[2] for c in chunks])
            offsets = np.concatenate([c[3] for c in chunks])
        else:
            width = 8
            images = np.zeros((0, 1, width), np.uint8)
            labels = index = np.zeros(0, np.int64)
            offsets = np.zeros(0)
        save_images(
            out[split], images, labels, index, linked_offset=offsets if any_linked else None
        )
    return counts
