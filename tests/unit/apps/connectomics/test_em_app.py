"""The connectomics application: settings, patches and their augmentation, blockwise inference and
segmentation, the App's plan."""

import numpy as np
import pytest
import torch

from quantscan.apps.connectomics import dataset as cdata
from quantscan.apps.connectomics import scoring
from quantscan.apps.connectomics import settings as csettings
from quantscan.apps.connectomics.app import ConnectomicsApp
from quantscan.apps.connectomics.synthetic import shift_section
from quantscan.errors import ConfigError, InputFormatError
from quantscan.models import build_model
from quantscan.runtime import TorchEngine
from quantscan.tasks.segmentation import affinities

SECTION = {
    "data": {"source": "synthetic", "synthetic": {"train": [16, 64, 64], "test": [8, 64, 64]}},
    "model": {"name": "unet3d", "filters": 4, "levels": 2},
    "train": {"epochs": 1},
    "compress": {"methods": {"mixed": {"type": "mixed", "layers": 4}, "int8": {"type": "int8"}}},
}


def app(section=SECTION):
    return ConnectomicsApp("connectomics", section, {"seed": 1})


def test_settings_defaults_and_named_errors():
    s = csettings.resolve(SECTION)
    assert (
        s["data"]["patch"] == [8, 48, 48]
        or s["data"]["patch"] == csettings.DEFAULTS["data"]["patch"]
    )
    assert s["scan"]["segmentation"] == {
        "method": "waterz",
        "threshold": 0.45,
        "scoring": "mean",
        "fragments": "distance",
        "fragment_block": [64, 256, 256],
    }
    assert s["data"]["augment"]["missing"] == 0.05
    assert s["data"]["augment"]["misalign"] == 0.05
    bad = [
        ({"data": {"source": "tiff"}}, r"data\.source"),
        ({"data": {"voxel_size": [40, 4]}}, r"data\.voxel_size"),
        ({"data": {"voxel_size": [40, 0, 4]}}, r"data\.voxel_size"),
        (
            {"data": {"synthetic": {"train": [4, 64, 64]}}},
            r"synthetic\.train.*smaller than one patch",
        ),
        ({"data": {"patches": {"train": 0}}}, r"patches\.train"),
        ({"data": {"source": "volumes"}}, r"volumes\.train"),
        (
            {
                "data": {
                    "source": "volumes",
                    "volumes": {"train": {"path": "a.h5"}, "test": {"path": "b.h5", "labels": "l"}},
                }
            },
            r"volumes\.train\.labels",
        ),
        ({"scan": {"segmentation": {"threshold": 1.5}}}, r"segmentation\.threshold"),
        ({"data": {"augment": {"missing": 1.0}}}, r"augment\.missing"),
        ({"data": {"augment": {"misalign": -0.1}}}, r"augment\.misalign"),
        ({"scan": {"segmentation": {"fragment_block": [32, 0, 256]}}}, r"fragment_block"),
        ({"scan": {"segmentation": {"method": "mws"}}}, r"segmentation\.method"),
        ({"scan": {"segmentation": {"scoring": "quantile42"}}}, r"segmentation\.scoring"),
        ({"scan": {"segmentation": {"fragments": "slic"}}}, r"segmentation\.fragments"),
        ({"scan": {"engines": {"fp32": ["packed"]}}}, r"engines\.fp32"),
        ({"scan": {"block": [16, 128]}}, r"scan\.block"),
    ]
    for section, message in bad:
        with pytest.raises(ConfigError, match=message):
            csettings.resolve({**SECTION, **section})


def test_app_plan():
    a = app()
    assert a.task == "affinities" and a.class_names() == ["z", "y", "x"]
    assert a.arch()["name"] == "unet3d" and a.arch()["out_channels"] == 3
    assert a.scan_models() == ["fp32", "mixed", "int8"]
    assert a.scan_engines("int8") == ["onnx_int8", "torch_int8"]
    assert a.scan_engines("mixed") == ["packed_torch"]
    only = app(SECTION | {"scan": {"engines": {"int8": ["torch_int8"]}}})
    assert only.scan_engines("int8") == ["torch_int8"]
    with pytest.raises(ConfigError, match="engines.int8"):
        csettings.resolve(SECTION | {"scan": {"engines": {"int8": ["packed"]}}})
    targets = a.targets()
    assert "results/connectomics/summary.tsv" in targets
    assert "results/connectomics/scan/synthetic/int8/onnx_int8/metrics.json" in targets
    assert "results/connectomics/compress/synthetic/mixed/metrics.json" in targets


def labels_volume(shape=(8, 32, 32), seed=0):
    rng = np.random.default_rng(seed)
    lab = np.zeros(shape, np.uint64)
    for i, (z, y, x) in enumerate(rng.integers(0, shape, (12, 3)), start=1):
        lab[max(0, z - 3) : z + 3, max(0, y - 8) : y + 8, max(0, x - 8) : x + 8] = i
    return lab


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_flip_keeps_affinities_right(axis):
    """A flipped patch's targets are the affinities of the flipped labels."""
    lab = labels_volume()
    y = affinities(lab, background=0)
    x = lab[None].astype(np.float32)

    class Flip:  # a generator whose first draw flips `axis` only, then nothing else
        def __init__(self):
            self.calls = 0

        def random(self):
            self.calls += 1
            return 0.0 if self.calls - 1 == axis else 0.9

        def uniform(self, a, b):
            return 0.0

    xa, ya = cdata.augment(x, y, Flip(), {"flip": True, "transpose": False, "intensity": 0})
    flipped = np.flip(lab, axis=axis)
    np.testing.assert_array_equal(xa[0], flipped.astype(np.float32))
    want = affinities(np.ascontiguousarray(flipped), background=0)
    np.testing.assert_array_equal(ya, want)


def test_transpose_swaps_y_and_x_channels():
    lab = labels_volume()
    y = affinities(lab, background=0)

    class Transpose:
        def random(self):
            return 0.0

        def uniform(self, a, b):
            return 0.0

    _, ya = cdata.augment(
        lab[None].astype(np.float32), y, Transpose(), {"flip": False, "transpose": True}
    )
    want = affinities(np.ascontiguousarray(np.swapaxes(lab, 1, 2)), background=0)
    np.testing.assert_array_equal(ya, want)


def test_missing_sections_blank_the_input_and_keep_the_targets():
    """Defect augmentation: each section blanked with probability ``missing`` (about that share
    over many patches), the other sections and every target untouched; 0 blanks nothing."""
    lab = labels_volume()
    y = affinities(lab, background=0)
    x = (1 + lab[None] % 7).astype(np.float32) / 8  # no section is 0 on its own
    rng = np.random.default_rng(3)
    opts = {"flip": False, "transpose": False, "intensity": 0, "missing": 0.3}
    blanked = []
    for _ in range(200):
        xa, ya = cdata.augment(x, y, rng, opts)
        np.testing.assert_array_equal(ya, y)
        gone = (xa[0] == 0).all(axis=(1, 2))
        np.testing.assert_array_equal(xa[0][~gone], x[0][~gone])
        blanked.append(gone)
    share = np.mean(blanked)
    assert 0.25 < share < 0.35
    xa, _ = cdata.augment(x, y, rng, opts | {"missing": 0.0})
    np.testing.assert_array_equal(xa, x)


def test_slipped_sections_move_image_labels_and_targets_together():
    """Misalignment augmentation: a slipped section's image moves with its labels; its targets are
    the affinities of the slipped labels, except that the pixels the shift uncovered (made up by
    repeating the edge) and the in-plane edges next to them are unknown (-1), as are in-plane
    edges to outside the patch; first sections never slip."""
    big = labels_volume((10, 40, 40), seed=4)
    inner = (slice(1, None), slice(4, 36), slice(4, 36))
    lab = big[inner].copy()
    y = affinities(big, background=0)[(slice(None), *inner)].copy()
    x = (1 + lab[None] % 7).astype(np.float32) / 8
    rng = np.random.default_rng(5)
    slips = cdata.slip_sections(x, y, lab, rng, 0.5, max_px=3)
    assert slips and all(
        k >= 1 and (dy or dx) and max(abs(dy), abs(dx)) <= 3 for k, dy, dx in slips
    )
    before = big[inner]
    made = np.zeros(lab.shape, bool)
    for k in range(lab.shape[0]):
        moved = {s[0]: s[1:] for s in slips}.get(k)
        want = before[k] if moved is None else shift_section(before[k], *moved)
        np.testing.assert_array_equal(lab[k], want)
        np.testing.assert_array_equal(x[0, k], (1 + want % 7).astype(np.float32) / 8)
        if moved is not None:
            made[k] = cdata._uncovered(lab.shape[1:], *moved)
            assert made[k].any() and (y[1:, k][:, made[k]] == -1).all()
    inside = (slice(None), slice(1, None), slice(1, None), slice(1, None))  # neighbours inside
    got, want = y[inside], affinities(lab, background=0)[inside]
    np.testing.assert_array_equal(got[got != -1], want[got != -1])
    assert (y[0, 1:][~(made[1:] | made[:-1])] != -1).all()  # z targets of real pixels are known
    assert (y[0] != affinities(before, background=0)[0]).any()  # a slip cuts some z edges


def test_slip_augmentation_in_patches_cuts_labels_at_the_image_corners():
    """``patches`` with ``misalign``: every patch equals the plain patch with some sections
    slipped, and its known targets are the affinities of the labels read back from its own
    (slipped) image, so labels cut at other corners than the image would fail."""
    from quantscan.apps.connectomics.dataset import _uncovered

    big = labels_volume((10, 40, 40), seed=4)
    raw = big.astype(np.uint8)  # labels 1..12: the image is the labels / 255
    opts = {"flip": False, "transpose": False, "intensity": 0, "missing": 0}
    x0, y0 = cdata.patches(raw, big, (6, 24, 24), 6, 0, z_range=(0, 10), options=opts)
    x2, y2 = cdata.patches(
        raw, big, (6, 24, 24), 6, 0, z_range=(0, 10), options=opts | {"misalign": 0.4}
    )
    slipped = 0
    for i in range(len(x0)):
        lab = np.rint(x2[i, 0] * 255).astype(np.uint64)
        for k in range(6):
            if np.array_equal(x2[i, 0, k], x0[i, 0, k]):
                continue
            slipped += 1
            shifts = [
                (dy, dx)
                for dy in range(-6, 7)
                for dx in range(-6, 7)
                if np.array_equal(shift_section(x0[i, 0, k], dy, dx), x2[i, 0, k])
            ]
            assert k >= 1 and shifts
            assert any((y2[i, 0, k][_uncovered((24, 24), *d)] == -1).all() for d in shifts)
        want = affinities(lab, background=0)
        known = y2[i] != -1
        known[:, 0] = False  # the patch's first plane: neighbours outside it (whole volume)
        known[1, :, 0] = known[2, :, :, 0] = False
        np.testing.assert_array_equal(y2[i][known], want[known])
    assert slipped >= 3
    np.testing.assert_array_equal(
        y0, cdata.patches(raw, big, (6, 24, 24), 6, 0, z_range=(0, 10), options=opts)[1]
    )


def test_patches_and_split_ranges():
    lab = labels_volume((16, 32, 32))
    raw = (lab % 200).astype(np.uint8)
    r = cdata.split_ranges(16, 4)
    assert r == {"train": (0, 12), "val": (12, 16)}
    x, y = cdata.patches(raw, lab, (4, 16, 16), 5, 0, z_range=r["val"], options={})
    assert x.shape == (5, 1, 4, 16, 16) and x.dtype == np.float32 and 0 <= x.min() <= x.max() <= 1
    assert y.shape == (5, 3, 4, 16, 16) and y.dtype == np.int8
    with pytest.raises(InputFormatError, match="too few"):
        cdata.split_ranges(6, 4)
    with pytest.raises(InputFormatError, match="smaller than the model's input multiple"):
        cdata.crop_to_multiple(np.zeros((1, 8, 8)), (2, 4, 4))


def tiny_unet(seed=0):
    torch.manual_seed(seed)
    model = build_model({"name": "unet3d", "filters": 4, "levels": 2}).eval()
    return model


def test_blockwise_inference_equals_one_whole_volume_pass():
    """Stitched blocks equal one pass over the whole volume, reflect-padded by the halo (what the
    blocks see at the faces), everywhere, within 1e-5."""
    model = tiny_unet()
    rng = np.random.default_rng(0)
    raw = rng.random((22, 60, 52)).astype(np.float32)  # not a multiple of the blocks
    block, halo = scoring.geometry(model, (8, 16, 16))
    assert all(b % m == 0 for b, m in zip(block, model.input_multiple(), strict=True))
    assert all(h >= r for h, r in zip(halo, model.halo(), strict=True))
    engine = TorchEngine(model, batch_size=1, input_dtypes=("float32",))
    affs = scoring.predict_volume(engine, raw, block=block, halo=halo)
    multiple = model.input_multiple()
    padded = np.pad(raw, [(h, h) for h in halo], mode="reflect")
    extra = [(0, -s % m) for s, m in zip(padded.shape, multiple, strict=True)]
    padded = np.pad(padded, extra, mode="reflect")
    with torch.no_grad():
        whole = torch.sigmoid(model(torch.from_numpy(padded)[None, None]))[0].numpy()
    core = (slice(None), *(slice(h, h + s) for h, s in zip(halo, raw.shape, strict=True)))
    np.testing.assert_allclose(affs, whole[core], atol=1e-5)


def test_segmentation_merges_across_blocks_and_scores():
    lab = labels_volume((8, 32, 32))
    affs = affinities(lab, background=0).astype(np.float32)
    affs[affs < 0] = 0
    whole = scoring.segment_volume(affs, block=(8, 16, 16), segmentation={"threshold": 0.5})[1]
    # the out-of-core path: per-block fragments agglomerated over the whole volume
    _, seg = scoring.segment_volume(
        affs,
        block=(8, 16, 16),
        segmentation={"threshold": 0.5},
        fragments=np.zeros(lab.shape, np.uint64),
        out=np.zeros(lab.shape, np.uint64),
    )
    for pred in (whole, seg):
        m = scoring.segmentation_metrics(pred, lab, voxel_size=(40, 4, 4))
        # perfect affinities: every object found once, across the block faces
        assert m["voi_split"] < 0.05 and m["voi_merge"] < 0.05 and m["arand"] < 0.02
        assert m["segments"] == m["true_segments"]


def test_out_of_core_scan_equals_in_memory(tmp_path):
    """A volume above the in-memory cap is read from HDF5 and written to chunked zarr one block at
    a time, with the same affinities, segmentation and scores as the in-memory pass."""
    import h5py
    import zarr

    model = tiny_unet(1)
    lab = labels_volume((16, 48, 48), seed=3)
    rng = np.random.default_rng(1)
    raw = np.clip(120 + 80 * (lab % 3) + rng.normal(0, 10, lab.shape), 0, 255).astype(np.uint8)
    path = tmp_path / "vol.h5"
    with h5py.File(path, "w") as f:
        f["raw"], f["labels"] = raw, lab
    engine = TorchEngine(model, batch_size=1, input_dtypes=("float32",))
    kw = dict(model=model, block=(8, 16, 16), segmentation={"threshold": 0.5})
    mem = scoring.score_volume(engine, raw, None, lab, **kw)
    with h5py.File(path, "r") as f:
        ooc = scoring.score_volume(
            engine,
            f["raw"],
            None,
            f["labels"],
            workdir=tmp_path / "w.zarr",
            max_in_memory=1000,
            **kw,
        )
        assert ooc["metrics"]["out_of_core"] and not mem["metrics"]["out_of_core"]
        assert isinstance(ooc["affinities"], zarr.Array)
        np.testing.assert_array_equal(np.asarray(ooc["affinities"][...]), mem["affinities"])
        # out of core segments block by block: the same as the blockwise pass in memory
        frags, blockwise = scoring.segment_volume(
            mem["affinities"],
            block=tuple(ooc["metrics"]["block"]),
            segmentation=kw["segmentation"],
            fragments=np.zeros(lab.shape, np.uint64),
            out=np.zeros(lab.shape, np.uint64),
        )
        np.testing.assert_array_equal(np.asarray(ooc["segmentation"][...]), blockwise)
        np.testing.assert_array_equal(np.asarray(ooc["fragments"][...]), frags)
    ref = scoring.segmentation_metrics(blockwise, lab)
    for key in ("voi_split", "voi_merge", "arand", "true_segments"):
        assert ooc["metrics"][key] == pytest.approx(ref[key], abs=1e-12), key
    for out in (mem, ooc):  # the fragments output: each fragment lies inside one segment
        pairs = np.unique(
            np.stack([np.ravel(out["fragments"][...]), np.ravel(out["segmentation"][...])]), axis=1
        )
        assert pairs.shape[1] == len(np.unique(out["fragments"][...]))
    # (the untrained U-Net's affinities are no test of out of core against in memory: below)
    with pytest.raises(ConfigError, match="work directory"):
        scoring.score_volume(engine, raw, None, None, max_in_memory=10, **kw)


def test_out_of_core_segmentation_against_in_memory():
    """Out of core, each block's fragments are computed on its affinities read with context
    (blockwise.FRAGMENT_CONTEXT) and linked across faces to the fragments they continue, then
    agglomerated over the whole volume's graph. These touching boxes with noisy affinities were
    the worst case of per-block fragments without context (measured: ARAND 0.327 out of core
    against 0.020 in memory, VOI merge 0.79 against 0.12 bits: a sliver of an object at a face
    had no seed and its fragment flooded across a contact without membrane); with context and
    links the segmentation is the in-memory one. On the default scan volume's predicted
    affinities, blocks of 16 x 64 x 64: ARAND 0.093 both ways, 0.107 before
    (docs/connectomics.md)."""
    lab = labels_volume((16, 48, 48), seed=4)
    rng = np.random.default_rng(5)
    affs = affinities(lab, background=0).astype(np.float32)
    affs[affs < 0] = 0
    affs = np.clip(affs + rng.normal(0, 0.15, affs.shape), 0, 1).astype(np.float32)
    seg_options = {"threshold": 0.5}
    _, whole = scoring.segment_volume(affs, block=(8, 16, 16), segmentation=seg_options)
    _, ooc = scoring.segment_volume(
        affs,
        block=(8, 16, 16),
        segmentation=seg_options,
        fragments=np.zeros(lab.shape, np.uint64),
        out=np.zeros(lab.shape, np.uint64),
    )
    m, o = (scoring.segmentation_metrics(x, lab) for x in (whole, ooc))
    assert m["arand"] < 0.03 and m["voi_merge"] < 0.15
    assert o["arand"] < 0.025 and o["voi_merge"] < 0.15  # measured: 0.020 and 0.12, as in memory
    pairs = np.unique(np.stack([ooc.ravel(), whole.ravel()]), axis=1)
    assert pairs.shape[1] == len(np.unique(ooc)) == len(np.unique(whole))  # the same segments
    assert o["voi_split"] < 0.1 and m["voi_split"] < 0.1


@pytest.mark.parametrize("kind", ["onnx_int8", "torch_int8"])
def test_int8_blockwise_equals_one_whole_volume_pass(tmp_path, kind):
    """The static int8 U-Net (ONNX Runtime QDQ with free spatial axes, or PyTorch's fbgemm int8
    read through make_engine from beside the ONNX file): stitched blocks equal one pass over the
    reflect-padded volume, bit for bit."""
    from quantscan.export import torch_int8
    from quantscan.export.onnx import build_int8
    from quantscan.runtime import make_engine

    model = tiny_unet(2)
    rng = np.random.default_rng(2)
    raw = rng.random((16, 48, 48)).astype(np.float32)
    calib = np.stack([raw[None, :8, :32, :32], raw[None, 8:, 16:, 16:]])
    paths = build_int8(
        model, calib, tmp_path / "u.onnx", tmp_path / "u.int8.onnx", dynamic_spatial=True
    )
    arch = {"name": "unet3d", "filters": 4, "levels": 2}
    torch_int8.save(torch_int8.sibling_path(paths["int8"]), arch, torch_int8.quantize(model, calib))
    engine = make_engine(kind, paths["int8"], batch_size=1, input_dtypes=("float32",))
    assert engine.kind == kind
    block, halo = scoring.geometry(model, (8, 16, 16))
    affs = scoring.predict_volume(engine, raw, block=block, halo=halo)
    padded = np.pad(raw, [(h, h) for h in halo], mode="reflect")
    extra = [(0, -s % m) for s, m in zip(padded.shape, model.input_multiple(), strict=True)]
    padded = np.pad(padded, extra, mode="reflect")
    z = engine.logits(padded[None, None])[0]
    whole = scoring._sigmoid(z)
    core = (slice(None), *(slice(h, h + s) for h, s in zip(halo, raw.shape, strict=True)))
    np.testing.assert_array_equal(affs, whole[core])


def test_slab_jobs_fill_the_store_and_reruns_skip_finished_blocks(tmp_path):
    """Two slab jobs write their blocks into one chunked zarr v3 store; together they equal the
    single-job inference; a rerun runs only the blocks without a done-marker (a killed job's)."""
    import zarr

    model = tiny_unet(3)
    raw = np.random.default_rng(3).random((16, 48, 48)).astype(np.float32)
    engine = TorchEngine(model, batch_size=1, input_dtypes=("float32",))
    block, halo = scoring.geometry(model, (8, 16, 16))
    whole = scoring.predict_volume(engine, raw, block=block, halo=halo)
    store = tmp_path / "affinities.zarr"
    scoring.create_store(store, raw.shape, block)
    runs = [
        scoring.predict_slab(engine, raw, store, block=block, halo=halo, slab=(k, 2))
        for k in range(2)
    ]
    assert sum(r["blocks"] for r in runs) == 2 * 3 * 3 and all(r["blocks_run"] == 9 for r in runs)
    affs = zarr.open_group(str(store), mode="r")["affinities"]
    assert affs.chunks == (3, *block)
    np.testing.assert_array_equal(np.asarray(affs[...]), whole)
    # a killed job: one marker missing and its chunk zeroed; the rerun redoes that block only
    markers = sorted((store / "done").glob("*.done"))
    markers[0].unlink()
    zarr.open_group(str(store), mode="r+")["affinities"][:, :8, :16, :16] = 0
    again = scoring.predict_slab(engine, raw, store, block=block, halo=halo, slab=(0, 2))
    assert again["blocks_run"] == 1
    np.testing.assert_array_equal(np.asarray(affs[...]), whole)
