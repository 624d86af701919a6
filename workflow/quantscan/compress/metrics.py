"""Compression metrics from a model's effective weights (Vindas et al. §3.2, Fernandes & Kung §III, V).

Weights are the ``weight`` tensors of Conv1d/2d/3d, ConvTranspose3d and Linear modules (biases are
not counted: the seeds count weights, and quantize weights only). A module that defines ``effective_weight()`` (e.g. a
fake-quant layer holding latent floats) is measured through it, else through ``module.weight``: pass a
model whose weights hold the values it would deploy. Per-layer bit widths come as ``{name: bits}``;
layers not named are 32-bit floats.

| name | definition |
|---|---|
| density | non-zero weights / all weights, all weight layers (Fernandes & Kung) |
| SRQW | zero weights / all weights over the selected (quantized) layers (Vindas et al.) |
| CR_G | ``1 - nbits(model)/nbits(FP)``, nbits = Σ non-zero weights × bits (Vindas et al.), whole model (T) and quantized layers (Q) |
| EC_T, EC_G | Vindas et al. eq. 3-4, an energy *model* (see :func:`ec_g`) |
| NOPs | multiply-accumulates with a non-zero weight, per input sample (one op per MAC) |
| NOPs × bits | Σ_layers NOPs × weight bits, a linear lower-bound proxy (Fernandes & Kung) |
| weights-size | Σ non-zero weights × bits / 1e6 (Mbit, Fernandes & Kung) |
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch
from torch import nn

from quantscan.compress.prune import weight_layers
from quantscan.errors import ConfigError

#: Horowitz (ISSCC 2014), 45 nm: energy of one fp32 multiply, charged per mult-add in Vindas et al. eq. 3
E_MAC_J = 3.7e-12
#: Molka et al. (2010): energy of one 32-bit word moved from DRAM, charged per word in eq. 3
E_WORD_J = 1e-9

EC_G_MODEL = (
    "Vindas et al. eq. 3-4 energy model: EC_T = N_MA*3.7e-12 J (Horowitz 45 nm fp32 multiply, charged "
    "for every non-zero mult-add whatever its bit width) + 1e-9 J per 32-bit word of non-zero weights "
    "and scale factors (Molka 2010, DRAM), i.e. zero-skipping hardware is assumed; EC_G = "
    "|EC_T(FP) - EC_T(C)| / EC_T(FP) hides an increase (see ec_change). A model, not a measurement."
)


def effective_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """Detached weight tensors of the model's Conv1d/2d/3d, ConvTranspose3d and Linear layers, by
    name."""
    out = {}
    for n, m in weight_layers(model).items():
        w = m.effective_weight() if callable(getattr(m, "effective_weight", None)) else m.weight
        out[n] = w.detach()
    return out


def _layer_bits(weights: Mapping[str, torch.Tensor], bits: Mapping[str, int] | None) -> dict:
    bits = dict(bits or {})
    unknown = set(bits) - set(weights)
    if unknown:
        raise ConfigError(
            f"bit widths given for unknown layers {sorted(unknown)}; known: {list(weights)}"
        )
    for n, b in bits.items():
        if not (isinstance(b, int | float) and 0 < b <= 64):
            raise ConfigError(f"bit width of layer {n!r} must be in (0, 64] (got {b!r})")
    return {n: bits.get(n, 32) for n in weights}


def _names(weights: Mapping, layers: Iterable[str] | None) -> list[str]:
    if layers is None:
        return list(weights)
    layers = list(layers)
    unknown = [n for n in layers if n not in weights]
    if unknown:
        raise ConfigError(f"unknown weight layers {unknown}; known: {list(weights)}")
    return layers


def _nnz(w: torch.Tensor) -> int:
    return int(torch.count_nonzero(w))


def density(model: nn.Module) -> float:
    """Non-zero weights / all weights over every weight layer."""
    w = effective_weights(model)
    return sum(_nnz(t) for t in w.values()) / sum(t.numel() for t in w.values())


def srqw(model: nn.Module, layers: Iterable[str] | None = None) -> float:
    """Sparsity rate over the quantized weights: zeros / weights in ``layers`` (default: all)."""
    w = effective_weights(model)
    names = _names(w, layers)
    total = sum(w[n].numel() for n in names)
    if total == 0:
        raise ConfigError("SRQW over no weights")
    return sum(w[n].numel() - _nnz(w[n]) for n in names) / total


def nbits(
    model: nn.Module, bits: Mapping[str, int] | None = None, layers: Iterable[str] | None = None
) -> float:
    """Bits to store the non-zero weights: Σ nnz × bits over ``layers`` (default: all)."""
    w = effective_weights(model)
    b = _layer_bits(w, bits)
    return float(sum(_nnz(w[n]) * b[n] for n in _names(w, layers)))


def weights_mbit(model: nn.Module, bits: Mapping[str, int] | None = None) -> float:
    """Weights-size in Mbit: Σ non-zero weights × bit width / 1e6 (Fernandes & Kung)."""
    return nbits(model, bits) / 1e6


def _reference_nbits(model, reference, names) -> float:
    if reference is None:  # the dense fp32 model of the same architecture
        w = effective_weights(model)
        return float(sum(w[n].numel() * 32 for n in names))
    return nbits(reference, None, names)


def cr_g(
    model: nn.Module,
    bits: Mapping[str, int] | None = None,
    quantized_layers: Iterable[str] | None = None,
    reference: nn.Module | None = None,
) -> dict:
    """Compression-rate gains ``CR_G = 1 - nbits(model)/nbits(FP)`` (Vindas et al.).

    ``reference`` is the fp32 model the compressed one came from (32 bits per non-zero weight); None
    means its dense version (every weight non-zero). ``quantized_layers`` defaults to the layers with
    fewer than 32 bits; ``cr_g_quantized`` is None when there are none.
    """
    w = effective_weights(model)
    b = _layer_bits(w, bits)
    q_layers = (
        [n for n in w if b[n] < 32] if quantized_layers is None else _names(w, quantized_layers)
    )
    total_c, total_fp = nbits(model, b), _reference_nbits(model, reference, list(w))
    out = {
        "cr_g_total": 1.0 - total_c / total_fp,
        "nbits_total": total_c,
        "nbits_fp_total": total_fp,
        "cr_g_quantized": None,
        "nbits_quantized": None,
        "nbits_fp_quantized": None,
        "quantized_layers": q_layers,
    }
    if q_layers:
        q_c, q_fp = nbits(model, b, q_layers), _reference_nbits(model, reference, q_layers)
        out.update(
            cr_g_quantized=1.0 - q_c / q_fp if q_fp else math.nan,
            nbits_quantized=q_c,
            nbits_fp_quantized=q_fp,
        )
    return out


@torch.no_grad()
def mac_counts(model: nn.Module, example_input: torch.Tensor) -> dict[str, dict]:
    """Per-layer multiply-accumulates per input sample, measured with forward hooks.

    A weight is used once per output position: Conv*d positions = output spatial size (dilation,
    stride, groups and padding all follow from it; MACs with padded zeros are counted), Linear
    positions = product of the input's non-batch, non-feature dims. A transposed convolution uses
    each weight once per *input* position (every input voxel scatters the whole kernel), so its
    positions are the input's spatial size. A module called twice counts twice. Returns ``{layer: {"positions", "macs_dense", "macs_nonzero"}}``; bias adds not counted.
    """
    layers = weight_layers(model)
    weights = effective_weights(model)
    positions = dict.fromkeys(layers, 0)
    batch = int(example_input.shape[0])

    def hook(name):
        def fn(module, inputs, output):
            if isinstance(module, nn.Linear):
                shape = inputs[0].shape
                positions[name] += math.prod(shape[:-1]) // batch
            elif isinstance(module, nn.modules.conv._ConvTransposeNd):
                shape = inputs[0].shape
                positions[name] += math.prod(shape[2:]) * shape[0] // batch
            else:
                positions[name] += math.prod(output.shape[2:]) * output.shape[0] // batch

        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in layers.items()]
    was_training = model.training
    model.eval()
    try:
        model(example_input)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return {
        n: {
            "positions": positions[n],
            "macs_dense": positions[n] * weights[n].numel(),
            "macs_nonzero": positions[n] * _nnz(weights[n]),
        }
        for n in layers
    }


def nops(model: nn.Module, example_input: torch.Tensor) -> int:
    """Multiply-accumulates involving non-zero weights, per input sample (one op per MAC)."""
    return sum(c["macs_nonzero"] for c in mac_counts(model, example_input).values())


def nops_x_bits(
    model: nn.Module, example_input: torch.Tensor, bits: Mapping[str, int] | None = None
) -> float:
    """NOPs × bit width (bit-ops per sample): Σ_layers non-zero MACs × that layer's weight bits."""
    b = _layer_bits(effective_weights(model), bits)
    return float(sum(c["macs_nonzero"] * b[n] for n, c in mac_counts(model, example_input).items()))


def _default_n_sf(b: float) -> int:
    # fp32: no scale; ternary (Vindas et al.): two (W_l, W_r); any other uniform per-tensor quantizer: one
    return 0 if b >= 32 else 2 if b == 2 else 1


def ec_t(
    model: nn.Module,
    example_input: torch.Tensor,
    bits: Mapping[str, int] | None = None,
    n_sf: Mapping[str, int] | None = None,
    ops_per_mac: int = 1,
) -> dict:
    """Vindas et al. eq. 3 for one input sample: ``N_MA·3.7e-12 + 1e-9·Σ_i(ceil(nnz_i·B_i/32) + N_SF_i)`` J.

    N_MA = non-zero MACs × ``ops_per_mac`` (1: a mult-add is one op costed as a multiply; 2 if you read
    "mult-adds" as multiplications plus additions, each costed as a multiply). ``n_sf`` overrides the
    number of scale factors per layer (default 0 fp32, 2 ternary, 1 otherwise; give per-channel
    quantizers their channel count). A model: see ``EC_G_MODEL``.
    """
    w = effective_weights(model)
    b = _layer_bits(w, bits)
    sf = {n: _default_n_sf(b[n]) for n in w}
    if n_sf:
        _names(w, n_sf)
        sf.update(n_sf)
    macs = mac_counts(model, example_input)
    n_ma = ops_per_mac * sum(c["macs_nonzero"] for c in macs.values())
    words = sum(math.ceil(_nnz(w[n]) * b[n] / 32) + sf[n] for n in w)
    return {
        "ec_t_j": n_ma * E_MAC_J + words * E_WORD_J,
        "ec_t_mac_j": n_ma * E_MAC_J,
        "ec_t_transfer_j": words * E_WORD_J,
        "n_ma": n_ma,
        "words": words,
    }


def ec_g(
    model: nn.Module,
    example_input: torch.Tensor,
    bits: Mapping[str, int] | None = None,
    n_sf: Mapping[str, int] | None = None,
    reference: nn.Module | None = None,
    ops_per_mac: int = 1,
) -> dict:
    """Energy gain ``EC_G = |EC_T(FP) - EC_T(C)| / EC_T(FP)`` (Vindas et al. eq. 4), labelled as a model.

    ``reference`` is the fp32 model (32 bits, no scale factors, its own non-zeros); None means the
    dense fp32 version of ``model``. ``ec_change`` is the signed relative change that the absolute
    value hides (negative = less energy).
    """
    c = ec_t(model, example_input, bits, n_sf, ops_per_mac)
    if reference is None:
        macs = mac_counts(model, example_input)
        w = effective_weights(model)
        n_ma = ops_per_mac * sum(m["macs_dense"] for m in macs.values())
        words = sum(t.numel() for t in w.values())  # one 32-bit word per weight, no scales
        fp = {"ec_t_j": n_ma * E_MAC_J + words * E_WORD_J}
    else:
        fp = ec_t(reference, example_input, None, None, ops_per_mac)
    return {
        "ec_g": abs(fp["ec_t_j"] - c["ec_t_j"]) / fp["ec_t_j"],
        "ec_change": (c["ec_t_j"] - fp["ec_t_j"]) / fp["ec_t_j"],
        "ec_t_j": c["ec_t_j"],
        "ec_t_fp_j": fp["ec_t_j"],
        "n_ma": c["n_ma"],
        "ec_g_model": EC_G_MODEL,
    }


def compression_report(
    model: nn.Module,
    example_input: torch.Tensor,
    bits: Mapping[str, int] | None = None,
    quantized_layers: Iterable[str] | None = None,
    reference: nn.Module | None = None,
    n_sf: Mapping[str, int] | None = None,
) -> dict:
    """All metrics in one JSON-ready dict (per input sample where it matters)."""
    w = effective_weights(model)
    b = _layer_bits(w, bits)
    cr = cr_g(model, b, quantized_layers, reference)
    macs = mac_counts(model, example_input)
    ops = sum(c["macs_nonzero"] for c in macs.values())
    bit_ops = sum(c["macs_nonzero"] * b[n] for n, c in macs.items())
    return {
        "density": density(model),
        "srqw": srqw(model, cr["quantized_layers"]) if cr["quantized_layers"] else None,
        **cr,
        "weights_mbit": nbits(model, b) / 1e6,
        "nops": ops,
        "gops": ops / 1e9,
        "nops_x_bits": bit_ops,
        "gbops": bit_ops / 1e9,
        **ec_g(model, example_input, b, n_sf, reference),
        "bits": b,
        "layers": {
            n: {"n_weights": w[n].numel(), "nonzero": _nnz(w[n]), "bits": b[n], **macs[n]}
            for n in w
        },
    }


def summary_scalars(report: Mapping) -> dict:
    """The summary table's compression columns from a :func:`compression_report` (NaN: no data)."""

    def num(v):
        return math.nan if v is None else float(v)

    return {
        "density": num(report["density"]),
        "srqw": num(report["srqw"]),
        "cr_g": num(report["cr_g_total"]),
        "cr_g_q": num(report["cr_g_quantized"]),
        "ec_g": num(report["ec_g"]),
        "ec_change": num(report["ec_change"]),
        "nops": int(report["nops"]),
        "nops_x_bits": num(report["nops_x_bits"]),
        "weights_mbit": num(report["weights_mbit"]),
    }
