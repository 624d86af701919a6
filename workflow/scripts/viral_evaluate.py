"""Evaluate the fp32 viral model on the test split (windows and records) into a metrics.json like
the sweeps one, with the compression columns of the fp32 baseline (density 1, weights-size and
NOPs x bits at 32 bits: seed 004 Table IV's reference). The per-record, per-fragment and open-set
evaluation of every model and of the baselines is rule viral_assess (quantscan.viral.evaluation)."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")
import torch

from quantscan import modelio
from quantscan.atomic import write_text
from quantscan.compress.cost import bits_per_layer
from quantscan.compress.metrics import compression_report
from quantscan.scripting import run
from quantscan.summary import metrics_json
from quantscan.viral import classify, dataset


def main(smk, log):
    engine = classify.load_engine(smk.input.model, threads=smk.threads)
    test = dataset.read_split(smk.input.test)
    metrics = classify.evaluate_split(engine, test, smk.params.classes)
    # per-sample operation counts need one input of the model's shape (all zeros will do)
    report = compression_report(engine.model, torch.zeros(1, 5, engine.length))
    metrics.update(
        scenario=smk.wildcards.dataset,
        method="fp32",
        model_bits=32 * modelio.n_parameters(engine.model),
        file_bytes=modelio.file_bytes(smk.input.model),
        size_pct=100.0,
        bits_per_layer=bits_per_layer(engine.model),
        density=report["density"],
        nops=int(report["nops"]),
        nops_x_bits=float(report["nops_x_bits"]),
        weights_mbit=report["weights_mbit"],
        arch=engine.arch,
    )
    write_text(smk.output.metrics, metrics_json(metrics))
    log.info(
        "window accuracy %.4f (records %.4f), MCC %.4f",
        metrics["accuracy"],
        metrics["record_accuracy"],
        metrics["mcc"],
    )


run(main, snakemake)
