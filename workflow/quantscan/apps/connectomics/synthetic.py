"""Synthetic anisotropic EM volumes (serial-section TEM look) with ground truth, seeded.

The recipe (``shared/reference/em.md`` section 5, in the spirit of the CREMI challenge's
*Drosophila* ssTEM volumes at 40 x 4 x 4 nm, z-y-x):

1. **Labels**: random seeds in physical (nm) coordinates, each voxel assigned to its nearest seed
   (a Voronoi tessellation, :class:`scipy.spatial.cKDTree`) under a metric that shrinks z by
   ``elongation`` (cells stretched along z, like neurites crossing the sections), with the voxel
   coordinates warped in y-x by smooth random displacement fields (curved, not polygonal,
   membranes).
2. **Membranes**: :func:`skimage.segmentation.find_boundaries` in each section (in-plane
   4-neighbour label changes, ``mode="thick"``), dilated ``membrane_dilation`` times; rendered dark.
   With ``cap_membranes`` (default) also the membrane where a cell ends along z: the voxels of a
   section whose cell differs from the one below (z - 1). In serial-section EM such a membrane lies
   in the section plane (en face) and darkens it less than a membrane cut across, so it is rendered
   halfway between the cell's grey and the membrane's. Without it, a cell ending in z touches the
   next one with no membrane between them, which no EM volume shows, and a U-Net has only the
   change of grey to cut them on.
3. **Intensity**: a base grey level per cell plus low-frequency texture (Gaussian-filtered noise).
4. **PSF and noise**: an anisotropic Gaussian blur (:func:`scipy.ndimage.gaussian_filter`, sigma
   in nm) and Gaussian noise.
5. **Defects** (as gunpowder's ``DefectAugment`` / ``ElasticAugment`` slips): a share
   ``defect_fraction`` of the sections is either *missing* (rendered black, value 0) or
   *misaligned* (the section slips by a random y-x translation; its labels slip with it, so the
   ground truth still describes the image).

Ground truth: ``labels`` uint64, cells numbered from 1. With ``zero_membranes=True`` (default,
the ISBI 2012 / SNEMI3D convention) membrane voxels are 0, so :func:`affinities` are 0 across and
on membranes; with ``False`` every voxel carries its cell's id (dense, CREMI ``neuron_ids`` style)
and 0 does not occur. Missing sections keep their labels (the network must bridge them).

Everything random comes from one :class:`numpy.random.Generator` made from ``seed``: the same seed
gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFECT_KINDS = ("missing", "misaligned")


def affinities(
    labels: np.ndarray,
    offsets: Sequence[Sequence[int]] = ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
    dtype=np.float32,
) -> np.ndarray:
    """Affinities ``(len(offsets), z, y, x)``: channel ``c`` at voxel ``p`` is 1 iff ``labels[p]``
    and ``labels[p - offsets[c]]`` are the same non-zero label (``aff_z = (seg[z] == seg[z-1]) &
    (seg != 0)`` for offset (1, 0, 0)); 0 where ``p - offset`` lies outside the volume.

    Offsets may be negative or long-range. ``dtype``: float32 (default) or uint8.
    """
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"affinities: labels must be 3-D z-y-x, got shape {labels.shape}")
    out = np.zeros((len(offsets), *labels.shape), dtype=dtype)
    for c, offset in enumerate(offsets):
        if len(offset) != 3:
            raise ValueError(f"affinities: offset {tuple(offset)} is not (z, y, x)")
        dst, src = [], []
        for o, n in zip(offset, labels.shape, strict=True):
            o = int(o)
            if abs(o) >= n:
                break
            dst.append(slice(o, n) if o >= 0 else slice(0, n + o))
            src.append(slice(0, n - o) if o >= 0 else slice(-o, n))
        else:
            here, there = labels[tuple(dst)], labels[tuple(src)]
            out[(c, *dst)] = (here == there) & (here != 0)
    return out


def _smooth_field(rng: np.random.Generator, shape, step_vox: Sequence[float]) -> np.ndarray:
    """Unit-variance smooth noise on ``shape``: a coarse random grid (one node per ``step_vox``
    voxels) upsampled linearly."""
    from skimage.transform import resize

    coarse = tuple(max(2, int(np.ceil(n / s)) + 1) for n, s in zip(shape, step_vox, strict=True))
    field = rng.standard_normal(coarse).astype(np.float32)
    return resize(field, shape, order=1, mode="edge", anti_aliasing=False).astype(np.float32)


def shift_section(section: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``section`` translated by (dy, dx) pixels, the uncovered border repeating the edge."""
    h, w = section.shape
    pad = np.pad(section, ((abs(dy), abs(dy)), (abs(dx), abs(dx))), mode="edge")
    y0, x0 = abs(dy) - dy, abs(dx) - dx
    return pad[y0 : y0 + h, x0 : x0 + w]


def make_volume(
    shape: Sequence[int] = (48, 256, 256),
    voxel_size: Sequence[float] = (40.0, 4.0, 4.0),
    seed: int = 0,
    *,
    cell_size_nm: float = 300.0,
    elongation: float = 3.0,
    warp_nm: float | None = None,
    membrane_dilation: int = 1,
    zero_membranes: bool = True,
    cap_membranes: bool = True,
    cell_intensity: tuple[float, float] = (130.0, 210.0),
    membrane_intensity: float = 45.0,
    texture_std: float = 10.0,
    texture_scale_nm: float = 40.0,
    psf_sigma_nm: Sequence[float] = (8.0, 5.0, 5.0),
    noise_std: float = 8.0,
    defect_fraction: float = 0.0,
    defect_kinds: Sequence[str] = DEFECT_KINDS,
    max_shift_nm: float = 40.0,
    return_info: bool = False,
):
    """A synthetic EM volume ``(raw uint8, labels uint64)`` of ``shape`` (z, y, x) voxels of
    ``voxel_size`` nm; with ``return_info`` also a dict ``{n_cells, missing: [z...],
    misaligned: {z: (dy, dx) px}}``.

    ``cell_size_nm``: typical in-plane cell diameter; ``elongation``: cells are that many times
    longer along z; ``warp_nm``: amplitude of the in-plane coordinate warp (default
    ``cell_size_nm / 4``); ``membrane_dilation``: extra dilations of the 2-px boundaries;
    ``zero_membranes``: membrane voxels labelled 0 (see the module docstring);
    ``cap_membranes``: membranes where cells end along z too (module docstring, step 2);
    ``defect_fraction``: share of sections (rounded to a count) made defective, each of a kind
    drawn from ``defect_kinds``; ``max_shift_nm``: largest misalignment per axis.
    48 x 256 x 256 renders in about 2-3 s on one core.
    """
    from scipy.ndimage import binary_dilation, gaussian_filter
    from scipy.spatial import cKDTree
    from skimage.segmentation import find_boundaries

    shape = tuple(int(n) for n in shape)
    voxel = np.asarray(voxel_size, dtype=float)
    if len(shape) != 3 or min(shape) < 1 or voxel.shape != (3,) or voxel.min() <= 0:
        raise ValueError(f"make_volume: shape {shape} / voxel_size {tuple(voxel_size)}")
    if not 0.0 <= defect_fraction <= 1.0:
        raise ValueError(f"make_volume: defect_fraction {defect_fraction} outside [0, 1]")
    unknown = set(defect_kinds) - set(DEFECT_KINDS)
    if unknown or (defect_fraction > 0 and not defect_kinds):
        raise ValueError(f"make_volume: defect_kinds {tuple(defect_kinds)} (from {DEFECT_KINDS})")
    if cell_size_nm <= 0 or elongation <= 0:
        raise ValueError("make_volume: cell_size_nm and elongation must be positive")
    rng = np.random.default_rng(seed)
    nz, ny, nx = shape

    # 1. labels: nearest seed under a metric that divides z by `elongation`
    metric = np.array([1.0 / elongation, 1.0, 1.0])
    extent = np.asarray(shape) * voxel * metric  # metric-space box, cells ~ cell_size_nm across
    margin = cell_size_nm / 2
    box = extent + 2 * margin
    n_seeds = max(2, int(np.ceil(np.prod(box) / cell_size_nm**3)))
    seeds = rng.random((n_seeds, 3)) * box - margin
    tree = cKDTree(seeds)
    warp = cell_size_nm / 4 if warp_nm is None else float(warp_nm)
    step = cell_size_nm / (voxel * metric)  # one warp node per cell size
    warp_y = _smooth_field(rng, shape, step) * warp
    warp_x = _smooth_field(rng, shape, step) * warp
    yy = (np.arange(ny, dtype=np.float32) * voxel[1])[:, None]
    xx = (np.arange(nx, dtype=np.float32) * voxel[2])[None, :]
    labels = np.empty(shape, np.uint64)
    for z in range(nz):
        pts = np.empty((ny, nx, 3), np.float32)
        pts[..., 0] = z * voxel[0] * metric[0]
        pts[..., 1] = yy + warp_y[z]
        pts[..., 2] = xx + warp_x[z]
        _, idx = tree.query(pts.reshape(-1, 3), k=1, workers=1)
        labels[z] = idx.reshape(ny, nx).astype(np.uint64) + np.uint64(1)
    del warp_y, warp_x
    # 2a. caps: where a section's cell differs from the one below (slips carry them, below)
    cap = np.zeros(shape, bool)
    if cap_membranes:
        cap[1:] = labels[1:] != labels[:-1]

    # 5a. defects: which sections, which kind; misaligned sections slip (labels with them)
    n_defects = int(round(defect_fraction * nz))
    defect_z = np.sort(rng.choice(nz, size=n_defects, replace=False)) if n_defects else []
    kinds = list(defect_kinds)
    missing, misaligned = [], {}
    max_shift = np.maximum(1, np.round(max_shift_nm / voxel[1:]).astype(int))
    for z in defect_z:
        kind = kinds[int(rng.integers(len(kinds)))]
        if kind == "missing":
            missing.append(int(z))
        else:
            while True:
                dy = int(rng.integers(-max_shift[0], max_shift[0] + 1))
                dx = int(rng.integers(-max_shift[1], max_shift[1] + 1))
                if dy or dx:
                    break
            misaligned[int(z)] = (dy, dx)
            labels[z] = shift_section(labels[z], dy, dx)
            cap[z] = shift_section(cap[z], dy, dx)

    # 2b. membranes: in-plane label changes, thickened
    membrane = np.empty(shape, bool)
    cross = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool)
    for z in range(nz):
        edge = find_boundaries(labels[z], connectivity=1, mode="thick")
        if membrane_dilation > 0:
            edge = binary_dilation(edge, structure=cross, iterations=int(membrane_dilation))
        membrane[z] = edge

    # 3. intensity: per-cell base grey + low-frequency texture; dark membranes
    base = rng.uniform(*cell_intensity, size=n_seeds + 1).astype(np.float32)
    raw = base[labels]
    texture = rng.standard_normal(shape, dtype=np.float32)
    tex_sigma = np.maximum(texture_scale_nm / voxel, 0.0)
    tex_sigma[0] = min(tex_sigma[0], 1.0)
    texture = gaussian_filter(texture, sigma=tex_sigma)
    texture *= texture_std / max(float(texture.std()), 1e-6)
    raw += texture
    del texture
    cap &= ~membrane
    raw[cap] = 0.5 * (raw[cap] + np.float32(membrane_intensity))
    raw[membrane] = membrane_intensity

    # 4. PSF blur (sigma nm -> voxels) and noise
    sigma = np.asarray(psf_sigma_nm, float) / voxel
    if sigma.max() > 0:
        raw = gaussian_filter(raw, sigma=sigma)
    if noise_std > 0:
        raw += rng.standard_normal(shape, dtype=np.float32) * np.float32(noise_std)

    # 5b. missing sections: black
    for z in missing:
        raw[z] = 0.0
    raw = np.clip(np.rint(raw), 0, 255).astype(np.uint8)
    if zero_membranes:
        labels[membrane | cap] = 0
    if return_info:
        info = {"n_cells": n_seeds, "missing": missing, "misaligned": misaligned}
        return raw, labels, info
    return raw, labels


__all__ = ["DEFECT_KINDS", "affinities", "make_volume", "shift_section"]
