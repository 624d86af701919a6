"""Every variant of every compression method of an application, with the fp32 baselines:
variants.tsv, accuracy vs model size (Pareto front) and accuracy vs density (pruning schedules)."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")
from quantscan.compress import compare
from quantscan.scripting import run


def main(smk, log):
    app = smk.wildcards.app
    jobs = list(smk.params.jobs)
    # the job list and the inputs come from the same function (common.smk compare_jobs)
    assert [j["rows"] for j in jobs] == list(smk.input.rows)
    table = compare.variants_table(list(smk.input.fp32), jobs)
    compare.write_variants(table, smk.output.variants)
    compare.pareto(table, smk.output.pareto, f"{app}: test accuracy vs model size, all variants")
    compare.density(
        table, smk.output.density, f"{app}: test accuracy vs density (Fernandes & Kung)"
    )
    log.info(
        "%d variants of %d jobs (+ %d fp32 models): %s",
        len(table),
        len(jobs),
        len(smk.input.fp32),
        ", ".join(f"{f}={n}" for f, n in table.family.value_counts().items()),
    )


run(main, snakemake)
