"""Read one chromosome of a scan input (VCF, ms, tree sequence) into a compact npz; check that it
can be scanned (SNPs, calls) and keep the warnings for the scan's outputs. A tree sequence is
decoded straight into packed haplotypes, in the job's threads as processes
(``scan_inputs.read_chromosome(packed=True)``)."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")
from quantscan.apps.sweeps import io, scan_inputs
from quantscan.scripting import run


def main(smk, log):
    inp = dict(smk.params.inp)
    if inp["path"] is None:  # the simulated chromosome: its .trees file
        inp["path"] = smk.input.source
    hd = scan_inputs.read_chromosome(
        inp, smk.wildcards.chrom, packed=True, processes=max(int(smk.threads), 1)
    )
    warnings = io.check_usable(hd, window=smk.params.window, source=str(inp["path"]))
    for line in [*hd.notes, *warnings]:
        log.warning("%s", line)
    scan_inputs.save_chromosome(
        hd,
        smk.output.npz,
        base=1 if inp["format"] in ("vcf", "bcf") else 0,
        warnings=[*hd.notes, *warnings],
    )
    log.info(
        "%s: %d SNPs x %d haplotypes kept (%s)",
        hd.chrom,
        hd.n_sites,
        hd.n_haplotypes,
        ", ".join(f"{k} {v}" for k, v in hd.stats.items()),
    )


run(main, snakemake)
