"""Write one split file of an application whose data the engine makes (App.make_split)."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")
from quantscan import apps
from quantscan.data import save_split
from quantscan.scripting import run
from quantscan.seeds import derive_seed


def main(smk, log):
    w = smk.wildcards
    app = apps.get(smk.config, w.app)
    seed = derive_seed(smk.params.seed, "data", w.app, w.dataset, w.split)
    x, y = app.make_split(w.dataset, w.split, seed)
    save_split(smk.output[0], x, y)
    log.info("%s/%s %s: %d inputs %s", w.app, w.dataset, w.split, len(y), x.shape[1:])


run(main, snakemake)
