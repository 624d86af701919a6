"""Shared helpers: config validation, the applications (APPS), input functions of the engine's
rules (engine.smk). An application's own helpers are in workflow/rules/<app>/common.smk.
"""

import re
import sys
from pathlib import Path

#: the repository: config/, resources/ and workflow/ (this file is workflow/rules/common.smk)
REPO_ROOT = Path(workflow.current_basedir).parents[1]
sys.path.insert(0, str(REPO_ROOT / "workflow"))

from quantscan import apps as qapps
from quantscan import config as qconfig
from quantscan.errors import ConfigError

try:
    _validated = qconfig.validate(
        config,
        qconfig.load_schema(REPO_ROOT / "config" / "schema.yaml"),
    )
    # settings an application derives from the inputs before planning (e.g. the sweeps'
    # scenarios at the inputs' sample sizes, apps.sweeps.scan.sample_size.policy 'match')
    for _app in qapps.enabled(_validated).values():
        _validated.update(_app.config_updates())
except ConfigError as err:
    raise WorkflowError(str(err)) from None
config.clear()
config.update(_validated)
try:
    #: name -> quantscan.apps.base.App of every application of the config
    APPS = qapps.enabled(config)
except ConfigError as err:
    raise WorkflowError(str(err)) from None


def _alternatives(names):
    """A wildcard constraint matching exactly these names (none: matches nothing)."""
    return "|".join(re.escape(str(n)) for n in sorted(set(names))) or "(?!)"


def mem_by_attempt(base_mb):
    """Memory that doubles with each retry (for --retries on clusters)."""

    def mem(wildcards, attempt):
        return base_mb * 2 ** (attempt - 1)

    return mem


def _method_kinds():
    """Compression method names of every application, split into int8 (rule compress_int8) and
    packed (rule compress); a name must mean the same kind in every application."""
    kinds = {}
    for name, app in APPS.items():
        for method, spec in app.compress_settings().get("methods", {}).items():
            kind = "int8" if spec["type"] == "int8" else "packed"
            if kinds.setdefault(method, (kind, name))[0] != kind:
                other = kinds[method][1]
                raise WorkflowError(
                    f"compression method {method!r} is int8 in one application and packed in "
                    f"the other ({other}, {name}); give one of them another name"
                )
    return (
        [m for m, (k, _) in kinds.items() if k == "int8"],
        [m for m, (k, _) in kinds.items() if k == "packed"],
    )


ENGINE_INT8, ENGINE_PACKED = _method_kinds()
#: applications whose split files the engine writes (App.makes_data: rule app_data)
DATA_APPS = [n for n, a in APPS.items() if a.makes_data]
#: applications with inputs for the generic scan (App.scan_inputs: rule score)
SCORE_APPS = [n for n, a in APPS.items() if a.scan_inputs()]


wildcard_constraints:
    app=_alternatives(APPS),
    dataset=_alternatives(d for a in APPS.values() for d in a.datasets()),
    split="train|val|test",


def engine_data_inputs(wildcards):
    """Extra files an application's training and compression jobs read (App.data_inputs)."""
    return APPS[wildcards.app].data_inputs(wildcards.dataset)


def engine_extra_tests(wildcards):
    return list(APPS[wildcards.app].extra_tests(wildcards.dataset).values())


def engine_extra_test_names(wildcards):
    return list(APPS[wildcards.app].extra_tests(wildcards.dataset))


def engine_method(wildcards):
    return APPS[wildcards.app].compress_settings()["methods"][wildcards.method]


def engine_model_file(app, dataset, model, engine=None):
    """The fp32 model, or a compression method's packed (or int8 ONNX) model; engine torch_int8:
    the int8 method's PyTorch int8 model."""
    if model == "fp32":
        return f"results/{app}/models/{dataset}/fp32/model.pt"
    if model in ENGINE_INT8:
        name = "model.int8.pt" if engine == "torch_int8" else "model.onnx"
    else:
        name = "model.qsp"
    return f"results/{app}/compress/{dataset}/{model}/{name}"


def engine_metrics(app):
    """metrics.json of every fp32 model and compression job of an application."""
    a = APPS[app]
    return [f"results/{app}/models/{d}/fp32/metrics.json" for d in a.datasets()] + [
        f"results/{app}/compress/{d}/{m}/metrics.json" for d, m in a.compress_jobs()
    ]


def compare_jobs(app):
    """Compression jobs of an application (for compare_methods), as dicts: the job's rows.tsv
    (every variant), metrics.json (its primary), config name and method type."""
    a = APPS[app]
    methods = a.compress_settings().get("methods", {})
    return [
        {
            "rows": f"results/{app}/compress/{d}/{m}/rows.tsv",
            "metrics": f"results/{app}/compress/{d}/{m}/metrics.json",
            "job": m,
            "type": methods[m]["type"],
        }
        for d, m in a.compress_jobs()
    ]


def compare_inputs(wildcards):
    """fp32 metrics and every compression job's rows.tsv and metrics.json of an application."""
    a = APPS[wildcards.app]
    jobs = compare_jobs(wildcards.app)
    return {
        "fp32": [
            f"results/{wildcards.app}/models/{d}/fp32/metrics.json"
            for d in a.datasets()
        ],
        "rows": [j["rows"] for j in jobs],
        "metrics": [j["metrics"] for j in jobs],
    }


def compare_targets(app):
    return [
        f"results/{app}/compare/{f}"
        for f in ("pareto.png", "density.png", "variants.tsv")
    ]


#: functions of no argument giving an application's own targets (set in rules/<app>/common.smk)
APP_TARGETS = {}


def all_targets():
    """Every application's engine targets (App.targets), comparison figures and own targets."""
    out = []
    for name, app in APPS.items():
        out += app.targets()
        if app.compress_jobs():
            out += compare_targets(name)
        if name in APP_TARGETS:
            out += APP_TARGETS[name]()
    return out
