"""Scan one region of a chromosome's grid with one model through one engine."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")
import json
import time

from quantscan.apps.sweeps import localiser, scan, scan_engines, scan_inputs
from quantscan.apps.sweeps.sample_size import draw_subsets
from quantscan.atomic import write_text
from quantscan.errors import InputFormatError
from quantscan.scripting import run
from quantscan.seeds import derive_seed


def main(smk, log):
    w, sc, image = smk.wildcards, smk.params.scan, smk.params.image
    hd, info = scan_inputs.load_chromosome(smk.input.npz, lazy=True)
    size = smk.params.sample_size
    if hd.n_haplotypes != size["input_haplotypes"]:
        raise InputFormatError(
            f"{smk.input.npz}: chromosome {hd.chrom} has {hd.n_haplotypes} haplotypes, but the "
            f"workflow planned {size['input_haplotypes']} from the input's header (its p-value "
            "null is simulated at that size); scan this chromosome as a separate input with its "
            "own 'haplotypes'"
        )
    model_haps = size["model_haplotypes"]
    subsets = draw_subsets(
        hd.n_haplotypes,
        model_haps,
        size["subsets"],
        derive_seed(smk.params.seed, "scan_subsets", w.scan_input, w.chrom),
    )
    position = w.scan_model == localiser.LOCALISER
    settings = localiser.LocaliserSettings.from_config(sc["localiser"]) if position else None
    engine, skipped = scan_engines.open_engine(
        w.engine,
        smk.input.model,
        model=w.scan_model,
        shape=(model_haps, smk.params.window),
        batch_size=sc["batch_size"],
        threads=smk.threads,
        onnx_path=smk.input.onnx[0] if smk.input.onnx else None,
        localiser=settings,
    )
    if skipped:
        log.warning("skipped: %s", skipped)
    timings = {}
    t0 = time.perf_counter()
    if position and engine is not None:
        table = localiser.scan_chromosome(
            hd,
            engine,
            settings=settings,
            n_points=sc["grid_points"],
            span=sc["span"],
            n_regions=sc["regions"],
            region=int(w.region),
            subsets=subsets,
            batch_size=sc["batch_size"],
            timings=timings,
        )
    else:
        table = scan.scan_chromosome(
            hd,
            engine or _NoEngine(),
            width=smk.params.window,
            n_points=sc["grid_points"],
            encoding=image["encoding"],
            column_order=image["column_order"],
            span=sc["span"],
            n_regions=sc["regions"],
            region=int(w.region),
            batch_size=sc["batch_size"],
            # a skipped engine scores nothing: every window is below an impossible SNP count
            min_snps=sc["min_snps"] if engine else smk.params.window + 1,
            subsets=subsets,
            timings=timings,
        )
    seconds = time.perf_counter() - t0
    windows = int(table["p_sweep"].notna().sum()) * len(subsets)
    if position and engine is not None:  # windows on the lattice, not one per grid point
        windows = int(timings.get("windows", 0))
    scan.write_scores_tsv(table, smk.output.tsv)
    out = {
        "chrom": hd.chrom,
        "region": int(w.region),
        "regions": sc["regions"],
        "grid_points": len(table),
        "windows": windows,
        "seconds": seconds,
        "timings": timings,
        "engine": engine.describe() if engine else None,
        "skipped": skipped,
        "n_sites": hd.n_sites,
        "n_haplotypes": hd.n_haplotypes,
        "sample_size": size,
        "warnings": info.get("warnings", []),
    }
    write_text(smk.output.info, json.dumps(out, indent=1) + "\n")
    log.info(
        "%s region %s/%d: %d grid points, %d windows in %.2f s (%s); %s",
        hd.chrom,
        w.region,
        sc["regions"],
        len(table),
        windows,
        seconds,
        ", ".join(f"{k} {v:.2f} s" for k, v in timings.items()),
        size["action"],
    )


class _NoEngine:
    """Stands in for an engine that cannot run the model; never called (see min_snps)."""

    def predict_log_odds(self, x, cls=1):
        raise AssertionError("a skipped engine was asked to score windows")


run(main, snakemake)
