"""ASDEC's metrics of every scan against simulated truth -> results/sweeps/scan_summary.tsv.

Replicate scans are evaluated once per ranking statistic (scan.STATISTICS), so the table shows
what each way of reading the model's track buys; chromosome scans with the configured one.
"""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")
import json

from quantscan.apps.sweeps import (
    chromosome,
    scan,
    scan_metrics,
    scan_plan,
    scan_replicates,
    scan_results,
)
from quantscan.scripting import run


def main(smk, log):
    fpr, tol, smooth_bp = smk.params.fpr, smk.params.tolerance, smk.params.smooth_bp
    rows = []
    classic = {
        s: scan_results.load_classic_scores(path)
        for s, path in zip(smk.params.classic_scenarios, smk.input.classic, strict=True)
    }

    def metrics_of(sweeps, neutrals, length):
        return scan_metrics.evaluate(sweeps, neutrals, length, fpr=fpr, tolerance=tol)

    for scenario, c in classic.items():
        for stat, (sweeps, neutrals) in c["scans"].items():
            info = {
                "grid_points": len(c["positions"]),
                "seconds": c["info"]["seconds"][stat],
                "windows": sum(len(r.scores) for r in sweeps + neutrals),
            }
            row = scan_results.summary_row(
                scenario,
                stat,
                "classic",
                "replicates",
                metrics_of(sweeps, neutrals, c["length"]),
                info,
                statistic=stat,
                scan_statistic=True,
            )
            rows.append(row)
    for job, path in zip(smk.params.jobs, smk.input.replicates, strict=True):
        sweeps, neutrals, length, info = scan_replicates.load_replicate_scans(path)
        info["null_windows"] = int(neutrals.log_odds.size)
        statistics = list(scan.STATISTICS)
        mu = classic.get(job["scenario"], {}).get("scans", {}).get("mu")
        if mu is not None:
            statistics.append("mu_x_p_sweep")
        for statistic in statistics:
            metrics = None
            if not info.get("skipped"):
                if statistic == "mu_x_p_sweep":
                    # RAiSD-AI's combination: the classic mu times the CNN's P(sweep)
                    scans = [
                        scan_results.combine_scans(m, c)
                        for m, c in zip(
                            mu, (sweeps.scans("p_sweep"), neutrals.scans("p_sweep")), strict=True
                        )
                    ]
                else:
                    half = scan_plan.smooth_bp_for(job["model"], smooth_bp)
                    scans = [t.scans(statistic, half) for t in (sweeps, neutrals)]
                metrics = metrics_of(*scans, length)
            row = scan_results.summary_row(
                job["scenario"],
                job["model"],
                job["engine"],
                "replicates",
                metrics,
                info,
                statistic=statistic,
                scan_statistic=statistic == smk.params.scan_statistics[job["model"]],
            )
            rows.append(row)
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
            scan_results.summary_row(
                job["scenario"],
                job["model"],
                job["engine"],
                data,
                metrics,
                info,
                statistic=info.get("statistic", ""),
                scan_statistic=True,
            )
        )
    scan_results.write_summary(rows, smk.output.tsv)
    for r in rows:
        log.info(
            "%s %s %s %s %s: success %.3f, distance %.2f %%, sensitivity %.3f%s",
            r["scenario"],
            r["method"],
            r["engine"],
            r["data"],
            r["statistic"],
            r["success_rate"],
            r["distance_error_pct"],
            r["sensitivity_at_fpr"],
            f" ({r['note']})" if r["note"] else "",
        )


run(main, snakemake)
