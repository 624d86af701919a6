"""Classify every record of a FASTA file with a viral model (fp32, packed or ONNX) into a TSV."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")
from quantscan.scripting import run
from quantscan.viral import classify
from quantscan.viral.fasta import ValidationRules


def main(smk, log):
    engine = classify.load_engine(
        smk.input.model, threads=smk.threads, batch_size=smk.params.batch_windows
    )
    options = classify.ClassifyOptions(
        stride=smk.params.stride,
        combine=smk.params.combine,
        batch_windows=smk.params.batch_windows,
        rules=ValidationRules(**smk.params.validation),
    )
    log.info("%s: %s model, input length %d", smk.input.model, engine.kind, engine.length)
    s = classify.classify_fasta(
        smk.input.fasta, smk.output.tsv, engine, smk.params.classes, options
    )
    log.info(
        "%s: %d records, %d classified (%d windows), %d flagged, %d without prediction; "
        "%.1f s, %.1f sequences/s, %.4f Gbp/h",
        smk.input.fasta,
        s.records,
        s.classified,
        s.windows,
        s.flagged,
        s.unclassified,
        s.seconds,
        s.sequences_per_second,
        s.gbp_per_hour,
    )


run(main, snakemake)
