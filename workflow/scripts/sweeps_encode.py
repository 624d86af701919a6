"""Encode a batch of simulated replicates as SweepNet images."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")
import numpy as np

from quantscan.scripting import run
from quantscan.sweeps import dataset, simulate


def main(smk, log):
    reps, _ = simulate.load_replicates(smk.input.npz)
    image = smk.params.image
    images, n_snps = dataset.encode_replicates(
        reps, image["snps"], image["encoding"], image["column_order"]
    )
    label = simulate.CLASSES.index(smk.wildcards.cls)
    first = int(smk.wildcards.batch) * smk.params.batch_size
    index = np.arange(first, first + len(reps))
    dataset.save_images(smk.output.npz, images, np.full(len(reps), label), index, n_snps)
    short = int((n_snps < image["snps"]).sum())
    log.info(
        "%d images %s; %d windows zero-padded (fewer SNPs than %d)",
        len(images),
        images.shape[1:],
        short,
        image["snps"],
    )


run(main, snakemake)
