"""A third application added as files only: a toy App written here (its model, its data) runs
through the engine's rules - train, evaluate, compress (packed), compress_int8, compare and the
generic scan - with no engine file or rule edited. This is what the connectomics application
will do."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.workflow

TOY_APP = '''
import numpy as np
from torch import nn

from quantscan.apps.base import App
from quantscan.models import register_architecture


class ToyNet(nn.Module):
    """A convolution, a global average and a dense layer: any module names will do."""

    def __init__(self, n_classes=2, width=8):
        super().__init__()
        self.conv = nn.Conv2d(1, width, 3, padding=1)
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flat = nn.Flatten()
        self.dense = nn.Linear(width, n_classes)

    def forward(self, x):
        return self.dense(self.flat(self.pool(self.act(self.conv(x)))))


register_architecture("toynet", ToyNet, {"n_classes": (2, 10), "width": (1, 64)})


class ToyApp(App):
    """Binary 8 x 8 images, denser in class 1: made by the engine's rule app_data."""

    makes_data = True

    def make_split(self, dataset, split, seed):
        rng = np.random.default_rng(seed)
        n = {"train": 96, "val": 32, "test": 48}[split]
        y = np.arange(n) % 2
        p = np.where(y == 1, 0.75, 0.25)[:, None, None, None]
        return (rng.random((n, 1, 8, 8)) < p).astype(np.uint8), y


APP = ToyApp
'''


def run_snakemake(workdir, configfile, *args):
    """The workflow CLI in ``workdir`` with its config/config.yaml plus ``configfile``."""
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(ROOT / "workflow" / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(workdir / configfile),
        *args,
    ]
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_toy_application_runs_through_every_engine_rule(tmp_path):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text((ROOT / "config" / "config.yaml").read_text())
    (tmp_path / "toy_app.py").write_text(TOY_APP)
    rng = np.random.default_rng(0)
    probe = (rng.random((5, 1, 8, 8)) < 0.5).astype(np.uint8)
    probe[0] = 0  # an empty image: class 0 (sparse) expected
    probe[1] = 1  # a full one: class 1
    np.savez(tmp_path / "probe.npz", x=probe, ids=np.array([f"w{i}" for i in range(5)]))
    toy = {
        "module": "toy_app.py",
        "data": {"classes": ["sparse", "dense"]},
        "model": {"name": "toynet", "width": 8},
        "train": {
            "epochs": 10,
            "batch_size": 16,
            "learning_rate": 0.01,
            "patience": 10,
            "threads": 1,
        },
        "compress": {
            "finetune": {"epochs": 1, "batch_size": 16},
            "methods": {
                "toy_4bit": {"type": "mixed", "layers": 4},
                "toy_int8": {"type": "int8", "calibration_samples": 32},
            },
        },
        "scan": {"inputs": {"probe": "probe.npz"}, "models": ["fp32", "toy_4bit", "toy_int8"]},
    }
    (tmp_path / "toy.yaml").write_text(yaml.safe_dump({"apps": {"toy": toy}}))
    scans = {
        "fp32": "results/toy/scan/default/fp32/torch_fp32/probe.tsv",
        "toy_4bit": "results/toy/scan/default/toy_4bit/packed_torch/probe.tsv",
        "toy_int8": "results/toy/scan/default/toy_int8/onnx_int8/probe.tsv",
    }
    targets = [*scans.values(), "results/toy/compare/pareto.png"]
    proc = run_snakemake(tmp_path, "toy.yaml", "--cores", "2", *targets)
    assert proc.returncode == 0, proc.stdout[-6000:]
    for rule in ("app_data", "train", "evaluate", "compress", "compress_int8", "score"):
        assert f"rule {rule}:" in proc.stdout or f"localrule {rule}:" in proc.stdout, rule

    res = tmp_path / "results" / "toy"
    fp32 = json.loads((res / "models/default/fp32/metrics.json").read_text())
    assert fp32["confusion_matrix"]["classes"] == ["sparse", "dense"]
    assert fp32["accuracy"] >= 0.9, fp32["accuracy"]  # 25 % against 75 % dense pixels
    packed = json.loads((res / "compress/default/toy_4bit/metrics.json").read_text())
    assert (res / "compress/default/toy_4bit/model.qsp").stat().st_size > 0
    assert packed["model_bits"] < fp32["model_bits"] / 4
    assert (res / "compress/default/toy_int8/model.onnx").read_bytes()[:1]
    for model, path in scans.items():
        table = pd.read_csv(tmp_path / path, sep="\t")
        assert list(table.columns) == ["id", "p_sparse", "p_dense", "predicted"], model
        assert table.id.tolist() == [f"w{i}" for i in range(5)]
        assert np.allclose(table.p_sparse + table.p_dense, 1, atol=1e-4), model
        assert table.predicted[0] == "sparse" and table.predicted[1] == "dense", model
    variants = pd.read_csv(res / "compare/variants.tsv", sep="\t")
    assert {"toy_4bit", "toy_int8"} <= set(variants.job), variants.job.tolist()


def test_unknown_application_module_is_a_named_error(tmp_path):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text((ROOT / "config" / "config.yaml").read_text())
    cfg = {"apps": {"toy": {"module": "missing_app.py", "data": {}, "model": {"name": "x"}}}}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg))
    proc = run_snakemake(tmp_path, "bad.yaml", "-n")
    assert proc.returncode != 0
    assert "apps.toy.module: no such file missing_app.py" in proc.stdout, proc.stdout[-3000:]
