"""A CNN whose output depends on where in the window a pattern lies: sweep offset classification.

SweepNet ends in a global average pool, so it can say *whether* a window holds a sweep but not
*where*. ``PositionNet`` keeps the column (genomic) axis to the end, as ASDEC's Flatten + Dense does:

* trunk: ``depth`` x [Conv2d ``filters`` 2x2 valid, ReLU, MaxPool 2x2 stride 1] (ASDEC's C3F32;
  the pool is SweepNet's ``MaxPool2x2``, the library's maths with faster CPU kernels);
* the haplotype axis is pooled (mean and max over rows: the row order of a sorted image is a
  convention, the column order is genomic), the column axis is kept;
* head: Flatten -> Dense ``hidden`` (ReLU) -> Dense ``n_bins + 1``.

Output: logits over ``n_bins`` equal offset bins spanning the window (bin k: the sweep lies in the
k-th ``1 / n_bins`` of the window, left to right) and one last class "no sweep in the window".
Input ``(batch, in_channels, haplotypes, columns)``; ``columns`` is fixed at construction (the
Flatten), ``haplotypes`` is free.
"""

from __future__ import annotations

import torch
from torch import nn

from .sweepnet import MaxPool2x2


class PositionNet(nn.Module):
    def __init__(
        self,
        columns: int,
        n_bins: int = 21,
        in_channels: int = 3,
        filters: int = 32,
        depth: int = 3,
        hidden: int = 64,
    ):
        super().__init__()
        if columns <= depth:
            raise ValueError(f"columns ({columns}) must exceed depth ({depth}): 2x2 valid layers")
        self.columns, self.n_bins, self.depth = columns, n_bins, depth
        layers: list[nn.Module] = []
        channels = in_channels
        for _ in range(depth):
            layers += [nn.Conv2d(channels, filters, 2), nn.ReLU(), MaxPool2x2()]
            channels = filters
        self.trunk = nn.Sequential(*layers)
        width = columns - 2 * depth  # each conv and each pool drops one column
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(2 * filters * width, hidden),
            nn.ReLU(),
            nn.Linear(hidden, n_bins + 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.columns:
            raise ValueError(f"expected {self.columns} columns, got {x.shape[-1]}")
        if x.shape[-2] <= 2 * self.depth:
            raise ValueError(f"expected more than {2 * self.depth} rows, got {x.shape[-2]}")
        z = self.trunk(x)  # (B, F, h, w)
        z = torch.cat([z.mean(dim=2), z.amax(dim=2)], dim=1)  # (B, 2F, w): position kept
        return self.head(z)


__all__ = ["PositionNet"]
