"""Selective sweeps as an engine application: SweepNet on haplotype images of simulated scenarios.

The data sets are the scenarios with a sweep class (``apps.sweeps.data.scenarios``, ``.run``); the
neutral-only scenarios (structured populations, which msprime cannot simulate sweeps in) are the
extra test sets every model is scored on, as false-positive rates. Simulation, encoding, the
splits, the summary table and the genome scan are this application's own rules
(``workflow/rules/sweeps/``). The config section is ``apps.sweeps``: ``data`` (simulation and
images), ``model``, ``train``, ``compress`` and ``scan`` (the genome scan).
"""

from __future__ import annotations

from functools import cached_property

from ..base import App
from . import CLASSES
from . import settings as sw_settings
from .compress_presets import LAYER_PRESETS


class SweepsApp(App):
    @property
    def data(self) -> dict:
        """``apps.sweeps.data``: simulation, replicates, images, scenarios."""
        return self.settings["data"]

    def check(self) -> None:
        sw_settings.check_sweeps(self.data)
        super().check()
        self.compress_jobs()  # checks the scenario names

    def config_updates(self) -> dict:
        """With apps.sweeps.scan.sample_size.policy 'match', the section with scenarios at the scan
        inputs' haplotype counts (apps.sweeps replaced in the config's apps)."""
        from .scan_plan import matched_scenarios

        matched = matched_scenarios(self.settings)
        if matched is self.settings:
            return {}
        return {"apps": {**self.config["apps"], self.name: matched}}

    @cached_property
    def neutral_scenarios(self) -> list[str]:
        return sw_settings.neutral_scenarios(self.data)

    @cached_property
    def _datasets(self) -> list[str]:
        # each call reads the scenarios' demography files: once per App
        return sw_settings.sweep_scenarios(self.data)

    @cached_property
    def _compress_jobs(self) -> list[tuple[str, str]]:
        return sw_settings.compress_jobs(self.settings)

    def datasets(self) -> list[str]:
        return list(self._datasets)

    def class_names(self) -> list[str]:
        return list(CLASSES)

    def arch(self) -> dict:
        return {"name": "sweepnet", "n_classes": len(CLASSES), **self.settings["model"]}

    def compress_jobs(self) -> list[tuple[str, str]]:
        return list(self._compress_jobs)

    def extra_tests(self, dataset: str) -> dict[str, str]:
        return {s: f"results/sweeps/data/{s}/test.npz" for s in self.neutral_scenarios}

    def layer_presets(self) -> dict[str, dict]:
        return LAYER_PRESETS

    def scan_inputs(self) -> dict[str, str]:
        return {}  # the genome scan is this application's own (rules/sweeps/scan.smk)


APP = SweepsApp
