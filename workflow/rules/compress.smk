"""Compression of the trained sweep models: one job per (scenario, method) of config compress.methods.

Every job writes the primary variant as a packed model (model.qsp) with its metrics.json (a row of
results/sweeps/summary.tsv), rows.tsv (every variant the method trained, summary columns), and the
method's own table (details.tsv), figure (plot.png) and notes (notes.txt: per-layer quantizers, bit
table, search statistics, a config block to paste).
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
        method="|".join(CP["methods"]) or "^$",
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
        seed=config["seed"],
    script:
        "../scripts/compress.py"
