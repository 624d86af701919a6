"""Where models train: the ``device`` config key (``auto``, ``cpu`` or ``cuda``), shared by every
application.

CPU is the default and the tested path; ``cuda`` trains on the first CUDA GPU (3-D U-Nets train
an order of magnitude faster there) and fails with a clear error where PyTorch sees none;
``auto`` takes a CUDA GPU when one is present, else the CPU. Inference engines stay on the CPU
(ONNX Runtime's CPU provider, the packed and lookup engines).
"""

from __future__ import annotations

import torch

from .errors import ConfigError

CHOICES = ("auto", "cpu", "cuda")


def resolve(name: str = "cpu") -> torch.device:
    """The ``torch.device`` of a ``device`` config value."""
    if name not in CHOICES:
        raise ConfigError(f"config key device: {name!r} is not one of {', '.join(CHOICES)}")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError(
            "config key device: 'cuda', but PyTorch sees no CUDA GPU here "
            f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'}); "
            "use 'auto' or 'cpu', or install a CUDA build of PyTorch"
        )
    return torch.device("cuda")


__all__ = ["CHOICES", "resolve"]
