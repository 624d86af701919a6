"""Compress an fp32 model with one configured method (any application): packed model, metrics,
all variants' rows, the method's table, figure and notes.

The packed model is loaded back and must predict exactly like the in-memory model on the test set.
The application's learning task (``App.task``) decides the fine-tuning loss, the probabilities
(softmax over classes, sigmoid per voxel, ...) and the metrics.
"""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from quantscan import apps, modelio
from quantscan.atomic import atomic_path, write_text
from quantscan.compress.methods import run_method
from quantscan.data import load_split
from quantscan.errors import QuantscanError
from quantscan.export.packed import load_packed, save_packed
from quantscan.scripting import extra_tests, run
from quantscan.seeds import derive_seed
from quantscan.summary import COLUMNS, metrics_json, rows_table
from quantscan.tasks import error_rate, get_task
from quantscan.train import EVAL_BATCH, TrainConfig, predict_proba


def main(smk, log):
    start = time.perf_counter()
    # its split layouts and architectures register; its task is the model's
    task = get_task(apps.get(smk.config, smk.wildcards.app).task)
    # the summary's scenario column: the application's data set
    scenario = smk.wildcards.dataset
    name = smk.wildcards.method
    model, arch = modelio.load_fp32(smk.input.model)
    train, val, test = (load_split(p) for p in (smk.input.train, smk.input.val, smk.input.test))
    others = [(n, x, y) for n, (x, y) in extra_tests(smk).items()]

    def extra_eval(m):
        return {
            f"fpr_{n}": error_rate(task, y, predict_proba(m, x, EVAL_BATCH, task))
            for n, x, y in others
        }

    log.info(
        "%s/%s: %d training, %d validation, %d test inputs %s",
        scenario,
        name,
        len(train[1]),
        len(val[1]),
        len(test[1]),
        train[0].shape[1:],
    )
    seed = derive_seed(smk.params.seed, "compress", scenario, name)
    # beside the outputs but none of them: a killed job's rerun resumes its fine-tunes
    checkpoints = Path(smk.output.model).parent / "checkpoints"
    result = run_method(
        name,
        smk.params.method,
        model,
        arch,
        train,
        val,
        test,
        smk.params.class_names,
        TrainConfig(**smk.params.finetune),
        seed,
        log,
        extra_eval if others else None,
        checkpoints,
        layer_presets=smk.params.layer_presets,
        task=task,
    )
    primary = result.primary

    meta = {"scenario": scenario, "method": name, "variant": primary.name}
    nbytes = save_packed(primary.model, smk.output.model, arch, extra=meta)
    loaded, _ = load_packed(smk.output.model)
    # the trained model's probabilities from its evaluation (one test-set pass fewer)
    p_memory = primary.test_proba
    if p_memory is None:
        p_memory = predict_proba(primary.model, test[0], EVAL_BATCH, task)
    p_file = predict_proba(loaded, test[0], EVAL_BATCH, task)
    if not np.array_equal(p_memory, p_file):
        worst = float(np.abs(p_memory - p_file).max()) if p_memory.size else 0.0
        raise QuantscanError(
            f"{smk.output.model}: the packed model does not reproduce the trained one "
            f"(largest probability difference {worst:g})"
        )
    log.info(
        "packed model %s (%d bytes) reproduces all %d test probabilities exactly",
        smk.output.model,
        nbytes,
        len(p_file),
    )

    labels = {"scenario": scenario, "arch": arch}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for v in result.variants:
            size = nbytes if v.primary else save_packed(v.model, Path(tmp) / "v.qsp", arch)
            rows.append({**v.metrics, "scenario": scenario, "method": v.name, "file_bytes": size})
    metrics = {**primary.metrics, **labels, "method": primary.name, "file_bytes": nbytes}
    metrics["layer_config"] = primary.layer_config
    metrics["compression"] = {
        "name": name,
        "type": smk.params.method["type"],
        "config": smk.params.method,
        "finetune_epochs": primary.epochs,
        "val_accuracy": primary.val_accuracy,
        "variants": len(result.variants),
        "seconds": round(time.perf_counter() - start, 2),
    }
    write_text(smk.output.metrics, metrics_json(metrics))
    for path, table in (
        (smk.output.rows, rows_table(rows, COLUMNS)),
        (smk.output.details, result.details),
    ):
        with atomic_path(path) as tmp:
            table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    write_text(smk.output.notes, result.notes)
    result.plot(smk.output.plot, f"{name} ({smk.params.method['type']}), {scenario}")
    shutil.rmtree(checkpoints, ignore_errors=True)
    log.info(
        "%s: primary %s, test accuracy %.4f, %.2f%% of fp32 bits, %d variants, %.1f s",
        name,
        primary.name,
        primary.metrics["accuracy"],
        primary.metrics["size_pct"],
        len(result.variants),
        time.perf_counter() - start,
    )


run(main, snakemake)
