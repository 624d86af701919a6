"""The device config key: cpu, auto and cuda, with a named error where no GPU is seen."""

import numpy as np
import pytest
import torch

from quantscan.device import resolve
from quantscan.errors import ConfigError
from quantscan.train import TrainConfig, fit


def test_cpu_and_auto_without_gpu(monkeypatch):
    assert resolve("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve("auto") == torch.device("cpu")
    with pytest.raises(
        ConfigError, match="config key device: 'cuda', but PyTorch sees no CUDA GPU"
    ):
        resolve("cuda")
    with pytest.raises(ConfigError, match="config key device: 'tpu'"):
        resolve("tpu")


def test_auto_takes_a_gpu_when_present(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve("auto") == torch.device("cuda") == resolve("cuda")


def test_fit_on_an_explicit_device_returns_a_cpu_model():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    rng = np.random.default_rng(0)
    x = rng.random((16, 1, 2, 2)).astype(np.float32)
    y = (x.reshape(16, -1).sum(1) > 2).astype(np.int64)
    history = fit(model, x, y, x, y, TrainConfig(epochs=2, batch_size=4), 0, device=resolve("cpu"))
    assert len(history) == 2
    assert all(p.device.type == "cpu" for p in model.parameters())
