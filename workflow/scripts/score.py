"""The generic scan: class probabilities of every input of an application's scan input file, by
one runtime engine and model (TSV: id, p_<class> per class, predicted)."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")
import pandas as pd

from quantscan import apps
from quantscan.atomic import atomic_path
from quantscan.runtime import make_engine
from quantscan.scripting import run


def main(smk, log):
    app = apps.get(smk.config, smk.wildcards.app)
    ids, x = app.read_scan_input(smk.input.windows)
    engine = make_engine(smk.wildcards.engine, smk.input.model, threads=smk.threads)
    proba = engine.predict_proba(x)
    names = list(smk.params.class_names)
    table = pd.DataFrame({"id": list(ids)})
    for i, name in enumerate(names):
        table[f"p_{name}"] = proba[:, i]
    table["predicted"] = [names[k] for k in proba.argmax(1)]
    with atomic_path(smk.output[0]) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    log.info("%d inputs scored by %s (%s)", len(table), engine.name, smk.input.model)


run(main, snakemake)
