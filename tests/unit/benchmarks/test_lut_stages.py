"""``benchmarks/lut_stages.py`` and the lookup engine's work counts under ``profile``.

The counts are checked against a brute-force count of distinct patches in each chunk's images;
the limits against hand arithmetic. No timing is asserted, only how the times are combined.
"""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view

from quantscan.apps.sweeps.compress_presets import SEED000_TABLE6
from quantscan.compress.layers import quantize_model
from quantscan.models import SweepNet
from quantscan.runtime import BinaryConvLutEngine, numba_available

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))

import lut_stages  # noqa: E402

KERNELS = ["numpy"] + (["numba"] if numba_available() else [])
CHUNK = 4


@pytest.fixture(scope="module")
def packed_model():
    torch.manual_seed(5)
    return quantize_model(SweepNet(filters=8, se_ratio=2).eval(), SEED000_TABLE6).eval()


def windows(n=10, h=12, w=14, seed=0):
    rng = np.random.default_rng(seed)
    density = np.linspace(0.6, 0.05, w)[None, None, :]
    return (rng.random((n, 1, h, w)) < density).astype(np.uint8)


def distinct(x: np.ndarray, k: int) -> int:
    """Distinct k x k patches over all positions of the images ``x`` (n, h, w), by brute force."""
    views = sliding_window_view(x, (k, k), axis=(1, 2)).reshape(-1, k * k)
    return len(np.unique(views, axis=0))


@pytest.mark.parametrize("kernels", KERNELS)
def test_work_counts_match_a_brute_force_count(packed_model, kernels):
    x = windows()
    engine = BinaryConvLutEngine(packed_model, kernels=kernels, chunk=CHUNK)
    plain = engine.predict_proba(x)
    profile = lut_stages.stage_profile(engine, x, batch=8)
    assert engine.profile is False  # switched off again
    np.testing.assert_array_equal(engine.predict_proba(x), plain)  # counting changes nothing
    # the chunks the engine deduplicated: batches of 8 windows, each cut into chunks of CHUNK
    starts = [i for b in range(0, len(x), 8) for i in range(b, min(b + 8, len(x)), CHUNK)]
    chunks = [x[i : min(i + CHUNK, (i // 8 + 1) * 8), 0] for i in starts]
    n = len(x)
    work = profile["work_per_window"]
    assert work["images"] == 1 and work["positions"] == (12 - 6) * (14 - 6)
    # every 7x7 position's 6x6 and 5x5 sub-patches cover all 6x6 and 5x5 positions of an image
    for k in (7, 6, 5):
        assert work[f"patches{k}"] * n == sum(distinct(c, k) for c in chunks), k
    c = engine.channels
    rows5 = work["patches5"] if engine.products == "torch" else None
    if rows5 is not None:  # unpadded products: exactly the distinct 5x5 patches
        assert work["conv3_product_macs"] == pytest.approx(rows5 * c * 4 * c)
    else:  # oneDNN: row counts rounded up to ROW_BUCKET per chunk
        assert work["conv3_product_macs"] * n % (engine.ROW_BUCKET * c * 4 * c) == 0
        assert work["conv3_product_macs"] >= work["patches5"] * c * 4 * c
    assert work["dense_product_macs"] > 0
    stages = profile["stages"]
    assert {"patches7", "pool2", "conv3_product", "conv3_sum", "pool3", "dense_product"} <= set(
        stages
    )
    assert sum(s["share"] for s in stages.values()) == pytest.approx(1.0)
    assert set(profile["products"]) == set(lut_stages.PRODUCTS)
    for name, p in profile["products"].items():
        seconds = stages[name]["ms_per_window"] * 1e-3
        assert p["gmacs_per_s"] == pytest.approx(p["macs_per_window"] / seconds / 1e9)


def test_limits_by_hand():
    profile = {
        "ms_per_window": 2.0,
        "stages": {
            "conv3_product": {"ms_per_window": 0.5},
            "dense_product": {"ms_per_window": 0.3},
        },
        "products": {
            "conv3_product": {"macs_per_window": 6e6},
            "dense_product": {"macs_per_window": 2e6},
        },
    }
    got = lut_stages.limits(profile, gemm_macs_per_s=40e9, cores=2)
    assert got["measured_one_thread_times_cores"] == pytest.approx(1000.0)
    assert got["product_floor_ms_per_window"] == pytest.approx(0.2)  # 8e6 / 40e9 s
    assert got["other_ms_per_window"] == pytest.approx(1.2)
    assert got["products_at_gemm_rate"] == pytest.approx(2e3 / 1.4)
    assert got["only_products_at_gemm_rate"] == pytest.approx(2e3 / 0.2)
