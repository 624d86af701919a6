"""Connectomics as an engine application: EM volumes -> a lean 3-D U-Net predicting affinities ->
compressed models -> blockwise segmentation.

The engine trains the U-Net (``models.unet3d``) with the dense ``affinities`` task, evaluates it,
compresses it with every method that applies to Conv3d (packed mixed precision, pruning with
quantization, ternary, static int8) through its generic rules. This application's own rules
(``workflow/rules/connectomics/``) write the split files from synthetic or user volumes, segment
the scan volumes blockwise with every model and engine (affinities and segmentation as OME-Zarr,
metrics against the labels when the volume has them) and write the summary. Config section:
``apps.connectomics`` (keys: :mod:`.settings`).
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

from ..base import App
from . import settings as csettings

#: affinity channels in output order (the offsets of tasks.segmentation.NEAREST_NEIGHBOUR)
CHANNELS = ("z", "y", "x")


class ConnectomicsApp(App):
    task = "affinities"
    makes_data = False

    @cached_property
    def resolved(self) -> dict:
        return csettings.resolve(self.settings)

    def check(self) -> None:
        self.resolved  # noqa: B018 - the checks run when the section is resolved
        super().check()

    def datasets(self) -> list[str]:
        return [self.resolved["data"]["source"]]

    def class_names(self) -> list[str]:
        return list(CHANNELS)

    def arch(self) -> dict:
        model = dict(self.settings["model"])
        return {"in_channels": 1, "out_channels": len(CHANNELS), **model}

    def threads(self, step: str) -> int:
        if step == "scan":
            return int(self.resolved["scan"]["threads"])
        return super().threads(step)

    def scan_inputs(self) -> dict[str, str]:
        return {}  # the blockwise segmentation is this application's own (rules/connectomics/)

    def scan_volumes(self) -> list[str]:
        """Names of the volumes the blockwise scan segments."""
        d = self.resolved["data"]
        if d["source"] == "synthetic":
            return ["synthetic"]
        return [v["name"] for v in d["volumes"].get("scan", [])]

    def scan_models(self) -> list[str]:
        wanted = list(self.resolved["scan"]["models"])
        names = ["fp32", *self.compress_settings().get("methods", {})]
        return [m for m in names if not wanted or m in wanted]

    def scan_engines(self, model: str) -> list[str]:
        """Engines that run ``model`` in the blockwise scan (``scan.engines``: fp32, packed, int8)."""
        if model == "fp32":
            return list(self.resolved["scan"]["engines"]["fp32"])
        kind = self.compress_settings()["methods"][model]["type"]
        return list(self.resolved["scan"]["engines"]["int8" if kind == "int8" else "packed"])

    def targets(self) -> list[str]:
        out = super().targets()
        out.append("results/connectomics/summary.tsv")
        for vol in self.scan_volumes():
            for model in self.scan_models():
                for engine in self.scan_engines(model):
                    out.append(f"results/connectomics/scan/{vol}/{model}/{engine}/metrics.json")
        return out

    def evaluate(self, model_path, test_path, extra_tests, threads: int) -> dict:
        """Voxel metrics of the affinities on the whole test volume, and the segmentation's
        quality against its labels (VOI split and merge in bits, adapted Rand error)."""
        from ... import modelio
        from ...runtime import TorchEngine
        from .scoring import score_volume

        model, _ = modelio.load_fp32(model_path)
        engine = TorchEngine(model, batch_size=1, threads=threads, input_dtypes=("float32",))
        with np.load(test_path, allow_pickle=False) as z:
            x, y, labels = z["x"], z["y"], z["labels"]
        return score_volume(
            engine,
            x[0, 0],
            y[0],
            labels,
            model=model,
            block=self.resolved["scan"]["block"],
            segmentation=self.resolved["scan"]["segmentation"],
        )["metrics"]


APP = ConnectomicsApp
