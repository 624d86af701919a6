"""Layer presets of the sweep models for the compression engine (``compress.methods``).

The engine knows no application: configuration entries of compression methods may name a preset
(``layers: seed000_table6``): ``SweepsApp.layer_presets`` gives ``LAYER_PRESETS`` to the engine's
compression rule, which passes them to ``compress.methods.run_method(..., layer_presets=...)``.
"""

from __future__ import annotations

#: van de Wetering (2024), Table 6: the optimal per-layer configuration of SweepNet (19,238
#: weight bits). Every weight layer at 2 bits, the two SE-block convolutions and their activations at 1 bit. The
#: 2-bit layers use quantized_bits with a per-channel float scale (QKeras 'auto': levels -s, 0, +s).
#: The 1-bit convolutions use binary(alpha='auto') (sign times per-channel mean|w|): QKeras'
#: quantized_bits(1, alpha='auto') has no levels and outputs zeros, and quantized_bits(1) without a
#: scale fixes the weights at +-1. The 1-bit activations are quantized_relu(1) (outputs {0, 0.5}) and
#: quantized_sigmoid(1) (hard sigmoid, outputs {0, 0.5}), as in the paper's section 5.1.1.
_TWO_BITS = "quantized_bits(2, 0, 1, alpha='auto')"
_ONE_BIT = "binary(alpha='auto')"
SEED000_TABLE6: dict = {
    "sweepnet_first_conv": _TWO_BITS,
    "sweepnet_second_conv": _TWO_BITS,
    "sweepnet_third_conv": _TWO_BITS,
    "se_block_first_conv": _ONE_BIT,
    "se_block_first_activation": "quantized_relu(1)",
    "se_block_second_conv": _ONE_BIT,
    "se_block_second_activation": "quantized_sigmoid(1)",
    "sweepnet_first_dense": _TWO_BITS,
    "sweepnet_second_dense": _TWO_BITS,
}

#: named per-layer configurations of SweepNet, usable wherever a compression method expects a
#: configuration (the config value ``seed000_table6``)
LAYER_PRESETS: dict[str, dict] = {"seed000_table6": SEED000_TABLE6}

__all__ = ["LAYER_PRESETS", "SEED000_TABLE6"]
