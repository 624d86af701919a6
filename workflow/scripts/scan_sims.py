"""Simulate one batch of the scan's own replicates: the p-value null (neutral, at an input's
haplotype count) or the localisation evaluation (sweeps at random positions)."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")
from quantscan.apps.sweeps import scan_replicates, simulate
from quantscan.scripting import run


def main(smk, log):
    w = smk.wildcards
    params = simulate.SimParams(**smk.params.sim)
    reps = scan_replicates.simulate_scan_batch(
        params,
        w.sims,
        w.cls,
        int(w.batch),
        smk.params.size,
        smk.params.seed,
        positions=tuple(smk.params.positions),
        log=log,
    )
    simulate.save_replicates(
        smk.output.npz,
        reps,
        sequence_length=params.sequence_length,
        meta={"scenario": w.sims, "class": w.cls, "batch": w.batch, "haplotypes": w.haps},
    )
    sites = [len(r.positions) for r in reps]
    log.info(
        "%d %s replicates of %s at %s haplotypes, %d-%d segregating sites",
        len(reps),
        w.cls,
        w.sims,
        w.haps,
        min(sites),
        max(sites),
    )


run(main, snakemake)
