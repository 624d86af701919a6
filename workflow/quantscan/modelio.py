"""fp32 model files: the architecture dict and the state dict, loaded with ``weights_only=True``.

``weights_only`` makes ``torch.load`` refuse anything but tensors and plain containers, so a model file
cannot execute code. Compressed models use the bit-packed format of ``compress.pack``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .atomic import atomic_path
from .errors import InputFormatError
from .models import build_model

FORMAT = "quantscan-fp32-v1"


def save_fp32(model: torch.nn.Module, arch: dict, path: str | os.PathLike) -> int:
    """Write the model; returns the file size in bytes."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, "arch": dict(arch), "state_dict": state}, tmp)
    return Path(path).stat().st_size


def load_fp32(path: str | os.PathLike) -> tuple[torch.nn.Module, dict]:
    """Rebuild the model of an fp32 file; returns (model in eval mode, arch)."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise InputFormatError(f"{path}: not a readable quantscan model file ({err})") from err
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise InputFormatError(f"{path}: field 'format' is not {FORMAT!r}")
    model = build_model(blob["arch"])
    try:
        model.load_state_dict(blob["state_dict"])
    except RuntimeError as err:
        raise InputFormatError(f"{path}: weights do not match {blob['arch']} ({err})") from err
    return model.eval(), blob["arch"]


def n_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def file_bytes(path: str | os.PathLike) -> int:
    return Path(path).stat().st_size
