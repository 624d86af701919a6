"""Model architectures. Every model is built from a plain dict (``arch``) so packed files can rebuild it.

A model file declares its ``arch``; :func:`validate_arch` checks it before anything is allocated (a
file declaring ``filters: 30000`` would otherwise ask for tens of GB): integer fields within
``ARCH_LIMITS``, and a parameter count, computed on PyTorch's ``meta`` device (shapes only, no
memory), of at most ``MAX_PARAMETERS``.
"""

import math

import torch

from ..errors import InputFormatError
from .position import PositionNet
from .sweepnet import SweepNet
from .unet3d import UNet3d
from .viralcnn import ViralCNN

ARCHITECTURES = {
    "sweepnet": SweepNet,
    "viralcnn": ViralCNN,
    "unet3d": UNet3d,
    "position": PositionNet,
}

#: inclusive (low, high) bounds of the integer fields a model file may declare, per architecture;
#: far beyond any model of the workflow (SweepNet 32 filters, ViralCNN length 3,500)
ARCH_LIMITS = {
    "sweepnet": {"n_classes": (1, 100_000), "filters": (1, 4096), "se_ratio": (1, 4096)},
    "viralcnn": {"n_classes": (2, 100_000), "length": (16, 10_000_000), "in_channels": (1, 4096)},
    # the default 3-D U-Net has 16 filters and 3 levels; 8 levels need y, x multiples of 2**7
    "unet3d": {
        "in_channels": (1, 64),
        "out_channels": (1, 256),
        "filters": (1, 512),
        "levels": (1, 8),
        "growth": (1, 4),
        "anisotropic_levels": (0, 8),
    },
    "position": {
        "columns": (7, 100_000),
        "n_bins": (2, 10_000),
        "in_channels": (1, 64),
        "filters": (1, 4096),
        "depth": (1, 16),
        "hidden": (1, 65_536),
    },
}
#: most parameters and buffers (elements) a model file may declare: 200 MB of float32
MAX_PARAMETERS = 50_000_000


def register_architecture(name: str, cls, limits: dict[str, tuple[int, int]] | None = None) -> None:
    """Make ``cls(**kwargs)`` buildable as ``{"name": name, **kwargs}`` (an application's own
    model; ``limits``: inclusive bounds of the integer fields a model file may declare)."""
    known = ARCHITECTURES.get(name)
    if known is not None and known is not cls:
        raise ValueError(f"architecture {name!r} is already {known.__name__}")
    ARCHITECTURES[name] = cls
    ARCH_LIMITS[name] = dict(limits or {})


def build_model(arch: dict):
    """Build a model from ``{"name": ..., **kwargs}`` (as stored in model files)."""
    kwargs = dict(arch)
    name = kwargs.pop("name")
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; known: {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[name](**kwargs)


def validate_arch(arch, source) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """The state_dict ``{key: (shape, dtype)}`` that ``arch`` (read from file ``source``) declares,
    computed without allocating; raises InputFormatError naming the file, field and value when the
    arch is malformed, a field is out of ``ARCH_LIMITS`` or the model exceeds ``MAX_PARAMETERS``."""
    if not isinstance(arch, dict) or not isinstance(arch.get("name"), str):
        raise InputFormatError(
            f"{source}: field 'arch' = {arch!r:.200} is not {{'name': ..., ...}}"
        )
    name = arch["name"]
    if name not in ARCHITECTURES:
        raise InputFormatError(
            f"{source}: field 'arch.name' = {name!r}: cannot rebuild the model, no such "
            f"architecture (known: {', '.join(sorted(ARCHITECTURES))})"
        )
    for field, (low, high) in ARCH_LIMITS.get(name, {}).items():
        if field not in arch:
            continue
        value = arch[field]
        if not isinstance(value, int) or isinstance(value, bool):
            raise InputFormatError(
                f"{source}: field 'arch.{field}' = {value!r:.100} is not an integer"
            )
        if not low <= value <= high:
            raise InputFormatError(
                f"{source}: field 'arch.{field}' = {value} is out of range [{low}, {high}]"
            )
    try:
        with torch.device("meta"):  # shapes only: nothing is allocated however large the model
            model = build_model(arch)
    except (TypeError, ValueError, KeyError, RuntimeError) as err:
        raise InputFormatError(
            f"{source}: field 'arch' = {arch!r:.200} cannot rebuild the model: {err}"
        ) from None
    state = {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}
    count = sum(math.prod(shape) for shape, _ in state.values())
    if count > MAX_PARAMETERS:
        raise InputFormatError(
            f"{source}: field 'arch' = {arch!r:.200} declares {count:,} parameters and buffers, "
            f"more than the {MAX_PARAMETERS:,} a model file may hold"
        )
    return state


def state_nbytes(state: dict[str, tuple[tuple[int, ...], torch.dtype]]) -> int:
    """Bytes of a ``validate_arch`` state stored densely (as an fp32 model file stores it)."""
    return sum(math.prod(shape) * dtype.itemsize for shape, dtype in state.values())


__all__ = [
    "ARCHITECTURES",
    "ARCH_LIMITS",
    "MAX_PARAMETERS",
    "SweepNet",
    "UNet3d",
    "ViralCNN",
    "build_model",
    "register_architecture",
    "state_nbytes",
    "validate_arch",
]
