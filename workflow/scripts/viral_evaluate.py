"""Evaluate the fp32 viral model on the test split (windows and records) plus a length-only and a
k-mer composition baseline, into a metrics.json like the sweeps one, with the compression columns of the fp32
baseline (density 1, weights-size and NOPs x bits at 32 bits: seed 004 Table IV's reference)."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")
import torch

from quantscan import modelio
from quantscan.atomic import write_text
from quantscan.compress.cost import bits_per_layer
from quantscan.compress.metrics import compression_report
from quantscan.scripting import run
from quantscan.summary import metrics_json
from quantscan.viral import baselines, classify, dataset


def main(smk, log):
    engine = classify.load_engine(smk.input.model, threads=smk.threads)
    test = dataset.read_split(smk.input.test)
    metrics = classify.evaluate_split(engine, test, smk.params.classes)
    train = dataset.read_split(smk.input.train)
    pred = dataset.length_only_baseline(
        train.lengths, train.labels, test.lengths, len(smk.params.classes)
    )
    kmers = baselines.kmer_baseline(
        baselines.kmer_frequencies(train.codes, train.offsets),
        train.labels,
        baselines.kmer_frequencies(test.codes, test.offsets),
        len(smk.params.classes),
    )
    # per-sample operation counts need one input of the model's shape (all zeros will do)
    report = compression_report(engine.model, torch.zeros(1, 5, engine.length))
    metrics.update(
        scenario=smk.wildcards.dataset,
        method="fp32",
        length_baseline_accuracy=float((pred == test.labels).mean()),
        kmer_baseline_accuracy=float((kmers == test.labels).mean()),
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
        "accuracy %.4f (records %.4f), MCC %.4f; baselines: length-only %.4f, %d-mer %.4f",
        metrics["accuracy"],
        metrics["record_accuracy"],
        metrics["mcc"],
        metrics["length_baseline_accuracy"],
        baselines.K,
        metrics["kmer_baseline_accuracy"],
    )


run(main, snakemake)
