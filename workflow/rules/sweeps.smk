"""Selective sweeps: simulate -> encode -> split -> train (fp32) -> evaluate -> summary."""


rule sweeps_simulate:
    output:
        npz="results/sweeps/sim/{scenario}/{cls}/batch{batch}.npz",
    log:
        "logs/sweeps/simulate/{scenario}/{cls}/batch{batch}.log",
    benchmark:
        "results/benchmarks/rules/sweeps/simulate/{scenario}/{cls}/batch{batch}.tsv"
    conda:
        "../../envs/simulate.yaml"
    threads: 1
    resources:
        mem_mb=mem_by_attempt(1000),
        runtime=60,
    params:
        sim=sweep_sim_params,
        size=sweep_batch_size,
        seed=config["seed"],
    script:
        "../scripts/sweeps_simulate.py"


rule sweeps_encode:
    input:
        npz="results/sweeps/sim/{scenario}/{cls}/batch{batch}.npz",
        linked=sweep_linked_shard,
    output:
        npz="results/sweeps/images/{scenario}/{cls}/batch{batch}.npz",
    log:
        "logs/sweeps/encode/{scenario}/{cls}/batch{batch}.log",
    conda:
        "../../envs/simulate.yaml"
    threads: 1
    resources:
        mem_mb=mem_by_attempt(1000),
        runtime=20,
    params:
        image=sweep_encode_image,
        batch_size=SW["batch_size"],
    script:
        "../scripts/sweeps_encode.py"


rule sweeps_split:
    input:
        shards=sweep_image_shards,
    output:
        train="results/sweeps/data/{scenario}/train.npz",
        val="results/sweeps/data/{scenario}/val.npz",
        test="results/sweeps/data/{scenario}/test.npz",
        examples=report(
            "results/sweeps/data/{scenario}/examples.png",
            caption="../report/examples.rst",
            category="Sweeps: data",
            labels={"scenario": "{scenario}"},
        ),
    log:
        "logs/sweeps/split/{scenario}.log",
    conda:
        "../../envs/simulate.yaml"
    threads: 1
    resources:
        mem_mb=mem_by_attempt(2000),
        runtime=20,
    params:
        n_train=sweep_train_pool,
        val_fraction=SW["validation_fraction"],
        seed=config["seed"],
    script:
        "../scripts/sweeps_split.py"


rule sweeps_train:
    input:
        train="results/sweeps/data/{scenario}/train.npz",
        val="results/sweeps/data/{scenario}/val.npz",
    output:
        model="results/sweeps/models/{scenario}/fp32/model.pt",
        history="results/sweeps/models/{scenario}/fp32/history.tsv",
        curves=report(
            "results/sweeps/models/{scenario}/fp32/curves.png",
            caption="../report/curves.rst",
            category="Sweeps: training",
            labels={"scenario": "{scenario}", "method": "fp32"},
        ),
    log:
        "logs/sweeps/train/{scenario}/fp32.log",
    benchmark:
        "results/benchmarks/rules/sweeps/train/{scenario}/fp32.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: SW["train"]["threads"]
    resources:
        mem_mb=mem_by_attempt(4000),
        runtime=240,
    params:
        arch={"name": "sweepnet", "n_classes": 2, **SW["model"]},
        train=fit_settings(SW["train"]),
        seed=config["seed"],
    script:
        "../scripts/train.py"


rule sweeps_evaluate:
    input:
        model="results/sweeps/models/{scenario}/fp32/model.pt",
        test="results/sweeps/data/{scenario}/test.npz",
        neutral_tests=sweep_fp_tests,
    output:
        metrics="results/sweeps/models/{scenario}/fp32/metrics.json",
    log:
        "logs/sweeps/evaluate/{scenario}/fp32.log",
    benchmark:
        "results/benchmarks/rules/sweeps/evaluate/{scenario}/fp32.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: SW["train"]["threads"]
    resources:
        mem_mb=mem_by_attempt(4000),
        runtime=60,
    params:
        neutral_scenarios=NEUTRAL_SCENARIOS,
    script:
        "../scripts/sweeps_evaluate.py"


rule sweeps_summary:
    input:
        metrics=sweep_metrics() + compress_metrics(),
    output:
        tsv=report(
            "results/sweeps/summary.tsv",
            caption="../report/summary.rst",
            category="Sweeps: summary",
        ),
    log:
        "logs/sweeps/summary.log",
    conda:
        "../../envs/simulate.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/sweeps_summary.py"
