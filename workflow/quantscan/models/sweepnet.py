"""SweepNet (Zhao et al., PASC '23), as in van de Wetering (2024) Table 1: 9,700 parameters for any image size.

Layer names follow van de Wetering's QKeras model so that per-layer quantization configurations read the same.
Every weight layer and every activation is its own named module: compression swaps modules by name.
The per-position Dense 32 is a 1x1 convolution (identical maths, and fast on NCHW tensors).
"""

import torch
from torch import nn
from torch.nn import functional as F

from ..layers.maxpool import max_pool_2x2


class MaxPool2x2(nn.MaxPool2d):
    """``nn.MaxPool2d(2, stride=1)``, faster on CPU: PyTorch's max-pool kernel is slow there.

    * Inference (no autograd): the maximum of four shifted views, ~8x the library kernel on NCHW
      (100, 32, 63, 63); models evaluated outside ``train.fit`` are NCHW (channels-last would break
      the bitwise equality of packed and trained models). SweepNet inference is ~2.3x faster.
    * Training: ``layers.maxpool.max_pool_2x2``, compiled kernels that keep the maximum and where it
      was (3x the library's forward; a SweepNet training step is ~1.3x faster).
    * ONNX export: the library call (one ``MaxPool`` node).

    The results are identical to the library's, gradients included.
    """

    def __init__(self):
        super().__init__(2, stride=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export() or torch.jit.is_tracing() or x.device.type != "cpu":
            return F.max_pool2d(x, 2, stride=1)
        if torch.is_grad_enabled():
            return max_pool_2x2(x)
        rows = torch.maximum(x[..., :-1, :], x[..., 1:, :])
        return torch.maximum(rows[..., :-1], rows[..., 1:])


class SweepNet(nn.Module):
    """Input ``(batch, 1, haplotypes, snps)`` in [0, 1]; output logits ``(batch, n_classes)``."""

    #: weight layers in forward order, with the activation module that follows each
    LAYERS = (
        ("sweepnet_first_conv", "sweepnet_first_activation"),
        ("sweepnet_second_conv", "sweepnet_second_activation"),
        ("sweepnet_third_conv", "sweepnet_third_activation"),
        ("se_block_first_conv", "se_block_first_activation"),
        ("se_block_second_conv", "se_block_second_activation"),
        ("sweepnet_first_dense", "sweepnet_dense_activation"),
        ("sweepnet_second_dense", None),
    )

    def __init__(self, n_classes: int = 2, filters: int = 32, se_ratio: int = 16):
        super().__init__()
        squeeze = max(1, filters // se_ratio)
        self.sweepnet_first_conv = nn.Conv2d(1, filters, 2)
        self.sweepnet_first_activation = nn.ReLU()
        self.sweepnet_first_max_pool = MaxPool2x2()
        self.sweepnet_second_conv = nn.Conv2d(filters, filters, 2)
        self.sweepnet_second_activation = nn.ReLU()
        self.sweepnet_second_max_pool = MaxPool2x2()
        self.sweepnet_third_conv = nn.Conv2d(filters, filters, 2)
        self.sweepnet_third_activation = nn.ReLU()
        self.sweepnet_third_max_pool = MaxPool2x2()
        # squeeze-and-excitation: GAP -> 1x1 conv (ReLU) -> 1x1 conv (sigmoid) -> channel scale
        self.se_block_first_conv = nn.Conv2d(filters, squeeze, 1)
        self.se_block_first_activation = nn.ReLU()
        self.se_block_second_conv = nn.Conv2d(squeeze, filters, 1)
        self.se_block_second_activation = nn.Sigmoid()
        self.sweepnet_first_dense = nn.Conv2d(filters, filters, 1)
        self.sweepnet_dense_activation = nn.ReLU()
        self.sweepnet_second_dense = nn.Linear(filters, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.sweepnet_first_max_pool(
            self.sweepnet_first_activation(self.sweepnet_first_conv(x))
        )
        x = self.sweepnet_second_max_pool(
            self.sweepnet_second_activation(self.sweepnet_second_conv(x))
        )
        x = self.sweepnet_third_max_pool(
            self.sweepnet_third_activation(self.sweepnet_third_conv(x))
        )
        s = x.mean(dim=(2, 3), keepdim=True)
        s = self.se_block_first_activation(self.se_block_first_conv(s))
        s = self.se_block_second_activation(self.se_block_second_conv(s))
        x = x * s
        x = self.sweepnet_dense_activation(self.sweepnet_first_dense(x))
        return self.sweepnet_second_dense(x.mean(dim=(2, 3)))

    def lut_trunk(self):
        """The layers as the lookup engine's contract names them (``runtime.lut.LutTrunk``):
        three conv 2x2 / activation / max-pool blocks, the squeeze-and-excitation gate, the
        per-position dense layer and the linear head. Read at call time, so quantized or packed
        models (modules swapped by name) give their own layers."""
        from ..runtime.lut import ConvBlock, LutTrunk

        blocks = tuple(
            ConvBlock(
                getattr(self, f"sweepnet_{n}_conv"),
                getattr(self, f"sweepnet_{n}_activation"),
                getattr(self, f"sweepnet_{n}_max_pool"),
            )
            for n in ("first", "second", "third")
        )
        return LutTrunk(
            blocks=blocks,
            gate_squeeze=self.se_block_first_conv,
            gate_squeeze_activation=self.se_block_first_activation,
            gate_excite=self.se_block_second_conv,
            gate_excite_activation=self.se_block_second_activation,
            dense=self.sweepnet_first_dense,
            dense_activation=self.sweepnet_dense_activation,
            head=self.sweepnet_second_dense,
        )
