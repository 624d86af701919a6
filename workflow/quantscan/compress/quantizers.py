"""QKeras quantizers re-implemented in PyTorch (reference: shared/reference/compression.md section 1).

Forward values and straight-through gradients follow QKeras (``qkeras/quantizers.py`` after commit
f264a43), with three deliberate differences:

- powers of two are computed in floating point, so 31- and 32-bit quantizers stay finite (QKeras
  computes ``2**bits`` in int32 and returns NaN at 32 bits);
- data-dependent scales (``alpha='auto'``/``'auto_po2'``) are per output channel along PyTorch's axis 0
  (``[cout, cin, k...]``) instead of Keras' last axis; rank-1 tensors (biases) get one scale for the
  whole tensor, exactly as QKeras does (it reduces a rank-1 tensor over axis 0);
- ``quantized_bits(1, alpha='auto')`` has no levels (QKeras silently outputs all zeros); it is rejected
  with a pointer to ``binary(alpha='auto')``.

Class names are QKeras' lowercase ones, so a spec string reads the same in both libraries.
Weight quantizers (``quantized_bits``, ``binary``, ``ternary``) also split their output into integer
codes and dequantization parameters (``export`` / ``dequantize``). The forward pass is literally
``dequantize(export(x))``, so a model rebuilt from stored codes reproduces the fake-quantized model
bit for bit.
"""

from __future__ import annotations

import ast
import inspect
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from ..errors import ConfigError

#: Keras ``K.epsilon()``: QKeras adds it inside every least-squares scale and log2.
EPS = 1e-7
_LN2 = math.log(2.0)
_ALPHAS = (None, "auto", "auto_po2")
#: spellings of "no quantizer"
FLOAT_SPECS = ("fp32", "float32", "float", "none")


@dataclass
class QuantizedTensor:
    """A quantized tensor as stored: unsigned integer codes plus what is needed to dequantize them."""

    codes: torch.Tensor  #: int64, same shape as the input, values in ``[0, 2**bits)``
    bits: int  #: storage width of one code
    params: dict[str, torch.Tensor] = field(default_factory=dict)  #: e.g. per-channel ``scale``
    po2: frozenset[str] = frozenset()  #: names of params that are exact powers of two
    dtype: torch.dtype = torch.float32  #: dtype of the dequantized tensor


# --------------------------------------------------------------------------------------------------
# helpers


def _ste(x: torch.Tensor, xq: torch.Tensor, qnoise_factor: float = 1.0) -> torch.Tensor:
    """QKeras ``x + stop_gradient(qnoise*(xq - x))``: value of ``xq``, gradient of ``x``.

    With qnoise 1 the sum is reordered so the forward value is exactly ``xq`` (``x + (xq - x)`` can be
    one ulp off), which is what lets packed models match the fake-quantized ones bit for bit.
    """
    if qnoise_factor == 1.0:
        return xq.detach() + (x - x.detach())
    return x + (qnoise_factor * (xq - x)).detach()


def _round_through(x: torch.Tensor) -> torch.Tensor:
    """``torch.round`` (half to even, like ``tf.round``) with an identity gradient."""
    return torch.round(x).detach() + (x - x.detach())


def _reduce_axes(x: torch.Tensor) -> tuple[int, ...]:
    """Axes to reduce for per-channel scales: all but axis 0; a rank-1 tensor gets one scale."""
    return tuple(range(1, x.ndim)) if x.ndim > 1 else (0,)


def _po2(scale: torch.Tensor) -> torch.Tensor:
    """QKeras' snap to a power of two: ``2**round(log(scale + eps) / log(2))``."""
    return torch.exp2(torch.round(torch.log(scale + EPS) / _LN2))


def _ls_scale(x: torch.Tensor, q: torch.Tensor, alpha: str) -> torch.Tensor:
    """QKeras ``_get_scale``: least-squares ``mean(x*q)/(mean(q*q)+eps)`` per channel, po2 if asked."""
    axes = _reduce_axes(x)
    scale = (x * q).mean(dim=axes, keepdim=True) / ((q * q).mean(dim=axes, keepdim=True) + EPS)
    return _po2(scale) if alpha == "auto_po2" else scale


def _check_int(name: str, value, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
    return value


def _check_flag(name: str, value) -> bool:
    if value not in (0, 1) or not isinstance(value, int | bool):
        raise ConfigError(f"{name} must be 0/1 or False/True, got {value!r}")
    return bool(value)


def _check_alpha(value, allowed=_ALPHAS):
    if value not in allowed or not (value is None or isinstance(value, str)):
        raise ConfigError(f"alpha must be one of {allowed}, got {value!r}")
    return value


def _check_qnoise(value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise ConfigError(f"qnoise_factor must be a number in [0, 1], got {value!r}")
    return float(value)


# --------------------------------------------------------------------------------------------------
# base classes


class Quantizer:
    """A stateless callable ``x -> fake-quantized x``. ``spec`` round-trips through ``parse_quantizer``."""

    name: str = ""
    bits: int = 32  #: bits per stored element (used for accounting)
    #: the nonlinearity the quantizer computes itself ("relu", "sigmoid") or None for a plain quantizer
    nonlinearity: str | None = None
    #: True when the output depends on per-tensor statistics (``alpha='auto'``): weights only
    data_dependent: bool = False

    @property
    def spec(self) -> str:
        raise NotImplementedError

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.spec

    def __eq__(self, other) -> bool:
        return isinstance(other, Quantizer) and other.spec == self.spec

    def __hash__(self) -> int:
        return hash(self.spec)


class WeightQuantizer(Quantizer):
    """A quantizer whose output is ``dequantize(export(x))``: storable as integer codes."""

    n_levels: int = 2
    qnoise_factor: float = 1.0  #: QKeras gradual quantization: 0 = float, 1 = fully quantized

    @property
    def code_bits(self) -> int:
        """Width that holds every code (``ceil(log2(n_levels))``)."""
        return max(1, (self.n_levels - 1).bit_length())

    def export(self, x: torch.Tensor) -> QuantizedTensor:
        """Integer codes and dequantization parameters of ``x`` (no gradient)."""
        with torch.no_grad():
            return self._export(x.detach())

    def _export(self, x: torch.Tensor) -> QuantizedTensor:
        raise NotImplementedError

    def dequantize(self, q: QuantizedTensor) -> torch.Tensor:
        raise NotImplementedError

    def _surrogate(self, x: torch.Tensor) -> torch.Tensor:
        """The differentiable function whose gradient the STE passes (identity by default)."""
        return x

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        xq = self.dequantize(self.export(x))
        return _ste(self._surrogate(x), xq, self.qnoise_factor)


# --------------------------------------------------------------------------------------------------
# weight quantizers


class quantized_bits(WeightQuantizer):
    """Fixed point with ``bits`` bits, ``integer`` of them left of the point; optional auto scale.

    alpha=None: ``m_i * clip(round(x*m/m_i), keep_negative*(-m+symmetric), m-1) / m`` with
    ``m = 2**(bits-keep_negative)``, ``m_i = 2**integer``, round half to even; bits=1 is sign (0 -> +1).
    alpha='auto': per-channel ``scale = max|x| / (2**(bits-1)-1)``, output ``scale*z`` with
    ``z = sign(x)*min(floor(|x|/scale + 0.5), 2**(bits-1)-1)``; 'auto_po2' snaps the scale to a power
    of two and refines it by 5 least-squares rounds. Gradient: identity (no clip mask).
    """

    name = "quantized_bits"

    def __init__(
        self,
        bits: int = 8,
        integer: int = 0,
        symmetric: int = 0,
        keep_negative: bool = True,
        alpha: str | None = None,
        *,
        qnoise_factor: float = 1.0,
    ):
        self.bits = _check_int("bits", bits, 1, 32)
        self.integer = _check_int("integer", integer, -32, 32)
        self.symmetric = int(_check_flag("symmetric", symmetric))
        self.keep_negative = _check_flag("keep_negative", keep_negative)
        self.alpha = _check_alpha(alpha)
        self.qnoise_factor = _check_qnoise(qnoise_factor)
        self.data_dependent = alpha is not None
        if alpha is not None:
            self.symmetric = 1  # QKeras: "auto*" |-> symmetric
            if bits == 1:
                raise ConfigError(
                    "quantized_bits(1, alpha=...) has no levels (QKeras outputs all zeros); "
                    "use binary(alpha='auto') for 1-bit weights"
                )
            self._half = 2 ** (bits - 1) - 1  # largest |z|
            self.n_levels = 2 * self._half + 1
        else:
            ub = bits - int(self.keep_negative)
            if ub == 0:  # sign
                self._lo, self._hi = -1, 1
                self.n_levels = 2
            else:
                m = 2**ub
                self._lo = int(self.keep_negative) * (-m + self.symmetric)
                self._hi = m - 1
                self.n_levels = self._hi - self._lo + 1
            self._ub = ub

    @property
    def spec(self) -> str:
        parts = [str(self.bits), str(self.integer), str(self.symmetric)]
        if not self.keep_negative:
            parts.append("keep_negative=False")
        if self.alpha is not None:
            parts.append(f"alpha={self.alpha!r}")
        if self.qnoise_factor != 1.0:
            parts.append(f"qnoise_factor={self.qnoise_factor!r}")
        return f"quantized_bits({', '.join(parts)})"

    @property
    def step(self) -> float:
        """Grid step for alpha=None: ``2**(integer - bits + keep_negative)``."""
        return 2.0 ** (self.integer - self._ub)

    def _export(self, x: torch.Tensor) -> QuantizedTensor:
        if self.alpha is None:
            if self._ub == 0:
                codes = (x >= 0).to(torch.int64)  # sign with 0 -> +1; code 1 is +1
                return QuantizedTensor(codes, 1, dtype=x.dtype)
            # m/m_i is a power of two, so x*(m/m_i) equals QKeras' x*m/m_i exactly
            c = torch.round(x * (2.0**self._ub / 2.0**self.integer))
            # clip in float (tames inf), then exactly in int64: float32 cannot hold 2**31 - 1
            c = c.clamp(self._lo, self._hi).to(torch.int64).clamp(self._lo, self._hi)
            return QuantizedTensor(c - self._lo, self.code_bits, dtype=x.dtype)
        half = float(self._half)
        axes = _reduce_axes(x)
        scale = x.abs().amax(dim=axes, keepdim=True) / half
        if self.alpha == "auto":
            z = self._z(x, scale, half)
        else:
            scale = _po2(scale)
            for _ in range(5):
                # as in QKeras, the output pairs the last z with the scale fitted to it
                z = self._z(x, scale, half)
                scale = _ls_scale(x, z, "auto_po2")
        codes = (z + half).to(torch.int64)
        po2 = frozenset({"scale"}) if self.alpha == "auto_po2" else frozenset()
        return QuantizedTensor(codes, self.code_bits, {"scale": scale}, po2, x.dtype)

    @staticmethod
    def _z(x: torch.Tensor, scale: torch.Tensor, half: float) -> torch.Tensor:
        # round half away from zero; where() rather than minimum() so 0/0 (all-zero channel) -> 0
        v = torch.floor(x.abs() / scale + 0.5)
        return torch.sign(x) * torch.where(v < half, v, half)

    def dequantize(self, q: QuantizedTensor) -> torch.Tensor:
        if self.alpha is None:
            if self._ub == 0:
                return (2 * q.codes - 1).to(q.dtype)
            return (q.codes + self._lo).to(q.dtype) * self.step
        return q.params["scale"] * (q.codes - self._half).to(q.dtype)


class binary(WeightQuantizer):
    """``sign(x)`` with 0 -> +1 (``{0, 1}`` with ``use_01``), times a scale.

    alpha=None: scale 1, gradient through ``tanh(x)``. alpha='auto': per-channel least-squares scale
    ``mean(x*k)/mean(k*k)`` (= mean|x|, as in BWN/XNOR); 'auto_po2' snaps it; identity gradient.
    """

    name = "binary"
    bits = 1
    n_levels = 2

    def __init__(self, use_01: bool = False, alpha: str | None = None):
        self.use_01 = _check_flag("use_01", use_01)
        self.alpha = _check_alpha(alpha)
        self.data_dependent = alpha is not None

    @property
    def spec(self) -> str:
        parts = []
        if self.use_01:
            parts.append("use_01=True")
        if self.alpha is not None:
            parts.append(f"alpha={self.alpha!r}")
        return f"binary({', '.join(parts)})"

    def _k(self, codes: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return codes.to(dtype) if self.use_01 else (2 * codes - 1).to(dtype)

    def _export(self, x: torch.Tensor) -> QuantizedTensor:
        codes = (x >= 0).to(torch.int64)
        if self.alpha is None:
            return QuantizedTensor(codes, 1, dtype=x.dtype)
        scale = _ls_scale(x, self._k(codes, x.dtype), self.alpha)
        po2 = frozenset({"scale"}) if self.alpha == "auto_po2" else frozenset()
        return QuantizedTensor(codes, 1, {"scale": scale}, po2, x.dtype)

    def dequantize(self, q: QuantizedTensor) -> torch.Tensor:
        k = self._k(q.codes, q.dtype)
        return k if self.alpha is None else q.params["scale"] * k

    def _surrogate(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x) if self.alpha is None else x


class ternary(WeightQuantizer):
    """``{-1, 0, +1}`` times a scale.

    alpha=None (activations): ``[|x| >= threshold]*sign(x)``, threshold 0.33 by default, gradient
    through ``tanh(x)``. alpha='auto'/'auto_po2' (weights, TWN approximation): per-channel
    ``scale = 2*max|x|/3``, then ``number_of_unrolls`` rounds of ``q = [|scale*round(x/scale)| >=
    scale/2]*sign(x)``, ``scale = mean(x*q)/mean(q*q)``; identity gradient.
    """

    name = "ternary"
    bits = 2
    n_levels = 3

    def __init__(
        self, alpha: str | None = None, threshold: float | None = None, number_of_unrolls: int = 5
    ):
        self.alpha = _check_alpha(alpha)
        if threshold is not None and (
            isinstance(threshold, bool) or not isinstance(threshold, int | float) or threshold < 0
        ):
            raise ConfigError(f"threshold must be a non-negative number or None, got {threshold!r}")
        if alpha is not None and threshold is not None:
            raise ConfigError(
                "ternary with alpha='auto*' computes its own threshold; drop threshold"
            )
        self.threshold = None if threshold is None else float(threshold)
        self.number_of_unrolls = _check_int("number_of_unrolls", number_of_unrolls, 1, 100)
        self.data_dependent = alpha is not None

    @property
    def spec(self) -> str:
        parts = []
        if self.alpha is not None:
            parts.append(f"alpha={self.alpha!r}")
        if self.threshold is not None:
            parts.append(f"threshold={self.threshold!r}")
        if self.number_of_unrolls != 5:
            parts.append(f"number_of_unrolls={self.number_of_unrolls}")
        return f"ternary({', '.join(parts)})"

    def _export(self, x: torch.Tensor) -> QuantizedTensor:
        sign = torch.sign(x)
        if self.alpha is None:
            thr = 0.33 if self.threshold is None else self.threshold
            q = (x.abs() >= thr).to(x.dtype) * sign
            return QuantizedTensor((q + 1).to(torch.int64), 2, dtype=x.dtype)
        scale = 2.0 * x.abs().amax(dim=_reduce_axes(x), keepdim=True) / 3.0
        if self.alpha == "auto_po2":
            scale = _po2(scale)
        for _ in range(self.number_of_unrolls):
            v = scale * torch.round(x / scale)
            q = (v.abs() >= scale / 2.0).to(x.dtype) * sign
            scale = _ls_scale(x, q, self.alpha)
        po2 = frozenset({"scale"}) if self.alpha == "auto_po2" else frozenset()
        return QuantizedTensor((q + 1).to(torch.int64), 2, {"scale": scale}, po2, x.dtype)

    def dequantize(self, q: QuantizedTensor) -> torch.Tensor:
        t = (q.codes - 1).to(q.dtype)
        return t if self.alpha is None else q.params["scale"] * t

    def _surrogate(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x) if self.alpha is None else x


# --------------------------------------------------------------------------------------------------
# activation quantizers


class quantized_relu(Quantizer):
    """ReLU quantized to ``bits`` bits (``integer`` of them integer): ``m_i*clip(round(x*m/m_i)/m, 0,
    1-1/m)`` with ``m = 2**bits``. Gradient: ReLU clipped at ``m_i - 2**(integer-bits)``, i.e. 0 below
    0 and above the clip.
    """

    name = "quantized_relu"
    nonlinearity = "relu"

    def __init__(self, bits: int = 8, integer: int = 0, *, qnoise_factor: float = 1.0):
        self.bits = _check_int("bits", bits, 1, 32)
        self.integer = _check_int("integer", integer, -32, 32)
        self.qnoise_factor = _check_qnoise(qnoise_factor)

    @property
    def spec(self) -> str:
        extra = f", qnoise_factor={self.qnoise_factor!r}" if self.qnoise_factor != 1.0 else ""
        return f"quantized_relu({self.bits}, {self.integer}{extra})"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        m = 2.0**self.bits
        m_i = 2.0**self.integer
        top = m_i - 2.0 ** (self.integer - self.bits)
        x_u = torch.where(x <= top, torch.relu(x), torch.full_like(x, top))
        with torch.no_grad():
            xq = m_i * torch.clamp(torch.round(x * (m / m_i)) / m, 0.0, 1.0 - 1.0 / m)
        return _ste(x_u, xq, self.qnoise_factor)


class quantized_sigmoid(Quantizer):
    """Sigmoid quantized to ``bits`` bits: ``clip(round(s(x)*m)/m, symmetric/m, 1-1/m)``, ``m = 2**bits``.

    ``s`` is QKeras' default hard sigmoid ``clip(0.5x + 0.5, 0, 1)`` unless ``use_real_sigmoid``.
    Gradient: that of ``s`` through a straight-through round, zero where the output is clipped.
    """

    name = "quantized_sigmoid"
    nonlinearity = "sigmoid"

    def __init__(self, bits: int = 8, symmetric: bool = False, use_real_sigmoid: bool = False):
        self.bits = _check_int("bits", bits, 1, 32)
        self.symmetric = _check_flag("symmetric", symmetric)
        self.use_real_sigmoid = _check_flag("use_real_sigmoid", use_real_sigmoid)

    @property
    def spec(self) -> str:
        parts = [str(self.bits)]
        if self.symmetric:
            parts.append("symmetric=True")
        if self.use_real_sigmoid:
            parts.append("use_real_sigmoid=True")
        return f"quantized_sigmoid({', '.join(parts)})"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        m = 2.0**self.bits
        p = torch.sigmoid(x) if self.use_real_sigmoid else torch.clamp(0.5 * x + 0.5, 0.0, 1.0)
        return torch.clamp(_round_through(p * m) / m, float(self.symmetric) / m, 1.0 - 1.0 / m)


# --------------------------------------------------------------------------------------------------
# parser

QUANTIZERS: dict[str, type[Quantizer]] = {
    cls.name: cls for cls in (quantized_bits, quantized_relu, quantized_sigmoid, binary, ternary)
}


def parse_quantizer(spec) -> Quantizer | None:
    """A quantizer from a QKeras-style string, a ``{"name": ..., **kwargs}`` dict, or None.

    ``None`` and ``"fp32"`` (also "float32", "float", "none") mean no quantization and return None.
    Strings are parsed with ``ast`` and only literal arguments are accepted: nothing is evaluated.
    Raises ConfigError naming the spec when it is invalid.
    """
    if spec is None or isinstance(spec, Quantizer):
        return spec
    if isinstance(spec, str):
        if spec.strip().lower() in FLOAT_SPECS:
            return None
        name, args, kwargs = _parse_string(spec)
    elif isinstance(spec, Mapping):
        kwargs = dict(spec)
        name = kwargs.pop("name", None)
        args = ()
        if not isinstance(name, str) or not all(isinstance(k, str) for k in kwargs):
            raise ConfigError(f"invalid quantizer spec {spec!r}: need a string 'name' key")
        if name.lower() in FLOAT_SPECS and not kwargs:
            return None
    else:
        raise ConfigError(f"invalid quantizer spec {spec!r}: expected a string, a dict or None")
    cls = QUANTIZERS.get(name)
    if cls is None:
        raise ConfigError(
            f"invalid quantizer spec {spec!r}: unknown quantizer {name!r}; known: {sorted(QUANTIZERS)}"
        )
    try:
        inspect.signature(cls).bind(*args, **kwargs)
    except TypeError as err:
        raise ConfigError(f"invalid quantizer spec {spec!r}: {err}") from None
    try:
        return cls(*args, **kwargs)
    except ConfigError as err:
        raise ConfigError(f"invalid quantizer spec {spec!r}: {err}") from None


def _parse_string(spec: str) -> tuple[str, tuple, dict]:
    try:
        node = ast.parse(spec.strip(), mode="eval").body
    except SyntaxError:
        raise ConfigError(
            f"invalid quantizer spec {spec!r}: not a call like 'quantized_bits(4)'"
        ) from None
    if isinstance(node, ast.Name):
        return node.id, (), {}
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        raise ConfigError(f"invalid quantizer spec {spec!r}: not a call like 'quantized_bits(4)'")
    try:
        args = tuple(ast.literal_eval(a) for a in node.args)
        kwargs = {}
        for kw in node.keywords:
            if kw.arg is None:
                raise ValueError("**kwargs")
            kwargs[kw.arg] = ast.literal_eval(kw.value)
    except ValueError:
        raise ConfigError(f"invalid quantizer spec {spec!r}: arguments must be literals") from None
    return node.func.id, args, kwargs


def quantizer_spec(q: Quantizer | None) -> str | None:
    """Canonical spec string of a quantizer, None for none."""
    return None if q is None else q.spec


__all__ = [
    "EPS",
    "QUANTIZERS",
    "QuantizedTensor",
    "Quantizer",
    "WeightQuantizer",
    "binary",
    "parse_quantizer",
    "quantized_bits",
    "quantized_relu",
    "quantized_sigmoid",
    "quantizer_spec",
    "ternary",
]
