"""The connectomics application's settings (``apps.connectomics`` in the config): defaults, types
and cross-key checks, with errors that name the key.

The engine's schema checks the generic layout (``data``, ``model``, ``train``, ``compress``,
``scan``); the keys below are this application's own and are checked here, when the workflow is
parsed, before any job runs.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

from ...errors import ConfigError
from .scoring import FRAGMENT_BLOCK

#: defaults of ``apps.connectomics`` (merged under the user's section)
DEFAULTS = {
    "data": {
        # synthetic: seeded anisotropic EM (quantscan.apps.connectomics.synthetic), or volumes:
        # the files under 'volumes'
        "source": "synthetic",
        "voxel_size": [40.0, 4.0, 4.0],
        "synthetic": {
            "train": [32, 128, 128],
            "test": [16, 128, 128],
            "scan": [32, 256, 256],
            "defect_fraction": 0.1,
        },
        # volumes: {train: spec, test: spec, scan: [spec, ...]}; a spec is
        # quantscan.apps.connectomics.volumes.open_volume's (path, raw, labels, format, voxel_size,
        # scale, membrane_labels)
        "volumes": {},
        "patch": [8, 64, 64],
        "patches": {"train": 160, "val": 32},
        # missing: probability that a patch's section is blanked (a missing section, targets
        # kept): without it, a U-Net cuts every object at a missing section
        # misalign: probability that a section slips (image and labels, targets recomputed)
        "augment": {
            "flip": True,
            "transpose": True,
            "intensity": 0.1,
            "missing": 0.05,
            "misalign": 0.05,
        },
    },
    "scan": {
        "block": [16, 128, 128],
        "models": [],  # empty: fp32 and every compression method
        # int8 methods: ONNX Runtime's QDQ model and the same network quantized in PyTorch
        # (fbgemm's direct int8 Conv3d kernels, several times faster on CPUs)
        "engines": {
            "fp32": ["torch_fp32", "onnx_fp32"],
            "packed": ["packed_torch"],
            "int8": ["onnx_int8", "torch_int8"],
        },
        # waterz (default): fragments agglomerated by waterz while their boundary affinity
        # (scoring: mean or quantile10..95) is >= threshold; watershed: the numpy / scikit-image
        # fallback (split fragments, mean agglomeration); components: thresholded affinities.
        # fragments (waterz): distance (seeded watershed on the boundary distance, scaled by the
        # voxel size) or waterz (its own affinity watershed). The threshold was chosen on the
        # training volume (docs/connectomics.md)
        "segmentation": {
            "method": "waterz",
            "threshold": 0.45,
            "scoring": "mean",
            "fragments": "distance",
            # in memory, a volume larger than this (z, y, x) gets its fragments block by block
            # (context, links across faces, the job's threads), then one agglomeration
            "fragment_block": list(FRAGMENT_BLOCK),
        },
        "slabs": 2,  # jobs sharing one volume's blockwise inference
        "threads": 1,
    },
}


def _merge(base: dict, over: Mapping) -> dict:
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict) and k != "volumes":
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _triple(value, key: str, *, integer: bool) -> list:
    kind = int if integer else (int, float)
    if (
        not isinstance(value, list | tuple)
        or len(value) != 3
        or not all(isinstance(v, kind) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        what = "positive integers" if integer else "positive numbers"
        raise ConfigError(f"config key {key}: {value!r} is not three {what} (z, y, x)")
    return list(value)


def resolve(settings: Mapping) -> dict:
    """The section with defaults filled in, checked; raises ConfigError naming the key."""
    s = _merge(DEFAULTS, {k: settings[k] for k in ("data", "scan") if k in settings})
    s = {**dict(settings), "data": s["data"], "scan": s["scan"]}
    d, key = s["data"], "apps.connectomics.data"
    if d["source"] not in ("synthetic", "volumes"):
        raise ConfigError(f"config key {key}.source: {d['source']!r} is not synthetic or volumes")
    _triple(d["voxel_size"], f"{key}.voxel_size", integer=False)
    patch = _triple(d["patch"], f"{key}.patch", integer=True)
    for split in ("train", "test", "scan"):
        shape = _triple(d["synthetic"][split], f"{key}.synthetic.{split}", integer=True)
        if split != "scan" and any(s_ < p for s_, p in zip(shape, patch, strict=True)):
            raise ConfigError(
                f"config key {key}.synthetic.{split}: {shape} is smaller than one patch {patch}"
            )
    for split in ("train", "val"):
        n = d["patches"].get(split)
        if not isinstance(n, int) or n < 1:
            raise ConfigError(f"config key {key}.patches.{split}: {n!r} is not a positive integer")
    for name in ("intensity", "missing", "misalign"):
        v = d["augment"].get(name, 0.0)
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v < 1:
            raise ConfigError(f"config key {key}.augment.{name}: {v!r} is not in [0, 1)")
    if d["source"] == "volumes":
        vols = d["volumes"]
        for split in ("train", "test"):
            if not isinstance(vols.get(split), Mapping) or "path" not in vols[split]:
                raise ConfigError(
                    f"config key {key}.volumes.{split}: source 'volumes' needs a volume spec "
                    "with 'path' (and 'raw', 'labels', 'voxel_size')"
                )
            if not vols[split].get("labels"):
                raise ConfigError(
                    f"config key {key}.volumes.{split}.labels: training and testing need labels"
                )
        scans = vols.get("scan", [])
        if not isinstance(scans, list) or not all(
            isinstance(v, Mapping) and "path" in v and "name" in v for v in scans
        ):
            raise ConfigError(
                f"config key {key}.volumes.scan: a list of volume specs with 'name' and 'path'"
            )
    sc, skey = s["scan"], "apps.connectomics.scan"
    _triple(sc["block"], f"{skey}.block", integer=True)
    seg = sc["segmentation"]
    if seg.get("method", "waterz") not in ("waterz", "watershed", "components"):
        raise ConfigError(
            f"config key {skey}.segmentation.method: {seg.get('method')!r} is not waterz, "
            "watershed or components"
        )
    from .segment import WATERZ_SCORING

    if seg.get("scoring", "mean") not in WATERZ_SCORING:
        raise ConfigError(
            f"config key {skey}.segmentation.scoring: {seg.get('scoring')!r} is not mean or "
            "quantile10 ... quantile95 (steps of 5)"
        )
    if seg.get("fragments", "distance") not in ("distance", "waterz"):
        raise ConfigError(
            f"config key {skey}.segmentation.fragments: {seg.get('fragments')!r} is not "
            "distance or waterz"
        )
    if "fragment_block" in seg:
        _triple(seg["fragment_block"], f"{skey}.segmentation.fragment_block", integer=True)
    thr = seg.get("threshold", 0.5)
    if isinstance(thr, bool) or not isinstance(thr, int | float) or not 0 < thr < 1:
        raise ConfigError(f"config key {skey}.segmentation.threshold: {thr!r} is not in (0, 1)")
    known = {"torch_fp32", "onnx_fp32"}
    for kind, allowed in (
        ("fp32", known),
        ("packed", {"packed_torch", "torch_fp32"}),
        ("int8", {"onnx_int8", "torch_int8"}),
    ):
        bad = [e for e in sc["engines"].get(kind, []) if e not in allowed]
        if bad:
            raise ConfigError(
                f"config key {skey}.engines.{kind}: {bad}; choose from {sorted(allowed)}"
            )
    if not isinstance(sc["slabs"], int) or sc["slabs"] < 1:
        raise ConfigError(f"config key {skey}.slabs: {sc['slabs']!r} is not a positive integer")
    return s


__all__ = ["DEFAULTS", "resolve"]
