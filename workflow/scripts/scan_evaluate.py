"""ASDEC's metrics of every scan against simulated truth -> results/sweeps/scan_summary.tsv."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")
import json

from quantscan.scripting import run
from quantscan.sweeps import chromosome, scan, scan_metrics
from quantscan.sweeps import scan_workflow as qscan


def main(smk, log):
    fpr, tol = smk.params.fpr, smk.params.tolerance
    rows = []
    for job, path in zip(smk.params.jobs, smk.input.replicates, strict=True):
        sweeps, neutrals, length, info = qscan.load_replicate_scans(path)
        metrics = None
        if not info.get("skipped"):
            metrics = scan_metrics.evaluate(sweeps, neutrals, length, fpr=fpr, tolerance=tol)
        rows.append(
            qscan.summary_row(
                job["scenario"], job["model"], job["engine"], "test_replicates", metrics, info
            )
        )
    chrom_files = zip(
        smk.params.chromosome_jobs,
        smk.input.chromosomes,
        smk.input.chromosome_infos,
        smk.input.truths,
        strict=True,
    )
    for job, scores_path, info_path, truth_path in chrom_files:
        info = json.loads(open(info_path).read())
        metrics = None
        if not info.get("skipped"):
            truth = chromosome.read_truth(truth_path)
            scores = scan.read_scores_tsv(scores_path)
            metrics = scan_metrics.evaluate_chromosome(scores, truth, fpr=fpr, tolerance=tol)
        data = f"chromosome:{job['chrom']}"
        rows.append(
            qscan.summary_row(job["scenario"], job["model"], job["engine"], data, metrics, info)
        )
    qscan.write_summary(rows, smk.output.tsv)
    for r in rows:
        log.info(
            "%s %s %s %s: success %.3f, distance %.2f %%, sensitivity %.3f%s",
            r["scenario"],
            r["method"],
            r["engine"],
            r["data"],
            r["success_rate"],
            r["distance_error_pct"],
            r["sensitivity_at_fpr"],
            f" ({r['note']})" if r["note"] else "",
        )


run(main, snakemake)
