"""Classify every record of a FASTA or FASTQ file with a viral model (fp32, packed or ONNX) into a
TSV, with the open-set answer: the threshold calibrated for this model by rule viral_assess."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")
import json

from quantscan.apps.viral import classify, dataset, evaluation, openset
from quantscan.apps.viral.fasta import ValidationRules
from quantscan.scripting import run


def main(smk, log):
    engine = classify.load_engine(
        smk.input.model, threads=smk.threads, batch_size=smk.params.batch_windows
    )
    osc = smk.params.openset
    with open(smk.input.evaluation) as fh:
        threshold = json.load(fh)["threshold"]
    rule = openset.OpenSetRule(
        len(smk.params.classes),
        background=len(smk.params.outputs) > len(smk.params.classes),
        score=osc["score"],
        threshold=threshold,
        min_length=osc["min_length"],
    )
    detector = None
    if osc["score"] == "mahalanobis":  # refitted as viral_assess fitted it (closed form)
        detector = evaluation.mahalanobis_detector(
            dataset.read_split(smk.input.train), len(smk.params.classes), osc.get("mahalanobis")
        )
    options = classify.ClassifyOptions(
        stride=smk.params.stride,
        combine=smk.params.combine,
        batch_windows=smk.params.batch_windows,
        rules=ValidationRules(**smk.params.validation),
        openset=rule,
        detector=detector,
    )
    log.info(
        "%s: %s model, input length %d; open set: %s, %s threshold %s",
        smk.input.model,
        engine.kind,
        engine.length,
        "background class" if rule.background else "no background class",
        rule.score,
        "none" if threshold is None else f"{threshold:.6g}",
    )
    s = classify.classify_fasta(
        smk.input.fasta, smk.output.tsv, engine, smk.params.outputs, options
    )
    log.info(
        "%s: %d records, %d scored (%d windows), %d classified, %d unclassified, %d flagged; "
        "%.1f s, %.1f sequences/s, %.0f bp/s, %.4f Gbp/h",
        smk.input.fasta,
        s.records,
        s.scored,
        s.windows,
        s.classified,
        s.unclassified,
        s.flagged,
        s.seconds,
        s.sequences_per_second,
        s.bp_per_second,
        s.gbp_per_hour,
    )


run(main, snakemake)
