"""Selective sweeps: simulation, SweepNet images, inputs and genome scans."""

from ...data import register_format

#: class labels in label order
CLASSES = ("neutral", "sweep")


def _load_images(path):
    from .dataset import load_images

    x, y, _ = load_images(path)
    return x[:, None], y


register_format("images", _load_images)
