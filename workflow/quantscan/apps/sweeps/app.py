"""Selective sweeps as an engine application: SweepNet on haplotype images of simulated scenarios.

The data sets are the scenarios with a sweep class (``sweeps.scenarios``, ``sweeps.run``); the
neutral-only scenarios (structured populations, which msprime cannot simulate sweeps in) are the
extra test sets every model is scored on, as false-positive rates. Simulation, encoding, the
splits, the summary table and the genome scan are this application's own rules
(``workflow/rules/sweeps/``). The config sections are ``sweeps``, ``compress`` and ``scan``.
"""

from __future__ import annotations

from functools import cached_property

from ..base import App
from . import CLASSES
from . import settings as sw_settings
from .compress_presets import LAYER_PRESETS


class SweepsApp(App):
    def __init__(self, name, settings, config):
        super().__init__(name, settings, config)
        self.compress = config.get("compress") or {"methods": {}, "finetune": {}, "threads": 1}

    def check(self) -> None:
        sw_settings.check_sweeps(self.settings)
        super().check()
        if "compress" in self.config:
            self.compress_jobs()  # checks the scenario names

    def config_updates(self) -> dict:
        """With scan.sample_size.policy 'match', scenarios at the scan inputs' haplotype counts."""
        from .scan_workflow import matched_scenarios

        return matched_scenarios(self.config)

    @cached_property
    def neutral_scenarios(self) -> list[str]:
        return sw_settings.neutral_scenarios(self.settings)

    @cached_property
    def _datasets(self) -> list[str]:
        # each call reads the scenarios' demography files: once per App
        return sw_settings.sweep_scenarios(self.settings)

    @cached_property
    def _compress_jobs(self) -> list[tuple[str, str]]:
        return sw_settings.compress_jobs(self.config)

    def datasets(self) -> list[str]:
        return list(self._datasets)

    def class_names(self) -> list[str]:
        return list(CLASSES)

    def arch(self) -> dict:
        return {"name": "sweepnet", "n_classes": len(CLASSES), **self.settings["model"]}

    def threads(self, step: str) -> int:
        if step in ("compress", "compress_int8"):
            return int(self.compress["threads"])
        return int(self.settings["train"]["threads"])

    def fit_settings(self, dataset, inputs, *, finetune=False) -> dict:
        if finetune:
            return dict(self.compress["finetune"])
        return {k: v for k, v in self.settings["train"].items() if k != "threads"}

    def compress_settings(self) -> dict:
        return self.compress

    def compress_jobs(self) -> list[tuple[str, str]]:
        return list(self._compress_jobs)

    def extra_tests(self, dataset: str) -> dict[str, str]:
        return {s: f"results/sweeps/data/{s}/test.npz" for s in self.neutral_scenarios}

    def layer_presets(self) -> dict[str, dict]:
        return LAYER_PRESETS

    def scan_inputs(self) -> dict[str, str]:
        return {}  # the genome scan is this application's own (rules/sweeps/scan.smk)


APP = SweepsApp
