"""TTQ / aTTQ / DoReFa: forward values, gradient conventions, model conversion, metrics and a tiny QAT."""

import io
import math

import numpy as np
import pytest
import torch
from torch import nn

from quantscan.compress.layers import quantize_model
from quantscan.compress.metrics import compression_report
from quantscan.compress.prune import weight_layers
from quantscan.compress.ternary import (
    DoReFaActivation,
    TernaryConv1d,
    TernaryConv2d,
    TernaryConv3d,
    TernaryLinear,
    apply_ternary_config,
    attq,
    default_layers,
    dorefa_activation,
    dorefa_weight,
    make_ternarizer,
    ternarize_model,
    ternary_bits,
    ternary_config_of,
    ternary_layers,
    ternary_n_sf,
    ternary_report,
    to_float,
    ttq,
)
from quantscan.errors import ConfigError
from quantscan.models import SweepNet


def scalar(value):
    return torch.tensor(float(value), requires_grad=True)


# --------------------------------------------------------------------------------------------------
# TTQ


def test_ttq_forward_thresholds_and_levels():
    w = torch.tensor([-1.0, -0.06, -0.05, -0.01, 0.0, 0.05, 0.051, 0.5, 1.0])
    out = ttq(w, torch.tensor(2.0), torch.tensor(3.0), t=0.05)  # Δ = 0.05·max|W| = 0.05
    # strictly beyond ±Δ -> levels; |W| <= Δ (both edges included) -> 0
    assert out.tolist() == [-3.0, -3.0, 0.0, 0.0, 0.0, 0.0, 2.0, 2.0, 2.0]
    # Δ scales with max|W|
    assert ttq(w * 10, torch.tensor(2.0), torch.tensor(3.0), t=0.05).tolist() == out.tolist()
    assert ttq(w, torch.tensor(2.0), torch.tensor(3.0), t=0.55).tolist() == [-3.0] + [0.0] * 7 + [
        2.0
    ]


def test_ttq_gradients_match_the_hand_computed_convention():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(200, generator=g).requires_grad_()
    c = torch.randn(200, generator=g)  # dL/dW_t for L = Σ c·W_t
    w_p, w_n, t = scalar(0.7), scalar(1.3), 0.3
    (ttq(w, w_p, w_n, t) * c).sum().backward()
    delta = t * w.detach().abs().max()
    pos, neg = w.detach() > delta, w.detach() < -delta
    assert pos.any() and neg.any() and (~pos & ~neg).any()
    expected = torch.where(pos, 0.7 * c, torch.where(neg, 1.3 * c, c))  # W_p·g, W_n·g, 1·g
    assert torch.allclose(w.grad, expected)
    assert torch.allclose(w_p.grad, c[pos].sum())
    assert torch.allclose(w_n.grad, -c[neg].sum())  # autograd's sign, not the paper's +Σ


def test_ttq_scale_gradients_equal_autograd_of_the_forward():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(64, generator=g)
    c = torch.randn(64, generator=g)
    w_p, w_n = scalar(0.4), scalar(0.9)
    (ttq(w, w_p, w_n) * c).sum().backward()
    delta = 0.05 * w.abs().max()
    p2, n2 = scalar(0.4), scalar(0.9)
    ((p2 * (w > delta) - n2 * (w < -delta)) * c).sum().backward()
    assert torch.allclose(w_p.grad, p2.grad) and torch.allclose(w_n.grad, n2.grad)
    # so a gradient step on W_n lowers this (linear) loss, which the paper's +Σ would raise
    with torch.no_grad():
        before = (ttq(w, w_p, w_n) * c).sum()
        after = (ttq(w, w_p, w_n - 0.1 * w_n.grad) * c).sum()
    assert after < before


# --------------------------------------------------------------------------------------------------
# aTTQ


def test_attq_forward_uses_mean_and_std_with_asymmetric_thresholds():
    w = torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0])  # μ = 0, σ = √2 (population)
    w_l, w_r = torch.tensor(-0.5), torch.tensor(0.25)
    # Δ_min = -1.41, Δ_max = 1.13
    assert attq(w, w_l, w_r, -1.0, 0.8).tolist() == [-0.5, 0.0, 0.0, 0.0, 0.25]
    # Δ_min = -0.71: -1 leaves the band on the left only
    assert attq(w, w_l, w_r, -0.5, 0.8).tolist() == [-0.5, -0.5, 0.0, 0.0, 0.25]
    # thresholds follow the statistics: shifting every weight shifts the band
    assert attq(w + 10, w_l, w_r, -0.5, 0.8).tolist() == [-0.5, -0.5, 0.0, 0.0, 0.25]
    # t_min == t_max: only weights equal to μ + t·σ fall in the (closed) band
    assert attq(w, w_l, w_r, 0.0, 0.0).tolist() == [-0.5, -0.5, 0.0, 0.25, 0.25]


def test_attq_gradients_zero_in_the_band_and_level_magnitudes_outside():
    g = torch.Generator().manual_seed(2)
    w = torch.randn(300, generator=g).requires_grad_()
    c = torch.randn(300, generator=g)
    w_l, w_r = scalar(-0.4), scalar(0.6)
    (attq(w, w_l, w_r, -0.7, 0.3) * c).sum().backward()
    x = w.detach()
    mu, sigma = x.mean(), x.std(unbiased=False)
    below, above = x < mu - 0.7 * sigma, x > mu + 0.3 * sigma
    band = ~below & ~above
    assert below.any() and above.any() and band.any()
    assert torch.equal(w.grad[band], torch.zeros(int(band.sum())))
    assert torch.allclose(w.grad[below], 0.4 * c[below])  # |W_l|·g keeps descent direction
    assert torch.allclose(w.grad[above], 0.6 * c[above])
    assert torch.allclose(w_l.grad, c[below].sum()) and torch.allclose(w_r.grad, c[above].sum())


@pytest.mark.parametrize(
    ("method", "params", "match"),
    [
        ("attq", {"t_min": 1.0, "t_max": 0.0}, "t_min <= t_max"),
        ("attq", {"t_min": float("nan")}, "finite"),
        ("attq", {"init": "zeros"}, "init"),
        ("ttq", {"t": 1.0}, "< 1"),
        ("ttq", {"t": -0.1}, r"\[0.0, 1.0\]"),
        ("ttq", {"t_min": 0.0}, "unknown parameter"),
        ("dorefa", {"k": 0}, "k must be"),
        ("dorefa", {"k": 2.0}, "k must be"),
        ("twn", {}, "unknown ternary method"),
    ],
)
def test_invalid_hyperparameters_raise_config_error(method, params, match):
    with pytest.raises(ConfigError, match=match):
        make_ternarizer(method, **params)
    with pytest.raises(ConfigError, match=match):
        ternarize_model(SweepNet(filters=4), method, **params)


def band_sparsity(w, t_min, t_max):
    return float((attq(w, torch.tensor(-1.0), torch.tensor(1.0), t_min, t_max) == 0).float().mean())


def test_attq_sparsity_pattern_of_seed_001():
    """SRQW grows with the gap t_max - t_min, and at equal gap a band straddling the mean
    (t_min <= 0 <= t_max) zeroes more weights than one off to a side; TTQ's Δ = 0.05·max|W| is far
    less sparse than Vindas et al.'s MNIST setting (-1, 0.5)."""
    w = torch.randn(40_000, generator=torch.Generator().manual_seed(3))
    nested = [band_sparsity(w, -a, a) for a in (0.25, 0.5, 1.0, 2.0)]
    assert nested == sorted(nested) and nested[0] < nested[-1]
    straddling = band_sparsity(w, -0.5, 0.5)
    assert straddling > band_sparsity(w, 0.5, 1.5) > band_sparsity(w, 1.5, 2.5)
    assert straddling > band_sparsity(w, -1.5, -0.5)
    # a Gaussian layer: SRQW = Φ(t_max) - Φ(t_min)
    phi = lambda t: 0.5 * (1 + math.erf(t / math.sqrt(2)))  # noqa: E731
    assert band_sparsity(w, -1.0, 0.5) == pytest.approx(phi(0.5) - phi(-1.0), abs=0.01)
    ttq_zeros = float((ttq(w, torch.tensor(1.0), torch.tensor(1.0)) == 0).float().mean())
    assert band_sparsity(w, -1.0, 0.5) > 2 * ttq_zeros


# --------------------------------------------------------------------------------------------------
# DoReFa


def test_dorefa_binary_forward_and_identity_gradient():
    w = torch.tensor([-0.3, 0.0, 0.1, 0.2], requires_grad=True)
    out = dorefa_weight(w, 1)
    assert torch.allclose(out, torch.tensor([-0.15, 0.15, 0.15, 0.15]))  # E = mean|W|; 0 -> +E
    assert set(out.tolist()) == {-0.15000000596046448, 0.15000000596046448}
    c = torch.tensor([1.0, -2.0, 3.0, 0.5])
    (out * c).sum().backward()
    assert torch.equal(w.grad, c)  # identity, E carries no gradient


def test_dorefa_k_bit_forward_and_gradient():
    w = torch.randn(100, generator=torch.Generator().manual_seed(4)).requires_grad_()
    out = dorefa_weight(w, 2)
    x = np.tanh(w.detach().double().numpy())
    x = x / (2 * np.abs(x).max()) + 0.5
    expected = 2 * np.round(3 * x) / 3 - 1
    assert np.allclose(out.detach().numpy(), expected, atol=1e-6)
    assert set(np.round(out.detach().numpy() * 3).tolist()) <= {-3.0, -1.0, 1.0, 3.0}
    c = torch.randn(100, generator=torch.Generator().manual_seed(5))
    (out * c).sum().backward()
    # identity rounding: the gradient of 2·(tanh(W)/(2·max|tanh W|) + 0.5) - 1, through the max too
    w2 = w.detach().clone().requires_grad_()
    t = torch.tanh(w2)
    ((t / t.abs().max()) * c).sum().backward()
    assert torch.allclose(w.grad, w2.grad, atol=1e-6)


def test_dorefa_activation_values_and_gradient():
    x = torch.tensor([-0.5, 0.2, 0.5, 0.9, 1.5], requires_grad=True)
    out = dorefa_activation(x, 2)  # clip to [0, 1], round(3x)/3 half to even
    assert torch.allclose(out, torch.tensor([0.0, 1 / 3, 2 / 3, 1.0, 1.0]))
    out.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]
    module = DoReFaActivation(2, "relu")
    assert torch.equal(module(x.detach()), out.detach())


# --------------------------------------------------------------------------------------------------
# model conversion


def toy(kind: str) -> nn.Module:
    if kind == "linear":
        return nn.Sequential(
            nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2)
        )
    conv = {"conv1d": nn.Conv1d, "conv2d": nn.Conv2d, "conv3d": nn.Conv3d}[kind]
    pool = {"conv1d": nn.AdaptiveAvgPool1d, "conv2d": nn.AdaptiveAvgPool2d}.get(
        kind, nn.AdaptiveAvgPool3d
    )
    return nn.Sequential(
        conv(2, 4, 3, padding=1),
        nn.ReLU(),
        conv(4, 6, 3, padding=1),
        nn.ReLU(),
        pool(1),
        nn.Flatten(),
        nn.Linear(6, 2),
    )


INPUTS = {
    "linear": (3, 6),
    "conv1d": (3, 2, 9),
    "conv2d": (3, 2, 5, 6),
    "conv3d": (3, 2, 4, 4, 5),
}
TERNARY_TYPES = {
    "linear": TernaryLinear,
    "conv1d": TernaryConv1d,
    "conv2d": TernaryConv2d,
    "conv3d": TernaryConv3d,
}


@pytest.mark.parametrize("kind", list(INPUTS))
@pytest.mark.parametrize(
    ("method", "params", "bits", "n_sf", "n_values"),
    [
        ("ttq", {}, 2, 2, 3),
        ("attq", {"t_min": -0.5, "t_max": 0.5}, 2, 2, 3),
        ("dorefa", {"k": 1}, 1, 1, 2),
        ("dorefa", {"k": 3}, 3, 0, 8),
    ],
)
def test_ternarize_model_on_every_layer_kind(kind, method, params, bits, n_sf, n_values):
    torch.manual_seed(6)
    model = toy(kind)
    converted = ternarize_model(model, method, **params)
    assert default_layers(model) == ["2"]  # all but the first and the last weight layer
    layer = converted[2]
    assert type(layer) is TERNARY_TYPES[kind] and isinstance(layer, type(model[2]))
    assert type(model[2]) is not type(layer)  # the input model is untouched
    assert list(ternary_layers(converted)) == ["2"]
    assert ternary_bits(converted) == {"2": bits} and ternary_n_sf(converted) == {"2": n_sf}
    w = layer.effective_weight()
    assert w.shape == model[2].weight.shape and not w.requires_grad
    assert torch.unique(w).numel() <= n_values
    if method in ("ttq", "attq"):
        assert torch.count_nonzero(w) < w.numel()  # the zero band holds some weights
    expected_keys = {"2.weight", "2.bias"} | {f"2.{s}" for s in layer.ternarizer.scale_names}
    assert expected_keys <= set(converted.state_dict())
    x = torch.randn(*INPUTS[kind])
    out = converted(x)
    out.sum().backward()
    assert layer.weight.grad is not None
    for name in layer.ternarizer.scale_names:
        assert getattr(layer, name).grad is not None
    everything = ternarize_model(model, method, "all", **params)
    assert list(ternary_layers(everything)) == list(weight_layers(model))


def test_scale_initialisation_modes():
    torch.manual_seed(7)
    model = toy("conv1d")
    w = model[2].weight.detach()
    layer = ternarize_model(model, "ttq", t=0.2)[2]
    delta = 0.2 * w.abs().max()
    assert layer.w_p.item() == pytest.approx(float(w[w > delta].mean()))
    assert layer.w_n.item() == pytest.approx(float(-w[w < -delta].mean()))
    layer = ternarize_model(model, "attq", t_min=-0.5, t_max=0.7)[2]
    lo, hi = w.mean() - 0.5 * w.std(unbiased=False), w.mean() + 0.7 * w.std(unbiased=False)
    assert layer.w_l.item() == pytest.approx(float(w[w < lo].mean()))
    assert layer.w_r.item() == pytest.approx(float(w[w > hi].mean()))
    assert ternarize_model(model, "ttq", init="one")[2].w_n.item() == 1.0
    assert ternarize_model(model, "attq", init="one")[2].w_l.item() == -1.0


def test_layer_selection_and_errors():
    model = SweepNet(filters=4)
    converted = ternarize_model(model, "attq")
    assert list(ternary_layers(converted)) == [
        "sweepnet_second_conv",
        "sweepnet_third_conv",
        "se_block_first_conv",
        "se_block_second_conv",
        "sweepnet_first_dense",
    ]
    # e.g. hessian.select_layers(...)["selected"]
    picked = ternarize_model(model, "ttq", ["sweepnet_first_dense", "sweepnet_first_conv"])
    assert set(ternary_layers(picked)) == {"sweepnet_first_dense", "sweepnet_first_conv"}
    with pytest.raises(ConfigError, match="unknown layer 'nope'"):
        ternarize_model(model, "ttq", ["nope"])
    with pytest.raises(ConfigError, match="already ternarized"):
        ternarize_model(converted, "ttq", ["sweepnet_third_conv"])
    quantized = quantize_model(model, {"sweepnet_third_conv": "quantized_bits(4)"})
    with pytest.raises(ConfigError, match="not already quantized"):
        ternarize_model(quantized, "ttq", ["sweepnet_third_conv"])
    with pytest.raises(ConfigError, match="cannot be ternarized"):
        ternarize_model(model, "ttq", ["sweepnet_first_activation"])
    with pytest.raises(ConfigError, match="no layers"):
        ternarize_model(toy("linear")[:1], "ttq")
    with pytest.raises(ConfigError, match="'all' or None"):
        ternarize_model(model, "ttq", "sweepnet_third_conv")


def test_dorefa_activations_are_swapped_by_name():
    model = ternarize_model(
        SweepNet(filters=4), "dorefa", activations={"sweepnet_first_activation": 2}, k=1
    )
    act = model.sweepnet_first_activation
    assert isinstance(act, DoReFaActivation) and act.k == 2 and act.activation == "relu"
    config = ternary_config_of(model)
    assert config["activations"] == {"sweepnet_first_activation": {"k": 2}}
    with pytest.raises(ConfigError, match="not a ReLU"):
        ternarize_model(SweepNet(filters=4), "dorefa", activations={"sweepnet_first_conv": 2})


def test_state_dict_and_config_round_trip():
    torch.manual_seed(8)
    model = ternarize_model(SweepNet(filters=8), "attq", t_min=-1.5, t_max=0.5)
    with torch.no_grad():
        model.sweepnet_third_conv.w_r.mul_(1.7)  # trained scales must come back from the state
        model.sweepnet_third_conv.weight.add_(0.01)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer)
    assert {"sweepnet_third_conv.w_l", "sweepnet_third_conv.w_r"} <= set(state)
    x = torch.rand(3, 1, 12, 20)
    for rebuilt in (
        ternarize_model(SweepNet(filters=8), "attq", t_min=-1.5, t_max=0.5),
        apply_ternary_config(SweepNet(filters=8), ternary_config_of(model)),
    ):
        rebuilt.load_state_dict(state)
        with torch.no_grad():
            assert torch.equal(rebuilt(x), model(x))


def test_metrics_measure_the_effective_weights():
    torch.manual_seed(9)
    model = ternarize_model(SweepNet(filters=8), "attq", t_min=-1.0, t_max=0.5)
    bits, n_sf = ternary_bits(model), ternary_n_sf(model)
    x = torch.rand(1, 1, 12, 20)
    report = compression_report(model, x, bits, list(bits), n_sf=n_sf)
    weights = {n: m.effective_weight() for n, m in ternary_layers(model).items()}
    zeros = sum(int((w == 0).sum()) for w in weights.values())
    total = sum(w.numel() for w in weights.values())
    assert report["srqw"] == pytest.approx(zeros / total) and 0.4 < report["srqw"] < 0.7
    nnz = sum(int(torch.count_nonzero(w)) for w in weights.values())
    assert report["cr_g_quantized"] == pytest.approx(1 - 2 * nnz / (32 * total))
    per_layer = ternary_report(model)
    assert per_layer["sweepnet_third_conv"]["levels"] == [
        model.sweepnet_third_conv.w_l.item(),
        model.sweepnet_third_conv.w_r.item(),
    ]
    lo, hi = per_layer["sweepnet_third_conv"]["thresholds"]
    assert lo < hi and per_layer["sweepnet_third_conv"]["n_scales"] == 2


def test_to_float_keeps_predictions():
    torch.manual_seed(10)
    model = ternarize_model(SweepNet(filters=8), "ttq")
    plain = to_float(model)
    assert not ternary_layers(plain) and type(plain.sweepnet_third_conv) is nn.Conv2d
    assert not any(n.endswith(("w_p", "w_n")) for n in plain.state_dict())
    x = torch.rand(2, 1, 12, 20)
    with torch.no_grad():
        assert torch.allclose(plain(x), model(x), atol=1e-6)


# --------------------------------------------------------------------------------------------------
# a tiny seeded QAT run


def toy_data(n=96):
    g = torch.Generator().manual_seed(11)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 2, 16, generator=g)
    x[:, 0, 4:8] += 1.5 * (2.0 * y.view(-1, 1) - 1.0)  # class signal in a local pattern
    return x, y


@pytest.mark.parametrize(
    ("method", "params"),
    [("ttq", {"t": 0.05}), ("attq", {"t_min": -1.0, "t_max": 0.5}), ("dorefa", {"k": 1})],
)
def test_qat_reduces_loss_and_keeps_weights_ternary(method, params):
    torch.manual_seed(12)
    float_model = toy("conv1d")
    model = ternarize_model(float_model, method, "all", **params)
    scales_before = {n: p.item() for n, p in model.named_parameters() if p.ndim == 0}
    x, y = toy_data()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    loss_fn = nn.CrossEntropyLoss()
    with torch.no_grad():
        initial = float(loss_fn(model(x), y))
    for _epoch in range(15):
        for i in range(0, len(x), 16):
            optimizer.zero_grad()
            loss_fn(model(x[i : i + 16]), y[i : i + 16]).backward()
            optimizer.step()
    with torch.no_grad():
        final = float(loss_fn(model(x), y))
    assert final < 0.6 * initial, (initial, final)
    for name, layer in ternary_layers(model).items():
        w = layer.effective_weight()
        levels = layer.ternarizer.levels(layer)
        allowed = {0.0, *levels} if method != "dorefa" else set(levels)
        assert set(torch.unique(w).tolist()) <= allowed, name
    if scales_before:
        moved = [
            abs(p.item() - scales_before[n]) for n, p in model.named_parameters() if p.ndim == 0
        ]
        assert max(moved) > 1e-3
