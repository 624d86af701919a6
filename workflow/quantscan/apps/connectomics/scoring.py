"""Affinities and segmentation of a whole volume, block by block, and their quality.

Inference (:func:`predict_volume`): the volume is cut into cores of ``block`` voxels; each is read
with a halo of the U-Net's reach (``UNet3d.halo``) rounded up to its input multiple, reflect-padded
where it leaves the volume and, at the far faces, padded to the same read shape as every other
block, so one engine (and one ONNX graph shape) serves every block and the stitched affinities
equal whole-volume inference. Segmentation (:func:`segment_volume`): watershed fragments
agglomerated at ``threshold`` by waterz (Funke et al., TPAMI 2018) in one pass over the volume, or
out of core per-block fragments agglomerated over the whole volume's region graph
(:func:`.blockwise.agglomerate_blockwise`). Quality: voxel metrics of the affinities (the task's),
VOI split/merge in bits (Meila 2007) and the adapted Rand error (SNEMI3D) against the labels, the
CREMI score and the boundary F1 of the sections.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence

import numpy as np

from ...errors import ConfigError


def geometry(model, block: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(block, halo) rounded up to the model's input multiple (a U-Net's output is translation
    equivariant only for shifts by that multiple)."""
    multiple = tuple(model.input_multiple()) if hasattr(model, "input_multiple") else (1, 1, 1)
    reach = tuple(model.halo()) if hasattr(model, "halo") else (0, 0, 0)
    block = tuple(math.ceil(b / m) * m for b, m in zip(block, multiple, strict=True))
    halo = tuple(math.ceil(h / m) * m for h, m in zip(reach, multiple, strict=True))
    return block, halo


def read_shape(block: Sequence[int], halo: Sequence[int]) -> tuple[int, ...]:
    return tuple(b + 2 * h for b, h in zip(block, halo, strict=True))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    """Probabilities float32 of logits: scipy's ``expit`` in float32 (no overflow, and 3x faster
    than the float64 formula, which took a quarter of an int8 block's time)."""
    from scipy.special import expit

    return expit(np.asarray(z, dtype=np.float32))


def predict_volume(
    engine, raw, *, block, halo, out=None, slab: tuple[int, int] | None = None, done=None
) -> np.ndarray:
    """Affinity probabilities ``(3, z, y, x)`` float32 of ``raw`` (``(z, y, x)``: float32 in
    [0, 1], or integer intensities scaled to it block by block; numpy, HDF5 or zarr, read one
    block at a time) through ``engine`` (logits of ``(1, 1, *read)`` inputs), written into
    ``out`` (a new numpy array when None, or e.g. a chunked zarr array). ``slab=(k, n)``: only
    the k-th of n runs of blocks (``blockwise.slabs``: one job's share); ``done``: block markers
    (``blockwise.MarkerDir``), so a rerun skips finished blocks."""
    from .blockwise import plan_blocks, predict_blockwise, slabs
    from .dataset import normalize

    shape = tuple(raw.shape)
    full = read_shape(block, halo)
    if out is None:
        out = np.zeros((3, *shape), np.float32)

    def predict(x: np.ndarray) -> np.ndarray:
        x = normalize(x)
        pad = [(0, f - s) for s, f in zip(x.shape, full, strict=True)]
        xp = np.pad(x, pad, mode="reflect") if any(a for _, a in pad) else x
        z = engine.logits(np.ascontiguousarray(xp, np.float32)[None, None])[0]
        return _sigmoid(z[(slice(None), *(slice(0, s) for s in x.shape))])

    mode = "reflect" if all(s > h for s, h in zip(shape, halo, strict=True)) else "edge"
    blocks = plan_blocks(shape, block, halo)
    if slab is not None:
        blocks = slabs(blocks, slab[1])[slab[0]]
    predict_blockwise(predict, raw, out, blocks, pad_mode=mode, done=done)
    return out


def create_store(path, shape, block):
    """A zarr v3 group at ``path`` (replacing it) with an empty ``affinities`` array
    ``(3, *shape)`` float32 in chunks of one block: the target of the slab jobs (block markers in
    ``path/done``)."""
    import zarr

    root = zarr.open_group(str(path), mode="w", zarr_format=3)
    root.create_array(
        "affinities", shape=(3, *shape), chunks=(3, *block), dtype="f4", fill_value=0.0
    )
    return root


def predict_slab(engine, raw, store, *, block, halo, slab: tuple[int, int]) -> dict:
    """One job's share of the blockwise inference into a :func:`create_store` store: the blocks of
    slab ``slab = (k, n)`` that are not marked done; each block's chunk is written, then marked,
    so a killed job leaves no chunk a rerun trusts. Returns ``{blocks, voxels, seconds}``."""
    import zarr

    from .blockwise import MarkerDir, plan_blocks, slabs

    root = zarr.open_group(str(store), mode="r+")
    affs = root["affinities"]
    shape = tuple(int(v) for v in raw.shape)
    if tuple(affs.shape[1:]) != shape:
        raise ConfigError(f"{store}: affinities of {affs.shape[1:]}, not the volume's {shape}")
    done = MarkerDir(os.path.join(str(store), "done"))
    todo = [b for b in slabs(plan_blocks(shape, block, halo), slab[1])[slab[0]]]
    pending = [b for b in todo if not done.is_done(b)]
    t0 = time.perf_counter()
    predict_volume(engine, raw, block=block, halo=halo, out=affs, slab=slab, done=done)
    voxels = sum(int(np.prod([c.stop - c.start for c in b.core])) for b in pending)
    return {
        "blocks": len(todo),
        "blocks_run": len(pending),
        "voxels": voxels,
        "seconds": time.perf_counter() - t0,
    }


def segmentation_options(segmentation: Mapping, voxel_size=None) -> dict:
    """:func:`.segment.fragments_and_segmentation`'s options of the config's
    ``scan.segmentation`` (``method``, ``threshold``, ``scoring``, ``fragments``); the distance
    transform of the fragments' seeds is scaled by ``voxel_size`` (z, y, x) when given."""
    method = segmentation.get("method", "waterz")
    options = {"method": method, "threshold": float(segmentation.get("threshold", 0.5))}
    if method == "waterz":
        options["scoring"] = segmentation.get("scoring", "mean")
        options["fragments"] = segmentation.get("fragments", "distance")
        if voxel_size is not None:
            smallest = min(float(v) for v in voxel_size)
            options["sampling"] = tuple(float(v) / smallest for v in voxel_size)
    return options


#: Blocks of the in-memory fragments (z, y, x voxels; ``scan.segmentation.fragment_block``): a
#: volume larger than one block gets its watershed fragments block by block, with context and
#: linked across faces, in the job's threads, then one agglomeration over the whole volume.
#: Measured on the affinities of a 64 x 512 x 512 volume (benchmarks/em_engines.py's U-Net):
#: 26.0 s as one watershed, 26.5 s in these blocks on 1 thread and 14.4 s on 2, the same ARAND;
#: scikit-image's watershed (its heap) is most of it.
FRAGMENT_BLOCK = (64, 256, 256)


def segment_volume(
    affs,
    *,
    block,
    segmentation: Mapping,
    voxel_size=None,
    fragments=None,
    out=None,
    threads: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """``(fragments, segmentation)``, uint64, of affinities ``(3, z, y, x)``
    (:func:`segmentation_options` of ``segmentation``).

    In memory (``fragments`` and ``out`` None): a volume within one ``fragment_block`` of
    ``segmentation`` (default :data:`FRAGMENT_BLOCK`) is one pass
    (:func:`.segment.fragments_and_segmentation`); a larger one gets its fragments per
    fragment block (:func:`.blockwise.fragments_blockwise`: context, links across faces,
    ``threads`` blocks at a time; the result does not depend on ``threads``), agglomerated
    over the whole volume (:func:`.segment.agglomerate_fragments`, waterz's scorings kept).
    ``components`` are always computed whole (cc3d: fast).

    Out of core (``fragments`` and ``out`` chunked zarr arrays, or any arrays to write into):
    per-block fragments of the scan's ``block`` (:func:`.segment.block_fragments`), then, for
    ``waterz`` and ``watershed``, one mean-affinity agglomeration of all of them over the whole
    volume's region graph (:func:`.blockwise.agglomerate_blockwise`: the in-memory result up to
    the fragments that block faces cut; waterz's quantile scorings are replaced by the mean,
    whose sums add up over blocks exactly); for ``components``, the per-block components
    joined across faces where any face affinity reaches the threshold
    (:func:`.blockwise.merge_block_labels`, exactly the whole volume's components)."""
    from .blockwise import (
        agglomerate_blockwise,
        fragments_blockwise,
        global_fragment_ids,
        merge_block_labels,
        plan_blocks,
    )
    from .segment import agglomerate_fragments, block_fragments, fragments_and_segmentation

    options = segmentation_options(segmentation, voxel_size)
    fragment_options = {k: v for k, v in options.items() if k != "scoring"}
    shape = tuple(affs.shape[1:])
    in_memory = fragments is None and out is None
    if in_memory:
        # one agglomeration over the whole volume. Merging per-block segments across faces by
        # their mean face affinity chains the blocks' own merge errors (measured on the default
        # scan volume: ARAND 0.64 blockwise against 0.14 whole)
        affs = np.asarray(affs)
        fblock = tuple(int(v) for v in segmentation.get("fragment_block", FRAGMENT_BLOCK))
        if options["method"] == "components" or all(
            s <= b for s, b in zip(shape, fblock, strict=True)
        ):
            return fragments_and_segmentation(affs, **options)
        blocks = plan_blocks(shape, fblock, 0)
    else:
        blocks = plan_blocks(shape, block, 0)
    if fragments is None:
        fragments = np.zeros(shape, np.uint64)
    fragments_blockwise(
        lambda a: block_fragments(a, **fragment_options),
        affs,
        fragments,
        blocks,
        workers=threads,
    )
    if in_memory:
        global_fragment_ids(fragments, blocks)
        return agglomerate_fragments(
            affs,
            fragments,
            method=options["method"],
            threshold=options["threshold"],
            scoring=options.get("scoring", "mean"),
        )
    if options["method"] == "components":
        labels, _ = merge_block_labels(
            fragments, blocks, affs, options["threshold"], out=out, reduce="max"
        )
    else:
        labels, _ = agglomerate_blockwise(fragments, blocks, affs, options["threshold"], out=out)
    return fragments, labels


def contingency_blockwise(pred, gt, block, *, ignore_gt=(0,)):
    """The contingency table of ``pred`` against ``gt`` (array-likes read one block at a time),
    summed over blocks: memory grows with the number of distinct (prediction, label) pairs, not
    with the volume."""
    from .blockwise import plan_blocks
    from .metrics import Contingency, contingency

    pairs, counts = [], []
    for b in plan_blocks(tuple(gt.shape), block, 0):
        t = contingency(np.asarray(pred[b.core]), np.asarray(gt[b.core]), ignore_gt=ignore_gt)
        pairs.append(np.stack([t.pred_labels[t.row], t.gt_labels[t.col]], axis=1))
        counts.append(t.counts)
    cells, inv = np.unique(np.concatenate(pairs).astype(np.uint64), axis=0, return_inverse=True)
    total = np.bincount(inv.ravel(), weights=np.concatenate(counts)).astype(np.int64)
    p_labels, row = np.unique(cells[:, 0], return_inverse=True)
    g_labels, col = np.unique(cells[:, 1], return_inverse=True)
    return Contingency(p_labels, g_labels, row.ravel(), col.ravel(), total, int(total.sum()))


def segmentation_metrics(pred, labels, voxel_size=None, *, block=None) -> dict:
    """VOI (bits), adapted Rand error, the CREMI score and the boundary F1 of the sections
    (2 px tolerance, :func:`.metrics.segmentation_boundary_f1`) of ``pred`` against ``labels``
    (label 0 is unknown and ignored, except as a boundary). With ``block``, the arrays are read
    one block at a time (the contingency table summed over blocks) and the CREMI score and the
    boundary F1, which need whole sections, are left out."""
    from .metrics import adapted_rand, cremi_score, segmentation_boundary_f1, voi

    if block is not None:
        t = contingency_blockwise(pred, labels, block)
        out = {**voi(table=t), **adapted_rand(table=t)}
        out["segments"] = int(len(t.pred_labels) - (t.pred_labels[:1] == 0).sum())
        out["true_segments"] = int(len(t.gt_labels))
        return out
    pred, labels = np.asarray(pred), np.asarray(labels)
    out = {**voi(pred, labels), **adapted_rand(pred, labels)}
    if voxel_size is not None:
        out["cremi_score"] = cremi_score(pred, labels, voxel_size=voxel_size)["cremi"]
    out |= segmentation_boundary_f1(pred, labels, tolerance=2.0)
    known = labels > 0
    out["segments"] = int(len(np.unique(pred[known & (pred > 0)])))  # on labelled voxels
    out["true_segments"] = int(len(np.unique(labels[labels > 0])))
    return out


def score_volume(
    engine,
    raw: np.ndarray,
    target: np.ndarray | None,
    labels: np.ndarray | None,
    *,
    model,
    block: Sequence[int],
    segmentation: Mapping,
    voxel_size=None,
    workdir=None,
    max_in_memory: int = 200_000_000,
    affinities=None,
    inference_seconds: float | None = None,
    threads: int = 1,
) -> dict:
    """``{"affinities", "fragments", "segmentation", "metrics"}`` of one volume through one
    engine:
    voxels/s of inference, the task's voxel metrics against ``target`` and the segmentation's
    quality against ``labels`` (either may be None).

    A volume of more than ``max_in_memory`` voxels is processed out of core: ``raw`` and
    ``labels`` are read one block at a time (HDF5 or zarr arrays) and the affinities, fragments
    and segmentation are chunked zarr v3 arrays (one chunk per block) under ``workdir``; the
    voxel metrics of the affinities are then left out. ``affinities``: predicted already (the
    slab jobs' store), with their ``inference_seconds``. ``threads``: the segmentation's
    (:func:`segment_volume`)."""
    from ...tasks import get_task
    from . import app

    if len(raw.shape) != 3:
        raise ConfigError(f"score_volume takes a (z, y, x) volume, got shape {raw.shape}")
    block, halo = geometry(model, block)
    shape = tuple(int(v) for v in raw.shape)
    chunked = int(np.prod(shape)) > max_in_memory
    affs = fragments = seg = None
    if chunked:
        import zarr

        if workdir is None:
            raise ConfigError(
                f"a volume of {int(np.prod(shape)):,} voxels (more than {max_in_memory:,}) is "
                "processed out of core and needs a work directory"
            )
        root = zarr.open_group(str(workdir), mode="w", zarr_format=3)
        if affinities is None:
            affs = root.create_array(
                "affinities", shape=(3, *shape), chunks=(3, *block), dtype="f4"
            )
        fragments = root.create_array("fragments", shape=shape, chunks=block, dtype="u8")
        seg = root.create_array("segmentation", shape=shape, chunks=block, dtype="u8")
        target = None  # voxel metrics need the whole target in memory
    if affinities is not None:
        affs = affinities if chunked else np.asarray(affinities[...])
        infer_s = float(inference_seconds or 0.0)
    else:
        t0 = time.perf_counter()
        affs = predict_volume(engine, raw, block=block, halo=halo, out=affs)
        infer_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    fragments, seg = segment_volume(
        affs,
        block=block,
        segmentation=segmentation,
        voxel_size=voxel_size,
        fragments=fragments,
        out=seg,
        threads=threads,
    )
    segment_s = time.perf_counter() - t1
    voxels = int(np.prod(raw.shape))
    metrics: dict = {
        "voxels": voxels,
        "inference_seconds": infer_s,
        "voxels_per_s": voxels / infer_s if infer_s > 0 else float("nan"),
        "segmentation_seconds": segment_s,
        "block": list(block),
        "halo": list(halo),
        "out_of_core": chunked,
    }
    if target is not None:
        task = get_task("affinities")
        metrics.update(task.metrics(target[None], affs[None], list(app.CHANNELS)))
    if labels is not None:
        if chunked:
            metrics.update(segmentation_metrics(seg, labels, block=block))
        else:
            metrics.update(segmentation_metrics(seg, np.asarray(labels), voxel_size))
    return {"affinities": affs, "fragments": fragments, "segmentation": seg, "metrics": metrics}


__all__ = [
    "FRAGMENT_BLOCK",
    "contingency_blockwise",
    "create_store",
    "predict_slab",
    "geometry",
    "predict_volume",
    "score_volume",
    "segment_volume",
    "segmentation_metrics",
    "segmentation_options",
]
