"""EM volumes -> the engine's split files: training patches with affinity targets, the whole test
volume, and the volumes the blockwise scan segments.

* ``train`` / ``val``: ``patches.train`` / ``patches.val`` patches of ``patch`` voxels cut at seeded
  random corners of the training volume (the validation patches from its last quarter of
  sections, the training patches from the rest, so they never overlap), each with a random flip of
  every axis, a random y-x transpose, a random intensity scale and shift, randomly blanked
  (missing) and slipped (misaligned) sections (``augment``), as in the affinity-learning recipes
  of Lee et al. (2017) and Funke et al. (2019). Inputs are float32 in [0, 1], targets the three
  nearest-neighbour affinities (int8: 1 same object, 0 where the labels differ or either voxel
  is label 0 (membrane, or CREMI's unlabelled voxels), -1 where unknown: the neighbour outside
  the volume, or pixels a slip made up).
* ``test``: the whole test volume as one input, cropped to a multiple of the U-Net's input
  multiple, with its labels (``labels``) for segmentation metrics.

Synthetic volumes (``source: synthetic``) come from :func:`.synthetic.make_volume` seeded by the
master seed and the volume's role; user volumes (``source: volumes``) are opened with
:func:`.volumes.open_volume` (HDF5/CREMI, TIFF, zarr, OME-Zarr).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ...errors import InputFormatError
from ...seeds import derive_seed

#: most voxels of a volume read whole into memory (train and test): 1 G voxels (1 GB of uint8)
MAX_VOXELS = 1_000_000_000


def load_volume(settings: Mapping, role: str, seed: int, name: str | None = None):
    """``(raw uint8 (z, y, x), labels uint64 or None, voxel_size)`` of the volume of ``role``, read
    whole: a synthetic volume (train, test or scan; ``name`` salts the seed), or a user's training
    or test volume (user scan volumes are opened block by block by the scan itself)."""
    d = settings["data"]
    if d["source"] == "synthetic":
        from .synthetic import make_volume

        raw, labels = make_volume(
            shape=tuple(d["synthetic"][role]),
            voxel_size=tuple(d["voxel_size"]),
            seed=derive_seed(seed, "connectomics_volume", role, name or ""),
            defect_fraction=d["synthetic"]["defect_fraction"],
        )
        return raw, labels, tuple(float(v) for v in d["voxel_size"])
    from .volumes import open_volume

    spec = d["volumes"][role]
    with open_volume(spec) as vol:
        n = int(np.prod(vol.shape))
        if n > MAX_VOXELS:
            raise InputFormatError(
                f"{spec['path']}: the {role} volume has {n:,} voxels, more than the "
                f"{MAX_VOXELS:,} read whole into memory; crop it (a region of interest)"
            )
        raw = np.asarray(vol.raw[...])
        labels = None if vol.labels is None else np.asarray(vol.labels[...])
        return raw, labels, tuple(float(v) for v in vol.voxel_size)


def normalize(raw: np.ndarray) -> np.ndarray:
    """uint8 (or any integer) intensities -> float32 in [0, 1]; floats are clipped to [0, 1]."""
    raw = np.asarray(raw)
    if np.issubdtype(raw.dtype, np.integer):
        info = np.iinfo(raw.dtype)
        return (raw.astype(np.float32) - info.min) / float(info.max - info.min)
    return np.clip(raw.astype(np.float32), 0.0, 1.0)


def target_affinities(labels: np.ndarray) -> np.ndarray:
    """Nearest-neighbour affinities (3, z, y, x) int8 of a label volume: 0 where either voxel is
    label 0 (a membrane; CREMI's unlabelled voxels are 0 after :func:`.volumes.open_volume` too),
    -1 where the neighbour lies outside the volume."""
    from ...tasks.segmentation import affinities

    return affinities(labels, background=0)


def augment(
    x: np.ndarray, y: np.ndarray, rng: np.random.Generator, options: Mapping
) -> tuple[np.ndarray, np.ndarray]:
    """One patch ``x (1, z, y, x)``, ``y (3, z, y, x)``, flipped, transposed, rescaled and with
    sections blanked at random.

    A flip of axis a reverses the patch along a, so the affinity to the *previous* voxel along a
    becomes the affinity to the next one: channel a is shifted by one voxel (its first plane
    becomes unknown). A y-x transpose swaps the y and x channels. With ``missing`` = p, each
    section is blanked (raw 0, as a missing section) with probability p while the targets keep the
    objects going through it: the missing-section case of the defect augmentation of Funke et al.
    (TPAMI 2018; gunpowder's ``DefectAugment``, ``prob_missing``), without which a U-Net predicts
    no affinity into or across a missing section and splits every object there.
    """
    if options.get("flip", True):
        for axis in range(3):
            if rng.random() < 0.5:
                x = np.flip(x, axis=axis + 1)
                y = np.flip(y, axis=axis + 1).copy()
                # channel `axis` now holds the affinity to the next voxel: shift it back by one
                ch = np.roll(y[axis], 1, axis=axis)
                first = [slice(None)] * 3
                first[axis] = slice(0, 1)
                ch[tuple(first)] = -1
                y[axis] = ch
    if options.get("transpose", True) and x.shape[2] == x.shape[3] and rng.random() < 0.5:
        x = np.swapaxes(x, 2, 3)
        y = np.swapaxes(y, 2, 3)[[0, 2, 1]]
    x = np.ascontiguousarray(x, np.float32)
    amount = float(options.get("intensity", 0.0))
    if amount > 0:
        scale = 1.0 + rng.uniform(-amount, amount)
        shift = rng.uniform(-amount, amount)
        x = np.clip(x * scale + shift, 0.0, 1.0).astype(np.float32)
    p_missing = float(options.get("missing", 0.0))
    if p_missing > 0:
        blank = rng.random(x.shape[1]) < p_missing
        if blank.any():
            x = x.copy()
            x[:, blank] = 0.0
    return x, np.ascontiguousarray(y, np.int8)


MAX_SLIP_PX = 10  # the largest section slip of the misalignment augmentation, per axis


def _uncovered(shape: tuple[int, int], dy: int, dx: int, grow: int = 0) -> np.ndarray:
    """The rows and columns of a section that a (dy, dx) shift uncovers (filled by repeating the
    edge), widened by ``grow`` towards the covered part."""
    band = np.zeros(shape, bool)
    h, w = shape
    if dy > 0:
        band[: dy + grow] = True
    elif dy < 0:
        band[max(h + dy - grow, 0) :] = True
    if dx > 0:
        band[:, : dx + grow] = True
    elif dx < 0:
        band[:, max(w + dx - grow, 0) :] = True
    return band


def slip_sections(
    x: np.ndarray,
    y: np.ndarray,
    labels: np.ndarray,
    rng: np.random.Generator,
    p: float,
    max_px: int = MAX_SLIP_PX,
) -> list[tuple[int, int, int]]:
    """Misalignment augmentation, in place: each section of a patch but the first slips with
    probability ``p`` by a random y-x translation of up to ``max_px`` pixels per axis (at most a
    quarter of the section's smaller side), image and labels together, and the targets ``y``
    (3, z, y, x) are recomputed from the slipped labels where they change: the z affinities into
    and out of the section and its in-plane ones. The rows and columns that the shift uncovers
    repeat the edge in the image (as a volume's edge does); their targets, and the in-plane ones
    next to them, are unknown (-1), as are the first row's y and the first column's x affinities of
    a slipped section (their neighbours lie outside the patch). This is the slip case of the defect
    augmentation of Funke et al. (TPAMI 2018; gunpowder's ``ElasticAugment``, ``prob_slip``): a
    U-Net trained without it gives the bands that a slip moves from one cell over another a high z
    affinity, and the agglomeration merges the two cells through the slipped section. ``x``
    (1, z, y, x), ``labels`` (z, y, x). Returns the slips ``(section, dy, dx)``."""
    from ...tasks.segmentation import IGNORE, affinities
    from .synthetic import shift_section

    slips = []
    nz, h, w = labels.shape
    max_px = min(int(max_px), min(h, w) // 4)
    if max_px < 1:
        return slips
    made = np.zeros(labels.shape, bool)  # made-up pixels (uncovered by a shift)
    for k in range(1, nz):
        if rng.random() >= p:
            continue
        dy, dx = (int(v) for v in rng.integers(-max_px, max_px + 1, 2))
        if not (dy or dx):
            continue
        slips.append((k, dy, dx))
        x[0, k] = shift_section(x[0, k], dy, dx)
        labels[k] = shift_section(labels[k], dy, dx)
        made[k] = _uncovered((h, w), dy, dx)
        y[1:, k] = affinities(labels[k][None], background=0)[1:, 0]
        y[1:, k][:, _uncovered((h, w), dy, dx, grow=1)] = IGNORE
        for z in (k, k + 1):
            if z < nz:
                y[0, z] = affinities(labels[z - 1 : z + 1], background=0)[0, 1]
                y[0, z][made[z] | made[z - 1]] = IGNORE
    return slips


def patches(
    raw: np.ndarray,
    labels: np.ndarray,
    shape,
    n: int,
    seed: int,
    *,
    z_range: tuple[int, int],
    options: Mapping,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` augmented patches of ``shape`` from sections ``z_range`` of a volume: x float32
    (n, 1, *shape), y int8 (n, 3, *shape); ``options``: :func:`slip_sections` (``misalign``, the
    probability of a section slip) then :func:`augment`'s."""
    from ...tasks.segmentation import cut_patches, patch_corners

    z0, z1 = z_range
    aff = target_affinities(labels)[:, z0:z1]
    corners = patch_corners(aff.shape[1:], shape, n, seed)
    x = cut_patches(normalize(raw[z0:z1])[None], corners, shape)
    y = cut_patches(aff, corners, shape)
    p_slip = float(options.get("misalign", 0.0))
    if p_slip > 0:
        lab = cut_patches(np.asarray(labels[z0:z1])[None], corners, shape)
        slip_rng = np.random.default_rng(derive_seed(seed, "misalign"))
        for xi, yi, li in zip(x, y, lab[:, 0], strict=True):
            slip_sections(xi, yi, li, slip_rng, p_slip)
    rng = np.random.default_rng(derive_seed(seed, "augment"))
    out = [augment(xi, yi, rng, options) for xi, yi in zip(x, y, strict=True)]
    return np.stack([o[0] for o in out]), np.stack([o[1] for o in out])


def split_ranges(depth: int, patch_z: int) -> dict[str, tuple[int, int]]:
    """Sections of the training volume that the training and validation patches come from."""
    val = max(patch_z, depth // 4)
    if depth - val < patch_z:
        raise InputFormatError(
            f"the training volume has {depth} sections: too few for training and validation "
            f"patches of {patch_z} sections each"
        )
    return {"train": (0, depth - val), "val": (depth - val, depth)}


def crop_to_multiple(a: np.ndarray, multiple) -> np.ndarray:
    """The leading corner of ``a``'s last three axes, cut to multiples of ``multiple``."""
    shape = a.shape[-3:]
    keep = tuple((s // m) * m for s, m in zip(shape, multiple, strict=True))
    if min(keep) == 0:
        raise InputFormatError(
            f"a volume of {shape} voxels is smaller than the model's input multiple {multiple}"
        )
    return a[(..., *(slice(0, k) for k in keep))]


__all__ = [
    "MAX_SLIP_PX",
    "MAX_VOXELS",
    "augment",
    "crop_to_multiple",
    "load_volume",
    "normalize",
    "patches",
    "slip_sections",
    "split_ranges",
    "target_affinities",
]
