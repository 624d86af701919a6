"""Evaluate an application's fp32 model on its test split (and extra single-class test sets) into
metrics.json, with the size columns of the fp32 baseline."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")
from quantscan import apps, modelio
from quantscan.atomic import write_text
from quantscan.compress.cost import bits_per_layer
from quantscan.compress.methods import score_suffix
from quantscan.scripting import run
from quantscan.summary import metrics_json


def main(smk, log):
    app = apps.get(smk.config, smk.wildcards.app)
    extra = dict(zip(smk.params.extra_test_names, smk.input.extra_tests, strict=True))
    metrics = app.evaluate(smk.input.model, smk.input.test, extra, smk.threads)
    model, arch = modelio.load_fp32(smk.input.model)
    metrics.update(
        scenario=smk.wildcards.dataset,
        method="fp32",
        model_bits=32 * modelio.n_parameters(model),
        file_bytes=modelio.file_bytes(smk.input.model),
        size_pct=100.0,
        bits_per_layer=bits_per_layer(model),
        arch=arch,
    )
    write_text(smk.output.metrics, metrics_json(metrics))
    log.info("accuracy %.4f%s", metrics["accuracy"], score_suffix(metrics))


run(main, snakemake)
