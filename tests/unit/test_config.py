from pathlib import Path

import pytest
import yaml

from quantscan import config as qconfig
from quantscan.apps.sweeps import settings as sweeps_settings
from quantscan.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def default_config():
    return yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def test_default_config_is_valid_and_defaults_are_filled():
    cfg = qconfig.validate({"sweeps": {"scenarios": {"constant": {}}}})
    assert cfg["seed"] == 20261123
    assert cfg["sweeps"]["haplotypes"] == 128
    assert cfg["sweeps"]["image"]["encoding"] == "sweepnet"
    assert cfg["sweeps"]["train"]["epochs"] == 10
    full = qconfig.validate(default_config())
    assert sweeps_settings.neutral_scenarios(full["sweeps"]) == ["island_migration"]
    assert "constant" in sweeps_settings.sweep_scenarios(full["sweeps"])


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
    for key, sub in schema["properties"]["sweeps"]["properties"].items():
        assert "default" in qconfig._resolve(sub, schema), key


def test_wrong_type_names_the_key():
    cfg = default_config()
    cfg["sweeps"]["train"]["epochs"] = "ten"
    with pytest.raises(ConfigError, match=r"sweeps\.train\.epochs: 'ten' is not of type 'integer'"):
        qconfig.validate(cfg)


def test_unknown_key_names_the_key_and_its_place():
    cfg = default_config()
    cfg["sweeps"]["image"]["sorting"] = True
    with pytest.raises(ConfigError, match=r"unknown config key 'sorting' under sweeps\.image"):
        qconfig.validate(cfg)
    cfg = default_config()
    cfg["sweeps"]["scenarios"]["constant"] = {"bottlenek": {}}
    with pytest.raises(ConfigError, match=r"'bottlenek' under sweeps\.scenarios\.constant"):
        qconfig.validate(cfg)


def test_unknown_scenario_in_run_is_rejected():
    cfg = default_config()
    cfg["sweeps"]["run"] = ["constant", "bottleneck_mild"]
    with pytest.raises(ConfigError, match=r"unknown scenario 'bottleneck_mild'.*defined: constant"):
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
    edit(cfg["sweeps"])
    with pytest.raises(ConfigError, match=message):
        qconfig.validate(cfg)


def test_scan_calibration_samples_default_and_bounds():
    assert qconfig.validate(default_config())["scan"]["calibration_samples"] == 256
    cfg = default_config()
    cfg.setdefault("scan", {})["calibration_samples"] = 0
    with pytest.raises(ConfigError, match="scan.calibration_samples"):
        qconfig.validate(cfg)


def test_layer_preset_names_are_checked_against_the_callers_presets():
    """The schema takes any preset name; validation checks them against each application's
    presets (the sweeps' Table 6, none for the viral model), before any job."""
    from quantscan.apps.sweeps.compress_presets import LAYER_PRESETS
    from quantscan.compress.presets import check_presets

    full = qconfig.validate(default_config())
    check_presets(full["compress"]["methods"], LAYER_PRESETS)
    check_presets(full["viral"]["compress"]["methods"], {})
    cfg = default_config()
    cfg["compress"]["methods"]["po2_vs_auto"]["configurations"]["t7"] = "table7"
    # validation asks each application to check its methods (App.check)
    with pytest.raises(
        ConfigError, match="'po2_vs_auto': unknown layer preset 'table7'; known: seed"
    ):
        qconfig.validate(cfg)
    cfg = default_config()
    cfg["viral"]["compress"]["methods"]["t6"] = {"type": "mixed", "layers": "seed000_table6"}
    with pytest.raises(
        ConfigError, match="'t6': unknown layer preset 'seed000_table6'; known: none"
    ):
        qconfig.validate(cfg)
    methods = qconfig.validate(default_config())["compress"]["methods"]
    with pytest.raises(ConfigError, match="'mixed_table6': unknown layer preset 'seed000_table6'"):
        check_presets(methods, {})
