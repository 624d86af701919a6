"""Compression methods: a registry of method types (``registry``), each run on any model and any
caller's data, one module per family of types:

- ``mixed``: ``mixed``, ``layer_sensitivity``, ``uniform``, ``one_bit_rounds``, ``po2_vs_auto``
  (QAT of per-layer bit widths);
- ``search``: ``auto_search`` (AutoQKeras-style search, Optuna TPE);
- ``ternary``: ``ttq``, ``attq``, ``dorefa`` (incl. Hessian layer selection);
- ``prune_quant``: ``q_then_p_iter``, ``p_then_q_iter``, ``p_then_q_epochs`` (γσ pruning with
  uniform quantization);
- ``int8``: ``int8`` (post-training static int8 through ONNX Runtime; ``run_int8_method``).

``run_method`` runs every type but ``int8`` (see ``registry``). Importing this package registers
every type.
"""

from . import int8, mixed, prune_quant, search, ternary  # noqa: F401  (register the method types)
from .int8 import Int8Result, run_int8_method, stored_layers
from .prune_quant import sparsest_within
from .registry import (
    FINALIZE_TOLERANCE,
    METHOD_TYPES,
    PRESET_KEYS,
    Context,
    MethodResult,
    Variant,
    activation_spec,
    check_finalize,
    check_layer_presets,
    deployed_metrics,
    entry_notes,
    layer_spec,
    layer_table,
    module_kinds,
    normalize_method,
    paste_entry,
    pasteable,
    preset,
    preset_names,
    register,
    resolve_layers,
    run_method,
    score_suffix,
    variant_table,
    weight_spec,
    with_alpha,
)
from .search import forgiving_delta, forgiving_score, stats_lines
from .ternary import hessian_layers, ternary_table

__all__ = [
    "FINALIZE_TOLERANCE",
    "METHOD_TYPES",
    "PRESET_KEYS",
    "Context",
    "Int8Result",
    "MethodResult",
    "Variant",
    "activation_spec",
    "check_finalize",
    "check_layer_presets",
    "deployed_metrics",
    "entry_notes",
    "forgiving_delta",
    "forgiving_score",
    "hessian_layers",
    "layer_spec",
    "layer_table",
    "module_kinds",
    "normalize_method",
    "paste_entry",
    "pasteable",
    "preset",
    "preset_names",
    "register",
    "resolve_layers",
    "run_int8_method",
    "run_method",
    "score_suffix",
    "sparsest_within",
    "stats_lines",
    "stored_layers",
    "ternary_table",
    "variant_table",
    "weight_spec",
    "with_alpha",
]
