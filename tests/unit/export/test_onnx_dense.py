"""Dense (fully convolutional) models keep their spatial axes free in the ONNX and int8 exports."""

import numpy as np
import torch

from quantscan.export.onnx import build_int8, describe_onnx
from quantscan.models import build_model
from quantscan.runtime import OnnxEngine


def test_int8_export_of_a_dense_model_runs_at_other_shapes(tmp_path):
    torch.manual_seed(0)
    model = build_model({"name": "unet3d", "filters": 4, "levels": 2}).eval()
    rng = np.random.default_rng(0)
    calib = rng.random((4, 1, 4, 16, 16)).astype(np.float32)
    paths = build_int8(
        model, calib, tmp_path / "m.onnx", tmp_path / "m.int8.onnx", dynamic_spatial=True
    )
    x = rng.random((1, 1, 8, 24, 32)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    for key, tol in (("fp32", 1e-4), ("int8", 0.5)):
        engine = OnnxEngine(paths[key], batch_size=1, input_dtypes=("float32",))
        assert engine.input_shape == (1, None, None, None)
        out = engine.logits(x)
        assert out.shape == ref.shape
        assert np.abs(out - ref).max() <= tol * max(1.0, np.abs(ref).max())
    assert describe_onnx(paths["int8"])["file_bytes"] > 0


def test_classification_exports_keep_fixed_spatial_dims(tmp_path):
    model = build_model({"name": "sweepnet", "n_classes": 2, "filters": 4, "se_ratio": 2}).eval()
    calib = np.random.default_rng(0).integers(0, 2, (4, 1, 16, 16)).astype(np.float32)
    paths = build_int8(model, calib, tmp_path / "s.onnx", tmp_path / "s.int8.onnx")
    engine = OnnxEngine(paths["int8"], batch_size=1, input_dtypes=("float32",))
    assert engine.input_shape == (1, 16, 16)
