"""Compiled (numba) kernels of the fragment stage (:mod:`.segment`): a seeded priority-flood
watershed, the connected components of thresholded affinities by union-find and the Euclidean
distance transform (:func:`distance3`, exact for integer sampling), on 3-D volumes.

Both replace a slower library call with the same result: :func:`components3` labels exactly the
components of ``scipy.sparse.csgraph.connected_components`` (numbered by their first voxel in
C order, as csgraph numbers them); :func:`watershed3` is scikit-image's ``watershed`` with
connectivity 1 and compactness 0 (flood the lowest voxel first, ties by the order in which voxels
were reached; the neighbours of a voxel in scikit-image's order -z, -y, -x, +x, +y, +z), except
that seeds of equal height are taken in C order where scikit-image's heap leaves their order to
its implementation. Deterministic; no threads. Importing this module needs numba.
"""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = ["watershed3", "components3", "distance3"]


def _jit(fn):
    """``njit(nogil)``, cached on disk where the package directory is writable."""
    try:
        return nb.njit(cache=True, nogil=True)(fn)
    except RuntimeError:  # numba: "cannot cache function ... no locator available"
        return nb.njit(nogil=True)(fn)


@_jit
def _push(heap, size, key, age):
    """4-ary min-heap of (key, age) rows (int64; both compared in that order)."""
    k = size
    while k > 0:
        parent = (k - 1) >> 2
        pk = heap[parent, 0]
        if pk < key or (pk == key and heap[parent, 1] < age):
            break
        heap[k, 0] = pk
        heap[k, 1] = heap[parent, 1]
        k = parent
    heap[k, 0] = key
    heap[k, 1] = age
    return size + 1


@_jit
def _pop(heap, size):
    """Remove the smallest row (it was heap[0]); returns the new size."""
    size -= 1
    key = heap[size, 0]
    age = heap[size, 1]
    k = 0
    while True:
        first = 4 * k + 1
        if first >= size:
            break
        best = first
        bk = heap[first, 0]
        ba = heap[first, 1]
        last = min(first + 4, size)
        for child in range(first + 1, last):
            ck = heap[child, 0]
            if ck < bk or (ck == bk and heap[child, 1] < ba):
                best = child
                bk = ck
                ba = heap[child, 1]
        if key < bk or (key == bk and age < ba):
            break
        heap[k, 0] = bk
        heap[k, 1] = ba
        k = best
    heap[k, 0] = key
    heap[k, 1] = age
    return size


@_jit
def _watershed3(keys, labels, mask, use_mask):
    nz, ny, nx = labels.shape
    n = nz * ny * nx
    key = keys.ravel()
    out = labels.ravel()
    msk = mask.ravel()
    heap = np.empty((n, 2), np.int64)
    where = np.empty(n, np.int64)  # age -> voxel (every voxel is pushed at most once)
    size = 0
    age = 0
    for i in range(n):  # seeds: age 0 .. k-1 in C order
        if out[i] != 0:
            size = _push(heap, size, key[i], age)
            where[age] = i
            age += 1
    sy = nx
    sz = ny * nx
    while size > 0:
        i = where[heap[0, 1]]
        size = _pop(heap, size)
        z = i // sz
        y = (i // sy) % ny
        x = i % nx
        label = out[i]
        for k in range(6):
            if k == 0:
                if z == 0:
                    continue
                j = i - sz
            elif k == 1:
                if y == 0:
                    continue
                j = i - sy
            elif k == 2:
                if x == 0:
                    continue
                j = i - 1
            elif k == 3:
                if x == nx - 1:
                    continue
                j = i + 1
            elif k == 4:
                if y == ny - 1:
                    continue
                j = i + sy
            else:
                if z == nz - 1:
                    continue
                j = i + sz
            if out[j] != 0 or (use_mask and not msk[j]):
                continue
            out[j] = label
            size = _push(heap, size, key[j], age)
            where[age] = j
            age += 1


def _order_keys(image: np.ndarray) -> np.ndarray:
    """int64 keys in the order of the float64 values (-0.0 as 0.0; no NaN)."""
    bits = (np.asarray(image, dtype=np.float64) + 0.0).view(np.int64)
    return bits ^ ((bits >> 63) & np.int64(0x7FFFFFFFFFFFFFFF))


def watershed3(
    image: np.ndarray, markers: np.ndarray, mask: np.ndarray | None = None
) -> np.ndarray:
    """Seeded watershed of a 3-D ``image`` from ``markers`` (non-zero = seed label) within
    ``mask``: int64 labels, 0 where no seed reaches (module docstring for the order)."""
    image = np.ascontiguousarray(_order_keys(image))
    labels = np.array(markers, dtype=np.int64, order="C")
    if image.ndim != 3 or labels.shape != image.shape:
        raise ValueError(f"watershed3: image {image.shape} and markers {labels.shape}")
    if mask is None:
        _watershed3(image, labels, np.ones((1, 1, 1), np.bool_), False)
    else:
        mask = np.ascontiguousarray(mask, dtype=np.bool_)
        labels[~mask] = 0
        _watershed3(image, labels, mask, True)
    return labels


@_jit
def _find(parent, i):
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


@_jit
def _components3(affs, threshold, within, use_within):
    nz, ny, nx = affs.shape[1], affs.shape[2], affs.shape[3]
    n = nz * ny * nx
    parent = np.arange(n)
    w = within.ravel()
    sy = nx
    sz = ny * nx
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                i = z * sz + y * sy + x
                for c in range(3):
                    if c == 0:
                        if z == 0:
                            continue
                        j = i - sz
                    elif c == 1:
                        if y == 0:
                            continue
                        j = i - sy
                    else:
                        if x == 0:
                            continue
                        j = i - 1
                    if not affs[c, z, y, x] >= threshold:
                        continue
                    if use_within and (w[i] != w[j] or w[i] == 0):
                        continue
                    a = _find(parent, i)
                    b = _find(parent, j)
                    if a < b:
                        parent[b] = a
                    elif b < a:
                        parent[a] = b
    comp = np.empty(n, np.int64)
    sizes = np.zeros(n, np.int64)
    k = 0
    for i in range(n):  # a component's root is its first voxel: numbered in C order
        r = _find(parent, i)
        if r == i:
            comp[i] = k
            k += 1
        else:
            comp[i] = comp[r]
        sizes[comp[i]] += 1
    return comp, sizes[:k]


def components3(
    affs: np.ndarray, threshold: float, within: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(component, sizes)``: the 0-based component of every voxel (int64, flat, C order;
    numbered by first voxel) of the graph of the edges of 3-D ``affs`` ``(3, z, y, x)`` (float)
    that are ``>= threshold`` (compared in the affinities' dtype) and, with ``within``, join two
    voxels of the same non-zero ``within`` label; and each component's voxel count."""
    affs = np.ascontiguousarray(affs)
    if affs.dtype not in (np.float32, np.float64) or affs.ndim != 4 or affs.shape[0] != 3:
        raise ValueError(
            f"components3: float affinities (3, z, y, x), not {affs.dtype} {affs.shape}"
        )
    thr = affs.dtype.type(threshold)
    if within is None:
        return _components3(affs, thr, np.zeros((1, 1, 1), np.int64), False)
    within = np.ascontiguousarray(within)
    if within.shape != affs.shape[1:]:
        raise ValueError(f"components3: within {within.shape}, affinities {affs.shape}")
    return _components3(affs, thr, within, True)


@_jit
def _edt_line(f, n, step2, v, z, out):
    """Squared distances along one line (Felzenszwalb and Huttenlocher 2012): ``out[p] =
    min_q step2 (p - q)^2 + f[q]`` over the finite ``f[q]``; inf where there is none."""
    k = -1
    for q in range(n):
        fq = f[q]
        if fq == np.inf:
            continue
        while k >= 0:
            r = v[k]
            s = ((fq + step2 * q * q) - (f[r] + step2 * r * r)) / (2.0 * step2 * (q - r))
            if s <= z[k]:
                k -= 1
            else:
                break
        k += 1
        v[k] = q
        if k == 0:
            z[k] = -np.inf
        else:
            r = v[k - 1]
            z[k] = ((fq + step2 * q * q) - (f[r] + step2 * r * r)) / (2.0 * step2 * (q - r))
    if k < 0:
        for p in range(n):
            out[p] = np.inf
        return
    j = 0
    for p in range(n):
        while j < k and z[j + 1] < p:
            j += 1
        d = p - v[j]
        out[p] = step2 * d * d + f[v[j]]


@_jit
def _edt3(inside, s0, s1, s2):
    nz, ny, nx = inside.shape
    d = np.empty((nz, ny, nx), np.float64)
    m = max(nz, ny, nx)
    f = np.empty(m, np.float64)
    g = np.empty(m, np.float64)
    v = np.empty(m, np.int64)
    z = np.empty(m + 1, np.float64)
    for a in range(nz):
        for b in range(ny):
            for c in range(nx):
                f[c] = np.inf if inside[a, b, c] else 0.0
            _edt_line(f, nx, s2 * s2, v, z, g)
            for c in range(nx):
                d[a, b, c] = g[c]
    for a in range(nz):
        for c in range(nx):
            for b in range(ny):
                f[b] = d[a, b, c]
            _edt_line(f, ny, s1 * s1, v, z, g)
            for b in range(ny):
                d[a, b, c] = g[b]
    for b in range(ny):
        for c in range(nx):
            for a in range(nz):
                f[a] = d[a, b, c]
            _edt_line(f, nz, s0 * s0, v, z, g)
            for a in range(nz):
                d[a, b, c] = np.sqrt(g[a])
    return d


def distance3(inside: np.ndarray, sampling=None) -> np.ndarray | None:
    """Euclidean distance of every ``inside`` voxel of a 3-D mask to the nearest outside voxel
    (0 outside), scaled by ``sampling`` (z, y, x): ``scipy.ndimage.distance_transform_edt``'s
    values, bit for bit, when the sampling is integers (the squared distances are then exact
    integers in float64); None where that does not hold (non-integer sampling, no outside
    voxel, a volume too large for exact squared distances): use scipy's."""
    inside = np.ascontiguousarray(inside, dtype=np.bool_)
    if inside.ndim != 3 or inside.all() or not inside.size:
        return None
    steps = (
        [1.0, 1.0, 1.0] if sampling is None else [float(s) for s in np.broadcast_to(sampling, 3)]
    )
    if any(s <= 0 or s != int(s) for s in steps):
        return None
    if sum((s * n) ** 2 for s, n in zip(steps, inside.shape, strict=True)) >= 2.0**52:
        return None
    return _edt3(inside, *steps)
