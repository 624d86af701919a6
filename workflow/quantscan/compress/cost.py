"""Bit accounting of model weights (compression.md sections 2 and 6).

A float layer costs 32 bits per parameter; a quantized layer costs its quantizer's ``bits`` per kernel
and per bias element. Unlike QKeras (which counts Conv3D and other unregistered layers as 0), every
module that owns parameters is counted: Conv1d/Conv3d/ConvTranspose, BatchNorm and the rest at 32
bits unless quantized. Per-channel scales are not counted (as in QKeras and van de Wetering 2024); the packed file
size (``export.packed.save_packed``) is the number that includes them.

Layers quantized by other means count at their bit width too: ternary / DoReFa layers (``ternary.py``)
at ``.bits`` (2, or k), their learned levels being scales (not counted); float layers whose weights a
pruning schedule finalized onto a b-bit grid (``prune.py``, marked ``grid_bits``) at b. Every weight
counts, zeros included (dense codes, as QKeras counts a quantized layer): the sparse sizes are
``metrics.weights_mbit`` (non-zero weights x bits, Fernandes & Kung) and the packed file (positions included).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import nn

from .layers import FLOAT_TO_QUANTIZED, QActivation, QuantizedWeights
from .prune import GRID_BITS, weight_layers
from .ternary import DoReFaActivation, TernaryWeights

FP_BITS = 32


@dataclass(frozen=True)
class LayerBits:
    """Weight bits of one module. ``kernel_bits``/``bias_bits`` are bits per element (0: no bias)."""

    name: str
    type: str
    n_params: int
    n_kernel: int
    n_bias: int
    kernel_bits: int
    bias_bits: int
    total_bits: int


def kernel_bits_of(module: nn.Module) -> int:
    """Bits per kernel element of a module: its kernel quantizer's, its ternary ``bits``, the
    ``grid_bits`` a pruning schedule marked, else 32."""
    if isinstance(module, QuantizedWeights):
        return FP_BITS if module.kernel_quantizer is None else module.kernel_quantizer.bits
    if isinstance(module, TernaryWeights):
        return module.bits
    return getattr(module, GRID_BITS, None) or FP_BITS


def weight_bits(model: nn.Module) -> dict[str, int]:
    """``{Conv/Linear layer: kernel bits}`` for every weight layer (``metrics.compression_report``)."""
    return {name: kernel_bits_of(m) for name, m in weight_layers(model).items()}


def layer_bits(model: nn.Module) -> list[LayerBits]:
    """One row per module owning parameters, in model order."""
    rows = []
    for name, module in model.named_modules():
        params = dict(module.named_parameters(recurse=False))
        if not params:
            continue
        bias = params.pop("bias", None)
        n_bias = 0 if bias is None else bias.numel()
        if isinstance(module, TernaryWeights):  # learned levels are scales: not counted
            params = {"weight": params["weight"]}
        n_kernel = sum(p.numel() for p in params.values())
        kernel_bits, bias_bits = kernel_bits_of(module), FP_BITS
        if isinstance(module, QuantizedWeights) and module.bias_quantizer is not None:
            bias_bits = module.bias_quantizer.bits
        if bias is None:
            bias_bits = 0
        rows.append(
            LayerBits(
                name=name or "<model>",
                type=type(module).__name__,
                n_params=n_kernel + n_bias,
                n_kernel=n_kernel,
                n_bias=n_bias,
                kernel_bits=kernel_bits,
                bias_bits=bias_bits,
                total_bits=n_kernel * kernel_bits + n_bias * bias_bits,
            )
        )
    return rows


def model_bits(model: nn.Module) -> int:
    """Total weight bits of ``model``."""
    return sum(row.total_bits for row in layer_bits(model))


def bits_per_layer(model: nn.Module) -> str:
    """Compact per-layer bit widths, e.g. ``conv1=2,conv1_activation=1,dense=32/8``, in model order.

    Every weight layer (Conv/Linear) is listed with its kernel bits (``k/b`` when the bias has other
    bits); activations are listed only when quantized (QKeras or DoReFa). Float parts count 32 bits.
    """
    items = []
    for name, module in model.named_modules():
        if isinstance(module, QActivation):
            items.append(f"{name}={module.quantizer.bits}")
        elif isinstance(module, DoReFaActivation):
            items.append(f"{name}={module.k}")
        elif type(module) in FLOAT_TO_QUANTIZED or isinstance(
            module, QuantizedWeights | TernaryWeights
        ):
            bq = getattr(module, "bias_quantizer", None)
            k = kernel_bits_of(module)
            b = FP_BITS if bq is None else bq.bits
            items.append(f"{name}={k}" if module.bias is None or b == k else f"{name}={k}/{b}")
    return ",".join(items)


def bits_table(model: nn.Module) -> str:
    """The per-layer table as TSV with a header and a final ``total`` row."""
    rows = layer_bits(model)
    fields = list(LayerBits.__dataclass_fields__)
    lines = ["\t".join(fields)]
    lines += ["\t".join(str(v) for v in asdict(row).values()) for row in rows]
    n = sum(r.n_params for r in rows)
    total = {"name": "total", "type": "", "n_params": n, "n_kernel": sum(r.n_kernel for r in rows)}
    total |= {"n_bias": sum(r.n_bias for r in rows), "kernel_bits": "", "bias_bits": ""}
    total["total_bits"] = sum(r.total_bits for r in rows)
    lines.append("\t".join(str(total[f]) for f in fields))
    return "\n".join(lines) + "\n"


__all__ = [
    "FP_BITS",
    "LayerBits",
    "bits_per_layer",
    "bits_table",
    "kernel_bits_of",
    "layer_bits",
    "model_bits",
    "weight_bits",
]
