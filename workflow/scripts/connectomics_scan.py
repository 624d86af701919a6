"""Segment one EM volume with one model through one engine, block by block: affinities, fragments
and the segmentation as OME-Zarr, their quality against the volume's labels (when it has them), voxel
throughput, and a figure of one section."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")
import json
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import zarr

from quantscan import apps
from quantscan.apps.connectomics import dataset as cdata
from quantscan.apps.connectomics import scoring
from quantscan.apps.connectomics.app import CHANNELS
from quantscan.apps.connectomics.volumes import open_volume, write_ome_zarr
from quantscan.atomic import atomic_path, write_text
from quantscan.models import build_model
from quantscan.scripting import run


def main(smk, log):
    w = smk.wildcards
    app = apps.get(smk.config, "connectomics")
    s = app.resolved
    spec = dict(smk.params.spec)
    model = build_model(app.arch())
    store = json.loads(open(smk.input.store).read())
    block = tuple(store["block"])
    slabs = [json.loads(open(p).read()) for p in smk.input.slabs]
    infer_s = sum(x["seconds"] for x in slabs)
    affs = zarr.open_group(store["store"], mode="r")["affinities"]
    # out-of-core arrays (volumes of more than max_in_memory voxels), removed at the end
    work = Path(smk.output.metrics).with_name("work.zarr")
    with open_volume(spec) as vol:
        voxel, shape = vol.voxel_size, vol.shape
        in_memory = int(np.prod(shape)) <= smk.params.max_in_memory
        labels = vol.labels
        if labels is not None and in_memory:
            labels = np.asarray(labels[...])
        target = cdata.target_affinities(labels) if labels is not None and in_memory else None
        out = scoring.score_volume(
            None,
            vol.raw,
            target,
            labels,
            model=model,
            block=block,
            segmentation=s["scan"]["segmentation"],
            voxel_size=voxel,
            workdir=work,
            max_in_memory=smk.params.max_in_memory,
            affinities=affs,
            inference_seconds=infer_s,
            threads=smk.threads,
        )
        z = shape[0] // 2
        section = {
            "raw": cdata.normalize(np.asarray(vol.raw[z])),
            "labels": None if labels is None else np.asarray(labels[z]),
        }
    run_voxels = sum(x["voxels"] for x in slabs)
    out["metrics"]["voxels_per_s"] = run_voxels / infer_s if infer_s > 0 else float("nan")
    out["metrics"]["slabs"] = len(slabs)
    m = out["metrics"] | {
        "volume": w.volume,
        "model": w.model,
        "engine": w.engine,
        "shape": list(shape),
        "voxel_size": list(voxel),
        "labels": labels is not None,
        "engine_info": {"kind": w.engine, "threads": smk.threads},
    }
    write_ome_zarr(
        smk.output.affinities,
        out["affinities"],
        voxel,
        name="affinities",
        channels=[f"affinity_{axis}" for axis in CHANNELS],
    )
    write_ome_zarr(smk.output.fragments, out["fragments"], voxel, name="fragments", labels=True)
    write_ome_zarr(
        smk.output.segmentation, out["segmentation"], voxel, name="segmentation", labels=True
    )
    seg_z = np.asarray(out["segmentation"][z]).astype(np.int64)
    panels = [
        ("raw", section["raw"], "gray"),
        ("mean affinity", np.asarray(out["affinities"][:, z]).mean(0), "magma"),
    ]
    rng = np.random.default_rng(0)
    _, seg_z = np.unique(seg_z, return_inverse=True)
    colours = rng.random((int(seg_z.max()) + 1, 3))
    panels.append(("segmentation", colours[seg_z.reshape(section["raw"].shape)], None))
    if section["labels"] is not None:
        lab = np.unique(section["labels"], return_inverse=True)[1].reshape(section["raw"].shape)
        panels.append(("labels", rng.random((lab.max() + 1, 3))[lab], None))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4))
    for ax, (title, img, cmap) in zip(axes, panels, strict=True):
        ax.imshow(img, cmap=cmap, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    quality = f", VOI {m['voi']:.2f} bits, ARAND {m['arand']:.3f}" if labels is not None else ""
    shutil.rmtree(work, ignore_errors=True)
    fig.suptitle(f"{w.volume}: {w.model} / {w.engine}, section {z}{quality}", fontsize=10)
    fig.tight_layout()
    with atomic_path(smk.output.png) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    write_text(smk.output.metrics, json.dumps(m, indent=1, default=float) + "\n")
    log.info(
        "%s %s/%s: %s voxels in %.1f s (%.0f voxels/s), segmented in %.1f s%s",
        w.volume,
        w.model,
        w.engine,
        "x".join(map(str, shape)),
        m["inference_seconds"],
        m["voxels_per_s"],
        m["segmentation_seconds"],
        quality,
    )


run(main, snakemake)
