"""The engine interface (``quantscan.runtime.base``): declared input shapes and dtypes, checked
before any engine runs, with errors that name what the engine takes and what it got."""

import numpy as np
import pytest
import torch
from torch import nn

from quantscan.errors import ConfigError, InputFormatError
from quantscan.export.onnx import export_onnx
from quantscan.modelio import save_fp32
from quantscan.models import SweepNet
from quantscan.runtime import (
    ENGINES,
    KINDS,
    Engine,
    InputShapeError,
    OnnxEngine,
    TorchEngine,
    infer_input_shape,
    make_engine,
)

ARCH = {"name": "sweepnet", "n_classes": 2, "filters": 4, "se_ratio": 2}


def seq_model():
    """A tiny 1-D conv net on (batch, 5, L) inputs, 3 classes."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv1d(5, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(4, 3)
    ).eval()


@pytest.fixture(scope="module")
def fp32_file(tmp_path_factory):
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("base") / "model.pt"
    save_fp32(SweepNet(filters=4, se_ratio=2).eval(), ARCH, path)
    return path


def test_registry_names_every_kind():
    assert KINDS == (
        "torch_fp32_per_window",
        "torch_fp32",
        "onnx_fp32",
        "onnx_int8",
        "torch_int8",
        "packed",
        "packed_torch",
        "lut_fp32",
    )
    assert all(issubclass(cls, Engine) for cls in ENGINES.values())


def test_declared_image_shape_refuses_other_shapes_naming_both(fp32_file):
    for kind in ("torch_fp32", "torch_fp32_per_window", "lut_fp32", "onnx_fp32"):
        engine = make_engine(kind, fp32_file, example_shape=(12, 16))
        assert engine.input_shape == (1, 12, 16), kind
        assert engine.describe()["input_shape"] == [1, 12, 16]
        wrong = np.zeros((2, 1, 40, 16), np.uint8)
        with pytest.raises(InputShapeError) as err:
            engine.predict_proba(wrong)
        assert str(err.value) == (
            f"engine {kind} takes 12 x 16 images of shape (batch, 1, 12, 16), got 40 x 16 "
            "(array shape (2, 1, 40, 16)); resize, subsample or match the input to the model's size"
        )
        # both an input-format error and (for callers pairing engines and inputs) a config error
        assert isinstance(err.value, InputFormatError) and isinstance(err.value, ConfigError)
        with pytest.raises(InputShapeError, match=r"takes inputs of shape \(batch, 1, 12, 16\), "):
            engine.logits(wrong[:, 0])
        with pytest.raises(InputShapeError, match=f"engine {kind} takes uint8 inputs, got dtype"):
            engine.predict_log_odds(np.zeros((2, 1, 12, 16), np.float32))
        assert engine.predict_proba(np.zeros((3, 1, 12, 16), np.uint8)).shape == (3, 2)


def test_input_shape_declared_by_first_layer_and_by_onnx_graph(tmp_path):
    model = SweepNet(filters=4).eval()
    assert infer_input_shape(model) == (1, None, None)
    assert infer_input_shape(seq_model()) == (5, None)
    assert infer_input_shape(nn.Sequential(nn.Linear(7, 2))) == (7,)
    assert infer_input_shape(nn.Sequential(nn.ReLU())) is None
    engine = TorchEngine(model)
    assert engine.input_shape == (1, None, None)
    assert engine.predict_proba(np.zeros((2, 1, 9, 11), np.uint8)).shape == (2, 2)  # any H, W
    with pytest.raises(InputShapeError) as err:
        engine.predict_proba(np.zeros((2, 2, 9, 11), np.uint8))
    assert str(err.value).startswith(
        "engine torch_fp32 takes * x * images of shape (batch, 1, *, *), got 2 x 9 x 11 "
        "(array shape (2, 2, 9, 11))"
    )
    path = export_onnx(model, np.zeros((1, 1, 10, 12), np.float32), tmp_path / "m.onnx")
    onnx_engine = OnnxEngine(path)
    assert onnx_engine.input_shape == (1, 10, 12) and onnx_engine.n_classes == 2


def test_sequence_engine_takes_channels_by_length(tmp_path):
    """(C, L) inputs, uint8 or float32, through torch and ONNX alike."""
    model = seq_model()
    torch_engine = TorchEngine(model, input_shape=(5, 64), input_dtypes=("uint8", "float32"))
    x = (np.random.default_rng(0).random((6, 5, 64)) < 0.3).astype(np.uint8)
    ref = torch_engine.logits(x)
    assert ref.shape == (6, 3) and ref.dtype == np.float64
    np.testing.assert_array_equal(torch_engine.logits(x.astype(np.float32)), ref)
    with pytest.raises(InputShapeError) as err:
        torch_engine.predict_proba(x[:, :, :60])
    assert str(err.value).startswith(
        "engine torch_fp32 takes 5 x 64 inputs of shape (batch, 5, 64), got 5 x 60 "
        "(array shape (6, 5, 60))"
    )
    path = export_onnx(model, x[:1].astype(np.float32), tmp_path / "seq.onnx")
    onnx_engine = OnnxEngine(path, batch_size=4, input_dtypes=("uint8", "float32"))
    assert onnx_engine.input_shape == (5, 64) and onnx_engine.n_classes == 3
    np.testing.assert_allclose(onnx_engine.logits(x), ref, atol=1e-5)
    with pytest.raises(InputShapeError, match="takes 5 x 64 inputs .* got 5 x 60"):
        onnx_engine.logits(x[:, :, :60])


def test_undeclared_engine_checks_dtype_only():
    class Mean(Engine):
        def __init__(self):
            super().__init__("mean", 4, 1, 2)

        def _logits(self, x):
            m = x.reshape(len(x), -1).mean(axis=1)
            return np.stack([np.zeros_like(m), m], axis=1)

    engine = Mean()
    assert engine.input_shape is None
    assert engine.logits(np.ones((5, 3, 2), np.uint8)).shape == (5, 2)
    with pytest.raises(InputShapeError, match="engine mean takes uint8 inputs, got dtype float64"):
        engine.logits(np.ones((5, 3, 2)))
