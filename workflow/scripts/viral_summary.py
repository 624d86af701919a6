"""One row per (data set, method) of the viral models, columns as the sweeps summary."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")
from quantscan import summary
from quantscan.scripting import run


def main(smk, log):
    # the sweeps' leading columns, with the viral classes' accuracies in place of theirs
    columns = [c for c in summary.COLUMNS if c not in ("acc_neutral", "acc_sweep")]
    at = columns.index("mcc") + 1
    columns[at:at] = [f"acc_{c}" for c in smk.params.classes]
    table = summary.write_summary(list(smk.input.metrics), smk.output.tsv, columns)
    log.info("%d rows written to %s", len(table), smk.output.tsv)


run(main, snakemake)
