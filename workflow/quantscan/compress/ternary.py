"""Trained ternary (TTQ, aTTQ) and DoReFa binary / k-bit weights, as layers swapped in by name.

Methods (shared/reference/compression.md section 3; Vindas et al.):

- **TTQ** (Zhu et al. 2017): ``Δ = t·max|W|``; ``W_t = W_p`` where ``W > Δ``, ``0`` where ``|W| <= Δ``,
  ``-W_n`` where ``W < -Δ``; ``W_p, W_n`` learned per layer.
- **aTTQ** (Vindas et al., eq. 1-2): ``Δ_min = μ + t_min·σ``, ``Δ_max = μ + t_max·σ`` (μ, σ of the
  layer's latent weights, ``t_min <= t_max``); ``W_t = W_l`` below Δ_min, ``0`` in ``[Δ_min, Δ_max]``,
  ``W_r`` above Δ_max; ``W_l, W_r`` learned per layer.
- **DoReFa** (Zhou et al. 2016, tensorpack ``dorefa.py``): k = 1: ``sign(W)·E`` with ``E = mean|W|``
  (per layer, no gradient through E); k > 1: ``2·quantize_k(tanh(W)/(2·max|tanh W|) + 0.5) - 1``;
  activations ``quantize_k(clip(x, 0, 1))``; ``quantize_k(x) = round((2^k-1)·x)/(2^k-1)`` with an
  identity gradient.

Conventions chosen here (the papers leave them open or disagree):

- **Latent weights.** Every layer keeps its float ``weight`` (the latent weights, trained with the
  straight-through rules below) plus its scales as parameters (``w_p``/``w_n`` for TTQ, ``w_l``/``w_r``
  for aTTQ, none for DoReFa): ``state_dict`` holds exactly what training needs. Thresholds and μ, σ are
  recomputed from the latent weights in every forward pass (the statistics move with training, as
  Vindas et al. intend) and carry no gradient. σ is the population std (``unbiased=False``, as prune.py).
- **Levels.** TTQ's ``W_n`` is a positive magnitude (level ``-W_n``); aTTQ's ``W_l, W_r`` are *signed*
  levels (Vindas et al. write ``W_l, W_r ∈ R``), so ``W_l`` is normally negative.
- **Scale gradients = autograd of the forward.** ``dW_p = Σ_{W>Δ} g``, ``dW_n = -Σ_{W<-Δ} g``;
  ``dW_l = Σ_{W<Δ_min} g``, ``dW_r = Σ_{W>Δ_max} g``. TTQ's paper (and TropComplique's code) use
  ``+Σ_{W<-Δ} g`` for W_n, which is the derivative with respect to the signed level ``-W_n``; applied to
  the magnitude it pushes W_n up the loss. We keep the true derivative so any optimizer descends.
- **Latent-weight gradients** (straight-through): ``|level|·g`` outside the zero band (``W_p·g`` and
  ``W_n·g`` for TTQ as in its paper; ``|W_l|·g`` and ``|W_r|·g`` for aTTQ: Vindas et al.'s eq. 2 writes
  ``W_l·g``, which with a signed, negative W_l would reverse the descent direction); inside the band
  ``1·g`` for TTQ and ``0`` for aTTQ (Vindas et al. eq. 2: weights in the band only move when μ, σ move).
- **Scale initialisation** ``init="mean"`` (default): each level starts at the mean of the latent weights
  it replaces (``W_p = mean(W[W>Δ])``, ``W_n = mean(|W[W<-Δ]|)``, ``W_l = mean(W[W<Δ_min])``, ...), the
  least-squares level for the initial assignment, so a layer fine-tuned from fp32 weights starts near
  its float function. ``init="one"`` is TTQ's 1.0 (±1), meant for weights normalised to [-1, 1]; on raw
  weights (|W| ~ 0.01-0.1) it rescales every ternarized layer's output 10-100x, which a few fine-tuning
  epochs cannot undo (a model without batch norm has nothing to absorb it).
- **DoReFa k = 1** maps ``W = 0`` to ``+E`` (tensorpack), so the weights are strictly binary; E and the
  binary levels are per layer (one scale: N_SF = 1). k > 1 has no scale (levels in [-1, 1], N_SF = 0);
  its gradient flows through tanh and through max|tanh W| (tensorpack does not stop it).
- **Which layers.** ``ternarize_model`` takes layer names; the default is every Conv1d/2d/3d,
  ConvTranspose3d and Linear except the first and the last in registration order (= forward order in
  quantscan models), as TTQ does. Thresholds and levels are per layer (the whole tensor), so a
  transposed convolution's ``[in, out, k...]`` layout needs nothing special. Vindas et al. pick layers by Hessian trace: pass ``hessian.select_layers(...)["selected"]``.
  Biases stay fp32 (Vindas et al. quantize weights only).

Accounting: each ternary layer exposes ``effective_weight()`` (what ``compress.metrics`` measures),
``bits`` (2 ternary, 1 binary, k for DoReFa-k) and ``n_scales`` (Vindas et al.'s N_SF: 2, 2, 1, 0);
``ternary_bits`` / ``ternary_n_sf`` give the dicts ``metrics.compression_report`` takes.

Packing: importing this module registers the ``ternary`` codec (effective weights stored through
``export.packed.encode_levels``: a zero mask or gap index plus one bit per non-zero, or 2-bit codes, whichever is
smaller; binary = 1 bit per weight + the scale) and the ``ternary`` model transform, so ``save_packed``
stores a ternarized model compactly and ``load_packed`` rebuilds it with frozen layers whose weights hold
the ternary values (same predictions, bit for bit).
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..export.packed import Codec, decode_levels, encode_levels, register_codec, register_transform
from ..layers.conv1d import Conv1d
from .layers import conv_transpose3d
from .prune import weight_layers

METHODS = ("ttq", "attq", "dorefa")
_INITS = ("mean", "one")


# --------------------------------------------------------------------------------------------------
# functional core


class _Ternarize(torch.autograd.Function):
    """``hi`` above ``thr_hi``, ``lo`` below ``thr_lo``, 0 in between; STE backward (module docstring)."""

    @staticmethod
    def forward(ctx, w, lo, hi, thr_lo, thr_hi, band_grad: float):
        upper = w > thr_hi
        lower = w < thr_lo
        ctx.save_for_backward(upper, lower, lo, hi)
        ctx.band_grad = band_grad
        return torch.where(upper, hi, torch.where(lower, lo, torch.zeros_like(w)))

    @staticmethod
    def backward(ctx, g):
        upper, lower, lo, hi = ctx.saved_tensors
        band = g * ctx.band_grad if ctx.band_grad else torch.zeros_like(g)
        g_w = torch.where(upper, hi.abs() * g, torch.where(lower, lo.abs() * g, band))
        g_lo = (g * lower).sum().reshape(lo.shape)
        g_hi = (g * upper).sum().reshape(hi.shape)
        return g_w, g_lo, g_hi, None, None, None


def ternarize(
    w: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    thr_lo: torch.Tensor | float,
    thr_hi: torch.Tensor | float,
    band_grad: float,
) -> torch.Tensor:
    """The shared ternary op: ``hi`` where ``w > thr_hi``, ``lo`` where ``w < thr_lo``, else 0.

    Gradients: ``|hi|·g`` / ``|lo|·g`` / ``band_grad·g`` to ``w``; ``Σ g`` over each region to the level.
    """
    thr_lo = torch.as_tensor(thr_lo, dtype=w.dtype, device=w.device)
    thr_hi = torch.as_tensor(thr_hi, dtype=w.dtype, device=w.device)
    return _Ternarize.apply(w, lo, hi, thr_lo, thr_hi, float(band_grad))


def ttq_threshold(w: torch.Tensor, t: float) -> torch.Tensor:
    """TTQ's ``Δ = t·max|W|`` (no gradient)."""
    return t * w.detach().abs().max()


def attq_thresholds(
    w: torch.Tensor, t_min: float, t_max: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """aTTQ's ``(μ + t_min·σ, μ + t_max·σ)`` from the layer's weights (population σ, no gradient)."""
    w = w.detach()
    mu, sigma = w.mean(), w.std(unbiased=False)
    return mu + t_min * sigma, mu + t_max * sigma


def ttq(w: torch.Tensor, w_p: torch.Tensor, w_n: torch.Tensor, t: float = 0.05) -> torch.Tensor:
    """TTQ weights ``W_p·[W>Δ] - W_n·[W<-Δ]``, ``Δ = t·max|W|``; band gradient 1."""
    delta = ttq_threshold(w, t)
    return ternarize(w, -w_n, w_p, -delta, delta, 1.0)


def attq(
    w: torch.Tensor, w_l: torch.Tensor, w_r: torch.Tensor, t_min: float, t_max: float
) -> torch.Tensor:
    """aTTQ weights: ``W_l`` below Δ_min, 0 in ``[Δ_min, Δ_max]``, ``W_r`` above; band gradient 0."""
    lo, hi = attq_thresholds(w, t_min, t_max)
    return ternarize(w, w_l, w_r, lo, hi, 0.0)


def _round_ste(x: torch.Tensor) -> torch.Tensor:
    """``torch.round`` (half to even, as tf.round) with an identity gradient; the value is exact."""
    return torch.round(x).detach() + (x - x.detach())


def quantize_k(x: torch.Tensor, k: int) -> torch.Tensor:
    """DoReFa ``round((2^k-1)·x)/(2^k-1)`` with an identity gradient."""
    n = float(2**k - 1)
    return _round_ste(x * n) / n


def dorefa_weight(w: torch.Tensor, k: int = 1) -> torch.Tensor:
    """DoReFa weights: k = 1 ``sign(W)·mean|W|`` (0 -> +, identity gradient); else the tanh form."""
    if k == 1:
        e = w.detach().abs().mean()
        q = torch.where(w.detach() >= 0, e, -e)
        return q + (w - w.detach())
    t = torch.tanh(w)
    m = t.abs().max()
    m = torch.where(m > 0, m, torch.ones_like(m))  # all-zero layer: avoid 0/0
    return 2 * quantize_k(t / (2 * m) + 0.5, k) - 1


def dorefa_activation(x: torch.Tensor, k: int) -> torch.Tensor:
    """DoReFa activations ``quantize_k(clip(x, 0, 1))``: gradient 1 inside [0, 1], 0 outside."""
    return quantize_k(torch.clamp(x, 0.0, 1.0), k)


# --------------------------------------------------------------------------------------------------
# method objects: configuration, scale init and the forward pass


def _number(name: str, value, lo: float = -math.inf, hi: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be in [{lo}, {hi}], got {value!r}")
    return float(value)


def _init_mode(init) -> str:
    if init not in _INITS:
        raise ConfigError(f"init must be one of {_INITS}, got {init!r}")
    return init


def _mean_or(values: torch.Tensor, fallback: float) -> float:
    return float(values.mean()) if values.numel() else fallback


class Ternarizer:
    """A method's hyperparameters; computes a layer's quantized weight from its latent weight."""

    name = ""
    bits = 2
    n_scales = 2
    n_levels = 3  #: distinct values the weight can take (0 included)
    scale_names: tuple[str, ...] = ()
    band_grad = 0.0

    @property
    def spec(self) -> dict:
        raise NotImplementedError

    def init_scales(self, w: torch.Tensor) -> dict[str, float]:
        return {}

    def thresholds(self, w: torch.Tensor) -> tuple[float, float] | None:
        """``(lower, upper)`` edges of the zero band, or None (DoReFa)."""
        return None

    def levels(self, layer) -> tuple[float, float] | None:
        """``(negative-side level, positive-side level)`` as floats, or None (DoReFa k > 1)."""
        return None

    def __call__(self, w: torch.Tensor, layer: nn.Module) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.spec.items() if k != "method")
        return f"{self.name}({args})"


class TTQ(Ternarizer):
    name = "ttq"
    scale_names = ("w_p", "w_n")
    band_grad = 1.0

    def __init__(self, t: float = 0.05, init: str = "mean"):
        self.t = _number("t", t, 0.0, 1.0)
        if self.t >= 1.0:
            raise ConfigError(f"TTQ threshold factor t must be < 1 (Δ = t·max|W|), got {t!r}")
        self.init = _init_mode(init)

    @property
    def spec(self) -> dict:
        return {"method": self.name, "t": self.t, "init": self.init}

    def init_scales(self, w):
        if self.init == "one":
            return {"w_p": 1.0, "w_n": 1.0}
        delta = ttq_threshold(w, self.t)
        fallback = float(w.abs().mean()) or 1.0
        return {
            "w_p": _mean_or(w[w > delta], fallback),
            "w_n": _mean_or(-w[w < -delta], fallback),
        }

    def thresholds(self, w):
        delta = float(ttq_threshold(w, self.t))
        return -delta, delta

    def levels(self, layer):
        return -layer.w_n.item(), layer.w_p.item()

    def __call__(self, w, layer):
        return ttq(w, layer.w_p, layer.w_n, self.t)


class ATTQ(Ternarizer):
    name = "attq"
    scale_names = ("w_l", "w_r")
    band_grad = 0.0

    def __init__(self, t_min: float = -1.0, t_max: float = 0.5, init: str = "mean"):
        self.t_min = _number("t_min", t_min)
        self.t_max = _number("t_max", t_max)
        if self.t_min > self.t_max:
            raise ConfigError(
                f"aTTQ needs t_min <= t_max (got t_min={t_min!r} > t_max={t_max!r}): with Δ_min > "
                "Δ_max no weight falls in the zero band"
            )
        self.init = _init_mode(init)

    @property
    def spec(self) -> dict:
        return {"method": self.name, "t_min": self.t_min, "t_max": self.t_max, "init": self.init}

    def init_scales(self, w):
        if self.init == "one":
            return {"w_l": -1.0, "w_r": 1.0}
        lo, hi = attq_thresholds(w, self.t_min, self.t_max)
        fallback = float(w.abs().mean()) or 1.0
        return {"w_l": _mean_or(w[w < lo], -fallback), "w_r": _mean_or(w[w > hi], fallback)}

    def thresholds(self, w):
        lo, hi = attq_thresholds(w, self.t_min, self.t_max)
        return float(lo), float(hi)

    def levels(self, layer):
        return layer.w_l.item(), layer.w_r.item()

    def __call__(self, w, layer):
        return attq(w, layer.w_l, layer.w_r, self.t_min, self.t_max)


class DoReFa(Ternarizer):
    name = "dorefa"

    def __init__(self, k: int = 1):
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 16:
            raise ConfigError(f"DoReFa weight bits k must be an integer in [1, 16], got {k!r}")
        self.k = k
        self.bits = k
        self.n_scales = 1 if k == 1 else 0
        self.n_levels = 2**k

    @property
    def spec(self) -> dict:
        return {"method": self.name, "k": self.k}

    def levels(self, layer):
        if self.k != 1:
            return None
        e = float(layer.weight.detach().abs().mean())
        return -e, e

    def __call__(self, w, layer):
        return dorefa_weight(w, self.k)


_CLASSES = {cls.name: cls for cls in (TTQ, ATTQ, DoReFa)}


def make_ternarizer(method: str, **params) -> Ternarizer:
    """A method object from its name and hyperparameters (``TTQ(t, init)``, ``ATTQ(t_min, t_max,
    init)``, ``DoReFa(k)``); ConfigError names unknown methods and parameters."""
    cls = _CLASSES.get(method)
    if cls is None:
        raise ConfigError(f"unknown ternary method {method!r}; known: {list(METHODS)}")
    allowed = list(inspect.signature(cls).parameters)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ConfigError(f"{method}: unknown parameter(s) {unknown}; allowed: {allowed}")
    return cls(**params)


def _from_spec(spec) -> Ternarizer:
    if isinstance(spec, Ternarizer):
        return spec
    if not isinstance(spec, Mapping) or not isinstance(spec.get("method"), str):
        raise ConfigError(f"ternary spec must be a mapping with a 'method' string, got {spec!r}")
    params = dict(spec)
    return make_ternarizer(params.pop("method"), **params)


# --------------------------------------------------------------------------------------------------
# layers


class TernaryWeights:
    """Mixin for Conv1d/2d/3d, ConvTranspose3d and Linear: the forward pass uses the method's
    weights.

    ``frozen`` is True when ``weight`` already holds the quantized values (a model from
    ``load_packed``): forward then uses it as it is, and nothing is trained through the method.
    """

    ternarizer: Ternarizer
    frozen: bool = False

    def _setup_ternary(self, ternarizer: Ternarizer, frozen: bool = False) -> None:
        self.ternarizer = ternarizer
        self.frozen = frozen
        with torch.no_grad():
            init = ternarizer.init_scales(self.weight.detach())
        for name in ternarizer.scale_names:
            value = torch.tensor(init[name], dtype=self.weight.dtype, device=self.weight.device)
            self.register_parameter(name, nn.Parameter(value))

    def quantized_weight(self) -> torch.Tensor:
        if self.frozen:
            return self.weight
        return self.ternarizer(self.weight, self)

    def effective_weight(self) -> torch.Tensor:
        """The weights as deployed (ternary / binary / k-bit values, detached)."""
        with torch.no_grad():
            return self.quantized_weight().detach()

    @property
    def bits(self) -> int:
        return self.ternarizer.bits

    @property
    def n_scales(self) -> int:
        return self.ternarizer.n_scales

    def packing_quantizers(self) -> dict:
        """For ``export.packed.save_packed``: the ``weight`` entry is stored by the ``ternary`` codec."""
        return {"weight": _PackHandle(self)}

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, ternary={self.ternarizer!r}, frozen={self.frozen}"

    @classmethod
    def from_float(cls, module: nn.Module, ternarizer, frozen: bool = False):
        """A ternary copy of a float Conv1d/2d/3d, ConvTranspose3d or Linear (same
        hyperparameters and weights)."""
        layer = copy.deepcopy(module)
        _convert(layer, _from_spec(ternarizer), frozen)
        return layer


class TernaryConv1d(TernaryWeights, Conv1d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.quantized_weight(), self.bias)


class TernaryConv2d(TernaryWeights, nn.Conv2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.quantized_weight(), self.bias)


class TernaryConv3d(TernaryWeights, nn.Conv3d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.quantized_weight(), self.bias)


class TernaryConvTranspose3d(TernaryWeights, nn.ConvTranspose3d):
    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:
        return conv_transpose3d(self, x, self.quantized_weight(), self.bias, output_size)


class TernaryLinear(TernaryWeights, nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.quantized_weight(), self.bias)


TERNARY_TO_FLOAT: dict[type, type] = {
    TernaryConv1d: nn.Conv1d,
    TernaryConv2d: nn.Conv2d,
    TernaryConv3d: nn.Conv3d,
    TernaryConvTranspose3d: nn.ConvTranspose3d,
    TernaryLinear: nn.Linear,
}
#: ``layers.conv1d.Conv1d`` (nn.Conv1d with a faster backward) ternarizes like nn.Conv1d
FLOAT_TO_TERNARY = {f: t for t, f in TERNARY_TO_FLOAT.items()} | {Conv1d: TernaryConv1d}

_ACTIVATIONS = {nn.ReLU: "relu", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.Identity: None}
_ACT_FN = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}


class DoReFaActivation(nn.Module):
    """Replaces ReLU/Sigmoid/Tanh/Identity: the original nonlinearity, then ``quantize_k(clip(x,0,1))``."""

    def __init__(self, k: int, activation: str | None = "relu"):
        super().__init__()
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 16:
            raise ConfigError(f"DoReFa activation bits k must be an integer in [1, 16], got {k!r}")
        if activation is not None and activation not in _ACT_FN:
            raise ConfigError(f"unknown activation {activation!r}; known: {sorted(_ACT_FN)}")
        self.k = k
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activation is not None:
            x = _ACT_FN[self.activation](x)
        return dorefa_activation(x, self.k)

    def extra_repr(self) -> str:
        return f"k={self.k}, activation={self.activation}"


def _convert(module: nn.Module, ternarizer: Ternarizer, frozen: bool) -> None:
    # swap the class in place (as layers.quantize_model does): keeps hyperparameters and hooks
    module.__class__ = FLOAT_TO_TERNARY[type(module)]
    module._setup_ternary(ternarizer, frozen)


# --------------------------------------------------------------------------------------------------
# model-level API


def default_layers(model: nn.Module) -> list[str]:
    """Every weight layer (Conv1d/2d/3d, ConvTranspose3d, Linear) except the first and the last
    (registration order), as TTQ."""
    names = list(weight_layers(model))
    return names[1:-1]


def ternary_layers(model: nn.Module) -> dict[str, TernaryWeights]:
    """Ternarized layers by qualified name, in model order."""
    return {n: m for n, m in model.named_modules() if isinstance(m, TernaryWeights)}


def _check_target(name: str, module: nn.Module | None) -> None:
    if isinstance(module, TernaryWeights):
        raise ConfigError(f"layer {name!r} is already ternarized")
    if type(module) not in FLOAT_TO_TERNARY:
        kind = "missing" if module is None else type(module).__name__
        raise ConfigError(
            f"layer {name!r} ({kind}) cannot be ternarized: only plain Conv1d/Conv2d/Conv3d/"
            "ConvTranspose3d/Linear (not already quantized) layers can"
        )


def _apply(model: nn.Module, config: Mapping, frozen: bool) -> nn.Module:
    """Ternarize in place from ``{"weights": {name: spec}, "activations": {name: {"k", ...}}}``."""
    if not isinstance(config, Mapping) or set(config) - {"weights", "activations"}:
        raise ConfigError(f"ternary config must have keys 'weights'/'activations', got {config!r}")
    weights = config.get("weights") or {}
    activations = config.get("activations") or {}
    if not isinstance(weights, Mapping) or not isinstance(activations, Mapping):
        raise ConfigError("ternary config 'weights' and 'activations' must be mappings")
    modules = dict(model.named_modules())
    valid = list(weight_layers(model))
    for name, spec in weights.items():
        if name not in modules:
            raise ConfigError(f"unknown layer {name!r}; weight layers: {valid}")
        _check_target(name, modules[name])
        try:
            _convert(modules[name], _from_spec(spec), frozen)
        except ConfigError as err:
            raise ConfigError(f"layer {name!r}: {err}") from None
    for name, spec in activations.items():
        module = modules.get(name)
        if type(module) not in _ACTIVATIONS:
            acts = [n for n, m in modules.items() if type(m) in _ACTIVATIONS]
            raise ConfigError(f"{name!r} is not a ReLU/Sigmoid/Tanh/Identity module; those: {acts}")
        if not isinstance(spec, Mapping) or set(spec) != {"k"}:
            raise ConfigError(f"activation {name!r}: spec must be {{'k': bits}}, got {spec!r}")
        model.set_submodule(name, DoReFaActivation(spec["k"], _ACTIVATIONS[type(module)]))
    return model


def ternarize_model(
    model: nn.Module,
    method: str,
    layers: Iterable[str] | str | None = None,
    *,
    activations: Mapping[str, int] | None = None,
    **params,
) -> nn.Module:
    """A deep copy of ``model`` with the named weight layers ternarized (or binarized) by ``method``.

    ``method``: "ttq" (``t=0.05, init="mean"``), "attq" (``t_min=-1.0, t_max=0.5, init="mean"``; the
    defaults are Vindas et al.'s Table 1 values for their 9,840-parameter MNIST CNN, a small CNN) or "dorefa"
    (``k=1``). ``layers``: names of Conv1d/2d/3d/ConvTranspose3d/Linear modules, "all", or None for
    :func:`default_layers`. ``activations``: ``{activation module name: k}`` to replace those
    ReLU/Sigmoid/Tanh modules by :class:`DoReFaActivation` (DoReFa's activation quantizer).
    """
    ternarizer = make_ternarizer(method, **params)
    if layers is None:
        names = default_layers(model)
    elif layers == "all":
        names = list(weight_layers(model))
    elif isinstance(layers, str):
        raise ConfigError(f"layers must be a list of names, 'all' or None, got {layers!r}")
    else:
        names = list(layers)
    if not names:
        raise ConfigError(
            f"no layers to ternarize (weight layers: {list(weight_layers(model))}); pass layers="
        )
    if len(set(names)) != len(names):
        raise ConfigError(f"layer names repeat: {names}")
    config = {
        "weights": dict.fromkeys(names, ternarizer.spec),
        "activations": {n: {"k": k} for n, k in (activations or {}).items()},
    }
    return _apply(copy.deepcopy(model), config, frozen=False)


def ternary_config_of(model: nn.Module) -> dict:
    """JSON-able description that :func:`apply_ternary_config` turns back into the same layers
    (``{}`` for a model without ternary layers or DoReFa activations)."""
    weights = {n: m.ternarizer.spec for n, m in ternary_layers(model).items()}
    acts = {n: {"k": m.k} for n, m in model.named_modules() if isinstance(m, DoReFaActivation)}
    if not weights and not acts:
        return {}
    return {"weights": weights, "activations": acts}


def apply_ternary_config(model: nn.Module, config: Mapping, frozen: bool = False) -> nn.Module:
    """A deep copy of a float ``model`` ternarized as ``config`` (from :func:`ternary_config_of`).

    Scales start from ``init``; load a state_dict afterwards to restore trained ones.
    """
    return _apply(copy.deepcopy(model), config, frozen)


def ternary_bits(model: nn.Module) -> dict[str, int]:
    """``{layer: bits per weight}`` of the ternary layers (for ``metrics.compression_report``)."""
    return {n: m.bits for n, m in ternary_layers(model).items()}


def ternary_n_sf(model: nn.Module) -> dict[str, int]:
    """``{layer: number of scale factors}`` (Vindas et al.'s N_SF; for ``metrics.compression_report``)."""
    return {n: m.n_scales for n, m in ternary_layers(model).items()}


def ternary_report(model: nn.Module) -> dict[str, dict]:
    """Per ternary layer: method spec, bits, N_SF, zero-band thresholds, levels and sparsity."""
    out = {}
    for name, m in ternary_layers(model).items():
        w = m.effective_weight()
        nonzero = int(torch.count_nonzero(w))
        thresholds = None if m.frozen else m.ternarizer.thresholds(m.weight.detach())
        out[name] = {
            **m.ternarizer.spec,
            "bits": m.bits,
            "n_scales": m.n_scales,
            "thresholds": None if thresholds is None else list(thresholds),
            "levels": None if m.ternarizer.levels(m) is None else list(m.ternarizer.levels(m)),
            "n_weights": w.numel(),
            "nonzero": nonzero,
            "sparsity": 1.0 - nonzero / w.numel(),
        }
    return out


def to_float(model: nn.Module) -> nn.Module:
    """A deep copy with every ternary layer turned back into its plain torch layer holding the
    effective weights (e.g. for ONNX / int8 export); DoReFa activations stay."""
    model = copy.deepcopy(model)
    for m in ternary_layers(model).values():
        with torch.no_grad():
            w = m.effective_weight().clone()
        for name in m.ternarizer.scale_names:
            delattr(m, name)
        m.__class__ = TERNARY_TO_FLOAT[type(m)]
        for attr in ("ternarizer", "frozen"):
            m.__dict__.pop(attr, None)
        with torch.no_grad():
            m.weight.copy_(w)
    return model


# --------------------------------------------------------------------------------------------------
# packing: codec for the effective weights and the model transform


class _PackHandle:
    """What ``export.packed`` sees as the quantizer of a ternary layer's ``weight``."""

    def __init__(self, layer: TernaryWeights):
        self.layer = layer
        self.name = layer.ternarizer.name
        self.n_levels = layer.ternarizer.n_levels

    @property
    def spec(self) -> str:
        return repr(self.layer.ternarizer)

    def effective(self, latent: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return latent if self.layer.frozen else self.layer.ternarizer(latent, self.layer)


class TernaryCodec(Codec):
    """Effective ternary / binary / DoReFa-k weights via ``export.packed.encode_levels`` (smallest layout)."""

    name = "ternary"

    def encode(self, tensor, quantizer: _PackHandle):
        w = quantizer.effective(tensor.detach().cpu())
        meta, arrays = encode_levels(w)
        return {"m": quantizer.name, **meta}, arrays

    def decode(self, meta, arrays, shape, quantizer: _PackHandle):
        if meta.get("m") != quantizer.name:
            raise ValueError(f"stored by {meta.get('m')!r} but the layer is {quantizer.name!r}")
        meta = {k: v for k, v in meta.items() if k != "m"}
        w = decode_levels(meta, arrays, shape)
        if torch.unique(w).numel() > quantizer.n_levels:
            raise ValueError(f"more than {quantizer.n_levels} distinct values for {quantizer.spec}")
        return w


def _describe(model: nn.Module) -> dict | None:
    return ternary_config_of(model) or None


def _rebuild(model: nn.Module, description) -> nn.Module:
    return _apply(model, description, frozen=True)


register_codec(TernaryCodec(), quantizers=METHODS)
register_transform("ternary", _describe, _rebuild)


__all__ = [
    "ATTQ",
    "FLOAT_TO_TERNARY",
    "METHODS",
    "TTQ",
    "DoReFa",
    "DoReFaActivation",
    "TernaryCodec",
    "TernaryConv1d",
    "TernaryConv2d",
    "TernaryConv3d",
    "TernaryConvTranspose3d",
    "TernaryLinear",
    "TernaryWeights",
    "Ternarizer",
    "apply_ternary_config",
    "attq",
    "attq_thresholds",
    "default_layers",
    "dorefa_activation",
    "dorefa_weight",
    "make_ternarizer",
    "quantize_k",
    "ternarize",
    "ternarize_model",
    "ternary_bits",
    "ternary_config_of",
    "ternary_layers",
    "ternary_n_sf",
    "ternary_report",
    "to_float",
    "ttq",
    "ttq_threshold",
]
