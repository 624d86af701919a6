"""Compression of the trained sweep models: one job per (scenario, method) of config compress.methods.

Every job writes the primary variant as a packed model (model.qsp) with its metrics.json (a row of
results/sweeps/summary.tsv), rows.tsv (every variant the method trained, summary columns), and the
method's own table (details.tsv), figure (plot.png) and notes (notes.txt: per-layer quantizers, bit
table, search statistics, a config block to paste).

Methods of type int8 run in sweeps_compress_int8 instead (ONNX Runtime static int8: model.onnx, no
packed model; CP_INT8 / CP_PACKED in common.smk split the names); the viral model's the same way in
viral_compress / viral_compress_int8 (VIRAL_PACKED / VIRAL_INT8). compare_methods draws, per
application, every variant of every method: accuracy against size (Pareto) and against density.
"""


rule sweeps_compress:
    input:
        model="results/sweeps/models/{scenario}/fp32/model.pt",
        train="results/sweeps/data/{scenario}/train.npz",
        val="results/sweeps/data/{scenario}/val.npz",
        test="results/sweeps/data/{scenario}/test.npz",
        neutral_tests=sweep_fp_tests,
    output:
        model="results/sweeps/compress/{scenario}/{method}/model.qsp",
        metrics="results/sweeps/compress/{scenario}/{method}/metrics.json",
        rows="results/sweeps/compress/{scenario}/{method}/rows.tsv",
        details="results/sweeps/compress/{scenario}/{method}/details.tsv",
        notes="results/sweeps/compress/{scenario}/{method}/notes.txt",
        plot=report(
            "results/sweeps/compress/{scenario}/{method}/plot.png",
            caption="../report/compress.rst",
            category="Sweeps: compression",
            subcategory="{method}",
            labels={"scenario": "{scenario}", "method": "{method}"},
        ),
    log:
        "logs/sweeps/compress/{scenario}/{method}.log",
    benchmark:
        "results/benchmarks/rules/sweeps/compress/{scenario}/{method}.tsv"
    wildcard_constraints:
        method=_alternatives(CP_PACKED),
    conda:
        "../../envs/torch.yaml"
    threads: CP["threads"]
    resources:
        mem_mb=mem_by_attempt(3000),
        runtime=240,
    params:
        method=lambda wildcards: CP["methods"][wildcards.method],
        method_type=lambda wildcards: CP["methods"][wildcards.method]["type"],
        finetune=CP["finetune"],
        class_names=["neutral", "sweep"],
        neutral_scenarios=NEUTRAL_SCENARIOS,
        layer_presets=SWEEP_LAYER_PRESETS,
        seed=config["seed"],
    script:
        "../scripts/compress.py"


rule sweeps_compress_int8:
    input:
        model="results/sweeps/models/{scenario}/fp32/model.pt",
        train="results/sweeps/data/{scenario}/train.npz",
        test="results/sweeps/data/{scenario}/test.npz",
        neutral_tests=sweep_fp_tests,
    output:
        model="results/sweeps/compress/{scenario}/{method}/model.onnx",
        metrics="results/sweeps/compress/{scenario}/{method}/metrics.json",
        rows="results/sweeps/compress/{scenario}/{method}/rows.tsv",
        details="results/sweeps/compress/{scenario}/{method}/details.tsv",
        notes="results/sweeps/compress/{scenario}/{method}/notes.txt",
        plot=report(
            "results/sweeps/compress/{scenario}/{method}/plot.png",
            caption="../report/compress_int8.rst",
            category="Sweeps: compression",
            subcategory="{method}",
            labels={"scenario": "{scenario}", "method": "{method}"},
        ),
    log:
        "logs/sweeps/compress/{scenario}/{method}.log",
    benchmark:
        "results/benchmarks/rules/sweeps/compress/{scenario}/{method}.tsv"
    wildcard_constraints:
        method=_alternatives(CP_INT8),
    conda:
        "../../envs/torch.yaml"
    threads: CP["threads"]
    resources:
        mem_mb=mem_by_attempt(3000),
        runtime=60,
    params:
        method=lambda wildcards: CP["methods"][wildcards.method],
        class_names=["neutral", "sweep"],
        neutral_scenarios=NEUTRAL_SCENARIOS,
        seed=config["seed"],
    script:
        "../scripts/compress_int8.py"


rule compare_methods:
    input:
        unpack(compare_inputs),
    output:
        pareto=report(
            "results/{app}/compare/pareto.png",
            caption="../report/compare_pareto.rst",
            category="Compression: comparison",
            labels={"application": "{app}", "figure": "accuracy vs size"},
        ),
        density=report(
            "results/{app}/compare/density.png",
            caption="../report/compare_density.rst",
            category="Compression: comparison",
            labels={"application": "{app}", "figure": "accuracy vs density"},
        ),
        variants="results/{app}/compare/variants.tsv",
    log:
        "logs/{app}/compare.log",
    wildcard_constraints:
        app="sweeps|viral",
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        jobs=lambda wildcards: compare_jobs(wildcards.app),
    script:
        "../scripts/compare_methods.py"


# The viral model through the same engine: methods from viral.compress (VIRAL_PACKED in
# common.smk), fine-tuned with the training split's class weights like the fp32 model.
rule viral_compress:
    input:
        model="results/viral/models/{dataset}/fp32/model.pt",
        train="results/viral/data/{dataset}/train.npz",
        val="results/viral/data/{dataset}/val.npz",
        test="results/viral/data/{dataset}/test.npz",
        balance="results/viral/data/{dataset}/balance.json",
        neutral_tests=[],
    output:
        model="results/viral/compress/{dataset}/{method}/model.qsp",
        metrics="results/viral/compress/{dataset}/{method}/metrics.json",
        rows="results/viral/compress/{dataset}/{method}/rows.tsv",
        details="results/viral/compress/{dataset}/{method}/details.tsv",
        notes="results/viral/compress/{dataset}/{method}/notes.txt",
        plot=report(
            "results/viral/compress/{dataset}/{method}/plot.png",
            caption="../report/compress.rst",
            category="Viral: compression",
            subcategory="{method}",
            labels={"dataset": "{dataset}", "method": "{method}"},
        ),
    log:
        "logs/viral/compress/{dataset}/{method}.log",
    benchmark:
        "results/benchmarks/rules/viral/compress/{dataset}/{method}.tsv"
    wildcard_constraints:
        method=_alternatives(VIRAL_PACKED),
    conda:
        "../../envs/torch.yaml"
    threads: VIRAL["train"]["threads"]
    resources:
        mem_mb=mem_by_attempt(4000),
        runtime=240,
    params:
        method=viral_method,
        method_type=lambda wildcards: viral_method(wildcards)["type"],
        finetune=viral_finetune_params,
        class_names=VIRAL_OUTPUTS,
        neutral_scenarios=[],
        layer_presets={},
        seed=config["seed"],
    script:
        "../scripts/compress.py"


# int8 methods of viral.compress (VIRAL_INT8): post-training static int8 of the fp32 viral model
# through ONNX Runtime, as sweeps_compress_int8 (no fine-tuning, so no class weights; calibrated
# on training inputs, metrics from the int8 session on the test split).
rule viral_compress_int8:
    input:
        model="results/viral/models/{dataset}/fp32/model.pt",
        train="results/viral/data/{dataset}/train.npz",
        test="results/viral/data/{dataset}/test.npz",
    output:
        model="results/viral/compress/{dataset}/{method}/model.onnx",
        metrics="results/viral/compress/{dataset}/{method}/metrics.json",
        rows="results/viral/compress/{dataset}/{method}/rows.tsv",
        details="results/viral/compress/{dataset}/{method}/details.tsv",
        notes="results/viral/compress/{dataset}/{method}/notes.txt",
        plot=report(
            "results/viral/compress/{dataset}/{method}/plot.png",
            caption="../report/compress_int8.rst",
            category="Viral: compression",
            subcategory="{method}",
            labels={"dataset": "{dataset}", "method": "{method}"},
        ),
    log:
        "logs/viral/compress/{dataset}/{method}.log",
    benchmark:
        "results/benchmarks/rules/viral/compress/{dataset}/{method}.tsv"
    wildcard_constraints:
        method=_alternatives(VIRAL_INT8),
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        mem_mb=mem_by_attempt(4000),
        runtime=60,
    params:
        method=viral_method,
        class_names=VIRAL_OUTPUTS,
        seed=config["seed"],
    script:
        "../scripts/compress_int8.py"
