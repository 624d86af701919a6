"""layers.maxpool: the compiled 2 x 2 stride-1 max-pool equals PyTorch's, to first and second order."""

import pytest
import torch
import torch.nn.functional as F

from quantscan.layers.maxpool import max_pool_2x2
from quantscan.models import SweepNet


def _input(layout: str, dtype=torch.float64, shape=(3, 4, 9, 7)) -> torch.Tensor:
    torch.manual_seed(0)
    x = torch.relu(torch.randn(*shape, dtype=dtype))  # many windows tie at zero
    x[0, 0, 1:3, 1:3] = 1.5  # ties at a positive value too
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "strided":
        x = x.transpose(2, 3)  # neither contiguous nor channels-last
    return x.requires_grad_()


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_values_and_gradients_equal_the_library(layout, dtype):
    x = _input(layout, dtype)
    got, want = max_pool_2x2(x), F.max_pool2d(x, 2, stride=1)
    assert torch.equal(got, want)
    grad = torch.randn_like(want)
    (gx,) = torch.autograd.grad(got, x, grad)
    (wx,) = torch.autograd.grad(want, x, grad)
    assert torch.equal(gx, wx)  # ties routed to the same (first) maximum


@pytest.mark.parametrize("shape", [(2, 3, 2, 2), (2, 1, 5, 4), (1, 6, 2, 9)])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_edge_shapes(shape, layout):
    """One-pixel outputs and single channels: tensors both contiguous and channels-last."""
    x = _input(layout, shape=shape)
    got, want = max_pool_2x2(x), F.max_pool2d(x, 2, stride=1)
    assert torch.equal(got, want)
    grad = torch.randn_like(want)
    assert torch.equal(*(torch.autograd.grad(y, x, grad)[0] for y in (got, want)))


def test_second_order():
    x = torch.randn(2, 3, 6, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(max_pool_2x2, (x,))
    assert torch.autograd.gradgradcheck(max_pool_2x2, (x,))


def test_sweepnet_trains_through_it_and_matches_the_library():
    torch.manual_seed(1)
    model = SweepNet()
    x = (torch.rand(4, 1, 16, 16) > 0.6).float().contiguous(memory_format=torch.channels_last)
    y = torch.tensor([0, 1, 1, 0])
    out = model(x)
    nodes = [type(n).__name__ for n in _graph(out.grad_fn)]
    assert nodes.count("_MaxPoolBackward") == 3  # the compiled kernels ran
    grads = torch.autograd.grad(F.cross_entropy(out, y), list(model.parameters()))
    pools = [m for m in model.modules() if type(m).__name__ == "MaxPool2x2"]
    for m in pools:  # the same model with the library's kernel
        m.forward = lambda x: F.max_pool2d(x, 2, stride=1)
    ref = torch.autograd.grad(F.cross_entropy(model(x), y), list(model.parameters()))
    for a, b in zip(grads, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    with torch.no_grad():  # inference keeps the shifted maxima (no autograd node at all)
        assert model(x).grad_fn is None


def _graph(fn, seen=None):
    """Every autograd node reachable from ``fn``."""
    seen = set() if seen is None else seen
    if fn is None or fn in seen:
        return seen
    seen.add(fn)
    for child, _ in fn.next_functions:
        _graph(child, seen)
    return seen
