"""Method types that QAT-fine-tune QKeras-style per-layer configurations (bit widths per layer).

- ``mixed``: QAT of one per-layer configuration (``layers``: a layer preset of the caller, a bit
  width or a mapping).
- ``layer_sensitivity``: each layer alone at each bit width, the rest fp32 (van de Wetering 2024,
  Fig. 2); the primary combines, per layer, the smallest bit width within ``tolerance`` of fp32.
- ``uniform``: every weight layer at each bit width (van de Wetering 2024, Fig. 3), flat bit widths
  with ``flat_alpha`` and a mixed configuration (Chen 2024); the primary is the smallest tolerated
  width.
- ``one_bit_rounds``: all weight layers at ``base_bits``, one at a time at 1 bit, the tolerated ones
  together (van de Wetering 2024, Table 3), then activations at 1 bit alone and together (Table 4).
- ``po2_vs_auto``: the same configurations with ``alpha='auto'`` and ``'auto_po2'`` (Chen 2024).

See ``registry`` for the run context and the results, the schema for every key.
"""

from __future__ import annotations

import math

from ...errors import ConfigError
from .. import figures
from ..cost import FP_BITS
from .registry import (
    Context,
    MethodResult,
    _choose_primary,
    _variants_result,
    activation_spec,
    layer_spec,
    layer_table,
    primary_notes,
    register,
    weight_spec,
)

_ALPHA_TAGS = {"auto": "auto", "auto_po2": "po2", None: "fixed"}


@register("mixed")
def _mixed(ctx: Context) -> MethodResult:
    alpha = ctx.config["alpha"]
    config = ctx.resolve_layers(ctx.config["layers"], alpha)
    v = ctx.variant(ctx.prefix, config, ctx.finetune.epochs, {"alpha": alpha or "as written"}, True)
    table = layer_table(v.model)
    return MethodResult(
        [v],
        table,
        primary_notes(ctx, v),
        lambda path, title: figures.layer_bits(table, path, title, v.metrics["accuracy"]),
    )


@register("layer_sensitivity")
def _layer_sensitivity(ctx: Context) -> MethodResult:
    cfg, alpha, epochs = ctx.config, ctx.config["alpha"], ctx.scan_epochs()
    layers = list(cfg["layers"])
    if not layers:
        layers = [
            n for n, (k, _) in ctx.kinds.items() if k == "weight" or cfg["include_activations"]
        ]
    bad = [n for n in layers if n not in ctx.kinds]
    if bad:
        raise ConfigError(
            f"method {ctx.name!r}, key 'layers': unknown modules {bad}; valid: {list(ctx.kinds)}"
        )
    variants, best = [], {}
    for layer in layers:
        kind = ctx.kinds[layer][0]
        for bits in cfg["bits"]:
            spec = layer_spec(ctx.kinds, layer, bits, alpha)
            v = ctx.variant(
                f"{ctx.prefix}_{layer}_{bits}bit",
                {layer: spec} if spec else {},
                epochs,
                {"layer": layer, "kind": kind, "bits": bits, "spec": spec or "fp32"},
            )
            variants.append(v)
            if ctx.within(v) and bits < best.get(layer, (FP_BITS + 1, None))[0]:
                best[layer] = (bits, spec)
    combined = {layer: spec for layer, (bits, spec) in best.items() if spec is not None}
    chosen = ",".join(f"{layer}={bits}" for layer, (bits, _) in best.items())
    info = {"layer": "combined", "kind": "", "bits": math.nan, "spec": chosen or "fp32"}
    primary = ctx.variant(f"{ctx.prefix}_combined", combined, ctx.finetune.epochs, info, True)
    variants.append(primary)
    header = (
        f"# per layer, the smallest bit width whose validation accuracy stays within "
        f"{cfg['tolerance']} of fp32 ({ctx.fp32.val_accuracy:.4f}): {chosen or 'none'}"
    )
    return _variants_result(ctx, variants, primary, figures.layer_sensitivity, header)


@register("uniform")
def _uniform(ctx: Context) -> MethodResult:
    cfg, epochs = ctx.config, ctx.scan_epochs()
    variants, scan = [], []

    def uniform_config(bits, alpha):
        return {n: weight_spec(bits, alpha) for n in ctx.weight_layers if bits < FP_BITS}

    for bits in sorted(cfg["bits"]):
        info = {"series": "uniform", "bits": bits, "alpha": str(cfg["alpha"])}
        v = ctx.variant(
            f"{ctx.prefix}_scan_{bits}bit", uniform_config(bits, cfg["alpha"]), epochs, info
        )
        variants.append(v)
        scan.append(v)
    flat_tag = _ALPHA_TAGS[cfg["flat_alpha"]]
    for bits in sorted(cfg["flat_bits"]):
        info = {
            "series": f"flat ({cfg['flat_alpha']})",
            "bits": bits,
            "alpha": str(cfg["flat_alpha"]),
        }
        name = f"{ctx.prefix}_flat_{bits}bit_{flat_tag}"
        variants.append(ctx.variant(name, uniform_config(bits, cfg["flat_alpha"]), epochs, info))
    if cfg["mixed"] is not None:
        mixed = ctx.resolve_layers(cfg["mixed"], cfg["flat_alpha"])
        info = {
            "series": f"mixed ({cfg['flat_alpha']})",
            "bits": math.nan,
            "alpha": str(cfg["flat_alpha"]),
        }
        variants.append(ctx.variant(f"{ctx.prefix}_mixed_{flat_tag}", mixed, epochs, info))
    tolerated = [v for v in scan if ctx.within(v)]
    chosen = tolerated[0] if tolerated else scan[-1]
    bits = chosen.info["bits"]
    primary = _choose_primary(
        ctx,
        variants,
        chosen,
        f"{ctx.prefix}_{bits}bit",
        {"series": "primary", "bits": bits, "alpha": str(cfg["alpha"])},
    )
    header = (
        f"# smallest uniform bit width with validation accuracy within {cfg['tolerance']} of "
        f"fp32 ({ctx.fp32.val_accuracy:.4f}): {bits}" + ("" if tolerated else " (none: widest)")
    )
    return _variants_result(ctx, variants, primary, figures.uniform, header)


@register("one_bit_rounds")
def _one_bit_rounds(ctx: Context) -> MethodResult:
    cfg, alpha, epochs = ctx.config, ctx.config["alpha"], ctx.scan_epochs()
    layers = ctx.names(list(cfg["layers"]) or ctx.weight_layers, "weight", "layers")
    acts = ctx.names(list(cfg["activations"]), "activation", "activations")
    base = {n: weight_spec(cfg["base_bits"], alpha) for n in ctx.weight_layers}
    one = weight_spec(1, alpha)
    variants = []

    def round_(name, config, round_name, one_bit):
        info = {"round": round_name, "one_bit": ",".join(one_bit) or "-", "n_one_bit": len(one_bit)}
        v = ctx.variant(f"{ctx.prefix}_{name}", config, epochs, info)
        v.info["within_tolerance"] = ctx.within(v)
        variants.append(v)
        return v

    candidates = [round_(f"base_{cfg['base_bits']}bit", base, "base", [])]
    singles = [round_(f"1bit_{n}", {**base, n: one}, "single layer", [n]) for n in layers]
    tolerant = [n for n, v in zip(layers, singles, strict=True) if ctx.within(v)]
    act_base, act_one_bit = base, []
    if tolerant:
        combined = {**base, **{n: one for n in tolerant}}
        candidates.append(round_("1bit_combined", combined, "tolerant layers together", tolerant))
        act_base, act_one_bit = combined, tolerant
    act_specs = {a: activation_spec(ctx.kinds[a][1], 1) for a in acts}
    for a in acts:
        candidates.append(
            round_(f"1bit_act_{a}", {**act_base, a: act_specs[a]}, "activation", act_one_bit + [a])
        )
    if len(acts) > 1:
        candidates.append(
            round_(
                "1bit_act_all",
                {**act_base, **act_specs},
                "activations together",
                act_one_bit + acts,
            )
        )
    ok = [v for v in candidates if v.info["within_tolerance"]] or candidates[:1]
    # fewest weight bits, then most 1-bit activations, then best validation accuracy
    chosen = min(ok, key=lambda v: (v.metrics["model_bits"], -v.info["n_one_bit"], -v.val_accuracy))
    primary = _choose_primary(
        ctx,
        variants,
        chosen,
        f"{ctx.prefix}_best",
        {**chosen.info, "round": f"best: {chosen.name}"},
    )
    primary.info["within_tolerance"] = ctx.within(primary)
    header = (
        f"# layers tolerating 1 bit (validation accuracy within {cfg['tolerance']} of fp32 "
        f"{ctx.fp32.val_accuracy:.4f}): {', '.join(tolerant) or 'none'}\n"
        f"# chosen round: {chosen.name}"
    )
    return _variants_result(ctx, variants, primary, figures.rounds, header)


@register("po2_vs_auto")
def _po2_vs_auto(ctx: Context) -> MethodResult:
    variants = []
    for label, entry in ctx.config["configurations"].items():
        for alpha in ("auto", "auto_po2"):
            config = ctx.resolve_layers(entry, alpha)
            info = {"configuration": label, "alpha": alpha}
            name = f"{ctx.prefix}_{label}_{_ALPHA_TAGS[alpha]}"
            variants.append(ctx.variant(name, config, ctx.finetune.epochs, info))
    first_po2 = variants[1]
    first_po2.primary = True
    return _variants_result(ctx, variants, first_po2, figures.po2_vs_auto)
