"""layers.conv1d.Conv1d: the rewritten backward equals nn.Conv1d's, to first and second order."""

import pytest
import torch
from torch import nn

from quantscan.compress.layers import QConv1d, quantize_model
from quantscan.compress.ternary import TernaryConv1d, ternarize_model
from quantscan.layers.conv1d import MIN_CHANNELS, Conv1d
from quantscan.models import ViralCNN


def _pair(in_channels, out_channels, kernel, bias, **kwargs):
    torch.manual_seed(0)
    ref = nn.Conv1d(in_channels, out_channels, kernel, bias=bias, **kwargs).double()
    fast = Conv1d(in_channels, out_channels, kernel, bias=bias, **kwargs).double()
    fast.load_state_dict(ref.state_dict())
    return ref, fast


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kernel", [1, 5, 8])
def test_gradients_equal_the_library(kernel, bias):
    ref, fast = _pair(MIN_CHANNELS, 7, kernel, bias)
    x = torch.randn(3, MIN_CHANNELS, 20, dtype=torch.float64, requires_grad=True)
    out = fast(x)
    assert type(out.grad_fn).__name__ == "_Conv1dFunctionBackward"  # the fast path ran
    torch.testing.assert_close(out, ref(x))
    g = torch.randn_like(out)
    got = torch.autograd.grad(out, [x, *fast.parameters()], g)
    want = torch.autograd.grad(ref(x), [x, *ref.parameters()], g)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b)


def test_weight_gradient_only_when_the_input_needs_none():
    ref, fast = _pair(MIN_CHANNELS, 4, 3, True)
    x = torch.randn(2, MIN_CHANNELS, 9, dtype=torch.float64)  # a first layer: no input gradient
    fast(x).square().sum().backward()
    ref(x).square().sum().backward()
    torch.testing.assert_close(fast.weight.grad, ref.weight.grad)
    torch.testing.assert_close(fast.bias.grad, ref.bias.grad)


def test_second_order_hessian_vector_product():
    """compress.hessian differentiates the gradient again (Hutchinson traces)."""
    ref, fast = _pair(MIN_CHANNELS, 3, 4, True)
    x = torch.randn(2, MIN_CHANNELS, 11, dtype=torch.float64)
    v = [torch.randn_like(p) for p in ref.parameters()]

    def hvp(layer):
        params = list(layer.parameters())
        loss = torch.tanh(layer(x)).square().sum()  # non-quadratic: a non-zero Hessian
        grads = torch.autograd.grad(loss, params, create_graph=True)
        dot = sum((g * u).sum() for g, u in zip(grads, v, strict=True))
        return torch.autograd.grad(dot, params)

    for a, b in zip(hvp(fast), hvp(ref), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    "in_channels, kwargs",
    [
        (MIN_CHANNELS - 1, {}),  # narrow layers: the library is faster
        (MIN_CHANNELS, {"padding": 2}),
        (MIN_CHANNELS, {"stride": 2}),
        (MIN_CHANNELS, {"dilation": 2}),
    ],
)
def test_other_convolutions_use_the_library(in_channels, kwargs):
    ref, fast = _pair(in_channels, 4, 3, True, **kwargs)
    x = torch.randn(2, in_channels, 16, dtype=torch.float64, requires_grad=True)
    out = fast(x)
    assert type(out.grad_fn).__name__ != "_Conv1dFunctionBackward"
    torch.testing.assert_close(out, ref(x))
    with torch.no_grad():
        assert fast(x).grad_fn is None


def test_viral_cnn_layers_quantize_and_ternarize_with_the_fast_path():
    model = ViralCNN(n_classes=3, length=64)
    assert type(model.conv2) is Conv1d
    qmodel = quantize_model(model, {"conv2": {"kernel": "quantized_bits(4, 0, 1)", "bias": None}})
    assert type(qmodel.conv2) is QConv1d
    x = torch.zeros(2, 5, 64)
    x[:, 0] = 1
    out = qmodel.conv2(torch.randn(2, 256, 40, requires_grad=True))
    assert type(out.grad_fn).__name__ == "_Conv1dFunctionBackward"
    tmodel = ternarize_model(ViralCNN(n_classes=3, length=64), "ttq", ["conv2"])
    assert type(tmodel.conv2) is TernaryConv1d
    assert qmodel(x).shape == tmodel(x).shape == (2, 3)
