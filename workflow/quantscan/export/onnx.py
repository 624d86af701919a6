"""ONNX export and real int8 inference through ONNX Runtime: static post-training quantization
(after Hu, quantization for connectomics).

Pipeline: ``torch.onnx.export`` (fp32, opset >= 17, dynamic batch axis, ``dynamo=False`` so no
onnxscript is needed and the legacy exporter's graph is stable) -> ``quant_pre_process`` (shape
inference + graph optimization, as ORT recommends) -> ``quantize_static`` in QDQ format with
per-channel symmetric int8 weights, calibrated on training arrays (MinMax by default; Percentile or
Entropy on request). ORT fuses the QDQ pattern into QLinearConv/QLinearMatMul kernels at session
time; :func:`runtime_op_counts` shows which kernels it actually runs.

Conventions: activations default to **uint8 asymmetric** (per-tensor scale and zero point from
calibration; uses all 256 levels on ReLU outputs) with int8 symmetric per-channel weights (U8S8, the
MLAS path ORT recommends on x86); ``activation_type="int8"`` gives S8S8. On x86 CPUs without VNNI,
MLAS multiplies u8 x s8 with ``vpmaddubsw``, whose int16 pair sums saturate (2·255·127 > 32767): on
such a CPU (AVX2 only) a random tiny Conv3d model and a trained tiny 2-D CNN had ~10x and ~25x the
mean logit error they have with 7-bit weights, and int8 activations gave the same error. ``reduce_range=None`` therefore picks 7-bit weights
when the machine running the quantization lacks VNNI; pass it explicitly when the int8 model will run
on another CPU. The choices made are written into the model's ``metadata_props``. Ops without an
integer kernel run as DQ -> fp32 -> Q. :func:`export_onnx` writes a mean over all spatial axes
(``x.mean(dim=(2, 3))``, a ``ReduceMean``) as ``GlobalAveragePool``, which ORT runs in int8
(``QLinearGlobalAveragePool``): a model with two such means (a squeeze-and-excitation gate and a
global pool) exported as ``ReduceMean`` left a dequantization of its whole last feature map in front of
each, and int8 was no faster than fp32 (a 2-core Xeon with VNNI, onnxruntime 1.32: 1.0-1.15x fp32
before, 1.2-1.5x after; docs/speed.md).

Contents: :func:`export_onnx` (fp32), :func:`quantize_onnx` and :func:`build_int8` (static int8),
:func:`export_int8` (the int8 export with a seeded calibration sample, used by the ``int8``
compression method and by any caller that needs an int8 model); loading and sessions:
:func:`load_onnx`, :func:`ort_session`, :class:`OrtEngine`; inspection: :func:`describe_onnx`,
:func:`runtime_op_counts`; :func:`compare_latency` times torch fp32, ORT fp32 and ORT int8.
"""

from __future__ import annotations

import collections
import functools
import platform
import statistics
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process
from torch import nn

from quantscan.atomic import atomic_path
from quantscan.errors import ConfigError
from quantscan.runtime.onnx_engine import load_onnx, ort_session

INPUT_NAME = "input"
OUTPUT_NAME = "output"
CALIBRATION_METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "percentile": CalibrationMethod.Percentile,
    "entropy": CalibrationMethod.Entropy,
}
ACTIVATION_TYPES = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}


def cpu_has_vnni() -> bool:
    """True on a CPU with int8 dot-product instructions that do not saturate (x86 VNNI/AMX, or not x86)."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return True  # ARM and others: MLAS widens to int32, no int16 saturation
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False  # unknown x86: assume the saturating path
    return any(f in flags for f in ("avx512_vnni", "avx_vnni", "amx_int8"))


def _as_float32(x) -> np.ndarray:
    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return np.ascontiguousarray(x, dtype=np.float32)


def export_onnx(
    model: nn.Module,
    example: np.ndarray | torch.Tensor,
    path: str | Path,
    *,
    opset: int = 17,
    dynamic_spatial: bool = False,
) -> Path:
    """Export ``model`` (in eval mode) to fp32 ONNX with a dynamic batch axis; return ``path``.

    ``dynamic_spatial``: the spatial axes (after batch and channels) of the input and the output
    are dynamic too (a fully convolutional dense model, run on blocks of any allowed shape)."""
    if opset < 17:
        raise ConfigError(f"ONNX opset must be >= 17 (got {opset})")
    example = torch.from_numpy(_as_float32(example))
    was_training = model.training
    model.eval()
    try:
        with atomic_path(path) as tmp, torch.no_grad():
            torch.onnx.export(
                model,
                (example,),
                str(tmp),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes=_dynamic_axes(example.ndim, dynamic_spatial),
                opset_version=opset,
                dynamo=False,
            )
            m = onnx.load(str(tmp))
            global_pool_means(m)
            onnx.save(shorten_names(m, node_names=True), str(tmp))
    finally:
        model.train(was_training)
    return Path(path)


def global_pool_means(m: onnx.ModelProto) -> int:
    """Rewrite ``ReduceMean`` over every spatial axis (all after batch and channels) as
    ``GlobalAveragePool`` (then ``Flatten`` where the mean drops the axes); returns how many.

    The same values (up to float summation order); ORT quantizes ``GlobalAveragePool`` into
    ``QLinearGlobalAveragePool`` but has no integer ``ReduceMean`` (module doc). In place; only
    ``ReduceMean`` with an ``axes`` attribute (opsets < 18) on an input of known rank."""
    inferred = onnx.shape_inference.infer_shapes(m)
    g = inferred.graph
    ranks = {
        v.name: len(v.type.tensor_type.shape.dim)
        for v in (*g.value_info, *g.input, *g.output)
        if v.type.tensor_type.HasField("shape")
    }
    nodes, changed = [], 0
    gap = functools.partial(onnx.helper.make_node, "GlobalAveragePool")
    flatten = functools.partial(onnx.helper.make_node, "Flatten")
    for n in m.graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        rank = ranks.get(n.input[0] if n.input else "", 0)
        if (
            n.op_type != "ReduceMean"
            or n.domain not in ("", "ai.onnx")
            or len(n.input) != 1
            or rank < 3
            or sorted(a % rank for a in attrs.get("axes", [])) != list(range(2, rank))
        ):
            nodes.append(n)
            continue
        if attrs.get("keepdims", 1):
            nodes.append(gap([n.input[0]], [n.output[0]], name=n.name))
        else:
            pooled = f"{n.output[0]}_pooled"
            nodes.append(gap([n.input[0]], [pooled], name=n.name))
            nodes.append(flatten([pooled], [n.output[0]], name=f"{n.name}_flatten", axis=1))
        changed += 1
    if changed:
        del m.graph.node[:]
        m.graph.node.extend(nodes)
    return changed


def shorten_names(m: onnx.ModelProto, *, node_names: bool = False) -> onnx.ModelProto:
    """Rename the graph's internal tensors to short hex ids; drop doc strings and, unless
    ``node_names`` (the fp32 export keeps them for ``quantize_onnx(nodes_to_exclude=...)``), node names.

    The exporters' names (``second_conv.bias_quantized_zero_point``, repeated in every
    node that reads a tensor) were half of a small 2-D CNN's int8 file. Kept: the graph's input and output
    names and the names of weight initializers (2-D or more, as ``stored_layers`` matches them to
    the torch layers), so the file still says which layer each weight belongs to. In place.
    """
    g = m.graph
    keep = {v.name for v in (*g.input, *g.output)}
    keep |= {t.name for t in g.initializer if len(t.dims) >= 2}
    short: dict[str, str] = {}

    def rename(name: str) -> str:
        if not name or name in keep:
            return name
        return short.setdefault(name, format(len(short), "x"))

    for t in g.initializer:
        t.name = rename(t.name)
        t.ClearField("doc_string")
    for n in g.node:
        if not node_names:
            n.name = ""
        n.ClearField("doc_string")
        n.input[:] = [rename(x) for x in n.input]
        n.output[:] = [rename(x) for x in n.output]
    g.ClearField("value_info")  # optional shapes; ORT infers them again
    m.ClearField("doc_string")
    return m


def compact_encoding(m: onnx.ModelProto) -> onnx.ModelProto:
    """Drop what an int8 QDQ file need not store; the outputs and ORT's integer kernels stay the same.

    * the all-zero zero points of the biases' (int32) and the convolution weights' (int8, 3-D or
      more) ``DequantizeLinear`` nodes: an optional input that defaults to 0 (a small 2-D CNN: 1 kB of its
      17 kB). Gemm weights keep theirs: without it ORT does not fuse the Gemm into ``QGemm``;
    * opset imports that no node uses.

    Initializers stay raw bytes, as the quantizer writes them. In place.
    """
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    for n in g.node:
        if n.op_type != "DequantizeLinear" or len(n.input) < 3:
            continue
        x, zp = inits.get(n.input[0]), inits.get(n.input[2])
        if x is None or zp is None or onnx.numpy_helper.to_array(zp).any():
            continue
        bias = x.data_type == onnx.TensorProto.INT32
        conv_weight = x.data_type == onnx.TensorProto.INT8 and len(x.dims) >= 3
        if bias or conv_weight:
            del n.input[2]
    used = {i for n in g.node for i in n.input}
    kept = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(kept)
    domains = {n.domain for n in g.node} | {"", "ai.onnx"}
    opsets = [o for o in m.opset_import if o.domain in domains]
    del m.opset_import[:]
    m.opset_import.extend(opsets)
    return m


class ArrayCalibrationReader(CalibrationDataReader):
    """Feeds calibration batches of an array to ``quantize_static`` (rewindable)."""

    def __init__(self, x: np.ndarray, input_name: str = INPUT_NAME, batch_size: int = 32):
        self.x = _as_float32(x)
        if len(self.x) == 0:
            raise ConfigError("calibration needs at least one sample")
        self.input_name = input_name
        self.batch_size = int(batch_size)
        self._start = 0

    def get_next(self) -> dict | None:
        if self._start >= len(self.x):
            return None
        batch = self.x[self._start : self._start + self.batch_size]
        self._start += self.batch_size
        return {self.input_name: batch}

    def rewind(self) -> None:
        self._start = 0


def quantize_onnx(
    fp32_path: str | Path,
    int8_path: str | Path,
    calib_x: np.ndarray,
    *,
    calibrate_method: str = "minmax",
    percentile: float = 99.999,
    batch_size: int = 32,
    activation_type: str = "uint8",
    per_channel: bool = True,
    reduce_range: bool | None = None,
    nodes_to_exclude: Iterable[str] | None = None,
) -> Path:
    """Static int8 QDQ quantization of an fp32 ONNX file, calibrated on ``calib_x``.

    ``reduce_range=None``: 7-bit weights unless this CPU has VNNI (see the module docstring).
    """
    if calibrate_method not in CALIBRATION_METHODS:
        raise ConfigError(
            f"unknown calibration method {calibrate_method!r}; known: {sorted(CALIBRATION_METHODS)}"
        )
    if activation_type not in ACTIVATION_TYPES:
        raise ConfigError(f"activation_type must be one of {sorted(ACTIVATION_TYPES)}")
    if reduce_range is None:
        reduce_range = not cpu_has_vnni()
    input_name = load_onnx(fp32_path, load_external_data=False).graph.input[0].name
    reader = ArrayCalibrationReader(calib_x, input_name, batch_size)
    extra = {"WeightSymmetric": True, "ActivationSymmetric": False}
    if calibrate_method == "percentile":
        extra["CalibPercentile"] = float(percentile)
    with tempfile.TemporaryDirectory(prefix="quantscan-int8-") as tmpdir:
        pre = Path(tmpdir) / "preprocessed.onnx"
        quant_pre_process(str(fp32_path), str(pre))
        with atomic_path(int8_path) as tmp:
            quantize_static(
                str(pre),
                str(tmp),
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                reduce_range=reduce_range,
                activation_type=ACTIVATION_TYPES[activation_type],
                weight_type=QuantType.QInt8,
                calibrate_method=CALIBRATION_METHODS[calibrate_method],
                nodes_to_exclude=list(nodes_to_exclude or []),
                extra_options=extra,
            )
            q = onnx.load(str(tmp))
            meta = {
                "quantscan.calibrate_method": calibrate_method,
                "quantscan.calibration_samples": str(len(reader.x)),
                "quantscan.activation_type": activation_type,
                "quantscan.weight_type": "int8",
                "quantscan.per_channel": str(bool(per_channel)),
                "quantscan.reduce_range": str(bool(reduce_range)),
            }
            if calibrate_method == "percentile":
                meta["quantscan.percentile"] = str(percentile)
            onnx.helper.set_model_props(q, {**{p.key: p.value for p in q.metadata_props}, **meta})
            compact_encoding(shorten_names(q))
            onnx.save(q, str(tmp))
    return Path(int8_path)


def free_spatial_dims(path: str | Path) -> Path:
    """Make the spatial axes (after batch and channels) of a model's input and output dynamic,
    in place, and drop the intermediate shapes inferred at the export shape (ONNX Runtime infers
    them per run): a fully convolutional model then runs on any allowed input shape."""
    m = onnx.load(str(path))
    for value in (*m.graph.input, *m.graph.output):
        dims = value.type.tensor_type.shape.dim
        for i in range(2, len(dims)):
            dims[i].ClearField("dim_value")
            dims[i].dim_param = f"d{i}"
    del m.graph.value_info[:]
    with atomic_path(path) as tmp:
        onnx.save(m, str(tmp))
    return Path(path)


def _dynamic_axes(ndim: int, spatial: bool) -> dict:
    axes = {0: "batch"}
    if spatial:
        axes.update({i: f"d{i}" for i in range(2, ndim)})
    return {INPUT_NAME: axes, OUTPUT_NAME: dict(axes)}


def build_int8(
    model: nn.Module,
    calib_x: np.ndarray,
    fp32_path: str | Path,
    int8_path: str | Path,
    *,
    opset: int = 17,
    dynamic_spatial: bool = False,
    **quantize_kwargs,
) -> dict[str, Path]:
    """Export ``model`` to fp32 ONNX and quantize it to int8; return ``{"fp32": ..., "int8": ...}``.

    ``calib_x`` are training inputs (shape ``(n, *input_shape)``); pass a few hundred samples.
    ``quantize_kwargs`` go to :func:`quantize_onnx` (calibrate_method, percentile, ...).
    """
    calib_x = _as_float32(calib_x)
    export_onnx(model, calib_x[:1], fp32_path, opset=opset)
    quantize_onnx(fp32_path, int8_path, calib_x, **quantize_kwargs)
    if dynamic_spatial:  # quantized at the calibration shape (shape inference needs one)
        for path in (fp32_path, int8_path):
            free_spatial_dims(path)
    return {"fp32": Path(fp32_path), "int8": Path(int8_path)}


def calibration_sample(x: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``min(n, len(x))`` inputs of ``x`` drawn without replacement (seeded), in their order in ``x``,
    as float32: the calibration set of :func:`export_int8`."""
    if n < 1:
        raise ConfigError(f"calibration needs at least one sample (asked for {n})")
    rng = np.random.default_rng(seed)
    n = min(int(n), len(x))
    return x[np.sort(rng.permutation(len(x))[:n])].astype(np.float32)


def export_int8(
    model: nn.Module,
    x: np.ndarray,
    fp32_path: str | Path,
    int8_path: str | Path,
    *,
    calibration_samples: int,
    seed: int,
    opset: int = 17,
    dynamic_spatial: bool = False,
    **quantize_kwargs,
) -> dict:
    """The int8 export of a model: ``calibration_samples`` seeded inputs of ``x`` (training inputs;
    :func:`calibration_sample`) calibrate :func:`build_int8`, which writes the fp32 export to
    ``fp32_path`` and the static int8 QDQ model to ``int8_path``. ``quantize_kwargs`` go to
    :func:`quantize_onnx` (calibrate_method, percentile, activation_type, reduce_range).

    Returns ``{"fp32": path, "int8": path, "calibration_samples": number used}``.
    """
    calib = calibration_sample(x, calibration_samples, seed)
    paths = build_int8(
        model,
        calib,
        fp32_path,
        int8_path,
        opset=opset,
        dynamic_spatial=dynamic_spatial,
        **quantize_kwargs,
    )
    return {**paths, "calibration_samples": len(calib)}


def describe_onnx(path: str | Path) -> dict:
    """Op-type counts, int8 initializers and file size of an ONNX file (as stored, before ORT fuses)."""
    m = load_onnx(path)
    ops = collections.Counter(n.op_type for n in m.graph.node)
    by_type = collections.Counter()
    for init in m.graph.initializer:
        by_type[onnx.helper.tensor_dtype_to_np_dtype(init.data_type).name] += int(
            np.prod(init.dims, dtype=np.int64)
        )
    return {
        "metadata": {p.key: p.value for p in m.metadata_props},
        "file_bytes": Path(path).stat().st_size,
        "op_counts": dict(ops),
        "initializer_elements": dict(by_type),
        "n_int8_initializers": sum(
            1 for i in m.graph.initializer if i.data_type == onnx.TensorProto.INT8
        ),
    }


def runtime_op_counts(path: str | Path) -> dict[str, int]:
    """Op types of the graph ORT actually runs on CPU (after its fusions; basic+extended level)."""
    with tempfile.TemporaryDirectory(prefix="quantscan-ort-") as tmpdir:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        so.optimized_model_filepath = str(Path(tmpdir) / "optimized.onnx")
        ort_session(path, so)
        m = onnx.load(so.optimized_model_filepath)
    return dict(collections.Counter(n.op_type for n in m.graph.node))


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class OrtEngine:
    """An ONNX Runtime CPU session with ``predict_proba``.

    ``activation`` turns the model's raw outputs into probabilities: ``"softmax"`` over axis 1
    (classes; also per voxel for segmentation logits ``(n, C, ...)``), ``"sigmoid"`` or ``"none"``.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        intra_op_threads: int = 1,
        inter_op_threads: int = 1,
        activation: str = "softmax",
    ):
        if activation not in ("softmax", "sigmoid", "none"):
            raise ConfigError(f"activation must be softmax, sigmoid or none (got {activation!r})")
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(intra_op_threads)
        so.inter_op_num_threads = int(inter_op_threads)
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = Path(path)
        self.activation = activation
        self.session = ort_session(path, so)
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def run(self, x: np.ndarray) -> np.ndarray:
        """Raw model output for one batch."""
        return self.session.run([self.output_name], {self.input_name: _as_float32(x)})[0]

    def predict_logits(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        x = _as_float32(x)
        if len(x) == 0:
            raise ConfigError("predict on an empty array")
        return np.concatenate(
            [self.run(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
        )

    def predict_proba(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        z = self.predict_logits(x, batch_size)
        if self.activation == "softmax":
            return _softmax(z)
        if self.activation == "sigmoid":
            return 1.0 / (1.0 + np.exp(-z))
        return z


def compare_latency(
    model: nn.Module,
    fp32_path: str | Path,
    int8_path: str | Path,
    x: np.ndarray,
    *,
    threads: int = 1,
    warmup: int = 3,
    repeats: int = 10,
    torch_channels_last: bool = True,
    torch_int8: nn.Module | None = None,
) -> dict:
    """Time one forward pass over the batch ``x`` with fp32 torch, fp32 ORT and int8 ORT (and the
    PyTorch int8 model ``torch_int8`` of ``export.torch_int8`` when given: ``torch_int8_s`` and
    ``torch_int8_speedup_vs_torch_fp32``).

    The torch run converts the NumPy batch to a tensor, channels-last for 4-D inputs when
    ``torch_channels_last`` (as the workflow's torch paths do: ~1.8x faster for 2-D conv nets on
    CPU), so the speedup is over the fastest fp32 torch path the project uses.

    Each engine is warmed up, then the three are timed in turn in every repeat (interleaved, so load
    from other processes hits them alike); the median of the repeats is reported, in seconds, with
    ``speedup_vs_torch_fp32 = torch/int8`` and ``speedup_vs_ort_fp32 = ort_fp32/int8``.
    """
    if repeats < 1 or warmup < 0:
        raise ConfigError("need repeats >= 1 and warmup >= 0")
    x = _as_float32(x)
    engines = {
        "ort_fp32": OrtEngine(fp32_path, intra_op_threads=threads, activation="none"),
        "ort_int8": OrtEngine(int8_path, intra_op_threads=threads, activation="none"),
    }
    old_threads = torch.get_num_threads()
    was_training = model.training
    model.eval()
    torch.set_num_threads(threads)

    def torch_run():
        with torch.inference_mode():
            t = torch.from_numpy(x)
            if torch_channels_last and t.ndim == 4:
                t = t.contiguous(memory_format=torch.channels_last)
            model(t)

    runners = {
        "torch_fp32": torch_run,
        "ort_fp32": lambda: engines["ort_fp32"].run(x),
        "ort_int8": lambda: engines["ort_int8"].run(x),
    }
    if torch_int8 is not None:

        def torch_int8_run():
            with torch.inference_mode():
                torch_int8(torch.from_numpy(x))

        runners["torch_int8"] = torch_int8_run
    times = {k: [] for k in runners}
    try:
        for run in runners.values():
            for _ in range(warmup):
                run()
        for _ in range(repeats):
            for k, run in runners.items():
                t0 = time.perf_counter()
                run()
                times[k].append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(old_threads)
        model.train(was_training)
    med = {k: statistics.median(v) for k, v in times.items()}
    extra = {}
    if "torch_int8" in med:
        extra = {
            "torch_int8_s": med["torch_int8"],
            "torch_int8_speedup_vs_torch_fp32": med["torch_fp32"] / med["torch_int8"],
            "torch_int8_speedup_vs_ort_fp32": med["ort_fp32"] / med["torch_int8"],
        }
    return {
        "batch": int(len(x)),
        "threads": int(threads),
        "repeats": int(repeats),
        "torch_channels_last": bool(torch_channels_last and x.ndim == 4),
        "torch_fp32_s": med["torch_fp32"],
        "ort_fp32_s": med["ort_fp32"],
        "ort_int8_s": med["ort_int8"],
        "speedup_vs_torch_fp32": med["torch_fp32"] / med["ort_int8"],
        "speedup_vs_ort_fp32": med["ort_fp32"] / med["ort_int8"],
        "fp32_bytes": Path(fp32_path).stat().st_size,
        "int8_bytes": Path(int8_path).stat().st_size,
        "torch_version": torch.__version__,
        "onnxruntime_version": ort.__version__,
        **extra,
    }
