"""Method type ``auto_search``: an AutoQKeras-style search of per-layer bit widths.

Optuna's seeded TPE sampler proposes bit widths per weight layer (and per activation with
``activation_bits``); each trial is a short QAT fine-tune scored on the validation split with
score = validation accuracy x (1 + delta), the forgiving factor (compression.md section 2; Chen
2024); with ``max_bits``, configurations over that budget score 0 untrained. ``start_with``
configurations (layer presets of the caller, bit widths or mappings) are tried first. The best
configuration is fine-tuned on the whole training split as the primary.
"""

from __future__ import annotations

import json
import math
import time

import pandas as pd

from ...errors import ConfigError
from ...seeds import derive_seed
from .. import figures
from ..cost import FP_BITS, kernel_bits_of, model_bits
from ..layers import QActivation, quantize_model
from .registry import Context, MethodResult, activation_spec, primary_notes, register, weight_spec

# --------------------------------------------------------------------------------------------------
# forgiving factor (AutoQKeras, compression.md section 2)


def forgiving_delta(
    trial_bits: float, reference_bits: float, delta_p=8.0, delta_n=8.0, rate=2.0
) -> float:
    """``delta_p/100 * log_rate(reference/trial)`` when smaller than the reference, else delta_n."""
    if trial_bits <= 0 or reference_bits <= 0:
        raise ValueError("sizes must be positive")
    d = delta_p if trial_bits < reference_bits else delta_n
    return d / 100.0 * math.log(reference_bits / trial_bits) / math.log(rate)


def forgiving_score(metric: float, trial_bits, reference_bits, delta_p=8.0, delta_n=8.0, rate=2.0):
    """AutoQKeras' score ``metric x (1 + delta)``: half size x1.08, quarter x1.16, double x0.92."""
    return metric * (1.0 + forgiving_delta(trial_bits, reference_bits, delta_p, delta_n, rate))


def stats_lines(
    trial_bits: int, fp32_bits: int, delta_p=8.0, delta_n=8.0, rate=2.0, stress=1.0
) -> str:
    """AutoQKeras' ``print_stats`` lines (delta_p/n printed as fractions, as QKeras does).

    The cost is weight bits only, so there is no ``a_bits`` part.
    """
    reference = fp32_bits * stress
    delta = forgiving_delta(trial_bits, reference, delta_p, delta_n, rate)
    pct = 100.0 * (trial_bits - fp32_bits) / fp32_bits
    return (
        f"stats: delta_p={delta_p / 100:g} delta_n={delta_n / 100:g} rate={float(rate)!r} "
        f"trial_size={trial_bits} reference_size={int(reference)}\n"
        f"       delta={100 * delta:.2f}%\n"
        f"       p_bits={trial_bits}/{fp32_bits} ({pct:.2f}%)\n"
        f"       total={trial_bits}/{fp32_bits} ({pct:.2f}%)"
    )


def _search_params(ctx: Context, entry, layers: list[str], acts: list[str]) -> dict[str, int]:
    """The search's parameters (bits of each searched layer and activation) of a configuration
    entry of ``start_with``; its bit widths must be among the searched ones."""
    cfg = ctx.config
    modules = dict(quantize_model(ctx.model, ctx.resolve_layers(entry)).named_modules())
    params = {n: kernel_bits_of(modules[n]) for n in layers}
    for a in acts:
        m = modules[a]
        params[a] = m.quantizer.bits if isinstance(m, QActivation) else FP_BITS
    bad = {
        n: bits
        for n, bits in params.items()
        if bits not in (cfg["weight_bits"] if n in layers else cfg["activation_bits"])
    }
    if bad:
        raise ConfigError(
            f"compress.methods.{ctx.name}.start_with: {entry!r} sets bit widths outside the "
            f"searched ones (weight_bits {cfg['weight_bits']}, activation_bits "
            f"{cfg['activation_bits']}): {bad}"
        )
    return params


@register("auto_search")
def _auto_search(ctx: Context) -> MethodResult:
    import optuna

    cfg = ctx.config
    layers = ctx.names(list(cfg["layers"]) or ctx.weight_layers, "weight", "layers")
    acts = []
    if cfg["activation_bits"]:
        acts = [
            n
            for n, (k, nl) in ctx.kinds.items()
            if k == "activation" and nl in ("relu", "sigmoid", "tanh")
        ]
    reference = ctx.fp32_bits * cfg["stress"]
    ff = {k: cfg[k] for k in ("delta_p", "delta_n", "rate")}
    trials, seen = [], {}
    # one subset for every trial, so the trials compare alike; the best is retrained on everything
    trial_train = ctx.train_subset(cfg["trial_samples"], "trial_samples")

    def objective(trial) -> float:
        start = time.perf_counter()
        config = {}
        for n in layers:
            config[n] = weight_spec(
                trial.suggest_categorical(n, list(cfg["weight_bits"])), cfg["alpha"]
            )
        for a in acts:
            config[a] = activation_spec(
                ctx.kinds[a][1], trial.suggest_categorical(a, list(cfg["activation_bits"]))
            )
        key = json.dumps(config, sort_keys=True)
        budget = cfg["max_bits"]
        # the size does not depend on training: a configuration over the budget scores 0 untrained
        size = model_bits(quantize_model(ctx.model, config)) if budget else 0
        if key in seen:  # TPE may propose a configuration again: its score is known
            val_acc, bits = seen[key]
        elif budget and size > budget:
            val_acc, bits = 0.0, size
            seen[key] = (val_acc, bits)
        else:
            name = f"trial{trial.number}"

            def train_and_score() -> list:
                model = ctx.qat(config, cfg["trial_epochs"], name, trial_train)
                return [ctx.val_accuracy(model), model_bits(model)]

            # a resumed job replays the finished trials from their scores, not their models
            what = (config, cfg["trial_epochs"], name, len(trial_train[1]))
            val_acc, bits = ctx.cached("trial", train_and_score, *what)
            seen[key] = (val_acc, bits)
        delta = forgiving_delta(bits, reference, **ff)
        score = val_acc * (1.0 + delta)
        row = {
            "trial": trial.number,
            "score": score,
            "val_accuracy": val_acc,
            "delta": delta,
            "model_bits": bits,
            "size_pct": 100.0 * bits / ctx.fp32_bits,
            "over_budget": bool(budget) and bits > budget,
        }
        row |= {n: trial.params[n] for n in layers + acts}
        row["seconds"] = round(time.perf_counter() - start, 3)
        trials.append(row)
        ctx.log.info(
            "trial %d: score %.4f (validation accuracy %.4f, delta %+.2f%%, %d bits)",
            trial.number,
            score,
            val_acc,
            100 * delta,
            bits,
        )
        return score

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=derive_seed(ctx.seed, "sampler"))
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for entry in cfg["start_with"]:
        study.enqueue_trial(_search_params(ctx, entry, layers, acts))
    study.optimize(objective, n_trials=cfg["n_trials"])
    best = study.best_trial
    config = {n: weight_spec(best.params[n], cfg["alpha"]) for n in layers}
    config |= {a: activation_spec(ctx.kinds[a][1], best.params[a]) for a in acts}
    info = {"best_trial": best.number, "score": best.value}
    primary = ctx.variant(ctx.prefix, config, ctx.finetune.epochs, info, primary=True)
    table = pd.DataFrame(trials)
    table["best"] = table.trial == best.number
    bits = primary.metrics["model_bits"]
    header = "\n".join(
        [
            f"# AutoQKeras-style search: {len(trials)} trials (TPE), {cfg['trial_epochs']} epochs each "
            f"on {len(trial_train[1])} of {len(ctx.train[1])} training inputs; "
            "score = validation accuracy x (1 + delta)",
            f"# best: trial {best.number}, score {best.value:.4f}, validation accuracy "
            f"{table.val_accuracy[table.best].iloc[0]:.4f}; cost = weight bits, reference = fp32 x stress "
            f"({cfg['stress']})",
            stats_lines(
                bits, ctx.fp32_bits, cfg["delta_p"], cfg["delta_n"], cfg["rate"], cfg["stress"]
            ),
        ]
    )
    return MethodResult(
        [primary],
        table,
        primary_notes(ctx, primary, header),
        lambda path, title: figures.search(table, path, title),
    )
