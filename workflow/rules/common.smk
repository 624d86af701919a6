"""Shared helpers: config validation, fan-out lists from the config, resources."""

import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))

from quantscan import config as qconfig
from quantscan.errors import ConfigError
from quantscan.sweeps.dataset import batch_sizes
from quantscan.sweeps.simulate import SimParams

try:
    _validated = qconfig.validate(
        config, qconfig.load_schema(Path(workflow.basedir) / "config" / "schema.yaml")
    )
except ConfigError as err:
    raise WorkflowError(str(err)) from None
config.clear()
config.update(_validated)
try:
    # scan.sample_size.policy 'match': scenarios at the inputs' haplotype counts join the run
    from quantscan.sweeps.scan_workflow import matched_scenarios

    config.update(matched_scenarios(config))
except ConfigError as err:
    raise WorkflowError(str(err)) from None

SW = config["sweeps"]
SWEEP_SCENARIOS = qconfig.sweep_scenarios(SW)
NEUTRAL_SCENARIOS = qconfig.neutral_scenarios(SW)
ALL_SCENARIOS = SWEEP_SCENARIOS + NEUTRAL_SCENARIOS


wildcard_constraints:
    scenario="|".join(ALL_SCENARIOS),
    cls="neutral|sweep",
    batch=r"\d+",
    split="train|val|test",


def sweep_classes(scenario):
    return ("neutral",) if scenario in NEUTRAL_SCENARIOS else ("neutral", "sweep")


def sweep_replicates(scenario):
    """Replicates per class: neutral-only scenarios are test data only."""
    reps = SW["replicates"]
    return (
        reps["test"] if scenario in NEUTRAL_SCENARIOS else reps["train"] + reps["test"]
    )


def sweep_batches(scenario):
    return range(len(batch_sizes(sweep_replicates(scenario), SW["batch_size"])))


from quantscan.sweeps.dataset import linked_settings

try:
    # sweeps.image.linked: None when off (absent or fraction 0)
    SWEEP_LINKED = linked_settings(SW["image"])
except ConfigError as err:
    raise WorkflowError(str(err)) from None


def sweep_linked_on(wildcards):
    """Linked windows replace neutral images of this job: on, neutral class, scenario with sweeps."""
    return (
        SWEEP_LINKED is not None
        and wildcards.cls == "neutral"
        and "sweep" in sweep_classes(wildcards.scenario)
    )


def sweep_linked_shard(wildcards):
    """The sweep simulation shard of the same batch, read by a neutral encode job with linked windows."""
    if not sweep_linked_on(wildcards):
        return []
    return f"results/sweeps/sim/{wildcards.scenario}/sweep/batch{wildcards.batch}.npz"


def sweep_encode_image(wildcards):
    """sweeps.image without 'linked' (so the other jobs' parameters stay as without it), plus the
    linked settings and the master seed for the jobs that encode linked windows."""
    image = {k: v for k, v in SW["image"].items() if k != "linked"}
    if sweep_linked_on(wildcards):
        image["linked"] = {**SWEEP_LINKED, "seed": config["seed"]}
    return image


def sweep_sim_params(wildcards):
    """Only the scenario's simulation parameters, so unrelated config edits don't rerun simulations."""
    return dataclasses.asdict(SimParams.from_config(SW, wildcards.scenario))


def sweep_batch_size(wildcards):
    sizes = batch_sizes(sweep_replicates(wildcards.scenario), SW["batch_size"])
    return sizes[int(wildcards.batch)]


def sweep_image_shards(wildcards):
    return [
        f"results/sweeps/images/{wildcards.scenario}/{cls}/batch{b}.npz"
        for cls in sweep_classes(wildcards.scenario)
        for b in sweep_batches(wildcards.scenario)
    ]


def sweep_train_pool(wildcards):
    return 0 if wildcards.scenario in NEUTRAL_SCENARIOS else SW["replicates"]["train"]


def sweep_fp_tests(wildcards):
    return [f"results/sweeps/data/{s}/test.npz" for s in NEUTRAL_SCENARIOS]


def sweep_metrics():
    return expand(
        "results/sweeps/models/{scenario}/fp32/metrics.json", scenario=SWEEP_SCENARIOS
    )


CP = config["compress"]
COMPRESS_JOBS = qconfig.compress_jobs(config)
#: method names by type - int8 ones run in sweeps_compress_int8 (ONNX Runtime, model.onnx), the
#: others in sweeps_compress (packed model.qsp)
CP_INT8 = [n for n, m in CP["methods"].items() if m["type"] == "int8"]
CP_PACKED = [n for n in CP["methods"] if n not in CP_INT8]

from quantscan.compress.presets import check_presets
from quantscan.sweeps.compress_presets import LAYER_PRESETS as SWEEP_LAYER_PRESETS

try:
    # the named layer configurations compress.methods may use (rule sweeps_compress passes them)
    check_presets(CP["methods"], SWEEP_LAYER_PRESETS)
except ConfigError as err:
    raise WorkflowError(str(err)) from None


def compress_metrics():
    """metrics.json of every (scenario, compression method) pair."""
    return [f"results/sweeps/compress/{s}/{m}/metrics.json" for s, m in COMPRESS_JOBS]


def compare_jobs(app):
    """Compression jobs of an application (for compare_methods), as dicts: the job's rows.tsv
    (every variant), metrics.json (its primary), config name and method type."""
    if app == "sweeps":
        pairs = [(s, m, CP["methods"][m]["type"]) for s, m in COMPRESS_JOBS]
    else:  # viral: the methods compress.smk registers in VIRAL_COMPRESSED
        pairs = [
            (VIRAL_DATASET, m, VIRAL["compress"]["methods"][m]["type"])
            for m in VIRAL_COMPRESSED
        ]
    return [
        {
            "rows": f"results/{app}/compress/{s}/{m}/rows.tsv",
            "metrics": f"results/{app}/compress/{s}/{m}/metrics.json",
            "job": m,
            "type": t,
        }
        for s, m, t in pairs
    ]


def compare_inputs(wildcards):
    """fp32 metrics and every compression job's rows.tsv and metrics.json of an application."""
    if wildcards.app == "sweeps":
        fp32 = sweep_metrics()
    else:
        fp32 = [f"results/viral/models/{VIRAL_DATASET}/fp32/metrics.json"]
    jobs = compare_jobs(wildcards.app)
    return {
        "fp32": fp32,
        "rows": [j["rows"] for j in jobs],
        "metrics": [j["metrics"] for j in jobs],
    }


def compare_targets(app):
    return [
        f"results/{app}/compare/{f}"
        for f in ("pareto.png", "density.png", "variants.tsv")
    ]


def sweeps_targets():
    return [
        "results/sweeps/summary.tsv",
        *compare_targets("sweeps"),
        *expand("results/sweeps/data/{scenario}/examples.png", scenario=ALL_SCENARIOS),
        *expand(
            "results/sweeps/models/{scenario}/fp32/curves.png", scenario=SWEEP_SCENARIOS
        ),
    ]


def mem_by_attempt(base_mb):
    """Memory that doubles with each retry (for --retries on clusters)."""

    def mem(wildcards, attempt):
        return base_mb * 2 ** (attempt - 1)

    return mem


# ---------------------------------------------------------------------------------------------
# Viral classification (workflow/rules/viral.smk)

import json
import re

from quantscan.viral import dataset as vdataset

VIRAL = config["viral"]
try:
    vdataset.check_config(VIRAL)
except ConfigError as err:
    raise WorkflowError(str(err)) from None
# the data set name: the scenario column of results/viral/summary.tsv
VIRAL_DATASET = vdataset.SOURCES[VIRAL["source"]]
VIRAL_CLASSES = vdataset.class_names_for(VIRAL)
#: the model's outputs: the target classes, then the open-set background class if it is trained
VIRAL_OUTPUTS = VIRAL_CLASSES + (
    [vdataset.BACKGROUND_CLASS] if VIRAL["openset"]["background"] else []
)
VIRAL_STRIDE = VIRAL["stride"] or VIRAL["length"] // 2
#: Names of the compression methods run on the viral model (viral.compress.methods, rules
#: viral_compress and viral_compress_int8 in compress.smk). Like the sweeps' methods, each writes
#: results/viral/compress/<VIRAL_DATASET>/<method>/{model.qsp, metrics.json, ...} (int8 ones
#: model.onnx instead of model.qsp); the metrics join results/viral/summary.tsv and
#: viral.classify.model can name any of them.
VIRAL_COMPRESSED = list(VIRAL["compress"]["methods"])
VIRAL_INT8 = [
    n
    for n, m in VIRAL["compress"]["methods"].items()
    if m["type"] in vdataset.UNPACKED_METHOD_TYPES
]
VIRAL_PACKED = [n for n in VIRAL_COMPRESSED if n not in VIRAL_INT8]
try:
    # rule viral_compress passes no layer presets: a preset name there is unknown
    check_presets(VIRAL["compress"]["methods"], {})
except ConfigError as err:
    raise WorkflowError(str(err)) from None
#: the baselines evaluated beside the CNN models (rule viral_assess; rows of summary.tsv)
VIRAL_BASELINES = [f"kmer{k}" for k in VIRAL["evaluate"]["kmer"]] + (
    ["length_only"] if VIRAL["evaluate"]["length_baseline"] else []
)
#: every method of the one-unit evaluation: the fp32 CNN, the compressed ones, the baselines
VIRAL_ASSESSED = ["fp32", *VIRAL_COMPRESSED, *VIRAL_BASELINES]


def viral_classify_inputs():
    """Name -> FASTA path of the files viral_classify reads (names from the file names)."""
    paths = VIRAL["classify"]["inputs"]
    if paths is None:  # the default ([] is refused by the schema)
        return {
            f"{VIRAL_DATASET}_test": f"results/viral/data/{VIRAL_DATASET}/test.fasta",
            f"{VIRAL_DATASET}_ood": f"results/viral/data/{VIRAL_DATASET}/ood.fasta",
            # shipped with the workflow: found from any working directory
            "odd_records": str(
                Path(workflow.basedir) / "resources" / "viral" / "odd_records.fasta"
            ),
        }
    names = {}
    for path in paths:
        name = re.sub(
            r"(\.(fasta|fa|fna|fas|txt|fastq|fq))?(\.gz)?$", "", Path(path).name
        )
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "input"
        if name in names:
            raise WorkflowError(
                f"config key viral.classify.inputs: {names[name]} and {path} both give the "
                f"output name {name!r}; rename one of them"
            )
        names[name] = path
    return names


VIRAL_CLASSIFY = viral_classify_inputs()


wildcard_constraints:
    vclass="|".join(VIRAL_CLASSES),
    dataset=VIRAL_DATASET,


def viral_raw_fastas(wildcards):
    return [f"results/viral/raw/{wildcards.dataset}/{c}.fasta" for c in VIRAL_CLASSES]


def viral_simulate_class(wildcards):
    """The simulated class's settings, with its number of sequences as 'n'."""
    spec = next(
        c for c in VIRAL["simulate"]["classes"] if c["name"] == wildcards.vclass
    )
    return {"n": VIRAL["simulate"]["n_per_class"], **spec}


def viral_local_paths(wildcards):
    paths = VIRAL["local"][wildcards.vclass]
    return [paths] if isinstance(paths, str) else list(paths)


def viral_ood_paths(wildcards):
    """The user's out-of-class FASTA files (viral.openset.ood), inputs of viral_split."""
    return [
        p
        for paths in VIRAL["openset"]["ood"].values()
        for p in ([paths] if isinstance(paths, str) else paths)
    ]


def viral_ncbi_query(wildcards):
    return dict(VIRAL["ncbi"]["classes"][wildcards.vclass])


def viral_arch():
    """ViralCNN settings (seed 004 Table III) for this data set (one output per class of
    VIRAL_OUTPUTS: the background class too)."""
    return {
        "name": "viralcnn",
        "n_classes": len(VIRAL_OUTPUTS),
        "length": VIRAL["length"],
        **VIRAL["model"],
    }


def fit_settings(train):
    """A train section as train.TrainConfig keywords: ``threads`` sizes the job, not the fit."""
    return {k: v for k, v in train.items() if k != "threads"}


def viral_train_params(wildcards, input):
    """Training settings; with balance 'weights' the class weights come from the split's
    balance.json. It is read when the job runs (during a dry run the file may not exist yet:
    Snakemake then shows the parameter as <TBD>)."""
    with open(input.balance) as fh:
        weights = json.load(fh)["class_weights"]
    return {
        **fit_settings(VIRAL["train"]),
        "class_weights": weights,
        "augment": VIRAL["augment"],
    }


def viral_method(wildcards):
    return VIRAL["compress"]["methods"][wildcards.method]


def viral_finetune_params(wildcards, input):
    """Fine-tuning settings of viral_compress, with the class weights of balance.json and the
    batch-norm recalibration of fp32 training (as viral_train_params)."""
    with open(input.balance) as fh:
        weights = json.load(fh)["class_weights"]
    return {
        "recalibrate_bn": VIRAL["train"]["recalibrate_bn"],
        **VIRAL["compress"]["finetune"],
        "class_weights": weights,
        "augment": VIRAL["augment"],
    }


def viral_metrics(wildcards):
    """metrics.json of the fp32 baseline and of every compressed method (VIRAL_COMPRESSED; an
    input function, so it sees the methods whatever the order of the includes)."""
    return [
        f"results/viral/models/{VIRAL_DATASET}/fp32/metrics.json",
        *(
            f"results/viral/compress/{VIRAL_DATASET}/{method}/metrics.json"
            for method in VIRAL_COMPRESSED
        ),
    ]


def viral_model_path(dataset, model):
    """The model file of fp32 or of a compression method (compress.smk): packed, or the int8
    ONNX model of an int8 method (classified through ONNX Runtime)."""
    if model == "fp32":
        return f"results/viral/models/{dataset}/fp32/model.pt"
    name = "model.onnx" if model in VIRAL_INT8 else "model.qsp"
    return f"results/viral/compress/{dataset}/{model}/{name}"


def viral_model_file(wildcards):
    return viral_model_path(wildcards.dataset, wildcards.model)


def viral_classify_fasta(wildcards):
    return VIRAL_CLASSIFY[wildcards.name]


def viral_assess_inputs(wildcards):
    """Inputs of viral_assess: the splits and out-of-class records, and the model file of a CNN
    method (baselines train on the training split)."""
    data = f"results/viral/data/{wildcards.dataset}"
    out = {
        "train": f"{data}/train.npz",
        "val": f"{data}/val.npz",
        "test": f"{data}/test.npz",
        "ood": f"{data}/ood.fasta",
    }
    if wildcards.method not in VIRAL_BASELINES:
        out["model"] = viral_model_path(wildcards.dataset, wildcards.method)
    return out


def viral_assess_kind(wildcards):
    if wildcards.method not in VIRAL_BASELINES:
        return "cnn"
    return "kmer" if wildcards.method.startswith("kmer") else "length"


def viral_evaluations(wildcards):
    """evaluation.json of every assessed method (fp32, compressed, baselines), in row order."""
    return [
        f"results/viral/evaluate/{VIRAL_DATASET}/{m}/evaluation.json"
        for m in VIRAL_ASSESSED
    ]


def viral_targets():
    model = VIRAL["classify"]["model"]
    return [
        "results/viral/summary.tsv",
        *compare_targets("viral"),
        f"results/viral/data/{VIRAL_DATASET}/counts.tsv",
        "results/viral/openset.tsv",
        f"results/viral/models/{VIRAL_DATASET}/fp32/curves.png",
        *(
            f"results/viral/classify/{VIRAL_DATASET}/{model}/{n}.tsv"
            for n in VIRAL_CLASSIFY
        ),
    ]


# ---------------------------------------------------------------------------------------------
# Genome scan (workflow/rules/scan.smk)

import dataclasses

from quantscan.sweeps import scan_workflow as qscan

SC = config["scan"]
try:
    # inputs, chromosome names (VCF headers are read here), models and engines of every scan
    SCAN = qscan.plan(config, trained=SWEEP_SCENARIOS, compress_jobs=COMPRESS_JOBS)
except ConfigError as err:
    raise WorkflowError(str(err)) from None


def scan_targets():
    """Per-chromosome scan outputs of every (input, model, engine), and scan_summary.tsv."""
    out = ["results/sweeps/scan_summary.tsv"]
    for name, chrom, model, engine in SCAN.scans():
        prefix = f"results/sweeps/scan/{name}/{model}/{engine}/{chrom}"
        out += [
            f"{prefix}.scores.tsv",
            f"{prefix}.scores.bedgraph",
            f"{prefix}.peaks.bed",
            f"{prefix}.png",
        ]
    return out


def _alternatives(names):
    """A wildcard constraint matching exactly these names (none: matches nothing)."""
    return "|".join(re.escape(str(n)) for n in sorted(set(names))) or "(?!)"


SCAN_CHROMS = _alternatives(c for i in SCAN.inputs.values() for c in i.chroms)
SCAN_INPUTS = _alternatives(SCAN.inputs)
SCAN_MODELS = _alternatives(m for ms in SCAN.models.values() for m in ms)
SCAN_ENGINES = _alternatives(SCAN.engines["fp32"] + SCAN.engines["compressed"])
SCAN_REGIONS = range(SC["regions"])


def scan_model_file(scenario, model):
    if model == "fp32":
        return f"results/sweeps/models/{scenario}/fp32/model.pt"
    return f"results/sweeps/compress/{scenario}/{model}/model.qsp"


def scan_onnx_file(scenario, model, engine):
    """The fp32 model's ONNX export (rule scan_onnx) for engine onnx_fp32, its static int8
    version for onnx_int8; nothing for the other engines and models."""
    if model == "fp32" and engine in ("onnx_fp32", "onnx_int8"):
        name = "fp32.int8.onnx" if engine == "onnx_int8" else "fp32.onnx"
        return [f"results/sweeps/scan/onnx/{scenario}/{name}"]
    return []


def scan_input_scenario(wildcards):
    return SCAN.inputs[wildcards.scan_input].scenario


def scan_source(wildcards):
    inp = SCAN.inputs[wildcards.scan_input]
    if inp.name == qscan.SIMULATED:
        return f"results/sweeps/scan/sim/{wildcards.chrom}.trees"
    return inp.path


def scan_sim_params(wildcards):
    """The scenario's simulation parameters at the haplotype count of the wildcard."""
    params = SimParams.from_config(SW, wildcards.sims)
    return dataclasses.asdict(
        dataclasses.replace(params, haplotypes=int(wildcards.haps))
    )


def scan_sim_replicates(cls):
    ev = SC["evaluate"]
    return ev["sweep_replicates"] if cls == "sweep" else SC["neutral"]["replicates"]


def scan_sim_batch_size(wildcards):
    sizes = batch_sizes(scan_sim_replicates(wildcards.cls), SW["batch_size"])
    return sizes[int(wildcards.batch)]


def scan_sim_shards(cls):
    def shards(wildcards):
        classes = SCAN.simulation_sets().get((wildcards.sims, int(wildcards.haps)), ())
        if cls not in classes:
            return []
        n = len(batch_sizes(scan_sim_replicates(cls), SW["batch_size"]))
        return [
            f"results/sweeps/scan/sims/{wildcards.sims}/h{wildcards.haps}/{cls}/batch{b}.npz"
            for b in range(n)
        ]

    return shards


def scan_null_file(wildcards):
    inp = SCAN.inputs[wildcards.scan_input]
    return (
        f"results/sweeps/scan/replicates/{inp.scenario}/{wildcards.scan_model}/"
        f"{wildcards.engine}/{inp.null_scenario}.h{inp.haplotypes}.npz"
    )


def scan_truth_file(wildcards):
    if SCAN.inputs[wildcards.scan_input].truth:
        return [f"results/sweeps/scan/sim/{wildcards.chrom}.truth.tsv"]
    return []


def scan_mem(base_mb, per_input_mb):
    """Memory from the size of the inputs, doubled on each retry."""

    def mem(wildcards, input, attempt):
        return int((base_mb + per_input_mb * input.size_mb) * 2 ** (attempt - 1))

    return mem


SCAN_EVALUATE = [
    dict(scenario=s, model=m, engine=e, haps=SCAN.model_haplotypes[s])
    for s, m, e in SCAN.evaluate
]
#: scenarios whose evaluation replicates the classic statistics score (scan.evaluate.classic)
SCAN_CLASSIC = (
    sorted({s for s, _, _ in SCAN.evaluate}) if SC["evaluate"]["classic"] else []
)
SCAN_CHROMOSOME_EVALUATE = [
    dict(scenario=SCAN.inputs[i].null_scenario, model=m, engine=e, chrom=c)
    for i, c, m, e in SCAN.scans()
    if SCAN.inputs[i].truth
]
