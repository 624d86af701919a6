"""Compression method type ``int8``: post-training static int8 run by ONNX Runtime (Hu).

``run_int8_method`` exports the fp32 model to ONNX, quantizes it (``export.onnx.export_int8``: QDQ,
per-channel symmetric int8 weights, activations calibrated on ``calibration_samples`` training
inputs) and measures, in one run, the **real** int8 engine against fp32 ONNX Runtime and fp32
PyTorch: test metrics from the int8 ORT session's outputs (the task's metrics of its probabilities:
``task.activation`` turns the outputs into probabilities, e.g. a softmax over classes or a sigmoid
per voxel), file sizes and interleaved latency medians
(``export.onnx.compare_latency``). It returns an ``Int8Result`` (metrics.json content, the summary row, a
details table, notes and a figure) that the workflow writes next to the int8 ``model.onnx``.

Size conventions (written into the notes):

- ``model_bits``: the weight and bias tensors of every Conv/Gemm/MatMul **as stored** in the int8
  ONNX file: int8 weights (8 bits; with ``reduce_range`` only 7-bit values are used, still stored in
  8), int32 biases (ORT quantizes a bias with scale = input scale x weight scale), any tensor left in
  float 32 bits. The per-channel weight scales and zero points and the activations' scales and zero
  points are counted apart (``quant_param_bits``), as the other methods' ``model_bits`` leave out
  their per-channel scales. Folded BatchNorm parameters are part of the stored weights and biases.
- ``file_bytes``: the int8 ``.onnx`` file; ``fp32_onnx_bytes``: the fp32 export it came from;
  ``size_ratio`` = fp32_onnx_bytes / file_bytes (how many times smaller).
- ``density``, ``cr_g_*``, ``nops``, ``ec_g`` (``metrics.compression_report``) are measured on the
  dequantized stored weights at 8 bits (one scale factor per output channel).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import platform
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import torch
from onnx import numpy_helper
from torch import nn

from ...errors import ConfigError
from ...export import onnx as qonnx
from ...export import torch_int8
from ...runtime.base import torch_threads
from ...tasks import CLASSIFICATION, Task, error_rate
from ...train import predict_proba, to_tensor
from ..cost import model_bits as torch_model_bits
from ..metrics import compression_report, summary_scalars
from ..prune import weight_layers
from .registry import SECOND_SCORES, Context, MethodResult, normalize_method, register

TYPE = "int8"
EVAL_BATCH = 64
#: ops whose input 1 is a weight and input 2 (if any) a bias
WEIGHT_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
ENGINES = ("torch_fp32", "ort_fp32", "ort_int8", "torch_int8")

Data = tuple[np.ndarray, np.ndarray]


@dataclasses.dataclass
class Int8Result:
    metrics: dict  #: metrics.json (the summary row's fields plus nested details)
    rows: list[dict]  #: summary rows (the int8 model)
    details: pd.DataFrame  #: latency, size and accuracy per engine, then op counts
    notes: str
    plot: Callable  #: ``plot(path, title)``


def method_name(name: str) -> str:
    """The ``method`` column: the config name, prefixed with ``int8_`` unless it starts with it."""
    return name if name.startswith(TYPE) else f"{TYPE}_{name}"


# --------------------------------------------------------------------------------------------------
# reading the stored weights


@dataclasses.dataclass
class StoredTensor:
    """A weight or bias tensor of the ONNX graph as stored, with its dequantized values."""

    name: str  #: stored initializer name (``<param>_quantized`` for quantized ones)
    dtype: str  #: numpy dtype name as stored
    bits: int
    values: np.ndarray  #: dequantized float values
    n_scales: int  #: scale factors (per channel) of a quantized tensor; 0 for float


@dataclasses.dataclass
class StoredLayer:
    op: str
    node: str
    weight: StoredTensor
    bias: StoredTensor | None

    @property
    def param(self) -> str:
        """The torch parameter name the weight came from, when the exporter kept it."""
        return self.weight.name.removesuffix("_quantized")

    @property
    def total_bits(self) -> int:
        b = self.bias
        return self.weight.values.size * self.weight.bits + (
            0 if b is None else b.values.size * b.bits
        )


def _dequantize(q: np.ndarray, scale: np.ndarray, zp: np.ndarray | None, axis: int) -> np.ndarray:
    """``(q - zero_point) x scale``, per tensor or per channel along ``axis`` (ONNX DequantizeLinear)."""
    scale = np.asarray(scale, np.float64)
    zp = np.zeros_like(scale) if zp is None else np.asarray(zp, np.float64)
    if scale.size > 1:
        shape = [1] * q.ndim
        shape[axis] = scale.size
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    else:
        scale, zp = scale.reshape(()), zp.reshape(())
    return ((q.astype(np.float64) - zp) * scale).astype(np.float32)


def stored_layers(path: str | Path) -> tuple[list[StoredLayer], int]:
    """Weight layers of an (int8 QDQ or fp32) ONNX file in graph order, and the bits of the
    quantization parameters (scales and zero points of weights and activations) as stored."""
    m = qonnx.load_onnx(path)
    inits = {i.name: i for i in m.graph.initializer}
    producer = {out: n for n in m.graph.node for out in n.output}
    qparams: set[str] = set()
    for n in m.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            qparams.update(i for i in n.input[1:] if i in inits)

    def tensor(name: str) -> StoredTensor | None:
        if name in inits:  # a float (not quantized) tensor
            arr = numpy_helper.to_array(inits[name])
            return StoredTensor(name, arr.dtype.name, arr.dtype.itemsize * 8, arr, 0)
        node = producer.get(name)
        if node is None or node.op_type != "DequantizeLinear" or node.input[0] not in inits:
            return None
        q = numpy_helper.to_array(inits[node.input[0]])
        scale = numpy_helper.to_array(inits[node.input[1]])
        zp = numpy_helper.to_array(inits[node.input[2]]) if len(node.input) > 2 else None
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        values = _dequantize(q, scale, zp, axis if axis >= 0 else q.ndim + axis)
        return StoredTensor(node.input[0], q.dtype.name, q.dtype.itemsize * 8, values, scale.size)

    layers = []
    for n in m.graph.node:
        if n.op_type not in WEIGHT_OPS or len(n.input) < 2:
            continue
        w = tensor(n.input[1])
        if w is None:  # e.g. MatMul of two activations
            continue
        b = tensor(n.input[2]) if len(n.input) > 2 and n.input[2] else None
        layers.append(StoredLayer(n.op_type, n.name, w, b))
    qbits = sum(
        int(np.prod(inits[k].dims, dtype=np.int64))
        * onnx.helper.tensor_dtype_to_np_dtype(inits[k].data_type).itemsize
        * 8
        for k in qparams
    )
    return layers, int(qbits)


def dequantized_copy(
    model: nn.Module, layers: list[StoredLayer]
) -> tuple[nn.Module, dict[str, StoredLayer]]:
    """A copy of ``model`` whose Conv/Linear weights are the stored (dequantized) int8 weights.

    Layers are matched by parameter name (``<module>.weight``), then the rest in order when the
    shapes agree (an exporter that folds BatchNorm renames the weight). Returns the copy and the
    torch layer name -> stored layer mapping; unmatched torch layers keep their fp32 weights.
    """
    copy_ = copy.deepcopy(model).eval()
    torch_layers = weight_layers(copy_)
    matched: dict[str, StoredLayer] = {}
    rest = []
    for sl in layers:
        mod = sl.param.removesuffix(".weight")
        if sl.param.endswith(".weight") and mod in torch_layers and mod not in matched:
            matched[mod] = sl
        else:
            rest.append(sl)
    free = [n for n in torch_layers if n not in matched]
    for sl in rest:
        if not free:
            break
        shape = tuple(torch_layers[free[0]].weight.shape)
        if sl.weight.values.shape == shape:
            matched[free.pop(0)] = sl
    matched = {
        n: sl
        for n, sl in matched.items()
        if tuple(torch_layers[n].weight.shape) == sl.weight.values.shape
    }
    with torch.no_grad():
        for n, sl in matched.items():
            torch_layers[n].weight.copy_(torch.from_numpy(sl.weight.values))
    return copy_, matched


def bits_per_layer(matched: Mapping[str, StoredLayer], model: nn.Module) -> str:
    """``layer=8/32`` (weight bits / bias bits as stored) per weight layer, in model order."""
    items = []
    for n in weight_layers(model):
        sl = matched.get(n)
        if sl is None:
            items.append(f"{n}=32")
            continue
        b = sl.bias
        items.append(f"{n}={sl.weight.bits}" + ("" if b is None else f"/{b.bits}"))
    return ",".join(items)


# --------------------------------------------------------------------------------------------------
# the method


def _latency_inputs(x: np.ndarray, batch: int) -> np.ndarray:
    """``batch`` inputs: the first test inputs, repeated when the test set is smaller."""
    if len(x) == 0:
        raise ConfigError("int8 latency: the test set is empty")
    return np.resize(x, (batch, *x.shape[1:])) if len(x) < batch else x[:batch]


@register(TYPE)
def _int8(ctx: Context) -> MethodResult:
    """Type ``int8`` in the registry: post-training, it writes an ONNX model (not a packed one) and
    times engines, so it runs through ``run_int8_method``, not ``run_method``."""
    raise ConfigError(
        f"method {ctx.name!r} has type {TYPE!r} (post-training static int8 through ONNX Runtime): "
        "run it with quantscan.compress.methods.run_int8_method, which writes an ONNX model"
    )


def run_int8_method(
    name: str,
    config: Mapping,
    model: nn.Module,
    train: Data,
    test: Data,
    class_names,
    seed: int,
    int8_path: str | Path,
    *,
    threads: int = 1,
    extra_sets: Mapping[str, Data] | None = None,
    scenario: str = "",
    log: logging.Logger | None = None,
    task: Task = CLASSIFICATION,
    torch_int8_path: str | Path | None = None,
    arch: Mapping | None = None,
) -> Int8Result:
    """Quantize ``model`` to static int8 with ONNX Runtime, write ``int8_path``, measure it.

    With ``torch_int8_path`` (and the model's ``arch``), the same calibration inputs also quantize
    it in PyTorch (``export.torch_int8``: fbgemm kernels, much faster than ONNX Runtime for 3-D
    convolutions); that file is written, scored and timed beside the ONNX models (engine
    ``torch_int8``), or records why the model cannot be (FX cannot trace it).

    ``config`` is the method's config entry (``type: int8``; defaults filled from the schema).
    ``extra_sets`` maps names to extra test sets whose inputs all have one true class: their
    ``fpr_<name>`` is the share the int8 model gets wrong (a false-positive rate when that class
    is the negative one; ``tasks.error_rate``). Latency runs ``threads`` intra-op threads for each
    engine. ``task``: the learning task of the model and the data (probabilities, metrics).
    """
    log = log or logging.getLogger(__name__)
    cfg = normalize_method(config)
    if cfg["type"] != TYPE:
        raise ConfigError(f"method {name!r} has type {cfg['type']!r}, not {TYPE!r}")
    start = time.perf_counter()
    model = model.eval()
    x_train, _ = train
    x_test, y_test = test
    if len(x_train) == 0 or len(x_test) == 0:
        raise ConfigError(f"method {name!r}: needs training inputs (calibration) and test inputs")
    method = method_name(name)

    with tempfile.TemporaryDirectory(prefix="quantscan-int8-method-") as tmp:
        fp32_path = Path(tmp) / "model.fp32.onnx"
        built = qonnx.export_int8(
            model,
            x_train,
            fp32_path,
            int8_path,
            calibration_samples=cfg["calibration_samples"],
            seed=seed,
            calibrate_method=cfg["calibration"],
            percentile=cfg["percentile"],
            activation_type=cfg["activation_type"],
            reduce_range=cfg["reduce_range"],
            # a dense task's fully convolutional model runs on blocks of other shapes than its
            # training patches
            dynamic_spatial=task.dense,
        )
        n_cal = built["calibration_samples"]
        qtorch, torch_int8_note = None, ""
        if torch_int8_path is not None:
            try:
                qtorch = torch_int8.quantize(
                    model, qonnx.calibration_sample(x_train, cfg["calibration_samples"], seed)
                )
            except ConfigError as err:
                torch_int8_note = str(err)
                log.warning("%s: no PyTorch int8 model: %s", method, err)
            torch_int8.save(torch_int8_path, dict(arch or {}), qtorch, torch_int8_note)
        stored_int8 = qonnx.describe_onnx(int8_path)
        stored_fp32 = qonnx.describe_onnx(fp32_path)
        runtime_ops = {
            "ort_fp32": qonnx.runtime_op_counts(fp32_path),
            "ort_int8": qonnx.runtime_op_counts(int8_path),
        }
        engines = {
            k: qonnx.OrtEngine(path, intra_op_threads=threads, activation=task.activation)
            for k, path in (("ort_fp32", fp32_path), ("ort_int8", int8_path))
        }
        proba = {"torch_fp32": predict_proba(model, x_test, EVAL_BATCH, task)}
        for k, eng in engines.items():
            proba[k] = eng.predict_proba(x_test, EVAL_BATCH)
        if qtorch is not None:
            with torch_threads(threads):
                proba["torch_int8"] = predict_proba(qtorch, x_test, EVAL_BATCH, task)
        fpr = {
            f"fpr_{n}": error_rate(task, y, engines["ort_int8"].predict_proba(x, EVAL_BATCH))
            for n, (x, y) in (extra_sets or {}).items()
            if len(y)
        }
        latency = qonnx.compare_latency(
            model,
            fp32_path,
            int8_path,
            _latency_inputs(x_test, cfg["latency_batch"]),
            threads=threads,
            repeats=cfg["latency_repeats"],
            torch_int8=qtorch,
        )
        fp32_onnx_bytes = fp32_path.stat().st_size

    evals = {k: task.metrics(y_test, p, list(class_names)) for k, p in proba.items()}
    #: the scores compared across engines: accuracy and the task's second one (MCC, ...)
    scores = ["accuracy", *[k for k, _ in SECOND_SCORES if k in evals["ort_int8"]][:1]]
    layers, qparam_bits = stored_layers(int8_path)
    dq_model, matched = dequantized_copy(model, layers)
    bits8 = {n: matched[n].weight.bits for n in matched}
    # as the other methods (methods.Context.compression_metrics): reference = the dense fp32
    # version of the architecture; one scale factor per output channel of every int8 layer
    report = compression_report(
        dq_model,
        to_tensor(x_test[:1], channels_last=False),
        bits=bits8,
        n_sf={n: matched[n].weight.n_scales for n in matched},
    )
    fp32_bits = torch_model_bits(model)
    int8_bits = sum(sl.total_bits for sl in layers)
    file_bytes = int(Path(int8_path).stat().st_size)
    # the share of inputs (the mean share of voxels) with fp32's predicted label
    fp32_labels = task.labels(proba["torch_fp32"])
    agreement = float(task.per_input_accuracy(fp32_labels, proba["ort_int8"]).mean())
    m = evals["ort_int8"]
    metrics = {
        **m,
        "scenario": scenario,
        "method": method,
        "model_bits": int8_bits,
        "size_pct": 100.0 * int8_bits / fp32_bits,
        "bits_per_layer": bits_per_layer(matched, model),
        "file_bytes": file_bytes,
        "fp32_onnx_bytes": int(fp32_onnx_bytes),
        "size_ratio": fp32_onnx_bytes / file_bytes,
        "quant_param_bits": qparam_bits,
        "fp32_model_bits": fp32_bits,
        "fp32_accuracy": evals["torch_fp32"]["accuracy"],
        **{f"fp32_{k}": evals["torch_fp32"][k] for k in scores[1:]},
        "ort_fp32_accuracy": evals["ort_fp32"]["accuracy"],
        "accuracy_delta": m["accuracy"] - evals["torch_fp32"]["accuracy"],
        "agreement_fp32": agreement,
        "speedup_vs_torch_fp32": latency["speedup_vs_torch_fp32"],
        "speedup_vs_ort_fp32": latency["speedup_vs_ort_fp32"],
        "latency_torch_fp32_s": latency["torch_fp32_s"],
        "latency_ort_fp32_s": latency["ort_fp32_s"],
        "latency_ort_int8_s": latency["ort_int8_s"],
        "latency_batch": latency["batch"],
        "latency_threads": latency["threads"],
        **(
            {
                "torch_int8_accuracy": evals["torch_int8"]["accuracy"],
                "latency_torch_int8_s": latency["torch_int8_s"],
                "torch_int8_speedup_vs_torch_fp32": latency["torch_int8_speedup_vs_torch_fp32"],
                "torch_int8_speedup_vs_ort_fp32": latency["torch_int8_speedup_vs_ort_fp32"],
                "torch_int8_file_bytes": int(Path(torch_int8_path).stat().st_size),
            }
            if qtorch is not None
            else {}
        ),
        **fpr,
        **summary_scalars(report),
        "int8": {
            "calibration_samples": int(n_cal),
            "onnx_metadata": stored_int8["metadata"],
            "stored_ops": stored_int8["op_counts"],
            "runtime_ops": runtime_ops["ort_int8"],
            "latency": latency,
            "cpu_has_vnni": qonnx.cpu_has_vnni(),
            "machine": platform.machine(),
            "unmatched_layers": [n for n in weight_layers(model) if n not in matched],
            "torch_int8": "written" if qtorch is not None else (torch_int8_note or "not asked"),
            "seconds": round(time.perf_counter() - start, 2),
        },
        "engines": {k: {kk: e[kk] for kk in scores} for k, e in evals.items()},
    }
    metrics["compression"] = {"name": name, "type": TYPE, "config": cfg}
    log.info(
        "%s: int8 accuracy %.4f (torch fp32 %.4f, ORT fp32 %.4f), %d -> %d bytes (%.2fx), "
        "speedup %.2fx vs torch fp32, %.2fx vs ORT fp32 (batch %d, %d thread(s))",
        method,
        m["accuracy"],
        evals["torch_fp32"]["accuracy"],
        evals["ort_fp32"]["accuracy"],
        fp32_onnx_bytes,
        file_bytes,
        metrics["size_ratio"],
        latency["speedup_vs_torch_fp32"],
        latency["speedup_vs_ort_fp32"],
        latency["batch"],
        latency["threads"],
    )
    details = details_table(
        latency,
        evals,
        {"ort_fp32": stored_fp32, "ort_int8": stored_int8},
        runtime_ops,
        metrics,
        scores,
    )
    notes = notes_text(name, cfg, metrics, latency, n_cal)
    sizes = {
        "torch_fp32": fp32_bits / 8,
        "ort_fp32": float(fp32_onnx_bytes),
        "ort_int8": float(file_bytes),
    }
    if qtorch is not None:
        sizes["torch_int8"] = float(metrics["torch_int8_file_bytes"])
    accs = {k: e["accuracy"] for k, e in evals.items()}

    def plot(path, title):
        from .. import compare

        compare.engine_bars(latency, sizes, accs, path, title)

    row = {k: v for k, v in metrics.items() if not isinstance(v, dict | list)}
    return Int8Result(metrics, [row], details, notes, plot)


def details_table(
    latency, evals, stored, runtime_ops, metrics, scores=("accuracy", "mcc")
) -> pd.DataFrame:
    """One row per quantity, one column per engine: latency, size, the ``scores`` (test metrics),
    then op counts."""
    batch = latency["batch"]
    engines = [e for e in ENGINES if f"{e}_s" in latency]
    rows = []

    def add(section, item, values):
        rows.append({"section": section, "item": item, **{e: values.get(e) for e in engines}})

    secs = {e: latency[f"{e}_s"] for e in engines}
    add("latency", f"median_s_batch{batch}", secs)
    add("latency", "us_per_input", {e: 1e6 * s / batch for e, s in secs.items()})
    add("latency", "inputs_per_s", {e: batch / s for e, s in secs.items()})
    add("latency", "speedup_of_int8", {e: s / secs["ort_int8"] for e, s in secs.items()})
    add(
        "size",
        "file_bytes",
        {
            "torch_fp32": metrics["fp32_model_bits"] // 8,
            "ort_fp32": metrics["fp32_onnx_bytes"],
            "ort_int8": metrics["file_bytes"],
            "torch_int8": metrics.get("torch_int8_file_bytes"),
        },
    )
    add(
        "size",
        "model_bits",
        {
            "torch_fp32": metrics["fp32_model_bits"],
            "ort_fp32": metrics["fp32_model_bits"],
            "ort_int8": metrics["model_bits"],
        },
    )
    for key in scores:
        add("accuracy", key, {e: evals[e][key] for e in engines})
    for e in ("ort_fp32", "ort_int8"):
        for op, n in sorted(stored[e]["op_counts"].items()):
            add("stored_ops", op, {e: n})
        for op, n in sorted(runtime_ops[e].items()):
            add("runtime_ops", op, {e: n})
    table = pd.DataFrame(rows)
    # one row per (section, item): merge the per-engine op counts, ops sorted within a section
    table = table.groupby(["section", "item"], sort=False, as_index=False).first()
    order = {s: i for i, s in enumerate(dict.fromkeys(table.section))}
    is_ops = table.section.str.endswith("_ops")
    key = table.section.map(order) * 10_000 + np.where(is_ops, table.item.rank(), table.index)
    return table.iloc[np.argsort(key.to_numpy(), kind="stable")].reset_index(drop=True)


def notes_text(name, cfg, metrics, latency, n_cal) -> str:
    meta = metrics["int8"]["onnx_metadata"]
    lines = [
        f"# {metrics['method']} (type int8): post-training static int8, ONNX Runtime QDQ (Hu)",
        f"calibration: {cfg['calibration']} on {n_cal} training inputs"
        + (f" (percentile {cfg['percentile']})" if cfg["calibration"] == "percentile" else ""),
        f"weights: int8 symmetric per channel; activations: {cfg['activation_type']} per tensor; "
        f"reduce_range (7-bit weights): {meta.get('quantscan.reduce_range')} "
        f"(config {cfg['reduce_range']}; this CPU has VNNI: {metrics['int8']['cpu_has_vnni']})",
        "",
        "## test metrics (int8 from the ONNX Runtime int8 session)",
        f"accuracy: int8 {metrics['accuracy']:.4f}, torch fp32 {metrics['fp32_accuracy']:.4f}, "
        f"ORT fp32 {metrics['ort_fp32_accuracy']:.4f} (delta {100 * metrics['accuracy_delta']:+.2f} "
        f"points); "
        + "".join(
            f"{label} int8 {metrics[k]:.4f}, fp32 {metrics[f'fp32_{k}']:.4f}; "
            for k, label in SECOND_SCORES
            if f"fp32_{k}" in metrics
        )
        + f"same predicted label as fp32: {metrics['agreement_fp32']:.4f}",
        "",
        "## size",
        f"file: {metrics['file_bytes']} bytes int8 vs {metrics['fp32_onnx_bytes']} fp32 ONNX "
        f"({metrics['size_ratio']:.2f}x smaller)",
        f"model_bits: {metrics['model_bits']} ({metrics['size_pct']:.2f}% of fp32's "
        f"{metrics['fp32_model_bits']}): weights and biases as stored - int8 weights 8 bits, int32 "
        "biases 32 bits, float tensors 32 bits; scales and zero points apart: "
        f"{metrics['quant_param_bits']} bits",
        f"per layer (weight/bias bits): {metrics['bits_per_layer']}",
        "",
        f"## latency (batch {latency['batch']}, {latency['threads']} thread(s), median of "
        f"{latency['repeats']} interleaved repeats)",
    ]
    for e in [e for e in ENGINES if f"{e}_s" in latency]:
        s = latency[f"{e}_s"]
        lines.append(f"{e}: {1e3 * s:.3f} ms ({1e6 * s / latency['batch']:.2f} us per input)")
    lines += [
        f"speedup_vs_torch_fp32: {latency['speedup_vs_torch_fp32']:.3f}",
        f"speedup_vs_ort_fp32: {latency['speedup_vs_ort_fp32']:.3f}",
        (
            f"PyTorch int8 (fbgemm, {metrics['torch_int8_file_bytes']} bytes): accuracy "
            f"{metrics['torch_int8_accuracy']:.4f}, "
            f"{latency['torch_int8_speedup_vs_torch_fp32']:.3f}x torch fp32, "
            f"{latency['torch_int8_speedup_vs_ort_fp32']:.3f}x ORT fp32"
            if "torch_int8_s" in latency
            else f"PyTorch int8: {metrics['int8']['torch_int8']}"
        ),
        f"torch {latency['torch_version']}, onnxruntime {latency['onnxruntime_version']}, "
        f"{metrics['int8']['machine']}",
        "",
        "## ops ORT runs (after fusion)",
        ", ".join(f"{k}={v}" for k, v in sorted(metrics["int8"]["runtime_ops"].items())),
        "QLinear*/QGemm ops run in integer arithmetic; Quantize/DequantizeLinear around ops without",
        "an integer kernel (e.g. ReduceMean, ConvTranspose) run in fp32. Tiny models at small batches gain little",
        "from int8 (compression.md section 8): the speedup is a measurement on this machine.",
    ]
    if metrics["int8"]["unmatched_layers"]:
        lines.append(
            f"layers without a stored int8 weight (fp32 in density/NOPs): "
            f"{metrics['int8']['unmatched_layers']}"
        )
    return "\n".join(lines) + "\n"
