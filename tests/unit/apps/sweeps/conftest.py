"""Fixtures of the scan's unit tests (helpers in scan_helpers.py)."""

import pytest
from scan_helpers import save_models


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """A tiny SweepNet as fp32, packed Table 6 and int8 ONNX files (scan_helpers.save_models)."""
    return save_models(tmp_path_factory.mktemp("models"))
