"""Evaluate the fp32 viral model on the test split (windows and records) plus a length-only
baseline, into a metrics.json like the sweeps one."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")
from quantscan import modelio
from quantscan.atomic import write_text
from quantscan.scripting import run
from quantscan.summary import metrics_json
from quantscan.viral import classify, dataset


def main(smk, log):
    engine = classify.load_engine(smk.input.model, threads=smk.threads)
    test = dataset.read_split(smk.input.test)
    metrics = classify.evaluate_split(engine, test, smk.params.classes)
    train = dataset.read_split(smk.input.train)
    pred = dataset.length_only_baseline(
        train.lengths, train.labels, test.lengths, len(smk.params.classes)
    )
    metrics.update(
        scenario=smk.wildcards.dataset,
        method="fp32",
        length_baseline_accuracy=float((pred == test.labels).mean()),
        model_bits=32 * modelio.n_parameters(engine.model),
        file_bytes=modelio.file_bytes(smk.input.model),
        arch=engine.arch,
    )
    write_text(smk.output.metrics, metrics_json(metrics))
    log.info(
        "accuracy %.4f (records %.4f), MCC %.4f; length-only baseline %.4f",
        metrics["accuracy"],
        metrics["record_accuracy"],
        metrics["mcc"],
        metrics["length_baseline_accuracy"],
    )


run(main, snakemake)
