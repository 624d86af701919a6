"""Viral classification as an engine application: a 1-D CNN on one-hot windows of sequences.

One data set (named after ``apps.viral.data.source``); the classes are the configured families
plus, with ``apps.viral.scan.openset.background``, the background class of the open-set answer.
Training and fine-tuning use the training split's class weights (``balance.json``, written by the
split rule) and ``apps.viral.train.augment``. The fp32 evaluation scores windows and whole records
(:func:`classify.evaluate_split`). Data, the one-unit evaluation of every model and baseline, the
open-set table and FASTA classification are this application's own rules
(``workflow/rules/viral/``). Config section: ``apps.viral`` (``data``, ``model``, ``train``,
``compress``, ``scan`` - classification of FASTA files, the open set - and ``evaluate``, the
one-unit evaluation).
"""

from __future__ import annotations

import json
from functools import cached_property

import torch

from ..base import App
from . import dataset as vdataset


class ViralApp(App):
    def check(self) -> None:
        vdataset.check_config(self.settings)
        super().check()

    @cached_property
    def dataset(self) -> str:
        return vdataset.SOURCES[self.settings["data"]["source"]]

    def datasets(self) -> list[str]:
        return [self.dataset]

    def class_names(self) -> list[str]:
        names = vdataset.class_names_for(self.settings["data"])
        if self.settings["scan"]["openset"]["background"]:
            names = [*names, vdataset.BACKGROUND_CLASS]
        return names

    def arch(self) -> dict:
        return {
            "name": "viralcnn",
            "n_classes": len(self.class_names()),
            "length": self.settings["data"]["length"],
            **self.settings["model"],
        }

    def threads(self, step: str) -> int:
        if step == "compress_int8":
            return 2
        return int(self.settings["train"]["threads"])

    def data_inputs(self, dataset: str) -> dict[str, str]:
        return {"balance": f"results/viral/data/{dataset}/balance.json"}

    def fit_settings(self, dataset, inputs, *, finetune=False) -> dict:
        """With balance 'weights' the class weights come from the split's balance.json (read
        when the job runs: during a dry run the file may not exist yet)."""
        with open(inputs["balance"]) as fh:
            weights = json.load(fh)["class_weights"]
        train = self.settings["train"]
        if finetune:
            return {
                "recalibrate_bn": train["recalibrate_bn"],
                **self.settings["compress"]["finetune"],
                "class_weights": weights,
                "augment": train["augment"],
            }
        return {
            **{k: v for k, v in train.items() if k not in ("threads", "augment")},
            "class_weights": weights,
            "augment": train["augment"],
        }

    def compress_settings(self) -> dict:
        return {"threads": self.settings["train"]["threads"], **self.settings["compress"]}

    def scan_inputs(self) -> dict[str, str]:
        return {}  # FASTA classification is this application's own (rules/viral/)

    def evaluate(self, model_path, test_path, extra_tests, threads: int) -> dict:
        """Window and record metrics of the fp32 model, with its compression columns (density 1,
        weights size and NOPs x bits at 32 bits: Fernandes & Kung's Table IV reference)."""
        from ...compress.metrics import compression_report
        from . import classify

        engine = classify.load_engine(model_path, threads=threads)
        split = vdataset.read_split(test_path)
        metrics = classify.evaluate_split(engine, split, self.class_names())
        # per-sample operation counts need one input of the model's shape (all zeros will do)
        report = compression_report(engine.model, torch.zeros(1, 5, engine.length))
        metrics.update(
            density=report["density"],
            nops=int(report["nops"]),
            nops_x_bits=float(report["nops_x_bits"]),
            weights_mbit=report["weights_mbit"],
        )
        return metrics


APP = ViralApp
