"""quantscan.apps.connectomics.volumes: CREMI HDF5, ISBI / SNEMI3D TIFF, zarr v2/v3, OME-Zarr."""

import h5py
import numpy as np
import pytest
import tifffile
import zarr

from quantscan.apps.connectomics.volumes import (
    CREMI_BACKGROUND,
    LabelArray,
    Volume,
    check_min_shape,
    membrane_to_instances,
    open_volume,
    read_block,
    write_ome_zarr,
)
from quantscan.errors import ConfigError, InputFormatError

SHAPE = (4, 12, 10)


def _raw(shape=SHAPE, dtype=np.uint8):
    return (np.arange(np.prod(shape)) % 251).astype(dtype).reshape(shape)


def _labels(shape=SHAPE):
    lab = np.zeros(shape, np.uint64)
    lab[:, :6] = 7
    lab[:, 6:] = 9
    lab[:, :, :2] = CREMI_BACKGROUND
    return lab


def _cremi(path, raw=None, labels=None, resolution=(40.0, 4.0, 4.0), offset=(80.0, 8.0, 4.0)):
    raw = _raw() if raw is None else raw
    with h5py.File(path, "w") as f:
        f.attrs["file_format"] = "0.2"
        ds = f.create_dataset("volumes/raw", data=raw, chunks=True)
        if resolution is not None:
            ds.attrs["resolution"] = resolution
        if offset is not None:
            ds.attrs["offset"] = offset
        lab = f.create_dataset(
            "volumes/labels/neuron_ids", data=_labels(raw.shape) if labels is None else labels
        )
        if resolution is not None:
            lab.attrs["resolution"] = resolution
    return path


CREMI_SPEC = {"raw": "/volumes/raw", "labels": "/volumes/labels/neuron_ids"}


# ------------------------------------------------------------------ HDF5 (CREMI)
def test_cremi_hdf5_values_voxel_size_offset_and_background(tmp_path):
    path = _cremi(tmp_path / "sample_A.hdf")
    with open_volume({"path": path, **CREMI_SPEC}) as vol:
        assert isinstance(vol.raw, h5py.Dataset)  # lazy
        assert vol.shape == SHAPE
        assert vol.voxel_size == (40.0, 4.0, 4.0)
        assert vol.offset == (80.0, 8.0, 4.0)
        np.testing.assert_array_equal(
            read_block(vol.raw, (slice(1, 3), slice(0, 5), slice(2, 9))), _raw()[1:3, :5, 2:9]
        )
        assert isinstance(vol.labels, LabelArray)
        lab = read_block(vol.labels, (slice(None),) * 3)
        assert lab.dtype == np.uint64
        want = _labels()
        want[want == CREMI_BACKGROUND] = 0
        np.testing.assert_array_equal(lab, want)
        assert set(np.unique(lab)) == {0, 7, 9}
        handle = vol._handles[0]
    assert not handle.id.valid  # closed by the with block


def test_cremi_defaults_and_spec_overrides(tmp_path):
    path = _cremi(tmp_path / "a.h5", offset=None)
    vol = open_volume({"path": str(path), "voxel_size": [50, 5, 5], "offset": [1, 2, 3]})
    assert vol.raw_name == "/volumes/raw" and vol.labels is None
    assert vol.voxel_size == (50.0, 5.0, 5.0) and vol.offset == (1.0, 2.0, 3.0)
    vol.close()
    vol = open_volume({"path": path})
    assert vol.offset == (0.0, 0.0, 0.0)
    vol.close()


# ------------------------------------------------------------------ TIFF (SNEMI3D, ISBI 2012)
def test_tiff_stack_is_memory_mapped(tmp_path):
    raw = _raw((5, 16, 16))
    tifffile.imwrite(tmp_path / "train-input.tif", raw)
    labels = np.repeat(np.arange(5, dtype=np.uint16)[:, None, None] + 1, 16, 1).repeat(16, 2)
    tifffile.imwrite(tmp_path / "train-labels.tif", labels)
    vol = open_volume(
        {
            "path": tmp_path / "train-input.tif",
            "labels": "train-labels.tif",
            "voxel_size": [30, 6, 6],
        }
    )
    assert isinstance(vol.raw, np.memmap)
    np.testing.assert_array_equal(np.asarray(vol.raw), raw)
    np.testing.assert_array_equal(
        read_block(vol.labels, (slice(None),) * 3), labels.astype(np.uint64)
    )
    # a folder with file names in raw / labels
    vol = open_volume(
        {
            "path": tmp_path,
            "raw": "train-input.tif",
            "labels": "train-labels.tif",
            "voxel_size": [30, 6, 6],
        }
    )
    assert vol.shape == (5, 16, 16)


def test_tiff_compressed_falls_back_to_memory(tmp_path):
    raw = _raw((3, 8, 8))
    tifffile.imwrite(tmp_path / "c.tif", raw, compression="zlib", photometric="minisblack")
    vol = open_volume({"path": tmp_path / "c.tif", "voxel_size": [50, 4, 4]})
    np.testing.assert_array_equal(np.asarray(vol.raw), raw)


def test_tiff_voxel_size_from_imagej_metadata(tmp_path):
    tifffile.imwrite(
        tmp_path / "ij.tif",
        _raw((3, 8, 8)),
        imagej=True,
        resolution=(1 / 0.004, 1 / 0.005),  # pixels per micron: x 4 nm, y 5 nm
        metadata={"spacing": 0.05, "unit": "micron", "axes": "ZYX"},
    )
    vol = open_volume({"path": tmp_path / "ij.tif"})
    np.testing.assert_allclose(vol.voxel_size, (50.0, 5.0, 4.0))


def test_isbi2012_membrane_convention(tmp_path):
    # section 0: a membrane column splits two interiors; section 1: one interior
    lab = np.full((2, 6, 7), 255, np.uint8)
    lab[0, :, 3] = 0
    lab[:, 0, :] = 0
    tifffile.imwrite(tmp_path / "train-volume.tif", _raw((2, 6, 7)))
    tifffile.imwrite(tmp_path / "train-labels.tif", lab)
    vol = open_volume(
        {
            "path": tmp_path / "train-volume.tif",
            "labels": "train-labels.tif",
            "voxel_size": [50, 4, 4],
            "membrane_labels": True,
        }
    )
    out = vol.labels
    assert out.dtype == np.uint64
    assert np.all(out[lab == 0] == 0)
    assert len(np.unique(out[0][lab[0] > 0])) == 2
    assert len(np.unique(out[1][lab[1] > 0])) == 1
    assert set(np.unique(out[1])) - {0} == {3}  # numbered through the stack
    assert out[0, 2, 1] != out[0, 2, 5]
    np.testing.assert_array_equal(membrane_to_instances(lab), out)


# ------------------------------------------------------------------ zarr v2 / v3
@pytest.mark.parametrize("zarr_format", [2, 3])
def test_zarr_group_with_resolution_attributes(tmp_path, zarr_format):
    store = tmp_path / "vol.zarr"
    root = zarr.open_group(store, mode="w", zarr_format=zarr_format)
    raw = root.create_array("volumes/raw", shape=SHAPE, dtype="uint8", chunks=(2, 6, 5))
    raw[:] = _raw()
    raw.attrs.update({"resolution": [40, 4, 4], "offset": [40, 0, 8]})
    lab = root.create_array(
        "volumes/labels/neuron_ids", shape=SHAPE, dtype="uint64", chunks=(2, 6, 5)
    )
    lab[:] = _labels()
    vol = open_volume({"path": store, **CREMI_SPEC})
    assert isinstance(vol.raw, zarr.Array) and vol.raw.metadata.zarr_format == zarr_format
    assert vol.voxel_size == (40.0, 4.0, 4.0) and vol.offset == (40.0, 0.0, 8.0)
    np.testing.assert_array_equal(
        read_block(vol.raw, (slice(0, 4), slice(0, 12), slice(0, 10))), _raw()
    )
    assert read_block(vol.labels, (slice(0, 1), slice(0, 1), slice(0, 1)))[0, 0, 0] == 0
    assert read_block(vol.labels, (slice(0, 1), slice(7, 8), slice(5, 6)))[0, 0, 0] == 9


def test_zarr_single_array_store(tmp_path):
    arr = zarr.create_array(tmp_path / "raw.zarr", shape=SHAPE, dtype="float32", chunks=(2, 6, 5))
    arr[:] = _raw().astype(np.float32)
    arr.attrs["voxel_size"] = [8, 8, 8]
    vol = open_volume({"path": tmp_path / "raw.zarr", "format": "zarr"})
    assert vol.voxel_size == (8.0, 8.0, 8.0)
    np.testing.assert_array_equal(vol.raw[:], _raw().astype(np.float32))


# ------------------------------------------------------------------ OME-Zarr
@pytest.mark.parametrize("zarr_format", [2, 3])
def test_write_ome_zarr_reads_back_with_scale_pick(tmp_path, zarr_format):
    raw = _raw((4, 16, 12))
    path = tmp_path / "img.ome.zarr"
    write_ome_zarr(
        path,
        raw,
        (40, 4, 4),
        (120, 8, 16),
        chunks=(2, 8, 8),
        name="raw",
        levels=3,
        zarr_format=zarr_format,
    )
    root = zarr.open_group(path, mode="r")
    assert root["0"].chunks == (2, 8, 8)
    assert root["0"].attrs["resolution"] == [40.0, 4.0, 4.0]
    vol = open_volume({"path": path})
    assert vol.voxel_size == (40.0, 4.0, 4.0) and vol.offset == (120.0, 8.0, 16.0)
    np.testing.assert_array_equal(vol.raw[:], raw)
    vol2 = open_volume({"path": path, "scale": 2, "format": "ome-zarr"})
    assert vol2.shape == (4, 4, 3)
    assert vol2.voxel_size == (40.0, 16.0, 16.0)
    assert vol2.offset == (120.0, 8 + 6.0, 16 + 6.0)  # box centre of 4 x 4 voxels
    np.testing.assert_allclose(vol2.raw[0, 0, 0], raw[0, :4, :4].mean(), atol=0.5)
    with pytest.raises(ConfigError, match=r"has 3 scale\(s\); field 'scale' is 3"):
        open_volume({"path": path, "scale": 3})


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
def test_ome_zarr_external_metadata_labels_units_and_singleton_axes(tmp_path):
    """A store written by ome-zarr's own writer (t, c, z, y, x in micrometers) with a labels
    image under labels/neuron_ids."""
    from ome_zarr.writer import write_image, write_labels

    data = _raw((1, 1, 4, 12, 10))
    root = zarr.open_group(tmp_path / "ext.ome.zarr", mode="w")
    write_image(
        data,
        root,
        axes="tczyx",
        scale={"t": 1.0, "c": 1.0, "z": 0.04, "y": 0.004, "x": 0.004},
        axes_units={"z": "micrometer", "y": "micrometer", "x": "micrometer"},
        scale_factors=(2,),
        storage_options={"chunks": (1, 1, 2, 6, 5)},
    )
    lab = _labels().reshape(1, 1, *SHAPE)
    write_labels(
        lab,
        root,
        name="neuron_ids",
        axes="tczyx",
        scale_factors=(2,),
        storage_options={"chunks": (1, 1, 2, 6, 5)},
    )
    vol = open_volume({"path": tmp_path / "ext.ome.zarr", "labels": "labels/neuron_ids"})
    assert vol.shape == SHAPE
    np.testing.assert_allclose(vol.voxel_size, (40.0, 4.0, 4.0))
    np.testing.assert_array_equal(vol.raw[1:3], data[0, 0, 1:3])
    got = read_block(vol.labels, (slice(None),) * 3)
    assert got.dtype == np.uint64 and set(np.unique(got)) == {0, 7, 9}
    with pytest.raises(
        InputFormatError, match=r"no OME-Zarr multiscales image 'labels/cells'.*'labels/neuron_ids'"
    ):
        open_volume({"path": tmp_path / "ext.ome.zarr", "labels": "labels/cells"})


# ------------------------------------------------------------------ errors
def test_missing_file(tmp_path):
    with pytest.raises(InputFormatError, match=r"nope\.h5: volume file not found \(field 'path'\)"):
        open_volume({"path": tmp_path / "nope.h5"})


def test_missing_dataset_lists_available(tmp_path):
    path = _cremi(tmp_path / "a.h5")
    with pytest.raises(
        InputFormatError,
        match=r"a\.h5: no dataset '/volumes/img' \(field 'raw'\); datasets in the file: "
        r"volumes/labels/neuron_ids, volumes/raw",
    ):
        open_volume({"path": path, "raw": "/volumes/img"})
    with pytest.raises(InputFormatError, match=r"no dataset 'gt' \(field 'labels'\)"):
        open_volume({"path": path, "labels": "gt"})
    root = zarr.open_group(tmp_path / "z.zarr", mode="w")
    root.create_array("raw", shape=SHAPE, dtype="uint8")
    with pytest.raises(
        InputFormatError,
        match=r"z\.zarr: no dataset 'img' \(field 'raw'\); datasets in the file: raw",
    ):
        open_volume({"path": tmp_path / "z.zarr", "raw": "img"})


def test_wrong_dimensionality(tmp_path):
    with h5py.File(tmp_path / "2d.h5", "w") as f:
        f["volumes/raw"] = np.zeros((8, 8), np.uint8)
    with pytest.raises(
        InputFormatError,
        match=r"2d\.h5: dataset '/volumes/raw' \(field 'raw'\) is 2-D, shape \(8, 8\): expected a 3-D",
    ):
        open_volume({"path": tmp_path / "2d.h5", "voxel_size": [1, 1, 1]})
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((3, 8, 8, 3), np.uint8), photometric="rgb")
    with pytest.raises(InputFormatError, match=r"is 4-D"):
        open_volume({"path": tmp_path / "rgb.tif", "voxel_size": [1, 1, 1]})


@pytest.mark.parametrize("dtype", [np.complex64, bool])
def test_raw_dtype_that_cannot_be_an_image(tmp_path, dtype):
    with h5py.File(tmp_path / "c.h5", "w") as f:
        f["volumes/raw"] = np.zeros(SHAPE, dtype)
    with pytest.raises(InputFormatError, match=r"\(field 'raw'\) has dtype .*cannot be an image"):
        open_volume({"path": tmp_path / "c.h5", "voxel_size": [1, 1, 1]})


def test_float_labels_and_shape_mismatch(tmp_path):
    path = _cremi(tmp_path / "f.h5", labels=np.zeros(SHAPE, np.float32))
    with pytest.raises(
        InputFormatError,
        match=r"neuron_ids' \(field 'labels'\) has dtype float32: labels must be integers",
    ):
        open_volume({"path": path, **CREMI_SPEC})
    path = _cremi(tmp_path / "s.h5", labels=np.zeros((4, 12, 9), np.uint64))
    with pytest.raises(
        InputFormatError, match=r"has shape \(4, 12, 9\), raw has \(4, 12, 10\): they must match"
    ):
        open_volume({"path": path, **CREMI_SPEC})


def test_voxel_size_missing_or_not_positive(tmp_path):
    path = _cremi(tmp_path / "nores.h5", resolution=None)
    with pytest.raises(
        ConfigError,
        match=r"nores\.h5: dataset '/volumes/raw': voxel size missing.*field 'voxel_size'",
    ):
        open_volume({"path": path})
    with pytest.raises(ConfigError, match=r"voxel_size \[40.0, 0.0, 4.0\] must be positive"):
        open_volume({"path": path, "voxel_size": [40, 0, 4]})
    bad = _cremi(tmp_path / "neg.h5", resolution=(40.0, -4.0, 4.0))
    with pytest.raises(
        InputFormatError,
        match=r"neg\.h5: dataset '/volumes/raw': attribute 'resolution' .* must be positive",
    ):
        open_volume({"path": bad})
    tifffile.imwrite(tmp_path / "plain.tif", _raw(), photometric="minisblack")
    with pytest.raises(ConfigError, match=r"plain\.tif'?: voxel size missing"):
        open_volume({"path": tmp_path / "plain.tif"})


def test_bad_spec_fields(tmp_path):
    path = _cremi(tmp_path / "a.h5")
    with pytest.raises(ConfigError, match=r"unknown field\(s\) \['resolution'\]"):
        open_volume({"path": path, "resolution": [1, 1, 1]})
    with pytest.raises(ConfigError, match=r"field 'format' is 'n5'"):
        open_volume({"path": path, "format": "n5"})
    with pytest.raises(ConfigError, match=r"field 'scale' is -1"):
        open_volume({"path": path, "scale": -1})
    with pytest.raises(ConfigError, match=r"field 'path' is missing"):
        open_volume({"raw": "x"})


def test_check_min_shape(tmp_path):
    vol = open_volume({"path": _cremi(tmp_path / "a.h5")})
    check_min_shape(vol, (4, 12, 10))
    with pytest.raises(
        InputFormatError,
        match=r"a\.h5: dataset '/volumes/raw': shape \(4, 12, 10\) \(z, y, x\) is smaller than the minimum block shape \(8, 12, 10\)",
    ):
        check_min_shape(vol, (8, 12, 10))
    vol.close()
    assert isinstance(vol, Volume)


# ------------------------------------------------------------------ read_block
def test_read_block_padding():
    a = _raw()
    np.testing.assert_array_equal(
        read_block(a, (slice(0, 2), slice(3, 5), slice(4, 6))), a[0:2, 3:5, 4:6]
    )
    with pytest.raises(ValueError, match="outside an axis"):
        read_block(a, (slice(-1, 2), slice(0, 5), slice(0, 5)))
    got = read_block(a, (slice(-1, 2), slice(10, 14), slice(0, 10)), pad="constant")
    assert got.shape == (3, 4, 10)
    assert np.all(got[0] == 0) and np.all(got[:, 2:] == 0)
    np.testing.assert_array_equal(got[1:, :2], a[0:2, 10:12])
    got = read_block(a, (slice(-2, 6), slice(0, 12), slice(0, 10)), pad="reflect")
    np.testing.assert_array_equal(got, np.pad(a, ((2, 2), (0, 0), (0, 0)), mode="reflect"))


def test_write_ome_zarr_with_a_channel_axis(tmp_path):
    """Affinities (c, z, y, x): a leading channel axis in the multiscales metadata (scale 1), one
    chunk holds every channel, the names in the array's attributes, a pyramid per channel; the
    ome-zarr reader sees four axes."""
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    affs = np.random.default_rng(0).random((3, 4, 16, 12)).astype(np.float32)
    path = tmp_path / "affs.ome.zarr"
    write_ome_zarr(path, affs, (40, 4, 4), chunks=(2, 8, 8), levels=2, channels=["az", "ay", "ax"])
    root = zarr.open_group(path, mode="r")
    assert root["0"].shape == (3, 4, 16, 12) and root["0"].chunks == (3, 2, 8, 8)
    np.testing.assert_array_equal(root["0"][:], affs)
    assert root["0"].attrs["channels"] == ["az", "ay", "ax"]
    assert root["1"].shape == (3, 4, 8, 6)
    np.testing.assert_allclose(root["1"][1, 0, 0, 0], affs[1, 0, :2, :2].mean(), rtol=1e-6)
    ms = root.attrs["ome"]["multiscales"][0]
    assert [a["name"] for a in ms["axes"]] == ["c", "z", "y", "x"]
    assert ms["axes"][0]["type"] == "channel"
    assert ms["datasets"][1]["coordinateTransformations"][0]["scale"] == [1.0, 40.0, 8.0, 8.0]
    node = next(iter(Reader(parse_url(str(path)))()))
    assert node.data[0].shape == (3, 4, 16, 12)
    with pytest.raises(ValueError, match="3 channels"):
        write_ome_zarr(path, affs[:2], (40, 4, 4), channels=["az", "ay", "ax"])
