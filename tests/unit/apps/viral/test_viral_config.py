"""Config keys of the open set, the hold-outs and the evaluation; an empty list is never 'all'
(sweeps.run, viral.classify.inputs: an error; null is the default)."""

import copy
from pathlib import Path

import pytest
import yaml

from quantscan import config as qconfig
from quantscan.apps.sweeps import settings as sweeps_settings
from quantscan.apps.viral import dataset
from quantscan.errors import ConfigError
from quantscan.models import build_model

ROOT = Path(__file__).resolve().parents[4]


def cfg_with(**viral):
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    cfg["viral"].update(copy.deepcopy(viral))
    return cfg


def test_empty_lists_are_errors_and_null_is_the_default():
    cfg = cfg_with()
    cfg["sweeps"]["run"] = []
    with pytest.raises(ConfigError, match=r"config key sweeps.run: an empty list is not allowed"):
        qconfig.validate(cfg)
    cfg["sweeps"]["run"] = None
    sw = qconfig.validate(cfg)["sweeps"]
    assert sweeps_settings.active_scenarios(sw) == list(sw["scenarios"])
    del cfg["sweeps"]["run"]
    assert qconfig.validate(cfg)["sweeps"]["run"] is None
    cfg = cfg_with(classify={"inputs": []})
    with pytest.raises(ConfigError, match=r"viral.classify.inputs: an empty list is not allowed"):
        qconfig.validate(cfg)
    assert (
        qconfig.validate(cfg_with(classify={"inputs": None}))["viral"]["classify"]["inputs"] is None
    )
    schema = qconfig.load_schema()
    for where in (
        schema["properties"]["sweeps"],
        schema["properties"]["viral"]["properties"]["classify"],
    ):
        key = "run" if "run" in where["properties"] else "inputs"
        assert "an empty list is an error" in where["properties"][key]["description"]


@pytest.mark.parametrize(
    "viral, message",
    [
        ({"evaluate": {"fragments": [50, 150]}}, r"viral.evaluate.fragments: \[50\] are shorter"),
        ({"split": {"holdout": "cluster", "taxonomy": "t.tsv"}}, "viral.split.taxonomy"),
        ({"split": {"holdout": "taxon", "identity": 0.8}}, "viral.split.identity"),
        (
            {
                "source": "local",
                "local": {"background": "a.fa", "other": "b.fa"},
                "classify": {"model": "fp32"},
            },
            "class name 'background' is reserved",
        ),
    ],
)
def test_cross_key_errors_name_the_key(viral, message):
    cfg = cfg_with()
    for k, v in viral.items():
        cfg["viral"][k] = {**cfg["viral"].get(k, {}), **v} if isinstance(v, dict) else v
    with pytest.raises(ConfigError, match=message):
        dataset.check_config(qconfig.validate(cfg)["viral"])


def test_default_viral_config_exercises_the_open_set_taxa_and_fragments():
    viral = qconfig.validate(cfg_with())["viral"]
    dataset.check_config(viral)
    assert viral["split"]["holdout"] == "taxon"
    assert viral["openset"]["background"] and viral["openset"]["fpr"] is not None
    assert viral["evaluate"]["fragments"] and viral["evaluate"]["kmer"]
    # the full preset keeps seed 004's Table III model
    full = yaml.safe_load((ROOT / "config/presets/full.yaml").read_text())
    cfg = cfg_with()
    cfg["viral"] = {**cfg["viral"], **full["viral"]}
    cfg["viral"]["model"] = full["viral"]["model"]
    model = qconfig.validate(cfg)["viral"]["model"]
    assert (model["head"], model["channels"], model["kernels"]) == (
        "flatten",
        [256, 64, 32, 32],
        [16, 32, 64, 128],
    )


def test_global_head_is_position_invariant_and_ignores_padding():
    import torch

    arch = {"name": "viralcnn", "n_classes": 3, "length": 256, "dropout": 0.0}
    arch |= {"channels": [8, 8, 8, 8], "kernels": [5, 5, 5, 5], "head": "global"}
    torch.manual_seed(0)
    model = build_model(arch).eval()
    x = torch.zeros(2, 5, 256)
    bases = torch.randint(0, 4, (64,))
    x[0, bases, torch.arange(64)] = 1  # a 64-bp record at the start
    x[1, bases, torch.arange(64) + 128] = 1  # the same record further along
    out = model(x)
    # conv padding makes the edges differ a little; the scores stay close, and far padding
    # changes nothing: the same record in a longer input scores the same
    assert torch.allclose(out[0], out[1], atol=0.3)
    longer = build_model({**arch, "length": 512}).eval()
    longer.load_state_dict(model.state_dict())
    x2 = torch.zeros(1, 5, 512)
    x2[0, :, :256] = x[0]
    assert torch.allclose(longer(x2), out[:1], atol=1e-5)
    flat = build_model({**arch, "head": "flatten"})
    assert flat.dense1.in_features == 8 * 16 and model.dense1.in_features == 16
