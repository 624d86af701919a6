"""Weight-bit accounting: SweepNet fp32 and van de Wetering (2024) Tables 5-6, plus Conv1d/Conv3d (QKeras counts 0)."""

import torch
from torch import nn

from quantscan.apps.sweeps.compress_presets import SEED000_TABLE6
from quantscan.compress.cost import bits_table, layer_bits, model_bits
from quantscan.compress.layers import quantize_model
from quantscan.models import SweepNet


def test_fp32_sweepnet_is_310400_bits():
    model = SweepNet()
    n = sum(p.numel() for p in model.parameters())
    assert n == 9_700
    assert model_bits(model) == 32 * n == 310_400  # van de Wetering (2024) Table 5, "Non-quantized"


def test_seed000_table6_is_19238_bits():
    q = quantize_model(SweepNet(), SEED000_TABLE6)
    assert model_bits(q) == 19_238  # van de Wetering (2024) Table 5, "Optimal"
    rows = {r.name: r for r in layer_bits(q)}
    assert (rows["se_block_first_conv"].kernel_bits, rows["se_block_first_conv"].bias_bits) == (
        1,
        1,
    )
    assert rows["se_block_second_conv"].total_bits == 64 + 32
    assert rows["sweepnet_second_dense"].type == "QLinear"
    assert {r.kernel_bits for n, r in rows.items() if not n.startswith("se_")} == {2}


def test_all_layers_two_bits_is_19400():
    spec = "quantized_bits(2, 0, 1, alpha='auto')"
    q = quantize_model(SweepNet(), {name: spec for name, _ in SweepNet.LAYERS})
    assert model_bits(q) == 19_400  # van de Wetering (2024) Table 5, "All layers 2 bits"


def test_kernel_only_quantization_leaves_bias_at_32_bits():
    q = quantize_model(SweepNet(), {"sweepnet_second_conv": {"kernel": "quantized_bits(4)"}})
    row = next(r for r in layer_bits(q) if r.name == "sweepnet_second_conv")
    assert (row.kernel_bits, row.bias_bits, row.total_bits) == (4, 32, 4096 * 4 + 32 * 32)
    assert model_bits(q) == 310_400 - 4096 * 28


def test_conv1d_and_conv3d_are_counted():
    model = nn.Sequential(nn.Conv1d(3, 4, 5), nn.ReLU(), nn.Conv3d(4, 2, 3, bias=False))
    assert model_bits(model) == 32 * (3 * 4 * 5 + 4 + 4 * 2 * 27)
    q = quantize_model(model, {"0": {"kernel": "ternary(alpha='auto')"}, "2": "quantized_bits(3)"})
    rows = layer_bits(q)
    assert [(r.type, r.total_bits) for r in rows] == [
        ("QConv1d", 60 * 2 + 4 * 32),
        ("QConv3d", 216 * 3),
    ]
    assert rows[1].bias_bits == 0 and rows[1].n_bias == 0


def test_other_parameterised_modules_count_as_float():
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.ConvTranspose2d(3, 2, 2))
    q = quantize_model(model, {"0": "binary()"})
    types = [r.type for r in layer_bits(q)]
    assert types == ["QLinear", "BatchNorm1d", "ConvTranspose2d"]
    assert model_bits(q) == 15 * 1 + 6 * 32 + (3 * 2 * 4 + 2) * 32


def test_bits_table_has_a_total_row():
    q = quantize_model(SweepNet(), SEED000_TABLE6)
    lines = bits_table(q).strip().split("\n")
    assert lines[0].split("\t")[0] == "name"
    assert len(lines) == 1 + len(SweepNet.LAYERS) + 1
    total = lines[-1].split("\t")
    assert total[0] == "total" and total[2] == "9700" and total[-1] == "19238"


def test_table6_config_gives_working_one_bit_layers():
    torch.manual_seed(0)
    q = quantize_model(SweepNet(), SEED000_TABLE6)
    for name in ("se_block_first_conv", "se_block_second_conv"):
        layer = getattr(q, name)
        w = layer.quantized_weight()
        assert (w != 0).all(), name  # quantized_bits(1, alpha='auto') would give all zeros
        assert all(row.abs().unique().numel() == 1 for row in w), name
