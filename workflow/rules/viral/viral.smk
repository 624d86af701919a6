"""Viral classification (Fernandes & Kung): sequences per class (simulated, NCBI or local FASTA)
-> split (with the open-set background class and out-of-class test records) -> the engine trains,
evaluates and compresses the 1-D CNN (engine.smk) -> assess every model and baseline in one unit
(records, fragments, open set) -> summary; classify FASTA/FASTQ files with a (compressed) model
and its calibrated open-set threshold.

The methods of apps.viral.compress run in the engine's compress / compress_int8 rules (their
names are VIRAL_COMPRESSED in viral/common.smk); their metrics.json join results/viral/summary.tsv
and apps.viral.scan.classify.model can name any of them (default: the packed q_then_p_iter model; an int8
method's model.onnx runs through ONNX Runtime).
"""


rule viral_simulate:
    output:
        fasta="results/viral/raw/simulated/{vclass}.fasta",
    log:
        "logs/viral/simulate/{vclass}.log",
    benchmark:
        "results/benchmarks/rules/viral/simulate/{vclass}.tsv"
    conda:
        "../../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=mem_by_attempt(1000),
        runtime=30,
    params:
        spec=viral_simulate_class,
        options=VIRAL_DATA["simulate"]["options"],
        seed=config["seed"],
    script:
        "../../scripts/viral_simulate.py"


rule viral_local:
    input:
        fastas=viral_local_paths,
    output:
        fasta="results/viral/raw/local/{vclass}.fasta",
    log:
        "logs/viral/local/{vclass}.log",
    conda:
        "../../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=mem_by_attempt(2000),
        runtime=30,
    script:
        "../../scripts/viral_local.py"


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
        "../../../envs/torch.yaml"
    threads: 1
    resources:
        ncbi=1,
        mem_mb=1000,
        runtime=240,
    params:
        query=viral_ncbi_query,
        tool=VIRAL_DATA["ncbi"]["tool"],
        email=VIRAL_DATA["ncbi"]["email"],
        batch_size=VIRAL_DATA["ncbi"]["batch_size"],
        max_retries=VIRAL_DATA["ncbi"]["max_retries"],
        on_drift=VIRAL_DATA["ncbi"]["on_drift"],
        cache=VIRAL_DATA["ncbi"]["cache"],
        seed=config["seed"],
    script:
        "../../scripts/viral_download.py"


rule viral_split:
    input:
        fastas=viral_raw_fastas,
        ood=viral_ood_paths,
    output:
        train="results/viral/data/{dataset}/train.npz",
        val="results/viral/data/{dataset}/val.npz",
        test="results/viral/data/{dataset}/test.npz",
        test_fasta="results/viral/data/{dataset}/test.fasta",
        ood_fasta="results/viral/data/{dataset}/ood.fasta",
        balance="results/viral/data/{dataset}/balance.json",
        counts=report(
            "results/viral/data/{dataset}/counts.tsv",
            caption="../../report/viral_counts.rst",
            category="Viral: data",
            labels={"dataset": "{dataset}"},
        ),
    log:
        "logs/viral/split/{dataset}.log",
    benchmark:
        "results/benchmarks/rules/viral/split/{dataset}.tsv"
    conda:
        "../../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=mem_by_attempt(4000),
        runtime=30,
    params:
        classes=VIRAL_CLASSES,
        length=VIRAL_DATA["length"],
        stride=VIRAL_STRIDE,
        split=VIRAL_DATA["split"],
        openset=VIRAL_SCAN["openset"],
        validation=VIRAL_DATA["validation"],
        seed=config["seed"],
    script:
        "../../scripts/viral_split.py"


# One evaluation in one unit for every method (VIRAL_ASSESSED: fp32, the compressed models, the
# baselines): in-class test records at full length and in fragments, out-of-class test records,
# the open-set threshold calibrated on the validation records.
rule viral_assess:
    input:
        unpack(viral_assess_inputs),
    output:
        evaluation="results/viral/evaluate/{dataset}/{method}/evaluation.json",
    log:
        "logs/viral/assess/{dataset}/{method}.log",
    benchmark:
        "results/benchmarks/rules/viral/assess/{dataset}/{method}.tsv"
    wildcard_constraints:
        method="|".join(re.escape(m) for m in VIRAL_ASSESSED),
    conda:
        "../../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=mem_by_attempt(4000),
        runtime=60,
    params:
        kind=viral_assess_kind,
        classes=VIRAL_CLASSES,
        outputs=VIRAL_OUTPUTS,
        openset=VIRAL_SCAN["openset"],
        evaluate=VIRAL["evaluate"],
        stride=VIRAL_STRIDE,
        combine=VIRAL_SCAN["combine"],
        batch_windows=VIRAL_SCAN["classify"]["batch_windows"],
        validation=VIRAL_DATA["validation"],
        seed=config["seed"],
    script:
        "../../scripts/viral_assess.py"


rule viral_summary:
    input:
        metrics=lambda wildcards: engine_metrics("viral"),
        evaluations=viral_evaluations,
    output:
        tsv=report(
            "results/viral/summary.tsv",
            caption="../../report/viral_summary.rst",
            category="Viral: summary",
        ),
        openset="results/viral/openset.tsv",
        plot=report(
            "results/viral/openset.png",
            caption="../../report/viral_openset.rst",
            category="Viral: summary",
        ),
    log:
        "logs/viral/summary.log",
    conda:
        "../../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        classes=VIRAL_CLASSES,
    script:
        "../../scripts/viral_summary.py"


rule viral_classify:
    input:
        fasta=viral_classify_fasta,
        model=viral_model_file,
        evaluation="results/viral/evaluate/{dataset}/{model}/evaluation.json",
        # the Mahalanobis detector of the open set is refitted on it (score: mahalanobis)
        train="results/viral/data/{dataset}/train.npz",
    output:
        tsv=report(
            "results/viral/classify/{dataset}/{model}/{name}.tsv",
            caption="../../report/viral_classify.rst",
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
        "../../../envs/torch.yaml"
    threads: 2
    resources:
        mem_mb=mem_by_attempt(4000),
        runtime=120,
    params:
        classes=VIRAL_CLASSES,
        outputs=VIRAL_OUTPUTS,
        openset=VIRAL_SCAN["openset"],
        stride=VIRAL_STRIDE,
        combine=VIRAL_SCAN["combine"],
        batch_windows=VIRAL_SCAN["classify"]["batch_windows"],
        validation=VIRAL_DATA["validation"],
    script:
        "../../scripts/viral_classify.py"
