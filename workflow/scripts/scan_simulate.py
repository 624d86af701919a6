"""Simulate a test chromosome with known sweeps: msprime segments joined end to end."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")
from quantscan.apps.sweeps import chromosome
from quantscan.scripting import run


def main(smk, log):
    spec = chromosome.ChromosomeSpec.from_config(smk.params.spec)
    params = spec.params(smk.params.sweeps)
    ts, truth = chromosome.simulate_chromosome(spec, params, smk.params.seed)
    chromosome.write_trees(ts, smk.output.trees)
    chromosome.write_truth(truth, smk.output.truth)
    chromosome.write_truth_bed(truth, smk.output.bed)
    log.info(
        "%s: %g bp, %d segments (%d with a sweep, %d with a hotspot), %d haplotypes, %d sites",
        spec.name,
        spec.length,
        spec.n_segments,
        len(spec.sweep_segments),
        len(spec.hotspot_segments),
        ts.num_samples,
        ts.num_sites,
    )


run(main, snakemake)
