"""Train an application's fp32 baseline model (any architecture, any split files)."""

import sys
from pathlib import Path

sys.path.insert(0, f"{snakemake.scriptdir}/..")
import pandas as pd
import torch

from quantscan import apps, modelio, plots
from quantscan.atomic import atomic_path
from quantscan.data import load_split
from quantscan.device import resolve as resolve_device
from quantscan.models import build_model
from quantscan.scripting import run
from quantscan.seeds import derive_seed
from quantscan.tasks import get_task
from quantscan.train import TrainConfig, fit


def main(smk, log):
    apps.get(smk.config, smk.wildcards.app)  # its split layouts and architectures register
    label = f"{smk.wildcards.app}/{smk.wildcards.dataset}"
    x_train, y_train = load_split(smk.input.train)
    x_val, y_val = load_split(smk.input.val)
    # from the data set's name (not the application's), as before applications were plug-ins
    seed = derive_seed(smk.params.seed, "train", smk.wildcards.dataset)
    torch.manual_seed(seed)
    model = build_model(smk.params.arch)
    log.info(
        "%s: %d training and %d validation inputs %s, %d parameters",
        label,
        len(y_train),
        len(y_val),
        x_train.shape[1:],
        modelio.n_parameters(model),
    )
    # beside the outputs but not one of them, so a killed job's rerun resumes from it
    checkpoint = Path(smk.output.model).with_name("checkpoint.pt")
    cfg = TrainConfig(**smk.params.train)
    task = get_task(smk.params.task)
    device = resolve_device(smk.params.device)
    if device.type != "cpu":
        log.info("training on %s", torch.cuda.get_device_name(device))
    history = fit(
        model,
        x_train,
        y_train,
        x_val,
        y_val,
        cfg,
        seed,
        checkpoint=checkpoint,
        task=task,
        device=device,
    )
    modelio.save_fp32(model, smk.params.arch, smk.output.model)
    with atomic_path(smk.output.history) as tmp:
        pd.DataFrame(history).to_csv(tmp, sep="\t", index=False)
    plots.training_curves(history, smk.output.curves, f"{smk.params.arch['name']} fp32, {label}")
    checkpoint.unlink(missing_ok=True)


run(main, snakemake)
