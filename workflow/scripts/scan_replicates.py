"""Scan the scan's simulated replicates (sweeps at random positions, neutral ones for the p-value
null) with one model through one engine, with the sample-size policy of the inputs they stand for."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")
import time

import numpy as np

from quantscan.apps.sweeps import (
    localiser,
    sample_size,
    scan_engines,
    scan_metrics,
    scan_replicates,
)
from quantscan.scripting import run
from quantscan.seeds import derive_seed


def main(smk, log):
    w = smk.wildcards
    ev, image, size_cfg = smk.params.evaluate, smk.params.image, smk.params.sample_size
    haps, model_haps = int(w.haps), int(smk.params.model_haplotypes)
    size = sample_size.resolve(
        haps,
        model_haps,
        policy=size_cfg["policy"],
        subsets=size_cfg["subsets"],
        source=f"replicates of {w.sims}",
    )
    reps, length = {}, None
    for cls in ("sweep", "neutral"):
        paths = list(smk.input[cls])
        reps[cls], length_cls = scan_replicates.load_scan_replicates(paths) if paths else ([], None)
        length = length_cls if length_cls is not None else length
    position = w.scan_model == localiser.LOCALISER
    settings = localiser.LocaliserSettings.from_config(smk.params.localiser) if position else None
    engine, skipped = scan_engines.open_engine(
        w.engine,
        smk.input.model,
        model=w.scan_model,
        shape=(model_haps, image["snps"]),
        batch_size=smk.params.engine_batch,
        threads=smk.threads,
        onnx_path=smk.input.onnx[0] if smk.input.onnx else None,
        localiser=settings,
    )
    if position:  # the density channel's scale: the neutral replicates' mean SNP density
        base = reps["neutral"] or reps["sweep"]
        density = localiser.snp_density([len(r.positions) for r in base], length * len(base))
    info = {
        "scenario": w.scenario,
        "model": w.scan_model,
        "engine": w.engine,
        "sims": w.sims,
        "grid_points": ev["grid_points"],
        "skipped": skipped,
        "sample_size": size.as_dict(),
    }
    tracks = {}
    t0 = time.perf_counter()
    for cls, rs in reps.items():
        if not rs:
            tracks[cls] = None
            continue
        if engine is None:
            grid = np.linspace(0.0, length, ev["grid_points"])
            nan = np.full((len(rs), len(grid)), np.nan)
            true = np.array([r.sweep_position for r in rs])
            tracks[cls] = scan_metrics.ReplicateTracks(grid, nan, nan.copy(), true)
            continue
        seed = derive_seed(smk.params.seed, "scan_subsets", w.sims, w.haps, cls)
        if position:
            tracks[cls] = localiser.scan_replicates(
                rs,
                engine,
                settings=settings,
                sequence_length=length,
                n_points=ev["grid_points"],
                density=density,
                model_haplotypes=model_haps,
                subsets=size.subsets,
                seed=seed,
                batch_size=smk.params.engine_batch,
            )
            continue
        tracks[cls] = scan_metrics.scan_replicates(
            rs,
            engine,
            sequence_length=length,
            width=image["snps"],
            n_points=ev["grid_points"],
            encoding=image["encoding"],
            column_order=image["column_order"],
            model_haplotypes=model_haps,
            subsets=size.subsets,
            seed=seed,
        )
    seconds = time.perf_counter() - t0
    windows = sum(
        int(np.isfinite(t.log_odds).sum()) * size.subsets for t in tracks.values() if t is not None
    )
    if position and engine is not None:  # windows on the lattice, not one per grid point
        grid = np.linspace(0.0, length, ev["grid_points"])
        per_rep = len(localiser.lattice((0.0, length), grid, settings)) * size.subsets
        windows = per_rep * sum(len(rs) for rs in reps.values())
    info |= {"seconds": seconds, "windows": windows, "engine_info": engine and engine.describe()}
    scan_replicates.save_replicate_scans(
        smk.output.npz, tracks["sweep"], tracks["neutral"], length, info
    )
    if skipped:
        log.warning("skipped: %s", skipped)
    log.info(
        "%d sweep + %d neutral replicates of %s (L = %g; %s): %d windows in %.1f s (%.0f/s)",
        len(reps["sweep"]),
        len(reps["neutral"]),
        w.sims,
        length,
        size.action,
        windows,
        seconds,
        windows / seconds if seconds > 0 else float("nan"),
    )


run(main, snakemake)
