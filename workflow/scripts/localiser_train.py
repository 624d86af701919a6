"""Train a scenario's sweep localiser (PositionNet on physical-span windows) from its training
simulations, then export it to ONNX fp32 and static int8 for the scan's engines."""

import sys
from pathlib import Path

sys.path.insert(0, f"{snakemake.scriptdir}/..")
import pandas as pd
import torch

from quantscan import modelio, plots
from quantscan.apps.sweeps import localiser, scan_replicates
from quantscan.atomic import atomic_path
from quantscan.device import resolve as resolve_device
from quantscan.export.onnx import describe_onnx, export_int8
from quantscan.scripting import run
from quantscan.seeds import derive_seed


def training_pool(paths, n_train: int, batch_size: int):
    """The first ``n_train`` replicates (the training pool) of a class's simulation shards."""
    shards = {int(Path(p).stem.removeprefix("batch")): p for p in paths}
    reps, length = scan_replicates.load_test_replicates(shards, first_test=0, batch_size=batch_size)
    return reps[:n_train], length


def main(smk, log):
    w, p = smk.wildcards, smk.params
    settings = localiser.LocaliserSettings.from_config(p.settings)
    sweeps, length = training_pool(smk.input.sweep, p.n_train, p.sim_batch)
    neutrals, _ = training_pool(smk.input.neutral, p.n_train, p.sim_batch)
    torch.set_num_threads(smk.threads)
    checkpoint = Path(smk.output.model).with_name("checkpoint.pt")
    t = localiser.train(
        sweeps,
        neutrals,
        length,
        settings,
        p.train,
        seed=derive_seed(p.seed, "localiser_train", w.scenario),
        validation_fraction=p.validation_fraction,
        device=resolve_device(p.device),
        checkpoint=checkpoint,
        log=log,
    )
    model, arch, history, quality, x_tr = t.model, t.arch, t.history, t.quality, t.x_train
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
