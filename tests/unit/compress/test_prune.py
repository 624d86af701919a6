"""γσ pruning + uniform quantization schedules (Fernandes & Kung) on tiny seeded models."""

import pytest
import torch
from torch import nn

from quantscan.compress.prune import (
    SCHEDULES,
    Grid,
    PThenQEpochs,
    gamma_sigma,
    make_schedule,
    quantize_offset,
    quantize_uniform,
    weight_layers,
)
from quantscan.errors import ConfigError
from quantscan.models import SweepNet


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv1d(2, 16, 5),
        nn.ReLU(),
        nn.Conv1d(16, 16, 3),
        nn.ReLU(),
        nn.AdaptiveAvgPool1d(1),
        nn.Flatten(),
        nn.Linear(16, 2),
    )


def toy_data(seed=0, n=64):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 2, 20, generator=g) + (2.0 * y - 1.0).view(-1, 1, 1)
    return x, y


def train(schedule, model, steps=12, lr=0.05, momentum=0.9, epoch_of=lambda i: 0, n_epochs=1):
    x, y = toy_data()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    loss_fn = nn.CrossEntropyLoss()
    for i in range(steps):
        sl = slice((i * 16) % 64, (i * 16) % 64 + 16)
        loss = schedule.step(model, opt, loss_fn, x[sl], y[sl], epoch_of(i), n_epochs)
        masks = {n: m.clone() for n, m in schedule.masks.items()}
        yield loss, masks


# -- quantizers ----------------------------------------------------------------------------------
def test_quantize_uniform_known_values():
    w = torch.tensor([-1.0, -0.5, 0.1, 0.26, 1.0])
    c, grid = quantize_uniform(w, bits=3)  # q = 1/3, codes -3..3
    # w/q = -3, -1.5 (half to even -> -2), 0.3, 0.78, 3
    assert torch.allclose(c, torch.tensor([-3.0, -2.0, 0.0, 1.0, 3.0]) / 3)
    assert grid.k_max == 3 and grid.step == pytest.approx(1 / 3)
    assert grid.contains(c)
    assert not grid.contains(w)


def test_quantize_uniform_levels_8bit():
    w = torch.linspace(-2, 2, 10001)
    c, grid = quantize_uniform(w, 8)
    assert torch.unique(c).numel() == 255  # 2^b - 1 levels incl. zero (the paper's "M = 254" steps)
    assert grid.contains(c)


def test_quantize_offset_dead_zone():
    # pruned weights (|w| >= beta = 0.5 kept), max 2, b = 3: q' = (2 - 0.5)/3 = 0.5
    w = torch.tensor([0.0, 0.5, -0.74, 0.76, 1.6, -2.0])
    c, grid = quantize_offset(w, 3, beta=0.5)
    assert torch.allclose(c, torch.tensor([0.0, 0.5, -0.5, 1.0, 1.5, -2.0]))
    assert grid.contains(c) and grid.k_min == 0 and grid.k_max == 3
    # at most 2^b non-zero values
    w = torch.randn(2000)
    beta = gamma_sigma(w, 1.0)
    c, grid = quantize_offset(w * (w.abs() >= beta), 4, beta)
    nz = torch.unique(c[c != 0])
    assert nz.numel() <= 16 and c.abs().max() == pytest.approx(float(w.abs().max()), rel=1e-6)
    assert c[c != 0].abs().min() >= beta - 1e-6


def test_gamma_sigma_uses_population_std_with_zeros():
    w = torch.tensor([0.0, 0.0, 3.0, -3.0])
    assert gamma_sigma(w, 2.0) == pytest.approx(2.0 * float(w.std(unbiased=False)))


# -- schedules -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_masks_persist_and_final_weights_on_grid(name):
    model = tiny_model()
    bias_layer = model[0]
    schedule = make_schedule(name, gamma=0.8, bits=4)
    n_epochs = 4
    previous = None
    for _, masks in train(schedule, model, steps=12, epoch_of=lambda i: i // 3, n_epochs=n_epochs):
        for n, m in weight_layers(model).items():
            # pruned weights exactly zero after the optimizer step, despite momentum
            assert torch.all(m.weight[~masks[n]] == 0)
            # and their gradient was zeroed
            assert torch.all(m.weight.grad[~masks[n]] == 0)
            if previous is not None:  # masks only ever lose entries
                assert not torch.any(masks[n] & ~previous[n])
        previous = masks
    assert schedule.density() < 1.0
    bias_before = bias_layer.bias.detach().clone()
    report = schedule.finalize(model)
    assert torch.equal(bias_layer.bias, bias_before)  # biases untouched
    for n, m in weight_layers(model).items():
        assert schedule.grids[n].contains(m.weight), n
        assert torch.all(m.weight[~schedule.masks[n]] == 0)
        assert torch.unique(m.weight[m.weight != 0]).numel() <= 2**4
    assert 0 < report["density"] < 1
    nz = sum(int((m.weight != 0).sum()) for m in weight_layers(model).values())
    total = sum(m.weight.numel() for m in weight_layers(model).values())
    assert report["density"] == pytest.approx(nz / total)


@pytest.mark.parametrize("name", ["q_then_p_iter", "p_then_q_iter"])
def test_density_decreases_with_gamma(name):
    densities = []
    for gamma in (0.25, 0.75, 1.5):
        model = tiny_model()
        schedule = make_schedule(name, gamma, bits=8)
        for _ in train(schedule, model, steps=6):
            pass
        densities.append(schedule.finalize(model)["density"])
    assert densities[0] > densities[1] > densities[2]
    assert densities[2] < 0.35  # γ = 1.5 removes most of a roughly Gaussian layer


def test_training_reduces_loss():
    model = tiny_model()
    schedule = make_schedule("q_then_p_iter", gamma=0.5, bits=6)
    losses = [loss for loss, _ in train(schedule, model, steps=24, lr=0.02)]
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4


class Recorder:
    """Records the weight each forward pass of a layer sees."""

    def __init__(self, module):
        self.seen = []
        module.register_forward_pre_hook(
            lambda mod, inp: self.seen.append(mod.weight.detach().clone())
        )


def one_step(schedule, model, epoch=0, n_epochs=1):
    x, y = toy_data()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: the forward copies are all we see
    schedule.step(model, opt, nn.CrossEntropyLoss(), x[:16], y[:16], epoch, n_epochs)


def test_q_then_p_quantizes_then_prunes_with_two_passes():
    model = tiny_model()
    layer = model[2]
    w0 = layer.weight.detach().clone()
    rec = Recorder(layer)
    schedule = make_schedule("q_then_p_iter", gamma=1.0, bits=4)
    one_step(schedule, model)
    assert len(rec.seen) == 2
    q, grid = quantize_uniform(w0, 4)
    assert torch.equal(rec.seen[0], q)  # pass 1: quantized, not yet pruned
    beta = gamma_sigma(w0, 1.0)
    assert torch.equal(rec.seen[1], q * (q.abs() >= beta))  # pass 2: the quantized copy pruned
    assert grid.contains(rec.seen[1])
    # the latent weights stay float (straight-through), only pruned entries are zeroed
    assert torch.equal(layer.weight, w0 * (q.abs() >= beta))


def test_p_then_q_iter_prunes_then_quantizes_in_one_pass():
    model = tiny_model()
    layer = model[2]
    w0 = layer.weight.detach().clone()
    rec = Recorder(layer)
    one_step(make_schedule("p_then_q_iter", gamma=1.0, bits=4), model)
    assert len(rec.seen) == 1
    beta = gamma_sigma(w0, 1.0)
    expected, grid = quantize_offset(w0 * (w0.abs() >= beta), 4, beta)
    assert torch.allclose(rec.seen[0], expected)
    assert grid.offset == pytest.approx(beta)
    # Q->P on the same weights and β gives other values: the order matters
    q = quantize_uniform(w0, 4)[0]
    assert not torch.allclose(rec.seen[0], q * (q.abs() >= beta))


def test_p_then_q_epochs_float_in_first_half_quantized_in_second():
    assert [PThenQEpochs.phase(e, 4) for e in range(4)] == ["prune"] * 2 + ["quantize"] * 2
    assert [PThenQEpochs.phase(e, 5) for e in range(5)] == ["prune"] * 2 + ["quantize"] * 3
    model = tiny_model()
    layer = model[2]
    rec = Recorder(layer)
    schedule = make_schedule("p_then_q_epochs", gamma=1.0, bits=3)
    one_step(schedule, model, epoch=0, n_epochs=4)
    one_step(schedule, model, epoch=0, n_epochs=4)  # not the first mini-batch: no new action
    seen = rec.seen[0]
    assert (seen == 0).any()  # pruned ...
    assert torch.unique(seen[seen != 0]).numel() > 2**3  # ... but still float (many values)
    assert not quantize_uniform(seen, 3)[1].contains(seen)
    one_step(schedule, model, epoch=2, n_epochs=4)  # second half: quantized, masks kept
    seen2 = rec.seen[-1]
    assert quantize_uniform(seen2, 3)[1].contains(seen2)
    assert torch.all(seen2[seen == 0] == 0)


def test_p_then_q_epochs_trains_float_weights_between_actions():
    model = tiny_model()
    schedule = make_schedule("p_then_q_epochs", gamma=0.5, bits=3)
    list(train(schedule, model, steps=6, epoch_of=lambda i: 2 + i // 3, n_epochs=4))
    w = model[2].weight
    assert torch.unique(w[w != 0]).numel() > 2**3  # SGD moved the weights off the grid again
    schedule.finalize(model)
    assert schedule.grids["2"].contains(model[2].weight)


def test_epochs_finalize_prunes_if_no_prune_epoch_ran():
    model = tiny_model()
    schedule = make_schedule("p_then_q_epochs", gamma=1.0, bits=4)
    one_step(schedule, model, epoch=0, n_epochs=1)  # n_epochs = 1: quantize phase only
    assert schedule.density() == 1.0
    assert schedule.finalize(model)["density"] < 0.5


def test_layer_selection_and_sweepnet():
    model = SweepNet(filters=8)
    names = ["sweepnet_second_conv", "sweepnet_second_dense"]
    schedule = make_schedule("q_then_p_iter", gamma=1.0, bits=4, layers=names)
    untouched = model.sweepnet_first_conv.weight.detach().clone()
    x = torch.rand(8, 1, 8, 8)
    y = torch.randint(0, 2, (8,), generator=torch.Generator().manual_seed(1))
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    schedule.step(model, opt, nn.CrossEntropyLoss(), x, y, 0, 1)
    schedule.finalize(model)
    assert set(schedule.masks) == set(names)
    assert torch.equal(model.sweepnet_first_conv.weight, untouched)
    for n in names:
        w = dict(model.named_modules())[n].weight
        assert schedule.grids[n].contains(w) and (w == 0).any()


def test_state_dict_round_trip():
    model = tiny_model()
    schedule = make_schedule("p_then_q_iter", gamma=1.0, bits=4)
    one_step(schedule, model)
    other = make_schedule("p_then_q_iter", gamma=1.0, bits=4)
    other.load_state_dict(schedule.state_dict())
    assert all(torch.equal(other.masks[n], schedule.masks[n]) for n in schedule.masks)


def test_bad_configuration():
    with pytest.raises(ConfigError):
        make_schedule("prune_everything", 1.0, 8)
    with pytest.raises(ConfigError):
        make_schedule("q_then_p_iter", -1.0, 8)
    with pytest.raises(ConfigError):
        make_schedule("q_then_p_iter", 1.0, 1)
    with pytest.raises(ConfigError):
        make_schedule("q_then_p_iter", 1.0, 8, layers=["nope"]).layers(tiny_model())
    assert isinstance(Grid(1.0, 0.0, 1, 3).as_dict(), dict)
