"""Genome-wide sweep scan with the fp32 and compressed sweep models (plan: sweeps/common.smk, SCAN).

simulated chromosome / user input -> prepare (compact npz per chromosome)
  -> scan_region (grid regions x models x engines) -> scan_merge (p-values, peaks, tracks)
scan_sims (neutral replicates at each input's haplotype count, sweeps at random positions at the
  model's) -> scan_replicates (per model x engine, sample-size policy) -> p-value null + metrics
  -> scan_evaluate (results/sweeps/scan_summary.tsv)
"""


rule scan_chromosome_sim:
    output:
        trees="results/sweeps/scan/sim/{chrom}.trees",
        truth="results/sweeps/scan/sim/{chrom}.truth.tsv",
        bed="results/sweeps/scan/sim/{chrom}.truth.bed",
    log:
        "logs/sweeps/scan/sim/{chrom}.log",
    benchmark:
        "results/benchmarks/rules/sweeps/scan/sim/{chrom}.tsv"
    wildcard_constraints:
        chrom=_alternatives(SCAN.simulated),
    conda:
        "../../../envs/simulate.yaml"
    threads: 1
    resources:
        mem_mb=mem_by_attempt(2000),
        runtime=120,
    params:
        spec=lambda wildcards: SCAN.simulated[wildcards.chrom],
        sweeps=SW,
        seed=config["seed"],
    script:
        "../../scripts/scan_simulate.py"


rule scan_prepare:
    input:
        source=scan_source,
    output:
        npz="results/sweeps/scan/data/{scan_input}/{chrom}.npz",
    log:
        "logs/sweeps/scan/prepare/{scan_input}/{chrom}.log",
    benchmark:
        "results/benchmarks/rules/sweeps/scan/prepare/{scan_input}/{chrom}.tsv"
    wildcard_constraints:
        scan_input=SCAN_INPUTS,
        chrom=SCAN_CHROMS,
    conda:
        "../../../envs/simulate.yaml"
    # a tree sequence is decoded in one process per thread (io.trees.read_trees_packed)
    threads: lambda wildcards: 2 if SCAN.inputs[wildcards.scan_input].format == "trees" else 1
    resources:
        mem_mb=prepare_mem,
        runtime=120,
    params:
        inp=lambda wildcards: dataclasses.asdict(SCAN.inputs[wildcards.scan_input]),
        window=SCAN.window,
    script:
        "../../scripts/scan_prepare.py"


rule scan_onnx:
    input:
        model="results/sweeps/models/{scenario}/fp32/model.pt",
        train="results/sweeps/data/{scenario}/train.npz",
    output:
        onnx="results/sweeps/scan/onnx/{scenario}/fp32.onnx",
        int8="results/sweeps/scan/onnx/{scenario}/fp32.int8.onnx",
    log:
        "logs/sweeps/scan/onnx/{scenario}.log",
    benchmark:
        "results/benchmarks/rules/sweeps/scan/onnx/{scenario}.tsv"
    conda:
        "../../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=mem_by_attempt(2000),
        runtime=30,
    params:
        calibration_samples=SC["calibration_samples"],
        seed=config["seed"],
    script:
        "../../scripts/scan_onnx.py"


rule localiser_train:
    input:
        sweep=localiser_sim_shards("sweep"),
        neutral=localiser_sim_shards("neutral"),
    output:
        model="results/sweeps/localiser/{scenario}/model.pt",
        history="results/sweeps/localiser/{scenario}/history.tsv",
        curves="results/sweeps/localiser/{scenario}/curves.png",
        onnx="results/sweeps/scan/onnx/{scenario}/position.onnx",
        int8="results/sweeps/scan/onnx/{scenario}/position.int8.onnx",
    log:
        "logs/sweeps/localiser/{scenario}.log",
    benchmark:
        "results/benchmarks/rules/sweeps/localiser/{scenario}.tsv"
    conda:
        "../../../envs/torch.yaml"
    threads: SC["localiser"]["train"]["threads"]
    resources:
        mem_mb=mem_by_attempt(4000),
        runtime=240,
        gpu=1 if config["device"] == "cuda" else 0,
    params:
        settings=LocaliserSettings.training_keys(SC["localiser"]),
        channels=LOCALISER_CHANNELS,  # a new window layout retrains the localiser
        train={k: v for k, v in SC["localiser"]["train"].items() if k != "threads"},
        n_train=SW["replicates"]["train"],
        sim_batch=SW["batch_size"],
        validation_fraction=SW["validation_fraction"],
        calibration_samples=SC["calibration_samples"],
        device=config["device"],
        seed=config["seed"],
    script:
        "../../scripts/localiser_train.py"


rule scan_sims:
    output:
        npz="results/sweeps/scan/sims/{sims}/h{haps}/{cls}/batch{batch}.npz",
    log:
        "logs/sweeps/scan/sims/{sims}/h{haps}/{cls}/batch{batch}.log",
    benchmark:
        "results/benchmarks/rules/sweeps/scan/sims/{sims}/h{haps}/{cls}/batch{batch}.tsv"
    wildcard_constraints:
        sims="|".join(ALL_SCENARIOS),
        haps=r"\d+",
    conda:
        "../../../envs/simulate.yaml"
    threads: 1
    resources:
        mem_mb=mem_by_attempt(2000),
        runtime=120,
    params:
        sim=scan_sim_params,
        size=scan_sim_batch_size,
        positions=SC["evaluate"]["positions"],
        seed=config["seed"],
    script:
        "../../scripts/scan_sims.py"


rule scan_replicates:
    input:
        model=lambda wildcards: scan_model_file(
            wildcards.scenario, wildcards.scan_model
        ),
        onnx=lambda wildcards: scan_onnx_file(
            wildcards.scenario, wildcards.scan_model, wildcards.engine
        ),
        sweep=scan_sim_shards("sweep"),
        neutral=scan_sim_shards("neutral"),
    output:
        npz="results/sweeps/scan/replicates/{scenario}/{scan_model}/{engine}/{sims}.h{haps}.npz",
    log:
        "logs/sweeps/scan/replicates/{scenario}/{scan_model}/{engine}/{sims}.h{haps}.log",
    benchmark:
        "results/benchmarks/rules/sweeps/scan/replicates/{scenario}/{scan_model}/{engine}/{sims}.h{haps}.tsv"
    wildcard_constraints:
        scan_model=SCAN_MODELS,
        engine=SCAN_ENGINES,
        sims="|".join(ALL_SCENARIOS),
        haps=r"\d+",
    conda:
        "../../../envs/torch.yaml"
    threads: SC["threads"]
    resources:
        mem_mb=mem_by_attempt(3000),
        runtime=120,
    params:
        evaluate=SC["evaluate"],
        image=SW["image"],
        engine_batch=SC["batch_size"],
        localiser=SC["localiser"],
        sample_size=SC["sample_size"],
        model_haplotypes=lambda wildcards: SCAN.model_haplotypes[wildcards.scenario],
        seed=config["seed"],
    script:
        "../../scripts/scan_replicates.py"


rule scan_classic:
    input:
        sweep=scan_sim_shards("sweep"),
        neutral=scan_sim_shards("neutral"),
    output:
        npz="results/sweeps/scan/classic/{sims}.h{haps}.npz",
    log:
        "logs/sweeps/scan/classic/{sims}.h{haps}.log",
    benchmark:
        "results/benchmarks/rules/sweeps/scan/classic/{sims}.h{haps}.tsv"
    wildcard_constraints:
        sims="|".join(ALL_SCENARIOS),
        haps=r"\d+",
    conda:
        "../../../envs/simulate.yaml"
    threads: 1
    resources:
        mem_mb=mem_by_attempt(2000),
        runtime=60,
    params:
        statistics=SC["evaluate"]["classic"],
        grid_points=SC["evaluate"]["grid_points"],
    script:
        "../../scripts/scan_classic.py"


rule scan_region:
    input:
        npz="results/sweeps/scan/data/{scan_input}/{chrom}.npz",
        model=lambda wildcards: scan_model_file(
            scan_input_scenario(wildcards), wildcards.scan_model
        ),
        onnx=lambda wildcards: scan_onnx_file(
            scan_input_scenario(wildcards), wildcards.scan_model, wildcards.engine
        ),
    output:
        tsv="results/sweeps/scan/regions/{scan_input}/{scan_model}/{engine}/{chrom}.region{region}.tsv",
        info="results/sweeps/scan/regions/{scan_input}/{scan_model}/{engine}/{chrom}.region{region}.json",
    log:
        "logs/sweeps/scan/region/{scan_input}/{scan_model}/{engine}/{chrom}.region{region}.log",
    benchmark:
        "results/benchmarks/rules/sweeps/scan/region/{scan_input}/{scan_model}/{engine}/{chrom}.region{region}.tsv"
    wildcard_constraints:
        scan_input=SCAN_INPUTS,
        scan_model=SCAN_MODELS,
        engine=SCAN_ENGINES,
        chrom=SCAN_CHROMS,
        region=r"\d+",
    conda:
        "../../../envs/torch.yaml"
    threads: SC["threads"]
    resources:
        mem_mb=scan_mem(2000, 10),
        runtime=240,
    params:
        scan=SC,
        window=SCAN.window,
        image=SW["image"],
        sample_size=lambda wildcards: SCAN.inputs[wildcards.scan_input].sample_size,
        seed=config["seed"],
    script:
        "../../scripts/scan_region.py"


rule scan_merge:
    input:
        regions=expand(
            "results/sweeps/scan/regions/{{scan_input}}/{{scan_model}}/{{engine}}/{{chrom}}.region{region}.tsv",
            region=SCAN_REGIONS,
        ),
        infos=expand(
            "results/sweeps/scan/regions/{{scan_input}}/{{scan_model}}/{{engine}}/{{chrom}}.region{region}.json",
            region=SCAN_REGIONS,
        ),
        null=scan_null_file,
        truth=scan_truth_file,
    output:
        tsv="results/sweeps/scan/{scan_input}/{scan_model}/{engine}/{chrom}.scores.tsv",
        bedgraph="results/sweeps/scan/{scan_input}/{scan_model}/{engine}/{chrom}.scores.bedgraph",
        bed="results/sweeps/scan/{scan_input}/{scan_model}/{engine}/{chrom}.peaks.bed",
        png=report(
            "results/sweeps/scan/{scan_input}/{scan_model}/{engine}/{chrom}.png",
            caption="../../report/scan_track.rst",
            category="Sweeps: scan",
            subcategory="{scan_input}",
            labels={
                "chromosome": "{chrom}",
                "model": "{scan_model}",
                "engine": "{engine}",
            },
        ),
        info="results/sweeps/scan/{scan_input}/{scan_model}/{engine}/{chrom}.scan.json",
    log:
        "logs/sweeps/scan/merge/{scan_input}/{scan_model}/{engine}/{chrom}.log",
    benchmark:
        "results/benchmarks/rules/sweeps/scan/merge/{scan_input}/{scan_model}/{engine}/{chrom}.tsv"
    wildcard_constraints:
        scan_input=SCAN_INPUTS,
        scan_model=SCAN_MODELS,
        engine=SCAN_ENGINES,
        chrom=SCAN_CHROMS,
    conda:
        "../../../envs/simulate.yaml"
    threads: 1
    resources:
        mem_mb=scan_mem(1000, 20),
        runtime=30,
    params:
        peaks=SC["peaks"],
        base=lambda wildcards: SCAN.inputs[wildcards.scan_input].base,
        sample_size=lambda wildcards: SCAN.inputs[wildcards.scan_input].sample_size,
        scenario=scan_input_scenario,
        null_scenario=lambda wildcards: SCAN.inputs[wildcards.scan_input].null_scenario,
        statistic=lambda wildcards: scan_plan.statistic_for(wildcards.scan_model, SC),
        smooth_bp=lambda wildcards: scan_plan.smooth_bp_for(
            wildcards.scan_model, SC["smooth_bp"]
        ),
        min_null_windows=SC["neutral"]["min_windows"],
    script:
        "../../scripts/scan_merge.py"


rule scan_evaluate:
    input:
        replicates=[
            "results/sweeps/scan/replicates/{scenario}/{model}/{engine}/{scenario}.h{haps}.npz".format(
                **job
            )
            for job in SCAN_EVALUATE
        ],
        chromosomes=[
            f"results/sweeps/scan/{scan_plan.SIMULATED}/{job['model']}/{job['engine']}/{job['chrom']}.scores.tsv"
            for job in SCAN_CHROMOSOME_EVALUATE
        ],
        chromosome_infos=[
            f"results/sweeps/scan/{scan_plan.SIMULATED}/{job['model']}/{job['engine']}/{job['chrom']}.scan.json"
            for job in SCAN_CHROMOSOME_EVALUATE
        ],
        truths=[
            f"results/sweeps/scan/sim/{job['chrom']}.truth.tsv"
            for job in SCAN_CHROMOSOME_EVALUATE
        ],
        classic=[
            f"results/sweeps/scan/classic/{s}.h{SCAN.model_haplotypes[s]}.npz"
            for s in SCAN_CLASSIC
        ],
    output:
        tsv=report(
            "results/sweeps/scan_summary.tsv",
            caption="../../report/scan_summary.rst",
            category="Sweeps: scan",
        ),
    log:
        "logs/sweeps/scan/evaluate.log",
    benchmark:
        "results/benchmarks/rules/sweeps/scan/evaluate.tsv"
    conda:
        "../../../envs/simulate.yaml"
    threads: 1
    resources:
        mem_mb=mem_by_attempt(2000),
        runtime=30,
    params:
        jobs=SCAN_EVALUATE,
        chromosome_jobs=SCAN_CHROMOSOME_EVALUATE,
        fpr=SC["evaluate"]["fpr"],
        tolerance=SC["evaluate"]["tolerance"],
        smooth_bp=SC["smooth_bp"],
        scan_statistics={
            job["model"]: scan_plan.statistic_for(job["model"], SC)
            for job in SCAN_EVALUATE
        },
        classic_scenarios=SCAN_CLASSIC,
    script:
        "../../scripts/scan_evaluate.py"
