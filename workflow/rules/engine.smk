"""The engine's rules, the same for every application ({app}): training, evaluation, compression
(packed and int8), the comparison of methods and the generic scan. What differs between
applications comes from their quantscan.apps.base.App (APPS in common.smk): data sets, classes,
model, settings, extra inputs. An application's own steps are in workflow/rules/<app>/.

Methods of type int8 run in compress_int8 (ONNX Runtime static int8: model.onnx, no packed model),
the others in compress (packed model.qsp); a method name means one of the two in every
application (ENGINE_INT8 / ENGINE_PACKED in common.smk).
"""


rule app_data:
    output:
        "results/{app}/data/{dataset}/{split}.npz",
    log:
        "logs/{app}/data/{dataset}/{split}.log",
    wildcard_constraints:
        app=_alternatives(DATA_APPS),
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=mem_by_attempt(2000),
        runtime=60,
    params:
        seed=config["seed"],
    script:
        "../scripts/app_data.py"


rule train:
    input:
        unpack(engine_data_inputs),
        train="results/{app}/data/{dataset}/train.npz",
        val="results/{app}/data/{dataset}/val.npz",
    output:
        model="results/{app}/models/{dataset}/fp32/model.pt",
        history="results/{app}/models/{dataset}/fp32/history.tsv",
        curves=report(
            "results/{app}/models/{dataset}/fp32/curves.png",
            caption="../report/curves.rst",
            category="Training",
            subcategory="{app}",
            labels={"data set": "{dataset}", "method": "fp32"},
        ),
    log:
        "logs/{app}/train/{dataset}/fp32.log",
    benchmark:
        "results/benchmarks/rules/{app}/train/{dataset}/fp32.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: lambda wildcards: APPS[wildcards.app].threads("train")
    resources:
        mem_mb=mem_by_attempt(4000),
        runtime=240,
        # device: cuda trains on a GPU: SLURM jobs ask for one (the plugin passes --gpus)
        gpu=1 if config["device"] == "cuda" else 0,
    params:
        arch=lambda wildcards: APPS[wildcards.app].arch(),
        train=lambda wildcards, input: APPS[wildcards.app].fit_settings(
            wildcards.dataset, dict(input.items())
        ),
        task=lambda wildcards: APPS[wildcards.app].task,
        device=config["device"],
        seed=config["seed"],
    script:
        "../scripts/train.py"


rule evaluate:
    input:
        model="results/{app}/models/{dataset}/fp32/model.pt",
        test="results/{app}/data/{dataset}/test.npz",
        extra_tests=engine_extra_tests,
    output:
        metrics="results/{app}/models/{dataset}/fp32/metrics.json",
    log:
        "logs/{app}/evaluate/{dataset}/fp32.log",
    benchmark:
        "results/benchmarks/rules/{app}/evaluate/{dataset}/fp32.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: lambda wildcards: APPS[wildcards.app].threads("evaluate")
    resources:
        mem_mb=mem_by_attempt(4000),
        runtime=60,
    params:
        extra_test_names=engine_extra_test_names,
    script:
        "../scripts/evaluate.py"


rule compress:
    input:
        unpack(engine_data_inputs),
        model="results/{app}/models/{dataset}/fp32/model.pt",
        train="results/{app}/data/{dataset}/train.npz",
        val="results/{app}/data/{dataset}/val.npz",
        test="results/{app}/data/{dataset}/test.npz",
        extra_tests=engine_extra_tests,
    output:
        model="results/{app}/compress/{dataset}/{method}/model.qsp",
        metrics="results/{app}/compress/{dataset}/{method}/metrics.json",
        rows="results/{app}/compress/{dataset}/{method}/rows.tsv",
        details="results/{app}/compress/{dataset}/{method}/details.tsv",
        notes="results/{app}/compress/{dataset}/{method}/notes.txt",
        plot=report(
            "results/{app}/compress/{dataset}/{method}/plot.png",
            caption="../report/compress.rst",
            category="Compression",
            subcategory="{app}: {method}",
            labels={"data set": "{dataset}", "method": "{method}"},
        ),
    log:
        "logs/{app}/compress/{dataset}/{method}.log",
    benchmark:
        "results/benchmarks/rules/{app}/compress/{dataset}/{method}.tsv"
    wildcard_constraints:
        method=_alternatives(ENGINE_PACKED),
    conda:
        "../../envs/torch.yaml"
    threads: lambda wildcards: APPS[wildcards.app].threads("compress")
    resources:
        mem_mb=mem_by_attempt(4000),
        runtime=240,
    params:
        method=engine_method,
        method_type=lambda wildcards: engine_method(wildcards)["type"],
        finetune=lambda wildcards, input: APPS[wildcards.app].fit_settings(
            wildcards.dataset, dict(input.items()), finetune=True
        ),
        class_names=lambda wildcards: APPS[wildcards.app].class_names(),
        extra_test_names=engine_extra_test_names,
        layer_presets=lambda wildcards: APPS[wildcards.app].layer_presets(),
        seed=config["seed"],
    script:
        "../scripts/compress.py"


rule compress_int8:
    input:
        model="results/{app}/models/{dataset}/fp32/model.pt",
        train="results/{app}/data/{dataset}/train.npz",
        test="results/{app}/data/{dataset}/test.npz",
        extra_tests=engine_extra_tests,
    output:
        model="results/{app}/compress/{dataset}/{method}/model.onnx",
        torch_model="results/{app}/compress/{dataset}/{method}/model.int8.pt",
        metrics="results/{app}/compress/{dataset}/{method}/metrics.json",
        rows="results/{app}/compress/{dataset}/{method}/rows.tsv",
        details="results/{app}/compress/{dataset}/{method}/details.tsv",
        notes="results/{app}/compress/{dataset}/{method}/notes.txt",
        plot=report(
            "results/{app}/compress/{dataset}/{method}/plot.png",
            caption="../report/compress_int8.rst",
            category="Compression",
            subcategory="{app}: {method}",
            labels={"data set": "{dataset}", "method": "{method}"},
        ),
    log:
        "logs/{app}/compress/{dataset}/{method}.log",
    benchmark:
        "results/benchmarks/rules/{app}/compress/{dataset}/{method}.tsv"
    wildcard_constraints:
        method=_alternatives(ENGINE_INT8),
    conda:
        "../../envs/torch.yaml"
    threads: lambda wildcards: APPS[wildcards.app].threads("compress_int8")
    resources:
        mem_mb=mem_by_attempt(4000),
        runtime=60,
    params:
        method=engine_method,
        class_names=lambda wildcards: APPS[wildcards.app].class_names(),
        extra_test_names=engine_extra_test_names,
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


rule score:
    input:
        model=lambda wildcards: engine_model_file(
            wildcards.app, wildcards.dataset, wildcards.model
        ),
        windows=lambda wildcards: APPS[wildcards.app].scan_inputs()[wildcards.input],
    output:
        "results/{app}/scan/{dataset}/{model}/{engine}/{input}.tsv",
    log:
        "logs/{app}/scan/{dataset}/{model}/{engine}/{input}.log",
    benchmark:
        "results/benchmarks/rules/{app}/scan/{dataset}/{model}/{engine}/{input}.tsv"
    wildcard_constraints:
        app=_alternatives(SCORE_APPS),
    conda:
        "../../envs/torch.yaml"
    threads: lambda wildcards: APPS[wildcards.app].threads("scan")
    resources:
        mem_mb=mem_by_attempt(2000),
        runtime=60,
    params:
        class_names=lambda wildcards: APPS[wildcards.app].class_names(),
    script:
        "../scripts/score.py"
