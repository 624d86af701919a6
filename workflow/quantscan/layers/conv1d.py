"""``Conv1d``: ``nn.Conv1d`` with a faster CPU backward pass for wide layers.

Why: PyTorch's CPU ``convolution_backward`` is slow for 1-D convolutions with many input channels
and long kernels. For the viral CNN's conv2 (256 -> 64 channels, kernel 32, 1,750 positions) it takes
4-5x the forward pass (torch 2.13, AVX2, 1 and 2 threads), which made the full-scale viral training
~20 CPU-hours. Both gradients are themselves forward convolutions, which oneDNN runs fast:

* input gradient: the output gradient, zero-padded by k - 1 on both sides, convolved with the
  kernel flipped in time and with in/out channels swapped (2.5x faster on conv2);
* weight gradient: the input convolved with the output gradient, batch as channels (1.4-1.7x).

Together the viral CNN's conv layers train ~1.7x faster. The fast path applies to stride 1,
dilation 1, one group, no padding inside the convolution (the viral CNN pads in its own module) and
``MIN_CHANNELS`` input channels or more (for the 5-channel first layer the library is faster), and
only when a gradient is needed; everything else, ONNX export included, runs ``nn.Conv1d``'s own
code. The backward is built from differentiable operations, so double backward (the Hessian-vector
products of ``compress.hessian``) works through it. Results equal the library's up to float
rounding (the sums run in another order).
"""

import torch
import torch.nn.functional as F
from torch import nn

#: fewest input channels for which the rewritten backward pass is faster (measured; see above)
MIN_CHANNELS = 32


class _Conv1dFunction(torch.autograd.Function):
    """``F.conv1d(x, weight, bias)`` (stride 1, no padding) with both gradients as convolutions."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return F.conv1d(x, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        k = weight.shape[-1]
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:  # (B, O, L) -> (B, C, L + k - 1)
            grad_x = F.conv1d(F.pad(grad, (k - 1, k - 1)), weight.flip(-1).transpose(0, 1))
        if ctx.needs_input_grad[1]:  # (C, B, L + k - 1) * (O, B, L) -> (C, O, k)
            grad_w = F.conv1d(x.transpose(0, 1), grad.transpose(0, 1)).transpose(0, 1)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, 2))
        return grad_x, grad_w, grad_b


class Conv1d(nn.Conv1d):
    """Drop-in ``nn.Conv1d`` (same parameters, state dict and ONNX export) with the fast backward."""

    def _conv_forward(self, x, weight, bias):
        if self._fast_backward_applies(x, weight):
            return _Conv1dFunction.apply(x, weight, bias)
        return super()._conv_forward(x, weight, bias)

    def _fast_backward_applies(self, x, weight) -> bool:
        return (
            torch.is_grad_enabled()
            and (x.requires_grad or weight.requires_grad)
            and x.device.type == "cpu"
            and self.in_channels >= MIN_CHANNELS
            and self.stride == (1,)
            and self.dilation == (1,)
            and self.groups == 1
            and self.padding == (0,)
            and not torch.jit.is_tracing()
            and not torch.onnx.is_in_onnx_export()
        )
