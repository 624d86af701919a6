"""Affinities and segmentation of a whole volume, block by block, and their quality.

Inference (:func:`predict_volume`): the volume is cut into cores of ``block`` voxels; each is read
with a halo of the U-Net's reach (``UNet3d.halo``) rounded up to its input multiple, reflect-padded
where it leaves the volume and, at the far faces, padded to the same read shape as every other
block, so one engine (and one ONNX graph shape) serves every block and the stitched affinities
equal whole-volume inference. Segmentation (:func:`segment_volume`): per block, watershed
fragments agglomerated at ``threshold`` (Funke et al., TPAMI 2018), then merged across block
faces by their mean affinity (:func:`.blockwise.merge_block_labels`). Quality: voxel metrics of the
affinities (the task's), VOI split/merge in bits (Meila 2007) and the adapted Rand error
(SNEMI3D) against the labels, and the CREMI score.
"""

from __future__ import annotations

import math
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
    return (1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))).astype(np.float32)


def predict_volume(engine, raw, *, block, halo, out=None) -> np.ndarray:
    """Affinity probabilities ``(3, z, y, x)`` float32 of ``raw`` (``(z, y, x)`` float32 in
    [0, 1], numpy or zarr) through ``engine`` (logits of ``(1, 1, *read)`` inputs)."""
    from .blockwise import plan_blocks, predict_blockwise

    shape = tuple(raw.shape)
    full = read_shape(block, halo)
    if out is None:
        out = np.zeros((3, *shape), np.float32)

    def predict(x: np.ndarray) -> np.ndarray:
        pad = [(0, f - s) for s, f in zip(x.shape, full, strict=True)]
        xp = np.pad(x, pad, mode="reflect") if any(a for _, a in pad) else x
        z = engine.logits(np.ascontiguousarray(xp, np.float32)[None, None])[0]
        return _sigmoid(z)[(slice(None), *(slice(0, s) for s in x.shape))]

    mode = "reflect" if all(s > h for s, h in zip(shape, halo, strict=True)) else "edge"
    predict_blockwise(predict, raw, out, plan_blocks(shape, block, halo), pad_mode=mode)
    return out


def segment_volume(affs, *, block, segmentation: Mapping) -> np.ndarray:
    """uint64 segmentation of affinities ``(3, z, y, x)``: per-block fragments agglomerated at
    ``segmentation['threshold']``, merged across block faces (module doc)."""
    from .blockwise import fragments_blockwise, merge_block_labels, plan_blocks
    from .segment import segment

    method = segmentation.get("method", "watershed")
    threshold = float(segmentation.get("threshold", 0.5))
    shape = tuple(affs.shape[1:])
    blocks = plan_blocks(shape, block, 0)
    fragments = np.zeros(shape, np.uint64)
    fragments_blockwise(
        lambda a: segment(a, method=method, threshold=threshold), affs, fragments, blocks
    )
    labels, _ = merge_block_labels(fragments, blocks, affs, threshold)
    return labels


def segmentation_metrics(pred: np.ndarray, labels: np.ndarray, voxel_size=None) -> dict:
    """VOI (bits), adapted Rand error and the CREMI score of ``pred`` against ``labels``
    (label 0 is unknown and ignored)."""
    from .metrics import adapted_rand, cremi_score, voi

    out = {**voi(pred, labels), **adapted_rand(pred, labels)}
    if voxel_size is not None:
        out["cremi_score"] = cremi_score(pred, labels, voxel_size=voxel_size)["cremi"]
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
) -> dict:
    """``{"affinities", "segmentation", "metrics"}`` of one volume through one engine:
    voxels/s of inference, the task's voxel metrics against ``target`` and the segmentation's
    quality against ``labels`` (either may be None)."""
    from ...tasks import get_task
    from . import app

    if raw.ndim != 3:
        raise ConfigError(f"score_volume takes a (z, y, x) volume, got shape {raw.shape}")
    block, halo = geometry(model, block)
    t0 = time.perf_counter()
    affs = predict_volume(engine, raw, block=block, halo=halo)
    infer_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    seg = segment_volume(affs, block=block, segmentation=segmentation)
    segment_s = time.perf_counter() - t1
    voxels = int(np.prod(raw.shape))
    metrics: dict = {
        "voxels": voxels,
        "inference_seconds": infer_s,
        "voxels_per_s": voxels / infer_s if infer_s > 0 else float("nan"),
        "segmentation_seconds": segment_s,
        "block": list(block),
        "halo": list(halo),
    }
    if target is not None:
        task = get_task("affinities")
        metrics.update(task.metrics(target[None], affs[None], list(app.CHANNELS)))
    if labels is not None:
        metrics.update(segmentation_metrics(seg, np.asarray(labels), voxel_size))
    return {"affinities": affs, "segmentation": seg, "metrics": metrics}


__all__ = ["geometry", "predict_volume", "score_volume", "segment_volume", "segmentation_metrics"]
