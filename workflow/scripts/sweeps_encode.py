"""Encode a batch of simulated replicates as SweepNet images.

With linked windows on (``params.image["linked"]``, passed only to the neutral jobs of scenarios with
sweeps), the sweep simulation shard of the same batch (``input.linked``) supplies the windows that
replace a share of the neutral images (``dataset.encode_linked``).
"""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")
import numpy as np

from quantscan.apps.sweeps import dataset, simulate
from quantscan.scripting import run
from quantscan.seeds import derive_seed


def main(smk, log):
    reps, length = simulate.load_replicates(smk.input.npz)
    image = smk.params.image
    label = simulate.CLASSES.index(smk.wildcards.cls)
    first = int(smk.wildcards.batch) * smk.params.batch_size
    index = np.arange(first, first + len(reps))
    linked = image.get("linked")
    offsets = None
    if linked:
        sweeps, _ = simulate.load_replicates(smk.input.linked)
        seed = derive_seed(linked["seed"], "linked", smk.wildcards.scenario, smk.wildcards.batch)
        offsets = dataset.linked_offsets(
            len(reps),
            fraction=linked["fraction"],
            min_offset=linked["min_offset"],
            max_offset=linked["max_offset"],
            seed=seed,
        )
        images, n_snps = dataset.encode_linked(
            reps,
            sweeps,
            offsets,
            length,
            image["snps"],
            image["encoding"],
            image["column_order"],
        )
        done = np.isfinite(offsets)
        log.info(
            "%d of %d neutral images replaced by linked windows of sweep replicates "
            "(|offset| %.3f-%.3f x L, L = %g bp)",
            int(done.sum()),
            len(reps),
            float(np.abs(offsets[done]).min()) if done.any() else float("nan"),
            float(np.abs(offsets[done]).max()) if done.any() else float("nan"),
            length,
        )
    else:
        images, n_snps = dataset.encode_replicates(
            reps, image["snps"], image["encoding"], image["column_order"]
        )
    dataset.save_images(
        smk.output.npz, images, np.full(len(reps), label), index, n_snps, linked_offset=offsets
    )
    short = int((n_snps < image["snps"]).sum())
    log.info(
        "%d images %s; %d windows zero-padded (fewer SNPs than %d)",
        len(images),
        images.shape[1:],
        short,
        image["snps"],
    )


run(main, snakemake)
