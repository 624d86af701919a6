"""Gather a scenario's image shards into train / validation / test files and draw examples."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")
from quantscan import plots
from quantscan.apps.sweeps import CLASSES, dataset
from quantscan.scripting import run
from quantscan.seeds import derive_seed


def main(smk, log):
    sc = smk.wildcards.scenario
    counts = dataset.build_splits(
        list(smk.input.shards),
        {s: smk.output[s] for s in dataset.SPLITS},
        n_train=smk.params.n_train,
        val_fraction=smk.params.val_fraction,
        seed=derive_seed(smk.params.seed, "split", sc),
    )
    log.info("split sizes: %s", counts)
    images, labels, _ = dataset.load_images(smk.output.test)
    plots.example_images(
        images,
        labels,
        CLASSES,
        smk.output.examples,
        f"{sc}: test images (rows haplotypes, columns SNPs)",
    )


run(main, snakemake)
