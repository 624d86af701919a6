"""One slab of blocks of the blockwise U-Net inference: each block's affinities (read with its halo)
into the shared zarr store, then its done-marker; blocks already marked are skipped, so a killed
job's rerun does only what is left."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")
import json

from quantscan import apps
from quantscan.apps.connectomics import scoring
from quantscan.apps.connectomics.volumes import open_volume
from quantscan.atomic import write_text
from quantscan.models import build_model
from quantscan.runtime import make_engine
from quantscan.scripting import run


def main(smk, log):
    w = smk.wildcards
    app = apps.get(smk.config, "connectomics")
    store = json.loads(open(smk.input.store).read())
    block, halo = tuple(store["block"]), tuple(store["halo"])
    engine = make_engine(
        w.engine,
        smk.input.model,
        batch_size=1,
        threads=smk.threads,
        input_shape=(1, *scoring.read_shape(block, halo)),
        input_dtypes=("float32",),
    )
    build_model(app.arch())  # the arch is checked before any block runs
    slab = (int(w.slab), int(smk.params.slabs))
    with open_volume(dict(smk.params.spec)) as vol:
        out = scoring.predict_slab(
            engine, vol.raw, store["store"], block=block, halo=halo, slab=slab
        )
    write_text(smk.output.json, json.dumps(out | {"slab": list(slab)}, indent=1) + "\n")
    log.info(
        "%s %s/%s slab %d/%d: %d of %d blocks run, %d voxels in %.1f s",
        w.volume,
        w.model,
        w.engine,
        slab[0],
        slab[1],
        out["blocks_run"],
        out["blocks"],
        out["voxels"],
        out["seconds"],
    )


run(main, snakemake)
