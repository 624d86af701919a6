"""results/viral/summary.tsv: one row per method - fp32, every compressed model (its primary
variant), every baseline - with per-record and per-fragment accuracy and the open-set numbers in
the same units for every row (rule viral_assess), and the compression columns of the models; and
results/viral/openset.tsv, every open-set strategy of every method side by side; and
results/viral/openset.png, what each strategy's threshold trades, method by method."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")
from quantscan.apps.viral import report
from quantscan.scripting import run


def main(smk, log):
    table, strategies = report.viral_summary(
        list(smk.input.evaluations), list(smk.input.metrics), list(smk.params.classes)
    )
    report.write_tsv(table, smk.output.tsv)
    report.write_tsv(strategies, smk.output.openset)
    report.openset_plot(list(smk.input.evaluations), smk.output.plot)
    log.info("%d rows written to %s", len(table), smk.output.tsv)


run(main, snakemake)
