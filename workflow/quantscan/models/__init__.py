"""Model architectures. Every model is built from a plain dict (``arch``) so packed files can rebuild it."""

from .sweepnet import SweepNet
from .viralcnn import ViralCNN

ARCHITECTURES = {"sweepnet": SweepNet, "viralcnn": ViralCNN}


def build_model(arch: dict):
    """Build a model from ``{"name": ..., **kwargs}`` (as stored in model files)."""
    kwargs = dict(arch)
    name = kwargs.pop("name")
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; known: {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[name](**kwargs)


__all__ = ["ARCHITECTURES", "SweepNet", "ViralCNN", "build_model"]
