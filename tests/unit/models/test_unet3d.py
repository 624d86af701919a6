"""UNet3d: size, shapes, anisotropic first level, halo, arch limits, ONNX parity and static int8."""

import numpy as np
import pytest
import torch
from torch import nn

from quantscan.errors import InputFormatError
from quantscan.export.onnx import (
    OrtEngine,
    describe_onnx,
    export_int8,
    export_onnx,
    runtime_op_counts,
)
from quantscan.models import ARCH_LIMITS, build_model, validate_arch
from quantscan.models.unet3d import UNet3d
from quantscan.tasks import get_task
from quantscan.train import recalibrate_bn

TINY = {"name": "unet3d", "filters": 4, "levels": 3}


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def tiny_model(seed=0, x=None):
    """A tiny U-Net in eval mode with batch-norm statistics of ``x`` and random BN affines (so
    that folding BN into the convolutions is exercised)."""
    torch.manual_seed(seed)
    model = build_model(TINY)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm3d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    if x is not None:
        recalibrate_bn(model, x)
    return model.eval()


def random_input(seed, n=8, shape=(4, 16, 16)):
    return np.random.default_rng(seed).random((n, 1, *shape)).astype(np.float32)


def test_default_size_is_lean():
    """16/32/64 filters, 3 levels: 318,835 parameters (~1.28 MB fp32), within 0.3-0.5 M."""
    model = UNet3d()
    assert n_params(model) == 318_835
    assert 300_000 <= n_params(model) <= 500_000
    assert model.head.out_channels == 3 and model.head.kernel_size == (1, 1, 1)
    # blocks are Conv3d (no bias) -> BatchNorm3d -> ReLU, named for fuse_modules
    block = model.encoders[1].first
    assert isinstance(block.conv, nn.Conv3d) and block.conv.bias is None
    assert isinstance(block.bn, nn.BatchNorm3d) and isinstance(block.relu, nn.ReLU)
    # upsampling is a transposed convolution with stride == kernel, never Resize / Upsample
    assert not any(isinstance(m, nn.Upsample) for m in model.modules())
    for up in model.ups:
        assert isinstance(up, nn.ConvTranspose3d) and up.stride == up.kernel_size


@pytest.mark.parametrize(
    "kwargs, shape",
    [
        ({}, (2, 8, 8)),
        ({"filters": 2, "levels": 1}, (3, 5, 7)),
        ({"filters": 2, "levels": 2, "out_channels": 12}, (3, 6, 10)),
        ({"filters": 2, "levels": 4, "anisotropic_levels": 2, "in_channels": 2}, (2, 16, 8)),
    ],
)
def test_output_shape_equals_input_shape(kwargs, shape):
    model = UNet3d(**kwargs).eval()
    x = torch.rand(2, model.in_channels, *shape)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, model.out_channels, *shape)


def test_first_level_is_anisotropic():
    model = UNet3d()
    assert model.encoders[0].first.conv.kernel_size == (1, 3, 3)
    assert model.decoders[0].second.conv.kernel_size == (1, 3, 3)
    assert model.pools[0].kernel_size == (1, 2, 2)
    assert model.ups[0].kernel_size == (1, 2, 2)
    assert model.encoders[1].first.conv.kernel_size == (3, 3, 3)
    assert model.pools[1].kernel_size == (2, 2, 2) and model.ups[1].stride == (2, 2, 2)
    assert model.input_multiple() == (2, 4, 4)
    # with every level anisotropic, the sections are processed independently
    flat = UNet3d(filters=2, levels=2, anisotropic_levels=2).eval()
    x = torch.rand(1, 1, 3, 8, 8)
    x2 = x.clone()
    x2[:, :, 0] = torch.rand(8, 8)
    with torch.no_grad():
        y, y2 = flat(x), flat(x2)
    assert not torch.equal(y[:, :, 0], y2[:, :, 0])
    assert torch.equal(y[:, :, 1:], y2[:, :, 1:])


def test_indivisible_shapes_are_refused():
    model = UNet3d().eval()
    with pytest.raises(ValueError, match=r"multiple of \(2, 4, 4\).*\(2, 8, 6\)"):
        model(torch.zeros(1, 1, 2, 8, 6))
    with pytest.raises(ValueError, match=r"multiple of \(2, 4, 4\)"):
        model(torch.zeros(1, 1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"\(batch, 1, z, y, x\)"):
        model(torch.zeros(1, 2, 2, 8, 8))
    with pytest.raises(ValueError, match="levels must be an integer >= 1"):
        UNet3d(levels=0)


def test_halo_is_the_exact_reach_of_an_output_voxel():
    """Gradients of single output voxels (every position relative to the pooling grid) reach
    ``halo()`` voxels and no further; positive weights and inputs keep every ReLU open."""
    torch.manual_seed(0)
    model = UNet3d(filters=2, levels=2).eval().double()
    for p in model.parameters():
        p.data.abs_()
    assert model.halo() == (2, 9, 9)
    reach = [0, 0, 0]
    for pos in [(4, 16, 16), (4, 17, 17), (5, 18, 19), (5, 19, 18)]:
        x = torch.ones(1, 1, 10, 36, 36, dtype=torch.double, requires_grad=True)
        model(x)[0, 0][pos].backward()
        support = x.grad[0, 0].nonzero()
        for axis in range(3):
            lo, hi = int(support[:, axis].min()), int(support[:, axis].max())
            reach[axis] = max(reach[axis], pos[axis] - lo, hi - pos[axis])
    assert tuple(reach) == model.halo()
    assert UNet3d().halo() == (9, 23, 23)


def test_arch_limits_refuse_absurd_model_files():
    assert validate_arch({"name": "unet3d"}, "m.pt")  # the default passes
    assert set(ARCH_LIMITS["unet3d"]) >= {"filters", "levels", "out_channels", "in_channels"}
    with pytest.raises(InputFormatError, match=r"m\.pt: field 'arch\.filters' = 30000 is out"):
        validate_arch({"name": "unet3d", "filters": 30000}, "m.pt")
    with pytest.raises(InputFormatError, match=r"'arch\.levels' = 40 is out of range"):
        validate_arch({"name": "unet3d", "levels": 40}, "m.pt")
    with pytest.raises(InputFormatError, match=r"'arch\.filters' = '16' is not an integer"):
        validate_arch({"name": "unet3d", "filters": "16"}, "m.pt")
    # every field in range, but billions of parameters: refused on the meta device, unallocated
    with pytest.raises(InputFormatError, match="parameters and buffers, more than"):
        validate_arch({"name": "unet3d", "filters": 512, "levels": 8, "growth": 4}, "m.pt")


def test_onnx_export_matches_torch(tmp_path):
    x = random_input(0)
    model = tiny_model(0, x)
    path = export_onnx(model, x[:1], tmp_path / "unet.onnx")
    ops = describe_onnx(path)["op_counts"]
    assert ops["ConvTranspose"] == 2 and "Resize" not in ops
    assert "BatchNormalization" not in ops  # folded into the convolutions
    engine = OrtEngine(path, activation="none")
    xt = random_input(1, n=3)  # another batch size: the batch axis is dynamic
    with torch.no_grad():
        expected = model(torch.from_numpy(xt)).numpy()
    got = engine.predict_logits(xt)
    assert got.shape == (3, 3, 4, 16, 16)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_static_int8_build_runs_close_to_fp32(tmp_path):
    x = random_input(0, n=16)
    model = tiny_model(0, x)
    calib = get_task("affinities").calibration_inputs(x, 8, seed=0)
    assert calib.shape == (8, 1, 4, 16, 16)
    paths = export_int8(
        model, calib, tmp_path / "fp32.onnx", tmp_path / "int8.onnx", calibration_samples=8, seed=0
    )
    assert paths["calibration_samples"] == 8
    info = describe_onnx(paths["int8"])
    assert info["metadata"]["quantscan.calibration_samples"] == "8"
    assert info["n_int8_initializers"] == 13  # 11 convolutions, 2 transposed convolutions
    # ORT runs every convolution as an integer kernel (the transposed ones dequantize)
    assert runtime_op_counts(paths["int8"])["QLinearConv"] == 11
    xt = random_input(2, n=3)
    fp32 = OrtEngine(paths["fp32"], activation="none").predict_logits(xt)
    int8 = OrtEngine(paths["int8"], activation="none").predict_logits(xt)
    assert int8.shape == fp32.shape == (3, 3, 4, 16, 16)
    assert np.isfinite(int8).all()
    assert np.abs(int8 - fp32).mean() < 0.1 * fp32.std()
    assert ((int8 > 0) == (fp32 > 0)).mean() > 0.95


def test_blocks_fuse_for_eager_quantization():
    """Every Conv3d + BatchNorm3d + ReLU block fuses with ``fuse_modules`` (eval mode), outputs
    unchanged."""
    from torch.ao.quantization import fuse_modules

    model = tiny_model(0, random_input(0))
    x = torch.from_numpy(random_input(1, n=2))
    with torch.no_grad():
        expected = model(x)
    blocks = [name for name, m in model.named_modules() if hasattr(m, "bn")]
    assert len(blocks) == 10  # 2 per level down, 2 per level up
    fuse_modules(model, [[f"{b}.conv", f"{b}.bn", f"{b}.relu"] for b in blocks], inplace=True)
    assert not any(isinstance(m, nn.BatchNorm3d) for m in model.modules())
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-5)
