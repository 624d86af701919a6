"""Shared helpers: config validation, fan-out lists from the config, resources."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))

from quantscan import config as qconfig
from quantscan.errors import ConfigError
from quantscan.sweeps.dataset import batch_sizes

try:
    _validated = qconfig.validate(
        config, qconfig.load_schema(Path(workflow.basedir) / "config" / "schema.yaml")
    )
except ConfigError as err:
    raise WorkflowError(str(err)) from None
config.clear()
config.update(_validated)

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


def sweeps_targets():
    return [
        "results/sweeps/summary.tsv",
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
