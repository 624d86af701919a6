"""Evaluate a scenario's model on its test set and on the neutral structured scenarios."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")
from quantscan import evaluate, modelio
from quantscan.atomic import write_text
from quantscan.compress.cost import bits_per_layer
from quantscan.compress.methods import deployed_metrics
from quantscan.data import load_split
from quantscan.scripting import run
from quantscan.summary import metrics_json
from quantscan.sweeps import CLASSES
from quantscan.train import predict_proba, to_tensor


def main(smk, log):
    model, arch = modelio.load_fp32(smk.input.model)
    x, y = load_split(smk.input.test)
    metrics = evaluate.classification_metrics(y, predict_proba(model, x), CLASSES)
    for name, path in zip(smk.params.neutral_scenarios, smk.input.neutral_tests, strict=True):
        xn, _ = load_split(path)
        # every image is neutral: the share called 'sweep' is the false-positive rate
        metrics[f"fpr_{name}"] = float((predict_proba(model, xn).argmax(1) == 1).mean())
    metrics.update(
        scenario=smk.wildcards.scenario,
        method="fp32",
        model_bits=32 * modelio.n_parameters(model),
        file_bytes=modelio.file_bytes(smk.input.model),
        size_pct=100.0,
        bits_per_layer=bits_per_layer(model),
        arch=arch,
    )
    metrics.update(deployed_metrics(model, to_tensor(x[:1], channels_last=False)))
    write_text(smk.output.metrics, metrics_json(metrics))
    log.info("accuracy %.4f, MCC %.4f", metrics["accuracy"], metrics["mcc"])


run(main, snakemake)
