from pathlib import Path

import pytest
import yaml

from quantscan import config as qconfig
from quantscan.apps.sweeps import settings as sweeps_settings
from quantscan.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def default_config():
    return yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def sweeps(cfg):
    """The sweeps' section apps.sweeps of a config."""
    return cfg["apps"]["sweeps"]


def test_default_config_is_valid_and_defaults_are_filled():
    cfg = qconfig.validate({"apps": {"sweeps": {"data": {"scenarios": {"constant": {}}}}}})
    assert cfg["seed"] == 20261123
    assert sweeps(cfg)["data"]["haplotypes"] == 128
    assert sweeps(cfg)["data"]["image"]["encoding"] == "sweepnet"
    assert sweeps(cfg)["train"]["epochs"] == 10
    # every application is a section of apps, the built-in ones always there
    assert list(qconfig.validate({})["apps"]) == ["sweeps", "viral"]
    full = qconfig.validate(default_config())
    assert list(full["apps"]) == ["sweeps", "viral", "connectomics"]
    assert sweeps_settings.neutral_scenarios(sweeps(full)["data"]) == ["island_migration"]
    assert "constant" in sweeps_settings.sweep_scenarios(sweeps(full)["data"])


def test_old_layout_names_every_moved_key_before_any_check():
    """A config of the former layout (top-level sweeps, viral, compress, scan), also merged over
    the new default as Snakemake merges --configfile and --config, names each old key's new key."""
    cfg = default_config()
    cfg["scan"] = {"grid_points": 10}
    cfg["sweeps"] = {"train": {"epochs": 2}, "scenarios": {"constant": {}}}
    cfg["viral"] = {"augment": {"crop": 0.5}, "classify": {"model": "fp32"}, "length": 300}
    cfg["compress"] = None
    with pytest.raises(ConfigError) as err:
        qconfig.validate(cfg)
    assert str(err.value) == (
        "config key 'scan' moved to 'apps.sweeps.scan'; 'sweeps.train' moved to "
        "'apps.sweeps.train'; 'sweeps.scenarios' moved to 'apps.sweeps.data.scenarios'; "
        "'viral.augment' moved to 'apps.viral.train.augment'; 'viral.classify' moved to "
        "'apps.viral.scan.classify'; 'viral.length' moved to 'apps.viral.data.length'; "
        "'compress' moved to 'apps.sweeps.compress' (see config/README.md)"
    )
    with pytest.raises(ConfigError, match=r"^config key 'viral' moved to 'apps.viral' \(see"):
        qconfig.check_moved_keys({"viral": {}, "apps": {}})
    qconfig.check_moved_keys(default_config())  # the new layout passes
    # every new key named is a key of the schema
    schema = qconfig.load_schema()
    moved = {**qconfig._MOVED_SECTIONS, **qconfig._MOVED_SWEEPS, **qconfig._MOVED_VIRAL}
    for new in moved.values():
        node = schema
        for part in new.split("."):
            node = qconfig._resolve(node, schema)["properties"][part]


def test_every_schema_property_is_typed_described_and_defaulted():
    schema = qconfig.load_schema()

    def walk(node, path, root):
        node = qconfig._resolve(node, root)
        for key, sub in node.get("properties", {}).items():
            sub_r = qconfig._resolve(sub, root)
            where = f"{path}.{key}"
            assert "description" in sub_r, where
            assert "type" in sub_r or "enum" in sub_r, where
            walk(sub_r, where, root)

    walk(schema, "config", schema)
    for section in ("data", "model", "train"):
        node = schema["properties"]["apps"]["properties"]["sweeps"]["properties"][section]
        assert "default" in qconfig._resolve(node, schema), section
        for key, sub in qconfig._resolve(node, schema)["properties"].items():
            assert "default" in qconfig._resolve(sub, schema), f"{section}.{key}"


def test_wrong_type_names_the_key():
    cfg = default_config()
    sweeps(cfg)["train"]["epochs"] = "ten"
    with pytest.raises(
        ConfigError, match=r"apps\.sweeps\.train\.epochs: 'ten' is not of type 'integer'"
    ):
        qconfig.validate(cfg)


def test_unknown_key_names_the_key_and_its_place():
    cfg = default_config()
    sweeps(cfg)["data"]["image"]["sorting"] = True
    with pytest.raises(
        ConfigError, match=r"unknown config key 'sorting' under apps\.sweeps\.data\.image"
    ):
        qconfig.validate(cfg)
    cfg = default_config()
    sweeps(cfg)["data"]["scenarios"]["constant"] = {"bottlenek": {}}
    with pytest.raises(
        ConfigError, match=r"'bottlenek' under apps\.sweeps\.data\.scenarios\.constant"
    ):
        qconfig.validate(cfg)


def test_unknown_scenario_in_run_is_rejected():
    cfg = default_config()
    sweeps(cfg)["data"]["run"] = ["constant", "bottleneck_mild"]
    with pytest.raises(
        ConfigError,
        match=r"apps\.sweeps\.data\.run: unknown scenario 'bottleneck_mild'.*defined: constant",
    ):
        qconfig.validate(cfg)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.update(haplotypes=63), "must be even"),
        (
            lambda s: s["scenarios"].update(
                b={"bottleneck": {"start": 0.2, "end": 0.1, "size": 1}}
            ),
            "end must exceed start",
        ),
        (
            lambda s: (
                s["scenarios"].update(h={"hotspot": {"left": 10, "right": 1e9, "intensity": 2}}),
                s["run"].append("h"),  # only scenarios that run are checked against the region
            ),
            "left < right",
        ),
        (lambda s: s.update(run=["island_migration"]), "no scenario with a sweep class"),
    ],
)
def test_cross_key_checks(edit, message):
    cfg = default_config()
    edit(sweeps(cfg)["data"])
    with pytest.raises(ConfigError, match=message):
        qconfig.validate(cfg)


def test_scan_calibration_samples_default_and_bounds():
    assert sweeps(qconfig.validate(default_config()))["scan"]["calibration_samples"] == 256
    cfg = default_config()
    sweeps(cfg)["scan"]["calibration_samples"] = 0
    with pytest.raises(ConfigError, match="apps.sweeps.scan.calibration_samples"):
        qconfig.validate(cfg)


def test_layer_preset_names_are_checked_against_the_callers_presets():
    """The schema takes any preset name; validation checks them against each application's
    presets (the sweeps' Table 6, none for the viral model), before any job."""
    from quantscan.apps.sweeps.compress_presets import LAYER_PRESETS
    from quantscan.compress.presets import check_presets

    full = qconfig.validate(default_config())
    check_presets(sweeps(full)["compress"]["methods"], LAYER_PRESETS)
    check_presets(full["apps"]["viral"]["compress"]["methods"], {})
    cfg = default_config()
    sweeps(cfg)["compress"]["methods"]["po2_vs_auto"]["configurations"]["t7"] = "table7"
    # validation asks each application to check its methods (App.check)
    with pytest.raises(
        ConfigError, match="'po2_vs_auto': unknown layer preset 'table7'; known: seed"
    ):
        qconfig.validate(cfg)
    cfg = default_config()
    cfg["apps"]["viral"]["compress"]["methods"]["t6"] = {
        "type": "mixed",
        "layers": "seed000_table6",
    }
    with pytest.raises(
        ConfigError, match="'t6': unknown layer preset 'seed000_table6'; known: none"
    ):
        qconfig.validate(cfg)
    methods = sweeps(qconfig.validate(default_config()))["compress"]["methods"]
    with pytest.raises(ConfigError, match="'mixed_table6': unknown layer preset 'seed000_table6'"):
        check_presets(methods, {})
