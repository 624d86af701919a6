"""The application plug-in interface: what the engine asks of an application.

The engine (training, compression, int8 export, evaluation, the generic scan, summaries) runs the
same rules for every application (``workflow/rules/engine.smk``, parameterised by ``{app}``) and
asks the application, through an :class:`App`, for everything that differs: its data sets, classes
and model, its training settings, the extra inputs its jobs read, the compression methods it runs,
what it scans and which files it wants built. An application's own steps (simulations, downloads,
genome scans) are its own rules in ``workflow/rules/<app>/``.

Where the files go (the engine's layout, identical for every application)::

    results/<app>/data/<dataset>/{train,val,test}.npz     split files (quantscan.data)
    results/<app>/models/<dataset>/fp32/model.pt          the trained model (+ history, curves)
    results/<app>/models/<dataset>/fp32/metrics.json      its test metrics
    results/<app>/compress/<dataset>/<method>/...         one compression job (model.qsp or .onnx)
    results/<app>/compare/{pareto,density}.png            every method's variants
    results/<app>/scan/<dataset>/<model>/<engine>/<input>.tsv   the generic scan (App.scan_inputs)

An application is a package ``quantscan.apps.<name>`` with a module ``app`` defining ``APP``, an
:class:`App` subclass (found by :func:`quantscan.apps.app_class`), or any Python file named by the
config key ``apps.<name>.module``. Its config section is ``apps.<name>``, laid out as
``{data, model, train, compress, scan}`` for every application (the built-in ones included; an
application may add keys of its own, as the viral ``evaluate``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import ConfigError


class App:
    """Base class of an application; the defaults suit a classification application whose data
    sets come from :meth:`make_split` and whose settings follow the generic layout
    ``{data, model, train, compress, scan}`` (``apps.<name>`` in the config)."""

    #: the learning task (quantscan.tasks): its loss, metrics and calibration inputs
    task = "classification"
    #: True: the engine's rule ``app_data`` writes the split files by calling :meth:`make_split`;
    #: False: the application's own rules write them
    makes_data = False

    def __init__(self, name: str, settings: Mapping, config: Mapping):
        self.name = name
        #: this application's config section
        self.settings = settings
        #: the whole validated config (``seed`` is the master seed)
        self.config = config

    # ------------------------------------------------------------------ planned when parsing
    def check(self) -> None:
        """Cross-key checks of the settings that a schema cannot express (ConfigError); the
        default checks the layer presets the compression methods name."""
        from ..compress.presets import check_presets

        check_presets(self.compress_settings().get("methods", {}), self.layer_presets())

    def config_updates(self) -> dict:
        """Top-level config entries this application derives before the workflow is planned
        (e.g. from its inputs' headers); merged into the config."""
        return {}

    def datasets(self) -> list[str]:
        """Data sets with a trained fp32 model (the ``{dataset}`` wildcard)."""
        return list(self.settings.get("data", {}).get("datasets", ["default"]))

    def class_names(self) -> list[str]:
        """The model's outputs, in label order."""
        return list(self.settings["data"]["classes"])

    def arch(self) -> dict:
        """The model to train: ``{"name": architecture, **keywords}`` (quantscan.models)."""
        return {"n_classes": len(self.class_names()), **self.settings["model"]}

    def threads(self, step: str) -> int:
        """Threads of a job of ``step`` (train, evaluate, compress, compress_int8, scan)."""
        section = {"compress_int8": "compress", "evaluate": "train"}.get(step, step)
        return int(self.settings.get(section, {}).get("threads", 1))

    def data_inputs(self, dataset: str) -> dict[str, str]:
        """Extra files the training and compression jobs of ``dataset`` read (e.g. class
        weights); given to :meth:`fit_settings` as ``inputs``."""
        return {}

    def fit_settings(self, dataset: str, inputs: Mapping, *, finetune: bool = False) -> dict:
        """``train.TrainConfig`` keywords of training (or of compression fine-tuning), read when
        the job runs so that they may come from files of :meth:`data_inputs`."""
        if finetune:
            return dict(self.compress_settings().get("finetune", {}))
        return {k: v for k, v in self.settings["train"].items() if k != "threads"}

    def compress_settings(self) -> dict:
        """``{methods: {name: method}, finetune: {...}, threads: n}``."""
        return dict(self.settings.get("compress") or {"methods": {}})

    def compress_jobs(self) -> list[tuple[str, str]]:
        """(data set, method name) of every compression job."""
        methods = self.compress_settings().get("methods", {})
        return [(d, m) for d in self.datasets() for m in methods]

    def extra_tests(self, dataset: str) -> dict[str, str]:
        """Test sets whose inputs all have one true class, scored beside the test split: name ->
        split file; their error rates are the metrics ``fpr_<name>``."""
        return {}

    def layer_presets(self) -> dict[str, dict]:
        """Named per-layer compression configurations the methods' ``layers`` may name."""
        return {}

    def targets(self) -> list[str]:
        """The files ``rule all`` builds for this application."""
        out = [f"results/{self.name}/models/{d}/fp32/metrics.json" for d in self.datasets()]
        out += [
            f"results/{self.name}/compress/{d}/{m}/metrics.json" for d, m in self.compress_jobs()
        ]
        out += self.scan_targets()
        return out

    # --------------------------------------------------------------------- the generic scan
    def scan_settings(self) -> dict:
        return dict(self.settings.get("scan") or {})

    def scan_inputs(self) -> dict[str, str]:
        """Name -> file of the inputs the generic scan scores (``score`` rule; :meth:`read_scan_input`)."""
        return dict(self.scan_settings().get("inputs") or {})

    def scan_models(self) -> list[str]:
        """``fp32`` and/or compression method names whose models the generic scan runs."""
        return list(self.scan_settings().get("models") or ["fp32"])

    def scan_engine(self, model: str) -> str:
        """The runtime engine kind for a model of :meth:`scan_models`."""
        if model == "fp32":
            return "torch_fp32"
        kind = self.compress_settings()["methods"][model]["type"]
        return "onnx_int8" if kind == "int8" else "packed_torch"

    def scan_targets(self) -> list[str]:
        return [
            f"results/{self.name}/scan/{d}/{m}/{self.scan_engine(m)}/{i}.tsv"
            for d in self.datasets()
            for m in self.scan_models()
            for i in self.scan_inputs()
        ]

    # ------------------------------------------------------------------------ job-time hooks
    def make_split(self, dataset: str, split: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)`` of one split (``train``, ``val`` or ``test``) when :attr:`makes_data`."""
        raise ConfigError(f"application {self.name!r} makes its split files with its own rules")

    def read_scan_input(self, path: str | os.PathLike) -> tuple[Sequence[str], np.ndarray]:
        """``(ids, x)`` of a scan input file: by default an ``.npz`` with ``x`` and optional ``ids``."""
        from ..errors import InputFormatError

        try:
            with np.load(path, allow_pickle=False) as z:
                x = z["x"]
                ids = [str(v) for v in z["ids"]] if "ids" in z.files else None
        except Exception as err:
            raise InputFormatError(f"{path}: unreadable scan input ({err})") from err
        if ids is None:
            ids = [str(i) for i in range(len(x))]
        if len(ids) != len(x):
            raise InputFormatError(f"{path}: {len(ids)} ids for {len(x)} inputs")
        return ids, x

    def evaluate(self, model_path, test_path, extra_tests: Mapping[str, str], threads: int) -> dict:
        """Test metrics of the fp32 model in ``model_path`` (``metrics.json``, without the size
        columns the engine adds): the task's metrics on the test split, ``fpr_<name>`` (the share
        of inputs not given the set's class) on each extra test set, and the compression metrics
        of the deployed weights."""
        from .. import modelio
        from ..compress.methods import deployed_metrics
        from ..data import load_split
        from ..tasks import error_rate, get_task
        from ..train import predict_proba, to_tensor

        task = get_task(self.task)
        model, _ = modelio.load_fp32(model_path)
        x, y = load_split(test_path)
        metrics = task.metrics(y, predict_proba(model, x, task=task), self.class_names())
        for name, path in extra_tests.items():
            xe, ye = load_split(path)
            metrics[f"fpr_{name}"] = error_rate(task, ye, predict_proba(model, xe, task=task))
        metrics.update(deployed_metrics(model, to_tensor(x[:1], channels_last=False)))
        return metrics
