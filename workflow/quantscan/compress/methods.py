"""Compression methods: a registry of method types, each run on any model and any application's data.

A method is a config entry ``{type: ..., **keys}`` (config/schema.yaml, ``$defs/compress_method``).
``run_method`` fine-tunes quantized copies of an fp32 model (quantization-aware training, QAT: start
from the fp32 weights, ``quantize_model``, ``train.fit`` with early stopping on validation loss) and
evaluates them on the test set. It returns a ``MethodResult``: the variants it trained (one of them
*primary*: the one the workflow packs and puts in the summary), a method-specific table, a figure
and notes.

Layers are addressed by module name (``layers.quantizable_modules``), so every method works on any
model built from named Conv/Linear/activation modules (SweepNet, the viral CNN, ...).

Decisions that pick a configuration (tolerances, the search score) use the **validation** split;
reported accuracies are on the **test** split.

Method types (see the schema for every key):

- ``mixed``: QAT of one per-layer configuration (default: seed 000 Table 6).
- ``layer_sensitivity``: each layer alone at each bit width, the rest fp32 (seed 000 Fig. 2); the
  primary combines, per layer, the smallest bit width within ``tolerance`` of fp32.
- ``uniform``: every weight layer at each bit width (seed 000 Fig. 3), flat bit widths with
  ``flat_alpha`` and a mixed configuration (seed 002); the primary is the smallest tolerated width.
- ``one_bit_rounds``: all weight layers at ``base_bits``, one at a time at 1 bit, the tolerated ones
  together (seed 000 Table 3), then activations at 1 bit alone and together (Table 4).
- ``auto_search``: AutoQKeras-style search with Optuna's seeded TPE sampler; score = validation
  accuracy x (1 + delta), the forgiving factor (compression.md section 2); with ``max_bits``,
  configurations over that budget score 0 untrained.
- ``po2_vs_auto``: the same configurations with ``alpha='auto'`` and ``'auto_po2'`` (seed 002).
- ``ttq``, ``attq``, ``dorefa``: trained ternary, asymmetric ternary (seed 001) and DoReFa binary /
  k-bit weight layers (``ternary.py``) fine-tuned from fp32 (one variant, the primary). ``layers``:
  ``default`` (all but the first and last), ``all``, a list, or ``hessian``: Hutchinson traces of
  the fp32 model on ``hessian.samples`` seeded training inputs, layers taken by ascending trace per
  weight until ``hessian.fraction`` of the weights (``hessian.select_layers``); the traces, ranks
  and the selection are in the details table and the notes. ``dorefa.activation_bits`` puts DoReFa
  activations after every ReLU.
- ``q_then_p_iter``, ``p_then_q_iter``, ``p_then_q_epochs``: γσ pruning plus uniform ``bits``-bit
  quantization (seed 004, ``prune.py``), one variant per γ, each fine-tuned through ``fit``'s step
  hook with the schedule, then ``schedule.finalize`` (after ``fit`` restored its best epoch, so the
  model holds the pruned, quantized values with every mask applied; ``fit`` restores the
  schedule's masks of that epoch with its weights). Early stopping watches the float latent
  weights (``fit`` evaluates the model as it is between steps), so every variant is evaluated
  after finalize (with the batch-norm statistics recomputed for the finalized weights when
  ``recalibrate_bn``), and a finalize that loses more than ``FINALIZE_TOLERANCE`` (2 points) of
  validation accuracy against the weights it started from fails the job (``check_finalize``). The primary is the
  lowest-density variant within ``tolerance`` of fp32 on validation, else the most accurate.

Every variant's metrics add ``metrics.compression_report`` on its deployed weights (one test input
for the per-sample operation counts): ``density``, ``srqw`` and ``cr_g_q`` (quantized layers; NaN
without any), ``cr_g`` (whole model), ``ec_g``/``ec_change`` (an energy *model*), ``nops``,
``nops_x_bits`` and ``weights_mbit``. ``model_bits`` (the summary's weight bits of the deployed
model) counts every weight at its layer's bit width, zeros included: QKeras quantizers at their
``bits``, ternary layers at 2 (DoReFa at k), pruned layers at the schedule's ``bits``
(``cost.py``). That is what dense codes take and what QKeras and seed 000 count, so it compares
across methods; sparsity shows in ``weights_mbit`` (non-zero weights x bits, seed 004, positions
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

from .. import config as qconfig
from ..atomic import write_text
from ..errors import ConfigError, QuantscanError
from ..seeds import derive_seed
from ..tasks.classification_metrics import classification_metrics
from ..train import (
    EVAL_BATCH,
    TrainConfig,
    config_key,
    fit,
    predict_proba,
    recalibrate_bn,
    to_tensor,
    weights_digest,
)
from . import figures
from .cost import (
    FP_BITS,
    SEED000_TABLE6,
    bits_per_layer,
    bits_table,
    kernel_bits_of,
    model_bits,
    weight_bits,
)
from .hessian import hutchinson_traces, select_layers
from .layers import ACTIVATIONS, QActivation, layer_config_of, quantizable_modules, quantize_model
from .metrics import compression_report, effective_weights, summary_scalars
from .prune import make_schedule
from .quantizers import WeightQuantizer, parse_quantizer
from .ternary import (
    DoReFaActivation,
    make_ternarizer,
    ternarize_model,
    ternary_layers,
    ternary_n_sf,
    ternary_report,
)

#: named per-layer configurations usable wherever a configuration is expected
PRESETS: dict[str, dict] = {"seed000_table6": SEED000_TABLE6}
_ALPHA_TAGS = {"auto": "auto", "auto_po2": "po2", None: "fixed"}

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


def resolve_layers(entry, model: nn.Module, alpha: str | None = "auto") -> dict:
    """The canonical layer_config (``layer_config_of``) of a configuration entry.

    ``entry``: a preset name (``PRESETS``), an integer (every weight layer at that many bits), or a
    mapping of module names to bits, spec strings/dicts, None or ``{kernel, bias}``. ``alpha``
    replaces the alpha of every data-dependent weight quantizer; None keeps the specs as written
    (bit widths then get 'auto').
    """
    kinds = module_kinds(model)
    if isinstance(entry, str):
        if entry not in PRESETS:
            raise ConfigError(f"unknown configuration preset {entry!r}; known: {sorted(PRESETS)}")
        entry = PRESETS[entry]
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
        x, y = self.val
        if len(y) == 0:
            return math.nan
        return float((predict_proba(model, x, EVAL_BATCH).argmax(1) == y).mean())

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
        """Test metrics of ``model`` and its test-set probabilities."""
        x, y = self.test
        proba = predict_proba(model, x, EVAL_BATCH)
        metrics = classification_metrics(y, proba, self.class_names)
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
            fit(model, *train, *self.val, cfg, derive_seed(self.seed, key), checkpoint=checkpoint)
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
        """``n`` training inputs drawn without replacement, each class in its share of the split
        (seeded by ``key``); the whole split when ``n`` is None or not smaller."""
        x, y = self.train
        if n is None or n >= len(y):
            return x, y
        rng = np.random.default_rng(derive_seed(self.seed, key))
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
            kwargs = {} if step is None else {"step": step}
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
            "%s: validation accuracy %.4f, test accuracy %.4f, MCC %.4f, %d bits (%.2f%%), density "
            "%.3f, %d epochs, %.1f s",
            v.name,
            v.val_accuracy,
            m["accuracy"],
            m["mcc"],
            m["model_bits"],
            m["size_pct"],
            m["density"],
            v.epochs,
            v.seconds,
        )


#: the largest validation accuracy a pruning variant's finalize may lose (seed 004's schedules
#: train float latent weights; finalize writes their pruned, quantized values)
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
) -> MethodResult:
    """Run method ``name`` (config entry ``config``) on an fp32 ``model``; see the module docstring.

    ``finetune`` is the workflow's QAT setting; the method's ``finetune`` keys override it.
    ``extra_eval(model) -> dict`` adds metrics to every variant (e.g. false-positive rates).
    ``checkpoint_dir``: every fine-tune (``mixed``, ``uniform``, the search trials, ternary, the
    pruning schedules ...) checkpoints every epoch there and resumes on a rerun; the caller deletes
    it when the results are saved.
    """
    config = normalize_method(config)
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
        f"# test accuracy {m['accuracy']:.4f} (fp32 {ctx.fp32.metrics['accuracy']:.4f}), MCC "
        f"{m['mcc']:.4f}, validation accuracy {v.val_accuracy:.4f}",
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


# --------------------------------------------------------------------------------------------------
# method types


@register("mixed")
def _mixed(ctx: Context) -> MethodResult:
    alpha = ctx.config["alpha"]
    config = resolve_layers(ctx.config["layers"], ctx.model, alpha)
    v = ctx.variant(ctx.prefix, config, ctx.finetune.epochs, {"alpha": alpha or "as written"}, True)
    table = layer_table(v.model)
    return MethodResult(
        [v],
        table,
        primary_notes(ctx, v),
        lambda path, title: figures.layer_bits(table, path, title, v.metrics["accuracy"]),
    )


@register("layer_sensitivity")
def _layer_sensitivity(ctx: Context) -> MethodResult:
    cfg, alpha, epochs = ctx.config, ctx.config["alpha"], ctx.scan_epochs()
    layers = list(cfg["layers"])
    if not layers:
        layers = [
            n for n, (k, _) in ctx.kinds.items() if k == "weight" or cfg["include_activations"]
        ]
    bad = [n for n in layers if n not in ctx.kinds]
    if bad:
        raise ConfigError(
            f"method {ctx.name!r}, key 'layers': unknown modules {bad}; valid: {list(ctx.kinds)}"
        )
    variants, best = [], {}
    for layer in layers:
        kind = ctx.kinds[layer][0]
        for bits in cfg["bits"]:
            spec = layer_spec(ctx.kinds, layer, bits, alpha)
            v = ctx.variant(
                f"{ctx.prefix}_{layer}_{bits}bit",
                {layer: spec} if spec else {},
                epochs,
                {"layer": layer, "kind": kind, "bits": bits, "spec": spec or "fp32"},
            )
            variants.append(v)
            if ctx.within(v) and bits < best.get(layer, (FP_BITS + 1, None))[0]:
                best[layer] = (bits, spec)
    combined = {layer: spec for layer, (bits, spec) in best.items() if spec is not None}
    chosen = ",".join(f"{layer}={bits}" for layer, (bits, _) in best.items())
    info = {"layer": "combined", "kind": "", "bits": math.nan, "spec": chosen or "fp32"}
    primary = ctx.variant(f"{ctx.prefix}_combined", combined, ctx.finetune.epochs, info, True)
    variants.append(primary)
    header = (
        f"# per layer, the smallest bit width whose validation accuracy stays within "
        f"{cfg['tolerance']} of fp32 ({ctx.fp32.val_accuracy:.4f}): {chosen or 'none'}"
    )
    return _variants_result(ctx, variants, primary, figures.layer_sensitivity, header)


@register("uniform")
def _uniform(ctx: Context) -> MethodResult:
    cfg, epochs = ctx.config, ctx.scan_epochs()
    variants, scan = [], []

    def uniform_config(bits, alpha):
        return {n: weight_spec(bits, alpha) for n in ctx.weight_layers if bits < FP_BITS}

    for bits in sorted(cfg["bits"]):
        info = {"series": "uniform", "bits": bits, "alpha": str(cfg["alpha"])}
        v = ctx.variant(
            f"{ctx.prefix}_scan_{bits}bit", uniform_config(bits, cfg["alpha"]), epochs, info
        )
        variants.append(v)
        scan.append(v)
    flat_tag = _ALPHA_TAGS[cfg["flat_alpha"]]
    for bits in sorted(cfg["flat_bits"]):
        info = {
            "series": f"flat ({cfg['flat_alpha']})",
            "bits": bits,
            "alpha": str(cfg["flat_alpha"]),
        }
        name = f"{ctx.prefix}_flat_{bits}bit_{flat_tag}"
        variants.append(ctx.variant(name, uniform_config(bits, cfg["flat_alpha"]), epochs, info))
    if cfg["mixed"] is not None:
        mixed = resolve_layers(cfg["mixed"], ctx.model, cfg["flat_alpha"])
        info = {
            "series": f"mixed ({cfg['flat_alpha']})",
            "bits": math.nan,
            "alpha": str(cfg["flat_alpha"]),
        }
        variants.append(ctx.variant(f"{ctx.prefix}_mixed_{flat_tag}", mixed, epochs, info))
    tolerated = [v for v in scan if ctx.within(v)]
    chosen = tolerated[0] if tolerated else scan[-1]
    bits = chosen.info["bits"]
    primary = _choose_primary(
        ctx,
        variants,
        chosen,
        f"{ctx.prefix}_{bits}bit",
        {"series": "primary", "bits": bits, "alpha": str(cfg["alpha"])},
    )
    header = (
        f"# smallest uniform bit width with validation accuracy within {cfg['tolerance']} of "
        f"fp32 ({ctx.fp32.val_accuracy:.4f}): {bits}" + ("" if tolerated else " (none: widest)")
    )
    return _variants_result(ctx, variants, primary, figures.uniform, header)


@register("one_bit_rounds")
def _one_bit_rounds(ctx: Context) -> MethodResult:
    cfg, alpha, epochs = ctx.config, ctx.config["alpha"], ctx.scan_epochs()
    layers = ctx.names(list(cfg["layers"]) or ctx.weight_layers, "weight", "layers")
    acts = ctx.names(list(cfg["activations"]), "activation", "activations")
    base = {n: weight_spec(cfg["base_bits"], alpha) for n in ctx.weight_layers}
    one = weight_spec(1, alpha)
    variants = []

    def round_(name, config, round_name, one_bit):
        info = {"round": round_name, "one_bit": ",".join(one_bit) or "-", "n_one_bit": len(one_bit)}
        v = ctx.variant(f"{ctx.prefix}_{name}", config, epochs, info)
        v.info["within_tolerance"] = ctx.within(v)
        variants.append(v)
        return v

    candidates = [round_(f"base_{cfg['base_bits']}bit", base, "base", [])]
    singles = [round_(f"1bit_{n}", {**base, n: one}, "single layer", [n]) for n in layers]
    tolerant = [n for n, v in zip(layers, singles, strict=True) if ctx.within(v)]
    act_base, act_one_bit = base, []
    if tolerant:
        combined = {**base, **{n: one for n in tolerant}}
        candidates.append(round_("1bit_combined", combined, "tolerant layers together", tolerant))
        act_base, act_one_bit = combined, tolerant
    act_specs = {a: activation_spec(ctx.kinds[a][1], 1) for a in acts}
    for a in acts:
        candidates.append(
            round_(f"1bit_act_{a}", {**act_base, a: act_specs[a]}, "activation", act_one_bit + [a])
        )
    if len(acts) > 1:
        candidates.append(
            round_(
                "1bit_act_all",
                {**act_base, **act_specs},
                "activations together",
                act_one_bit + acts,
            )
        )
    ok = [v for v in candidates if v.info["within_tolerance"]] or candidates[:1]
    # fewest weight bits, then most 1-bit activations, then best validation accuracy
    chosen = min(ok, key=lambda v: (v.metrics["model_bits"], -v.info["n_one_bit"], -v.val_accuracy))
    primary = _choose_primary(
        ctx,
        variants,
        chosen,
        f"{ctx.prefix}_best",
        {**chosen.info, "round": f"best: {chosen.name}"},
    )
    primary.info["within_tolerance"] = ctx.within(primary)
    header = (
        f"# layers tolerating 1 bit (validation accuracy within {cfg['tolerance']} of fp32 "
        f"{ctx.fp32.val_accuracy:.4f}): {', '.join(tolerant) or 'none'}\n"
        f"# chosen round: {chosen.name}"
    )
    return _variants_result(ctx, variants, primary, figures.rounds, header)


def _search_params(ctx: Context, entry, layers: list[str], acts: list[str]) -> dict[str, int]:
    """The search's parameters (bits of each searched layer and activation) of a configuration
    entry of ``start_with``; its bit widths must be among the searched ones."""
    cfg = ctx.config
    modules = dict(quantize_model(ctx.model, resolve_layers(entry, ctx.model)).named_modules())
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


@register("po2_vs_auto")
def _po2_vs_auto(ctx: Context) -> MethodResult:
    variants = []
    for label, entry in ctx.config["configurations"].items():
        for alpha in ("auto", "auto_po2"):
            config = resolve_layers(entry, ctx.model, alpha)
            info = {"configuration": label, "alpha": alpha}
            name = f"{ctx.prefix}_{label}_{_ALPHA_TAGS[alpha]}"
            variants.append(ctx.variant(name, config, ctx.finetune.epochs, info))
    first_po2 = variants[1]
    first_po2.primary = True
    return _variants_result(ctx, variants, first_po2, figures.po2_vs_auto)


# --------------------------------------------------------------------------------------------------
# ternary / binary weights (seed 001) and pruning with quantization (seed 004)

#: hyperparameters of each ternary method type, as ``ternary.make_ternarizer`` takes them
_TERNARY_PARAMS = {"ttq": ("t", "init"), "attq": ("t_min", "t_max", "init"), "dorefa": ("k",)}
#: inputs per Hessian batch (every batch's double-backprop graph is kept while sampling)
HESSIAN_BATCH = 32


def hessian_layers(ctx: Context) -> tuple[list[str], pd.DataFrame]:
    """``layers: hessian``: the selected layers and a per-layer table of traces and ranks.

    Hutchinson traces of the fp32 model's weight layers on ``hessian.samples`` training inputs (a
    seeded draw, batches of ``HESSIAN_BATCH``, the fine-tuning loss); ``hessian.select_layers`` takes
    the lowest traces per weight until ``hessian.fraction`` of the weights is selected.
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
    cw = ctx.finetune.class_weights
    loss_fn = nn.CrossEntropyLoss(weight=None if cw is None else torch.tensor(cw).float())
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
        f"# test accuracy {m['accuracy']:.4f} (fp32 {ctx.fp32.metrics['accuracy']:.4f}), MCC "
        f"{m['mcc']:.4f}, validation accuracy {v.val_accuracy:.4f} (fp32 "
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


def sparsest_within(variants: list[Variant]) -> tuple[Variant, bool]:
    """The lowest-density variant with ``info["within_tolerance"]`` (ties: better validation
    accuracy, then the earlier one), else the most accurate on validation (ties: sparser); and
    whether one was within tolerance."""
    ok = [v for v in variants if v.info["within_tolerance"]]
    if ok:
        return min(ok, key=lambda v: (v.metrics["density"], -v.val_accuracy)), True
    return max(
        variants, key=lambda v: (np.nan_to_num(v.val_accuracy, nan=-1.0), -v.metrics["density"])
    ), False


@register("q_then_p_iter")
@register("p_then_q_iter")
@register("p_then_q_epochs")
def _prune(ctx: Context) -> MethodResult:
    cfg = ctx.config
    layers = cfg["layers"]
    if layers is not None:
        ctx.names(list(layers), "weight", "layers")
    variants, reports = [], {}
    for gamma in cfg["gammas"]:
        name = f"{ctx.prefix}_g{float(gamma)}"
        schedule = make_schedule(ctx.type, gamma, cfg["bits"], layers)

        def finalize(model, schedule=schedule, name=name):
            reports[name] = schedule.finalize(model)  # pruned + quantized values, masks applied

        info = {"gamma": float(gamma), "bits": cfg["bits"]}
        v = ctx.train_variant(
            name,
            copy.deepcopy(ctx.model),
            ctx.finetune.epochs,
            info,
            step=schedule.step,
            finalize=finalize,
            step_state=schedule,
        )
        v.info["density_pruned_layers"] = reports[name]["density"]
        v.info["within_tolerance"] = ctx.within(v)
        variants.append(v)
    primary, ok = sparsest_within(variants)
    primary.primary = True
    table = variant_table(variants, ctx.fp32)
    header = (
        f"# {ctx.type}: gamma-sigma pruning with {cfg['bits']}-bit uniform quantization (seed 004), "
        f"gammas {list(cfg['gammas'])}, layers: {', '.join(layers) if layers else 'every weight layer'}\n"
        f"# primary: the lowest density whose validation accuracy is within {cfg['tolerance']} of fp32 "
        f"({ctx.fp32.val_accuracy:.4f}): gamma {primary.info['gamma']}"
        + ("" if ok else " (none within tolerance: the most accurate)")
    )
    cols = ["variant", "gamma", "density", "val_accuracy", "accuracy", "mcc", "weights_mbit"]
    per_layer = pd.DataFrame(
        [
            {"layer": n, **{k: r[k] for k in ("n_weights", "nonzero", "beta")}, **r["grid"]}
            for n, r in reports[primary.name]["layers"].items()
        ]
    )
    sections = [
        "# variants\n" + table[cols].to_string(index=False, float_format="%.6g"),
        "# primary per layer (beta = gamma x sigma; values offset + k x step)\n"
        + per_layer.to_string(index=False, float_format="%.6g"),
    ]
    return MethodResult(
        variants,
        table,
        entry_notes(
            ctx, primary, header, sections, paste_entry(ctx, gammas=[primary.info["gamma"]])
        ),
        lambda path, title: figures.pruning(table, path, title),
    )


__all__ = [
    "METHOD_TYPES",
    "PRESETS",
    "Context",
    "MethodResult",
    "Variant",
    "activation_spec",
    "entry_notes",
    "forgiving_delta",
    "forgiving_score",
    "hessian_layers",
    "layer_spec",
    "layer_table",
    "module_kinds",
    "normalize_method",
    "paste_entry",
    "pasteable",
    "register",
    "resolve_layers",
    "run_method",
    "sparsest_within",
    "stats_lines",
    "ternary_table",
    "variant_table",
    "weight_spec",
    "with_alpha",
]
