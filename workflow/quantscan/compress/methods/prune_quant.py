"""Method types ``q_then_p_iter``, ``p_then_q_iter`` and ``p_then_q_epochs``: γσ pruning plus
uniform ``bits``-bit quantization (Fernandes & Kung, ``compress/prune.py``).

One variant per γ, each fine-tuned through ``fit``'s step hook with the schedule, then
``schedule.finalize`` (after ``fit`` restored its best epoch, so the model holds the pruned,
quantized values with every mask applied; ``fit`` restores the schedule's masks of that epoch with
its weights). Early stopping watches the float latent weights (``fit`` evaluates the model as it is
between steps), so every variant is evaluated after finalize (with the batch-norm statistics
recomputed for the finalized weights when ``recalibrate_bn``), and a finalize that loses more than
``registry.FINALIZE_TOLERANCE`` (2 points) of validation accuracy against the weights it started
from fails the job (``registry.check_finalize``). The primary is the lowest-density variant within
``tolerance`` of fp32 on validation, else the most accurate.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd

from .. import figures
from ..prune import make_schedule
from .registry import (
    SECOND_SCORES,
    Context,
    MethodResult,
    Variant,
    entry_notes,
    paste_entry,
    register,
    variant_table,
)


def sparsest_within(variants: list[Variant]) -> tuple[Variant, bool]:
    """The lowest-density variant with ``info["within_tolerance"]`` (ties: better validation
    accuracy, then the earlier one), else the most accurate on validation (ties: sparser); and
    whether one was within tolerance."""
    ok = [v for v in variants if v.info["within_tolerance"]]
    if ok:
        return min(ok, key=lambda v: (v.metrics["density"], -v.val_accuracy)), True
    return max(
        variants, key=lambda v: (np.nan_to_num(v.val_accuracy, nan=-1.0), -v.metrics["density"])
    ), False


@register("q_then_p_iter")
@register("p_then_q_iter")
@register("p_then_q_epochs")
def _prune(ctx: Context) -> MethodResult:
    cfg = ctx.config
    layers = cfg["layers"]
    if layers is not None:
        ctx.names(list(layers), "weight", "layers")
    variants, reports = [], {}
    for gamma in cfg["gammas"]:
        name = f"{ctx.prefix}_g{float(gamma)}"
        schedule = make_schedule(ctx.type, gamma, cfg["bits"], layers)

        def finalize(model, schedule=schedule, name=name):
            reports[name] = schedule.finalize(model)  # pruned + quantized values, masks applied

        info = {"gamma": float(gamma), "bits": cfg["bits"]}
        v = ctx.train_variant(
            name,
            copy.deepcopy(ctx.model),
            ctx.finetune.epochs,
            info,
            step=schedule.step,
            finalize=finalize,
            step_state=schedule,
        )
        v.info["density_pruned_layers"] = reports[name]["density"]
        v.info["within_tolerance"] = ctx.within(v)
        variants.append(v)
    primary, ok = sparsest_within(variants)
    # the task's second headline metric (MCC for classification), when its metrics have one
    second = [k for k, _ in SECOND_SCORES if k in primary.metrics][:1]
    primary.primary = True
    table = variant_table(variants, ctx.fp32)
    header = (
        f"# {ctx.type}: gamma-sigma pruning with {cfg['bits']}-bit uniform quantization (Fernandes & Kung), "
        f"gammas {list(cfg['gammas'])}, layers: {', '.join(layers) if layers else 'every weight layer'}\n"
        f"# primary: the lowest density whose validation accuracy is within {cfg['tolerance']} of fp32 "
        f"({ctx.fp32.val_accuracy:.4f}): gamma {primary.info['gamma']}"
        + ("" if ok else " (none within tolerance: the most accurate)")
    )
    cols = ["variant", "gamma", "density", "val_accuracy", "accuracy", *second, "weights_mbit"]
    per_layer = pd.DataFrame(
        [
            {"layer": n, **{k: r[k] for k in ("n_weights", "nonzero", "beta")}, **r["grid"]}
            for n, r in reports[primary.name]["layers"].items()
        ]
    )
    sections = [
        "# variants\n" + table[cols].to_string(index=False, float_format="%.6g"),
        "# primary per layer (beta = gamma x sigma; values offset + k x step)\n"
        + per_layer.to_string(index=False, float_format="%.6g"),
    ]
    return MethodResult(
        variants,
        table,
        entry_notes(
            ctx, primary, header, sections, paste_entry(ctx, gammas=[primary.info["gamma"]])
        ),
        lambda path, title: figures.pruning(table, path, title),
    )
