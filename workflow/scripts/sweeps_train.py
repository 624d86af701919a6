"""Train the fp32 SweepNet baseline of a scenario."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")
import pandas as pd

from quantscan import modelio, plots
from quantscan.atomic import atomic_path
from quantscan.models import build_model
from quantscan.scripting import run
from quantscan.seeds import derive_seed
from quantscan.sweeps import dataset
from quantscan.train import TrainConfig, fit


def main(smk, log):
    sc = smk.wildcards.scenario
    x_train, y_train, _ = dataset.load_images(smk.input.train)
    x_val, y_val, _ = dataset.load_images(smk.input.val)
    seed = derive_seed(smk.params.seed, "train", sc, "fp32")
    arch = {"name": "sweepnet", "n_classes": 2, **smk.params.model}
    import torch

    torch.manual_seed(seed)
    model = build_model(arch)
    log.info(
        "%s: %d training and %d validation images %s, %d parameters",
        sc,
        len(y_train),
        len(y_val),
        x_train.shape[1:],
        modelio.n_parameters(model),
    )
    history = fit(
        model,
        x_train[:, None],
        y_train,
        x_val[:, None],
        y_val,
        TrainConfig(**smk.params.train),
        seed,
    )
    modelio.save_fp32(model, arch, smk.output.model)
    with atomic_path(smk.output.history) as tmp:
        pd.DataFrame(history).to_csv(tmp, sep="\t", index=False)
    plots.training_curves(history, smk.output.curves, f"SweepNet fp32, {sc}")


run(main, snakemake)
