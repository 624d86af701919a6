"""Opening the scan's engines (quantscan.apps.sweeps.scan_engines): a model runs in an engine, or
the engine says why not."""

import numpy as np
import pytest

from quantscan.apps.sweeps import scan_engines
from quantscan.errors import InputFormatError

ARCH = {"name": "sweepnet", "n_classes": 2, "filters": 8, "se_ratio": 2}


def test_open_engine_runs_or_says_why_not(models):
    x = (np.random.default_rng(1).random((5, 1, 12, 16)) < 0.3).astype(np.uint8)
    kw = dict(shape=(12, 16), batch_size=4)
    fp32, why = scan_engines.open_engine("onnx_fp32", models / "model.pt", model="fp32", **kw)
    assert why is None
    packed, why = scan_engines.open_engine("packed", models / "model.qsp", model="m", **kw)
    assert why is None and packed.predict_proba(x).shape == (5, 2)
    ref, _ = scan_engines.open_engine("packed_torch", models / "model.qsp", model="m", **kw)
    np.testing.assert_allclose(packed.predict_proba(x), ref.predict_proba(x), atol=1e-5)
    for kind, path, model, reason in [
        ("onnx_int8", "model.qsp", "m", "fp32 model's int8 ONNX export only"),
        ("onnx_int8", "model.pt", "fp32", "needs the int8 ONNX file"),
        ("packed", "model.pt", "fp32", "needs a packed model file"),
        ("lut_fp32", "model.qsp", "m", "needs an fp32 model file"),
    ]:
        engine, why = scan_engines.open_engine(kind, models / path, model=model, **kw)
        assert engine is None and reason in why and f"engine {kind}" in why
    (models / "broken.qsp").write_bytes(b"QSPK" + b"\0" * 20)
    with pytest.raises(InputFormatError):  # a corrupt model file is an error, not a skip
        scan_engines.open_engine("packed", models / "broken.qsp", model="m", **kw)
