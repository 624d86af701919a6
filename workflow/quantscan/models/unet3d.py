"""A lean 3-D U-Net for dense predictions on anisotropic volumes (e.g. nearest-neighbour affinities).

U-Net (Ronneberger et al. 2015; 3-D: Çiçek et al. 2016), sized and shaped to quantize well:

* ``levels`` resolution levels with ``filters * growth**l`` feature maps at level ``l``; each
  level (encoder, bottom, decoder) is two Conv3d (no bias) + BatchNorm3d + ReLU blocks, named
  ``conv`` / ``bn`` / ``relu`` so that ``torch.ao.quantization.fuse_modules`` fuses them and the
  ONNX export folds each batch norm into its convolution (eval mode);
* anisotropic first levels for serial-section volumes whose z spacing is ~10x coarser than y, x:
  the first ``anisotropic_levels`` levels use (1, 3, 3) kernels and (1, 2, 2) pooling and
  upsampling; deeper levels use 3 x 3 x 3 kernels and (2, 2, 2) factors (as the anisotropic
  nets of Lee et al. 2017, superhuman accuracy on SNEMI3D, do);
* max pooling down; up by ``ConvTranspose3d`` with stride equal to its kernel (each output voxel
  reads one input voxel): ONNX Runtime's ``Resize`` is slow on 3-D tensors. (In a static int8
  ONNX model the transposed convolutions store int8 weights, but ONNX Runtime's CPU provider has
  no integer kernel for them: they run in fp32 between DequantizeLinear and QuantizeLinear, while
  every Conv runs as QLinearConv);
* skip connections by concatenation; "same" padding, so the output has the input's spatial shape
  when each axis is a multiple of the product of the pooling factors (:meth:`UNet3d.input_multiple`;
  other shapes raise ``ValueError`` naming the multiple);
* a 1 x 1 x 1 head with ``out_channels`` logits per voxel (default 3: the z, y, x nearest-neighbour
  affinities of Turaga et al. 2010 / Funke et al. 2019; apply a sigmoid for probabilities).

Defaults (``filters=16, levels=3, growth=2, anisotropic_levels=1``: 16, 32, 64 feature maps)
give 318,835 parameters (1.28 MB in fp32); :meth:`UNet3d.halo` gives the context a blockwise
runner must read around each block.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn


def _fx_tracing() -> bool:
    """True while torch.fx traces a module (PyTorch int8 quantization, ``export.torch_int8``)."""
    trace = torch.fx._symbolic_trace
    check = getattr(trace, "is_fx_symbolic_tracing", None) or trace.is_fx_tracing
    return check()


#: kernel and pooling factor of the anisotropic (first) and isotropic (deeper) levels
ANISOTROPIC_KERNEL, ISOTROPIC_KERNEL = (1, 3, 3), (3, 3, 3)
ANISOTROPIC_FACTOR, ISOTROPIC_FACTOR = (1, 2, 2), (2, 2, 2)


class ConvBNReLU(nn.Sequential):
    """Conv3d ("same" padding, no bias: the batch norm has its own shift) -> BatchNorm3d -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel: tuple[int, int, int]):
        padding = tuple(k // 2 for k in kernel)
        super().__init__(
            OrderedDict(
                conv=nn.Conv3d(in_channels, out_channels, kernel, padding=padding, bias=False),
                bn=nn.BatchNorm3d(out_channels),
                relu=nn.ReLU(),
            )
        )


class DoubleConv(nn.Sequential):
    """Two :class:`ConvBNReLU` blocks (``first``, ``second``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: tuple[int, int, int]):
        super().__init__(
            OrderedDict(
                first=ConvBNReLU(in_channels, out_channels, kernel),
                second=ConvBNReLU(out_channels, out_channels, kernel),
            )
        )


class UNet3d(nn.Module):
    """Input ``(batch, in_channels, z, y, x)`` float; output logits ``(batch, out_channels, z, y, x)``.

    ``UNet3d()`` is the default affinity net (1 input channel, 3 affinities, 16/32/64 filters).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 3,
        filters: int = 16,
        levels: int = 3,
        growth: int = 2,
        anisotropic_levels: int = 1,
    ):
        super().__init__()
        for name, value, low in (
            ("in_channels", in_channels, 1),
            ("out_channels", out_channels, 1),
            ("filters", filters, 1),
            ("levels", levels, 1),
            ("growth", growth, 1),
            ("anisotropic_levels", anisotropic_levels, 0),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.levels, self.anisotropic_levels = levels, anisotropic_levels
        widths = [filters * growth**level for level in range(levels)]
        #: per level: convolution kernel; per transition between level l and l + 1: its factor
        self.kernels = tuple(
            ANISOTROPIC_KERNEL if level < anisotropic_levels else ISOTROPIC_KERNEL
            for level in range(levels)
        )
        self.factors = tuple(
            ANISOTROPIC_FACTOR if level < anisotropic_levels else ISOTROPIC_FACTOR
            for level in range(levels - 1)
        )
        self.encoders = nn.ModuleList()
        channels = in_channels
        for width, kernel in zip(widths, self.kernels, strict=True):
            self.encoders.append(DoubleConv(channels, width, kernel))
            channels = width
        self.pools = nn.ModuleList(nn.MaxPool3d(f, stride=f) for f in self.factors)
        self.ups = nn.ModuleList(
            nn.ConvTranspose3d(widths[level + 1], widths[level], f, stride=f)
            for level, f in enumerate(self.factors)
        )
        self.decoders = nn.ModuleList(
            DoubleConv(2 * widths[level], widths[level], self.kernels[level])
            for level in range(levels - 1)
        )
        self.head = nn.Conv3d(widths[0], out_channels, 1)

    def input_multiple(self) -> tuple[int, int, int]:
        """What each spatial axis (z, y, x) of an input must be a multiple of."""
        return tuple(math.prod(f[axis] for f in self.factors) for axis in range(3))

    def halo(self) -> tuple[int, int, int]:
        """Input voxels (z, y, x) an output voxel reaches on either side, at most (over the
        positions of the voxel relative to the pooling grid). A block read with at least this
        margin around its core, the read's origin (in volume coordinates) and shape being
        multiples of :meth:`input_multiple`, gives its core exactly as inference on the whole
        volume does."""
        return tuple(self._reach(axis) for axis in range(3))

    def _reach(self, axis: int) -> int:
        pads = [2 * (k[axis] // 2) for k in self.kernels]  # two convolutions per level
        factors = [f[axis] for f in self.factors]

        def encoded(level: int, a: int, b: int) -> tuple[int, int]:
            """Input interval that the encoder output indices [a, b] at ``level`` read."""
            a, b = a - pads[level], b + pads[level]
            if level == 0:
                return a, b
            f = factors[level - 1]
            return encoded(level - 1, a * f, b * f + f - 1)

        def decoded(level: int, a: int, b: int) -> tuple[int, int]:
            """Input interval that the decoder output indices [a, b] at ``level`` read."""
            if level == self.levels - 1:
                return encoded(level, a, b)
            a, b = a - pads[level], b + pads[level]
            f = factors[level]
            skip, deep = encoded(level, a, b), decoded(level + 1, a // f, b // f)
            return min(skip[0], deep[0]), max(skip[1], deep[1])

        reach = 0
        for i in range(math.prod(factors)):  # every position relative to the pooling grid
            a, b = decoded(0, i, i)
            reach = max(reach, i - a, b - i)
        return reach

    def check_input(self, shape) -> None:
        """Raise ValueError unless ``shape`` (of a batch) is ``(batch, in_channels, z, y, x)`` with
        every spatial axis a multiple of :meth:`input_multiple`."""
        if len(shape) != 5 or shape[1] != self.in_channels:
            raise ValueError(
                f"UNet3d expects input (batch, {self.in_channels}, z, y, x), got {tuple(shape)}"
            )
        multiple = self.input_multiple()
        if any(int(s) % m for s, m in zip(shape[2:], multiple, strict=True)):
            raise ValueError(
                f"UNet3d with {self.levels} levels needs each spatial axis (z, y, x) to be a "
                f"multiple of {multiple}, got {tuple(int(s) for s in shape[2:])}: crop or pad the "
                "input"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (
            torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or _fx_tracing()
        ):  # (a traced graph drops the check; the engines check shapes)
            self.check_input(x.shape)
        skips = []
        for level, encoder in enumerate(self.encoders):
            x = encoder(x)
            if level < self.levels - 1:
                skips.append(x)
                x = self.pools[level](x)
        for level in reversed(range(self.levels - 1)):
            x = self.ups[level](x)
            x = self.decoders[level](torch.cat([skips[level], x], dim=1))
        return self.head(x)
