"""Fixtures shared by the unit tests."""

import numpy as np
import pytest
import torch

from quantscan.models import build_model
from quantscan.train import TrainConfig, fit

#: the architecture of ``tiny_sweepnet`` (tests that pass an arch along use the same dict)
TINY_SWEEPNET_ARCH = {"name": "sweepnet", "n_classes": 2, "filters": 4, "se_ratio": 2}


def _split(n: int, seed: int):
    """8x8 binary images; sweeps are denser (a signal a 4-filter SweepNet learns in a few steps)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    p = np.where(y == 1, 0.65, 0.3)[:, None, None, None]
    return (rng.random((n, 1, 8, 8)) < p).astype(np.uint8), y.astype(np.int64)


@pytest.fixture(scope="module")
def tiny_sweepnet():
    """(model, train, val, test): a 4-filter SweepNet trained 6 seeded epochs on 8x8 images.

    Module-scoped: each test module trains its own (identical) copy, so no module sees another's
    changes to the model.
    """
    torch.manual_seed(0)
    model = build_model(TINY_SWEEPNET_ARCH)
    train, val, test = _split(128, 1), _split(24, 2), _split(24, 3)
    fit(model, *train, *val, TrainConfig(epochs=6, batch_size=8, learning_rate=0.01, patience=6), 0)
    return model.eval(), train, val, test
