"""Create the chunked zarr v3 store that the slab jobs of one (volume, model, engine) write their
blocks' affinities into (replacing an older one with its block markers)."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")
import json
from pathlib import Path

from quantscan import apps
from quantscan.apps.connectomics import scoring
from quantscan.apps.connectomics.volumes import open_volume
from quantscan.atomic import write_text
from quantscan.models import build_model
from quantscan.scripting import run


def main(smk, log):
    app = apps.get(smk.config, "connectomics")
    block, halo = scoring.geometry(build_model(app.arch()), app.resolved["scan"]["block"])
    with open_volume(dict(smk.params.spec)) as vol:
        shape = vol.shape
    store = Path(smk.output.json).with_name("affinities.zarr")
    scoring.create_store(store, shape, block)
    info = {"store": str(store), "shape": list(shape), "block": list(block), "halo": list(halo)}
    write_text(smk.output.json, json.dumps(info, indent=1) + "\n")
    log.info(
        "store %s: affinities of %s voxels in blocks of %s (halo %s)", store, shape, block, halo
    )


run(main, snakemake)
