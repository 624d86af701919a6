"""The viral application's own helpers (workflow/rules/viral/*.smk): classes, raw inputs, the
one-unit evaluation's methods and FASTA classification inputs."""

from quantscan.apps.viral import dataset as vdataset

#: the viral config section apps.viral: data, model, train, compress, scan (classification of
#: FASTA files, the open set) and evaluate
VIRAL = config["apps"]["viral"]
VIRAL_DATA = VIRAL["data"]
VIRAL_SCAN = VIRAL["scan"]
# the data set name: the scenario column of results/viral/summary.tsv
VIRAL_DATASET = APPS["viral"].dataset
VIRAL_CLASSES = vdataset.class_names_for(VIRAL_DATA)
#: the model's outputs: the target classes, then the open-set background class if it is trained
VIRAL_OUTPUTS = APPS["viral"].class_names()
VIRAL_STRIDE = VIRAL_DATA["stride"] or VIRAL_DATA["length"] // 2
#: Names of the compression methods run on the viral model (apps.viral.compress.methods, the engine's
#: rules compress and compress_int8). Each writes
#: results/viral/compress/<VIRAL_DATASET>/<method>/{model.qsp, metrics.json, ...} (int8 ones
#: model.onnx instead of model.qsp); the metrics join results/viral/summary.tsv and
#: apps.viral.scan.classify.model can name any of them.
VIRAL_COMPRESSED = list(VIRAL["compress"]["methods"])
#: the baselines evaluated beside the CNN models (rule viral_assess; rows of summary.tsv)
VIRAL_BASELINES = [f"kmer{k}" for k in VIRAL["evaluate"]["kmer"]] + (
    ["length_only"] if VIRAL["evaluate"]["length_baseline"] else []
)
#: every method of the one-unit evaluation: the fp32 CNN, the compressed ones, the baselines
VIRAL_ASSESSED = ["fp32", *VIRAL_COMPRESSED, *VIRAL_BASELINES]


def viral_classify_inputs():
    """Name -> FASTA path of the files viral_classify reads (names from the file names)."""
    paths = VIRAL_SCAN["classify"]["inputs"]
    if paths is None:  # the default ([] is refused by the schema)
        return {
            f"{VIRAL_DATASET}_test": f"results/viral/data/{VIRAL_DATASET}/test.fasta",
            f"{VIRAL_DATASET}_ood": f"results/viral/data/{VIRAL_DATASET}/ood.fasta",
            # shipped with the workflow: found from any working directory
            "odd_records": str(REPO_ROOT / "resources" / "viral" / "odd_records.fasta"),
        }
    names = {}
    for path in paths:
        name = re.sub(
            r"(\.(fasta|fa|fna|fas|txt|fastq|fq))?(\.gz)?$", "", Path(path).name
        )
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "input"
        if name in names:
            raise WorkflowError(
                f"config key apps.viral.scan.classify.inputs: {names[name]} and {path} both give the "
                f"output name {name!r}; rename one of them"
            )
        names[name] = path
    return names


VIRAL_CLASSIFY = viral_classify_inputs()


wildcard_constraints:
    vclass="|".join(VIRAL_CLASSES),


def viral_raw_fastas(wildcards):
    return [f"results/viral/raw/{wildcards.dataset}/{c}.fasta" for c in VIRAL_CLASSES]


def viral_simulate_class(wildcards):
    """The simulated class's settings, with its number of sequences as 'n'."""
    spec = next(
        c for c in VIRAL_DATA["simulate"]["classes"] if c["name"] == wildcards.vclass
    )
    return {"n": VIRAL_DATA["simulate"]["n_per_class"], **spec}


def viral_local_paths(wildcards):
    paths = VIRAL_DATA["local"][wildcards.vclass]
    return [paths] if isinstance(paths, str) else list(paths)


def viral_ood_paths(wildcards):
    """The user's out-of-class FASTA files (apps.viral.scan.openset.ood), inputs of viral_split."""
    return [
        p
        for paths in VIRAL_SCAN["openset"]["ood"].values()
        for p in ([paths] if isinstance(paths, str) else paths)
    ]


def viral_ncbi_query(wildcards):
    return dict(VIRAL_DATA["ncbi"]["classes"][wildcards.vclass])


def viral_model_file(wildcards):
    return engine_model_file("viral", wildcards.dataset, wildcards.model)


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
        out["model"] = engine_model_file("viral", wildcards.dataset, wildcards.method)
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
    model = VIRAL_SCAN["classify"]["model"]
    return [
        "results/viral/summary.tsv",
        f"results/viral/data/{VIRAL_DATASET}/counts.tsv",
        "results/viral/openset.tsv",
        f"results/viral/models/{VIRAL_DATASET}/fp32/curves.png",
        *(
            f"results/viral/classify/{VIRAL_DATASET}/{model}/{n}.tsv"
            for n in VIRAL_CLASSIFY
        ),
    ]


APP_TARGETS["viral"] = viral_targets
