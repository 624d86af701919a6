"""Compiled (numba) kernels of the lookup engine (``runtime.lut.BinaryConvLutEngine``).

The engine's numpy path deduplicates patches with sorts and gathers rows with ``index_select``;
both write large temporaries and hold the GIL between numpy calls. These kernels do the same work
in single passes: open-addressing hash tables (linear probing, Fibonacci hashing) for the
deduplication, and fused gather-max for the two max-pools. Matrix products stay in PyTorch (oneDNN
or MKL are faster than a loop at these shapes; ``runtime.lut.onednn_linear``). Every kernel releases the GIL, so worker threads scale.

Codes are those of ``runtime.lut.patch_codes7``: bit ``8 r + c`` of a k x k patch code is pixel
``(r, c)``; the sub-patch at offset ``(di, dj)`` is ``(code >> (8 di + dj)) & mask(k)``.

Distinct codes come out in order of first appearance, so the results are deterministic. Hash
tables are sized by the caller from an estimate (``table_bits``); a kernel whose table gets more
than 3/4 full stops and returns ``None`` (the caller retries with a larger table).
Importing this module needs numba (``runtime.lut`` checks for it first).
"""

from __future__ import annotations

import numba as nb
import numpy as np

_U = np.uint64
_MULT = np.uint64(0x9E3779B97F4A7C15)  # 2^64 / golden ratio: Fibonacci hashing


def jit(fn):
    """``njit(nogil)``, cached on disk where the package directory is writable (also for
    ``layers.maxpool``'s kernels)."""
    try:
        return nb.njit(cache=True, nogil=True)(fn)
    except RuntimeError:  # numba: "cannot cache function ... no locator available"
        return nb.njit(nogil=True)(fn)


def table_bits(expected: float) -> int:
    """log2 of a hash table size for ``expected`` distinct keys: load factor at most 1/2."""
    return max(8, int(2 * max(expected, 1.0)).bit_length())


@jit
def _probe(table, key, shift, mask, n_distinct, distinct):
    """Id of ``key`` in ``table`` ((size, 2) uint64 rows [key + 1, id]); inserts it when new.

    Returns (id, new n_distinct); new keys are appended to ``distinct``.
    """
    k = key + _U(1)
    s = np.int64((k * _MULT) >> shift)
    while True:
        t = table[s, 0]
        if t == k:
            return np.int64(table[s, 1]), n_distinct
        if t == 0:
            table[s, 0] = k
            table[s, 1] = _U(n_distinct)
            distinct[n_distinct] = key
            return n_distinct, n_distinct + 1
        s = (s + 1) & mask


@jit
def patches7(x, bits):
    """Distinct 7x7 patches of binary images ``x`` (b, h, w) and how often each image holds them.

    Returns (codes, pair_image, pair_patch, pair_count): the distinct 7x7 codes, and one
    (image, patch index, count) triple per distinct patch of each image, grouped by image.
    Every position probes the chunk's table of ``2**bits`` slots (keys and ids in separate
    arrays), except where a position repeats the one above it (vertical runs, e.g. blank
    stretches); ``last_pair`` says whether this image already holds a patch. With chunks of a
    few images the table stays in L2: one level was 1.5x faster than a per-image table in
    front of the chunk's (the layout of earlier versions, made for chunks of 32 images).
    Returns None when the table gets more than 3/4 full.
    """
    b, h, w = x.shape
    hn, wn = h - 6, w - 6
    mask = (1 << bits) - 1
    shift = _U(64 - bits)
    keys = np.zeros(1 << bits, np.uint64)  # code + 1; 0: empty
    ids = np.empty(1 << bits, np.int64)
    limit = 3 << (bits - 2)
    n = b * hn * wn
    codes = np.empty(min(n, limit + 1), np.uint64)
    last_pair = np.empty(min(n, limit + 1), np.int64)
    pair_image = np.empty(n, np.int64)
    pair_patch = np.empty(n, np.int64)
    pair_count = np.empty(n, np.float32)
    rows = np.empty((wn, h), np.uint8)  # rows[j, r]: the 7 pixels of row r from column j
    n_codes = 0
    n_pairs = 0
    for img in range(b):
        for r in range(h):
            v = 0
            for t in range(6):
                v |= np.int64(x[img, r, t]) << t
            for j in range(wn):
                v |= np.int64(x[img, r, j + 6]) << 6
                rows[j, r] = v
                v >>= 1
        first_pair = n_pairs  # pairs of this image are n_pairs onwards
        for j in range(wn):
            code = _U(0)
            for r in range(6):
                code |= _U(rows[j, r]) << _U(8 * r)
            prev = _U(0xFFFFFFFFFFFFFFFF)
            q = 0
            for i in range(hn):
                code |= _U(rows[j, i + 6]) << _U(48)
                if code != prev:
                    prev = code
                    k = code + _U(1)
                    s = np.int64((k * _MULT) >> shift)
                    while True:
                        t = keys[s]
                        if t == k:
                            gid = ids[s]
                            break
                        if t == 0:  # a new patch
                            keys[s] = k
                            gid = n_codes
                            ids[s] = gid
                            codes[gid] = code
                            last_pair[gid] = -1
                            n_codes += 1
                            if n_codes > limit:
                                return None
                            break
                        s = (s + 1) & mask
                    q = last_pair[gid]
                    if q < first_pair:  # first time in this image
                        q = n_pairs
                        last_pair[gid] = q
                        pair_image[q] = img
                        pair_patch[q] = gid
                        pair_count[q] = 0.0
                        n_pairs += 1
                pair_count[q] += 1.0
                code >>= _U(8)
    return (
        codes[:n_codes].copy(),
        pair_image[:n_pairs].copy(),
        pair_patch[:n_pairs].copy(),
        pair_count[:n_pairs].copy(),
    )


@jit
def sub_patches(codes, k, bits):
    """The four k x k sub-patches of each (k + 1) x (k + 1) code, deduplicated.

    Returns (inverse, distinct): ``inverse[i, o]`` is the index in ``distinct`` of the sub-patch
    of ``codes[i]`` at offset o = 2 di + dj.
    """
    n = codes.size
    mask = (1 << bits) - 1
    shift = _U(64 - bits)
    table = np.zeros((1 << bits, 2), np.uint64)
    limit = 3 << (bits - 2)
    m = _U(0)
    for r in range(k):
        m |= _U((1 << k) - 1) << _U(8 * r)
    inverse = np.empty((n, 4), np.int64)
    distinct = np.empty(min(4 * n, limit + 1), np.uint64)
    n_distinct = 0
    for i in range(n):
        c = codes[i]
        for o in range(4):
            sub = (c >> _U(8 * (o // 2) + (o % 2))) & m
            inverse[i, o], n_distinct = _probe(table, sub, shift, mask, n_distinct, distinct)
            if n_distinct > limit:
                return None
    return inverse, distinct[:n_distinct].copy()


@jit
def _code4(s):
    """16-bit index of the 4x4 patch in the low corner of a byte-per-row code."""
    return np.int64(
        (s & _U(0xF))
        | ((s >> _U(4)) & _U(0xF0))
        | ((s >> _U(8)) & _U(0xF00))
        | ((s >> _U(12)) & _U(0xF000))
    )


@jit
def _padded_rows(n, c, rows, dtype):
    """An (max(n, rows), c) array whose rows from n on are zero."""
    out = np.empty((max(n, rows), c), dtype)
    out[n:] = 0
    return out


@jit
def pool_table4(codes5, table, rows=0):
    """Max-pool (2x2, stride 1) output of each 5x5 code: max of four rows of the 4x4 ``table``.

    Plain 2-D indexing in the channel loop (no row views): LLVM vectorizes it; ~5x the speed of
    a helper taking row slices. ``rows`` > n: the output has that many rows, zeros after the
    n-th (a matrix product's row count rounded up, see ``runtime.lut``)."""
    n = codes5.size
    c = table.shape[1]
    out = _padded_rows(n, c, rows, table.dtype)
    for i in range(n):
        v = codes5[i]
        r0 = _code4(v)
        r1 = _code4(v >> _U(1))
        r2 = _code4(v >> _U(8))
        r3 = _code4(v >> _U(9))
        for ch in range(c):
            a = table[r0, ch]
            b = table[r1, ch]
            d = table[r2, ch]
            e = table[r3, ch]
            m1 = a if a >= b else b
            m2 = d if d >= e else e
            out[i, ch] = m1 if m1 >= m2 else m2
    return out


@jit
def gather_max4(table, inverse, rows=0):
    """``out[i] = max_o table[inverse[i, o]]`` (elementwise) for ``inverse`` of shape (n, 4);
    ``rows`` as in ``pool_table4``."""
    n = inverse.shape[0]
    c = table.shape[1]
    out = _padded_rows(n, c, rows, table.dtype)
    for i in range(n):
        r0 = inverse[i, 0]
        r1 = inverse[i, 1]
        r2 = inverse[i, 2]
        r3 = inverse[i, 3]
        for ch in range(c):
            a = table[r0, ch]
            b = table[r1, ch]
            d = table[r2, ch]
            e = table[r3, ch]
            m1 = a if a >= b else b
            m2 = d if d >= e else e
            out[i, ch] = m1 if m1 >= m2 else m2
    return out


@jit
def gather_sum4(per_offset, inverse, bias, relu):
    """Conv 3 from per-offset products: ``z[i] = sum_o per_offset[inverse[i, o], o] + bias``.

    ``per_offset`` (n5, 4, c): 5x5 patch p times kernel offset o; ``inverse`` (n6, 4): the 5x5
    sub-patch of each 6x6 patch at each offset. Summed in offset order, then the bias (as
    ``embedding_bag`` + ``+=`` did); ``relu``: clamp at 0 in the same pass."""
    n = inverse.shape[0]
    c = per_offset.shape[2]
    out = np.empty((n, c), per_offset.dtype)
    for i in range(n):
        r0 = inverse[i, 0]
        r1 = inverse[i, 1]
        r2 = inverse[i, 2]
        r3 = inverse[i, 3]
        for ch in range(c):
            z = per_offset[r0, 0, ch] + per_offset[r1, 1, ch]
            z = z + per_offset[r2, 2, ch]
            z = z + per_offset[r3, 3, ch]
            z = z + bias[ch]
            if relu and z < 0:
                z = z - z  # +0 in the dtype of z
            out[i, ch] = z
    return out


@jit
def pair_sums(values, pair_image, pair_patch, pair_count, n_images, bias, relu):
    """Per-image count-weighted sums of rows: ``out[img] = sum count * f(values[patch] + bias)``
    over the (image, patch, count) pairs, ``f`` a ReLU if ``relu`` else the identity: the global
    means' numerators, and the dense layer's bias and ReLU fused into the final mean (``values``
    is then the bias-free product, read once). Each run of pairs of one image is summed in a
    local row (pairs come grouped by image; any order is correct)."""
    c = values.shape[1]
    out = np.zeros((n_images, c), values.dtype)
    acc = np.zeros(c, values.dtype)
    cur = pair_image[0] if pair_image.size else 0
    for q in range(pair_patch.size):
        img = pair_image[q]
        if img != cur:
            for ch in range(c):
                out[cur, ch] += acc[ch]
                acc[ch] = 0
            cur = img
        p = pair_patch[q]
        w = pair_count[q]
        for ch in range(c):
            v = values[p, ch] + bias[ch]
            if relu and v < 0:
                v = v - v
            acc[ch] += w * v
    for ch in range(c):
        out[cur, ch] += acc[ch]
    return out


__all__ = [
    "gather_max4",
    "gather_sum4",
    "pair_sums",
    "patches7",
    "pool_table4",
    "sub_patches",
    "table_bits",
]
