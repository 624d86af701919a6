"""Method types ``ttq``, ``attq`` and ``dorefa``: trained ternary, asymmetric ternary (Vindas et al.,
aTTQ) and DoReFa binary / k-bit weight layers (``compress/ternary.py``) fine-tuned from fp32 (one
variant, the primary).

``layers``: ``default`` (all but the first and last), ``all``, a list, or ``hessian``: Hutchinson
traces of the fp32 model on ``hessian.samples`` seeded training inputs, layers taken by ascending
trace per weight until ``hessian.fraction`` of the weights (``hessian.select_layers``; Vindas et al.
section 4.3); the traces, ranks and the selection are in the details table and the notes.
``dorefa.activation_bits`` puts DoReFa activations after every ReLU.
"""

from __future__ import annotations

import copy
import math
import time

import numpy as np
import pandas as pd
import torch
from torch import nn

from ...errors import ConfigError
from ...seeds import derive_seed
from ...train import to_tensor
from .. import figures
from ..cost import weight_bits
from ..hessian import hutchinson_traces, select_layers
from ..metrics import effective_weights
from ..ternary import (
    DoReFaActivation,
    make_ternarizer,
    ternarize_model,
    ternary_layers,
    ternary_report,
)
from .registry import Context, MethodResult, entry_notes, paste_entry, register

#: hyperparameters of each ternary method type, as ``ternary.make_ternarizer`` takes them
_TERNARY_PARAMS = {"ttq": ("t", "init"), "attq": ("t_min", "t_max", "init"), "dorefa": ("k",)}
#: inputs per Hessian batch (every batch's double-backprop graph is kept while sampling)
HESSIAN_BATCH = 32


def hessian_layers(ctx: Context) -> tuple[list[str], pd.DataFrame]:
    """``layers: hessian``: the selected layers and a per-layer table of traces and ranks.

    Hutchinson traces of the fp32 model's weight layers on ``hessian.samples`` training inputs (a
    seeded draw, batches of ``HESSIAN_BATCH``, the task's fine-tuning loss);
    ``hessian.select_layers`` takes the lowest traces per weight until ``hessian.fraction`` of the
    weights is selected.
    """
    h = ctx.config["hessian"]
    x, y = ctx.train
    if not len(y):
        raise ConfigError(f"method {ctx.name!r}: 'layers: hessian' needs training inputs")
    rng = np.random.default_rng(derive_seed(ctx.seed, "hessian_inputs"))
    idx = np.sort(rng.choice(len(y), min(h["samples"], len(y)), replace=False))
    batches = [
        (to_tensor(x[part], x.ndim == 4), torch.from_numpy(np.asarray(y[part], np.int64)))
        for part in np.array_split(idx, math.ceil(len(idx) / HESSIAN_BATCH))
    ]
    loss_fn = ctx.task.loss(ctx.finetune.class_weights)
    start = time.perf_counter()
    traces = hutchinson_traces(
        copy.deepcopy(ctx.model),
        loss_fn,
        batches,
        max_iter=h["max_iter"],
        tol=h["tol"],
        seed=derive_seed(ctx.seed, "hutchinson"),
    )
    selection = select_layers(traces, h["fraction"])
    ctx.log.info(
        "Hessian traces on %d inputs (%.1f s): selected %s (%.3f of the weights)",
        len(idx),
        time.perf_counter() - start,
        selection["selected"],
        selection["achieved_fraction"],
    )
    rank = {r["layer"]: (i + 1, r) for i, r in enumerate(selection["ranking"])}
    table = pd.DataFrame(
        [
            {
                "layer": n,
                "trace": t["trace"],
                "trace_per_weight": t["trace_per_param"],
                "trace_stderr": t["stderr"],
                "trace_samples": t["iterations"],
                "trace_converged": t["converged"],
                "hessian_rank": rank[n][0],
                "cumulative_fraction": rank[n][1]["cumulative_fraction"],
                "hessian_selected": rank[n][1]["selected"],
            }
            for n, t in traces.items()
        ]
    )
    table.attrs["inputs"] = len(idx)
    table.attrs["achieved_fraction"] = selection["achieved_fraction"]
    return selection["selected"], table


def ternary_table(model: nn.Module, hessian: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per weight layer: quantized or not, bits, scales, levels, zero band, sparsity (+ Hessian);
    then the DoReFa activations."""
    report, bits = ternary_report(model), weight_bits(model)
    weights = effective_weights(model)
    rows = []
    for name, w in weights.items():
        r, nonzero = report.get(name, {}), int(torch.count_nonzero(w))
        rows.append(
            {
                "layer": name,
                "quantized": name in report,
                "bits": bits[name],
                "n_scales": r.get("n_scales", 0),
                "n_weights": w.numel(),
                "nonzero": nonzero,
                "sparsity": 1.0 - nonzero / w.numel(),
                "levels": " ".join(f"{x:.6g}" for x in r.get("levels") or ()),
                "zero_band": " ".join(f"{x:.6g}" for x in r.get("thresholds") or ()),
            }
        )
    table = pd.DataFrame(rows)
    if hessian is not None:
        table = table.merge(hessian, on="layer", how="left")
    acts = [
        {"layer": n, "quantized": True, "bits": m.k, "levels": f"DoReFa activation ({m.k} bits)"}
        for n, m in model.named_modules()
        if isinstance(m, DoReFaActivation)
    ]
    return pd.concat([table, pd.DataFrame(acts)], ignore_index=True) if acts else table


@register("ttq")
@register("attq")
@register("dorefa")
def _ternary(ctx: Context) -> MethodResult:
    cfg = ctx.config
    params = {k: cfg[k] for k in _TERNARY_PARAMS[ctx.type]}
    hessian = None
    if cfg["layers"] == "hessian":
        layers, hessian = hessian_layers(ctx)
    else:
        layers = None if cfg["layers"] == "default" else cfg["layers"]
    acts = {}
    if ctx.type == "dorefa" and cfg["activation_bits"] is not None:
        relus = [n for n, m in ctx.model.named_modules() if type(m) is nn.ReLU]
        acts = dict.fromkeys(relus, cfg["activation_bits"])
    try:
        model = ternarize_model(ctx.model, ctx.type, layers, activations=acts, **params)
    except ConfigError as err:
        raise ConfigError(f"method {ctx.name!r} ({ctx.type}): {err}") from None
    chosen = list(ternary_layers(model))
    selection = cfg["layers"] if isinstance(cfg["layers"], str) else "listed"
    info = {**params, "selection": selection, "layers": ",".join(chosen)}
    if acts:
        info["activation_bits"] = cfg["activation_bits"]
    v = ctx.train_variant(ctx.prefix, model, ctx.finetune.epochs, info, primary=True)
    table = ternary_table(v.model, hessian)
    ternarizer = make_ternarizer(ctx.type, **params)
    n_layers = len(ctx.weight_layers)
    header = f"# {ternarizer!r} on {len(chosen)} of {n_layers} weight layers ({selection}): " + (
        ", ".join(chosen)
    )
    if acts:
        header += f"\n# DoReFa activations at {cfg['activation_bits']} bits after {', '.join(acts)}"
    sections = []
    if hessian is not None:
        h = cfg["hessian"]
        sections.append(
            f"# Hessian traces (Hutchinson, {hessian.attrs['inputs']} training inputs, up to "
            f"{h['max_iter']} samples per layer, tol {h['tol']}): layers ranked by trace per weight, "
            f"the least sensitive taken until {h['fraction']} of the weights "
            f"(reached {hessian.attrs['achieved_fraction']:.4f})\n"
            + hessian.sort_values("hessian_rank").to_string(index=False, float_format="%.6g")
        )
    sections.append(
        "# per-layer weights (levels: negative, positive; zero band: its edges)\n"
        + table.drop(
            columns=[c for c in table if c.startswith(("trace", "hessian_", "cumul"))]
        ).to_string(index=False, float_format="%.6g")
    )
    paste = {**params, "layers": chosen}
    if ctx.type == "dorefa":
        paste["activation_bits"] = cfg["activation_bits"]
    return MethodResult(
        [v],
        table,
        entry_notes(ctx, v, header, sections, paste_entry(ctx, **paste)),
        lambda path, title: figures.ternary(table, path, title, v.metrics["accuracy"]),
    )
