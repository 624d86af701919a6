"""Split files of the connectomics application: augmented training and validation patches with
affinity targets, the whole test volume with its labels, and (synthetic source) the scan volume
as a CREMI-layout HDF5 file, read back like a user's volume."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")
import h5py
import numpy as np

from quantscan import apps
from quantscan.apps.connectomics import dataset as cdata
from quantscan.atomic import atomic_path
from quantscan.data import save_split
from quantscan.models import build_model
from quantscan.scripting import run
from quantscan.seeds import derive_seed


def main(smk, log):
    app = apps.get(smk.config, "connectomics")
    s, seed = app.resolved, smk.params.seed
    d = s["data"]
    multiple = build_model(app.arch()).input_multiple()
    raw, labels, voxel = cdata.load_volume(s, "train", seed)
    ranges = cdata.split_ranges(raw.shape[0], d["patch"][0])
    for split in ("train", "val"):
        x, y = cdata.patches(
            raw,
            labels,
            d["patch"],
            d["patches"][split],
            derive_seed(seed, "connectomics_patches", split),
            z_range=ranges[split],
            options=d["augment"],
        )
        save_split(smk.output[split], x, y)
        known = (y >= 0).mean()
        log.info(
            "%s: %d patches %s from sections %s of the training volume %s (%.3g nm), "
            "%.1f %% of affinities known, %.1f %% of known ones 1",
            split,
            len(x),
            tuple(d["patch"]),
            ranges[split],
            raw.shape,
            voxel[0],
            100 * known,
            100 * (y == 1).sum() / max(1, (y >= 0).sum()),
        )
    raw, labels, voxel = cdata.load_volume(s, "test", seed)
    raw = cdata.crop_to_multiple(raw, multiple)
    labels = cdata.crop_to_multiple(labels, multiple)
    x = cdata.normalize(raw)[None, None]
    y = cdata.target_affinities(labels)[None]
    with atomic_path(smk.output.test) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(
            fh, x=x, y=y, labels=labels.astype(np.uint64), voxel_size=np.asarray(voxel)
        )
    log.info(
        "test: the whole test volume %s, %d labelled objects", raw.shape, len(np.unique(labels)) - 1
    )
    if smk.output.get("scan"):
        raw, labels, voxel = cdata.load_volume(s, "scan", seed, "synthetic")
        with atomic_path(smk.output.scan) as tmp, h5py.File(tmp, "w") as f:
            for name, arr in (("volumes/raw", raw), ("volumes/labels/neuron_ids", labels)):
                ds = f.create_dataset(name, data=arr, chunks=True, compression="gzip")
                ds.attrs["resolution"] = list(voxel)
                ds.attrs["offset"] = [0.0, 0.0, 0.0]
        log.info("scan volume %s (CREMI layout) -> %s", raw.shape, smk.output.scan)


run(main, snakemake)
