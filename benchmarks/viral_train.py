"""Viral CNN training step: PyTorch's Conv1d backward against ``models.conv1d.Conv1d``'s.

One training step (forward, cross-entropy, backward, Adam update) of seed 004's CNN at N = 3500 on
one-hot inputs, timed for two copies of the same model: ``library`` (every conv layer a plain
``nn.Conv1d``) and ``fast`` (the workflow's ``Conv1d``, both gradients as forward convolutions).
The two run in interleaved rounds (load from other processes hits both alike); each round also
times every conv layer's forward and backward on its own. The minimum over rounds is reported (the
least-disturbed run), with the machine description and load averages. Gradients of the two copies
are compared after the first step. Writes results/benchmarks/viral_train.json.

    .venv/bin/python benchmarks/viral_train.py [--batch 16] [--threads 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

import machine  # noqa: E402  # benchmarks/machine.py: a script's folder is on sys.path
import torch  # noqa: E402
from torch import nn  # noqa: E402

from quantscan.atomic import write_text  # noqa: E402
from quantscan.models import ViralCNN  # noqa: E402
from quantscan.models.conv1d import Conv1d  # noqa: E402


def models(length: int, seed: int) -> dict[str, nn.Module]:
    torch.manual_seed(seed)
    fast = ViralCNN(n_classes=4, length=length)
    library = ViralCNN(n_classes=4, length=length)
    library.load_state_dict(fast.state_dict())
    for m in library.modules():
        if type(m) is Conv1d:
            m.__class__ = nn.Conv1d
    return {"library": library, "fast": fast}


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def layer_times(model: nn.Module, x: torch.Tensor) -> dict[str, dict[str, float]]:
    """Forward and backward seconds of each conv layer on its real input."""
    inputs = {}
    hooks = [
        getattr(model, f"conv{i}").register_forward_pre_hook(
            lambda m, a, i=i: inputs.__setitem__(i, a[0].detach())
        )
        for i in range(1, 5)
    ]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    out = {}
    for i, xi in inputs.items():
        conv = getattr(model, f"conv{i}")
        xi.requires_grad_(i > 1)  # the first layer's input needs no gradient
        y = conv(xi)
        g = torch.randn_like(y)
        backward = timed(lambda: y.backward(g))  # noqa: B023
        out[f"conv{i}"] = {"forward_s": timed(lambda: conv(xi)), "backward_s": backward}  # noqa: B023
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--length", type=int, default=3500)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "results/benchmarks/viral_train.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    info = machine.describe() | {"load_average_start": list(os.getloadavg())}

    gen = torch.Generator().manual_seed(args.seed)
    x = nn.functional.one_hot(torch.randint(0, 5, (args.batch, args.length), generator=gen), 5)
    x = x.transpose(1, 2).float()
    y = torch.randint(0, 4, (args.batch,), generator=gen)
    runs = models(args.length, args.seed)
    optimizers = {k: torch.optim.Adam(m.parameters(), lr=1e-3) for k, m in runs.items()}

    def step(name):
        model, opt = runs[name], optimizers[name]
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    grads = {}
    for name, model in runs.items():  # warm-up step, and the gradients it gives
        model.train()
        torch.manual_seed(args.seed)  # the same dropout masks
        step(name)
        grads[name] = {n: p.grad.clone() for n, p in model.named_parameters()}
    rel = max(
        float((grads["fast"][n] - g).abs().max() / g.abs().max().clamp_min(1e-30))
        for n, g in grads["library"].items()
    )
    steps = {k: [] for k in runs}
    layers = {k: [] for k in runs}
    for r in range(args.rounds):
        for name in runs:
            steps[name].append(timed(lambda: step(name)))  # noqa: B023
            layers[name].append(layer_times(runs[name], x))
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in steps.items()))

    engines = {}
    for name in runs:
        per_layer = {
            conv: {k: min(rd[conv][k] for rd in layers[name]) for k in layers[name][0][conv]}
            for conv in layers[name][0]
        }
        engines[name] = {"step_s": min(steps[name]), "all_steps_s": steps[name], "layers": per_layer}
    report = {
        "machine": info | {"load_average_end": list(os.getloadavg())},
        "settings": vars(args) | {"out": str(args.out)},
        "engines": engines,
        "speedup_fast_vs_library": engines["library"]["step_s"] / engines["fast"]["step_s"],
        "max_relative_gradient_difference": rel,
    }
    write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(
        f"training step at N = {args.length}, batch {args.batch}, {args.threads} threads: library "
        f"{engines['library']['step_s']:.2f} s, fast {engines['fast']['step_s']:.2f} s "
        f"({report['speedup_fast_vs_library']:.2f}x); max relative gradient difference {rel:.1e}"
    )
    print(f"written to {args.out}")
    return report


if __name__ == "__main__":
    main()
