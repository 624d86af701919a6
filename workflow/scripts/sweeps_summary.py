"""One row per (scenario, method) from every metrics.json."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")
from quantscan import summary
from quantscan.scripting import run


def main(smk, log):
    table = summary.write_summary(list(smk.input.metrics), smk.output.tsv)
    log.info("%d rows written to %s", len(table), smk.output.tsv)


run(main, snakemake)
