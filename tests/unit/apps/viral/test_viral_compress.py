"""The generic compression script on a viral model: no neutral test sets, the data set as the
summary's scenario, a packed model that the classifier loads."""

import json
import runpy
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from quantscan import modelio
from quantscan.apps.viral import classify, dataset, simulate
from quantscan.errors import ConfigError
from quantscan.models import build_model

ROOT = Path(__file__).resolve().parents[4]
CLASSES = ["a", "b", "c"]
LENGTH = 64


@pytest.fixture(scope="module")
def viral_job(tmp_path_factory):
    """Split files and an (untrained) fp32 ViralCNN for three short simulated classes."""
    tmp = tmp_path_factory.mktemp("viral")
    specs = [
        simulate.ClassSpec(name, 40, LENGTH, gc=gc, n_lineages=2)
        for name, gc in zip(CLASSES, (0.3, 0.5, 0.7), strict=True)
    ]
    records = simulate.simulate_dataset(specs, 12, seed=4)
    labels = np.array([CLASSES.index(r.label) for r in records])
    paths = {}
    for split, part in (("train", slice(0, 8)), ("val", slice(8, 10)), ("test", slice(10, 12))):
        idx = [i for c in range(3) for i in np.flatnonzero(labels == c)[part]]
        paths[split] = tmp / f"{split}.npz"
        dataset.save_onehot(
            paths[split], [records[i] for i in idx], labels[idx], CLASSES, length=LENGTH
        )
    arch = {"name": "viralcnn", "n_classes": 3, "length": LENGTH, "dropout": 0.1}
    torch.manual_seed(0)
    paths["model"] = tmp / "model.pt"
    modelio.save_fp32(build_model(arch), arch, paths["model"])
    return tmp, paths


class FakeSnakemake:
    """The parts of the ``snakemake`` object compress.py reads, as the engine's compress rule sets
    them for the viral application (``extra`` False: the extra-test keys left out altogether)."""

    def __init__(self, tmp, paths, neutral=True):
        out = tmp / "out"
        self.wildcards = SimpleNamespace(app="viral", dataset="simulated", method="mixed8")
        self.config = {"apps": {"viral": {}}}
        self.input = SimpleNamespace(**{k: str(v) for k, v in paths.items()})
        method = {"type": "mixed", "layers": 8}
        self.params = SimpleNamespace(
            method=method,
            method_type="mixed",
            finetune={"epochs": 1, "batch_size": 4, "patience": 1, "class_weights": [1.0] * 3},
            class_names=CLASSES,
            layer_presets={},  # as rule compress for the viral application: no layer presets
            seed=3,
        )
        if neutral:
            self.input.extra_tests = []
            self.params.extra_test_names = []
        names = ("model.qsp", "metrics.json", "rows.tsv", "details.tsv", "notes.txt", "plot.png")
        self.output = SimpleNamespace(
            **{n.split(".")[0]: str(out / n) for n in names if n != "model.qsp"},
            model=str(out / "model.qsp"),
        )
        self.log = [str(tmp / "compress.log")]
        self.threads = 1
        self.rule = "compress"
        self.scriptdir = str(ROOT / "workflow" / "scripts")


@pytest.mark.parametrize("neutral", [True, False])
def test_compress_script_on_a_viral_model(viral_job, neutral):
    tmp, paths = viral_job
    smk = FakeSnakemake(tmp / str(neutral), paths, neutral)
    Path(smk.log[0]).parent.mkdir(parents=True, exist_ok=True)
    runpy.run_path(str(ROOT / "workflow/scripts/compress.py"), init_globals={"snakemake": smk})
    metrics = json.loads(Path(smk.output.metrics).read_text())
    assert metrics["scenario"] == "simulated" and metrics["method"] == "mixed8"
    assert {f"acc_{c}" for c in CLASSES} <= set(metrics)
    assert not [k for k in metrics if k.startswith("fpr_")]  # no neutral test sets
    assert metrics["n"] == 6 and metrics["confusion_matrix"]["classes"] == CLASSES
    assert 0 < metrics["density"] <= 1 and metrics["size_pct"] == pytest.approx(25, abs=1)
    # the packed model is what viral_classify loads for apps.viral.scan.classify.model
    engine = classify.load_engine(smk.output.model)
    assert engine.kind == "torch-packed" and (engine.length, engine.n_classes) == (LENGTH, 3)
    test = dataset.read_split(paths["test"])
    again = classify.evaluate_split(engine, test, CLASSES)
    assert again["accuracy"] == pytest.approx(metrics["accuracy"])


def test_viral_compress_config_checks():
    viral = {
        "data": {
            "source": "simulate",
            "simulate": {
                "classes": [{"name": n, "min_length": 5, "max_length": 9} for n in CLASSES]
            },
            "stride": 8,
            "length": 16,
            "split": {"fractions": [0.8, 0.1, 0.1]},
        },
        "scan": {"classify": {"model": "q8"}},
        "compress": {"methods": {"q8": {"type": "q_then_p_iter", "scenarios": []}}},
    }
    classify = viral["scan"]["classify"]
    dataset.check_config(viral)
    classify["model"] = "q4"
    with pytest.raises(
        ConfigError, match="apps.viral.scan.classify.model: 'q4' is neither fp32 nor"
    ):
        dataset.check_config(viral)
    classify["model"] = "fp32"
    viral["compress"]["methods"]["q8"]["scenarios"] = ["constant"]
    with pytest.raises(
        ConfigError,
        match=r"apps.viral.compress.methods.q8.scenarios: sweep scenarios do not apply",
    ):
        dataset.check_config(viral)
    # int8 runs in rule compress_int8 (model.onnx) and classify can name it; fine-tuning does not apply
    viral["compress"]["methods"]["q8"] = {"type": "int8", "finetune": {}}
    classify["model"] = "q8"
    dataset.check_config(viral)
    viral["compress"]["methods"]["q8"]["finetune"] = {"epochs": 2}
    with pytest.raises(ConfigError, match=r"methods.q8.finetune: type 'int8' is post-training"):
        dataset.check_config(viral)


def test_int8_script_on_a_viral_model(viral_job):
    """compress_int8.py as rule compress_int8 runs it for the viral application: the data set wildcard, no neutral test
    sets; the int8 model.onnx is what viral_classify loads (through ONNX Runtime)."""
    tmp, paths = viral_job
    out = tmp / "int8"
    names = ("model.onnx", "metrics.json", "rows.tsv", "details.tsv", "notes.txt", "plot.png")
    cfg = {"type": "int8", "calibration_samples": 16, "latency_batch": 8, "latency_repeats": 2}
    smk = SimpleNamespace(
        wildcards=SimpleNamespace(app="viral", dataset="simulated", method="int8"),
        config={"apps": {"viral": {}}},
        input=SimpleNamespace(**{k: str(paths[k]) for k in ("model", "train", "test")}),
        output=SimpleNamespace(
            **{n.split(".")[0]: str(out / n) for n in names},
            torch_model=str(out / "model.int8.pt"),
        ),
        params=SimpleNamespace(method=cfg, class_names=CLASSES, seed=3),
        log=[str(tmp / "int8.log")],
        threads=1,
        rule="compress_int8",
        scriptdir=str(ROOT / "workflow" / "scripts"),
    )
    runpy.run_path(str(ROOT / "workflow/scripts/compress_int8.py"), init_globals={"snakemake": smk})
    metrics = json.loads(Path(smk.output.metrics).read_text())
    assert metrics["scenario"] == "simulated" and metrics["method"] == "int8"
    assert {f"acc_{c}" for c in CLASSES} <= set(metrics) and metrics["n"] == 6
    assert not [k for k in metrics if k.startswith("fpr_")]  # no neutral test sets
    assert metrics["file_bytes"] == Path(smk.output.model).stat().st_size
    assert metrics["file_bytes"] < metrics["fp32_onnx_bytes"] / 3
    assert metrics["speedup_vs_torch_fp32"] > 0 and metrics["arch"]["name"] == "viralcnn"
    # the viral CNN has no PyTorch int8 version: the file says why
    assert "cannot be quantized by PyTorch FX" in metrics["int8"]["torch_int8"]
    assert Path(smk.output.torch_model).is_file()
    rows = pd.read_csv(smk.output.rows, sep="\t")
    assert rows.method.tolist() == ["int8"] and rows.scenario.tolist() == ["simulated"]
    assert "simulated/int8: " in Path(smk.log[0]).read_text()
    # viral_classify with apps.viral.scan.classify.model naming the int8 method
    engine = classify.load_engine(smk.output.model)
    assert engine.kind == "onnx" and (engine.length, engine.n_classes) == (LENGTH, 3)
    again = classify.evaluate_split(engine, dataset.read_split(paths["test"]), CLASSES)
    assert again["accuracy"] == pytest.approx(metrics["accuracy"])
