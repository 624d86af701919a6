"""Per-layer Hessian traces (Hutchinson, HAWQ-v2) and Hessian-based layer selection (Vindas et al. §4.3).

For each weight layer l, ``Tr(H_ll) ≈ mean_i v_iᵀ H_ll v_i`` with Rademacher ``v_i`` drawn for W_l only;
``H_ll v`` comes from double backprop: ``∂(g_l · v)/∂W_l`` of a ``create_graph=True`` gradient ``g_l``.
Only the diagonal block of layer l enters (``autograd.grad(g_l, W_l, v)``), not cross-layer terms,
which would add variance without changing the mean. As in PyHessian, sampling stops when the running
mean changes by less than ``tol`` relatively, or after ``max_iter`` samples; we also report the
standard error, because a small change of a running mean does not by itself mean a small error.

The model is put in eval mode (dropout off, batch-norm statistics fixed) and restored afterwards; the
batches are fixed, and each layer draws from its own generator seeded with ``derive_seed(seed, name)``,
so a layer's estimate does not depend on which other layers are traced or when they converge.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

import torch
from torch import nn

from quantscan.compress.prune import weight_layers
from quantscan.errors import ConfigError
from quantscan.seeds import derive_seed

log = logging.getLogger(__name__)
#: seconds between progress lines of a long estimate
PROGRESS_SECONDS = 30.0


def _rademacher(shape, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    v = torch.randint(0, 2, shape, generator=generator, dtype=torch.int8) * 2 - 1
    return v.to(device=like.device, dtype=like.dtype)


def hutchinson_traces(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    layers: Iterable[str] | None = None,
    *,
    max_iter: int = 100,
    tol: float = 1e-3,
    seed: int = 0,
    min_iter: int = 2,
) -> dict[str, dict]:
    """Hutchinson estimates of each layer's weight-Hessian trace.

    ``batches``: fixed ``(x, y)`` pairs; the loss is their size-weighted mean, as over one big batch
    (``loss_fn`` must average over its batch, like ``nn.CrossEntropyLoss()``). Their double-backprop
    graphs are kept for the whole run, so pass few, small batches.

    Returns ``{layer: {"trace", "trace_per_param", "n_params", "iterations", "stderr",
    "converged"}}`` in layer order; biases are not included (only weights are quantized).
    """
    if max_iter < 1 or min_iter < 1 or tol < 0:
        raise ConfigError("need max_iter >= 1, min_iter >= 1 and tol >= 0")
    batches = list(batches)
    if not batches:
        raise ConfigError("hutchinson_traces needs at least one (x, y) batch")
    chosen = weight_layers(model, layers)
    params = {n: m.weight for n, m in chosen.items()}
    if not all(p.requires_grad for p in params.values()):
        raise ConfigError("every traced layer's weight must require grad")

    was_training = model.training
    model.eval()
    try:
        sizes = [len(x) for x, _ in batches]
        total = sum(sizes)
        grads = []  # per batch: gradients with their graphs, for Hessian-vector products
        for x, y in batches:
            loss = loss_fn(model(x), y)
            g = torch.autograd.grad(loss, list(params.values()), create_graph=True)
            grads.append(dict(zip(params, g, strict=True)))

        gens = {
            n: torch.Generator().manual_seed(derive_seed(seed, "hutchinson", n)) for n in params
        }
        samples: dict[str, list[float]] = {n: [] for n in params}
        converged = dict.fromkeys(params, False)
        start = last_report = time.perf_counter()
        for it in range(max_iter):
            active = [n for n in params if not converged[n]]
            if not active:
                break
            now = time.perf_counter()
            products = sum(map(len, samples.values()))  # Hessian-vector products so far
            if products and now - last_report >= PROGRESS_SECONDS:
                last_report = now
                left = (now - start) / products * len(active) * (max_iter - it)
                log.info(
                    "Hessian traces: %d of at most %d samples, %d of %d layers still sampling, "
                    "%.0f s so far (at most %.0f s more)",
                    it,
                    max_iter,
                    len(active),
                    len(params),
                    now - start,
                    left,
                )
            for n in active:
                w = params[n]
                v = _rademacher(w.shape, gens[n], w)
                vhv = 0.0
                for size, g in zip(sizes, grads, strict=True):
                    (hv,) = torch.autograd.grad(g[n], w, grad_outputs=v, retain_graph=True)
                    vhv += size / total * float((v * hv).sum())
                old = sum(samples[n]) / len(samples[n]) if samples[n] else None
                samples[n].append(vhv)
                new = sum(samples[n]) / len(samples[n])
                if it + 1 >= max(min_iter, 2) and abs(new - old) <= tol * abs(old):
                    converged[n] = True
    finally:
        model.train(was_training)

    out = {}
    for n, w in params.items():
        s = samples[n]
        mean = sum(s) / len(s)
        var = sum((a - mean) ** 2 for a in s) / (len(s) - 1) if len(s) > 1 else math.nan
        out[n] = {
            "trace": mean,
            "trace_per_param": mean / w.numel(),
            "n_params": w.numel(),
            "iterations": len(s),
            "stderr": math.sqrt(var / len(s)) if len(s) > 1 else math.nan,
            "converged": converged[n],
        }
    return out


def select_layers(
    traces: Mapping[str, Mapping], fraction: float, exclude: Iterable[str] = ()
) -> dict:
    """Choose the least Hessian-sensitive layers until ``fraction`` of the weights is selected.

    Layers are ranked by trace per parameter (ascending; a flat loss surface is the safest place to
    quantize; ties keep the input order) and taken greedily until the selected weights reach
    ``fraction`` of all weights in ``traces``, so the result may overshoot by at most one layer.
    ``exclude`` layers count in the total but are never selected (e.g. a first conv kept fp32);
    if the target cannot be met, the report says so through ``achieved_fraction``.

    Returns ``{"target_fraction", "achieved_fraction", "selected": [names in rank order],
    "ranking": [{"layer", "trace_per_param", "n_params", "cumulative_fraction", "selected"}]}``.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ConfigError(f"fraction of weights to quantize must be in [0, 1] (got {fraction})")
    exclude = set(exclude)
    unknown = exclude - set(traces)
    if unknown:
        raise ConfigError(f"excluded layers not in the traces: {sorted(unknown)}")
    total = sum(int(t["n_params"]) for t in traces.values())
    if total == 0:
        raise ConfigError("no weights to select from")
    position = {n: i for i, n in enumerate(traces)}
    order = sorted(traces, key=lambda n: (float(traces[n]["trace_per_param"]), position[n]))
    selected, ranking, chosen = [], [], 0
    for n in order:
        take = n not in exclude and chosen < fraction * total
        if take:
            selected.append(n)
            chosen += int(traces[n]["n_params"])
        ranking.append(
            {
                "layer": n,
                "trace_per_param": float(traces[n]["trace_per_param"]),
                "n_params": int(traces[n]["n_params"]),
                "cumulative_fraction": chosen / total,
                "selected": take,
            }
        )
    return {
        "target_fraction": fraction,
        "achieved_fraction": chosen / total,
        "selected": selected,
        "ranking": ranking,
    }
