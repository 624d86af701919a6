"""Classic sweep statistics (RAiSD's mu, H12, a SweeD-style CLR, ...) on the scan's evaluation
replicates, on the grid the CNN's replicate scans use: the baseline beside it in scan_summary.tsv."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")
import json
import time

import numpy as np

from quantscan.apps.sweeps import classic, scan_replicates
from quantscan.atomic import atomic_path
from quantscan.scripting import run


def main(smk, log):
    reps = {}
    for cls in ("sweep", "neutral"):
        reps[cls], length = scan_replicates.load_scan_replicates(list(smk.input[cls]))
    n_points = smk.params.grid_points
    arrays, seconds = {}, {}
    for stat in smk.params.statistics:
        t0 = time.perf_counter()
        scans = [
            classic.scan_replicates_classic(rs, stat, sequence_length=length, n_points=n_points)
            for rs in (reps["sweep"], reps["neutral"])
        ]
        seconds[stat] = time.perf_counter() - t0
        arrays[f"score_{stat}"] = np.array([s.scores for ss in scans for s in ss], np.float64)
        log.info("%s on %d + %d replicates: %.1f s", stat, *map(len, reps.values()), seconds[stat])
    grid = np.linspace(0.0, length, n_points)
    true = [r.sweep_position for r in reps["sweep"]] + [np.nan] * len(reps["neutral"])
    info = {"statistics": list(smk.params.statistics), "seconds": seconds}
    with atomic_path(smk.output.npz) as tmp:
        np.savez_compressed(
            tmp,
            positions=grid,
            true_position=np.array(true, np.float64),
            label=np.array([1] * len(reps["sweep"]) + [0] * len(reps["neutral"]), np.int8),
            sequence_length=np.float64(length),
            info=np.array(json.dumps(info)),
            **arrays,
        )


run(main, snakemake)
