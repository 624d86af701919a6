"""Scan a scenario's simulated test replicates with one model through one engine (ASDEC's grid)."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")
import time

import numpy as np

from quantscan.scripting import run
from quantscan.sweeps import scan_metrics
from quantscan.sweeps import scan_workflow as qscan


def main(smk, log):
    w = smk.wildcards
    ev, image = smk.params.evaluate, smk.params.image
    reps, length = {}, None
    for cls in ("sweep", "neutral"):
        spec = smk.params.shards.get(cls)
        if spec is None:
            reps[cls] = []
            continue
        shards = dict(zip(spec["batches"], smk.input[cls], strict=True))
        reps[cls], length = qscan.load_test_replicates(
            shards,
            first_test=spec["first_test"],
            batch_size=smk.params.batch_size,
            max_replicates=ev["max_replicates"],
        )
    n_haps = next(r.haplotypes.shape[1] for rs in reps.values() for r in rs)
    engine, skipped = qscan.open_engine(
        w.engine,
        smk.input.model,
        model=w.scan_model,
        shape=(n_haps, image["snps"]),
        batch_size=smk.params.engine_batch,
        threads=smk.threads,
        int8_path=smk.input.int8[0] if smk.input.int8 else None,
    )
    info = {
        "scenario": w.scenario,
        "model": w.scan_model,
        "engine": w.engine,
        "sims": w.sims,
        "grid_points": ev["grid_points"],
        "skipped": skipped,
    }
    scans = {}
    t0 = time.perf_counter()
    for cls, rs in reps.items():
        if engine is None:
            grid = np.linspace(0.0, length, ev["grid_points"])
            scans[cls] = [
                scan_metrics.ReplicateScan(grid, np.full(len(grid), np.nan), r.sweep_position)
                for r in rs
            ]
            continue
        scans[cls] = scan_metrics.scan_replicates(
            rs,
            engine,
            sequence_length=length,
            width=image["snps"],
            n_points=ev["grid_points"],
            encoding=image["encoding"],
            column_order=image["column_order"],
        )
    seconds = time.perf_counter() - t0
    windows = sum(int(np.isfinite(s.scores).sum()) for ss in scans.values() for s in ss)
    info |= {"seconds": seconds, "windows": windows, "engine_info": engine and engine.describe()}
    qscan.save_replicate_scans(smk.output.npz, scans["sweep"], scans["neutral"], length, info)
    if skipped:
        log.warning("skipped: %s", skipped)
    log.info(
        "%d sweep + %d neutral test replicates of %s (L = %g), %d windows in %.1f s (%.0f/s)",
        len(scans["sweep"]),
        len(scans["neutral"]),
        w.sims,
        length,
        windows,
        seconds,
        windows / seconds if seconds > 0 else float("nan"),
    )


run(main, snakemake)
