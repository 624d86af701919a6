"""Segmentation metrics of EM neuron reconstructions: VOI split / merge, adapted Rand error, the
CREMI score and boundary F1 (of membrane maps or of segmentations, per 2-D section).

Conventions (``X`` = the prediction / reconstruction, ``Y`` = the ground truth):

- **Variation of information** (Meilă, "Comparing clusterings - an information based distance",
  J. Multivariate Analysis 2007; used for EM by Nunez-Iglesias et al., "Machine learning of
  hierarchical clustering to segment 2D and 3D images", PLoS ONE 2013): ``VOI = H(X|Y) + H(Y|X)``
  with **split = H(X|Y)** (over-segmentation: one GT segment cut into several predicted ones) and
  **merge = H(Y|X)** (under-segmentation), in **bits** (log2), as CREMI reports them.
- **Adapted Rand error** (Arganda-Carreras et al., "Crowdsourcing the creation of image
  segmentation algorithms for connectomics", Front. Neuroanat. 2015, the SNEMI3D challenge):
  precision = pairs of voxels together in both / pairs together in the prediction, recall = pairs
  together in both / pairs together in the GT, ``ARAND = 1 - F1``. GT label 0 is excluded and
  predicted 0 voxels count as singletons. A "pair" is two distinct voxels (``n (n - 1) / 2``
  for a segment of ``n`` voxels; SNEMI3D's script squares sizes instead, a difference of order
  1 / segment size). scikit-image's ``adapted_rand_error`` returns the same error but with
  precision and recall swapped relative to these names (scikit-image issue #6485).
- **CREMI score** (MICCAI 2016 CREMI challenge, cremi.org): ``sqrt(VOI_total x ARAND)``, GT voxels
  within 25 nm of a label boundary (per 2-D section) ignored.

Everything is computed from a sparse contingency table (``np.unique`` of voxel label pairs), so
memory grows with the number of voxels and of non-empty table cells, never with
``n_labels x n_labels``: a 64 x 512 x 512 uint64 volume needs a few hundred MB at most.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = [
    "Contingency",
    "contingency",
    "voi",
    "adapted_rand",
    "border_mask",
    "cremi_score",
    "boundary_map",
    "boundary_f1",
    "segmentation_boundary_f1",
]


@dataclass(frozen=True)
class Contingency:
    """Sparse contingency table ``n_ij`` of a prediction (rows) against a ground truth (columns)
    over the counted voxels.

    Cell ``k`` holds ``counts[k]`` voxels with prediction label ``pred_labels[row[k]]`` and GT
    label ``gt_labels[col[k]]``; ``pred_labels`` and ``gt_labels`` are sorted and unique; ``n``
    is the number of counted voxels. Only non-empty cells are stored.
    """

    pred_labels: np.ndarray
    gt_labels: np.ndarray
    row: np.ndarray
    col: np.ndarray
    counts: np.ndarray
    n: int

    @property
    def pred_sizes(self) -> np.ndarray:
        """Voxels of each ``pred_labels`` segment among the counted voxels."""
        return np.bincount(self.row, weights=self.counts, minlength=len(self.pred_labels))

    @property
    def gt_sizes(self) -> np.ndarray:
        """Voxels of each ``gt_labels`` segment among the counted voxels."""
        return np.bincount(self.col, weights=self.counts, minlength=len(self.gt_labels))


def contingency(
    pred: np.ndarray,
    gt: np.ndarray,
    *,
    ignore_gt: Sequence[int] = (0,),
    mask: np.ndarray | None = None,
) -> Contingency:
    """The sparse contingency table of ``pred`` (X) against ``gt`` (Y).

    Voxels whose GT label is in ``ignore_gt`` or where ``mask`` is True are not counted. Labels
    may be any integer dtype (uint64 included); they are compacted with ``np.unique`` so the
    pair keys fit an int64. Peak memory is a few int64 copies of the counted voxels.
    """
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} != ground-truth shape {gt.shape}")
    keep = np.ones(gt.shape, dtype=bool) if mask is None else ~np.asarray(mask, dtype=bool)
    for label in ignore_gt:
        keep &= gt != label
    p = pred[keep]
    g = gt[keep]
    del keep
    p_labels, p_inv = np.unique(p, return_inverse=True)
    del p
    g_labels, g_inv = np.unique(g, return_inverse=True)
    del g
    n_g = max(len(g_labels), 1)
    key = p_inv.astype(np.int64).ravel() * n_g
    del p_inv
    key += g_inv.astype(np.int64).ravel()
    del g_inv
    cells, counts = np.unique(key, return_counts=True)
    n = int(key.size)
    del key
    return Contingency(
        pred_labels=p_labels,
        gt_labels=g_labels,
        row=cells // n_g,
        col=cells % n_g,
        counts=counts.astype(np.int64),
        n=n,
    )


def _table(pred, gt, ignore_gt, mask, table) -> Contingency:
    return table if table is not None else contingency(pred, gt, ignore_gt=ignore_gt, mask=mask)


def voi(
    pred: np.ndarray | None = None,
    gt: np.ndarray | None = None,
    *,
    ignore_gt: Sequence[int] = (0,),
    mask: np.ndarray | None = None,
    zero_singletons: bool = False,
    table: Contingency | None = None,
) -> dict[str, float]:
    """Variation of information of ``pred`` (X) against ``gt`` (Y) in bits.

    Returns ``{"voi_split": H(X|Y), "voi_merge": H(Y|X), "voi": their sum}``. Cutting one GT
    segment in two raises ``voi_split`` only; merging two GT segments raises ``voi_merge`` only.
    GT labels in ``ignore_gt`` (default 0) and voxels where ``mask`` is True are not counted
    (or pass a precomputed ``table``). The predicted label 0 is an ordinary segment (as in
    CREMI's evaluation) unless ``zero_singletons``, which makes each predicted-0 voxel its own
    segment.

    Equals ``skimage.metrics.variation_of_information(gt, pred, ignore_labels=[0])``: for that
    argument order scikit-image returns [H(pred|gt), H(gt|pred)] = [split, merge], and version
    0.26 computes them in bits (``np.log2``), like this function.
    """
    t = _table(pred, gt, ignore_gt, mask, table)
    if t.n == 0:
        return {"voi_split": 0.0, "voi_merge": 0.0, "voi": 0.0}
    counts = t.counts.astype(np.float64)
    gt_sizes = t.gt_sizes[t.col]
    pred_sizes = t.pred_sizes[t.row]
    split_terms = counts * np.log2(gt_sizes / counts)  # n_ij log2(n_j / n_ij)
    merge_terms = counts * np.log2(pred_sizes / counts)  # n_ij log2(n_i / n_ij)
    if zero_singletons:
        zero = t.pred_labels[t.row] == 0
        # a singleton voxel of GT segment j: p_ij = p_i = 1/n, so it adds (1/n) log2(n_j) to
        # H(X|Y) and nothing to H(Y|X)
        split_terms[zero] = counts[zero] * np.log2(gt_sizes[zero])
        merge_terms[zero] = 0.0
    split = max(float(split_terms.sum()) / t.n, 0.0)
    merge = max(float(merge_terms.sum()) / t.n, 0.0)
    return {"voi_split": split, "voi_merge": merge, "voi": split + merge}


def adapted_rand(
    pred: np.ndarray | None = None,
    gt: np.ndarray | None = None,
    *,
    ignore_gt: Sequence[int] = (0,),
    mask: np.ndarray | None = None,
    table: Contingency | None = None,
) -> dict[str, float]:
    """Adapted Rand error of ``pred`` against ``gt`` with the SNEMI3D names.

    Returns ``{"arand": 1 - F1, "arand_precision": pairs together in both / pairs together in
    the prediction, "arand_recall": pairs together in both / pairs together in the GT}``.
    GT labels in ``ignore_gt`` (default 0) and voxels where ``mask`` is True are not counted
    (or pass a precomputed ``table``); predicted-0 voxels are singletons (they form no pair).
    A ratio with no pairs in its denominator is 1 (nothing to get wrong).

    ``arand`` equals ``skimage.metrics.adapted_rand_error(gt, pred, ignore_labels=(0,))[0]``
    when ``pred`` has no 0 inside the counted voxels; scikit-image's second and third values are
    this function's recall and precision, in that order.
    """
    t = _table(pred, gt, ignore_gt, mask, table)
    counts = t.counts.astype(np.float64)
    counts[t.pred_labels[t.row] == 0] = 0.0  # singletons: no pairs, and not in any segment
    both = float(np.sum(counts * (counts - 1).clip(0)))  # 2 x pairs together in both
    pred_sizes = np.bincount(t.row, weights=counts, minlength=len(t.pred_labels))
    in_pred = float(np.sum(pred_sizes * (pred_sizes - 1).clip(0)))
    gt_sizes = t.gt_sizes
    in_gt = float(np.sum(gt_sizes * (gt_sizes - 1)))
    precision = both / in_pred if in_pred > 0 else 1.0
    recall = both / in_gt if in_gt > 0 else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"arand": 1.0 - f1, "arand_precision": precision, "arand_recall": recall}


def border_mask(
    gt: np.ndarray,
    voxel_size: Sequence[float],
    border_nm: float = 25.0,
) -> np.ndarray:
    """True at the GT voxels within ``border_nm`` of a label boundary, per 2-D section.

    The CREMI evaluation (cremi_python ``create_border_mask``) ignores these voxels: in every
    z-section a pixel is a boundary pixel when one of its 4 neighbours has another label (the
    image edge is not a boundary), and every pixel whose Euclidean distance (in nm, using the
    in-plane voxel size) to a boundary pixel is at most ``border_nm`` is masked, the boundary
    pixels included. ``gt`` is (Z, Y, X) or (Y, X); ``voxel_size`` is (z, y, x) or (y, x) in nm.
    """
    gt = np.asarray(gt)
    sampling = tuple(float(v) for v in voxel_size)[-2:]
    sections = gt[None] if gt.ndim == 2 else gt
    out = np.zeros(sections.shape, dtype=bool)
    for z, section in enumerate(sections):
        padded = np.pad(section, 1, mode="edge")
        interior = (
            (section == padded[:-2, 1:-1])
            & (section == padded[2:, 1:-1])
            & (section == padded[1:-1, :-2])
            & (section == padded[1:-1, 2:])
        )
        if interior.all():
            continue
        dist = ndimage.distance_transform_edt(interior, sampling=sampling)
        out[z] = dist <= border_nm
    return out[0] if gt.ndim == 2 else out


def cremi_score(
    pred: np.ndarray,
    gt: np.ndarray,
    *,
    voxel_size: Sequence[float] | None = None,
    border_nm: float | None = 25.0,
    ignore_gt: Sequence[int] = (0,),
) -> dict[str, float]:
    """The CREMI neuron score ``sqrt(VOI_total x ARAND)`` with its parts.

    When ``voxel_size`` (nm, z-y-x) is given and ``border_nm`` is positive, GT voxels within
    ``border_nm`` of a label boundary in their section are ignored (:func:`border_mask`);
    otherwise every voxel with a GT label outside ``ignore_gt`` counts. Returns the keys of
    :func:`voi` and :func:`adapted_rand` plus ``cremi`` and ``n_voxels`` (the counted voxels).
    VOI is in bits; the predicted label 0 is an ordinary segment for VOI and singletons for ARAND.
    """
    mask = None
    if voxel_size is not None and border_nm:
        mask = border_mask(gt, voxel_size, border_nm)
    t = contingency(pred, gt, ignore_gt=ignore_gt, mask=mask)
    out = voi(table=t)
    out.update(adapted_rand(table=t))
    out["cremi"] = float(np.sqrt(out["voi"] * out["arand"]))
    out["n_voxels"] = t.n
    return out


def boundary_map(labels: np.ndarray) -> np.ndarray:
    """Membrane map of a label image: True where a 4-neighbour in the same 2-D section has another
    label (both sides of the boundary), per section for (Z, Y, X) input."""
    labels = np.asarray(labels)
    out = np.zeros(labels.shape, dtype=bool)
    for ax in (-1, -2):
        a = [slice(None)] * labels.ndim
        b = [slice(None)] * labels.ndim
        a[ax] = slice(1, None)
        b[ax] = slice(None, -1)
        diff = labels[tuple(a)] != labels[tuple(b)]
        out[tuple(a)] |= diff
        out[tuple(b)] |= diff
    return out


def boundary_f1(
    pred: np.ndarray,
    gt: np.ndarray,
    *,
    tolerance: float = 2.0,
    threshold: float = 0.5,
) -> dict[str, float]:
    """Boundary precision, recall and F1 of 2-D membrane maps within a pixel tolerance.

    ``pred`` and ``gt`` are boolean membrane maps (True = boundary) or probabilities (boundary
    where ``> threshold``), (Y, X) or a (Z, Y, X) stack evaluated section by section and pooled.
    Precision is the share of predicted boundary pixels within ``tolerance`` pixels (Euclidean)
    of a GT boundary pixel, recall the share of GT boundary pixels within ``tolerance`` of a
    predicted one: the tolerance-based boundary measure of Martin et al. ("Learning to detect
    natural image boundaries using local brightness, color, and texture cues", TPAMI 2004)
    without their one-to-one matching. A side with no boundary pixels scores 1.
    """
    p = np.asarray(pred)
    g = np.asarray(gt)
    if p.shape != g.shape:
        raise ValueError(f"prediction shape {p.shape} != ground-truth shape {g.shape}")
    p = p if p.dtype == bool else p > threshold
    g = g if g.dtype == bool else g > threshold
    if p.ndim == 2:
        p, g = p[None], g[None]
    tp_p = tp_g = n_p = n_g = 0
    for ps, gs in zip(p, g, strict=True):
        n_p += int(ps.sum())
        n_g += int(gs.sum())
        if ps.any() and gs.any():
            d_to_g = ndimage.distance_transform_edt(~gs)
            d_to_p = ndimage.distance_transform_edt(~ps)
            tp_p += int(np.count_nonzero(d_to_g[ps] <= tolerance))
            tp_g += int(np.count_nonzero(d_to_p[gs] <= tolerance))
    precision = tp_p / n_p if n_p else 1.0
    recall = tp_g / n_g if n_g else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"boundary_precision": precision, "boundary_recall": recall, "boundary_f1": f1}


def segmentation_boundary_f1(
    pred: np.ndarray,
    gt: np.ndarray,
    *,
    tolerance: float = 2.0,
) -> dict[str, float]:
    """Boundary precision, recall and F1 of a segmentation against GT labels, per 2-D section.

    The boundaries of both label volumes are :func:`boundary_map`'s (pixels with a 4-neighbour of
    another label in their section, both sides; a GT label 0, e.g. ISBI 2012 / the synthetic
    volumes' membranes, is a label like any other, so a membrane band is boundary), matched
    within ``tolerance`` pixels by :func:`boundary_f1` and pooled over sections: the
    tolerance-based boundary evaluation of 2-D membrane data (ISBI 2012, BSDS) for a 3-D
    segmentation read section by section. ``pred`` and ``gt`` are (Y, X) or (Z, Y, X).
    """
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} != ground-truth shape {gt.shape}")
    return boundary_f1(boundary_map(pred), boundary_map(gt), tolerance=tolerance)
