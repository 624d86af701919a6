"""Reading user EM volumes (and writing OME-Zarr) with the format libraries, lazily where possible.

Layouts read by :func:`open_volume` (a spec dict, see :data:`SPEC_DEFAULTS`):

- **HDF5, CREMI layout** (CREMI challenge, MICCAI 2016, cremi.org; ``cremi_python``'s
  ``CremiFile``): ``/volumes/raw`` (uint8) and ``/volumes/labels/neuron_ids`` (uint64), each with
  the dataset attributes ``resolution`` (nm, z-y-x) and optional ``offset`` (nm). The CREMI
  background / ignore label ``2**64 - 1`` (``np.uint64(-1)``) reads as 0.
- **Multipage TIFF stacks**: SNEMI3D (ISBI 2013) ``train-input.tif`` / ``train-labels.tif`` and
  ISBI 2012 (EM segmentation challenge, *Drosophila* VNC). ``membrane_labels: true`` reads labels
  in the ISBI 2012 convention (0 = membrane, 255 = cell interior): the instances are the connected
  components of ``label > 0`` in each section (4-connected), numbered across the whole stack, and
  membrane voxels are 0. Voxel size: the spec's ``voxel_size``, else ImageJ metadata (``spacing``,
  ``unit`` and the X/Y resolution tags) where the file has them.
- **zarr** arrays, format v2 or v3 (a store holding an array, or a group with ``raw`` / ``labels``
  naming arrays in it): voxel size and offset from the array attributes ``resolution`` or
  ``voxel_size`` and ``offset`` (nm, z-y-x; the layout of daisy / funlib-persistence outputs).
- **OME-Zarr** (OME-NGFF 0.4 on zarr v2, 0.5 on zarr v3): a ``multiscales`` image (``raw``: its
  group inside the store, default the root; ``labels``: e.g. ``labels/neuron_ids``), the scale
  picked by index (``scale``), voxel size and offset from the ``scale`` and ``translation``
  coordinateTransformations of that scale (converted to nm from the axes' units). Leading
  singleton ``t`` / ``c`` axes are dropped.

``Volume.raw`` is read lazily (an h5py dataset, a zarr array, a numpy memmap of the TIFF where
tifffile can map it, else the stack in memory); ``Volume.labels`` is a :class:`LabelArray` (lazy
too, mapping background to 0 and returning uint64) or, for ``membrane_labels``, a numpy array.
:func:`read_block` reads a z-y-x box of either as numpy, padding outside the volume on request.

Errors name the file, the dataset and the field at fault: :class:`~quantscan.errors.ConfigError`
for a bad spec, :class:`~quantscan.errors.InputFormatError` for a file that does not hold what the
spec says.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ConfigError, InputFormatError

#: the keys of a volume spec and their defaults
SPEC_DEFAULTS: dict[str, Any] = {
    "path": None,  # the file (HDF5, TIFF), folder (zarr, OME-Zarr, TIFF files) or store
    "raw": None,  # dataset path (HDF5: /volumes/raw; zarr/OME-Zarr: inside the store; TIFF: a file)
    "labels": None,  # dataset path of the labels, or None
    "voxel_size": None,  # [z, y, x] nm; None: from the file
    "offset": None,  # [z, y, x] nm; None: from the file (else 0)
    "scale": 0,  # OME-Zarr: index of the multiscales level
    "format": "auto",  # auto | hdf5 | tiff | zarr | ome-zarr
    "membrane_labels": False,  # ISBI 2012: labels 0 = membrane, 255 = interior
}
FORMATS = ("auto", "hdf5", "tiff", "zarr", "ome-zarr")
#: the CREMI background / ignore label
CREMI_BACKGROUND = np.iinfo(np.uint64).max
#: CREMI dataset paths, the defaults of ``raw`` / ``labels`` for HDF5
CREMI_RAW = "volumes/raw"
CREMI_LABELS = "volumes/labels/neuron_ids"

_HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".cremi")
_TIFF_SUFFIXES = (".tif", ".tiff")
#: OME-NGFF / UDUNITS length units -> nm
_UNIT_NM = {
    None: 1.0,
    "": 1.0,
    "nanometer": 1.0,
    "nm": 1.0,
    "micrometer": 1e3,
    "micron": 1e3,
    "um": 1e3,
    "\u00b5m": 1e3,
    "\u03bcm": 1e3,
    "millimeter": 1e6,
    "mm": 1e6,
    "angstrom": 0.1,
    "picometer": 1e-3,
    "meter": 1e9,
}

Triple = tuple[float, float, float]


# --------------------------------------------------------------------------- array wrappers
class LabelArray:
    """A lazy label array: slicing reads the base array and returns uint64 with background = 0.

    Background is the CREMI ignore label ``2**64 - 1`` for uint64 data and any negative value for
    signed integers. ``lead`` leading indices (dropped singleton axes) are prepended to each read.
    """

    def __init__(self, base, lead: tuple = ()):
        self.base = base
        self.lead = tuple(lead)
        self.shape = tuple(int(n) for n in base.shape[len(self.lead) :])
        self.ndim = len(self.shape)
        self.dtype = np.dtype(np.uint64)

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        return _to_labels(np.asarray(self.base[self.lead + key]))

    def __array__(self, dtype=None, copy=None):
        out = self[...]
        return out if dtype is None else out.astype(dtype)

    def __len__(self):
        return self.shape[0]


class _Squeezed:
    """A lazy view of an array with leading singleton axes dropped (OME-Zarr ``t``, ``c``)."""

    def __init__(self, base, n_lead: int):
        self.base = base
        self.lead = (0,) * n_lead
        self.shape = tuple(int(n) for n in base.shape[n_lead:])
        self.ndim = len(self.shape)
        self.dtype = base.dtype

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        return np.asarray(self.base[self.lead + key])

    def __array__(self, dtype=None, copy=None):
        out = self[...]
        return out if dtype is None else out.astype(dtype)

    def __len__(self):
        return self.shape[0]


def _to_labels(block: np.ndarray) -> np.ndarray:
    if block.dtype == np.uint64:
        out = block.copy()
        out[out == CREMI_BACKGROUND] = 0
        return out
    if block.dtype.kind == "i":
        return np.where(block < 0, 0, block).astype(np.uint64)
    return block.astype(np.uint64)


def membrane_to_instances(labels) -> np.ndarray:
    """ISBI 2012 labels (0 = membrane, > 0 = interior) -> uint64 instances, 0 = membrane.

    Instances are the 4-connected components of ``label > 0`` in each z-section, numbered
    1, 2, ... through the stack (section by section, so no id is shared across sections).
    """
    from skimage.measure import label as cc_label

    labels = np.asarray(labels)
    out = np.zeros(labels.shape, np.uint64)
    next_id = 0
    for z in range(labels.shape[0]):
        comp, n = cc_label(labels[z] > 0, connectivity=1, return_num=True)
        out[z] = np.where(comp > 0, comp.astype(np.uint64) + np.uint64(next_id), 0)
        next_id += n
    return out


# --------------------------------------------------------------------------- the volume
@dataclass
class Volume:
    """An EM volume: ``raw`` and optional ``labels`` (array-likes, z-y-x), voxel size and offset
    in nm (z, y, x). ``labels`` read as uint64 with 0 = background. ``close()`` (or ``with``)
    releases open HDF5 files."""

    raw: Any
    labels: Any | None
    voxel_size: Triple
    offset: Triple = (0.0, 0.0, 0.0)
    path: str = ""
    raw_name: str = ""
    labels_name: str | None = None
    _handles: list = field(default_factory=list, repr=False, compare=False)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.raw.shape)

    def close(self) -> None:
        for handle in self._handles:
            handle.close()
        self._handles.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --------------------------------------------------------------------------- spec helpers
def _spec(spec: Mapping) -> dict:
    if not isinstance(spec, Mapping):
        raise ConfigError(f"volume spec: expected a mapping, got {type(spec).__name__}")
    unknown = sorted(set(spec) - set(SPEC_DEFAULTS))
    if unknown:
        raise ConfigError(
            f"volume spec: unknown field(s) {unknown} (known: {sorted(SPEC_DEFAULTS)})"
        )
    out = {**SPEC_DEFAULTS, **{k: v for k, v in spec.items() if v is not None}}
    if not out["path"]:
        raise ConfigError("volume spec: field 'path' is missing")
    if out["format"] not in FORMATS:
        raise ConfigError(
            f"volume spec {out['path']}: field 'format' is {out['format']!r} (one of {FORMATS})"
        )
    scale = out["scale"]
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 0:
        raise ConfigError(f"volume spec {out['path']}: field 'scale' is {scale!r} (an index >= 0)")
    for key in ("voxel_size", "offset"):
        if spec.get(key) is not None:
            out[key] = _triple(
                spec[key],
                positive=key == "voxel_size",
                where=f"{out['path']}",
                what=key,
                err=ConfigError,
            )
    return out


def _triple(value, *, positive: bool, where: str, what: str, err=InputFormatError) -> Triple:
    """Three finite numbers (z, y, x); positive ones for a voxel size."""
    try:
        vals = tuple(float(v) for v in np.asarray(value, dtype=float).ravel())
    except (TypeError, ValueError):
        raise err(f"{where}: {what} {value!r} is not three numbers (z, y, x in nm)") from None
    if len(vals) != 3 or not all(math.isfinite(v) for v in vals):
        raise err(f"{where}: {what} {value!r} is not three finite numbers (z, y, x in nm)")
    if positive and min(vals) <= 0:
        raise err(f"{where}: {what} {list(vals)} must be positive (z, y, x in nm)")
    return vals


def _detect_format(path: Path, raw: str | None) -> str:
    if path.is_dir():
        if (
            (path / "zarr.json").is_file()
            or (path / ".zgroup").is_file()
            or (path / ".zarray").is_file()
        ):
            import zarr

            node = zarr.open(str(path), mode="r")
            attrs = dict(node.attrs)
            if "multiscales" in attrs or "multiscales" in (attrs.get("ome") or {}):
                return "ome-zarr"
            return "zarr"
        if raw and str(raw).lower().endswith(_TIFF_SUFFIXES):
            return "tiff"
        raise InputFormatError(
            f"{path}: a folder that is neither a zarr / OME-Zarr store nor holds the TIFF named by "
            f"field 'raw' ({raw!r}); set field 'format'"
        )
    suffix = path.suffix.lower()
    if suffix in _TIFF_SUFFIXES:
        return "tiff"
    if suffix in _HDF5_SUFFIXES:
        return "hdf5"
    import h5py

    if h5py.is_hdf5(str(path)):
        return "hdf5"
    raise InputFormatError(
        f"{path}: cannot tell the format from the name (.h5/.hdf5, .tif/.tiff, a .zarr folder); "
        "set field 'format'"
    )


def _check_raw(array, where: str) -> None:
    if len(array.shape) != 3:
        raise InputFormatError(
            f"{where} (field 'raw') is {len(array.shape)}-D, shape {tuple(array.shape)}: expected "
            "a 3-D z-y-x volume"
        )
    dtype = np.dtype(array.dtype)
    if dtype.kind not in "uif":
        raise InputFormatError(
            f"{where} (field 'raw') has dtype {dtype}, which cannot be an image (need integers "
            "or floats)"
        )


def _check_labels(array, where: str, raw_shape, membrane: bool) -> None:
    if len(array.shape) != 3:
        raise InputFormatError(
            f"{where} (field 'labels') is {len(array.shape)}-D, shape {tuple(array.shape)}: "
            "expected a 3-D z-y-x volume"
        )
    dtype = np.dtype(array.dtype)
    if dtype.kind not in ("uib" if membrane else "ui"):
        raise InputFormatError(
            f"{where} (field 'labels') has dtype {dtype}: labels must be integers"
        )
    if tuple(array.shape) != tuple(raw_shape):
        raise InputFormatError(
            f"{where} (field 'labels') has shape {tuple(array.shape)}, raw has "
            f"{tuple(raw_shape)}: they must match"
        )


def _missing(where: Path, name: str, what: str, available: Sequence[str]) -> InputFormatError:
    listed = ", ".join(available) if available else "none"
    return InputFormatError(
        f"{where}: no dataset {name!r} (field {what!r}); datasets in the file: {listed}"
    )


# --------------------------------------------------------------------------- per format
def _open_hdf5(path: Path, spec: dict):
    import h5py

    try:
        handle = h5py.File(str(path), "r")
    except OSError as err:
        raise InputFormatError(f"{path}: not a readable HDF5 file ({err})") from None
    names: list[str] = []
    handle.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)

    def get(name: str, what: str):
        key = name.strip("/")
        obj = handle.get(key) if key else None
        if not isinstance(obj, h5py.Dataset):
            handle.close()
            raise _missing(path, name, what, names)
        return obj

    raw = get(spec["raw"] or CREMI_RAW, "raw")
    labels_name = spec["labels"]
    labels = get(labels_name, "labels") if labels_name else None
    try:
        meta = _attrs_meta(dict(raw.attrs), f"{path}: dataset {raw.name!r}")
    except InputFormatError:
        handle.close()
        raise
    return raw, labels, meta, [handle], raw.name, labels.name if labels is not None else None


def _attrs_meta(attrs: Mapping, where: str) -> dict:
    """``resolution`` / ``voxel_size`` and ``offset`` attributes (nm, z-y-x)."""
    meta = {}
    for key in ("resolution", "voxel_size"):
        if key in attrs:
            meta["voxel_size"] = _triple(
                attrs[key], positive=True, where=where, what=f"attribute {key!r}"
            )
            break
    if "offset" in attrs:
        meta["offset"] = _triple(
            attrs["offset"], positive=False, where=where, what="attribute 'offset'"
        )
    return meta


def _tiff_file(path: Path, name: str | None, what: str) -> Path:
    if path.is_dir():
        if not name:
            raise ConfigError(f"{path}: a folder of TIFF stacks needs field {what!r} (a file name)")
        file = path / name
    elif what == "raw":
        if name and Path(name).name != path.name:
            raise ConfigError(
                f"{path}: field 'path' is the raw TIFF stack; leave field 'raw' empty (it is "
                f"{name!r})"
            )
        file = path
    else:
        file = Path(name) if Path(name).is_absolute() else path.parent / name
    if not file.is_file():
        raise InputFormatError(f"{file}: TIFF stack (field {what!r}) not found")
    return file


def _tiff_array(file: Path, what: str):
    import tifffile

    try:
        try:
            return tifffile.memmap(str(file), mode="r")
        except ValueError:  # compressed, tiled, ...: not mappable
            return tifffile.imread(str(file))
    except (OSError, ValueError, tifffile.TiffFileError) as err:
        raise InputFormatError(
            f"{file}: not a readable TIFF stack (field {what!r}): {err}"
        ) from None


def _tiff_meta(file: Path) -> dict:
    """Voxel size (nm) from ImageJ metadata, where present: spacing (z), X/Y resolution tags."""
    import tifffile

    try:
        with tifffile.TiffFile(str(file)) as tif:
            ij = tif.imagej_metadata or {}
            page = tif.pages.first
            xres = page.tags.get("XResolution")
            yres = page.tags.get("YResolution")
            if not (ij.get("spacing") and xres and yres):
                return {}
            unit = str(ij.get("unit", "")).strip().lower().replace("\\u00b5", "\u00b5")
            if unit not in _UNIT_NM or unit == "":
                return {}
            per_unit = [r.value[0] / r.value[1] for r in (yres, xres)]
            if min(per_unit) <= 0:
                return {}
            scale = _UNIT_NM[unit]
            return {
                "voxel_size": (
                    float(ij["spacing"]) * scale,
                    scale / per_unit[0],
                    scale / per_unit[1],
                )
            }
    except (OSError, ValueError, KeyError, ZeroDivisionError, tifffile.TiffFileError):
        return {}


def _open_tiff(path: Path, spec: dict):
    raw_file = _tiff_file(path, spec["raw"], "raw")
    raw = _tiff_array(raw_file, "raw")
    labels = None
    labels_name = None
    if spec["labels"]:
        labels_file = _tiff_file(path, spec["labels"], "labels")
        labels = _tiff_array(labels_file, "labels")
        labels_name = str(labels_file)
    return raw, labels, _tiff_meta(raw_file), [], str(raw_file), labels_name


def _zarr_open(path: Path):
    import zarr

    try:
        return zarr.open(str(path), mode="r")
    except Exception as err:  # zarr raises several types for a bad store
        raise InputFormatError(f"{path}: not a readable zarr store ({err})") from None


def _zarr_arrays(group) -> list[str]:
    import zarr

    return sorted(k for k, v in group.members(max_depth=None) if isinstance(v, zarr.Array))


def _zarr_get(path: Path, node, name: str | None, what: str):
    import zarr

    if isinstance(node, zarr.Array):
        if name:
            raise _missing(path, name, what, ["(the store is a single array: leave 'raw' empty)"])
        return node, ""
    if not name:
        raise _missing(path, "", what, _zarr_arrays(node))
    try:
        obj = node[name.strip("/")]
    except KeyError:
        obj = None
    if not isinstance(obj, zarr.Array):
        raise _missing(path, name, what, _zarr_arrays(node))
    return obj, name.strip("/")


def _open_zarr(path: Path, spec: dict):
    node = _zarr_open(path)
    raw, raw_name = _zarr_get(path, node, spec["raw"], "raw")
    labels, labels_name = (None, None)
    if spec["labels"]:
        labels, labels_name = _zarr_get(path, node, spec["labels"], "labels")
    meta = _attrs_meta(dict(raw.attrs), f"{path}: dataset {raw_name!r}")
    return raw, labels, meta, [], raw_name, labels_name


def _multiscales(group) -> list | None:
    attrs = dict(group.attrs)
    ome = attrs.get("ome") if isinstance(attrs.get("ome"), Mapping) else attrs
    ms = ome.get("multiscales")
    return ms if isinstance(ms, list) and ms else None


def _transforms(items, where: str) -> tuple[list[float] | None, list[float] | None]:
    scale = translation = None
    for item in items or []:
        if item.get("type") == "scale":
            scale = list(item["scale"])
        elif item.get("type") == "translation":
            translation = list(item["translation"])
        elif item.get("type") != "identity":
            raise InputFormatError(
                f"{where}: coordinateTransformation {item.get('type')!r} not supported (scale, "
                "translation)"
            )
    return scale, translation


def _open_multiscale(path: Path, root, name: str | None, scale: int, what: str):
    """(lazy z-y-x array, {voxel_size, offset}, dataset path) of one OME-Zarr image's level."""
    import zarr

    key = (name or "").strip("/")
    try:
        group = root[key] if key else root
    except KeyError:
        group = None
    ms = _multiscales(group) if isinstance(group, zarr.Group) else None
    if ms is None:
        images = sorted(
            [""] * bool(_multiscales(root))
            + [
                k
                for k, v in root.members(max_depth=None)
                if isinstance(v, zarr.Group) and _multiscales(v)
            ]
        )
        raise InputFormatError(
            f"{path}: no OME-Zarr multiscales image {key or '/'!r} (field {what!r}); images in "
            f"the store: {', '.join(repr(i or '/') for i in images) or 'none'}"
        )
    image = ms[0]
    datasets = image.get("datasets") or []
    if scale >= len(datasets):
        raise ConfigError(
            f"{path}: image {key or '/'!r} has {len(datasets)} scale(s); field 'scale' is {scale}"
        )
    where = f"{path}: image {key or '/'!r} scale {scale}"
    axes = image.get("axes") or ["z", "y", "x"]
    axes = [a["name"] if isinstance(a, Mapping) else str(a) for a in axes]
    units = [
        (a.get("unit") if isinstance(a, Mapping) else None) for a in (image.get("axes") or [])
    ] or [None] * len(axes)
    level_path = datasets[scale]["path"]
    try:
        array = group[level_path]
    except KeyError:
        raise _missing(path, f"{key}/{level_path}".strip("/"), what, _zarr_arrays(root)) from None
    if len(array.shape) != len(axes):
        raise InputFormatError(
            f"{where}: array {level_path!r} is {len(array.shape)}-D but the metadata names axes "
            f"{axes}"
        )
    n_lead = len(axes) - 3
    if axes[n_lead:] != ["z", "y", "x"] or any(array.shape[i] != 1 for i in range(max(n_lead, 0))):
        raise InputFormatError(
            f"{where} (field {what!r}): axes {axes} with shape {tuple(array.shape)}: expected a "
            "3-D z-y-x volume (leading t / c axes of length 1 are dropped)"
        )
    sc, tr = _transforms(datasets[scale].get("coordinateTransformations"), where)
    gsc, gtr = _transforms(image.get("coordinateTransformations"), where)
    sc = np.asarray(sc if sc is not None else [1.0] * len(axes), float)
    tr = np.asarray(tr if tr is not None else [0.0] * len(axes), float)
    if gsc is not None:  # the image-level transform applies after the dataset's
        tr = tr * np.asarray(gsc, float)
        sc = sc * np.asarray(gsc, float)
    if gtr is not None:
        tr = tr + np.asarray(gtr, float)
    try:
        to_nm = np.asarray([_UNIT_NM[u] for u in units[n_lead:]], float)
    except KeyError:
        raise InputFormatError(
            f"{where}: axis units {units[n_lead:]} not known length units"
        ) from None
    meta = {
        "voxel_size": _triple(
            sc[n_lead:] * to_nm, positive=True, where=where, what="scale transform"
        ),
        "offset": _triple(tr[n_lead:] * to_nm, positive=False, where=where, what="translation"),
    }
    view = array if n_lead == 0 else _Squeezed(array, n_lead)
    return view, meta, f"{key}/{level_path}".strip("/"), n_lead


def _open_ome_zarr(path: Path, spec: dict):
    import zarr

    root = _zarr_open(path)
    if not isinstance(root, zarr.Group):
        raise InputFormatError(f"{path}: an OME-Zarr image must be a zarr group (field 'path')")
    raw, meta, raw_name, _ = _open_multiscale(path, root, spec["raw"], spec["scale"], "raw")
    labels, labels_name = None, None
    if spec["labels"]:
        labels, _, labels_name, _ = _open_multiscale(
            path, root, spec["labels"], spec["scale"], "labels"
        )
    return raw, labels, meta, [], raw_name, labels_name


_OPENERS = {"hdf5": _open_hdf5, "tiff": _open_tiff, "zarr": _open_zarr, "ome-zarr": _open_ome_zarr}


# --------------------------------------------------------------------------- public API
def open_volume(spec: Mapping) -> Volume:
    """Open the EM volume described by ``spec`` (keys and defaults: :data:`SPEC_DEFAULTS`).

    ``voxel_size`` / ``offset`` given in the spec override the file's. Raw stays lazy; labels are
    a :class:`LabelArray` (uint64, background 0) or, with ``membrane_labels``, the ISBI 2012
    instances as numpy (:func:`membrane_to_instances`).
    """
    spec = _spec(spec)
    path = Path(os.fspath(spec["path"]))
    if not path.exists():
        raise InputFormatError(f"{path}: volume file not found (field 'path')")
    fmt = spec["format"] if spec["format"] != "auto" else _detect_format(path, spec["raw"])
    raw, labels, meta, handles, raw_name, labels_name = _OPENERS[fmt](path, spec)
    try:
        _check_raw(raw, f"{path}: dataset {raw_name!r}")
        if labels is not None:
            _check_labels(
                labels, f"{path}: dataset {labels_name!r}", raw.shape, spec["membrane_labels"]
            )
            if spec["membrane_labels"]:
                labels = membrane_to_instances(labels)
            else:
                if isinstance(labels, _Squeezed):
                    labels = LabelArray(labels.base, labels.lead)
                else:
                    labels = LabelArray(labels)
        voxel_size = spec["voxel_size"] or meta.get("voxel_size")
        if voxel_size is None:
            raise ConfigError(
                f"{path}: dataset {raw_name!r}: voxel size missing (no resolution in the file): "
                "give field 'voxel_size' [z, y, x] in nm"
            )
        offset = spec["offset"] or meta.get("offset") or (0.0, 0.0, 0.0)
    except Exception:
        for handle in handles:
            handle.close()
        raise
    return Volume(
        raw=raw,
        labels=labels,
        voxel_size=tuple(voxel_size),
        offset=tuple(offset),
        path=str(path),
        raw_name=raw_name,
        labels_name=labels_name,
        _handles=handles,
    )


def check_min_shape(volume, shape: Sequence[int]) -> None:
    """InputFormatError unless ``volume`` (a :class:`Volume` or an array) is at least ``shape``
    (z, y, x) in every axis, e.g. the network's input block."""
    vshape = tuple(int(n) for n in volume.shape)
    want = tuple(int(n) for n in shape)
    if len(want) != len(vshape) or any(v < w for v, w in zip(vshape, want, strict=True)):
        where = (
            f"{volume.path}: dataset {volume.raw_name!r}"
            if isinstance(volume, Volume)
            else "volume"
        )
        raise InputFormatError(
            f"{where}: shape {vshape} (z, y, x) is smaller than the minimum block shape {want}"
        )


def read_block(array, zyx_slices: Sequence[slice], pad: str | None = None, **pad_kw) -> np.ndarray:
    """Read the box ``zyx_slices`` (slices with absolute start/stop, step 1) of a z-y-x array-like
    as numpy.

    Without ``pad`` the box must lie inside the array (ValueError otherwise). With ``pad`` (a
    :func:`numpy.pad` mode: ``"constant"``, ``"reflect"``, ``"edge"``...; ``pad_kw`` such as
    ``constant_values`` go to numpy.pad) the box may extend past the array (halos of blockwise
    inference) and the part outside is padded.
    """
    shape = tuple(int(n) for n in array.shape)
    if len(zyx_slices) != len(shape):
        raise ValueError(f"read_block: {len(zyx_slices)} slices for a {len(shape)}-D array")
    inner, widths = [], []
    for sl, n in zip(zyx_slices, shape, strict=True):
        if sl.step not in (None, 1):
            raise ValueError(f"read_block: step {sl.step} (only 1)")
        start = 0 if sl.start is None else int(sl.start)
        stop = n if sl.stop is None else int(sl.stop)
        if stop < start:
            raise ValueError(f"read_block: empty slice {sl}")
        if pad is None and (start < 0 or stop > n):
            raise ValueError(
                f"read_block: {slice(start, stop)} outside an axis of length {n} (pass pad=...)"
            )
        lo, hi = min(max(start, 0), n), max(min(stop, n), 0)
        hi = max(hi, lo)
        inner.append(slice(lo, hi))
        widths.append((lo - start, stop - start - (hi - lo) - (lo - start)))
    block = np.asarray(array[tuple(inner)])
    if any(w != (0, 0) for w in widths):
        if block.size == 0 and pad != "constant":
            raise ValueError("read_block: the box lies outside the array; only pad='constant'")
        block = np.pad(block, widths, mode=pad, **pad_kw)
    return block


def _downsample(block: np.ndarray, factors: Sequence[int], labels: bool) -> np.ndarray:
    """Labels: every factor-th voxel (from 0); images: mean of factor boxes (edge-padded)."""
    if labels:
        return block[tuple(slice(None, None, f) for f in factors)]
    pads = [(0, -n % f) for n, f in zip(block.shape, factors, strict=True)]
    padded = np.pad(block, pads, mode="edge") if any(p[1] for p in pads) else block
    shape = []
    for n, f in zip(padded.shape, factors, strict=True):
        shape += [n // f, f]
    mean = padded.reshape(shape).mean(axis=(1, 3, 5))
    if np.dtype(block.dtype).kind in "ui":
        mean = np.rint(mean)
    return mean.astype(block.dtype)


def write_ome_zarr(
    path,
    array,
    voxel_size: Sequence[float],
    offset: Sequence[float] = (0.0, 0.0, 0.0),
    chunks: Sequence[int] = (32, 128, 128),
    name: str = "raw",
    *,
    levels: int = 1,
    downscale: Sequence[int] = (1, 2, 2),
    labels: bool = False,
    zarr_format: int = 3,
    channels: Sequence[str] | None = None,
) -> None:
    """Write a z-y-x ``array`` (numpy or any sliceable array-like) as an OME-Zarr image at
    ``path`` (replacing it): OME-NGFF 0.5 on zarr v3 (``zarr_format=3``) or 0.4 on zarr v2.
    With ``channels`` (one name per channel), ``array`` is c-z-y-x: a leading ``channel`` axis
    (scale 1, one chunk holds every channel) whose names are the level arrays' ``channels``
    attribute.

    The arrays are written slab by slab in ``chunks``; ``levels`` > 1 adds a pyramid downsampled
    by ``downscale`` per level (mean for images, every n-th voxel for ``labels``). The multiscales
    metadata (via ``ome_zarr.writer.write_multiscales_metadata``) carries, per level, the
    ``scale`` (voxel size) and ``translation`` (offset) transforms in nanometers; each level array
    also has the attributes ``resolution`` and ``offset`` (nm, z-y-x) of the blockwise layout.
    """
    import zarr
    from ome_zarr.format import FormatV04, FormatV05

    with warnings.catch_warnings():  # ome_zarr.writer's import warns of its deprecated Scaler
        warnings.simplefilter("ignore", DeprecationWarning)
        from ome_zarr.writer import write_multiscales_metadata

    if zarr_format not in (2, 3):
        raise ValueError(f"write_ome_zarr: zarr_format {zarr_format} (2 or 3)")
    lead = 0 if channels is None else 1
    if len(array.shape) != 3 + lead or (lead and array.shape[0] != len(channels)):
        want = "a 3-D z-y-x array" if not lead else f"a c-z-y-x array of {len(channels)} channels"
        raise ValueError(f"write_ome_zarr: {want}, got shape {tuple(array.shape)}")
    voxel = np.asarray(
        _triple(
            voxel_size, positive=True, where="write_ome_zarr", what="voxel_size", err=ValueError
        )
    )
    origin = np.asarray(
        _triple(offset, positive=False, where="write_ome_zarr", what="offset", err=ValueError)
    )
    factors = np.asarray([int(f) for f in downscale])
    if len(factors) != 3 or factors.min() < 1 or int(levels) < 1:
        raise ValueError(f"write_ome_zarr: downscale {tuple(downscale)} / levels {levels}")
    fmt = FormatV05() if zarr_format == 3 else FormatV04()
    root = zarr.open_group(os.fspath(path), mode="w", zarr_format=zarr_format)
    datasets = []
    source = array
    for level in range(int(levels)):
        step = factors**level
        scale = voxel * step
        # images: a downsampled voxel's centre is the mean of its box's centres
        translation = origin if labels else origin + (step - 1) * voxel / 2
        spatial = tuple(int(n) for n in source.shape[lead:])
        if level:
            spatial = tuple(-(-n // int(f)) for n, f in zip(spatial, factors, strict=True))
        level_chunks = tuple(max(1, min(int(c), n)) for c, n in zip(chunks, spatial, strict=True))
        head = (len(channels),) if lead else ()
        dst = root.create_array(
            str(level),
            shape=head + spatial,
            dtype=np.dtype(array.dtype),
            chunks=head + level_chunks,
            fill_value=0,
            **({"dimension_names": ("c",) * lead + ("z", "y", "x")} if zarr_format == 3 else {}),
        )
        fz = 1 if level == 0 else int(factors[0])
        slab = level_chunks[0] * fz
        for z0 in range(0, int(source.shape[lead]), slab):
            block = np.asarray(source[(slice(None),) * lead + (slice(z0, z0 + slab),)])
            if level:
                block = (
                    np.stack([_downsample(b, factors, labels) for b in block])
                    if lead
                    else _downsample(block, factors, labels)
                )
            dst[(slice(None),) * lead + (slice(z0 // fz, z0 // fz + block.shape[lead]),)] = block
        dst.attrs.update({"resolution": scale.tolist(), "offset": translation.tolist()})
        if lead:
            dst.attrs["channels"] = list(channels)
        datasets.append(
            {
                "path": str(level),
                "coordinateTransformations": [
                    {"type": "scale", "scale": [1.0] * lead + scale.tolist()},
                    {"type": "translation", "translation": [0.0] * lead + translation.tolist()},
                ],
            }
        )
        source = dst
    write_multiscales_metadata(
        root,
        datasets=datasets,
        fmt=fmt,
        axes=[{"name": "c", "type": "channel"}] * lead
        + [{"name": a, "type": "space", "unit": "nanometer"} for a in "zyx"],
        name=name,
    )
