"""2 x 2 max-pool with stride 1 (SweepNet's) for training: compiled kernels, first and second order.

Why: PyTorch's CPU ``max_pool2d_with_indices`` takes a third of a SweepNet training step (torch 2.13,
NCHW and channels-last alike: ~0.55 s per layer on a batch of 32 images of 128 x 128, 1 thread). A
single pass that keeps the maximum and a 2-bit code of where it was (0: top left, 1: top right,
2: bottom left, 3: bottom right) and a scatter of the gradient by those codes take a small fraction
of it. Ties go to the first maximum in that order, as in PyTorch's kernel (after a ReLU most
windows tie at zero), so the routed gradients are the library's.

``max_pool_2x2`` is differentiable twice (attq's Hutchinson traces differentiate the gradient
again): the backward scatters by the codes, and the scatter's backward gathers by them.

Kernels run on ``(N, H, W, C)`` views: channels-last tensors are that layout already; NCHW tensors
are viewed as ``(B * C, H, W, 1)``. They release the GIL; a call splits the batch over
``torch.get_num_threads()`` threads, as PyTorch's own kernels use that many.
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from ..runtime.lutkernels import jit as _jit


@_jit
def _pool(x, out, code):
    n, h, w, c = x.shape
    for b in range(n):
        for i in range(h - 1):
            for j in range(w - 1):
                for k in range(c):
                    best = x[b, i, j, k]
                    where = 0
                    v = x[b, i, j + 1, k]
                    if v > best:
                        best = v
                        where = 1
                    v = x[b, i + 1, j, k]
                    if v > best:
                        best = v
                        where = 2
                    v = x[b, i + 1, j + 1, k]
                    if v > best:
                        best = v
                        where = 3
                    out[b, i, j, k] = best
                    code[b, i, j, k] = where


@_jit
def _scatter(grad, code, out):
    """``out`` = zeros of the input's shape, plus ``grad`` at the positions the codes name."""
    out[:] = 0
    n, h, w, c = grad.shape
    for b in range(n):
        for i in range(h):
            for j in range(w):
                for k in range(c):
                    where = code[b, i, j, k]
                    out[b, i + (where >> 1), j + (where & 1), k] += grad[b, i, j, k]


@_jit
def _gather(x, code, out):
    """``out`` = ``x`` at the positions the codes name (the pool of ``x`` by fixed codes)."""
    n, h, w, c = out.shape
    for b in range(n):
        for i in range(h):
            for j in range(w):
                for k in range(c):
                    where = code[b, i, j, k]
                    out[b, i, j, k] = x[b, i + (where >> 1), j + (where & 1), k]


@functools.cache
def _executor(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(threads, thread_name_prefix="maxpool")


def _run(kernel, *arrays: np.ndarray) -> None:
    """``kernel(*arrays)``, the first axis split over ``torch.get_num_threads()`` threads."""
    n = len(arrays[0])
    threads = min(torch.get_num_threads(), n)
    if threads <= 1:
        kernel(*arrays)
        return
    bounds = np.linspace(0, n, threads + 1).astype(int)
    jobs = [
        _executor(threads).submit(kernel, *(a[lo:hi] for a in arrays))
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    for job in jobs:
        job.result()


def _format(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format


def _nhwc(t: torch.Tensor, channels_last: bool) -> np.ndarray:
    """A writable ``(N, H, W, C)`` numpy view of ``t`` in that layout (copied into it if need be)."""
    t = t.detach().contiguous(memory_format=_format(channels_last))
    if channels_last:
        return t.permute(0, 2, 3, 1).numpy()
    b, c, h, w = t.shape
    return t.view(b * c, h, w, 1).numpy()


def _empty(shape, dtype, channels_last: bool) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype, memory_format=_format(channels_last))


# Every tensor of one pooling (input, output, codes, gradients) has the layout the input had:
# channels-last when the input is (and is not plain contiguous as well), else contiguous.


class _MaxPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        cl = not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
        b, c, h, w = x.shape
        out = _empty((b, c, h - 1, w - 1), x.dtype, cl)
        code = _empty((b, c, h - 1, w - 1), torch.uint8, cl)
        _run(_pool, _nhwc(x, cl), _nhwc(out, cl), _nhwc(code, cl))
        ctx.save_for_backward(code)
        ctx.input_shape, ctx.channels_last = x.shape, cl
        return out

    @staticmethod
    def backward(ctx, grad):
        (code,) = ctx.saved_tensors
        return _Scatter.apply(grad, code, ctx.input_shape, ctx.channels_last)


class _Scatter(torch.autograd.Function):
    @staticmethod
    def forward(ctx, grad, code, shape, cl):
        out = _empty(shape, grad.dtype, cl)
        _run(_scatter, _nhwc(grad, cl), _nhwc(code, cl), _nhwc(out, cl))
        ctx.save_for_backward(code)
        ctx.channels_last = cl
        return out

    @staticmethod
    def backward(ctx, grad_grad):
        (code,) = ctx.saved_tensors
        return _Gather.apply(grad_grad, code, ctx.channels_last), None, None, None


class _Gather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, code, cl):
        out = _empty(code.shape, x.dtype, cl)
        _run(_gather, _nhwc(x, cl), _nhwc(code, cl), _nhwc(out, cl))
        ctx.save_for_backward(code)
        ctx.input_shape, ctx.channels_last = x.shape, cl
        return out

    @staticmethod
    def backward(ctx, grad):
        (code,) = ctx.saved_tensors
        return _Scatter.apply(grad, code, ctx.input_shape, ctx.channels_last), None, None


def max_pool_2x2(x: torch.Tensor) -> torch.Tensor:
    """``F.max_pool2d(x, 2, stride=1)`` of a 4-D CPU tensor, through the compiled kernels."""
    return _MaxPool.apply(x)
