"""Viral classification (seed 004): sequences per class (simulated, NCBI or local FASTA) -> split
-> train the fp32 ViralCNN -> evaluate -> summary; classify FASTA files with a (compressed) model.

Compression: the methods of viral.compress run in compress.smk (rule viral_compress, int8 ones in
viral_compress_int8; their names are VIRAL_COMPRESSED in common.smk); their metrics.json join
results/viral/summary.tsv and viral.classify.model can name any of them (default: the packed
q_then_p_iter model; an int8 method's model.onnx runs through ONNX Runtime).
"""


rule viral_simulate:
    output:
        fasta="results/viral/raw/simulated/{vclass}.fasta",
    log:
        "logs/viral/simulate/{vclass}.log",
    benchmark:
        "results/benchmarks/rules/viral/simulate/{vclass}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=mem_by_attempt(1000),
        runtime=30,
    params:
        spec=viral_simulate_class,
        options=VIRAL["simulate"]["options"],
        seed=config["seed"],
    script:
        "../scripts/viral_simulate.py"


rule viral_local:
    input:
        fastas=viral_local_paths,
    output:
        fasta="results/viral/raw/local/{vclass}.fasta",
    log:
        "logs/viral/local/{vclass}.log",
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=mem_by_attempt(2000),
        runtime=30,
    script:
        "../scripts/viral_local.py"


# One download job at a time for the whole workflow (NCBI's rate limit is per user, and
# Bio.Entrez throttles per process): resources ncbi=1 with --resources ncbi=1 (set in the
# workflow profiles), and a lock file in the cache folder for runs without it.
rule viral_download:
    output:
        fasta=ensure("results/viral/raw/ncbi/{vclass}.fasta", non_empty=True),
    log:
        "logs/viral/download/{vclass}.log",
    retries: 3
    localrule: True
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        ncbi=1,
        mem_mb=1000,
        runtime=240,
    params:
        query=viral_ncbi_query,
        tool=VIRAL["ncbi"]["tool"],
        email=VIRAL["ncbi"]["email"],
        batch_size=VIRAL["ncbi"]["batch_size"],
        max_retries=VIRAL["ncbi"]["max_retries"],
        on_drift=VIRAL["ncbi"]["on_drift"],
        cache=VIRAL["ncbi"]["cache"],
        seed=config["seed"],
    script:
        "../scripts/viral_download.py"


rule viral_split:
    input:
        fastas=viral_raw_fastas,
    output:
        train="results/viral/data/{dataset}/train.npz",
        val="results/viral/data/{dataset}/val.npz",
        test="results/viral/data/{dataset}/test.npz",
        test_fasta="results/viral/data/{dataset}/test.fasta",
        balance="results/viral/data/{dataset}/balance.json",
        counts=report(
            "results/viral/data/{dataset}/counts.tsv",
            caption="../report/viral_counts.rst",
            category="Viral: data",
            labels={"dataset": "{dataset}"},
        ),
    log:
        "logs/viral/split/{dataset}.log",
    benchmark:
        "results/benchmarks/rules/viral/split/{dataset}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=mem_by_attempt(4000),
        runtime=30,
    params:
        classes=VIRAL_CLASSES,
        length=VIRAL["length"],
        stride=VIRAL_STRIDE,
        split=VIRAL["split"],
        validation=VIRAL["validation"],
        seed=config["seed"],
    script:
        "../scripts/viral_split.py"


rule viral_train:
    input:
        train="results/viral/data/{dataset}/train.npz",
        val="results/viral/data/{dataset}/val.npz",
        balance="results/viral/data/{dataset}/balance.json",
    output:
        model="results/viral/models/{dataset}/fp32/model.pt",
        history="results/viral/models/{dataset}/fp32/history.tsv",
        curves=report(
            "results/viral/models/{dataset}/fp32/curves.png",
            caption="../report/viral_curves.rst",
            category="Viral: training",
            labels={"dataset": "{dataset}", "method": "fp32"},
        ),
    log:
        "logs/viral/train/{dataset}/fp32.log",
    benchmark:
        "results/benchmarks/rules/viral/train/{dataset}/fp32.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: VIRAL["train"]["threads"]
    resources:
        mem_mb=mem_by_attempt(4000),
        runtime=240,
    params:
        arch=viral_arch(),
        train=viral_train_params,
        seed=config["seed"],
    script:
        "../scripts/train.py"


rule viral_evaluate:
    input:
        model="results/viral/models/{dataset}/fp32/model.pt",
        train="results/viral/data/{dataset}/train.npz",
        test="results/viral/data/{dataset}/test.npz",
    output:
        metrics="results/viral/models/{dataset}/fp32/metrics.json",
    log:
        "logs/viral/evaluate/{dataset}/fp32.log",
    benchmark:
        "results/benchmarks/rules/viral/evaluate/{dataset}/fp32.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: VIRAL["train"]["threads"]
    resources:
        mem_mb=mem_by_attempt(4000),
        runtime=60,
    params:
        classes=VIRAL_CLASSES,
    script:
        "../scripts/viral_evaluate.py"


rule viral_summary:
    input:
        metrics=viral_metrics,
    output:
        tsv=report(
            "results/viral/summary.tsv",
            caption="../report/viral_summary.rst",
            category="Viral: summary",
        ),
    log:
        "logs/viral/summary.log",
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        classes=VIRAL_CLASSES,
    script:
        "../scripts/viral_summary.py"


rule viral_classify:
    input:
        fasta=viral_classify_fasta,
        model=viral_model_file,
    output:
        tsv=report(
            "results/viral/classify/{dataset}/{model}/{name}.tsv",
            caption="../report/viral_classify.rst",
            category="Viral: classification",
            labels={"input": "{name}", "model": "{model}"},
        ),
    log:
        "logs/viral/classify/{dataset}/{model}/{name}.log",
    benchmark:
        "results/benchmarks/rules/viral/classify/{dataset}/{model}/{name}.tsv"
    wildcard_constraints:
        model=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
        name="|".join(re.escape(n) for n in VIRAL_CLASSIFY),
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        mem_mb=mem_by_attempt(4000),
        runtime=120,
    params:
        classes=VIRAL_CLASSES,
        stride=VIRAL_STRIDE,
        combine=VIRAL["combine"],
        batch_windows=VIRAL["classify"]["batch_windows"],
        validation=VIRAL["validation"],
    script:
        "../scripts/viral_classify.py"
