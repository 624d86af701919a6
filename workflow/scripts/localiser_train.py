"""Train a scenario's sweep localiser (PositionNet on physical-span windows) from its training
simulations, then export it to ONNX fp32 and static int8 for the scan's engines."""

import sys
from pathlib import Path

sys.path.insert(0, f"{snakemake.scriptdir}/..")
import numpy as np
import pandas as pd
import torch

from quantscan import modelio, plots
from quantscan.apps.sweeps import localiser
from quantscan.apps.sweeps import scan_workflow as qscan
from quantscan.atomic import atomic_path
from quantscan.device import resolve as resolve_device
from quantscan.export.onnx import describe_onnx, export_int8
from quantscan.models import build_model
from quantscan.scripting import run
from quantscan.seeds import derive_seed
from quantscan.train import TrainConfig, fit


def training_pool(paths, n_train: int, batch_size: int):
    """The first ``n_train`` replicates (the training pool) of a class's simulation shards."""
    shards = {int(Path(p).stem.removeprefix("batch")): p for p in paths}
    reps, length = qscan.load_test_replicates(shards, first_test=0, batch_size=batch_size)
    return reps[:n_train], length


def main(smk, log):
    w, p = smk.wildcards, smk.params
    settings = localiser.LocaliserSettings.from_config(p.settings)
    sweeps, length = training_pool(smk.input.sweep, p.n_train, p.sim_batch)
    neutrals, _ = training_pool(smk.input.neutral, p.n_train, p.sim_batch)
    density = localiser.snp_density([len(r.positions) for r in neutrals], length * len(neutrals))
    n_val = max(1, round(p.validation_fraction * min(len(sweeps), len(neutrals))))
    rng = np.random.default_rng(derive_seed(p.seed, "localiser_windows", w.scenario))
    x_tr, y_tr = localiser.training_windows(
        sweeps[n_val:], neutrals[n_val:], settings, density, length, rng
    )
    x_va, y_va = localiser.training_windows(
        sweeps[:n_val], neutrals[:n_val], settings, density, length, rng
    )
    seed = derive_seed(p.seed, "localiser_train", w.scenario)
    torch.manual_seed(seed)
    arch = settings.arch()
    model = build_model(arch)
    log.info(
        "%s: %d + %d training replicates -> %d training and %d validation windows %s, "
        "%d parameters, %.4f SNPs/bp",
        w.scenario,
        len(sweeps),
        len(neutrals),
        len(y_tr),
        len(y_va),
        x_tr.shape[1:],
        modelio.n_parameters(model),
        density,
    )
    checkpoint = Path(smk.output.model).with_name("checkpoint.pt")
    torch.set_num_threads(smk.threads)
    history = fit(
        model,
        x_tr,
        y_tr,
        x_va,
        y_va,
        TrainConfig(**p.train),
        seed,
        checkpoint=checkpoint,
        device=resolve_device(p.device),
    )
    model.eval()
    with torch.no_grad():
        pred = model(torch.from_numpy(x_va)).argmax(1).numpy()
    inside = y_va < settings.bins
    quality = {
        "val_bin_accuracy": float((pred[inside] == y_va[inside]).mean()),
        "val_bin_within_one": float((np.abs(pred[inside] - y_va[inside]) <= 1).mean()),
        "val_none_recall": float((pred[~inside] == settings.bins).mean()),
    }
    modelio.save_fp32(model, arch, smk.output.model)
    built = export_int8(
        model,
        x_tr,
        smk.output.onnx,
        smk.output.int8,
        calibration_samples=p.calibration_samples,
        seed=derive_seed(p.seed, "localiser_int8", w.scenario),
    )
    with atomic_path(smk.output.history) as tmp:
        pd.DataFrame([h | quality for h in history]).to_csv(tmp, sep="\t", index=False)
    plots.training_curves(history, smk.output.curves, f"sweep localiser, {w.scenario}")
    checkpoint.unlink(missing_ok=True)
    log.info(
        "validation: offset bin %.2f, within one bin %.2f, 'none' recall %.2f; int8 ONNX from "
        "%d calibration windows: %d bytes",
        quality["val_bin_accuracy"],
        quality["val_bin_within_one"],
        quality["val_none_recall"],
        built["calibration_samples"],
        describe_onnx(built["int8"])["file_bytes"],
    )


run(main, snakemake)
