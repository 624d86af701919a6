"""Read one chromosome of a scan input (VCF, ms, tree sequence) into a compact npz."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")
from quantscan.scripting import run
from quantscan.sweeps import scan_workflow as qscan


def main(smk, log):
    inp = dict(smk.params.inp)
    if inp["path"] is None:  # the simulated chromosome: its .trees file
        inp["path"] = smk.input.source
    hd = qscan.read_chromosome(inp, smk.wildcards.chrom)
    if hd.n_haplotypes != smk.params.haplotypes:
        log.warning(
            "%s: %d haplotypes, but the models were trained on images of %d rows "
            "(sweeps.haplotypes); scores may be miscalibrated",
            hd.chrom,
            hd.n_haplotypes,
            smk.params.haplotypes,
        )
    qscan.save_chromosome(hd, smk.output.npz, base=1 if inp["format"] == "vcf" else 0)
    log.info(
        "%s: %d SNPs x %d haplotypes kept (%s)",
        hd.chrom,
        hd.n_sites,
        hd.n_haplotypes,
        ", ".join(f"{k} {v}" for k, v in hd.stats.items()),
    )


run(main, snakemake)
