"""Simulate one batch of neutral or sweep replicates for a scenario."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")
from quantscan.apps.sweeps import simulate
from quantscan.scripting import run


def main(smk, log):
    sc, cls, batch = smk.wildcards.scenario, smk.wildcards.cls, int(smk.wildcards.batch)
    params = simulate.SimParams(**smk.params.sim)
    reps = simulate.simulate_batch(params, sc, cls, batch, smk.params.size, smk.params.seed)
    simulate.save_replicates(
        smk.output.npz,
        reps,
        sequence_length=params.sequence_length,
        meta={"scenario": sc, "class": cls, "batch": batch, "seed": smk.params.seed},
    )
    sites = [len(r.positions) for r in reps]
    log.info("%d replicates, %d-%d segregating sites", len(reps), min(sites), max(sites))


run(main, snakemake)
