"""The baseline 1-D CNN of Fernandes & Kung (Fernandes & Kung, Table III) for viral classification.

Input: one-hot ``(batch, 5, length)`` with length N = 3500 (A, C, G, T, other). Four blocks of
Conv1D -> BatchNorm -> ReLU -> MaxPool(2) with 256@16, 64@32, 32@64 and 32@128 kernels, then
FC 64 -> FC 32 -> FC 16 -> FC n_classes, each hidden FC followed by ReLU and Dropout(0.4).
Output: logits (the paper's softmax is left to the loss / to inference).

Choices where the paper is silent (viral.md section 6):

* "same" padding as in Keras (lengths 1750, 875, 437, 218 after the pools, so FC 64 has the
  table's 446,528 weights). Even kernels need asymmetric padding (left k/2 - 1, right k/2);
  it is a separate ``ConstantPad1d`` module so the Conv1d itself has ``padding=0``, which
  quantized conv1d kernels accept (they reject ``padding="same"``).
* ReLU between the FC layers (the paper lists only dropout).
* ``layers.conv1d.Conv1d`` layers: ``nn.Conv1d`` with a faster training backward on CPU.
* Conv layers without bias (``conv_bias=False``): the batch norm that follows has its own shift,
  and the table's conv weight counts (20,480 = 5 x 16 x 256, ...) have no bias either.

Every weight layer and every activation is its own named module: compression swaps modules by
name. ``LAYERS`` lists the weight layers in forward order with the activation after each.

Options beyond Table III (defaults reproduce it): ``channels`` and ``kernels`` of the four conv
blocks, and ``head``: ``flatten`` (Table III: FC 64 sees every position, so it learns where things
are, a record's length and its padding) or ``global`` (the last block's maximum and its mean over
the positions the record covers, padding excluded, then FC 64: position-invariant motif presence
and frequency, as DeepVirFinder's global max pooling; FC 64 shrinks to 2 x channels[-1] inputs).
"""

import torch
from torch import nn

from ..layers.conv1d import Conv1d

#: (out_channels, kernel_size) of the four conv blocks, Table III
CONV_BLOCKS = ((256, 16), (64, 32), (32, 64), (32, 128))
#: hidden fully connected sizes, Table III (the output layer has n_classes units)
DENSE_UNITS = (64, 32, 16)


def conv_output_length(length: int, n_blocks: int = len(CONV_BLOCKS)) -> int:
    """Length after ``n_blocks`` "same" convolutions each followed by MaxPool(2)."""
    for _ in range(n_blocks):
        length //= 2
    return length


class ViralCNN(nn.Module):
    """Fernandes & Kung's baseline CNN. ``ViralCNN(n_classes=4, length=3500)``; input
    ``(batch, in_channels, length)`` float; output logits ``(batch, n_classes)``."""

    LAYERS = (
        ("conv1", "conv1_activation"),
        ("conv2", "conv2_activation"),
        ("conv3", "conv3_activation"),
        ("conv4", "conv4_activation"),
        ("dense1", "dense1_activation"),
        ("dense2", "dense2_activation"),
        ("dense3", "dense3_activation"),
        ("dense4", None),
    )

    HEADS = ("flatten", "global")

    def __init__(
        self,
        n_classes: int = 4,
        length: int = 3500,
        in_channels: int = 5,
        dropout: float = 0.4,
        conv_bias: bool = False,
        channels: tuple[int, ...] | list[int] | None = None,
        kernels: tuple[int, ...] | list[int] | None = None,
        head: str = "flatten",
    ):
        super().__init__()
        flat_length = conv_output_length(length)
        if flat_length < 1:
            raise ValueError(f"input length {length} is too short for 4 pooling stages")
        if n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {n_classes}")
        if head not in self.HEADS:
            raise ValueError(f"head must be one of {self.HEADS}, got {head!r}")
        blocks = [
            (int(c), int(k))
            for c, k in zip(
                channels or [c for c, _ in CONV_BLOCKS],
                kernels or [k for _, k in CONV_BLOCKS],
                strict=True,
            )
        ]
        if len(blocks) != len(CONV_BLOCKS) or min(min(b) for b in blocks) < 1:
            raise ValueError(
                f"channels and kernels need {len(CONV_BLOCKS)} positive entries, got {blocks}"
            )
        self.head = head
        channels = in_channels
        for i, (out_channels, kernel) in enumerate(blocks, start=1):
            # Keras/TensorFlow "same" for stride 1: left (k-1)//2, right the rest
            left = (kernel - 1) // 2
            setattr(self, f"conv{i}_pad", nn.ConstantPad1d((left, kernel - 1 - left), 0.0))
            setattr(self, f"conv{i}", Conv1d(channels, out_channels, kernel, bias=conv_bias))
            setattr(self, f"conv{i}_bn", nn.BatchNorm1d(out_channels))
            setattr(self, f"conv{i}_activation", nn.ReLU())
            setattr(self, f"conv{i}_pool", nn.MaxPool1d(2))
            channels = out_channels
        self.flatten = nn.Flatten()
        features = channels * flat_length if head == "flatten" else 2 * channels
        for i, units in enumerate(DENSE_UNITS, start=1):
            setattr(self, f"dense{i}", nn.Linear(features, units))
            setattr(self, f"dense{i}_activation", nn.ReLU())
            setattr(self, f"dense{i}_dropout", nn.Dropout(dropout))
            features = units
        self.dense4 = nn.Linear(features, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # positions the record covers (zero padding has no channel set), pooled like the blocks
        covered = x.amax(dim=1, keepdim=True) if self.head == "global" else None
        for i in range(1, len(CONV_BLOCKS) + 1):
            x = getattr(self, f"conv{i}_pad")(x)
            x = getattr(self, f"conv{i}")(x)
            x = getattr(self, f"conv{i}_bn")(x)
            x = getattr(self, f"conv{i}_activation")(x)
            x = getattr(self, f"conv{i}_pool")(x)
            if covered is not None:
                covered = getattr(self, f"conv{i}_pool")(covered)
        if covered is None:
            x = self.flatten(x)
        else:
            mean = (x * covered).sum(dim=2) / covered.sum(dim=2).clamp(min=1.0)
            x = torch.cat((x.amax(dim=2), mean), dim=1)
        for i in range(1, len(DENSE_UNITS) + 1):
            x = getattr(self, f"dense{i}")(x)
            x = getattr(self, f"dense{i}_activation")(x)
            x = getattr(self, f"dense{i}_dropout")(x)
        return self.dense4(x)
