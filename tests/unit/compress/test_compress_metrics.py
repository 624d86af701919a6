"""Compression metrics on hand-made models with answers worked out by hand."""

import math

import pytest
import torch
from torch import nn

from quantscan.compress.metrics import (
    E_MAC_J,
    E_WORD_J,
    compression_report,
    cr_g,
    density,
    ec_g,
    ec_t,
    effective_weights,
    mac_counts,
    nbits,
    nops,
    nops_x_bits,
    srqw,
    weights_mbit,
)
from quantscan.errors import ConfigError
from quantscan.models import SweepNet


def linear_with_three_zeros():
    torch.manual_seed(0)
    m = nn.Linear(4, 3)
    with torch.no_grad():
        m.weight.copy_(torch.arange(1.0, 13.0).view(3, 4))
        m.weight.view(-1)[[0, 5, 11]] = 0.0
        m.bias.zero_()  # zero biases must not count as zero weights
    return m


def test_density_srqw_bits_on_a_linear():
    m = linear_with_three_zeros()
    assert density(m) == pytest.approx(9 / 12)
    assert srqw(m) == pytest.approx(3 / 12)
    assert nbits(m) == 9 * 32
    assert nbits(m, {"": 8}) == 72
    assert weights_mbit(m, {"": 8}) == pytest.approx(72 / 1e6)


def test_cr_g_against_dense_and_given_reference():
    m = linear_with_three_zeros()
    r = cr_g(m, {"": 8})
    assert r["cr_g_total"] == pytest.approx(1 - 72 / 384)
    assert r["cr_g_quantized"] == pytest.approx(1 - 72 / 384)
    assert r["quantized_layers"] == [""]
    ref = nn.Linear(4, 3)
    with torch.no_grad():
        ref.weight.fill_(1.0)
        ref.weight[0, 0] = 0.0
    assert cr_g(m, {"": 8}, reference=ref)["cr_g_total"] == pytest.approx(1 - 72 / (11 * 32))
    # pruning alone, no quantization: a gain from the zeros only; no quantized layers
    r = cr_g(m)
    assert r["cr_g_total"] == pytest.approx(1 - 9 / 12) and r["cr_g_quantized"] is None


def two_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Flatten(), nn.Linear(75, 2))
    with torch.no_grad():
        model[0].weight.view(-1)[:10] = 0.0  # 44 of 54 conv weights left
    return model


def test_cr_g_whole_model_vs_quantized_layers():
    model = two_layer()
    r = cr_g(model, {"0": 4})
    nb_total = 44 * 4 + 150 * 32
    assert r["nbits_total"] == nb_total
    assert r["cr_g_total"] == pytest.approx(1 - nb_total / (204 * 32))
    assert r["cr_g_quantized"] == pytest.approx(1 - 44 * 4 / (54 * 32))
    assert r["quantized_layers"] == ["0"]
    assert srqw(model, ["0"]) == pytest.approx(10 / 54)


def test_conv2d_macs_by_hand():
    model = two_layer()
    x = torch.randn(4, 2, 5, 5)
    macs = mac_counts(model, x)
    # padding 1 keeps 5x5 = 25 output positions; each of the 54 weights is used once per position
    assert macs["0"] == {"positions": 25, "macs_dense": 1350, "macs_nonzero": 44 * 25}
    assert macs["2"] == {"positions": 1, "macs_dense": 150, "macs_nonzero": 150}
    assert nops(model, x) == 1100 + 150  # per sample, independent of the batch size of 4
    assert nops(model, x[:1]) == 1250
    assert nops_x_bits(model, x, {"0": 4}) == 1100 * 4 + 150 * 32


@pytest.mark.parametrize(
    ("layer", "shape", "expected"),
    [
        (nn.Conv2d(2, 3, 3, stride=2), (1, 2, 7, 7), 9 * 54),  # 3x3 outputs
        (nn.Conv2d(2, 3, 3, dilation=2), (1, 2, 7, 7), 9 * 54),  # effective kernel 5: 3x3
        (nn.Conv2d(4, 4, 3, groups=2), (1, 4, 5, 5), 4 * 9 * (2 * 9)),  # 18 MACs per output
        (nn.Conv1d(2, 4, 3), (2, 2, 10), 8 * 24),
        (nn.Conv3d(1, 2, 2), (3, 1, 3, 3, 3), 8 * 16),
        (nn.Linear(5, 2), (2, 7, 5), 7 * 10),  # applied at each of 7 positions
    ],
)
def test_mac_counts_other_layers(layer, shape, expected):
    assert nops(layer, torch.randn(*shape)) == expected


def test_shared_layer_counts_each_call():
    lin = nn.Linear(3, 3)

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = lin

        def forward(self, x):
            return self.lin(self.lin(x))

    assert nops(Twice(), torch.randn(2, 3)) == 18


def test_ec_t_and_ec_g_by_hand():
    m = linear_with_three_zeros()
    x = torch.randn(1, 4)
    fp = 12 * E_MAC_J + 12 * E_WORD_J  # 12 MACs, 12 words of 32 bits, no scale factor
    # ternary: 9 non-zero MACs; ceil(9*2/32) = 1 word + 2 scale factors
    c = 9 * E_MAC_J + (1 + 2) * E_WORD_J
    assert ec_t(m, x, {"": 2})["ec_t_j"] == pytest.approx(c)
    r = ec_g(m, x, {"": 2})
    assert r["ec_t_fp_j"] == pytest.approx(fp) and r["ec_t_j"] == pytest.approx(c)
    assert r["ec_g"] == pytest.approx((fp - c) / fp) and r["ec_change"] == pytest.approx(
        (c - fp) / fp
    )
    assert "model" in r["ec_g_model"] and "3.7e-12" in r["ec_g_model"]
    # 8 bits: one scale factor by default, or as many as given
    assert ec_t(m, x, {"": 8})["words"] == math.ceil(72 / 32) + 1
    assert ec_t(m, x, {"": 8}, n_sf={"": 3})["words"] == 3 + 3
    assert ec_t(m, x, ops_per_mac=2)["n_ma"] == 18


def test_ec_g_hides_an_increase_but_ec_change_does_not():
    m = nn.Linear(4, 3)  # dense, "quantized" at 32 bits with many scale factors: more energy
    r = ec_g(m, torch.randn(1, 4), n_sf={"": 50})
    assert r["ec_g"] > 0 and r["ec_change"] > 0


def test_effective_weight_hook_is_used():
    class Signed(nn.Linear):
        def effective_weight(self):
            return torch.where(self.weight.abs() < 0.2, 0.0, torch.sign(self.weight))

    torch.manual_seed(0)
    m = Signed(10, 10)
    expected = float((m.weight.abs() >= 0.2).float().mean())
    assert density(m) == pytest.approx(expected) and expected < 1
    assert effective_weights(m)[""].abs().max() == 1


def test_report_on_sweepnet():
    model = SweepNet(filters=8)
    x = torch.rand(2, 1, 16, 12)
    r = compression_report(model, x)
    assert r["density"] == 1.0 and r["srqw"] is None
    assert r["cr_g_total"] == pytest.approx(0.0) and r["ec_g"] == pytest.approx(0.0)
    assert r["nops"] == sum(layer["macs_nonzero"] for layer in r["layers"].values())
    assert r["nops_x_bits"] == 32 * r["nops"]
    # first conv: 8x(1x2x2) weights over a 15x11 output
    assert r["layers"]["sweepnet_first_conv"]["macs_dense"] == 32 * 15 * 11
    r = compression_report(model, x, bits={"sweepnet_second_conv": 2})
    assert r["quantized_layers"] == ["sweepnet_second_conv"] and r["srqw"] == 0.0
    assert 0 < r["cr_g_total"] < r["cr_g_quantized"] == pytest.approx(1 - 2 / 32)


def test_bad_arguments():
    m = linear_with_three_zeros()
    with pytest.raises(ConfigError):
        nbits(m, {"nope": 8})
    with pytest.raises(ConfigError):
        nbits(m, {"": 0})
    with pytest.raises(ConfigError):
        srqw(m, ["nope"])
