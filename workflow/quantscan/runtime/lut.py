"""Exact inference of binary-input convolutional nets by patch lookup (:class:`BinaryConvLutEngine`).

The model contract
------------------
The engine runs any model that describes its layers through a ``lut_trunk()`` method returning a
:class:`LutTrunk`: three [conv 2x2 stride 1 (valid) -> activation -> max-pool 2x2 stride 1]
blocks on a one-channel input, a squeeze-and-excitation gate (Hu et al., CVPR 2018: global mean
-> 1x1 conv -> activation -> 1x1 conv -> activation -> channel scale), a per-position dense layer
(a 1x1 conv) with its activation, a global mean and a linear head. The engine checks the contract
(:func:`lut_trunk_of`) and raises a ``ConfigError`` naming what is missing; it never looks at the
model's class or attribute names. Quantized layers are used as they compute (``effective_weight``
and ``quantized_bias`` where a layer has them), activations through the model's own modules.

How it runs
-----------
Three blocks of 2x2 convolutions and 2x2 stride-1 max-pools make each trunk output a function of
the 7x7 input patch under it, and the inputs are binary. The engine never convolves:

1. every conv-2 pre-activation is a function of a 4x4 binary patch: all 65,536 are tabulated once
   per model (``A2``: activation applied, 8 MiB) by running the model's own first layers on them;
2. per chunk of images, the 7x7 patch of every trunk position is coded as a 56-bit integer (one
   byte per row), and deduplicated (below: hash tables or sorts) into the distinct 7x7 patches and
   how often each image holds each of them;
3. the distinct 6x6 sub-patches of those, and the distinct 5x5 sub-patches of those, are found the
   same way; a 5x5 patch's pool-2 output is the max of four ``A2`` rows; a 6x6 patch's conv-3 output
   is the sum of four per-offset products ``a2 @ W3[:, :, di, dj]`` computed once per 5x5 patch;
   a 7x7 patch's pool-3 output is the max of four of those;
4. the global means of the gate and of the final average pool are count-weighted sums over
   the distinct patches of each image (``embedding_bag`` with per-sample weights); the 1x1 dense
   layer is evaluated once per distinct patch and distinct gate scale vector (a 1-bit gate
   activation gives few), else once per (image, patch) pair.

Results equal the model's forward pass up to float32 summation order (~1e-7); the tests check this
for fp32, mixed-precision and uniform 1-bit / 2-bit models on random binary images, decisions
included. The arithmetic left is ~10x below the dense network's on 128 x 128 images (0.14 / 0.24 /
0.32 distinct 5x5 / 6x6 / 7x7 patches per position in chunks of 8 images, 0.11 / 0.21 / 0.31 in
chunks of 32). The low-bit weights themselves buy nothing on a float CPU path; the binary inputs do
(``lut_fp32`` shows the same speed for the fp32 model), so ``packed`` is fast because the packed
model fulfils the contract, and exact because the packed file holds the dequantized weights the
model computes with.

Two implementations of steps 2-3 and the max-pools (``kernels``):

* ``numba`` (``quantscan.runtime.lutkernels``, used when numba is installed): every position's 7x7
  code probes the chunk's hash table (positions that repeat the one above them skip even that);
  the 6x6 and 5x5 levels are hash tables too, and the max-pools are fused gather-max loops. No
  temporaries, the GIL released, so worker threads scale. Chunks of 8 images: the tables and
  products stay in L2/L3 (on a 2-core AMD EPYC, chunks of 8 ran 1.1-1.2x faster than 32, though
  the larger chunks share more patches).
* ``numpy``: sorts of ``code << k | index`` keys and ``index_select`` gathers (no compiler needed;
  chunks of 8 images were fastest).

With numba, the steps after the products are fused single passes too: conv 3 as gather, sum, bias
and ReLU of the per-offset products (``gather_sum4``), and the dense layer as a bias-free product
whose bias, ReLU and count-weighted mean are applied while summing each image's pairs
(``pair_sums``); the channel loops index 2-D arrays directly so that LLVM vectorizes them (row
views in a helper were ~5x slower). The two matrix products (conv 3 per 5x5 patch, the dense
layer per 7x7 patch) go through PyTorch's oneDNN linear kernel where it reproduces ``torch.mm``
(:func:`onednn_linear`), with their row counts rounded up to a bucket so that oneDNN reuses its
compiled kernels: on the AMD EPYC that ran them 2-3x faster than ``torch.mm`` (MKL). Profile and
measured numbers: ``docs/speed.md``, ``benchmarks/README.md``.
"""

from __future__ import annotations

import functools
import importlib.util
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .base import Engine, n_classes_of, torch_threads

_U64 = np.uint64
_OFFSETS = ((0, 0), (0, 1), (1, 0), (1, 1))  # (row, column) offsets of a 2x2 kernel / pool


@dataclass(frozen=True)
class ConvBlock:
    """One trunk block: ``pool(activation(conv(x)))``."""

    conv: nn.Module
    activation: nn.Module
    pool: nn.Module


@dataclass(frozen=True)
class LutTrunk:
    """The layers the lookup engine evaluates, as a model's ``lut_trunk()`` returns them.

    ``blocks``: the three [conv 2x2 -> activation -> max-pool 2x2 stride 1] blocks;
    ``gate_squeeze``/``gate_squeeze_activation`` and ``gate_excite``/``gate_excite_activation``:
    the two 1x1 convs of the squeeze-and-excitation gate and their activations; ``dense`` (a 1x1
    conv) and ``dense_activation``: the per-position dense layer; ``head``: the final linear layer
    applied to the global mean. The forward pass the engine reproduces is

        t = blocks(x); s = excite_act(excite(squeeze_act(squeeze(mean(t)))))
        logits = head(mean(dense_activation(dense(t * s))))
    """

    blocks: tuple[ConvBlock, ConvBlock, ConvBlock]
    gate_squeeze: nn.Module
    gate_squeeze_activation: nn.Module
    gate_excite: nn.Module
    gate_excite_activation: nn.Module
    dense: nn.Module
    dense_activation: nn.Module
    head: nn.Module


def _attr(module: nn.Module, name: str):
    """A layer hyper-parameter as a pair (``kernel_size=2`` -> ``(2, 2)``); None if absent."""
    v = getattr(module, name, None)
    if isinstance(v, int):
        return (v, v)
    return tuple(v) if isinstance(v, tuple | list) else None


def lut_trunk_of(model: nn.Module) -> LutTrunk:
    """The model's :class:`LutTrunk`, checked; ConfigError naming what breaks the contract."""
    get = getattr(model, "lut_trunk", None)
    if not callable(get):
        raise ConfigError(
            f"the lookup engine needs a model with a lut_trunk() method (module doc of "
            f"quantscan.runtime.lut); {type(model).__name__} has none"
        )
    trunk = get()
    if isinstance(trunk, Mapping):
        trunk = LutTrunk(**trunk)
    if not isinstance(trunk, LutTrunk):
        raise ConfigError(
            f"{type(model).__name__}.lut_trunk() must return a LutTrunk, got {type(trunk).__name__}"
        )
    if len(trunk.blocks) != 3:
        raise ConfigError(f"lookup engine: the trunk needs 3 blocks, got {len(trunk.blocks)}")
    for i, block in enumerate(trunk.blocks, start=1):
        conv, pool = block.conv, block.pool
        if (
            _attr(conv, "kernel_size") != (2, 2)
            or _attr(conv, "stride") != (1, 1)
            or _attr(conv, "padding") != (0, 0)
            or _attr(conv, "dilation") != (1, 1)
            or getattr(conv, "groups", None) != 1
        ):
            raise ConfigError(
                f"lookup engine: block {i} conv is not a 2x2 stride-1 valid convolution"
            )
        if _attr(pool, "kernel_size") != (2, 2) or _attr(pool, "stride") != (1, 1):
            raise ConfigError(f"lookup engine: block {i} pool is not a 2x2 stride-1 max-pool")
        if not isinstance(pool, nn.MaxPool2d):
            raise ConfigError(f"lookup engine: block {i} pool is not a max-pool")
    if getattr(trunk.blocks[0].conv, "in_channels", None) != 1:
        raise ConfigError("lookup engine: the model must take one input channel")
    for name in ("gate_squeeze", "gate_excite", "dense"):
        layer = getattr(trunk, name)
        if _attr(layer, "kernel_size") != (1, 1) or getattr(layer, "groups", 1) != 1:
            raise ConfigError(f"lookup engine: {name} is not a 1x1 convolution (groups 1)")
    if getattr(getattr(trunk.head, "weight", None), "ndim", None) != 2:
        raise ConfigError("lookup engine: head is not a linear layer")
    return trunk


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
    if b is None:  # a layer without bias
        return _weight(module).new_zeros(_weight(module).shape[0])
    return b.detach().float()


class BinaryConvLutEngine(Engine):
    """Exact inference of a :class:`LutTrunk` model on binary one-channel images, by patch lookup
    and deduplication (module doc). Takes uint8 0/1 images ``(batch, 1, H, W)``, H, W >= 7.

    ``kernels``: "numba" (compiled hash tables and fused gather-max, ``runtime.lutkernels``),
    "numpy" (sorts and ``index_select``; no compiler needed) or "auto" (numba when installed).
    ``chunk``: images deduplicated together (default 8).
    """

    kind = "packed"
    MAX_CHUNK = 256  # the image index rides in the low 8 bits of the 7x7 sort key
    ROW_BUCKET = 512  # oneDNN products' row counts are rounded up to a multiple of this
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
        trunk = lut_trunk_of(model)
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
            chunk = 8
        if not 1 <= chunk <= self.MAX_CHUNK:
            raise ConfigError(f"lookup engine chunk must be in 1..{self.MAX_CHUNK}, got {chunk}")
        super().__init__(
            name or self.kind, batch_size, threads, n_classes_of(model), (1, None, None)
        )
        self.model = model
        self.trunk = trunk
        self.chunk = int(chunk)
        self.kernels = kernels
        b1, b2, b3 = trunk.blocks
        with torch.inference_mode(), torch_threads(threads):
            idx = np.arange(1 << 16)
            patches = ((idx[:, None] >> np.arange(16)) & 1).astype(np.float32).reshape(-1, 1, 4, 4)
            z = b2.conv(b1.pool(b1.activation(b1.conv(torch.from_numpy(patches)))))
            self.a2_table = b2.activation(z).reshape(1 << 16, -1).contiguous()
            w3 = _weight(b3.conv)
            # (in, 4 * out): one product per 5x5 patch gives all four kernel offsets
            self.w3 = torch.cat([w3[:, :, di, dj].T for di, dj in _OFFSETS], 1).contiguous()
            self.b3 = _bias(b3.conv)
            self.wd = _weight(trunk.dense)[:, :, 0, 0].T.contiguous()
            self.w3_rows, self.wd_rows = self.w3.T.contiguous(), self.wd.T.contiguous()
            self.bd = _bias(trunk.dense)
            self.wl = _weight(trunk.head).T.contiguous()
            self.bl = _bias(trunk.head)
            # the gate's two 1x1 convs as matrices (a quantized conv would requantize its
            # weight on every call: ~50 us a chunk)
            self.w_squeeze = _weight(trunk.gate_squeeze)[:, :, 0, 0].T.contiguous()
            self.b_squeeze = _bias(trunk.gate_squeeze)
            self.w_excite = _weight(trunk.gate_excite)[:, :, 0, 0].T.contiguous()
            self.b_excite = _bias(trunk.gate_excite)
        self.channels = self.a2_table.shape[1]
        #: the two matrix products: "onednn" where this torch's oneDNN linear reproduces
        #: ``torch.mm`` (:func:`onednn_linear`), else "torch"
        self.products = "onednn" if kernels == "numba" and onednn_linear() else "torch"
        self.last_stats: dict = {}
        #: "auto" picks the cheaper way to run the dense layer; "per_patch"/"per_pair" force one
        self.dense_path = "auto"
        #: set ``profile`` to accumulate wall seconds per stage in ``stage_seconds``, and the
        #: work done in ``work_counts`` (images, positions, distinct patches, pairs, and the
        #: multiply-adds of the two matrix products)
        self.profile = False
        self.stage_seconds: dict[str, float] = {}
        self.work_counts: dict[str, int] = {}
        self._lock = threading.Lock()
        #: distinct keys per key at each level, from the last chunk: sizes the next hash tables
        self._distinct: dict[str, float] = {"7": 0.4, "6": 0.25, "5": 0.25}

    def describe(self) -> dict:
        return super().describe() | {
            "chunk": self.chunk,
            "kernels": self.kernels,
            "products": self.products,
        }

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
        act3 = self._conv3(a2, inv5.reshape(n6, 4), tick)
        inv6 = torch.from_numpy(inv6.reshape(4, n7))
        a3 = torch.index_select(act3, 0, inv6[0])
        for k in range(1, 4):
            torch.maximum(a3, torch.index_select(act3, 0, inv6[k]), out=a3)
        tick("pool3")
        stats = {
            "patches7": n7,
            "patches6": n6,
            "patches5": n5,
            "rows5": n5,
            "pairs_by_image": False,
        }
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
        a2 = torch.from_numpy(lk.pool_table4(u5, self.a2_table.numpy(), self._rows(n5)))
        tick("pool2")
        act3 = self._conv3(a2, inv5, tick)
        a3 = torch.from_numpy(lk.gather_max4(act3.numpy(), inv6, self._rows(n7)))
        tick("pool3")
        stats = {
            "patches7": n7,
            "patches6": n6,
            "patches5": n5,
            "rows5": a2.shape[0],
            "pairs_by_image": True,
        }
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

    def _conv3(self, a2: torch.Tensor, inv5: np.ndarray, tick) -> torch.Tensor:
        """Activated conv-3 output of each 6x6 patch from the pool-2 outputs of its 5x5 patches.

        ``inv5`` (n6, 4): the 5x5 sub-patch of each 6x6 patch at each kernel offset. The output
        is the sum of four per-offset products; row 4 p + k of ``per_offset`` is 5x5 patch p
        times kernel offset k (one matrix product per 5x5 patch instead of four per 6x6).
        """
        act = self.trunk.blocks[2].activation
        if self.kernels == "numba":  # gather, sum, bias and a ReLU in one pass
            from . import lutkernels as lk

            per_offset = self._product(a2, self.w3_rows)
            per_offset = per_offset.view(a2.shape[0], 4, self.channels)
            tick("conv3_product")
            relu = type(act) is nn.ReLU
            z3 = torch.from_numpy(lk.gather_sum4(per_offset.numpy(), inv5, self.b3.numpy(), relu))
            z3 = z3 if relu else act(z3)
            tick("conv3_sum")
            return z3
        per_offset = (a2 @ self.w3).view(4 * a2.shape[0], self.channels)
        tick("conv3_product")
        inv5 = inv5 * 4
        inv5 += np.arange(4)
        z3 = F.embedding_bag(torch.from_numpy(inv5), per_offset, mode="sum")
        z3 += self.b3
        z3 = self._act(act, z3)
        tick("conv3_sum")
        return z3

    def _head(self, shape, a3, pair_img, pair_patch, counts, stats, tick) -> np.ndarray:
        """Gate, dense layers and the global mean, from the distinct patches' pool-3 outputs.

        The means over positions are count-weighted sums over each image's (patch, count) pairs
        (``embedding_bag`` with per-sample weights over the pairs grouped by image).
        """
        t = self.trunk
        b, h, w = shape
        n_pos = (h - 6) * (w - 6)
        n7 = stats["patches7"]  # a3 may have zero rows after these (``_rows``)
        if stats["pairs_by_image"]:
            pair_img_sorted = pair_img
        else:
            order = np.argsort(pair_img.astype(np.uint8), kind="stable")
            pair_patch, counts = pair_patch[order], counts[order]
            pair_img_sorted = pair_img[order]
        bag_patch, bag_w = torch.from_numpy(pair_patch), torch.from_numpy(counts)
        bag_off: list[torch.Tensor] = []  # embedding_bag offsets, made on first use

        def per_image(values: torch.Tensor, index: torch.Tensor = bag_patch) -> torch.Tensor:
            if numba_pairs and index is bag_patch:
                return pair_sums(values, zero_bias, relu=False)
            if not bag_off:
                offsets = np.zeros(b, np.int64)
                np.cumsum(np.bincount(pair_img_sorted, minlength=b)[:-1], out=offsets[1:])
                bag_off.append(torch.from_numpy(offsets))
            return F.embedding_bag(index, values, bag_off[0], mode="sum", per_sample_weights=bag_w)

        numba_pairs = self.kernels == "numba"
        zero_bias = torch.zeros(a3.shape[1])

        def pair_sums(values: torch.Tensor, bias: torch.Tensor, relu: bool) -> torch.Tensor:
            """``lutkernels.pair_sums``: per-image sums of f(values + bias) over the pairs."""
            from . import lutkernels as lk

            v, bias = values.numpy(), bias.numpy()
            return torch.from_numpy(
                lk.pair_sums(v, pair_img_sorted, pair_patch, counts, b, bias, relu)
            )

        mean = per_image(a3) / n_pos
        tick("gate_mean")
        s = t.gate_squeeze_activation(torch.addmm(self.b_squeeze, mean, self.w_squeeze))
        s = t.gate_excite_activation(torch.addmm(self.b_excite, s, self.w_excite))
        if bool((s == s[0]).all()):  # one gate scale vector (the common case): no sort
            scales, group = s[:1], torch.zeros(b, dtype=torch.int64)
        else:
            scales, group = torch.unique(s, dim=0, return_inverse=True)
        n_groups = scales.shape[0]
        tick("gate")
        n_pairs = len(pair_patch)
        path = self.dense_path
        if path == "auto":
            path = "per_patch" if n_groups * n7 <= n_pairs else "per_pair"
        act_d = t.dense_activation
        if path == "per_patch":  # few distinct gate scales (1-bit gate): once per patch
            out = torch.empty(b, self.wl.shape[1])
            fused = numba_pairs and type(act_d) is nn.ReLU  # bias and ReLU in the pair sums
            for g in range(n_groups):
                if fused:
                    w_rows = self.wd_rows * scales[g][None, :]
                    product = self._product(a3, w_rows)
                    tick("dense_product")
                    sums = pair_sums(product, self.bd, relu=True)
                else:
                    w_g = scales[g][:, None] * self.wd
                    product = self._act(act_d, torch.addmm(self.bd, a3, w_g))
                    tick("dense_product")
                    sums = per_image(product)
                if n_groups == 1:
                    out = sums @ self.wl
                else:
                    rows = torch.nonzero(group == g)[:, 0]
                    out[rows] = sums[rows] @ self.wl
                tick("dense_sum")
        else:  # continuous gate scales (fp32 models): once per (image, patch) pair
            img_t = torch.from_numpy(pair_img_sorted.astype(np.int64))
            rows = torch.index_select(a3, 0, bag_patch) * torch.index_select(s, 0, img_t)
            tick("dense_gather")
            y = self._act(act_d, torch.addmm(self.bd, rows, self.wd))
            tick("dense_product")
            out = per_image(y, torch.arange(n_pairs)) @ self.wl
            tick("dense_sum")
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
        if self.profile:
            # rows as computed (oneDNN's are rounded up to ``ROW_BUCKET``)
            dense_rows = n_groups * a3.shape[0] if path == "per_patch" else n_pairs
            self._count(
                images=b,
                positions=b * n_pos,
                patches7=n7,
                patches6=stats["patches6"],
                patches5=stats["patches5"],
                pairs=n_pairs,
                conv3_product_macs=stats["rows5"] * self.w3.shape[0] * self.w3.shape[1],
                dense_product_macs=dense_rows * self.wd.shape[0] * self.wd.shape[1],
            )
        return (out / n_pos + self.bl).numpy()

    def _count(self, **work: int) -> None:
        """Add to ``work_counts`` (``profile`` on)."""
        with self._lock:
            for key, value in work.items():
                self.work_counts[key] = self.work_counts.get(key, 0) + int(value)

    def _rows(self, n: int) -> int:
        """Rows of a product's left factor: n rounded up to ``ROW_BUCKET`` for oneDNN, which builds
        and caches a kernel per shape (a new one for every chunk's row count cost more than the
        product), else n."""
        if self.products != "onednn":
            return n
        return -(-n // self.ROW_BUCKET) * self.ROW_BUCKET

    def _product(self, a: torch.Tensor, w_rows: torch.Tensor) -> torch.Tensor:
        """``a @ w_rows.T`` (``w_rows``: a linear layer's (out, in) weight, contiguous), through
        oneDNN where it was checked (:func:`onednn_linear`), else ``torch.mm``."""
        if self.products == "onednn":
            return _onednn_linear_op()(a, w_rows, None, "none", [], "")
        return torch.mm(a, w_rows.T)

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


def _onednn_linear_op():
    return torch.ops.mkldnn._linear_pointwise


@functools.cache
def onednn_linear() -> bool:
    """Whether the lookup engine's products can go through oneDNN's fp32 linear kernel.

    ``torch.ops.mkldnn._linear_pointwise`` (PyTorch's oneDNN linear, the one its compiler uses on
    CPUs) ran the engine's products 2-3x faster than ``torch.mm`` (MKL) on a 2-core AMD EPYC with
    AVX-512, with bit-identical results there. It is a private operator, so it is used only where
    it exists, and only if it reproduces ``torch.mm`` on a test product to 1e-6 (a build or a
    setting that computes fp32 products in bf16, such as ``torch.backends.mkldnn.matmul.
    fp32_precision = "bf16"`` on CPUs with AMX, fails this). The check runs once per process, at
    the first engine built; any error in it means ``torch.mm``.
    """
    try:
        g = torch.Generator().manual_seed(0)
        a, w = torch.rand(67, 32, generator=g), torch.randn(40, 32, generator=g)
        got = _onednn_linear_op()(a, w, None, "none", [], "")
        return got.dtype == torch.float32 and torch.allclose(got, a @ w.T, rtol=1e-6, atol=1e-6)
    except Exception:  # a private operator: any failure means torch.mm
        return False


def numba_available() -> bool:
    """Whether the compiled lookup kernels (``runtime.lutkernels``) can run: numba installed."""
    return importlib.util.find_spec("numba") is not None


__all__ = [
    "BinaryConvLutEngine",
    "ConvBlock",
    "LutTrunk",
    "lut_trunk_of",
    "numba_available",
    "onednn_linear",
    "patch_codes7",
]
