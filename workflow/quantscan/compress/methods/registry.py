"""The registry of compression method types and what every type shares: the run context, the
results, layer configurations, tables and notes. A method type runs on any model and any caller's
data.

A method is a config entry ``{type: ..., **keys}`` (config/schema.yaml, ``$defs/compress_method``).
``run_method`` fine-tunes quantized copies of an fp32 model (quantization-aware training, QAT: start
from the fp32 weights, ``quantize_model``, ``train.fit`` with early stopping on validation loss) and
evaluates them on the test set. It returns a ``MethodResult``: the variants it trained (one of them
*primary*: the one the caller packs and reports), a method-specific table, a figure and notes.
``register(type_name)`` adds a type ``f(ctx) -> MethodResult``; the types live in the modules of
this package (``mixed``, ``search``, ``ternary``, ``prune_quant``, ``int8``).

Layers are addressed by module name (``layers.quantizable_modules``), so every method works on any
model built from named Conv/Linear/activation modules (e.g. a 2-D or a 1-D CNN, or a 3-D U-Net with
transposed convolutions).

Named per-layer configurations (*layer presets*) come from the caller: ``run_method(...,
layer_presets={name: {module: spec}})``; a configuration entry may name one wherever a configuration
is expected (``resolve_layers``). The engine defines none.

Decisions that pick a configuration (tolerances, the search score) use the **validation** split;
reported accuracies are on the **test** split.

The learning task (``run_method(..., task=...)``, :mod:`quantscan.tasks`; classification by
default) decides what the methods train and measure: the fine-tuning loss (``train.fit``), the
probabilities (``task.proba``), the validation accuracy that tolerances and scores compare
(``task.per_input_accuracy`` averaged over the inputs: the share of inputs classified right, or
the mean voxel accuracy of a dense task) and the test metrics (``task.metrics``).

Every variant's metrics add ``metrics.compression_report`` on its deployed weights (one test input
for the per-sample operation counts): ``density``, ``srqw`` and ``cr_g_q`` (quantized layers; NaN
without any), ``cr_g`` (whole model), ``ec_g``/``ec_change`` (an energy *model*), ``nops``,
``nops_x_bits`` and ``weights_mbit``. ``model_bits`` (the weight bits of the deployed model)
counts every weight at its layer's bit width, zeros included: QKeras quantizers at their ``bits``,
ternary layers at 2 (DoReFa at k), pruned layers at the schedule's ``bits`` (``cost.py``). That is
what dense codes take and what QKeras and van de Wetering (2024) count, so it compares across
methods; sparsity shows in ``weights_mbit`` (non-zero weights x bits, Fernandes & Kung; positions
not counted) and in ``file_bytes`` (the packed file: positions, codes, scales).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import torch
import yaml
from torch import nn

from ... import config as qconfig
from ...atomic import write_text
from ...errors import ConfigError, QuantscanError
from ...seeds import derive_seed
from ...tasks import CLASSIFICATION, Task
from ...train import (
    EVAL_BATCH,
    TrainConfig,
    config_key,
    fit,
    predict_proba,
    recalibrate_bn,
    to_tensor,
    weights_digest,
)
from ..cost import FP_BITS, bits_per_layer, bits_table, model_bits, weight_bits
from ..layers import ACTIVATIONS, QActivation, layer_config_of, quantizable_modules, quantize_model
from ..metrics import compression_report, summary_scalars
from ..presets import PRESET_KEYS, preset, preset_names
from ..quantizers import WeightQuantizer, parse_quantizer
from ..ternary import ternary_n_sf

Data = tuple[np.ndarray, np.ndarray]


# --------------------------------------------------------------------------------------------------
# results


@dataclass
class Variant:
    """One trained configuration: its model, layer_config, test metrics and method-specific info."""

    name: str
    model: nn.Module
    layer_config: dict
    metrics: dict  #: test metrics, model_bits, size_pct, bits_per_layer (+ extra_eval's keys)
    val_accuracy: float
    epochs: int  #: fine-tuning epochs asked for (0 = post-training quantization)
    seconds: float
    info: dict = field(default_factory=dict)
    primary: bool = False
    test_proba: np.ndarray | None = None  #: the model's test-set probabilities (for reuse)


@dataclass
class MethodResult:
    variants: list[Variant]
    details: pd.DataFrame  #: the method's own table (scan, rounds, trials, per-layer bits)
    notes: str  #: text: the primary configuration, bit table, paste-able YAML, search stats
    plot: Callable  #: ``plot(path, title)`` draws the method's figure

    @property
    def primary(self) -> Variant:
        return next(v for v in self.variants if v.primary)


# --------------------------------------------------------------------------------------------------
# configurations


def weight_spec(bits: int, alpha: str | None = "auto") -> str | None:
    """Weight quantizer for a bit width: 1 -> binary, 2..31 -> symmetric quantized_bits, 32 -> fp32.

    ``binary`` rather than ``quantized_bits(1, alpha=...)``, which has no levels (compression.md 1.1).
    """
    _check_bits(bits)
    if bits >= FP_BITS:
        return None
    a = "" if alpha is None else f"alpha={alpha!r}"
    if bits == 1:
        return f"binary({a})"
    return f"quantized_bits({bits}, 0, 1{', ' + a if a else ''})"


def activation_spec(nonlinearity: str | None, bits: int) -> str | None:
    """Activation quantizer for a bit width (32 -> fp32: QKeras' activations are NaN at 32 bits)."""
    _check_bits(bits)
    if bits >= FP_BITS:
        return None
    if nonlinearity == "relu":
        return f"quantized_relu({bits})"
    if nonlinearity == "sigmoid":
        return f"quantized_sigmoid({bits})"
    if nonlinearity == "tanh":
        return f"quantized_bits({bits}, 0, 1)"
    raise ConfigError(
        f"no quantizer by bit width for a {nonlinearity or 'linear'} activation; give a spec"
    )


def _check_bits(bits) -> None:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= FP_BITS:
        raise ConfigError(f"bit width must be an integer in [1, 32], got {bits!r}")


def with_alpha(spec, alpha: str):
    """``spec`` with the alpha of a data-dependent weight quantizer replaced (others unchanged)."""
    if isinstance(spec, Mapping) and "name" not in spec:
        return {part: with_alpha(s, alpha) for part, s in spec.items()}
    q = parse_quantizer(spec)
    if q is None:
        return None
    if isinstance(q, WeightQuantizer) and getattr(q, "alpha", None) not in (None, alpha):
        return q.spec.replace(f"alpha={q.alpha!r}", f"alpha={alpha!r}")
    return q.spec


def module_kinds(model: nn.Module) -> dict[str, tuple[str, str | None]]:
    """Quantizable module name -> ("weight", None) or ("activation", nonlinearity)."""
    modules = dict(model.named_modules())
    out = {}
    for name, kind in quantizable_modules(model).items():
        if kind == "weight":
            out[name] = ("weight", None)
        else:
            m = modules[name]
            out[name] = (
                "activation",
                m.activation if isinstance(m, QActivation) else ACTIVATIONS[type(m)],
            )
    return out


def layer_spec(kinds: dict, name: str, bits: int, alpha: str | None):
    """The spec putting module ``name`` at ``bits`` (weight or activation)."""
    kind, nonlinearity = kinds[name]
    if kind == "weight":
        return weight_spec(bits, alpha)
    return activation_spec(nonlinearity, bits)


def resolve_layers(
    entry,
    model: nn.Module,
    alpha: str | None = "auto",
    presets: Mapping[str, Mapping] | None = None,
    method: str | None = None,
) -> dict:
    """The canonical layer_config (``layer_config_of``) of a configuration entry.

    ``entry``: a preset name (a key of ``presets``, the caller's named configurations), an integer
    (every weight layer at that many bits), or a mapping of module names to bits, spec
    strings/dicts, None or ``{kernel, bias}``. ``alpha`` replaces the alpha of every data-dependent
    weight quantizer; None keeps the specs as written (bit widths then get 'auto'). ``method``
    names the method in the error for an unknown preset.
    """
    kinds = module_kinds(model)
    if isinstance(entry, str):
        entry = preset(entry, presets, method)
    if isinstance(entry, int) and not isinstance(entry, bool):
        entry = {name: entry for name, (kind, _) in kinds.items() if kind == "weight"}
    if not isinstance(entry, Mapping):
        raise ConfigError(
            f"a configuration is a preset name, a bit width or a mapping, got {entry!r}"
        )
    unknown = [name for name in entry if name not in kinds]
    if unknown:
        raise ConfigError(f"unknown layer name(s) {unknown}; valid names: {list(kinds)}")
    config = {}
    for name, spec in entry.items():
        if isinstance(spec, int) and not isinstance(spec, bool):
            spec = layer_spec(kinds, name, spec, alpha or "auto")
        elif alpha is not None and kinds[name][0] == "weight":
            spec = with_alpha(spec, alpha)
        config[name] = spec
    return layer_config_of(quantize_model(model, config))


def check_layer_presets(
    name: str, config: Mapping, presets: Mapping[str, Mapping] | None = None
) -> dict:
    """``normalize_method(config)``, checked that every preset name it uses is one of ``presets``
    (ConfigError naming method ``name`` and the known presets); callers check a config with it
    before any job runs."""
    config = normalize_method(config)
    for entry in preset_names(config):
        preset(entry, presets, name)
    return config


def pasteable(name: str, layer_config: dict, model: nn.Module, description: str = "") -> str:
    """A YAML ``compress.methods`` entry (type mixed) that reproduces ``layer_config`` exactly."""
    modules = dict(model.named_modules())
    layers = {}
    for layer, entry in layer_config.items():
        if isinstance(entry, Mapping):
            kernel, bias = entry.get("kernel"), entry.get("bias")
            no_bias = getattr(modules[layer], "bias", None) is None
            layers[layer] = (
                kernel if (no_bias or bias == kernel) else {"kernel": kernel, "bias": bias}
            )
        else:
            layers[layer] = entry
    body = {"type": "mixed", "alpha": None, "layers": layers}
    if description:
        body = {"type": "mixed", "description": description, "alpha": None, "layers": layers}
    return yaml.safe_dump({name: body}, sort_keys=False, default_flow_style=False, width=1000)


def paste_name(variant: str) -> str:
    """Method name for a pasted copy of a variant's configuration (variant ``mixed_<name>``)."""
    return f"{variant}_copy" if variant.startswith("mixed") else f"mixed_{variant}"


def normalize_method(config: Mapping) -> dict:
    """A method config validated against the schema (``$defs/compress_method``), defaults filled."""
    schema = qconfig.load_schema()
    config = qconfig.fill_defaults(
        copy.deepcopy(dict(config)), schema["$defs"]["compress_method"], schema
    )
    validator = jsonschema.Draft202012Validator(
        {"$ref": "#/$defs/compress_method", "$defs": schema["$defs"]}
    )
    errors = [e.message for e in validator.iter_errors(config)]
    if errors:
        raise ConfigError(f"invalid compression method {dict(config)!r}: " + "; ".join(errors))
    return config


def layer_lines(model: nn.Module) -> str:
    """One line per quantized module, as AutoQKeras prints a configuration."""
    lines = []
    width = max((len(n) for n in quantizable_modules(model)), default=0)
    for name, module in model.named_modules():
        if isinstance(module, QActivation):
            lines.append(f"{name:<{width}} {module.quantizer.spec}")
        elif quantizable_modules(model).get(name) == "weight":
            k = getattr(module, "kernel_quantizer", None)
            b = getattr(module, "bias_quantizer", None)
            parts = [k.spec if k else "fp32"]
            if module.bias is not None:
                parts.append(b.spec if b else "fp32")
            lines.append(f"{name:<{width}} {' '.join(parts)}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# the runner


@dataclass
class Context:
    """Everything a method type needs; ``variant`` trains and evaluates one configuration."""

    name: str
    config: dict
    model: nn.Module
    arch: dict
    train: Data
    val: Data
    test: Data
    class_names: list[str]
    finetune: TrainConfig
    seed: int
    log: logging.Logger
    extra_eval: Callable[[nn.Module], dict] | None = None
    #: where fine-tunes (QAT ``qat-*.pt``; ternary and pruning ``train-*.pt``) save their per-epoch
    #: checkpoints (``train.fit``), so that a rerun of a killed job resumes them; None: none
    checkpoint_dir: Path | None = None
    #: the caller's named per-layer configurations (``resolve_layers``)
    layer_presets: Mapping[str, Mapping] = field(default_factory=dict)
    #: the learning task: fine-tuning loss, probabilities, validation accuracy and test metrics
    task: Task = CLASSIFICATION
    _cache: dict = field(default_factory=dict)

    @property
    def type(self) -> str:
        return self.config["type"]

    @property
    def prefix(self) -> str:
        """Variant names start with the method type, then the method's name."""
        return self.name if self.name.startswith(self.type) else f"{self.type}_{self.name}"

    @cached_property
    def kinds(self) -> dict:
        return module_kinds(self.model)

    @cached_property
    def weight_layers(self) -> list[str]:
        return [n for n, (kind, _) in self.kinds.items() if kind == "weight"]

    @cached_property
    def fp32_bits(self) -> int:
        return model_bits(self.model)

    @cached_property
    def fp32(self) -> Variant:
        """The unmodified fp32 model as a reference row."""
        return self.variant("fp32", {}, 0)

    def resolve_layers(self, entry, alpha: str | None = "auto") -> dict:
        """``resolve_layers`` of a configuration entry of this method, with the caller's presets."""
        return resolve_layers(entry, self.model, alpha, self.layer_presets, self.name)

    def scan_epochs(self) -> int:
        epochs = self.config.get("scan_epochs")
        return self.finetune.epochs if epochs is None else epochs

    def within(self, v: Variant) -> bool:
        """Validation accuracy at most ``tolerance`` below fp32's."""
        return v.val_accuracy >= self.fp32.val_accuracy - self.config["tolerance"] - 1e-12

    def names(self, names: list[str], kind: str, key: str) -> list[str]:
        bad = [n for n in names if self.kinds.get(n, (None,))[0] != kind]
        if bad:
            valid = [n for n, (k, _) in self.kinds.items() if k == kind]
            raise ConfigError(
                f"method {self.name!r}, key {key!r}: {bad} are not {kind} modules of "
                f"this model; valid: {valid}"
            )
        return names

    def val_accuracy(self, model: nn.Module) -> float:
        """The task's per-input accuracy averaged over the validation inputs (NaN without any)."""
        x, y = self.val
        if len(y) == 0:
            return math.nan
        proba = predict_proba(model, x, EVAL_BATCH, self.task)
        return float(self.task.per_input_accuracy(y, proba).mean())

    @cached_property
    def example_input(self) -> torch.Tensor:
        """One input (test, else validation, else training) for the per-sample operation counts."""
        for x, _ in (self.test, self.val, self.train):
            if len(x):
                return to_tensor(x[:1], channels_last=False)
        raise ConfigError(f"method {self.name!r}: no input data")

    def compression_metrics(self, model: nn.Module) -> dict:
        return deployed_metrics(model, self.example_input)

    def evaluate(self, model: nn.Module) -> tuple[dict, np.ndarray]:
        """Test metrics of ``model`` (the task's) and its test-set probabilities."""
        x, y = self.test
        proba = predict_proba(model, x, EVAL_BATCH, self.task)
        metrics = self.task.metrics(y, proba, self.class_names)
        bits = model_bits(model)
        metrics.update(
            model_bits=bits,
            size_pct=100.0 * bits / self.fp32_bits,
            bits_per_layer=bits_per_layer(model),
        )
        metrics.update(self.compression_metrics(model))
        if self.extra_eval is not None:
            metrics.update(self.extra_eval(model))
        return metrics, proba

    def qat(
        self, layer_config: dict, epochs: int, key: str, train: Data | None = None
    ) -> nn.Module:
        """A quantized copy of the fp32 model fine-tuned for up to ``epochs`` epochs (on ``train``,
        by default the whole training split)."""
        model = quantize_model(self.model, layer_config)
        if epochs > 0:
            cfg = dataclasses.replace(self.finetune, epochs=epochs)
            train = train or self.train
            # one file per configuration, epochs, key and data
            checkpoint = self._checkpoint("qat", layer_config, epochs, key, len(train[1]))
            fit(
                model,
                *train,
                *self.val,
                cfg,
                derive_seed(self.seed, key),
                checkpoint=checkpoint,
                task=self.task,
            )
        return model.eval()

    def _checkpoint(self, kind: str, *what) -> Path | None:
        """``checkpoint_dir/<kind>-<hash of what>.pt``, or None without a checkpoint folder."""
        if self.checkpoint_dir is None:
            return None
        text = json.dumps(what, sort_keys=True, default=str)
        digest = hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
        return Path(self.checkpoint_dir) / f"{kind}-{digest}.pt"

    def cached(self, kind: str, compute: Callable[[], list | dict], *what) -> list | dict:
        """``compute()`` (a JSON value), kept as ``checkpoint_dir/<kind>-<hash>.json``: a rerun of
        a killed job reads it back instead of computing it again (``what``, the fp32 weights, the
        seed and the fine-tuning settings name it). Without a checkpoint folder: ``compute()``."""
        path = self._checkpoint(
            kind, *what, self._weights_digest, self.seed, config_key(self.finetune)
        )
        if path is None:
            return compute()
        path = path.with_suffix(".json")
        if path.exists():
            return json.loads(path.read_text())
        result = compute()
        write_text(path, json.dumps(result))
        return result

    @cached_property
    def _weights_digest(self) -> str:
        return weights_digest(self.model)

    def train_subset(self, n: int | None, key: str) -> Data:
        """``n`` training inputs drawn without replacement (seeded by ``key``): with one label per
        input, each class in its share of the split; with dense targets (one label per voxel), a
        plain random draw. The whole split when ``n`` is None or not smaller."""
        x, y = self.train
        if n is None or n >= len(y):
            return x, y
        rng = np.random.default_rng(derive_seed(self.seed, key))
        if np.ndim(y) > 1:
            idx = np.sort(rng.choice(len(y), n, replace=False))
            return x[idx], y[idx]
        classes, counts = np.unique(y, return_counts=True)
        take = np.maximum(1, np.round(counts * n / len(y)).astype(int))
        idx = np.sort(
            np.concatenate(
                [
                    rng.choice(np.flatnonzero(y == c), k, replace=False)
                    for c, k in zip(classes, take, strict=True)
                ]
            )
        )
        return x[idx], y[idx]

    def variant(
        self, name: str, layer_config: dict, epochs: int, info: dict | None = None, primary=False
    ) -> Variant:
        """Train (or reuse: same configuration and epochs) and evaluate one configuration."""
        layer_config = layer_config_of(quantize_model(self.model, layer_config))
        key = (json.dumps(layer_config, sort_keys=True), epochs)
        start = time.perf_counter()
        if key in self._cache:
            done = self._cache[key]
            model, metrics, val_acc = done.model, copy.deepcopy(done.metrics), done.val_accuracy
            proba = done.test_proba
        else:
            model = self.qat(layer_config, epochs, name)
            (metrics, proba), val_acc = self.evaluate(model), self.val_accuracy(model)
        v = Variant(
            name,
            model,
            layer_config,
            metrics,
            val_acc,
            epochs,
            time.perf_counter() - start,
            dict(info or {}),
            primary,
            proba,
        )
        self._cache.setdefault(key, v)
        self._log_variant(v)
        return v

    def train_variant(
        self,
        name: str,
        model: nn.Module,
        epochs: int,
        info: dict | None = None,
        primary: bool = False,
        step: Callable | None = None,
        finalize: Callable[[nn.Module], object] | None = None,
        step_state=None,
    ) -> Variant:
        """Fine-tune a prepared copy of the fp32 model (ternarized, or float under a pruning
        schedule's ``step``) for up to ``epochs`` epochs, then ``finalize(model)``, then evaluate.

        ``fit`` restores the weights of the best validation epoch; ``finalize`` runs after that, so
        the variant holds what it deploys. A ``step`` with state of its own (a pruning schedule)
        passes that as ``step_state`` so that the fine-tune can checkpoint (``train.fit``).
        """
        start = time.perf_counter()
        history = []
        if epochs > 0:
            cfg = dataclasses.replace(self.finetune, epochs=epochs)
            kwargs = {"task": self.task} if step is None else {"step": step, "task": self.task}
            if step is None or step_state is not None:
                checkpoint = self._checkpoint("train", self.type, name, epochs, info or {})
                kwargs |= {"checkpoint": checkpoint, "step_state": step_state}
            history = fit(
                model, *self.train, *self.val, cfg, derive_seed(self.seed, name), **kwargs
            )
        info = dict(info or {})
        if finalize is not None:
            before = self.val_accuracy(model)
            finalize(model)
            if self.finetune.recalibrate_bn:  # statistics of the deployed weights
                recalibrate_bn(model, self.train[0])
            after = self.val_accuracy(model)
            last = history[-1]["val_accuracy"] if history else math.nan
            info.update(val_accuracy_before_finalize=before, val_accuracy_last_epoch=last)
            self.log.info(
                "%s: validation accuracy %.4f before finalize (last epoch %.4f), %.4f after",
                name,
                before,
                last,
                after,
            )
            check_finalize(name, before, after, len(self.val[1]))
        model.eval()
        (metrics, proba), val_acc = self.evaluate(model), self.val_accuracy(model)
        v = Variant(
            name,
            model,
            layer_config_of(model),
            metrics,
            val_acc,
            epochs,
            time.perf_counter() - start,
            info,
            primary,
            proba,
        )
        self._log_variant(v)
        return v

    def _log_variant(self, v: Variant) -> None:
        m = v.metrics
        self.log.info(
            "%s: validation accuracy %.4f, test accuracy %.4f%s, %d bits (%.2f%%), density "
            "%.3f, %d epochs, %.1f s",
            v.name,
            v.val_accuracy,
            m["accuracy"],
            score_suffix(m),
            m["model_bits"],
            m["size_pct"],
            m["density"],
            v.epochs,
            v.seconds,
        )


#: the largest validation accuracy a pruning variant's finalize may lose (the pruning schedules of
#: Fernandes & Kung train float latent weights; finalize writes their pruned, quantized values)
FINALIZE_TOLERANCE = 0.02


def check_finalize(name: str, before: float, after: float, n: int) -> None:
    """Fail when finalize lost more than ``FINALIZE_TOLERANCE`` of validation accuracy, and more
    than one of the ``n`` validation inputs (one input is more than 2 points below 50 inputs),
    against the weights it finalized (the epoch ``fit`` restored)."""
    drop = before - after
    if math.isfinite(drop) and drop > FINALIZE_TOLERANCE + 1e-12 and drop * n > 1 + 1e-9:
        raise QuantscanError(
            f"variant {name}: finalize (the pruned, quantized weights as deployed) scores "
            f"{after:.4f} on validation against {before:.4f} for the trained weights it started "
            f"from, a loss of {100 * drop:.1f} points (more than {100 * FINALIZE_TOLERANCE:.0f}); "
            "the deployed model would not be the one training selected. Try a smaller gamma, "
            "more fine-tuning epochs, or leave the small output layers dense ('layers')"
        )


def deployed_metrics(model: nn.Module, example_input) -> dict:
    """``metrics.compression_report`` of the deployed weights as summary scalars (NaN: no data, e.g.
    ``srqw`` of a model without quantized layers). Used for every variant and for the fp32 rows."""
    rep = compression_report(
        model, example_input, weight_bits(model), n_sf=ternary_n_sf(model) or None
    )

    return summary_scalars(rep)


def run_method(
    name: str,
    config: Mapping,
    model: nn.Module,
    arch: dict,
    train: Data,
    val: Data,
    test: Data,
    class_names,
    finetune: TrainConfig,
    seed: int,
    log: logging.Logger | None = None,
    extra_eval: Callable[[nn.Module], dict] | None = None,
    checkpoint_dir: str | Path | None = None,
    layer_presets: Mapping[str, Mapping] | None = None,
    *,
    task: Task = CLASSIFICATION,
) -> MethodResult:
    """Run method ``name`` (config entry ``config``) on an fp32 ``model``; see the module docstring.

    ``finetune`` is the workflow's QAT setting; the method's ``finetune`` keys override it.
    ``extra_eval(model) -> dict`` adds metrics to every variant (e.g. false-positive rates).
    ``checkpoint_dir``: every fine-tune (``mixed``, ``uniform``, the search trials, ternary, the
    pruning schedules ...) checkpoints every epoch there and resumes on a rerun; the caller deletes
    it when the results are saved.
    ``layer_presets``: the caller's named per-layer configurations, ``{name: {module: spec}}``,
    which configuration entries may name (``resolve_layers``); an unknown name is a ConfigError
    naming the method and the known presets, raised before any training.
    ``task``: the learning task (:mod:`quantscan.tasks`) of the model and the data: the
    fine-tuning loss, the probabilities, the validation accuracy and the test metrics.
    """
    config = check_layer_presets(name, config, layer_presets)
    method = METHOD_TYPES[config["type"]]
    finetune = dataclasses.replace(finetune, **config["finetune"])
    ctx = Context(
        name,
        config,
        model.eval(),
        dict(arch),
        train,
        val,
        test,
        list(class_names),
        finetune,
        seed,
        log or logging.getLogger(__name__),
        extra_eval,
        None if checkpoint_dir is None else Path(checkpoint_dir),
        dict(layer_presets or {}),
        task,
    )
    ctx.log.info(
        "method %s (%s): fp32 %d bits, fine-tuning %s", name, ctx.type, ctx.fp32_bits, finetune
    )
    result = method(ctx)
    primaries = [v for v in result.variants if v.primary]
    if len(primaries) != 1:
        raise AssertionError(f"method type {ctx.type} marked {len(primaries)} primary variants")
    names = [v.name for v in result.variants]
    if len(set(names)) != len(names):
        raise AssertionError(f"method type {ctx.type} produced duplicate variant names {names}")
    return result


METHOD_TYPES: dict[str, Callable[[Context], MethodResult]] = {}


def register(type_name: str):
    """Decorator adding a method type ``f(ctx) -> MethodResult`` to ``METHOD_TYPES``."""

    def deco(fn):
        METHOD_TYPES[type_name] = fn
        return fn

    return deco


# --------------------------------------------------------------------------------------------------
# tables and notes


def variant_table(variants: list[Variant], reference: Variant | None = None) -> pd.DataFrame:
    """One row per variant: info keys, validation and test metrics, size (fp32 ``reference`` first)."""
    rows, info_keys = [], {}
    for v in ([reference] if reference is not None else []) + list(variants):
        info_keys |= dict.fromkeys(v.info)
        row = {"variant": v.name, "primary": v.primary, **v.info, "val_accuracy": v.val_accuracy}
        row |= {k: x for k, x in v.metrics.items() if not isinstance(x, dict | list)}
        row |= {"epochs": v.epochs, "seconds": round(v.seconds, 3)}
        rows.append(row)
    table = pd.DataFrame(rows)
    lead = ["variant", "primary", *info_keys, "val_accuracy"]
    tail = ["bits_per_layer"]
    middle = [c for c in table.columns if c not in lead and c not in tail]
    return table[lead + middle + [c for c in tail if c in table]]


def layer_table(model: nn.Module) -> pd.DataFrame:
    """Per weight layer bits (``cost.bits_table``) plus every quantized activation."""
    from io import StringIO

    table = pd.read_csv(StringIO(bits_table(model)), sep="\t", keep_default_na=False)
    specs = {}
    for name, module in model.named_modules():
        if isinstance(module, QActivation):
            specs[name] = module.quantizer.spec
        elif hasattr(module, "kernel_quantizer"):
            specs[name] = " ".join(
                q.spec if q else "fp32" for q in (module.kernel_quantizer, module.bias_quantizer)
            )
    table["quantizers"] = [specs.get(n, "fp32" if n != "total" else "") for n in table.name]
    acts = [
        {
            "name": n,
            "type": "QActivation",
            **dict.fromkeys(("n_params", "n_kernel", "n_bias", "total_bits"), 0),
            "kernel_bits": m.quantizer.bits,
            "bias_bits": "",
            "quantizers": m.quantizer.spec,
        }
        for n, m in model.named_modules()
        if isinstance(m, QActivation)
    ]
    if acts:
        table = pd.concat([table.iloc[:-1], pd.DataFrame(acts), table.iloc[-1:]], ignore_index=True)
    return table


#: the second headline metric of each task's test metrics: key and label in notes and logs
SECOND_SCORES = (("mcc", "MCC"), ("balanced_accuracy", "balanced accuracy"))


def score_suffix(m: Mapping) -> str:
    """``", MCC 0.9123"`` (or the task's balanced accuracy, ...) after a test accuracy in notes and
    logs; empty when the metrics have none of ``SECOND_SCORES``."""
    for key, label in SECOND_SCORES:
        if key in m:
            return f", {label} {m[key]:.4f}"
    return ""


def metrics_line(m: dict) -> str:
    """The compression metrics of a variant as one comment line."""
    return (
        f"# density {m['density']:.4f}, {m['weights_mbit']:.6f} Mbit (non-zero weights x bits), "
        f"CR_G {m['cr_g']:.4f}, {m['nops']:,} NOPs ({m['nops_x_bits']:,.0f} x bits) per input, "
        f"EC_G {m['ec_g']:.4f} (energy model, change {m['ec_change']:+.4f})"
    )


def primary_notes(ctx: Context, v: Variant, header: str = "") -> str:
    m = v.metrics
    lines = [
        f"# {ctx.name} ({ctx.type}): primary variant {v.name}",
        f"# test accuracy {m['accuracy']:.4f} (fp32 {ctx.fp32.metrics['accuracy']:.4f})"
        f"{score_suffix(m)}, validation accuracy {v.val_accuracy:.4f}",
        f"# weight bits {m['model_bits']} of {ctx.fp32_bits} ({m['size_pct']:.2f}%), "
        f"fine-tuned up to {v.epochs} epochs",
        metrics_line(m),
    ]
    if header:
        lines += ["", header.rstrip("\n")]
    lines += ["", layer_lines(v.model), "", "# per-layer weight bits", bits_table(v.model).rstrip()]
    lines += [
        "",
        "# paste under compress.methods in the config to retrain this configuration:",
        pasteable(paste_name(v.name), v.layer_config, ctx.model).rstrip(),
    ]
    return "\n".join(lines) + "\n"


def _choose_primary(ctx: Context, variants: list[Variant], chosen: Variant, name: str, info: dict):
    """``chosen``'s configuration with the final fine-tuning as the primary variant.

    Early stopping only compares fine-tuned epochs, so when fine-tuning ends below the scanned
    model's validation accuracy the scanned model is kept (a choice made on validation data only).
    """
    v = ctx.variant(name, chosen.layer_config, ctx.finetune.epochs, info, primary=True)
    v.info["kept"] = "fine-tuned"
    if chosen.epochs != v.epochs and chosen.val_accuracy > v.val_accuracy:
        ctx.log.info(
            "%s: fine-tuning lowered the validation accuracy (%.4f -> %.4f): keeping %s's model",
            name,
            chosen.val_accuracy,
            v.val_accuracy,
            chosen.name,
        )
        v = dataclasses.replace(
            chosen,
            name=name,
            info={**info, "kept": f"scan model of {chosen.name}"},
            primary=True,
            metrics=copy.deepcopy(chosen.metrics),
        )
    variants.append(v)
    return v


def _variants_result(
    ctx: Context, variants: list[Variant], primary: Variant, plot, header: str = ""
) -> MethodResult:
    """The variants' table (fp32 first) as details, the primary's notes under ``header``, and
    ``plot(table, path, title)`` as the figure."""
    table = variant_table(variants, ctx.fp32)
    return MethodResult(
        variants,
        table,
        primary_notes(ctx, primary, header),
        lambda path, title: plot(table, path, title),
    )


def paste_entry(ctx: Context, **keys) -> str:
    """A ``compress.methods`` YAML entry of this method's type with ``keys`` overriding its own."""
    body = {
        k: v
        for k, v in ctx.config.items()
        if k not in ("scenarios", "description", "hessian") and (v or k != "finetune")
    }
    body |= keys
    return yaml.safe_dump(
        {f"{ctx.name}_copy": body}, sort_keys=False, default_flow_style=None, width=1000
    )


def entry_notes(ctx: Context, v: Variant, header: str, sections: list[str], paste: str) -> str:
    """Notes of a method whose configuration is not a QKeras layer_config (ternary, pruning)."""
    m = v.metrics
    lines = [
        f"# {ctx.name} ({ctx.type}): primary variant {v.name}",
        f"# test accuracy {m['accuracy']:.4f} (fp32 {ctx.fp32.metrics['accuracy']:.4f})"
        f"{score_suffix(m)}, validation accuracy {v.val_accuracy:.4f} (fp32 "
        f"{ctx.fp32.val_accuracy:.4f})",
        f"# weight bits {m['model_bits']} of {ctx.fp32_bits} ({m['size_pct']:.2f}%; every weight at "
        f"its layer's bits, zeros included), fine-tuned up to {v.epochs} epochs",
        metrics_line(m),
        "",
        header.rstrip("\n"),
    ]
    for section in sections:
        lines += ["", section.rstrip("\n")]
    lines += ["", "# per-layer weight bits", bits_table(v.model).rstrip()]
    lines += [
        "",
        "# paste under compress.methods in the config to retrain this configuration:",
        paste.rstrip(),
    ]
    return "\n".join(lines) + "\n"


__all__ = [
    "FINALIZE_TOLERANCE",
    "METHOD_TYPES",
    "PRESET_KEYS",
    "SECOND_SCORES",
    "Context",
    "Data",
    "MethodResult",
    "Variant",
    "activation_spec",
    "check_finalize",
    "check_layer_presets",
    "deployed_metrics",
    "entry_notes",
    "layer_lines",
    "layer_spec",
    "layer_table",
    "metrics_line",
    "module_kinds",
    "normalize_method",
    "paste_entry",
    "paste_name",
    "pasteable",
    "preset",
    "preset_names",
    "primary_notes",
    "register",
    "resolve_layers",
    "run_method",
    "score_suffix",
    "variant_table",
    "weight_spec",
    "with_alpha",
]
