"""Connectomics: EM volumes -> split files (patches with affinity targets) -> the engine's train,
evaluate, compress and compress_int8 -> blockwise segmentation of the scan volumes with every
model and engine -> results/connectomics/summary.tsv."""


rule connectomics_data:
    output:
        **(
            {"scan": "results/connectomics/volumes/synthetic.h5"}
            if EM_DATASET == "synthetic"
            else {}
        ),
        train=f"results/connectomics/data/{EM_DATASET}/train.npz",
        val=f"results/connectomics/data/{EM_DATASET}/val.npz",
        test=f"results/connectomics/data/{EM_DATASET}/test.npz",
    log:
        "logs/connectomics/data.log",
    benchmark:
        "results/benchmarks/rules/connectomics/data.tsv"
    conda:
        "../../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=mem_by_attempt(4000),
        runtime=60,
    params:
        seed=config["seed"],
    script:
        "../../scripts/connectomics_data.py"


rule connectomics_store:
    input:
        model=lambda wildcards: engine_model_file(
            "connectomics", EM_DATASET, wildcards.model, wildcards.engine
        ),
        volume=em_volume_file,
    output:
        json="results/connectomics/scan/{volume}/{model}/{engine}/blocks/store.json",
    log:
        "logs/connectomics/store/{volume}/{model}/{engine}.log",
    conda:
        "../../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=mem_by_attempt(1000),
        runtime=10,
    params:
        spec=lambda wildcards: em_volume_spec(wildcards.volume),
    script:
        "../../scripts/connectomics_store.py"


rule connectomics_predict:
    input:
        store="results/connectomics/scan/{volume}/{model}/{engine}/blocks/store.json",
        model=lambda wildcards: engine_model_file(
            "connectomics", EM_DATASET, wildcards.model, wildcards.engine
        ),
        volume=em_volume_file,
    output:
        json="results/connectomics/scan/{volume}/{model}/{engine}/blocks/slab{slab}.json",
    log:
        "logs/connectomics/predict/{volume}/{model}/{engine}/slab{slab}.log",
    benchmark:
        "results/benchmarks/rules/connectomics/predict/{volume}/{model}/{engine}/slab{slab}.tsv"
    wildcard_constraints:
        slab=r"\d+",
    conda:
        "../../../envs/torch.yaml"
    threads: EM.threads("scan")
    resources:
        mem_mb=mem_by_attempt(4000),
        runtime=120,
    params:
        spec=lambda wildcards: em_volume_spec(wildcards.volume),
        slabs=EM_SLABS,
    script:
        "../../scripts/connectomics_predict.py"


rule connectomics_scan:
    input:
        store="results/connectomics/scan/{volume}/{model}/{engine}/blocks/store.json",
        slabs=expand(
            "results/connectomics/scan/{{volume}}/{{model}}/{{engine}}/blocks/slab{slab}.json",
            slab=range(EM_SLABS),
        ),
        volume=em_volume_file,
    output:
        metrics="results/connectomics/scan/{volume}/{model}/{engine}/metrics.json",
        affinities=directory(
            "results/connectomics/scan/{volume}/{model}/{engine}/affinities.ome.zarr"
        ),
        fragments=directory(
            "results/connectomics/scan/{volume}/{model}/{engine}/fragments.ome.zarr"
        ),
        segmentation=directory(
            "results/connectomics/scan/{volume}/{model}/{engine}/segmentation.ome.zarr"
        ),
        png=report(
            "results/connectomics/scan/{volume}/{model}/{engine}/section.png",
            caption="../../report/connectomics_section.rst",
            category="Connectomics",
            labels={"volume": "{volume}", "model": "{model}", "engine": "{engine}"},
        ),
    log:
        "logs/connectomics/scan/{volume}/{model}/{engine}.log",
    benchmark:
        "results/benchmarks/rules/connectomics/scan/{volume}/{model}/{engine}.tsv"
    conda:
        "../../../envs/torch.yaml"
    threads: EM.threads("scan")
    resources:
        mem_mb=mem_by_attempt(4000),
        runtime=120,
    params:
        spec=lambda wildcards: em_volume_spec(wildcards.volume),
        max_in_memory=200_000_000,
    script:
        "../../scripts/connectomics_scan.py"


rule connectomics_summary:
    input:
        models=engine_metrics("connectomics"),
        scans=[
            "results/connectomics/scan/{volume}/{model}/{engine}/metrics.json".format(
                **s
            )
            for s in EM_SCANS
        ],
    output:
        tsv=report(
            "results/connectomics/summary.tsv",
            caption="../../report/connectomics_summary.rst",
            category="Connectomics",
        ),
    log:
        "logs/connectomics/summary.log",
    conda:
        "../../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=mem_by_attempt(1000),
        runtime=10,
    script:
        "../../scripts/connectomics_summary.py"
