"""The sweeps' own helpers (workflow/rules/sweeps/*.smk): scenarios, simulation shards, linked
windows, the summary's inputs and the genome scan's plan (SCAN)."""

import dataclasses

from quantscan.apps.sweeps import settings as sweeps_settings
from quantscan.apps.sweeps.dataset import batch_sizes, linked_settings
from quantscan.apps.sweeps.simulate import SimParams

#: the sweeps' config section apps.sweeps; SW is its data (simulation, images, scenarios) and
#: SC (below) its genome scan
SWEEPS = config["apps"]["sweeps"]
SW = SWEEPS["data"]
SWEEP_SCENARIOS = sweeps_settings.sweep_scenarios(SW)
NEUTRAL_SCENARIOS = sweeps_settings.neutral_scenarios(SW)
ALL_SCENARIOS = SWEEP_SCENARIOS + NEUTRAL_SCENARIOS


wildcard_constraints:
    scenario="|".join(ALL_SCENARIOS),
    cls="neutral|sweep",
    batch=r"\d+",


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


try:
    # apps.sweeps.data.image.linked: None when off (absent or fraction 0)
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
    """apps.sweeps.data.image without 'linked' (so the other jobs' parameters stay as without
    it), plus the linked settings and the master seed for the jobs encoding linked windows.
    """
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


COMPRESS_JOBS = APPS["sweeps"].compress_jobs()


def sweeps_targets():
    return [
        "results/sweeps/summary.tsv",
        *compare_targets("sweeps"),
        *expand("results/sweeps/data/{scenario}/examples.png", scenario=ALL_SCENARIOS),
        *expand(
            "results/sweeps/models/{scenario}/fp32/curves.png", scenario=SWEEP_SCENARIOS
        ),
    ]


# ---------------------------------------------------------------------------------------------
# Genome scan (workflow/rules/sweeps/scan.smk)

from quantscan.apps.sweeps import scan_plan
from quantscan.apps.sweeps.localiser import (
    CHANNELS as LOCALISER_CHANNELS,
    LOCALISER,
    LocaliserSettings,
)

SC = SWEEPS["scan"]
try:
    # inputs, chromosome names (VCF headers are read here), models and engines of every scan
    SCAN = scan_plan.plan(SWEEPS, trained=SWEEP_SCENARIOS, compress_jobs=COMPRESS_JOBS)
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


SCAN_CHROMS = _alternatives(c for i in SCAN.inputs.values() for c in i.chroms)
SCAN_INPUTS = _alternatives(SCAN.inputs)
SCAN_MODELS = _alternatives(m for ms in SCAN.models.values() for m in ms)
SCAN_ENGINES = _alternatives(
    SCAN.engines["fp32"] + SCAN.engines["compressed"] + SCAN.engines["localiser"]
)
SCAN_REGIONS = range(SC["regions"])


def scan_model_file(scenario, model):
    if model == "fp32":
        return f"results/sweeps/models/{scenario}/fp32/model.pt"
    if model == LOCALISER:
        return f"results/sweeps/localiser/{scenario}/model.pt"
    return f"results/sweeps/compress/{scenario}/{model}/model.qsp"


def scan_onnx_file(scenario, model, engine):
    """The ONNX export of the fp32 model (rule scan_onnx) or of the localiser (rule
    localiser_train) for engine onnx_fp32, its static int8 version for onnx_int8; nothing for
    the other engines and models."""
    if model in ("fp32", LOCALISER) and engine in ("onnx_fp32", "onnx_int8"):
        suffix = ".int8.onnx" if engine == "onnx_int8" else ".onnx"
        return [f"results/sweeps/scan/onnx/{scenario}/{model}{suffix}"]
    return []


def localiser_sim_shards(cls):
    """The scenario's training simulation shards of class ``cls`` (its training pool)."""

    def shards(wildcards):
        n = SW["replicates"]["train"]
        last = (n - 1) // SW["batch_size"]
        return [
            f"results/sweeps/sim/{wildcards.scenario}/{cls}/batch{b}.npz"
            for b in range(last + 1)
        ]

    return shards


def scan_input_scenario(wildcards):
    return SCAN.inputs[wildcards.scan_input].scenario


def scan_source(wildcards):
    inp = SCAN.inputs[wildcards.scan_input]
    if inp.name == scan_plan.SIMULATED:
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


def prepare_mem(wildcards, input, attempt):
    """scan_prepare's memory: a tree sequence is read packed, chunk by chunk (about 3x its file:
    the loaded tree sequence, 2.3 GB for a 1 GB file, plus the packed haplotypes); a VCF or ms
    input is parsed whole (20x its file)."""
    trees = SCAN.inputs[wildcards.scan_input].format == "trees"
    return scan_mem(1000, 3 if trees else 20)(wildcards, input, attempt)


SCAN_EVALUATE = [
    dict(scenario=s, model=m, engine=e, haps=SCAN.model_haplotypes[s])
    for s, m, e in SCAN.evaluate
]
#: scenarios whose evaluation replicates the classic statistics score
#: (apps.sweeps.scan.evaluate.classic)
SCAN_CLASSIC = (
    sorted({s for s, _, _ in SCAN.evaluate}) if SC["evaluate"]["classic"] else []
)
SCAN_CHROMOSOME_EVALUATE = [
    dict(scenario=SCAN.inputs[i].null_scenario, model=m, engine=e, chrom=c)
    for i, c, m, e in SCAN.scans()
    if SCAN.inputs[i].truth
]


APP_TARGETS["sweeps"] = lambda: sweeps_targets() + scan_targets()
