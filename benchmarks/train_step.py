"""Training steps with PyTorch's kernels against the workflow's faster layers, per model.

One training step (forward, cross-entropy, backward, Adam update), timed for two copies of the same
model in interleaved rounds (load from other processes hits both alike):

* ``viralcnn`` (Fernandes & Kung's CNN at N = 3500 on one-hot inputs, batch 16): ``library`` with plain
  ``nn.Conv1d`` layers, ``fast`` with ``layers.conv1d.Conv1d`` (both gradients as forward
  convolutions); each round also times every conv layer's forward and backward on its own input;
* ``sweepnet`` (128 x 128 binary images, channels-last as ``train.fit`` feeds them, batch 32):
  ``library`` with ``F.max_pool2d``, ``fast`` with ``layers.maxpool.max_pool_2x2``.

The minimum over rounds is reported (the least-disturbed run), with the machine description and load
averages, and the largest relative difference between the two copies' gradients after the same
first step. Writes results/benchmarks/train_step.json.

    .venv/bin/python benchmarks/train_step.py [--threads 2] [--rounds 3] [--models viralcnn sweepnet]
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
from quantscan.layers.conv1d import Conv1d  # noqa: E402
from quantscan.models import SweepNet, ViralCNN  # noqa: E402
from quantscan.models.sweepnet import MaxPool2x2  # noqa: E402


def _library_pool(x: torch.Tensor) -> torch.Tensor:
    return nn.functional.max_pool2d(x, 2, stride=1)


def setup(name: str, seed: int) -> tuple[dict[str, nn.Module], torch.Tensor, torch.Tensor]:
    """The two copies of one model, and a batch of inputs and labels."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    if name == "viralcnn":
        make = lambda: ViralCNN(n_classes=4, length=3500)  # noqa: E731
        x = nn.functional.one_hot(torch.randint(0, 5, (16, 3500), generator=gen), 5)
        x = x.transpose(1, 2).float()
        y = torch.randint(0, 4, (16,), generator=gen)
    else:
        make = SweepNet
        x = (torch.rand(32, 1, 128, 128, generator=gen) > 0.7).float()
        x = x.contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 2, (32,), generator=gen)
    fast, library = make(), make()
    library.load_state_dict(fast.state_dict())
    for m in library.modules():
        if type(m) is Conv1d:
            m.__class__ = nn.Conv1d
        elif type(m) is MaxPool2x2:
            m.forward = _library_pool
    return {"library": library, "fast": fast}, x, y


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def layer_times(model: nn.Module, x: torch.Tensor) -> dict[str, dict[str, float]]:
    """Forward and backward seconds of each conv layer of the viral CNN on its real input."""
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


def measure(name: str, rounds: int, seed: int) -> dict:
    runs, x, y = setup(name, seed)
    optimizers = {k: torch.optim.Adam(m.parameters(), lr=1e-3) for k, m in runs.items()}

    def step(kind):
        model, opt = runs[kind], optimizers[kind]
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    grads = {}
    for kind, model in runs.items():  # warm-up step (and compilation), and the gradients it gives
        model.train()
        torch.manual_seed(seed)  # the same dropout masks
        step(kind)
        grads[kind] = {n: p.grad.clone() for n, p in model.named_parameters()}
    rel = max(
        float((grads["fast"][n] - g).abs().max() / g.abs().max().clamp_min(1e-30))
        for n, g in grads["library"].items()
    )
    steps = {k: [] for k in runs}
    layers = {k: [] for k in runs}
    for r in range(rounds):
        for kind in runs:
            steps[kind].append(timed(lambda: step(kind)))  # noqa: B023
            if name == "viralcnn":
                layers[kind].append(layer_times(runs[kind], x))
        times = ", ".join(f"{k} {v[-1]:.2f} s" for k, v in steps.items())
        print(f"{name} round {r + 1}/{rounds}: {times}")
    engines = {}
    for kind in runs:
        engines[kind] = {"step_s": min(steps[kind]), "all_steps_s": steps[kind]}
        if layers[kind]:
            engines[kind]["layers"] = {
                conv: {k: min(rd[conv][k] for rd in layers[kind]) for k in layers[kind][0][conv]}
                for conv in layers[kind][0]
            }
    speedup = engines["library"]["step_s"] / engines["fast"]["step_s"]
    print(
        f"{name}: training step (batch {len(x)}) library {engines['library']['step_s']:.2f} s, "
        f"fast {engines['fast']['step_s']:.2f} s ({speedup:.2f}x); "
        f"max relative gradient difference {rel:.1e}"
    )
    return {
        "batch": len(x),
        "input_shape": list(x.shape[1:]),
        "engines": engines,
        "speedup_fast_vs_library": speedup,
        "max_relative_gradient_difference": rel,
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--models", nargs="+", choices=["viralcnn", "sweepnet"], default=["viralcnn", "sweepnet"]
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "results/benchmarks/train_step.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    info = machine.describe() | {"load_average_start": list(os.getloadavg())}
    results = {name: measure(name, args.rounds, args.seed) for name in args.models}
    report = {
        "machine": info | {"load_average_end": list(os.getloadavg())},
        "settings": vars(args) | {"out": str(args.out)},
        "models": results,
    }
    write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(f"written to {args.out}")
    return report


if __name__ == "__main__":
    main()
