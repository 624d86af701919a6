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

import numba as nb
import numpy as np
import torch


def _jit(fn):
    """``njit(nogil)``, cached on disk where the package directory is writable."""
    try:
        return nb.njit(cache=True, nogil=True)(fn)
    except RuntimeError:  # numba: "cannot cache function ... no locator available"
        return nb.njit(nogil=True)(fn)


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


def _nhwc(t: torch.Tensor) -> np.ndarray:
    """A writable ``(N, H, W, C)`` numpy view of a contiguous or channels-last 4-D tensor."""
    if t.is_contiguous():
        b, c, h, w = t.shape
        return t.detach().view(b * c, h, w, 1).numpy()
    return t.detach().permute(0, 2, 3, 1).numpy()


def _empty(shape, like: torch.Tensor, dtype=None) -> torch.Tensor:
    """An uninitialised tensor in ``like``'s memory format (contiguous unless it is channels-last)."""
    fmt = torch.contiguous_format if like.is_contiguous() else torch.channels_last
    return torch.empty(shape, dtype=dtype or like.dtype, memory_format=fmt)


def _like(t: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
    """``t`` in the memory format of ``code`` (the kernels index both alike)."""
    fmt = torch.contiguous_format if code.is_contiguous() else torch.channels_last
    return t.contiguous(memory_format=fmt)


def _layout(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself when contiguous or channels-last, else a contiguous copy."""
    if t.is_contiguous() or t.is_contiguous(memory_format=torch.channels_last):
        return t
    return t.contiguous()


class _MaxPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        x = _layout(x)
        b, c, h, w = x.shape
        out = _empty((b, c, h - 1, w - 1), x)
        code = _empty((b, c, h - 1, w - 1), x, dtype=torch.uint8)
        _run(_pool, _nhwc(x), _nhwc(out), _nhwc(code))
        ctx.save_for_backward(code)
        ctx.input_shape = x.shape
        return out

    @staticmethod
    def backward(ctx, grad):
        (code,) = ctx.saved_tensors
        return _Scatter.apply(grad, code, ctx.input_shape)


class _Scatter(torch.autograd.Function):
    @staticmethod
    def forward(ctx, grad, code, shape):
        grad = _like(grad, code)
        out = _empty(shape, code, dtype=grad.dtype)
        _run(_scatter, _nhwc(grad), _nhwc(code), _nhwc(out))
        ctx.save_for_backward(code)
        return out

    @staticmethod
    def backward(ctx, grad_grad):
        (code,) = ctx.saved_tensors
        return _Gather.apply(grad_grad, code), None, None


class _Gather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, code):
        x = _like(x, code)
        out = _empty(code.shape, code, dtype=x.dtype)
        _run(_gather, _nhwc(x), _nhwc(code), _nhwc(out))
        ctx.save_for_backward(code)
        ctx.input_shape = x.shape
        return out

    @staticmethod
    def backward(ctx, grad):
        (code,) = ctx.saved_tensors
        return _Scatter.apply(grad, code, ctx.input_shape), None


def max_pool_2x2(x: torch.Tensor) -> torch.Tensor:
    """``F.max_pool2d(x, 2, stride=1)`` of a 4-D CPU tensor, through the compiled kernels."""
    return _MaxPool.apply(x)
