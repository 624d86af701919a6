"""Quantized layers for quantization-aware training, and ``quantize_model`` to swap them in by name.

The quantized layers subclass the torch layers (state_dict keys stay ``weight``/``bias``, and
``isinstance(layer, nn.Conv2d)`` still holds) and fake-quantize kernel and bias in every forward pass.
Quantizers are plain callables, not modules, so they add nothing to the state dict.

Weight layers: Conv1d/2d/3d, ConvTranspose3d and Linear. Data-dependent weight scales are per
output channel: axis 0 of a convolution's or a linear layer's weight (``[out, in, k...]``), axis 1
of a transposed convolution's (``[in, out, k...]``; :class:`OutputChannels` moves that axis to the
front for the quantizer and back), as ONNX Runtime quantizes a ConvTranspose per channel on axis 1.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..layers.conv1d import Conv1d
from .quantizers import (
    QuantizedTensor,
    Quantizer,
    WeightQuantizer,
    parse_quantizer,
    quantizer_spec,
)


class OutputChannels(WeightQuantizer):
    """``inner`` applied with axis ``axis`` of the weight moved to the front, where the
    quantizers keep their per-channel scales, and moved back: codes, scales and values stay in the
    layer's own layout, so a packed file stores them as any other quantized weight. Name, spec,
    bits and levels are ``inner``'s (a layer_config names the quantizer as usual)."""

    def __init__(self, inner: WeightQuantizer, axis: int):
        if isinstance(inner, OutputChannels):
            inner = inner.inner
        self.inner = inner
        self.axis = int(axis)
        for attr in ("name", "bits", "n_levels", "qnoise_factor", "nonlinearity", "data_dependent"):
            setattr(self, attr, getattr(inner, attr))

    @property
    def spec(self) -> str:
        return self.inner.spec

    def _front(self, t: torch.Tensor, ndim: int) -> torch.Tensor:
        return t.movedim(self.axis, 0) if t.ndim == ndim and ndim > self.axis else t

    def _back(self, t: torch.Tensor, ndim: int) -> torch.Tensor:
        return t.movedim(0, self.axis) if t.ndim == ndim and ndim > self.axis else t

    def export(self, x: torch.Tensor) -> QuantizedTensor:
        q = self.inner.export(self._front(x, x.ndim))
        params = {k: self._back(v, x.ndim) for k, v in q.params.items()}
        return QuantizedTensor(self._back(q.codes, x.ndim), q.bits, params, q.po2, q.dtype)

    def dequantize(self, q: QuantizedTensor) -> torch.Tensor:
        n = q.codes.ndim
        inner = QuantizedTensor(
            self._front(q.codes, n),
            q.bits,
            {k: self._front(v, n) for k, v in q.params.items()},
            q.po2,
            q.dtype,
        )
        return self._back(self.inner.dequantize(inner), n).contiguous()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self._back(self.inner(self._front(x, x.ndim)), x.ndim).contiguous()


class QuantizedWeights:
    """Mixin for weight layers: kernel/bias quantizers applied to ``weight``/``bias`` in forward.

    ``weights_quantized`` is True when the stored weights already hold quantized values (a model loaded
    from a packed file): forward then uses them as they are. ``quantize_model`` resets it to False,
    which resumes fake quantization for further training.
    """

    kernel_quantizer: WeightQuantizer | None = None
    bias_quantizer: WeightQuantizer | None = None
    weights_quantized: bool = False

    def quantized_weight(self) -> torch.Tensor:
        if self.kernel_quantizer is None or self.weights_quantized:
            return self.weight
        return self.kernel_quantizer(self.weight)

    def effective_weight(self) -> torch.Tensor:
        """The kernel as deployed (quantized, detached): what ``compress.metrics`` measures."""
        return self.quantized_weight().detach()

    def quantized_bias(self) -> torch.Tensor | None:
        if self.bias is None or self.bias_quantizer is None or self.weights_quantized:
            return self.bias
        return self.bias_quantizer(self.bias)

    def set_quantizers(self, kernel=None, bias=None) -> None:
        """Set kernel and bias quantizers from specs (strings, dicts, Quantizers or None)."""
        self.kernel_quantizer = _weight_quantizer(kernel, "kernel")
        self.bias_quantizer = _weight_quantizer(bias, "bias") if self.bias is not None else None
        self.weights_quantized = False

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, kernel_quantizer={quantizer_spec(self.kernel_quantizer)}, "
            f"bias_quantizer={quantizer_spec(self.bias_quantizer)}"
        )

    @classmethod
    def from_float(cls, module: nn.Module, kernel=None, bias=None):
        """A quantized copy of a float layer (same hyperparameters and weights)."""
        layer = copy.deepcopy(module)
        layer.__class__ = FLOAT_TO_QUANTIZED[type(module)]
        layer.set_quantizers(kernel, bias)
        return layer


def _init_quantized(self, args, kwargs, base):
    kernel = kwargs.pop("kernel_quantizer", None)
    bias = kwargs.pop("bias_quantizer", None)
    base.__init__(self, *args, **kwargs)
    self.set_quantizers(kernel, bias)


class QConv1d(QuantizedWeights, Conv1d):
    def __init__(self, *args, **kwargs):
        _init_quantized(self, args, kwargs, nn.Conv1d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.quantized_weight(), self.quantized_bias())


class QConv2d(QuantizedWeights, nn.Conv2d):
    def __init__(self, *args, **kwargs):
        _init_quantized(self, args, kwargs, nn.Conv2d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.quantized_weight(), self.quantized_bias())


class QConv3d(QuantizedWeights, nn.Conv3d):
    def __init__(self, *args, **kwargs):
        _init_quantized(self, args, kwargs, nn.Conv3d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.quantized_weight(), self.quantized_bias())


def conv_transpose3d(
    layer: nn.ConvTranspose3d, x: torch.Tensor, weight, bias, output_size=None
) -> torch.Tensor:
    """``nn.ConvTranspose3d.forward`` of ``layer`` with the given weight and bias."""
    if layer.padding_mode != "zeros":
        raise ValueError("only 'zeros' padding is supported for ConvTranspose3d")
    output_padding = layer._output_padding(
        x, output_size, layer.stride, layer.padding, layer.kernel_size, 3, layer.dilation
    )
    return F.conv_transpose3d(
        x, weight, bias, layer.stride, layer.padding, output_padding, layer.groups, layer.dilation
    )


class QConvTranspose3d(QuantizedWeights, nn.ConvTranspose3d):
    """A quantized transposed 3-D convolution; kernel scales per output channel (weight axis 1)."""

    def __init__(self, *args, **kwargs):
        _init_quantized(self, args, kwargs, nn.ConvTranspose3d)

    def set_quantizers(self, kernel=None, bias=None) -> None:
        super().set_quantizers(kernel, bias)
        if self.kernel_quantizer is not None:
            self.kernel_quantizer = OutputChannels(self.kernel_quantizer, 1)

    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:
        return conv_transpose3d(
            self, x, self.quantized_weight(), self.quantized_bias(), output_size
        )


class QLinear(QuantizedWeights, nn.Linear):
    def __init__(self, *args, **kwargs):
        _init_quantized(self, args, kwargs, nn.Linear)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.quantized_weight(), self.quantized_bias())


QUANTIZED_TO_FLOAT: dict[type, type] = {
    QConv1d: nn.Conv1d,
    QConv2d: nn.Conv2d,
    QConv3d: nn.Conv3d,
    QConvTranspose3d: nn.ConvTranspose3d,
    QLinear: nn.Linear,
}
#: ``layers.conv1d.Conv1d`` (nn.Conv1d with a faster backward) quantizes like nn.Conv1d
FLOAT_TO_QUANTIZED = {f: q for q, f in QUANTIZED_TO_FLOAT.items()} | {Conv1d: QConv1d}

#: activation modules that can be quantized, with the nonlinearity each computes
ACTIVATIONS: dict[type, str | None] = {
    nn.ReLU: "relu",
    nn.Sigmoid: "sigmoid",
    nn.Tanh: "tanh",
    nn.Identity: None,
}
_FUNCTIONS = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}
_MODULES = {v: k for k, v in ACTIVATIONS.items()}


class QActivation(nn.Module):
    """A quantized activation replacing ``nn.ReLU``/``nn.Sigmoid``/``nn.Tanh``/``nn.Identity``.

    A quantizer that computes the nonlinearity itself (``quantized_relu`` for ReLU,
    ``quantized_sigmoid`` for Sigmoid) replaces it, as QKeras' ``QActivation`` does; any other
    quantizer (``quantized_bits``, ``binary``...) is applied after the original nonlinearity.
    """

    def __init__(self, quantizer, activation: str | None = None):
        super().__init__()
        if activation is not None and activation not in _FUNCTIONS:
            raise ConfigError(f"unknown activation {activation!r}; known: {sorted(_FUNCTIONS)}")
        q = parse_quantizer(quantizer)
        if q is None:
            raise ConfigError("QActivation needs a quantizer")
        if q.data_dependent:
            raise ConfigError(f"{q.spec} computes per-tensor scales: use it on weights only")
        if q.nonlinearity is not None and q.nonlinearity != activation:
            raise ConfigError(
                f"{q.spec} computes {q.nonlinearity} but the module is {activation or 'linear'}"
            )
        self.quantizer = q
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.quantizer.nonlinearity is None and self.activation is not None:
            x = _FUNCTIONS[self.activation](x)
        return self.quantizer(x)

    def extra_repr(self) -> str:
        return f"{self.quantizer.spec}, activation={self.activation}"


def _weight_quantizer(spec, what: str) -> WeightQuantizer | None:
    q = parse_quantizer(spec)
    if q is not None and not isinstance(q, WeightQuantizer):
        raise ConfigError(
            f"{what} quantizer {q.spec} is an activation quantizer; use quantized_bits, binary or ternary"
        )
    return q


def quantizable_modules(model: nn.Module) -> dict[str, str]:
    """Names of the modules ``quantize_model`` accepts, in model order, mapped to "weight"/"activation"."""
    names: dict[str, str] = {}
    for name, module in model.named_modules():
        if not name:
            continue
        if type(module) in FLOAT_TO_QUANTIZED or isinstance(module, QuantizedWeights):
            names[name] = "weight"
        elif type(module) in ACTIVATIONS or isinstance(module, QActivation):
            names[name] = "activation"
    return names


def _split_weight_entry(entry, name: str, has_bias: bool):
    """``{"kernel": spec, "bias": spec}``, or one spec (string, quantizer dict, None) for both."""
    if isinstance(entry, Mapping) and "name" not in entry:
        unknown = set(entry) - {"kernel", "bias"}
        if unknown:
            raise ConfigError(
                f"layer {name!r}: unknown keys {sorted(unknown)}; use 'kernel' and 'bias'"
            )
        if not has_bias and entry.get("bias") is not None:
            raise ConfigError(f"layer {name!r} has no bias to quantize")
        return entry.get("kernel"), entry.get("bias")
    return entry, entry


def quantize_model(model: nn.Module, layer_config: Mapping) -> nn.Module:
    """A deep copy of ``model`` with the named modules quantized.

    ``layer_config`` maps module names to, for weight layers (Conv1d/2d/3d, ConvTranspose3d,
    Linear), ``{"kernel":
    spec, "bias": spec}`` or one spec for both, and for activation modules a spec such as
    ``"quantized_relu(2)"``. A missing key or None/"fp32" leaves that part in float. Weight layers not
    named stay as they are. Unknown names raise ConfigError listing the valid ones.
    """
    if not isinstance(layer_config, Mapping):
        raise ConfigError(
            f"layer_config must be a mapping of module names, got {type(layer_config)}"
        )
    model = copy.deepcopy(model)
    targets = quantizable_modules(model)
    unknown = [name for name in layer_config if name not in targets]
    if unknown:
        raise ConfigError(
            f"unknown layer name(s) {unknown} in layer_config; valid names: {list(targets)}"
        )
    modules = dict(model.named_modules())
    for name, entry in layer_config.items():
        module = modules[name]
        try:
            if targets[name] == "weight":
                kernel, bias = _split_weight_entry(entry, name, module.bias is not None)
                _configure_weight_layer(module, kernel, bias)
            else:
                model.set_submodule(name, _activation_module(module, entry))
        except ConfigError as err:
            raise ConfigError(f"layer {name!r}: {err}") from None
    return model


def _configure_weight_layer(module: nn.Module, kernel, bias) -> None:
    kq = _weight_quantizer(kernel, "kernel")
    bq = _weight_quantizer(bias, "bias") if module.bias is not None else None
    if kq is None and bq is None:
        if isinstance(module, QuantizedWeights):  # back to a plain float layer
            module.__class__ = QUANTIZED_TO_FLOAT[type(module)]
            for attr in ("kernel_quantizer", "bias_quantizer", "weights_quantized"):
                module.__dict__.pop(attr, None)
        return
    if not isinstance(module, QuantizedWeights):
        # swap the class in place: keeps every hyperparameter, parameter and hook of the layer
        module.__class__ = FLOAT_TO_QUANTIZED[type(module)]
    module.set_quantizers(kq, bq)


def _activation_module(module: nn.Module, spec) -> nn.Module:
    activation = module.activation if isinstance(module, QActivation) else ACTIVATIONS[type(module)]
    q = parse_quantizer(spec)
    if q is None:
        return _MODULES[activation]()
    return QActivation(q, activation)


def layer_config_of(model: nn.Module) -> dict:
    """The layer_config that ``quantize_model`` needs to rebuild ``model``'s quantization (JSON-able)."""
    config: dict = {}
    for name, module in model.named_modules():
        if isinstance(module, QuantizedWeights):
            config[name] = {
                "kernel": quantizer_spec(module.kernel_quantizer),
                "bias": quantizer_spec(module.bias_quantizer),
            }
        elif isinstance(module, QActivation):
            config[name] = module.quantizer.spec
    return config


__all__ = [
    "ACTIVATIONS",
    "FLOAT_TO_QUANTIZED",
    "OutputChannels",
    "QActivation",
    "QConv1d",
    "QConv2d",
    "QConv3d",
    "QConvTranspose3d",
    "QLinear",
    "Quantizer",
    "QuantizedWeights",
    "conv_transpose3d",
    "layer_config_of",
    "quantizable_modules",
    "quantize_model",
]
