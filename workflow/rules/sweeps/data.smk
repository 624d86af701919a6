"""Selective sweeps: simulate -> encode -> split (then the engine's train, evaluate and compress
rules, engine.smk) -> summary."""


rule sweeps_simulate:
    output:
        npz="results/sweeps/sim/{scenario}/{cls}/batch{batch}.npz",
    log:
        "logs/sweeps/simulate/{scenario}/{cls}/batch{batch}.log",
    benchmark:
        "results/benchmarks/rules/sweeps/simulate/{scenario}/{cls}/batch{batch}.tsv"
    conda:
        "../../../envs/simulate.yaml"
    threads: 1
    resources:
        mem_mb=mem_by_attempt(1000),
        runtime=60,
    params:
        sim=sweep_sim_params,
        size=sweep_batch_size,
        seed=config["seed"],
    script:
        "../../scripts/sweeps_simulate.py"


rule sweeps_encode:
    input:
        npz="results/sweeps/sim/{scenario}/{cls}/batch{batch}.npz",
        linked=sweep_linked_shard,
    output:
        npz="results/sweeps/images/{scenario}/{cls}/batch{batch}.npz",
    log:
        "logs/sweeps/encode/{scenario}/{cls}/batch{batch}.log",
    conda:
        "../../../envs/simulate.yaml"
    threads: 1
    resources:
        mem_mb=mem_by_attempt(1000),
        runtime=20,
    params:
        image=sweep_encode_image,
        batch_size=SW["batch_size"],
    script:
        "../../scripts/sweeps_encode.py"


rule sweeps_split:
    input:
        shards=sweep_image_shards,
    output:
        train="results/sweeps/data/{scenario}/train.npz",
        val="results/sweeps/data/{scenario}/val.npz",
        test="results/sweeps/data/{scenario}/test.npz",
        examples=report(
            "results/sweeps/data/{scenario}/examples.png",
            caption="../../report/examples.rst",
            category="Sweeps: data",
            labels={"scenario": "{scenario}"},
        ),
    log:
        "logs/sweeps/split/{scenario}.log",
    conda:
        "../../../envs/simulate.yaml"
    threads: 1
    resources:
        mem_mb=mem_by_attempt(2000),
        runtime=20,
    params:
        n_train=sweep_train_pool,
        val_fraction=SW["validation_fraction"],
        seed=config["seed"],
    script:
        "../../scripts/sweeps_split.py"


rule sweeps_summary:
    input:
        metrics=engine_metrics("sweeps"),
    output:
        tsv=report(
            "results/sweeps/summary.tsv",
            caption="../../report/summary.rst",
            category="Sweeps: summary",
        ),
    log:
        "logs/sweeps/summary.log",
    conda:
        "../../../envs/simulate.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../../scripts/sweeps_summary.py"
