"""Post-training static int8 of an fp32 model through ONNX Runtime (a compress method of type int8,
any application): int8 model.onnx, the same model quantized in PyTorch (model.int8.pt, or why it
cannot be), metrics from the int8 engine, rows, details (latency and ops), notes and a figure."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")
from quantscan import apps, modelio
from quantscan.atomic import atomic_path, write_text
from quantscan.compress.methods.int8 import run_int8_method
from quantscan.data import load_split
from quantscan.scripting import extra_tests, run
from quantscan.seeds import derive_seed
from quantscan.summary import COLUMNS, metrics_json, rows_table
from quantscan.tasks import get_task


def main(smk, log):
    # its split layouts and architectures register; its task is the model's
    task = get_task(apps.get(smk.config, smk.wildcards.app).task)
    # the summary's scenario column: the application's data set
    scenario = smk.wildcards.dataset
    name = smk.wildcards.method
    model, arch = modelio.load_fp32(smk.input.model)
    train, test = load_split(smk.input.train), load_split(smk.input.test)
    others = extra_tests(smk)
    log.info(
        "%s/%s: %d training (calibration pool), %d test inputs %s",
        scenario,
        name,
        len(train[1]),
        len(test[1]),
        train[0].shape[1:],
    )
    result = run_int8_method(
        name,
        smk.params.method,
        model,
        train,
        test,
        smk.params.class_names,
        derive_seed(smk.params.seed, "compress", scenario, name),
        smk.output.model,
        threads=smk.threads,
        extra_sets=others,
        scenario=scenario,
        log=log,
        task=task,
        torch_int8_path=smk.output.torch_model,
        arch=arch,
    )
    metrics = {**result.metrics, "arch": arch}
    write_text(smk.output.metrics, metrics_json(metrics))
    for path, table in (
        (smk.output.rows, rows_table(result.rows, COLUMNS)),
        (smk.output.details, result.details),
    ):
        with atomic_path(path) as tmp:
            table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    write_text(smk.output.notes, result.notes)
    result.plot(smk.output.plot, f"{metrics['method']} (int8, ONNX Runtime), {scenario}")


run(main, snakemake)
