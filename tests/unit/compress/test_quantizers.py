"""QKeras quantizer semantics: grids, rounding, auto scales, straight-through gradients, parser."""

import pytest
import torch

from quantscan.compress.quantizers import (
    EPS,
    QUANTIZERS,
    binary,
    parse_quantizer,
    quantized_bits,
    quantized_relu,
    quantized_sigmoid,
    ternary,
)
from quantscan.errors import ConfigError

DENSE = torch.linspace(-3, 3, 20001)  # fine enough to hit every level of an 8-level grid


def levels(q, x=DENSE):
    return sorted(set(q(x).tolist()))


# --------------------------------------------------------------------------------------------------
# grids (compression.md 1.1, 1.2)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("quantized_bits(4, 0, 1)", [k / 8 for k in range(-7, 8)]),
        ("quantized_bits(4, 0)", [k / 8 for k in range(-8, 8)]),
        ("quantized_bits(2, 0)", [-1, -0.5, 0, 0.5]),
        ("quantized_bits(3, 1)", [k / 2 for k in range(-4, 4)]),  # step 2**(integer-bits+1)
        ("quantized_bits(3, 0, 0, keep_negative=False)", [k / 8 for k in range(8)]),
        ("quantized_relu(3, 1)", [k / 4 for k in range(8)]),
        ("quantized_relu(4, 0)", [k / 16 for k in range(16)]),
        ("quantized_relu(1)", [0, 0.5]),
        ("quantized_sigmoid(2)", [0, 0.25, 0.5, 0.75]),
        ("quantized_sigmoid(2, symmetric=True)", [0.25, 0.5, 0.75]),
        ("quantized_sigmoid(1)", [0, 0.5]),
    ],
)
def test_grids(spec, expected):
    assert levels(parse_quantizer(spec)) == expected


def test_alpha_none_rounds_half_to_even():
    q = quantized_bits(4, 0)  # step 1/8
    x = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, -2.5]) / 8
    assert (q(x) * 8).tolist() == [0, 2, 2, 0, -2, -2]
    relu = quantized_relu(4, 0)  # step 1/16
    assert (relu(torch.tensor([0.5, 1.5, 2.5]) / 16) * 16).tolist() == [0, 2, 2]


def test_one_bit_is_sign_with_zero_positive():
    x = torch.tensor([-2.0, -1e-6, -0.0, 0.0, 0.3, 5.0])
    expected = [-1, -1, 1, 1, 1, 1]
    assert quantized_bits(1)(x).tolist() == expected
    assert binary()(x).tolist() == expected
    assert binary(use_01=True)(x).tolist() == [0, 0, 1, 1, 1, 1]


@pytest.mark.parametrize(
    "q", [quantized_bits(32), quantized_bits(31, 1), quantized_relu(32), quantized_relu(31)]
)
def test_31_and_32_bits_are_finite_and_near_identity(q):
    x = torch.linspace(-0.99, 0.99, 1001)
    y = q(x)
    assert torch.isfinite(y).all()
    expected = torch.relu(x) if isinstance(q, quantized_relu) else x
    assert torch.allclose(y, expected, atol=1e-6)


def test_32_bit_sigmoid_is_finite():
    x = torch.linspace(-3, 3, 101)
    y = quantized_sigmoid(32)(x)
    assert torch.isfinite(y).all()
    assert torch.allclose(y, torch.clamp(0.5 * x + 0.5, 0, 1), atol=1e-6)


def test_sigmoid_variants():
    x = torch.tensor([-1.0, 0.0, 0.4, 4.0])
    # hard sigmoid (default): clip(0.5x + 0.5) = [0, .5, .7, 1] -> 3 bits, clip at 7/8
    assert quantized_sigmoid(3)(x).tolist() == [0, 0.5, 0.75, 0.875]
    real = quantized_sigmoid(3, use_real_sigmoid=True)(x)
    expected = torch.clamp(torch.round(torch.sigmoid(x) * 8) / 8, 0, 7 / 8)
    assert torch.equal(real, expected)
    assert real[0] == 0.25  # sigmoid(-1) = 0.27, not the hard sigmoid's 0


# --------------------------------------------------------------------------------------------------
# data-dependent scales (compression.md 1.1 alpha, 1.3)


def test_auto_rounds_half_away_from_zero():
    # bits 3: |z| <= 3; scale = max|x| / 3 = 1, so z = x where rounding is not ambiguous
    x = torch.tensor([[3.0, 0.5, 1.5, -2.5, -0.5]])
    assert quantized_bits(3, 0, 1, alpha="auto")(x).tolist() == [[3, 1, 2, -3, -1]]


def test_auto_and_auto_po2_by_hand():
    x = torch.tensor([[1.0, 0.3, -0.6, 0.1]])
    # auto: scale 1/3, z = [3, 1, -2, 0]
    auto = quantized_bits(3, 0, 1, alpha="auto")(x)
    assert torch.allclose(auto, torch.tensor([[1, 1 / 3, -2 / 3, 0]]))
    # auto_po2: 2**round(log2(1/3)) = 1/4; z = sign*min(floor(|x|*4 + .5), 3) = [3, 1, -2, 0]; the
    # least-squares refit 4.5/14 = 0.32 snaps back to 1/4
    po2 = quantized_bits(3, 0, 1, alpha="auto_po2")(x)
    assert po2.tolist() == [[0.75, 0.25, -0.5, 0.0]]


def test_auto_ignores_integer_and_keep_negative():
    w = torch.randn(4, 3, 2, 2, generator=torch.Generator().manual_seed(1))
    base = quantized_bits(4, 0, 1, alpha="auto")(w)
    assert torch.equal(quantized_bits(4, 2, 1, alpha="auto")(w), base)
    assert torch.equal(quantized_bits(4, 0, 1, keep_negative=False, alpha="auto")(w), base)
    assert (base < 0).any()


def test_auto_scales_are_per_output_channel():
    w = torch.randn(6, 3, 3, generator=torch.Generator().manual_seed(2))
    w[2] *= 100  # one loud channel must not change the others
    q = quantized_bits(4, 0, 1, alpha="auto")
    exported = q.export(w)
    scale = exported.params["scale"]
    assert scale.shape == (6, 1, 1)
    assert torch.allclose(scale.flatten(), w.abs().amax(dim=(1, 2)) / 7)
    y = q(w)
    assert torch.allclose(y.abs().amax(dim=(1, 2)), w.abs().amax(dim=(1, 2)))  # max maps to 7*scale
    alone = q(torch.cat([w[:2], w[3:]]))
    assert torch.equal(alone, torch.cat([y[:2], y[3:]]))
    # rank 1 (a bias): one scale for the tensor, as QKeras reduces a rank-1 tensor over axis 0
    b = torch.tensor([0.1, -0.2, 0.4])
    assert q.export(b).params["scale"].shape == (1,)
    assert torch.allclose(q(b), torch.tensor([0.4 / 7 * 2, -0.4 / 7 * 4, 0.4]))  # 3.5 -> 4


@pytest.mark.parametrize(
    "q",
    [
        quantized_bits(4, 0, 1, alpha="auto_po2"),
        binary(alpha="auto_po2"),
        ternary(alpha="auto_po2"),
    ],
)
def test_auto_po2_scales_are_powers_of_two(q):
    w = torch.randn(8, 4, 3, 3, generator=torch.Generator().manual_seed(3))
    w = w * torch.logspace(-3, 2, 8, base=2).view(8, 1, 1, 1)  # channels of different magnitude
    scale = q.export(w).params["scale"]
    log2 = torch.log2(scale)
    assert torch.equal(log2, torch.round(log2))
    assert len(set(scale.flatten().tolist())) > 1  # still per channel


def test_zero_channel_quantizes_to_zero():
    w = torch.zeros(2, 3)
    w[1] = torch.tensor([0.5, -1.0, 0.2])
    for q in (quantized_bits(4, 0, 1, alpha="auto"), quantized_bits(4, 0, 1, alpha="auto_po2")):
        y = q(w)
        assert torch.isfinite(y).all() and (y[0] == 0).all()


def test_binary_auto_scale_is_mean_abs():
    w = torch.randn(5, 7, generator=torch.Generator().manual_seed(4))
    y = binary(alpha="auto")(w)
    expected = torch.sign(w) * w.abs().mean(dim=1, keepdim=True) / (1 + EPS)
    assert torch.allclose(y, expected)


def test_ternary_by_hand():
    x = torch.tensor([[1.0, 0.9, 0.1, -0.8]])
    # scale 2/3 -> q = [1, 1, 0, -1] -> scale (1 + .9 + .8)/3 = 0.9, stable
    assert torch.allclose(ternary(alpha="auto")(x), torch.tensor([[0.9, 0.9, 0.0, -0.9]]))
    acts = torch.tensor([-0.5, -0.2, 0.0, 0.33, 0.4])
    assert ternary()(acts).tolist() == [-1, 0, 0, 1, 1]  # default threshold 0.33
    assert ternary(threshold=0.45)(acts).tolist() == [-1, 0, 0, 0, 0]


def test_quantized_bits_one_bit_auto_is_rejected():
    with pytest.raises(ConfigError, match="binary"):
        quantized_bits(1, 0, 1, alpha="auto")


# --------------------------------------------------------------------------------------------------
# straight-through gradients


def grad_of(q, x):
    x = x.clone().requires_grad_(True)
    q(x).sum().backward()
    return x.grad


def test_quantized_bits_gradient_is_identity_without_clip_mask():
    x = torch.tensor([-5.0, -1.0, -0.3, 0.0, 0.2, 0.99, 4.0])
    for q in (quantized_bits(4, 0, 1), quantized_bits(2), quantized_bits(3, 0, 1, alpha="auto")):
        assert grad_of(q, x).tolist() == [1.0] * len(x)


def test_quantized_relu_gradient_is_clipped_relu():
    q = quantized_relu(2, 0)  # clip at 1 - 2**-2 = 0.75
    x = torch.tensor([-1.0, -0.1, 0.2, 0.75, 0.8, 3.0])
    assert grad_of(q, x).tolist() == [0, 0, 1, 1, 0, 0]
    q = quantized_relu(3, 1)  # clip at 2 - 2**-2 = 1.75
    assert grad_of(q, torch.tensor([1.7, 1.8])).tolist() == [1, 0]


def test_quantized_sigmoid_gradient():
    q = quantized_sigmoid(2)  # hard sigmoid slope 0.5, output clipped to [0, 0.75]
    x = torch.tensor([-3.0, -0.5, 0.5, 0.9, 3.0])
    # -3: flat part of the hard sigmoid; 0.9: rounds to 1.0 > 0.75 and is clipped
    assert grad_of(q, x).tolist() == [0, 0.5, 0.5, 0, 0]


def test_binary_and_ternary_gradients():
    x = torch.tensor([-2.0, -0.4, 0.0, 0.3, 1.5])
    tanh_grad = 1 - torch.tanh(x) ** 2
    assert torch.allclose(grad_of(binary(), x), tanh_grad)
    assert torch.allclose(grad_of(ternary(), x), tanh_grad)
    assert grad_of(binary(alpha="auto"), x.view(1, -1)).tolist() == [[1.0] * 5]
    assert grad_of(ternary(alpha="auto"), x.view(1, -1)).tolist() == [[1.0] * 5]


def test_qnoise_factor_blends_float_and_quantized():
    x = torch.linspace(-1, 1, 51)
    full = quantized_bits(3, 0, 1)(x)
    assert torch.equal(quantized_bits(3, 0, 1, qnoise_factor=0.0)(x), x)
    assert torch.allclose(quantized_bits(3, 0, 1, qnoise_factor=0.5)(x), (x + full) / 2)
    relu = quantized_relu(3, qnoise_factor=0.0)(x)
    assert torch.allclose(relu, torch.relu(x).clamp(max=1 - 1 / 8))


# --------------------------------------------------------------------------------------------------
# codes


@pytest.mark.parametrize(
    "spec",
    [
        "quantized_bits(4, 0, 1)",
        "quantized_bits(4, 0)",
        "quantized_bits(3, 2, 0, keep_negative=False)",
        "quantized_bits(1)",
        "quantized_bits(2, 0, 1, alpha='auto')",
        "quantized_bits(5, 0, 1, alpha='auto_po2')",
        "quantized_bits(16, 3)",
        "binary()",
        "binary(alpha='auto')",
        "binary(use_01=True, alpha='auto_po2')",
        "ternary()",
        "ternary(alpha='auto')",
    ],
)
def test_forward_is_dequantized_codes(spec):
    q = parse_quantizer(spec)
    w = torch.randn(6, 4, 3, generator=torch.Generator().manual_seed(5))
    exported = q.export(w)
    assert exported.bits == q.code_bits == q.bits
    assert exported.codes.dtype == torch.int64 and exported.codes.shape == w.shape
    assert 0 <= int(exported.codes.min()) and int(exported.codes.max()) < 2**q.bits
    assert torch.equal(q(w), q.dequantize(exported))


# --------------------------------------------------------------------------------------------------
# parser


def test_parse_forms():
    assert parse_quantizer(None) is None
    assert parse_quantizer("fp32") is None
    assert parse_quantizer({"name": "fp32"}) is None
    q = parse_quantizer("quantized_bits(2, 0, 1, alpha='auto_po2')")
    assert (q.bits, q.integer, q.symmetric, q.alpha) == (2, 0, 1, "auto_po2")
    d = parse_quantizer({"name": "quantized_bits", "bits": 2, "symmetric": 1, "alpha": "auto_po2"})
    assert d == q
    # Chen (2024) writes keep_negative positionally
    s = parse_quantizer("quantized_bits(4,4,1,1,alpha='auto')")
    assert (s.bits, s.integer, s.keep_negative, s.alpha) == (4, 4, True, "auto")
    assert parse_quantizer("binary").spec == "binary()"
    assert parse_quantizer(q) is q


def test_auto_forces_symmetric_in_spec():
    assert parse_quantizer("quantized_bits(2, alpha='auto')").spec == (
        "quantized_bits(2, 0, 1, alpha='auto')"
    )


@pytest.mark.parametrize(
    "spec",
    [
        "quantized_bits(4)",
        "quantized_bits(4, 1, 1, keep_negative=False)",
        "quantized_bits(2, 0, 1, alpha='auto_po2', qnoise_factor=0.25)",
        "quantized_relu(3, 1)",
        "quantized_relu(2, qnoise_factor=0.5)",
        "quantized_sigmoid(4, symmetric=True, use_real_sigmoid=True)",
        "binary(use_01=True)",
        "ternary(threshold=0.25)",
        "ternary(alpha='auto_po2', number_of_unrolls=3)",
    ],
)
def test_spec_round_trips(spec):
    q = parse_quantizer(spec)
    again = parse_quantizer(q.spec)
    assert again.spec == q.spec and type(again) is type(q)
    x = torch.randn(4, 9, generator=torch.Generator().manual_seed(6))
    assert torch.equal(again(x), q(x))


def test_every_quantizer_has_bits_and_round_trips():
    for name, cls in QUANTIZERS.items():
        q = cls()
        assert q.name == name and isinstance(q.bits, int) and q.bits >= 1
        assert parse_quantizer(q.spec) == q


@pytest.mark.parametrize(
    "spec",
    [
        "quantized_bits(",
        "quantized_bits(2)(3)",
        "foo(2)",
        "quantized_bits(0)",
        "quantized_bits(33)",
        "quantized_bits(2.5)",
        "quantized_bits(2, alpha='bad')",
        "quantized_bits(2, use_stochastic_rounding=True)",
        "quantized_bits(1, 0, 1, alpha='auto')",
        "quantized_relu(2, 0, 1, 2, 3, 4, 5)",
        "ternary(alpha='auto', threshold=0.3)",
        "quantized_bits(**{'bits': 2})",
        "quantized_bits(__import__('os').getpid())",
        "os.system('true')",
        {"bits": 2},
        {"name": "quantized_bits", "bits": "2"},
        ["quantized_bits", 2],
    ],
)
def test_invalid_specs_raise_config_error_naming_the_spec(spec):
    with pytest.raises(ConfigError) as err:
        parse_quantizer(spec)
    assert repr(spec)[:20] in str(err.value)


def test_parser_never_evaluates():
    # evaluated, len('abc') would be a valid bit width
    with pytest.raises(ConfigError, match="literals"):
        parse_quantizer("quantized_bits(len('abc'))")
