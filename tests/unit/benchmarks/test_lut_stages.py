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
    x = (rng.random((n, 1, h, w)) < density).astype(np.uint8)
    x[:2, 0, :] = x[:2, 0, :1]  # one row repeated: patches repeat within an image
    if n > 3:
        x[3] = x[2]  # a repeated window: patches shared across a chunk
    return x


def distinct(x: np.ndarray, k: int) -> int:
    """Distinct k x k patches over all positions of the images ``x`` (n, h, w), by brute force."""
    views = sliding_window_view(x, (k, k), axis=(1, 2)).reshape(-1, k * k)
    return len(np.unique(views, axis=0))


@pytest.mark.parametrize("dense_path", ["per_patch", "per_pair"])
@pytest.mark.parametrize("kernels", KERNELS)
def test_work_counts_match_a_brute_force_count(packed_model, kernels, dense_path):
    x = windows()
    engine = BinaryConvLutEngine(packed_model, kernels=kernels, chunk=CHUNK)
    engine.dense_path = dense_path
    plain = engine.predict_proba(x)
    engine.profile = True
    np.testing.assert_array_equal(engine.predict_proba(x), plain)  # profiled
    profile = lut_stages.stage_profile(engine, x, batch=8)
    assert engine.profile is False  # switched off again
    # the chunks the engine deduplicated: batches of 8 windows, each cut into chunks of CHUNK
    starts = [i for b in range(0, len(x), 8) for i in range(b, min(b + 8, len(x)), CHUNK)]
    chunks = [x[i : min(i + CHUNK, (i // 8 + 1) * 8), 0] for i in starts]
    n = len(x)
    work = profile["work_per_window"]
    counts = engine.work_counts
    assert counts["images"] == n and counts["positions"] == n * (12 - 6) * (14 - 6)
    assert work["images"] == 1
    # every 7x7 position's 6x6 and 5x5 sub-patches cover all 6x6 and 5x5 positions of an image
    distinct_counts = {k: [distinct(c, k) for c in chunks] for k in (7, 6, 5)}
    for k, per_chunk in distinct_counts.items():
        assert counts[f"patches{k}"] == sum(per_chunk), k
    c = engine.channels

    def rows(m: int) -> int:  # a product's rows as computed: rounded up under oneDNN
        bucket = engine.ROW_BUCKET if engine.products == "onednn" else 1
        return -(-m // bucket) * bucket

    assert counts["conv3_product_macs"] == sum(rows(m) * c * 4 * c for m in distinct_counts[5])
    if dense_path == "per_patch":  # once per distinct 7x7 patch and gate scale vector
        groups = engine.last_stats["se_groups"]  # the same gate for both chunks of this model
        assert groups == 1
        dense_rows = sum(rows(m) for m in distinct_counts[7])
    else:  # once per (image, distinct patch) pair
        dense_rows = counts["pairs"]
        assert counts["patches7"] < counts["pairs"] < counts["positions"]  # the test means it
        assert counts["pairs"] == sum(
            distinct(x[i : i + 1, 0], 7) for i in range(n)
        )  # pairs: distinct patches of each image
    assert counts["dense_product_macs"] == dense_rows * c * c
    stages = profile["stages"]
    assert {"patches7", "pool2", "conv3_product", "conv3_sum", "pool3", "dense_product"} <= set(
        stages
    )
    assert ("dense_gather" in stages) == (dense_path == "per_pair")
    assert set(profile["products"]) == set(lut_stages.PRODUCTS)


def test_stage_profile_refuses_an_engine_without_a_profile(packed_model):
    from quantscan.runtime import TorchEngine

    with pytest.raises(ValueError, match="not a lookup engine"):
        lut_stages.stage_profile(TorchEngine(packed_model), windows(2))


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
