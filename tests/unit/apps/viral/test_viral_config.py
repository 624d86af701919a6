"""Config keys of the open set, the hold-outs and the evaluation; an empty list is never 'all'
(apps.sweeps.data.run, apps.viral.scan.classify.inputs: an error; null is the default)."""

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
    """config/config.yaml with sections of apps.viral replaced (``data={...}``, ``scan={...}``)."""
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    cfg["apps"]["viral"].update(copy.deepcopy(viral))
    return cfg


def viral_of(cfg):
    return cfg["apps"]["viral"]


def test_empty_lists_are_errors_and_null_is_the_default():
    cfg = cfg_with()
    data = cfg["apps"]["sweeps"]["data"]
    data["run"] = []
    with pytest.raises(
        ConfigError, match=r"config key apps.sweeps.data.run: an empty list is not allowed"
    ):
        qconfig.validate(cfg)
    data["run"] = None
    sw = qconfig.validate(cfg)["apps"]["sweeps"]["data"]
    assert sweeps_settings.active_scenarios(sw) == list(sw["scenarios"])
    del data["run"]
    assert qconfig.validate(cfg)["apps"]["sweeps"]["data"]["run"] is None
    scan = viral_of(cfg_with())["scan"]
    cfg = cfg_with(scan={**scan, "classify": {"inputs": []}})
    with pytest.raises(
        ConfigError, match=r"apps.viral.scan.classify.inputs: an empty list is not allowed"
    ):
        qconfig.validate(cfg)
    cfg = cfg_with(scan={**scan, "classify": {"inputs": None}})
    assert viral_of(qconfig.validate(cfg))["scan"]["classify"]["inputs"] is None
    schema = qconfig.load_schema()
    apps = schema["properties"]["apps"]["properties"]
    for where in (
        apps["sweeps"]["properties"]["data"],
        apps["viral"]["properties"]["scan"]["properties"]["classify"],
    ):
        key = "run" if "run" in where["properties"] else "inputs"
        assert "an empty list is an error" in where["properties"][key]["description"]


@pytest.mark.parametrize(
    "viral, message",
    [
        (
            {"evaluate": {"fragments": [50, 150]}},
            r"apps.viral.evaluate.fragments: \[50\] are shorter",
        ),
        (
            {"data": {"split": {"holdout": "cluster", "taxonomy": "t.tsv"}}},
            "apps.viral.data.split.taxonomy",
        ),
        (
            {"data": {"split": {"holdout": "taxon", "identity": 0.8}}},
            "apps.viral.data.split.identity",
        ),
        (
            {
                "data": {"source": "local", "local": {"background": "a.fa", "other": "b.fa"}},
                "scan": {"classify": {"model": "fp32"}},
            },
            "apps.viral.data.local: class name 'background' is reserved",
        ),
    ],
)
def test_cross_key_errors_name_the_key(viral, message):
    cfg = cfg_with()
    for section, keys in viral.items():
        for k, v in keys.items():
            old = viral_of(cfg)[section].get(k, {})
            viral_of(cfg)[section][k] = {**old, **v} if isinstance(v, dict) else v
    with pytest.raises(ConfigError, match=message):
        dataset.check_config(viral_of(qconfig.validate(cfg)))


def test_default_viral_config_exercises_the_open_set_taxa_and_fragments():
    viral = viral_of(qconfig.validate(cfg_with()))
    dataset.check_config(viral)
    assert viral["data"]["split"]["holdout"] == "taxon"
    openset = viral["scan"]["openset"]
    assert openset["background"] and openset["fpr"] is not None
    assert viral["evaluate"]["fragments"] and viral["evaluate"]["kmer"]
    # the full preset keeps Fernandes & Kung's Table III model
    full = yaml.safe_load((ROOT / "config/presets/full.yaml").read_text())
    cfg = cfg_with()
    cfg["apps"]["viral"] = {**viral_of(cfg), **viral_of(full)}
    model = viral_of(qconfig.validate(cfg))["model"]
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
