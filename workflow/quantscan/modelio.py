"""fp32 model files: the architecture dict and the state dict, loaded with ``weights_only=True``.

``weights_only`` makes ``torch.load`` refuse anything but tensors and plain containers, so a model file
cannot execute code. Compressed models use the bit-packed format of ``export.packed``.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import torch

from .atomic import atomic_path
from .errors import InputFormatError
from .models import build_model, state_nbytes, validate_arch

FORMAT = "quantscan-fp32-v1"


def save_fp32(model: torch.nn.Module, arch: dict, path: str | os.PathLike) -> int:
    """Write the model; returns the file size in bytes."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, "arch": dict(arch), "state_dict": state}, tmp)
    return Path(path).stat().st_size


def load_fp32(path: str | os.PathLike) -> tuple[torch.nn.Module, dict]:
    """Rebuild the model of an fp32 file; returns (model in eval mode, arch).

    Nothing is allocated for a declared size before it is checked: the zip records must fit in the
    file, the ``arch`` must pass ``models.validate_arch`` and its weights (stored raw) must fit in
    the file's bytes and have the shapes of the stored ``state_dict``.
    """
    size = check_zip(path)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise InputFormatError(f"{path}: not a readable quantscan model file ({err})") from err
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise InputFormatError(f"{path}: field 'format' is not {FORMAT!r}")
    arch, stored = blob.get("arch"), blob.get("state_dict")
    declared = validate_arch(arch, path)
    nbytes = state_nbytes(declared)
    if nbytes > size:
        raise InputFormatError(
            f"{path}: field 'arch' = {arch!r:.200} declares {nbytes:,} bytes of weights but the "
            f"file has only {size:,} bytes"
        )
    if not isinstance(stored, dict) or not all(
        isinstance(v, torch.Tensor) for v in stored.values()
    ):
        raise InputFormatError(f"{path}: field 'state_dict' is not a mapping of tensors")
    for key, (shape, _) in declared.items():
        if key in stored and tuple(stored[key].shape) != shape:
            raise InputFormatError(
                f"{path}: field 'state_dict' tensor {key!r} has shape {tuple(stored[key].shape)} "
                f"but 'arch' = {arch!r:.200} declares {shape}"
            )
    model = build_model(arch)
    try:
        model.load_state_dict(stored)
    except RuntimeError as err:
        raise InputFormatError(f"{path}: weights do not match {arch} ({err})") from err
    return model.eval(), arch


def check_zip(path, what: str = "quantscan model file") -> int:
    """The size of ``path``, a zip (``torch.save``) file whose records fit in it: torch allocates a
    record's declared size before reading it. Errors name ``path`` and ``what`` it should be."""
    try:
        size = Path(path).stat().st_size
        with zipfile.ZipFile(path) as archive:
            records = archive.infolist()
    except FileNotFoundError as err:
        raise InputFormatError(f"{path}: no {what}") from err
    except OSError as err:
        raise InputFormatError(f"{path}: cannot read {what}: {err.strerror or err}") from err
    except zipfile.BadZipFile as err:
        raise InputFormatError(f"{path}: not a {what} (not a zip: {err})") from err
    for info in records:
        if info.file_size > size or info.compress_size > size:
            raise InputFormatError(
                f"{path}: record {info.filename!r} declares {info.file_size:,} bytes but the file "
                f"has {size:,} (truncated or corrupted)"
            )
    return size


def n_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def file_bytes(path: str | os.PathLike) -> int:
    return Path(path).stat().st_size
