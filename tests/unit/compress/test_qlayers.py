"""Quantized layers and quantize_model on Conv1d/Conv2d/Conv3d/Linear toy models and SweepNet."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from quantscan.apps.sweeps.compress_presets import SEED000_TABLE6
from quantscan.compress.layers import (
    QActivation,
    QConv1d,
    QConv2d,
    QConv3d,
    QLinear,
    layer_config_of,
    quantizable_modules,
    quantize_model,
)
from quantscan.compress.quantizers import parse_quantizer
from quantscan.errors import ConfigError
from quantscan.models import SweepNet


def toy(kind: str) -> tuple[nn.Module, torch.Tensor]:
    """A conv (or linear) -> ReLU -> linear model and a matching input."""
    torch.manual_seed(0)
    if kind == "linear":
        model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2))
        return model, torch.randn(3, 6)
    conv = {"conv1d": nn.Conv1d, "conv2d": nn.Conv2d, "conv3d": nn.Conv3d}[kind]
    dims = {"conv1d": 1, "conv2d": 2, "conv3d": 3}[kind]
    model = nn.Sequential(
        conv(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4**dims, 2)
    )
    return model, torch.randn(3, 2, *([4] * dims))


QTYPES = {"conv1d": QConv1d, "conv2d": QConv2d, "conv3d": QConv3d, "linear": QLinear}
FUNCS = {"conv1d": F.conv1d, "conv2d": F.conv2d, "conv3d": F.conv3d}


@pytest.mark.parametrize("kind", ["conv1d", "conv2d", "conv3d", "linear"])
def test_quantize_model_swaps_layers_and_fake_quantizes(kind):
    model, x = toy(kind)
    kq, bq = "quantized_bits(3, 0, 1, alpha='auto')", "quantized_bits(8, 2)"
    q = quantize_model(model, {"0": {"kernel": kq, "bias": bq}, "1": "quantized_relu(3, 1)"})
    assert type(q[0]) is QTYPES[kind] and isinstance(q[0], type(model[0]))
    assert type(model[0]) is not QTYPES[kind]  # the original is untouched (deep copy)
    assert type(q[-1]) is nn.Linear  # not in the config: stays float
    assert list(q.state_dict()) == list(model.state_dict())
    assert torch.equal(q[0].weight, model[0].weight)  # stored weights stay float for QAT

    wq = parse_quantizer(kq)(model[0].weight)
    bqv = parse_quantizer(bq)(model[0].bias)
    assert not torch.equal(wq, model[0].weight)
    if kind == "linear":
        h = F.linear(x, wq, bqv)
    else:
        h = FUNCS[kind](x, wq, bqv, padding=1)
    h = parse_quantizer("quantized_relu(3, 1)")(h)
    expected = model[-1](model[2](h) if kind != "linear" else h)
    assert torch.equal(q(x), expected)


def test_ste_gradient_reaches_float_weights():
    model, x = toy("conv2d")
    q = quantize_model(model, {"0": "quantized_bits(2, 0, 1, alpha='auto')"})
    q(x).sum().backward()
    # identity STE: dL/dw equals dL/dw' of a plain conv evaluated at the quantized weights
    wq = q[0].quantized_weight().detach().requires_grad_(True)
    ref = model[-1](model[2](model[1](F.conv2d(x, wq, q[0].quantized_bias().detach(), padding=1))))
    ref.sum().backward()
    assert torch.allclose(q[0].weight.grad, wq.grad)


def test_qat_steps_reduce_loss():
    torch.manual_seed(1)
    x = torch.randn(64, 6)
    y = x @ torch.randn(6, 1)
    model = quantize_model(
        nn.Sequential(nn.Linear(6, 1)), {"0": "quantized_bits(4, 0, 1, alpha='auto')"}
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = F.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_plain_string_means_kernel_and_bias_dict_means_each():
    model, _ = toy("linear")
    q = quantize_model(model, {"0": "quantized_bits(4)", "2": {"kernel": "binary(alpha='auto')"}})
    assert q[0].kernel_quantizer.spec == q[0].bias_quantizer.spec == "quantized_bits(4, 0, 0)"
    assert q[2].kernel_quantizer.spec == "binary(alpha='auto')" and q[2].bias_quantizer is None
    again = quantize_model(model, {"0": {"name": "quantized_bits", "bits": 4}})
    assert (
        again[0].bias_quantizer == q[0].bias_quantizer
    )  # a quantizer dict is one spec, not kernel/bias


def test_unknown_names_list_valid_ones():
    with pytest.raises(ConfigError) as err:
        quantize_model(SweepNet(), {"sweepnet_fourth_conv": "quantized_bits(2)"})
    message = str(err.value)
    assert "sweepnet_fourth_conv" in message
    assert "se_block_first_conv" in message and "se_block_second_activation" in message
    assert "sweepnet_first_max_pool" not in message  # nothing to quantize there


def test_quantizable_modules_of_sweepnet():
    names = quantizable_modules(SweepNet())
    weights = [n for n, k in names.items() if k == "weight"]
    activations = [n for n, k in names.items() if k == "activation"]
    assert weights == [w for w, _ in SweepNet.LAYERS]
    assert activations == [a for _, a in SweepNet.LAYERS if a]


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"0": "quantized_relu(2)"}, "activation quantizer"),
        ({"1": "quantized_sigmoid(2)"}, "sigmoid"),
        ({"1": "quantized_bits(2, 0, 1, alpha='auto')"}, "weights only"),
        ({"0": {"kernel": "quantized_bits(2)", "scale": "x"}}, "unknown keys"),
        ({"0": "quantized_bits(2, alpha='nope')"}, "nope"),
    ],
)
def test_bad_configs(config, match):
    model, _ = toy("linear")
    with pytest.raises(ConfigError, match=match) as err:
        quantize_model(model, config)
    assert repr(next(iter(config))) in str(err.value)  # names the layer


def test_bias_free_layer():
    model = nn.Sequential(nn.Linear(3, 2, bias=False))
    q = quantize_model(model, {"0": "quantized_bits(4)"})
    assert q[0].bias_quantizer is None
    with pytest.raises(ConfigError, match="no bias"):
        quantize_model(model, {"0": {"bias": "quantized_bits(4)"}})


def test_plain_quantizer_on_activation_keeps_the_nonlinearity():
    model, _ = toy("linear")
    q = quantize_model(model, {"1": "quantized_bits(4, 0)"})
    assert isinstance(q[1], QActivation)
    x = torch.linspace(-1, 1, 41)
    assert torch.equal(q[1](x), parse_quantizer("quantized_bits(4, 0)")(torch.relu(x)))
    assert (q[1](x) >= 0).all()


def test_requantize_and_back_to_float():
    model, x = toy("conv1d")
    q = quantize_model(
        model, {"0": "quantized_bits(2, 0, 1, alpha='auto')", "1": "quantized_relu(2)"}
    )
    q[0].weights_quantized = True
    q2 = quantize_model(q, {"0": "quantized_bits(4, 0, 1, alpha='auto')"})
    assert q2[0].kernel_quantizer.bits == 4 and not q2[0].weights_quantized
    back = quantize_model(q2, {"0": "fp32", "1": None})
    assert type(back[0]) is nn.Conv1d and type(back[1]) is nn.ReLU
    assert torch.equal(back(x), model(x))


def test_layer_config_of_round_trips_sweepnet_table6():
    torch.manual_seed(2)
    model = SweepNet()
    q = quantize_model(model, SEED000_TABLE6)
    config = layer_config_of(q)
    assert config["se_block_first_conv"] == {
        "kernel": "binary(alpha='auto')",
        "bias": "binary(alpha='auto')",
    }
    assert config["se_block_second_activation"] == "quantized_sigmoid(1)"
    assert "sweepnet_first_activation" not in config
    rebuilt = quantize_model(model, config)
    assert layer_config_of(rebuilt) == config
    x = torch.rand(2, 1, 12, 20)
    assert torch.equal(rebuilt(x), q(x))


def test_sweepnet_table6_trains():
    torch.manual_seed(3)
    q = quantize_model(SweepNet(), SEED000_TABLE6)
    x = torch.rand(4, 1, 10, 16)
    loss = F.cross_entropy(q(x), torch.tensor([0, 1, 0, 1]))
    loss.backward()
    for name, p in q.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_quantized_layers_can_be_built_directly():
    layer = QConv2d(1, 2, 3, kernel_quantizer="quantized_bits(4, 0, 1)", bias=False)
    assert layer.kernel_quantizer.bits == 4 and layer.bias_quantizer is None
    assert list(layer.state_dict()) == ["weight"]
    x = torch.randn(1, 1, 5, 5)
    assert torch.equal(
        layer(x), F.conv2d(x, parse_quantizer("quantized_bits(4, 0, 1)")(layer.weight))
    )
    linear = QLinear(3, 2, kernel_quantizer="binary()", bias_quantizer="quantized_bits(8)")
    assert set(torch.unique(linear.quantized_weight()).tolist()) <= {-1.0, 1.0}


def test_effective_weight_is_the_deployed_kernel():
    model, _ = toy("conv3d")
    q = quantize_model(model, {"0": "ternary(alpha='auto')"})
    w = q[0].effective_weight()
    assert not w.requires_grad and torch.equal(w, q[0].quantized_weight())
    assert w.abs().unique().numel() <= 1 + 4  # zero plus one magnitude per output channel
