"""Merge a chromosome's region scores in order; p-values, peaks, bedGraph, BED and a PNG track."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")
import json

from quantscan.atomic import write_text
from quantscan.scripting import run
from quantscan.sweeps import chromosome, scan
from quantscan.sweeps import scan_workflow as qscan


def main(smk, log):
    w = smk.wildcards
    tables = [scan.read_scores_tsv(p) for p in smk.input.regions]
    infos = [json.loads(open(p).read()) for p in smk.input.infos]
    skipped = next((i["skipped"] for i in infos if i.get("skipped")), None)
    null = qscan.neutral_null(smk.input.null)
    truth = chromosome.read_truth(smk.input.truth[0]) if smk.input.truth else None
    if truth is not None:
        truth = truth[truth["chrom"] == w.chrom]
    title = f"{w.chrom}: {w.scan_model} through {w.engine}"
    if skipped:
        title += " (skipped: the model cannot run in this engine)"
        log.warning("skipped: %s", skipped)
    elif not null.size:
        log.warning("no neutral scores for the p-value null (%s): p_value is NA", smk.input.null)
    out = {k: smk.output[k] for k in ("tsv", "bedgraph", "bed", "png")}
    counts = qscan.merge_chromosome(
        tables,
        null,
        peaks=smk.params.peaks,
        base=smk.params.base,
        out=out,
        truth=truth,
        title=title,
    )
    seconds = sum(i["seconds"] for i in infos)
    windows = sum(i["windows"] for i in infos)
    summary = {
        "chrom": w.chrom,
        "input": w.scan_input,
        "model": w.scan_model,
        "engine": w.engine,
        "skipped": skipped,
        "regions": len(infos),
        "seconds": seconds,
        "windows": windows,
        "windows_per_s": windows / seconds if seconds > 0 else None,
        "grid_points": counts["grid_points"],
        "n_sites": infos[0]["n_sites"] if infos else None,
        "n_haplotypes": infos[0]["n_haplotypes"] if infos else None,
        "peaks": counts["peaks"],
        "peak_calling": dict(smk.params.peaks),
        "null_windows": counts["null_windows"],
        "score_threshold": counts["score_threshold"],
        "min_p_value": counts["min_p_value"],
    }
    write_text(smk.output.info, json.dumps(summary, indent=1) + "\n")
    log.info(
        "%s: %d grid points from %d regions, %d peaks (%s %s %g), null of %d windows",
        w.chrom,
        counts["grid_points"],
        len(tables),
        counts["peaks"],
        smk.params.peaks["column"],
        "<=" if smk.params.peaks["column"] == "p_value" else ">=",
        smk.params.peaks["threshold"],
        counts["null_windows"],
    )


run(main, snakemake)
