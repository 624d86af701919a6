"""quantscan.apps.connectomics.synthetic: the seeded synthetic anisotropic EM volume and affinities."""

import time

import numpy as np
import pytest

from quantscan.apps.connectomics.synthetic import affinities, make_volume
from quantscan.apps.connectomics.volumes import open_volume, write_ome_zarr

SMALL = (12, 96, 96)


@pytest.fixture(scope="module")
def small():
    return make_volume(SMALL, seed=3, defect_fraction=0.25, return_info=True)


def test_types_shapes_and_labels(small):
    raw, labels, info = small
    assert raw.shape == labels.shape == SMALL
    assert raw.dtype == np.uint8 and labels.dtype == np.uint64
    ids = set(np.unique(labels).tolist()) - {0}
    assert len(ids) >= 4 and max(ids) <= info["n_cells"]


def test_same_seed_same_bytes_other_seed_differs(small):
    raw, labels, _ = small
    raw2, labels2 = make_volume(SMALL, seed=3, defect_fraction=0.25)
    assert raw.tobytes() == raw2.tobytes() and labels.tobytes() == labels2.tobytes()
    raw3, labels3 = make_volume(SMALL, seed=4, defect_fraction=0.25)
    assert raw.tobytes() != raw3.tobytes() and labels.tobytes() != labels3.tobytes()


def test_membranes_plausible_and_dark():
    raw, labels = make_volume(SMALL, seed=0)
    membrane = labels == 0  # zero_membranes=True (default)
    assert 0.05 < membrane.mean() < 0.35
    assert raw[membrane].mean() + 40 < raw[~membrane].mean()
    _, dense = make_volume(SMALL, seed=0, zero_membranes=False)
    assert not np.any(dense == 0)
    np.testing.assert_array_equal(dense[~membrane], labels[~membrane])


def test_cells_are_longer_along_z():
    """With elongation 3 a cell spans more sections (40 nm) than its in-plane size would."""
    _, labels = make_volume(
        (24, 64, 64), seed=1, cell_size_nm=200.0, elongation=4.0, zero_membranes=False
    )
    centre = labels[:, 32, 32]
    run = np.count_nonzero(centre == centre[12])  # sections sharing the centre voxel's cell
    assert run * 40 > 200


def test_defects_at_requested_share(small):
    raw, _, info = small
    n = len(info["missing"]) + len(info["misaligned"])
    assert n == round(0.25 * SMALL[0])
    assert not set(info["missing"]) & set(info["misaligned"])
    for z in info["missing"]:
        assert np.all(raw[z] == 0)
    others = [z for z in range(SMALL[0]) if z not in info["missing"]]
    assert all(raw[z].std() > 5 for z in others)
    for dy, dx in info["misaligned"].values():
        assert (dy, dx) != (0, 0) and max(abs(dy), abs(dx)) <= 10
    _, _, none = make_volume(SMALL, seed=3, return_info=True)
    assert none["missing"] == [] and none["misaligned"] == {}
    _, _, only = make_volume(
        SMALL, seed=3, defect_fraction=0.5, defect_kinds=("missing",), return_info=True
    )
    assert len(only["missing"]) == 6 and not only["misaligned"]


def test_misaligned_section_labels_slip_with_the_image():
    kw = {"seed": 5, "noise_std": 0.0, "zero_membranes": False}
    _, ref = make_volume(SMALL, **kw)
    _, lab, info = make_volume(
        SMALL, defect_fraction=0.2, defect_kinds=("misaligned",), return_info=True, **kw
    )
    # the defect draw uses the RNG after the labels: the unshifted labels are the same
    z, (dy, dx) = next(iter(info["misaligned"].items()))
    ys = slice(max(dy, 0), SMALL[1] + min(dy, 0))
    xs = slice(max(dx, 0), SMALL[2] + min(dx, 0))
    ys0 = slice(max(-dy, 0), SMALL[1] + min(-dy, 0))
    xs0 = slice(max(-dx, 0), SMALL[2] + min(-dx, 0))
    np.testing.assert_array_equal(lab[z][ys, xs], ref[z][ys0, xs0])


def test_affinities_toy():
    seg = np.array(
        [
            [[1, 1, 2], [1, 0, 2]],
            [[1, 3, 2], [1, 0, 0]],
        ],
        dtype=np.uint64,
    )
    aff = affinities(seg)
    assert aff.shape == (3, 2, 2, 3) and aff.dtype == np.float32
    # z: voxel (1, y, x) vs (0, y, x); z = 0 has no neighbour
    assert np.all(aff[0, 0] == 0)
    np.testing.assert_array_equal(aff[0, 1], [[1, 0, 1], [1, 0, 0]])
    # y: (z, 1, x) vs (z, 0, x)
    np.testing.assert_array_equal(aff[1, :, 1], [[1, 0, 1], [1, 0, 0]])
    assert np.all(aff[1, :, 0] == 0)
    # x: (z, y, x) vs (z, y, x - 1)
    np.testing.assert_array_equal(aff[2, 0], [[0, 1, 0], [0, 0, 0]])
    np.testing.assert_array_equal(aff[2, 1], [[0, 0, 0], [0, 0, 0]])
    u8 = affinities(seg, dtype=np.uint8)
    assert u8.dtype == np.uint8 and np.array_equal(u8, aff.astype(np.uint8))
    # long-range and negative offsets; an offset past the volume is all 0
    far = affinities(seg, offsets=((0, 0, 2), (0, 0, -1), (5, 0, 0)))
    np.testing.assert_array_equal(far[0, 0], [[0, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(far[1, 0], [[1, 0, 0], [0, 0, 0]])
    assert not far[2].any()


def test_affinities_of_synthetic_volume(small):
    _, labels, _ = small
    aff = affinities(labels)
    assert aff.shape == (3, *SMALL)
    assert np.all(aff[:, labels == 0] == 0)
    assert 0.3 < aff[1:].mean() < 0.95


def test_fast_enough():
    start = time.process_time()
    make_volume((48, 256, 256), seed=0, defect_fraction=0.1)
    assert time.process_time() - start < 15  # ~2 s on one core; generous for shared CI


def test_written_as_ome_zarr_reads_back(tmp_path, small):
    raw, labels, _ = small
    write_ome_zarr(tmp_path / "syn.ome.zarr", raw, (40, 4, 4), (0, 0, 0), chunks=(4, 32, 32))
    write_ome_zarr(
        tmp_path / "syn.ome.zarr/labels/neuron_ids",
        labels,
        (40, 4, 4),
        chunks=(4, 32, 32),
        name="neuron_ids",
        labels=True,
    )
    vol = open_volume({"path": tmp_path / "syn.ome.zarr", "labels": "labels/neuron_ids"})
    assert vol.voxel_size == (40.0, 4.0, 4.0)
    np.testing.assert_array_equal(vol.raw[:], raw)
    np.testing.assert_array_equal(vol.labels[:], labels)


def test_cells_ending_along_z_are_capped_by_a_membrane():
    """Every cell is enclosed: two different cells never touch across z without a membrane
    voxel between them (``cap_membranes``, default), as they do without caps; the caps render
    darker than the cells around them but lighter than membranes cut across."""
    raw, labels = make_volume(SMALL, seed=2)
    here, below = labels[1:], labels[:-1]
    assert not np.any((here != below) & (here != 0) & (below != 0))
    _, open_z = make_volume(SMALL, seed=2, cap_membranes=False)
    contacts = (open_z[1:] != open_z[:-1]) & (open_z[1:] != 0) & (open_z[:-1] != 0)
    assert contacts.mean() > 0.005
    np.testing.assert_array_equal(labels[0], open_z[0])  # section 0 has nothing below it
    cap = np.zeros(SMALL, bool)
    cap[1:] = contacts
    in_plane = open_z == 0
    assert raw[in_plane].mean() + 5 < raw[cap].mean() < raw[~cap & ~in_plane].mean() - 30


def test_caps_slip_with_a_misaligned_section():
    """A misaligned section's caps move with its labels: the caps computed before the slip,
    shifted by the slip, are membrane (label 0) in the slipped section."""
    from quantscan.apps.connectomics.synthetic import shift_section

    kw = {"defect_fraction": 0.5, "defect_kinds": ("misaligned",)}
    plain = make_volume(SMALL, seed=6, zero_membranes=False, cap_membranes=False)[1]
    _, labels, info = make_volume(SMALL, seed=6, return_info=True, **kw)
    checked = 0
    for z, (dy, dx) in info["misaligned"].items():
        if z == 0:
            continue
        cap = shift_section(plain[z] != plain[z - 1], dy, dx)
        if cap.sum() < 20:
            continue
        assert (labels[z][cap] == 0).all()
        checked += 1
    assert checked >= 1
