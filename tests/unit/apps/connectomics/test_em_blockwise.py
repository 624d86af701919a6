"""Block planning, halo checks, resumable blockwise prediction and block label merging
(quantscan.apps.connectomics.blockwise)."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from quantscan.apps.connectomics import blockwise as B
from quantscan.apps.connectomics import segment as S
from quantscan.apps.connectomics.metrics import adapted_rand
from quantscan.errors import ConfigError

SHAPE = (13, 20, 22)
BLOCK = (5, 8, 8)


def tiny_net():
    """Three same-padding Conv3d layers: receptive-field radius (1+0+1, 1+1+1, 1+1+1)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv3d(1, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv3d(4, 4, (1, 3, 3), padding=(0, 1, 1)),
        torch.nn.ReLU(),
        torch.nn.Conv3d(4, 3, 3, padding=1),
    )
    return net.double().eval()


def torch_predict(net):
    def predict(x):
        with torch.no_grad():
            return net(torch.from_numpy(np.ascontiguousarray(x))[None, None])[0].numpy()

    return predict


def whole(predict, raw, halo):
    """Whole-volume inference on the reflect-padded volume, cropped back."""
    y = predict(np.pad(raw, [(h, h) for h in halo], mode="reflect"))
    return y[(slice(None),) + tuple(slice(h, h + s) for h, s in zip(halo, raw.shape, strict=True))]


def raw_volume():
    return np.random.default_rng(0).random(SHAPE)


def test_plan_blocks_cover_the_volume_once():
    halo = (2, 3, 3)
    blocks = B.plan_blocks(SHAPE, BLOCK, halo)
    assert len(blocks) == 3 * 3 * 3
    cover = np.zeros(SHAPE, dtype=int)
    for b in blocks:
        cover[b.core] += 1
        padded = [r.stop - r.start + p0 + p1 for r, (p0, p1) in zip(b.read, b.pad, strict=True)]
        core = [c.stop - c.start for c in b.core]
        assert padded == [c + 2 * h for c, h in zip(core, halo, strict=True)]
        assert [s.stop - s.start for s in b.core_in_read] == core
    assert (cover == 1).all()
    assert [b.id for b in blocks] == list(range(len(blocks)))
    assert blocks[0].pad == ((2, 0), (3, 0), (3, 0)) and blocks[0].name == "b0_0_0"
    assert blocks[-1].core == (slice(10, 13), slice(16, 20), slice(16, 22))


def test_slabs():
    blocks = B.plan_blocks(SHAPE, BLOCK)
    groups = B.slabs(blocks, 4)
    assert [len(g) for g in groups] == [7, 7, 7, 6]
    assert [b.id for g in groups for b in g] == list(range(27))
    assert [len(g) for g in B.slabs(blocks[:2], 3)] == [1, 1, 0]
    with pytest.raises(ConfigError):
        B.slabs(blocks, 0)


def test_receptive_field_radius_and_halo_check():
    assert B.receptive_field_radius(tiny_net()) == (2, 3, 3)
    assert B.receptive_field_radius([3, (1, 3, 3), 3]) == (2, 3, 3)
    assert B.receptive_field_radius([5, 5]) == (4, 4, 4)
    pooled = torch.nn.Sequential(
        torch.nn.Conv3d(1, 1, 3, padding=1), torch.nn.MaxPool3d(2), torch.nn.Conv3d(1, 1, 3)
    )
    assert B.receptive_field_radius(pooled) == (4, 4, 4)  # 1 + 0.5 + 2, rounded up
    B.check_halo((2, 3, 3), (2, 3, 3))
    with pytest.raises(ConfigError, match="receptive-field radius"):
        B.check_halo((2, 2, 3), (2, 3, 3))


def test_stitched_equals_whole_volume_for_conv_net():
    net = tiny_net()
    predict = torch_predict(net)
    raw = raw_volume()
    halo = B.receptive_field_radius(net)
    out = np.full((3, *SHAPE), np.nan)
    ran = B.predict_blockwise(predict, raw, out, B.plan_blocks(SHAPE, BLOCK, halo))
    assert len(ran) == 27
    np.testing.assert_allclose(out, whole(predict, raw, halo), rtol=0, atol=1e-12)
    # the check is sensitive: a halo one voxel short changes the block faces
    short = np.zeros_like(out)
    B.predict_blockwise(predict, raw, short, B.plan_blocks(SHAPE, BLOCK, (1, 2, 2)))
    assert np.abs(short - out).max() > 1e-6


def integer_predict(x):
    """Deterministic integer-valued 'network' with radius 1 (zero padding at the array edge)."""
    x = x.astype(np.int64)
    box = ndimage.convolve(x, np.ones((3, 3, 3), dtype=np.int64), mode="constant")
    return np.stack([box, 2 * x])


def test_stitched_is_bit_identical_for_integer_predict():
    raw = np.random.default_rng(1).integers(0, 255, SHAPE).astype(np.uint8)
    out = np.zeros((2, *SHAPE), dtype=np.int64)
    B.predict_blockwise(integer_predict, raw, out, B.plan_blocks(SHAPE, (4, 7, 9), 1))
    assert np.array_equal(out, whole(integer_predict, raw, (1, 1, 1)))


def test_resume_after_a_killed_job(tmp_path):
    raw = np.random.default_rng(2).integers(0, 255, SHAPE).astype(np.uint8)
    blocks = B.plan_blocks(SHAPE, BLOCK, 1)
    out = np.lib.format.open_memmap(tmp_path / "out.npy", "w+", np.int64, (2, *SHAPE))
    markers = B.MarkerDir(tmp_path / "done")
    calls = []

    def dies_after_five(x):
        if len(calls) == 5:
            raise KeyboardInterrupt("killed")
        calls.append(1)
        return integer_predict(x)

    with pytest.raises(KeyboardInterrupt):
        B.predict_blockwise(dies_after_five, raw, out, blocks, done=markers)
    assert sorted(p.name for p in (tmp_path / "done").iterdir()) == sorted(
        f"{b.name}.done" for b in blocks[:5]
    )
    calls.clear()
    ran = B.predict_blockwise(integer_predict, raw, out, blocks, done=markers)
    assert ran == [b.id for b in blocks[5:]]
    assert np.array_equal(out, whole(integer_predict, raw, (1, 1, 1)))


class FailingWrite:
    """An output array whose writes die half way through the third block."""

    def __init__(self, shape):
        self.data = np.zeros(shape, dtype=np.int64)
        self.ndim = len(shape)
        self.writes = 0

    def __setitem__(self, key, value):
        self.writes += 1
        if self.writes == 3:
            self.data[key][..., :1] = value[..., :1]  # part of the core, then the job dies
            raise KeyboardInterrupt("killed during the write")
        self.data[key] = value


def test_block_not_marked_when_its_write_dies():
    raw = np.random.default_rng(3).integers(0, 255, SHAPE).astype(np.uint8)
    blocks = B.plan_blocks(SHAPE, BLOCK, 1)
    done = B.MemoryMarkers()
    with pytest.raises(KeyboardInterrupt):
        B.predict_blockwise(integer_predict, raw, FailingWrite((2, *SHAPE)), blocks, done=done)
    assert done.done == {0, 1}


def test_zarr_output():
    zarr = pytest.importorskip("zarr")
    raw = np.random.default_rng(4).integers(0, 255, SHAPE).astype(np.uint8)
    out = zarr.zeros(shape=(2, *SHAPE), chunks=(2, *BLOCK), dtype="int64")
    B.predict_blockwise(integer_predict, raw, out, B.plan_blocks(SHAPE, BLOCK, 1))
    assert np.array_equal(out[:], whole(integer_predict, raw, (1, 1, 1)))


def gt_volume():
    from scipy.spatial import cKDTree
    from skimage.measure import label

    rng = np.random.default_rng(5)
    shape = (12, 36, 40)
    pts = rng.uniform(0, 1, (12, 3)) * np.array(shape)
    grid = np.indices(shape).reshape(3, -1).T
    cells = (cKDTree(pts).query(grid)[1] + 1).reshape(shape)
    return label(cells, connectivity=1).astype(np.uint64)


def test_merge_block_labels_with_perfect_affinities():
    gt = gt_volume()
    affs = S.affinities_from_labels(gt)
    blocks = B.plan_blocks(gt.shape, (5, 16, 16))
    local = np.zeros(gt.shape, dtype=np.uint64)
    for b in blocks:  # per-block ids: each block's connected pieces of the GT, 1..k
        local[b.core] = S.affinity_components(affs[(slice(None),) + b.core], 0.5, min_size=1)
    merged, k = B.merge_block_labels(local, blocks, affs, 0.5)
    assert merged.dtype == np.uint64
    assert k == len(np.unique(gt))
    assert adapted_rand(merged, gt)["arand"] == pytest.approx(0.0, abs=1e-12)
    # no merges above the largest affinity: every block keeps its own ids, made unique
    apart, n_apart = B.merge_block_labels(local, blocks, affs, 1.5)
    assert n_apart == sum(int(local[b.core].max()) for b in blocks)
    assert len(np.unique(apart)) == n_apart


def test_fragments_blockwise_then_merge():
    gt = gt_volume()
    affs = S.affinities_from_labels(gt)
    blocks = B.plan_blocks(gt.shape, (6, 18, 20), (1, 4, 4))
    frags = np.zeros(gt.shape, dtype=np.uint64)
    markers = B.MemoryMarkers()
    # per block: the fallback's watershed fragments agglomerated inside the block (halo
    # included), then the blocks' segments are merged across faces
    ran = B.fragments_blockwise(
        lambda a: S.segment(a, method="watershed"), affs, frags, blocks, done=markers
    )
    assert len(ran) == len(blocks) == len(markers.done)
    merged, _ = B.merge_block_labels(frags, blocks, affs, 0.5)
    assert adapted_rand(merged, gt)["arand"] < 1e-9


def test_merge_block_labels_max_equals_whole_volume_components():
    """Per-block components joined where any face affinity reaches the threshold are the whole
    volume's components."""
    gt = gt_volume()
    rng = np.random.default_rng(6)
    affs = np.clip(S.affinities_from_labels(gt) + rng.normal(0, 0.1, (3, *gt.shape)), 0, 1)
    blocks = B.plan_blocks(gt.shape, (5, 16, 16))
    local = np.zeros(gt.shape, dtype=np.uint64)
    components = lambda a: S.affinity_components(a, 0.5, min_size=1)  # noqa: E731
    B.fragments_blockwise(components, affs, local, blocks)
    merged, _ = B.merge_block_labels(local, blocks, affs, 0.5, reduce="max")
    whole = components(affs)
    assert len(np.unique(whole)) > 3
    pairs = np.unique(np.stack([merged.ravel(), whole.ravel()]), axis=1)
    assert pairs.shape[1] == len(np.unique(merged)) == len(np.unique(whole))
    with pytest.raises(ValueError, match="reduce"):
        B.merge_block_labels(local, blocks, affs, 0.5, reduce="median")


def test_agglomerate_blockwise_equals_in_memory_on_the_same_fragments():
    """Fragments that the block faces already cut: the graph summed block by block is the whole
    volume's, so the agglomeration equals the in-memory one; the fragment ids become global."""
    gt = gt_volume()
    rng = np.random.default_rng(8)
    affs = np.clip(S.affinities_from_labels(gt) + rng.normal(0, 0.2, (3, *gt.shape)), 0, 1)
    blocks = B.plan_blocks(gt.shape, (5, 16, 16))
    frags = np.zeros(gt.shape, dtype=np.uint64)
    B.fragments_blockwise(S.watershed_fragments, affs, frags, blocks, context=0)
    local = frags.copy()
    seg, k = B.agglomerate_blockwise(frags, blocks, affs, 0.5)
    assert seg.dtype == np.uint64 and k == len(np.unique(seg)) - (0 in seg)
    # global fragment ids: one per (block, local id)
    block_of = np.zeros(gt.shape, dtype=np.uint64)
    for b in blocks:
        block_of[b.core] = b.id
    keys = np.unique(np.stack([block_of.ravel(), local.ravel()]), axis=1)
    assert len(np.unique(frags)) == keys.shape[1]
    whole = S.agglomerate(frags, affs, 0.5)
    pairs = np.unique(np.stack([seg.ravel(), whole.ravel()]), axis=1)
    assert pairs.shape[1] == len(np.unique(seg)) == len(np.unique(whole))
    assert adapted_rand(seg, gt)["arand"] < 0.02
    # no merge above the largest mean: the fragments themselves
    apart, n = B.agglomerate_blockwise(local.copy(), blocks, affs, 1.5)
    assert n == len(np.unique(frags))


def touching_cells(shape=(8, 32, 160), seed=0):
    """Boxes in two rows along x, touching without membranes (weak affinity 0.3 across a
    contact, noise 0.1). With blocks of 32 along x the faces at 32, 64 and 128 leave one-voxel
    slivers of a cell on the far side (x = 31, 63, 128), the face at 96 falls on a contact."""
    from quantscan.tasks.segmentation import affinities

    lab = np.zeros(shape, np.uint64)
    edges = [0, 31, 63, 80, 96, 129, shape[2]]
    for i, (a, b) in enumerate(zip(edges[:-1], edges[1:], strict=False)):
        lab[:, : shape[1] // 2, a:b] = 2 * i + 1
        lab[:, shape[1] // 2 :, a:b] = 2 * i + 2
    affs = affinities(lab, background=0).astype(np.float32)
    affs[affs <= 0] = 0.3
    rng = np.random.default_rng(seed)
    return lab, np.clip(affs + rng.normal(0, 0.1, affs.shape), 0, 1).astype(np.float32)


class ReadCounter:
    """An affinity array that records the largest read (voxels)."""

    def __init__(self, a):
        self.a, self.shape, self.largest = a, a.shape, 0

    def __getitem__(self, key):
        x = self.a[key]
        self.largest = max(self.largest, x[0].size)
        return x


def same_partition(x, y) -> bool:
    pairs = np.unique(np.stack([np.ravel(x), np.ravel(y)]), axis=1)
    return pairs.shape[1] == len(np.unique(x)) == len(np.unique(y))


def blockwise_segmentation(affs, blocks, **options):
    frags = np.zeros(affs.shape[1:], np.uint64)
    B.fragments_blockwise(S.block_fragments, affs, frags, blocks, **options)
    seg, _ = B.agglomerate_blockwise(frags, blocks, affs, 0.5)
    return frags, seg


def test_faces_through_cells_keep_the_in_memory_segmentation():
    """Fragments read with context and linked across faces are the in-memory fragments, so the
    block faces through the middle of cells and the slivers past them change nothing; each
    block reads only its core and the context."""
    lab, affs = touching_cells()
    frags_mem, seg_mem = S.fragments_and_segmentation(affs, threshold=0.5)
    assert adapted_rand(seg_mem, lab)["arand"] < 0.01
    blocks = B.plan_blocks(lab.shape, (8, 32, 32))
    counter = ReadCounter(affs)
    frags, seg = blockwise_segmentation(counter, blocks)
    assert same_partition(frags, frags_mem)
    assert same_partition(seg, seg_mem)
    ctx = np.array(B.FRAGMENT_CONTEXT)
    assert counter.largest <= np.prod(np.minimum(np.array((8, 32, 32)) + 2 * ctx, lab.shape))
    assert counter.largest < lab.size
    # without context, a sliver has no seed and its fragment floods into its neighbour: whole
    # columns of cells merge
    _, seg0 = blockwise_segmentation(affs, blocks, context=0, link=False)
    assert adapted_rand(seg0, lab)["arand"] > 0.3
    # with context but without links the faces cut the fragments (here the agglomeration
    # still rejoins them)
    frags1, _ = blockwise_segmentation(affs, blocks, link=False)
    assert len(np.unique(frags1)) > len(np.unique(frags_mem))


def test_links_resolve_to_their_owner_and_resume():
    """A cell cut by two faces keeps one fragment id (links point to the first block), in
    agglomerate_blockwise and merge_block_labels alike; a rerun with done markers skips the
    finished blocks and links to them."""
    lab, affs = touching_cells()
    blocks = B.plan_blocks(lab.shape, (8, 32, 32))
    local = np.zeros(lab.shape, np.uint64)
    B.fragments_blockwise(S.block_fragments, affs, local, blocks)
    assert (local >= B.LINK).any()
    apart, n = B.agglomerate_blockwise(local.copy(), blocks, affs, 1.5)  # no merges
    frags_mem = S.block_fragments(affs)
    assert same_partition(apart, frags_mem) and n == len(np.unique(frags_mem))
    merged, m = B.merge_block_labels(local, blocks, affs, 1.5)
    assert same_partition(merged, frags_mem) and m == n
    # killed after two blocks, rerun: the same ids
    markers = B.MemoryMarkers()
    again = np.zeros(lab.shape, np.uint64)
    B.fragments_blockwise(S.block_fragments, affs, again, blocks[:2], done=markers)
    ran = B.fragments_blockwise(S.block_fragments, affs, again, blocks, done=markers)
    assert ran == [b.id for b in blocks[2:]]
    np.testing.assert_array_equal(again, local)
    with pytest.raises(ConfigError, match="context"):
        B.fragments_blockwise(S.block_fragments, affs, again, blocks, context=(1, 2))


def test_in_memory_fragment_blocks_equal_one_watershed_for_any_thread_count():
    """An in-memory volume larger than the fragment block gets its fragments block by block
    (context, links), computed in threads, and one agglomeration: the same partition as one
    whole-volume watershed on the touching cells, and bit-identical results for 1 and 2
    threads; a volume within one fragment block is the whole-volume result itself."""
    from quantscan.apps.connectomics import scoring

    lab, affs = touching_cells()
    seg_opts = {"method": "waterz", "threshold": 0.5}
    whole = scoring.segment_volume(
        affs, block=(8, 32, 32), segmentation=seg_opts | {"fragment_block": [8, 32, 160]}
    )
    frags_mem, seg_mem = S.fragments_and_segmentation(affs, threshold=0.5)
    np.testing.assert_array_equal(whole[1], seg_mem)
    small = seg_opts | {"fragment_block": [8, 16, 32]}
    one = scoring.segment_volume(affs, block=(8, 32, 32), segmentation=small, threads=1)
    two = scoring.segment_volume(affs, block=(8, 32, 32), segmentation=small, threads=2)
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_array_equal(one[1], two[1])
    assert same_partition(one[0], frags_mem)
    assert same_partition(one[1], seg_mem)
    assert adapted_rand(one[1], lab)["arand"] < 0.01


def test_prefetch_keeps_order_and_runs_at_most_workers_at_once():
    import threading

    alive, most = [0], [0]
    lock = threading.Lock()

    def slow_square(x):
        with lock:
            alive[0] += 1
            most[0] = max(most[0], alive[0])
        try:
            return x * x
        finally:
            with lock:
                alive[0] -= 1

    got = []
    for y in B._prefetch(slow_square, list(range(20)), 3):
        got.append(y)
    assert got == [x * x for x in range(20)]
    assert most[0] <= 3
    assert list(B._prefetch(slow_square, [4], 2)) == [16]
