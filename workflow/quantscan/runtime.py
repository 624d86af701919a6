"""Inference engines behind one interface, for scanning genomes with fp32 and compressed models.

Every engine takes binary images ``x`` (uint8, ``(B, 1, H, W)``, 0/1) and returns class probabilities
``(B, n_classes)`` from ``predict_proba`` and the log-odds of one class from ``predict_log_odds``
(from the logits, so it does not saturate where the probability rounds to 1); ``name``,
``batch_size`` and ``threads`` describe it. ``input_shape`` is the image (H, W) the engine takes:
an ONNX graph with fixed dimensions declares it, the other engines are given the model's training
shape (``make_engine(example_shape=...)``). An image of another shape is refused with a
``ConfigError`` naming both shapes: no engine crashes on a shape, and none silently scores an
image of another size than its model was trained on (the scan subsamples or matches haplotypes
first: ``sweeps.sample_size``).

========================  ======================================================================
kind                      what runs
========================  ======================================================================
torch_fp32_per_window     PyTorch fp32, one window per call (the SweepNet/ASDEC baseline)
torch_fp32                PyTorch fp32, batched, channels-last
onnx_fp32                 ONNX Runtime fp32 (``.onnx``; a ``.pt`` is exported on the fly)
onnx_int8                 ONNX Runtime static int8 (an ``.onnx`` from ``export.onnx.build_int8``)
packed                    a packed low-bit model (``export.packed``) through the lookup engine
packed_torch              the same packed model, dequantized weights in PyTorch (dense reference)
lut_fp32                  an fp32 model through the lookup engine (shows what binary inputs buy)
========================  ======================================================================

The lookup engine (:class:`SweepNetLutEngine`)
----------------------------------------------
SweepNet is three [conv 2x2 -> activation -> max-pool 2x2 stride 1] blocks, so a trunk output is a
function of the 7x7 input patch under it, and the inputs are binary. The engine never convolves:

1. every conv-2 pre-activation is a function of a 4x4 binary patch: all 65,536 are tabulated once
   per model (``A2``: activation applied, 8 MiB) by running the model's own first layers on them;
2. per chunk of images, the 7x7 patch of every trunk position is coded as a 56-bit integer (one
   byte per row), and deduplicated (below: hash tables or sorts) into the distinct 7x7 patches and
   how often each image holds each of them;
3. the distinct 6x6 sub-patches of those, and the distinct 5x5 sub-patches of those, are found the
   same way; a 5x5 patch's pool-2 output is the max of four ``A2`` rows; a 6x6 patch's conv-3 output
   is the sum of four per-offset products ``a2 @ W3[:, :, di, dj]`` computed once per 5x5 patch;
   a 7x7 patch's pool-3 output is the max of four of those;
4. the global means of the SE block and of the final average pool are count-weighted sums over
   the distinct patches of each image (``embedding_bag`` with per-sample weights); the 1x1 dense
   layer is evaluated once per distinct patch and distinct SE scale vector (the 1-bit sigmoid of
   the Table 6 model gives few), else once per (image, patch) pair.

Results equal the model's forward pass up to float32 summation order (~1e-7); the tests check this
for fp32, Table 6 and uniform 1-bit / 2-bit models on random binary images, decisions included.
The arithmetic left is ~10x below the dense network's on scan windows (0.14 / 0.24 / 0.32 distinct
5x5 / 6x6 / 7x7 patches per position in chunks of 8 images of 128 x 128, 0.11 / 0.21 / 0.31 in
chunks of 32). The low-bit weights themselves buy nothing on a float CPU path; the binary inputs do
(``lut_fp32`` shows the same speed for the fp32 model), so ``packed`` is fast because the packed
model is a SweepNet, and exact because the packed file holds the dequantized weights the model
computes with.

Two implementations of steps 2-3 and the max-pools (``kernels``):

* ``numba`` (``quantscan.lutkernels``, used when numba is installed): per image, the 7x7 codes go
  through a small hash table that stays in cache, then the image's distinct codes through the
  chunk's table; the 6x6 and 5x5 levels are hash tables too, and the max-pools are fused
  gather-max loops. No temporaries, the GIL released: ~2x the numpy path per core, and worker
  threads scale. Chunks of 32 images (more sharing for the matrix products, tables still in L3).
* ``numpy``: sorts of ``code << k | index`` keys and ``index_select`` gathers (no compiler needed;
  chunks of 8 images were fastest).

What is left with numba is mostly the two matrix products (conv 3, ~1/3 of the time; the dense
layer, ~1/5), then the 7x7 hash tables (~1/6). Measured numbers: ``benchmarks/README.md``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError, InputFormatError, QuantscanError
from .models import SweepNet

KINDS = (
    "torch_fp32_per_window",
    "torch_fp32",
    "onnx_fp32",
    "onnx_int8",
    "packed",
    "packed_torch",
    "lut_fp32",
)

_U64 = np.uint64
_OFFSETS = ((0, 0), (0, 1), (1, 0), (1, 1))  # (row, column) offsets of a 2x2 kernel / pool
_PACKED_MAGIC = b"QSPK"


@contextlib.contextmanager
def torch_threads(n: int):
    """Run the block with ``n`` PyTorch intra-op threads, then restore the previous setting."""
    old = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def check_images(x: np.ndarray) -> np.ndarray:
    """Validate an engine input: uint8 ``(B, 1, H, W)``; returns it as a contiguous array."""
    x = np.asarray(x)
    if x.dtype != np.uint8:
        raise ConfigError(f"engine input must be uint8 0/1 images, got dtype {x.dtype}")
    if x.ndim != 4 or x.shape[1] != 1:
        raise ConfigError(f"engine input must have shape (batch, 1, H, W), got {x.shape}")
    return np.ascontiguousarray(x)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def log_odds(z: np.ndarray, cls: int = 1) -> np.ndarray:
    """``log P(cls) - log(1 - P(cls))`` of softmax logits ``z`` (B, C), computed stably."""
    z = np.asarray(z, np.float64)
    if z.ndim != 2 or not 0 <= cls < z.shape[1] or z.shape[1] < 2:
        raise ConfigError(
            f"log-odds of class {cls} need (batch, classes >= 2) logits, got {z.shape}"
        )
    rest = np.delete(z, cls, axis=1)
    m = rest.max(axis=1, keepdims=True)
    return z[:, cls] - (m[:, 0] + np.log(np.exp(rest - m).sum(axis=1)))


class Engine:
    """Batched class probabilities for binary images. Subclasses implement ``_logits``."""

    kind = ""

    def __init__(
        self,
        name: str,
        batch_size: int,
        threads: int,
        n_classes: int,
        input_shape: tuple[int, int] | None = None,
    ):
        if batch_size < 1 or threads < 1:
            raise ConfigError(f"batch_size and threads must be >= 1 (got {batch_size}, {threads})")
        self.name = name
        self.batch_size = int(batch_size)
        self.threads = int(threads)
        self.n_classes = int(n_classes)
        #: (H, W) of the images the engine takes; None: not declared (any shape)
        self.input_shape = tuple(int(v) for v in input_shape) if input_shape else None

    def _logits(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def logits(self, x: np.ndarray) -> np.ndarray:
        """``(B, n_classes)`` float64 logits for uint8 images ``(B, 1, H, W)`` of ``input_shape``."""
        x = check_images(x)
        if self.input_shape is not None and tuple(x.shape[2:]) != self.input_shape:
            h, w = self.input_shape
            raise ConfigError(
                f"engine {self.name} takes {h} x {w} images (haplotypes x SNPs), got "
                f"{x.shape[2]} x {x.shape[3]}; subsample or match the haplotypes to the model's "
                "size (scan.sample_size)"
            )
        if len(x) == 0:
            return np.zeros((0, self.n_classes), np.float64)
        out = [self._logits(x[i : i + self.batch_size]) for i in range(0, len(x), self.batch_size)]
        return np.concatenate(out).astype(np.float64)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """``(B, n_classes)`` float32 probabilities for uint8 images ``(B, 1, H, W)``."""
        return _softmax(self.logits(x)).astype(np.float32)

    def predict_log_odds(self, x: np.ndarray, cls: int = 1) -> np.ndarray:
        """``log P(cls) - log P(not cls)`` per image, float64, from the logits (no saturation)."""
        return log_odds(self.logits(x), cls)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "batch_size": self.batch_size,
            "threads": self.threads,
            "input_shape": list(self.input_shape) if self.input_shape else None,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()})"


class TorchEngine(Engine):
    """A PyTorch model in eval mode; ``batch_size=1`` is the one-window-per-call baseline."""

    kind = "torch_fp32"

    def __init__(
        self,
        model: nn.Module,
        *,
        batch_size: int = 256,
        threads: int = 1,
        name: str | None = None,
        channels_last: bool = True,
    ):
        model = model.eval()
        super().__init__(name or self.kind, batch_size, threads, _n_classes(model))
        self.model = model
        self.channels_last = channels_last

    def _logits(self, x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(x).float()
        if self.channels_last and len(x) > 1:
            t = t.contiguous(memory_format=torch.channels_last)
        with torch_threads(self.threads), torch.inference_mode():
            return self.model(t).numpy()


class OnnxEngine(Engine):
    """An ONNX Runtime CPU session (fp32 or int8 QDQ graph), fed one float32 batch at a time."""

    kind = "onnx_fp32"

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        batch_size: int = 256,
        threads: int = 1,
        name: str | None = None,
    ):
        from .export.onnx import OrtEngine

        self.path = Path(path)
        try:
            self.session = OrtEngine(self.path, intra_op_threads=threads, activation="none")
        except QuantscanError:  # a bad file is already an InputFormatError naming it
            raise
        except Exception as err:  # onnxruntime raises its own exception types
            raise InputFormatError(f"{path}: not a loadable ONNX model: {err}") from err
        shape = self.session.session.get_outputs()[0].shape
        n_classes = shape[-1] if isinstance(shape[-1], int) else 2
        dims = self.session.session.get_inputs()[0].shape
        fixed = len(dims) == 4 and all(isinstance(d, int) for d in dims[2:])
        super().__init__(
            name or self.kind, batch_size, threads, n_classes, tuple(dims[2:]) if fixed else None
        )

    def _logits(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(x.astype(np.float32))


# --------------------------------------------------------------------------------------------------
# lookup engine


def _sub_patches(codes: np.ndarray, k: int, *, offset_major: bool) -> np.ndarray:
    """The four k x k sub-patches of each code, flattened offset-major (4, n) or patch-major (n, 4)."""
    n = codes.size
    out = np.empty((4, n) if offset_major else (n, 4), dtype=_U64)
    mask = _U64(sum(((1 << k) - 1) << (8 * r) for r in range(k)))
    for j, (di, dj) in enumerate(_OFFSETS):
        view = out[j] if offset_major else out[:, j]
        np.right_shift(codes, _U64(8 * di + dj), out=view)
        view &= mask
    return out.ravel()


def _squeeze(codes: np.ndarray, k: int) -> np.ndarray:
    """Pack pairs of k-bit bytes into 16-bit slots: a shorter key (44 bits for 6x6, 37 for 5x5)."""
    lo = _U64(sum(((1 << k) - 1) << (16 * r) for r in range(4)))
    return (codes & lo) | ((codes >> _U64(8 - k)) & (lo << _U64(k)))


def _run_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """True where a run of equal values starts in a sorted (non-empty) 1-D array."""
    starts = np.empty(sorted_keys.size, bool)
    starts[0] = True
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=starts[1:])
    return starts


def _dedup(keys: np.ndarray, key_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """(index of the first occurrence of each distinct key, inverse) of a 1-D uint64 array.

    ``keys`` is overwritten (callers pass a temporary).

    One sort of ``key << p | index`` instead of an argsort or a hash table; falls back to
    ``np.unique`` when key and index do not fit in 64 bits.
    """
    n = keys.size
    pbits = max(1, int(n - 1).bit_length())
    if key_bits + pbits > 64:
        _, first, inv = np.unique(keys, return_index=True, return_inverse=True)
        return first, inv.ravel()
    packed = np.left_shift(keys, _U64(pbits), out=keys)  # keys are a temporary
    packed |= np.arange(n, dtype=_U64)
    packed.sort()
    new = _run_starts(packed >> _U64(pbits))
    ids = np.cumsum(new)
    ids -= 1
    src = (packed & _U64((1 << pbits) - 1)).astype(np.intp)
    inv = np.empty(n, np.intp)
    inv[src] = ids
    return src[new], inv


def _distinct_sub_patches(
    codes: np.ndarray, k: int, key_bits: int, *, offset_major: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(inverse, distinct codes) of the k x k sub-patches of ``codes`` (``key_bits``: of the
    squeezed key); the inverse is laid out as ``_sub_patches``, offset- or patch-major."""
    subs = _sub_patches(codes, k, offset_major=offset_major)
    first, inv = _dedup(_squeeze(subs, k), key_bits)
    return inv, subs[first]


def patch_codes7(x: np.ndarray) -> np.ndarray:
    """7x7 patch codes of binary images ``(B, H, W)``: uint64 ``(B, W - 6, H - 6)``, byte r = row r."""
    return _patch_words7(x) & _U64(0x00FFFFFFFFFFFFFF)


def _patch_words7(x: np.ndarray) -> np.ndarray:
    """Patch codes with the next row in the top byte (mask or shift it away).

    Row codes (7 bits) are built along W in uint8; the 7 row bytes under a position are then read
    as one little-endian word from a transposed buffer (an unaligned strided view, no copies).
    """
    b, h, w = x.shape
    wn = w - 6
    buf = np.zeros((b, wn, h + 1), np.uint8)  # + 1 byte so the last 8-byte read stays inside
    rows = buf[:, :, :h].transpose(0, 2, 1)
    np.copyto(rows, x[:, :, :wn])
    for t in range(1, 7):
        rows |= x[:, :, t : t + wn] << t
    return np.ndarray(
        shape=(b, wn, h - 6), dtype="<u8", buffer=buf, strides=(wn * (h + 1), h + 1, 1)
    )


def _weight(module: nn.Module) -> torch.Tensor:
    """The weight the module computes with (quantized layers: the quantized values)."""
    w = module.effective_weight() if hasattr(module, "effective_weight") else module.weight
    return w.detach().float()


def _bias(module: nn.Module) -> torch.Tensor:
    b = module.quantized_bias() if hasattr(module, "quantized_bias") else module.bias
    return b.detach().float()


def _check_sweepnet(model: nn.Module) -> None:
    if not isinstance(model, SweepNet):
        raise ConfigError(
            f"the lookup engine runs SweepNet models only, got {type(model).__name__}"
        )
    for name in ("sweepnet_first_conv", "sweepnet_second_conv", "sweepnet_third_conv"):
        conv = getattr(model, name)
        if (
            tuple(conv.kernel_size) != (2, 2)
            or tuple(conv.stride) != (1, 1)
            or tuple(conv.padding) != (0, 0)
            or tuple(conv.dilation) != (1, 1)
            or conv.groups != 1
        ):
            raise ConfigError(f"lookup engine: {name} is not a 2x2 stride-1 valid convolution")
    for name in ("sweepnet_first_max_pool", "sweepnet_second_max_pool", "sweepnet_third_max_pool"):
        pool = getattr(model, name)
        if pool.kernel_size not in (2, (2, 2)) or pool.stride not in (1, (1, 1)):
            raise ConfigError(f"lookup engine: {name} is not a 2x2 stride-1 max-pool")
    if model.sweepnet_first_conv.in_channels != 1:
        raise ConfigError("lookup engine: the model must take one input channel")


class SweepNetLutEngine(Engine):
    """Exact SweepNet inference on binary images by patch lookup and deduplication (module doc).

    ``kernels``: "numba" (compiled hash tables and fused gather-max, ``quantscan.lutkernels``),
    "numpy" (sorts and ``index_select``; no compiler needed) or "auto" (numba when installed).
    ``chunk``: images deduplicated together (default 32 with numba, 8 with numpy).
    """

    kind = "packed"
    MAX_CHUNK = 256  # the image index rides in the low 8 bits of the 7x7 sort key
    KERNELS = ("auto", "numba", "numpy")

    def __init__(
        self,
        model: nn.Module,
        *,
        batch_size: int = 256,
        threads: int = 1,
        chunk: int | None = None,
        kernels: str = "auto",
        name: str | None = None,
    ):
        model = model.eval()
        _check_sweepnet(model)
        if kernels not in self.KERNELS:
            raise ConfigError(
                f"lookup engine kernels must be one of {self.KERNELS}, got {kernels!r}"
            )
        if kernels == "auto":
            kernels = "numba" if numba_available() else "numpy"
        elif kernels == "numba" and not numba_available():
            raise ConfigError(
                "lookup engine kernels 'numba' need the numba package (pip install numba); "
                "use kernels 'numpy' or 'auto'"
            )
        if chunk is None:
            chunk = 32 if kernels == "numba" else 8
        if not 1 <= chunk <= self.MAX_CHUNK:
            raise ConfigError(f"lookup engine chunk must be in 1..{self.MAX_CHUNK}, got {chunk}")
        super().__init__(name or self.kind, batch_size, threads, _n_classes(model))
        self.model = model
        self.chunk = int(chunk)
        self.kernels = kernels
        m = model
        with torch.inference_mode(), torch_threads(threads):
            idx = np.arange(1 << 16)
            patches = ((idx[:, None] >> np.arange(16)) & 1).astype(np.float32).reshape(-1, 1, 4, 4)
            z = m.sweepnet_second_conv(
                m.sweepnet_first_max_pool(
                    m.sweepnet_first_activation(m.sweepnet_first_conv(torch.from_numpy(patches)))
                )
            )
            self.a2_table = m.sweepnet_second_activation(z).reshape(1 << 16, -1).contiguous()
            w3 = _weight(m.sweepnet_third_conv)
            # (in, 4 * out): one product per 5x5 patch gives all four kernel offsets
            self.w3 = torch.cat([w3[:, :, di, dj].T for di, dj in _OFFSETS], 1).contiguous()
            self.b3 = _bias(m.sweepnet_third_conv)
            self.wd = _weight(m.sweepnet_first_dense)[:, :, 0, 0].T.contiguous()
            self.bd = _bias(m.sweepnet_first_dense)
            self.wl = _weight(m.sweepnet_second_dense).T.contiguous()
            self.bl = _bias(m.sweepnet_second_dense)
        self.channels = self.a2_table.shape[1]
        self.last_stats: dict = {}
        #: "auto" picks the cheaper way to run the dense layer; "per_patch"/"per_pair" force one
        self.dense_path = "auto"
        #: set ``profile`` to accumulate wall seconds per stage in ``stage_seconds``
        self.profile = False
        self.stage_seconds: dict[str, float] = {}
        self._lock = threading.Lock()
        #: distinct keys per key at each level, from the last chunk: sizes the next hash tables
        self._distinct: dict[str, float] = {"7": 0.4, "6": 0.25, "5": 0.25}

    def describe(self) -> dict:
        return super().describe() | {"chunk": self.chunk, "kernels": self.kernels}

    def _logits(self, x: np.ndarray) -> np.ndarray:
        if x.shape[2] < 7 or x.shape[3] < 7:
            raise ConfigError(f"lookup engine needs images of at least 7 x 7, got {x.shape[2:]}")
        if x.size and int(x.max()) > 1:
            raise ConfigError("lookup engine input must be binary (0/1)")
        imgs = x[:, 0]
        chunks = [imgs[i : i + self.chunk] for i in range(0, len(imgs), self.chunk)]
        with torch_threads(1), torch.inference_mode():
            if self.threads > 1 and len(chunks) > 1:
                with ThreadPoolExecutor(self.threads) as pool:
                    out = list(pool.map(self._chunk_logits, chunks))
            else:
                out = [self._chunk_logits(c) for c in chunks]
        return np.concatenate(out)

    def _chunk_logits(self, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():  # thread-local: pool workers need it too
            tick = self._ticker()
            trunk = self._trunk_numba if self.kernels == "numba" else self._trunk_numpy
            a3, pair_img, pair_patch, counts, stats = trunk(np.ascontiguousarray(x), tick)
            return self._head(x.shape, a3, pair_img, pair_patch, counts, stats, tick)

    def _trunk_numpy(self, x: np.ndarray, tick):
        """Distinct 7x7 patches -> pool-3 outputs, with sorts (``_dedup``) and ``index_select``.

        Returns (a3 (n7, c), pair image, pair patch, pair count, stats); pairs sorted by patch.
        """
        b = x.shape[0]
        # 7x7: sorted (code, image) keys -> (image, distinct patch, count) triples
        keys = np.left_shift(_patch_words7(x), _U64(8))  # drops the 8th row byte
        keys |= np.arange(b, dtype=_U64)[:, None, None]
        keys = keys.ravel()
        keys.sort()
        tick("patches7")
        first = np.flatnonzero(_run_starts(keys))
        counts = np.diff(first, append=keys.size).astype(np.float32)
        pair_keys = keys[first]
        pair_img = (pair_keys & _U64(0xFF)).astype(np.intp)
        pair_code = pair_keys >> _U64(8)
        new = _run_starts(pair_code)
        pair_patch = np.cumsum(new)
        pair_patch -= 1
        u7 = pair_code[new]
        n7 = u7.size
        tick("pairs")
        # distinct 6x6 sub-patches (offset-major) and 5x5 sub-patches (patch-major)
        inv6, u6 = _distinct_sub_patches(u7, 6, 44, offset_major=True)
        n6 = u6.size
        tick("patches6")
        inv5, u5 = _distinct_sub_patches(u6, 5, 37, offset_major=False)
        n5 = u5.size
        tick("patches5")
        # pool-2 output of each 5x5 patch: max of four rows of the 4x4 table
        s4 = _sub_patches(u5, 4, offset_major=True)
        i4 = (s4 & _U64(0xF)) | ((s4 >> _U64(4)) & _U64(0xF0))
        i4 |= (s4 >> _U64(8)) & _U64(0xF00)
        i4 |= (s4 >> _U64(12)) & _U64(0xF000)
        i4 = torch.from_numpy(i4.view(np.int64).reshape(4, n5))
        a2 = torch.index_select(self.a2_table, 0, i4[0])
        for k in range(1, 4):
            torch.maximum(a2, torch.index_select(self.a2_table, 0, i4[k]), out=a2)
        tick("pool2")
        act3 = self._conv3(a2, inv5.reshape(n6, 4))
        tick("conv3")
        inv6 = torch.from_numpy(inv6.reshape(4, n7))
        a3 = torch.index_select(act3, 0, inv6[0])
        for k in range(1, 4):
            torch.maximum(a3, torch.index_select(act3, 0, inv6[k]), out=a3)
        tick("pool3")
        stats = {"patches7": n7, "patches6": n6, "patches5": n5, "pairs_by_image": False}
        return a3, pair_img, pair_patch, counts, stats

    def _trunk_numba(self, x: np.ndarray, tick):
        """The same with ``lutkernels``: hash tables and fused gather-max; pairs grouped by image."""
        from . import lutkernels as lk

        b, h, w = x.shape
        n_pos = (h - 6) * (w - 6)
        est = self._distinct
        bits = lk.table_bits(b * n_pos * est["7"])
        while (res := lk.patches7(x, bits)) is None:  # more distinct patches than estimated
            bits += 1
        u7, pair_img, pair_patch, counts = res
        n7 = u7.size
        est["7"] = n7 / (b * n_pos)
        tick("patches7")
        inv6, u6 = self._sub_patches_numba(u7, 6)
        n6 = u6.size
        tick("patches6")
        inv5, u5 = self._sub_patches_numba(u6, 5)
        n5 = u5.size
        tick("patches5")
        a2 = torch.from_numpy(lk.pool_table4(u5, self.a2_table.numpy()))
        tick("pool2")
        act3 = self._conv3(a2, inv5)
        tick("conv3")
        a3 = torch.from_numpy(lk.gather_max4(act3.numpy(), inv6))
        tick("pool3")
        stats = {"patches7": n7, "patches6": n6, "patches5": n5, "pairs_by_image": True}
        return a3, pair_img, pair_patch, counts, stats

    def _sub_patches_numba(self, codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(inverse, distinct) k x k sub-patches of ``codes`` by ``lutkernels.sub_patches``.

        The hash table is sized from the last chunk's share of distinct keys at this level and
        grown until the keys fit; the share is updated for the next chunk.
        """
        from . import lutkernels as lk

        level = str(k)
        bits = lk.table_bits(4 * codes.size * self._distinct[level])
        while (res := lk.sub_patches(codes, k, bits)) is None:
            bits += 1
        inv, distinct = res
        self._distinct[level] = distinct.size / (4 * codes.size)
        return inv, distinct

    def _conv3(self, a2: torch.Tensor, inv5: np.ndarray) -> torch.Tensor:
        """Activated conv-3 output of each 6x6 patch from the pool-2 outputs of its 5x5 patches.

        ``inv5`` (n6, 4): the 5x5 sub-patch of each 6x6 patch at each kernel offset. The output
        is the sum of four per-offset products; row 4 p + k of ``per_offset`` is 5x5 patch p
        times kernel offset k (one matrix product per 5x5 patch instead of four per 6x6).
        """
        per_offset = (a2 @ self.w3).view(4 * a2.shape[0], self.channels)
        inv5 = inv5 * 4
        inv5 += np.arange(4)
        z3 = F.embedding_bag(torch.from_numpy(inv5), per_offset, mode="sum")
        z3 += self.b3
        return self._act(self.model.sweepnet_third_activation, z3)

    def _head(self, shape, a3, pair_img, pair_patch, counts, stats, tick) -> np.ndarray:
        """SE block, dense layers and the global mean, from the distinct patches' pool-3 outputs.

        The means over positions are count-weighted sums over each image's (patch, count) pairs
        (``embedding_bag`` with per-sample weights over the pairs grouped by image).
        """
        m = self.model
        b, h, w = shape
        n_pos = (h - 6) * (w - 6)
        n7 = a3.shape[0]
        if stats["pairs_by_image"]:
            pair_img_sorted = pair_img
        else:
            order = np.argsort(pair_img.astype(np.uint8), kind="stable")
            pair_patch, counts = pair_patch[order], counts[order]
            pair_img_sorted = pair_img[order]
        offsets = np.zeros(b, np.int64)
        np.cumsum(np.bincount(pair_img_sorted, minlength=b)[:-1], out=offsets[1:])
        bag_patch, bag_w = torch.from_numpy(pair_patch), torch.from_numpy(counts)
        bag_off = torch.from_numpy(offsets)

        def per_image(values: torch.Tensor, index: torch.Tensor = bag_patch) -> torch.Tensor:
            return F.embedding_bag(index, values, bag_off, mode="sum", per_sample_weights=bag_w)

        mean = per_image(a3) / n_pos
        s = m.se_block_first_activation(m.se_block_first_conv(mean[:, :, None, None]))
        s = m.se_block_second_activation(m.se_block_second_conv(s))[:, :, 0, 0]
        scales, group = torch.unique(s, dim=0, return_inverse=True)
        n_groups = scales.shape[0]
        tick("se")
        n_pairs = len(pair_patch)
        path = self.dense_path
        if path == "auto":
            path = "per_patch" if n_groups * n7 <= n_pairs else "per_pair"
        act_d = m.sweepnet_dense_activation
        if path == "per_patch":  # few distinct SE scales (1-bit sigmoid): once per patch
            out = torch.empty(b, self.wl.shape[1])
            for g in range(n_groups):
                y = self._act(act_d, torch.addmm(self.bd, a3, scales[g][:, None] * self.wd))
                if n_groups == 1:
                    out = per_image(y) @ self.wl
                else:
                    rows = torch.nonzero(group == g)[:, 0]
                    out[rows] = per_image(y)[rows] @ self.wl
        else:  # continuous SE scales (fp32 models): once per (image, patch) pair
            img_t = torch.from_numpy(pair_img_sorted.astype(np.int64))
            rows = torch.index_select(a3, 0, bag_patch) * torch.index_select(s, 0, img_t)
            y = self._act(act_d, torch.addmm(self.bd, rows, self.wd))
            out = per_image(y, torch.arange(n_pairs)) @ self.wl
        tick("dense")
        self.last_stats = {
            "images": b,
            "positions": b * n_pos,
            "patches7": n7,
            "patches6": stats["patches6"],
            "patches5": stats["patches5"],
            "pairs": n_pairs,
            "se_groups": n_groups,
            "dense_path": path,
            "kernels": self.kernels,
        }
        return (out / n_pos + self.bl).numpy()

    @staticmethod
    def _act(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Apply an activation module; plain ReLU in place (the common case, one pass less)."""
        if type(module) is nn.ReLU:
            return x.relu_()
        return module(x)

    def _ticker(self):
        """A stage timer adding to ``stage_seconds`` when ``profile`` is set, else a no-op."""
        if not self.profile:
            return lambda stage: None
        last = [time.perf_counter()]

        def tick(stage: str) -> None:
            now = time.perf_counter()
            with self._lock:
                self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + now - last[0]
            last[0] = now

        return tick


def numba_available() -> bool:
    """Whether the compiled lookup kernels (``quantscan.lutkernels``) can run: numba installed."""
    return importlib.util.find_spec("numba") is not None


def _n_classes(model: nn.Module) -> int:
    last = [mod for mod in model.modules() if isinstance(mod, nn.Linear | nn.Conv2d)][-1]
    return int(last.out_features if isinstance(last, nn.Linear) else last.out_channels)


# --------------------------------------------------------------------------------------------------
# factory


def model_format(path: str | os.PathLike) -> str:
    """'packed', 'onnx' or 'fp32' (a ``modelio`` file), by content."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as err:
        raise InputFormatError(f"{path}: cannot read model file: {err.strerror or err}") from err
    if head == _PACKED_MAGIC:
        return "packed"
    if path.suffix == ".onnx":
        return "onnx"
    return "fp32"


def load_model(path: str | os.PathLike) -> nn.Module:
    """The torch model of an fp32 (``modelio``) or packed (``export.packed``) file, in eval mode."""
    fmt = model_format(path)
    if fmt == "packed":
        from .export.packed import load_packed

        return load_packed(path)[0]
    if fmt == "fp32":
        from .modelio import load_fp32

        return load_fp32(path)[0]
    raise ConfigError(f"{path}: an ONNX file has no torch model; use kind onnx_fp32 or onnx_int8")


def make_engine(
    kind: str,
    model_path: str | os.PathLike,
    *,
    batch_size: int = 256,
    threads: int = 1,
    chunk: int | None = None,
    kernels: str = "auto",
    name: str | None = None,
    example_shape: tuple[int, int] | None = None,
) -> Engine:
    """Build an engine of ``kind`` (see ``KINDS``) from a model file.

    ``torch_*`` and ``lut_fp32`` take an fp32 file (a packed file also works for ``torch_*``);
    ``packed``/``packed_torch`` a packed file; ``onnx_int8`` an int8 ``.onnx``; ``onnx_fp32`` an
    ``.onnx`` or an fp32 file, exported to a temporary ONNX file with ``example_shape`` (H, W).
    ``example_shape`` is also the ``input_shape`` the torch and lookup engines declare (an ONNX
    graph declares its own fixed dimensions).
    """
    if kind not in KINDS:
        raise ConfigError(f"unknown engine kind {kind!r}; known: {', '.join(KINDS)}")
    fmt = model_format(model_path)
    name = name or kind
    if kind in ("onnx_fp32", "onnx_int8"):
        if fmt == "onnx":
            engine = OnnxEngine(model_path, batch_size=batch_size, threads=threads, name=name)
            engine.kind = kind
            return engine
        if kind == "onnx_int8":
            raise ConfigError(
                f"{model_path}: engine onnx_int8 needs an int8 .onnx file "
                "(built by quantscan.export.onnx.build_int8)"
            )
        if example_shape is None:
            raise ConfigError("engine onnx_fp32 from a torch model needs example_shape=(H, W)")
        from .export.onnx import export_onnx

        with tempfile.TemporaryDirectory(prefix="quantscan-onnx-") as tmpdir:
            tmp = Path(tmpdir) / "model.onnx"  # the session keeps the graph in memory
            x = np.zeros((1, 1, *example_shape), np.float32)
            export_onnx(load_model(model_path), x, tmp)
            engine = OnnxEngine(tmp, batch_size=batch_size, threads=threads, name=name)
        engine.kind = kind
        return engine
    if fmt == "onnx":
        raise ConfigError(f"{model_path}: engine {kind} needs a torch or packed model, not ONNX")
    if kind in ("packed", "packed_torch") and fmt != "packed":
        raise ConfigError(f"{model_path}: engine {kind} needs a packed model file")
    if kind == "lut_fp32" and fmt != "fp32":
        raise ConfigError(f"{model_path}: engine lut_fp32 needs an fp32 model file")
    model = load_model(model_path)
    if kind == "torch_fp32_per_window":
        engine = TorchEngine(model, batch_size=1, threads=threads, name=name, channels_last=False)
    elif kind in ("torch_fp32", "packed_torch"):
        engine = TorchEngine(model, batch_size=batch_size, threads=threads, name=name)
    else:
        engine = SweepNetLutEngine(
            model, batch_size=batch_size, threads=threads, chunk=chunk, kernels=kernels, name=name
        )
    engine.kind = kind
    if example_shape is not None:  # the model's training shape: other images are refused
        engine.input_shape = tuple(int(v) for v in example_shape)
    return engine


__all__ = [
    "KINDS",
    "Engine",
    "OnnxEngine",
    "SweepNetLutEngine",
    "TorchEngine",
    "check_images",
    "load_model",
    "log_odds",
    "make_engine",
    "model_format",
    "numba_available",
    "patch_codes7",
    "torch_threads",
]
