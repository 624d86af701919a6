"""γσ magnitude pruning with uniform b-bit quantization and its three training orders (Fernandes & Kung).

Fernandes & Kung (a novel training strategy for deep-learning model compression):

- eq. 1-2, uniform quantizer: ``C = round(W/q) * q`` with ``q = max|W| / (2^(b-1) - 1)``.
- eq. 3, pruning: ``C = W if |W| >= β else 0`` with ``β = γ·σ_k`` (σ_k the std of layer k's weights).
- eq. 4-5, P->Q iteration: ``C = Q(P(W, β), q')`` with ``q' = (max|W| - β) / (2^(b-1) - 1)``.
- eq. 6, Q->P iteration: ``C = P(Q(W, q), β)``.

Conventions chosen here (the paper leaves them open):

- **Levels (the paper's M).** The paper says ``M = 2^b - 1`` levels, prints ``M = 31`` for b = 5 but
  ``M = 254`` for b = 8 (which would be 2^b - 2). With ``q`` of eq. 2 the codes ``round(W/q)`` are the
  integers ``-(2^(b-1)-1) .. 2^(b-1)-1``: **2^b - 1 levels including zero** (255 for b = 8; 254 is the
  number of steps between -max and +max). That is what :func:`quantize_uniform` produces.
- **Eq. 4-5 taken literally overflows b bits**: ``round(W/q')`` reaches
  ``(2^(b-1)-1)·max/(max-β)`` > ``2^(b-1)-1``. ``q'`` only makes sense as the step across the interval
  ``[β, max]`` that survives pruning, so :func:`quantize_offset` maps a kept weight to
  ``sign(W)·(β + round((|W|-β)/q')·q')``: 2^(b-1) magnitudes per sign, i.e. **2^b non-zero values, b
  bits per non-zero weight** (zeros are implied by the sparse index). With β = 0 it equals eq. 1-2.
- **σ_k** is the population std (``unbiased=False``) of the layer's current weight tensor, pruned zeros
  included. Counting the zeros makes σ shrink as the layer sparsifies, so repeated pruning settles;
  the std of the survivors alone grows with every pruning and would cascade to an empty layer.
- **Masks are cumulative**: once pruned, a weight stays zero (its gradient is zeroed before every
  optimizer step and the mask is re-applied after it, so momentum/Adam state cannot revive it).
- **Latent fp32 weights** (straight-through estimator): when a schedule trains on compressed weights,
  the forward pass sees the compressed copy, the gradient with respect to that copy updates the float
  weights. This is the paper's "a copy of weight values is quantized ... passed to the forward stage".
- Only the ``weight`` of Conv1d/Conv2d/Conv3d/ConvTranspose3d/Linear modules is compressed; **biases
  stay fp32**. β and the grid are per layer (the whole tensor), so a transposed convolution's
  ``[in, out, k...]`` layout needs nothing special.
- Rounding is ``torch.round`` (half to even).
- **Bit width travels with the model**: ``finalize`` marks every compressed layer with ``grid_bits`` (a
  plain attribute: ``cost.model_bits`` counts its kernel at b bits) and the ``grid_bits`` pack
  transform keeps the mark in packed files (the values are stored by pack's ``levels`` codec).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from quantscan.errors import ConfigError

from ..export.packed import register_transform

#: module types whose ``weight`` is pruned and quantized (and counted by the metrics)
WEIGHT_LAYER_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose3d, nn.Linear)
#: attribute of a float Conv/Linear layer whose weights hold finalized values of a b-bit grid
GRID_BITS = "grid_bits"


def weight_layers(model: nn.Module, names: Iterable[str] | None = None) -> dict[str, nn.Module]:
    """Conv1d/2d/3d, ConvTranspose3d and Linear modules by qualified name, in registration order.

    ``names`` restricts the result (and must name such modules); ``None`` means all of them.
    """
    found = {n: m for n, m in model.named_modules() if isinstance(m, WEIGHT_LAYER_TYPES)}
    if names is None:
        return found
    names = list(names)
    unknown = [n for n in names if n not in found]
    if unknown:
        raise ConfigError(
            "not Conv1d/Conv2d/Conv3d/ConvTranspose3d/Linear layers of the model: "
            f"{unknown}; known: {list(found)}"
        )
    return {n: found[n] for n in names}


def mark_grid_bits(model: nn.Module, bits: Mapping[str, int]) -> nn.Module:
    """Record that the named weight layers hold b-bit grid values (``{name: b}``, b >= 2)."""
    layers = weight_layers(model, bits)
    for name, b in bits.items():
        if isinstance(b, bool) or not isinstance(b, int):
            raise ConfigError(f"layer {name!r}: grid bits must be an integer (got {b!r})")
        _levels(b)
        setattr(layers[name], GRID_BITS, b)
    return model


def grid_bits(model: nn.Module) -> dict[str, int]:
    """``{layer: b}`` of the layers ``mark_grid_bits`` marked."""
    return {
        n: getattr(m, GRID_BITS)
        for n, m in weight_layers(model).items()
        if getattr(m, GRID_BITS, None)
    }


def _apply_grid_bits(model: nn.Module, description) -> nn.Module:
    if not isinstance(description, Mapping):
        raise ConfigError(f"grid_bits must map layer names to bits, got {description!r}")
    return mark_grid_bits(model, description)


register_transform("grid_bits", lambda model: grid_bits(model) or None, _apply_grid_bits)


def _levels(bits: int) -> int:
    """Largest code ``2^(b-1) - 1`` of a symmetric b-bit quantizer."""
    if int(bits) != bits or bits < 2:
        raise ConfigError(f"bits must be an integer >= 2 (got {bits!r})")
    return 2 ** (int(bits) - 1) - 1


def gamma_sigma(w: torch.Tensor, gamma: float) -> float:
    """Pruning threshold ``β = γ·σ`` (population std of the whole tensor, zeros included)."""
    return float(gamma) * float(w.detach().float().std(unbiased=False))


def prune_mask(w: torch.Tensor, beta: float) -> torch.Tensor:
    """Eq. 3 as a keep-mask: True where ``|W| >= β``."""
    return w.detach().abs() >= beta


@dataclass(frozen=True)
class Grid:
    """The values a compressed layer may take: 0 and ``±(offset + step·k)`` for ``k_min <= k <= k_max``."""

    step: float
    offset: float
    k_min: int
    k_max: int

    def contains(self, w: torch.Tensor, rtol: float = 1e-4) -> bool:
        """True if every element of ``w`` is 0 or a grid value (up to float rounding)."""
        w = w.detach().double()
        nz = w[w != 0].abs()
        if nz.numel() == 0:
            return True
        if self.step <= 0:
            return bool(torch.all(torch.isclose(nz, torch.tensor(self.offset, dtype=w.dtype))))
        k = (nz - self.offset) / self.step
        k_round = torch.round(k)
        ok = (k - k_round).abs() <= rtol * max(1.0, float(k_round.abs().max()))
        return bool(ok.all() and k_round.min() >= self.k_min and k_round.max() <= self.k_max)

    def as_dict(self) -> dict:
        return {"step": self.step, "offset": self.offset, "k_min": self.k_min, "k_max": self.k_max}


def quantize_uniform(w: torch.Tensor, bits: int) -> tuple[torch.Tensor, Grid]:
    """Eq. 1-2: ``round(W/q)·q``, ``q = max|W|/(2^(b-1)-1)``; 2^b - 1 levels including zero."""
    k_max = _levels(bits)
    w = w.detach()
    q = float(w.abs().max()) / k_max if w.numel() else 0.0
    if q == 0.0:
        return torch.zeros_like(w), Grid(0.0, 0.0, 1, k_max)
    return torch.round(w / q) * q, Grid(q, 0.0, 1, k_max)


def quantize_offset(w: torch.Tensor, bits: int, beta: float) -> tuple[torch.Tensor, Grid]:
    """Eq. 4-5 read as a dead-zone quantizer of pruned weights (see the module docstring).

    Zeros stay zero; a non-zero ``W`` becomes ``sign(W)·(β + round((|W|-β)/q')·q')``, clipped to
    ``k <= 2^(b-1)-1``, with ``q' = (max|W| - β)/(2^(b-1)-1)``. Expects ``|W| >= β`` where ``W != 0``.
    """
    k_max = _levels(bits)
    w = w.detach()
    wmax = float(w.abs().max()) if w.numel() else 0.0
    nonzero = w != 0
    if wmax == 0.0:
        return torch.zeros_like(w), Grid(0.0, 0.0, 0, k_max)
    step = (wmax - beta) / k_max
    if step <= 0.0:  # every kept weight equals β in magnitude: a single level per sign
        return torch.sign(w) * wmax, Grid(0.0, wmax, 0, 0)
    k = torch.clamp(torch.round((w.abs() - beta) / step), 0, k_max)
    return torch.where(nonzero, torch.sign(w) * (beta + k * step), torch.zeros_like(w)), Grid(
        step, beta, 0, k_max
    )


LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class PruneQuantSchedule:
    """Base class: masks, latent-weight swapping and the training-loop protocol.

    A training loop calls, for each mini-batch, ``loss = schedule.step(model, optimizer, loss_fn, xb,
    yb, epoch, n_epochs)`` (``epoch`` counts from 0; the schedule does zero_grad/forward/backward/step
    itself) and at the end ``schedule.finalize(model)``, which writes the final pruned and quantized
    values into the weights as plain floats.
    """

    name = "base"

    def __init__(self, gamma: float, bits: int, layers: Iterable[str] | None = None):
        try:
            ok = math.isfinite(float(gamma)) and float(gamma) >= 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ConfigError(f"gamma must be a finite number >= 0 (got {gamma!r})")
        _levels(bits)
        self.gamma = float(gamma)
        self.bits = int(bits)
        self.layer_names = None if layers is None else list(layers)
        #: keep-masks by layer name (True = kept); filled on the first ``step``
        self.masks: dict[str, torch.Tensor] = {}
        #: per-layer grids of the final weights; filled by ``finalize``
        self.grids: dict[str, Grid] = {}
        self.thresholds: dict[str, float] = {}
        self._layers: dict[str, nn.Module] | None = None

    # -- helpers ---------------------------------------------------------------------------------
    def layers(self, model: nn.Module) -> dict[str, nn.Module]:
        if self._layers is None:
            self._layers = weight_layers(model, self.layer_names)
            if not self._layers:
                raise ConfigError(
                    "the model has no Conv1d/Conv2d/Conv3d/ConvTranspose3d/Linear layer to compress"
                )
            for n, m in self._layers.items():
                if n not in self.masks:
                    self.masks[n] = torch.ones_like(m.weight, dtype=torch.bool)
        return self._layers

    def _prune(self, name: str, w: torch.Tensor) -> torch.Tensor:
        """Eq. 3 on ``w`` with β = γσ(w); merge into the cumulative mask and return it."""
        beta = gamma_sigma(w, self.gamma)
        self.thresholds[name] = beta
        self.masks[name] &= prune_mask(w, beta)
        return self.masks[name]

    @torch.no_grad()
    def _apply_masks(self, model: nn.Module) -> None:
        for n, m in self.layers(model).items():
            m.weight.mul_(self.masks[n])

    def _forward_backward(
        self, model, optimizer, loss_fn, xb, yb, forward_weights: dict[str, torch.Tensor] | None
    ) -> float:
        """Forward/backward with ``forward_weights`` swapped in; gradients land on the latent weights."""
        layers = self.layers(model)
        latent = {}
        if forward_weights:
            with torch.no_grad():
                for n, w in forward_weights.items():
                    latent[n] = layers[n].weight.detach().clone()
                    layers[n].weight.copy_(w)
        try:
            optimizer.zero_grad(set_to_none=False)
            loss = loss_fn(model(xb), yb)
            loss.backward()
        finally:
            with torch.no_grad():
                for n, w in latent.items():
                    layers[n].weight.copy_(w)
        with torch.no_grad():
            for n, m in layers.items():
                if m.weight.grad is not None:
                    m.weight.grad.mul_(self.masks[n])  # pruned weights get no update
        return float(loss.detach())

    def _update(self, model, optimizer) -> None:
        optimizer.step()
        self._apply_masks(model)  # momentum / Adam state would otherwise move pruned weights

    def density(self) -> float:
        """Fraction of kept (unpruned) weights over the managed layers, from the masks."""
        total = sum(m.numel() for m in self.masks.values())
        return sum(int(m.sum()) for m in self.masks.values()) / total if total else 1.0

    # -- protocol --------------------------------------------------------------------------------
    def step(self, model, optimizer, loss_fn: LossFn, xb, yb, epoch: int, n_epochs: int) -> float:
        raise NotImplementedError

    def _final_weights(self, name: str, w: torch.Tensor) -> tuple[torch.Tensor, Grid]:
        raise NotImplementedError

    @torch.no_grad()
    def finalize(self, model: nn.Module) -> dict:
        """Write the final compressed weights (layers marked ``grid_bits``); return a per-layer report."""
        report = {}
        for n, m in self.layers(model).items():
            c, grid = self._final_weights(n, m.weight.detach())
            m.weight.copy_(c)
            setattr(m, GRID_BITS, self.bits)
            self.grids[n] = grid
            report[n] = {
                "n_weights": m.weight.numel(),
                "nonzero": int((c != 0).sum()),
                "beta": self.thresholds.get(n),
                "grid": grid.as_dict(),
            }
        return {
            "schedule": self.name,
            "gamma": self.gamma,
            "bits": self.bits,
            "density": sum(r["nonzero"] for r in report.values())
            / sum(r["n_weights"] for r in report.values()),
            "layers": report,
        }

    def state_dict(self) -> dict:
        return {
            "name": self.name,
            "gamma": self.gamma,
            "bits": self.bits,
            "layers": self.layer_names,
            "masks": {n: m.clone() for n, m in self.masks.items()},
            "thresholds": dict(self.thresholds),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore masks and thresholds (a resumed fine-tune: ``train.fit(step_state=...)``)."""
        self.masks = {n: m.clone().bool() for n, m in state["masks"].items()}
        self.thresholds = dict(state["thresholds"])


class QThenPIter(PruneQuantSchedule):
    """Q->P iteration (eq. 6), the paper's proposal.

    Per mini-batch: quantize a copy of W(n); forward/backward/update; prune that quantized copy
    (``P(Q(W(n)))``, β from σ of W(n)); forward/backward again; update again. Returns the second loss.
    """

    name = "q_then_p_iter"

    def step(self, model, optimizer, loss_fn, xb, yb, epoch, n_epochs):
        layers = self.layers(model)
        quantized, betas = {}, {}
        for n, m in layers.items():
            quantized[n], _ = quantize_uniform(m.weight, self.bits)
            betas[n] = gamma_sigma(m.weight, self.gamma)
        self._forward_backward(model, optimizer, loss_fn, xb, yb, quantized)
        self._update(model, optimizer)
        compressed = {}
        for n, qw in quantized.items():
            self.thresholds[n] = betas[n]
            self.masks[n] &= prune_mask(qw, betas[n])
            compressed[n] = qw * self.masks[n]
        loss = self._forward_backward(model, optimizer, loss_fn, xb, yb, compressed)
        self._update(model, optimizer)
        return loss

    def _final_weights(self, name, w):
        qw, grid = quantize_uniform(w, self.bits)
        beta = gamma_sigma(w, self.gamma)
        self.thresholds[name] = beta
        self.masks[name] &= prune_mask(qw, beta)
        return qw * self.masks[name], grid


class PThenQIter(PruneQuantSchedule):
    """P->Q iteration (eq. 4-5): per mini-batch prune W (β = γσ), quantize the survivors with q'
    (:func:`quantize_offset`), one forward/backward/update on that copy."""

    name = "p_then_q_iter"

    def _compress(self, name, w):
        mask = self._prune(name, w)
        return quantize_offset(w * mask, self.bits, self.thresholds[name])

    def step(self, model, optimizer, loss_fn, xb, yb, epoch, n_epochs):
        compressed = {n: self._compress(n, m.weight)[0] for n, m in self.layers(model).items()}
        self._apply_masks(model)
        loss = self._forward_backward(model, optimizer, loss_fn, xb, yb, compressed)
        self._update(model, optimizer)
        return loss

    def _final_weights(self, name, w):
        return self._compress(name, w)


class PThenQEpochs(PruneQuantSchedule):
    """Conventional P->Q epochs (the paper's eq. 7-8 switches, after Han et al.).

    Epochs ``e`` with ``2(e+1) <= n_epochs`` (the first half, 1-based ``e+1 <= G/2``) prune; the rest
    quantize (eq. 1-2, masks kept). Each action is applied to the weights themselves on the first
    mini-batch of the epoch only; the other mini-batches train the float weights with the masks
    held. The weights are therefore float between actions; ``finalize`` quantizes once more (and
    prunes first if no pruning epoch ever ran, e.g. ``n_epochs == 1``).
    """

    name = "p_then_q_epochs"

    def __init__(self, gamma, bits, layers=None):
        super().__init__(gamma, bits, layers)
        self._epoch_seen: int | None = None
        self.pruned_once = False

    @staticmethod
    def phase(epoch: int, n_epochs: int) -> str:
        """``"prune"`` or ``"quantize"`` for a 0-based epoch."""
        return "prune" if 2 * (epoch + 1) <= n_epochs else "quantize"

    @torch.no_grad()
    def _act(self, model, phase):
        for n, m in self.layers(model).items():
            if phase == "prune":
                m.weight.mul_(self._prune(n, m.weight))
            else:
                m.weight.copy_(quantize_uniform(m.weight * self.masks[n], self.bits)[0])
        self.pruned_once |= phase == "prune"

    def step(self, model, optimizer, loss_fn, xb, yb, epoch, n_epochs):
        self.layers(model)
        if epoch != self._epoch_seen:  # first mini-batch of this epoch: SW1 = A
            self._epoch_seen = epoch
            self._act(model, self.phase(epoch, n_epochs))
        loss = self._forward_backward(model, optimizer, loss_fn, xb, yb, None)
        self._update(model, optimizer)
        return loss

    def _final_weights(self, name, w):
        if not self.pruned_once:
            w = w * self._prune(name, w)
        return quantize_uniform(w * self.masks[name], self.bits)

    def finalize(self, model):
        report = super().finalize(model)
        self.pruned_once = True
        return report

    def state_dict(self) -> dict:
        return super().state_dict() | {"pruned_once": self.pruned_once}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.pruned_once = bool(state["pruned_once"])


SCHEDULES = {cls.name: cls for cls in (QThenPIter, PThenQIter, PThenQEpochs)}


def make_schedule(
    name: str, gamma: float, bits: int, layers: Iterable[str] | None = None
) -> PruneQuantSchedule:
    """Build a schedule by name: ``q_then_p_iter``, ``p_then_q_iter`` or ``p_then_q_epochs``.

    ``layers`` names the Conv/Linear modules to compress (default: all of them).
    """
    if name not in SCHEDULES:
        raise ConfigError(f"unknown pruning schedule {name!r}; known: {sorted(SCHEDULES)}")
    return SCHEDULES[name](gamma, bits, layers)
