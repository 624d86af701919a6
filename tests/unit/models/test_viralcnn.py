"""ViralCNN: Fernandes & Kung Table III sizes, named modules, forward pass."""

import numpy as np
import pytest
import torch
from torch import nn

from quantscan.apps.viral import onehot
from quantscan.models.viralcnn import ViralCNN


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_match_table_iii():
    """Weights per layer as in viral.md section 6 (computed from Fernandes & Kung Table III, 'same'
    padding): conv 20,480 / 524,288 / 131,072 / 131,072 (no bias: BN follows), FC 64 446,528
    (218 x 32 x 64 + 64), FC 32 + FC 16 2,608, FC 4 68 (with biases). Sum 1,256,116 (~1.26 M),
    plus 768 batch-norm scales and shifts = 1,256,884 trainable parameters."""
    m = ViralCNN(n_classes=4, length=3500)
    assert n_params(m.conv1) == 20_480
    assert n_params(m.conv2) == 524_288
    assert n_params(m.conv3) == 131_072
    assert n_params(m.conv4) == 131_072
    assert n_params(m.dense1) == 446_528
    assert n_params(m.dense2) + n_params(m.dense3) == 2_608
    assert n_params(m.dense4) == 68
    weight_layers = sum(n_params(getattr(m, name)) for name, _ in ViralCNN.LAYERS)
    assert weight_layers == 1_256_116
    assert n_params(m) == 1_256_116 + 2 * (256 + 64 + 32 + 32)
    # fp32 weight size ~40.2 Mbit (the paper's 46.62 Mbit counts differently)
    assert weight_layers * 32 / 1e6 == pytest.approx(40.2, abs=0.05)


def test_lengths_and_macs_per_sequence():
    """'same' convolutions keep lengths 3500, 1750, 875, 437 into the convs and 218 out; the
    multiply-accumulates come to ~1.16 G per sequence, 79 % in conv2 (viral.md section 6)."""
    m = ViralCNN().eval()
    macs, lengths = {}, {}

    def hook(name):
        def f(module, inputs, output):
            if isinstance(module, nn.Conv1d):
                lengths[name] = output.shape[-1]
                macs[name] = (
                    output.shape[-1]
                    * module.out_channels
                    * module.in_channels
                    * module.kernel_size[0]
                )
            else:
                macs[name] = module.in_features * module.out_features

        return f

    for name, _ in ViralCNN.LAYERS:
        getattr(m, name).register_forward_hook(hook(name))
    with torch.no_grad():
        m(torch.zeros(1, 5, 3500))
    assert [lengths[f"conv{i}"] for i in range(1, 5)] == [3500, 1750, 875, 437]
    total = sum(macs.values())
    assert total == pytest.approx(1.16e9, rel=0.01)
    assert macs["conv2"] / total == pytest.approx(0.79, abs=0.01)


def test_named_modules_for_compression():
    m = ViralCNN()
    for weight, act in ViralCNN.LAYERS:
        assert isinstance(getattr(m, weight), nn.Conv1d | nn.Linear)
        if act is not None:
            assert isinstance(getattr(m, act), nn.ReLU)
    # the pad is its own module: the conv itself has no padding (quantized conv1d needs that)
    assert m.conv1.padding == (0,) and isinstance(m.conv1_pad, nn.ConstantPad1d)
    assert m.dense1_dropout.p == 0.4


def test_forward_and_backward_on_one_hot():
    torch.manual_seed(0)
    m = ViralCNN(**{"n_classes": 4, "length": 3500})  # rebuilt from a plain dict
    x = torch.from_numpy(onehot.encode(["ACGT" * 300, "GGCA" * 800], dtype=np.float32))
    m.train()
    out = m(x)
    assert out.shape == (2, 4)
    loss = nn.functional.cross_entropy(out, torch.tensor([0, 3]))
    loss.backward()
    assert m.conv1.weight.grad is not None and m.conv1.weight.grad.abs().sum() > 0
    m.eval()
    with torch.no_grad():
        a, b = m(x), m(x)
    torch.testing.assert_close(a, b)  # no dropout at inference
    assert torch.isfinite(a).all()


def test_other_lengths_and_classes():
    m = ViralCNN(n_classes=3, length=1000).eval()
    with torch.no_grad():
        assert m(torch.zeros(2, 5, 1000)).shape == (2, 3)
    assert n_params(m.dense1) == (1000 // 16) * 32 * 64 + 64
    with pytest.raises(ValueError, match="too short"):
        ViralCNN(length=10)
