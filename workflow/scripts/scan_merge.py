"""Merge a chromosome's region scores in order; score, p- and q-values, ranks, peaks, bedGraph,
BED and a PNG track; the sample size and every warning in the TSV header and the JSON."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")
import json

from quantscan.apps.sweeps import chromosome, scan, scan_results
from quantscan.atomic import write_text
from quantscan.scripting import run


def main(smk, log):
    w, p = smk.wildcards, smk.params
    tables = [scan.read_scores_tsv(path) for path in smk.input.regions]
    infos = [json.loads(open(path).read()) for path in smk.input.infos]
    skipped = next((i["skipped"] for i in infos if i.get("skipped")), None)
    null = scan_results.neutral_null(smk.input.null, p.statistic, p.smooth_bp)
    truth = chromosome.read_truth(smk.input.truth[0]) if smk.input.truth else None
    if truth is not None:
        truth = truth[truth["chrom"] == w.chrom]
    size = p.sample_size
    warnings = list(infos[0].get("warnings", [])) if infos else []  # the reader's
    title = (
        f"{w.scan_input} {w.chrom} ({size['input_haplotypes']} haplotypes): model "
        f"{p.scenario}/{w.scan_model} ({size['model_haplotypes']} rows) through {w.engine}"
    )
    if skipped:
        title += " - skipped: the model cannot run in this engine"
        log.warning("skipped: %s", skipped)
    elif not null.size:
        warnings.append(f"no neutral scores for the p-value null ({smk.input.null}): p_value is NA")
    elif null.size < p.min_null_windows:
        warnings.append(
            f"small p-value null: {null.size} windows (scan.neutral.min_windows {p.min_null_windows}); "
            f"the smallest p-value is 1/{null.size + 1}"
        )
    header = [
        f"quantscan sweep scan of input {w.scan_input}, chromosome {w.chrom}",
        f"model: {p.scenario}/{w.scan_model}, engine {w.engine}",
        f"sample size: {size['action']}",
        f"input_haplotypes: {size['input_haplotypes']}",
        f"model_haplotypes: {size['model_haplotypes']}",
        f"score: {p.statistic}"
        + (f" (half-width {p.smooth_bp:g} bp)" if p.statistic == "log_odds_smoothed" else ""),
        f"p_value: empirical, against {null.size} neutral windows simulated under {p.null_scenario} "
        f"at {size['input_haplotypes']} haplotypes; q_value: Benjamini-Hochberg over this "
        "chromosome's grid points (correlated: approximate); rank: 1 = highest score",
        *(f"warning: {m}" for m in warnings),
    ]
    out = {k: smk.output[k] for k in ("tsv", "bedgraph", "bed", "png")}
    counts = scan_results.merge_chromosome(
        tables,
        null,
        peaks=p.peaks,
        base=p.base,
        out=out,
        statistic=p.statistic,
        smooth_bp=p.smooth_bp,
        header=header,
        truth=truth,
        title=title,
    )
    if counts["saturation"]["warning"]:
        warnings.append(counts["saturation"]["warning"])
    for m in warnings:
        log.warning("%s", m)
    seconds = sum(i["seconds"] for i in infos)
    windows = sum(i["windows"] for i in infos)
    summary = {
        "chrom": w.chrom,
        "input": w.scan_input,
        "model": w.scan_model,
        "engine": w.engine,
        "skipped": skipped,
        "warnings": warnings,
        "sample_size": size,
        "statistic": p.statistic,
        "regions": len(infos),
        "seconds": seconds,
        "windows": windows,
        "windows_per_s": windows / seconds if seconds > 0 else None,
        "grid_points": counts["grid_points"],
        "n_sites": infos[0]["n_sites"] if infos else None,
        "n_haplotypes": infos[0]["n_haplotypes"] if infos else None,
        "peaks": counts["peaks"],
        "peak_calling": dict(p.peaks),
        "null_windows": counts["null_windows"],
        "min_p_value": counts["min_p_value"],
        "saturation": counts["saturation"],
    }
    write_text(smk.output.info, json.dumps(summary, indent=1) + "\n")
    log.info(
        "%s: %d grid points from %d regions, %d peaks (%s %s %g), null of %d windows; %s",
        w.chrom,
        counts["grid_points"],
        len(tables),
        counts["peaks"],
        p.peaks["column"],
        "<=" if p.peaks["column"] in ("p_value", "q_value") else ">=",
        p.peaks["threshold"],
        counts["null_windows"],
        size["action"],
    )


run(main, snakemake)
