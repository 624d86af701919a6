"""Pruning variants finalize without collapse: ``fit`` restores a schedule's masks with the best
epoch's weights, variants are evaluated after finalize, and a finalize that loses more than 2
points against the weights it started from fails with a message (gamma 0.5: the collapse of the
issue, 0.536 after finalize)."""

import logging

import numpy as np
import pytest
import torch

from quantscan import train as qtrain
from quantscan.apps.viral import onehot, simulate
from quantscan.compress import methods, prune
from quantscan.errors import QuantscanError
from quantscan.models import build_model

CLASSES = ["a", "b", "c"]
ARCH = {
    "name": "viralcnn",
    "n_classes": 3,
    "length": 128,
    "dropout": 0.0,
    "channels": [32, 16, 16, 16],
    "kernels": [8, 8, 8, 8],
    "head": "global",
}


@pytest.fixture(scope="module")
def data():
    specs = [
        simulate.ClassSpec(n, 60, 120, gc=gc, n_lineages=2, signature=0.5)
        for n, gc in zip(CLASSES, (0.35, 0.5, 0.65), strict=True)
    ]
    recs = simulate.simulate_dataset(specs, 40, seed=2)
    y = np.array([CLASSES.index(r.label) for r in recs])
    x = onehot.encode(recs, 128)
    idx = np.random.default_rng(0).permutation(len(y))
    parts = (idx[:72], idx[72:96], idx[96:])
    torch.manual_seed(0)
    model = build_model(ARCH)
    cfg = qtrain.TrainConfig(epochs=8, batch_size=8, patience=8, recalibrate_bn=True)
    qtrain.fit(model, x[parts[0]], y[parts[0]], x[parts[1]], y[parts[1]], cfg, 1)
    return model, [(x[p], y[p]) for p in parts]


@pytest.fixture
def best_epoch_first(monkeypatch):
    """Validation losses that make the first epoch the best, whatever the weights do: the case
    where a schedule's later masks met the first epoch's weights."""
    real = qtrain._evaluate
    losses = iter([0.1 + 0.1 * i for i in range(100)])

    def fake(model, loss_fn, x, y, batch_size, *task):
        _, acc = real(model, loss_fn, x, y, batch_size, *task)
        return next(losses), acc

    monkeypatch.setattr(qtrain, "_evaluate", fake)


def test_fit_restores_the_schedule_masks_of_the_best_epoch(data, best_epoch_first, monkeypatch):
    model, ((xt, yt), (xv, yv), _) = data
    model = build_model(ARCH)
    model.load_state_dict(data[0].state_dict())
    schedule = prune.make_schedule("q_then_p_iter", 0.5, 8)
    seen = []
    real_eval = qtrain._evaluate

    def snapshot(*args):  # after every epoch's training steps
        seen.append({n: m.clone() for n, m in schedule.masks.items()})
        return real_eval(*args)

    monkeypatch.setattr(qtrain, "_evaluate", snapshot)
    cfg = qtrain.TrainConfig(epochs=4, batch_size=8, patience=4, learning_rate=0.01)
    history = qtrain.fit(model, xt, yt, xv, yv, cfg, 3, step=schedule.step, step_state=schedule)
    assert len(history) == 4 and len(seen) == 4
    # the masks kept pruning after the first epoch ...
    assert sum(int(m.sum()) for m in seen[-1].values()) < sum(
        int(m.sum()) for m in seen[0].values()
    )
    # ... but the model holds the first epoch's weights, so it gets the first epoch's masks back
    for name, mask in schedule.masks.items():
        assert torch.equal(mask, seen[0][name]), name
    for name, layer in schedule.layers(model).items():
        assert not layer.weight[~schedule.masks[name]].any()


def test_gamma_05_finalize_keeps_the_trained_accuracy(data, best_epoch_first):
    model, (train, val, test) = data
    result = methods.run_method(
        "qp",
        {"type": "q_then_p_iter", "bits": 8, "gammas": [0.5]},
        model,
        ARCH,
        train,
        val,
        test,
        CLASSES,
        qtrain.TrainConfig(
            epochs=4, batch_size=8, patience=4, learning_rate=0.01, recalibrate_bn=True
        ),
        3,
        logging.getLogger("test"),
    )
    (v,) = result.variants
    before, after = v.info["val_accuracy_before_finalize"], v.val_accuracy
    assert after >= before - 0.02 - 1 / len(val[1]) - 1e-9
    # the variant is evaluated as deployed: its weights are on the 8-bit grid with the masks
    for name, layer in prune.weight_layers(v.model).items():
        assert getattr(layer, prune.GRID_BITS) == 8, name


def test_a_collapsing_finalize_fails_with_a_message():
    # the numbers: healthy training, 0.536 after finalize
    with pytest.raises(
        QuantscanError, match=r"variant q_then_p_iter_g0.5: finalize .* 0.5360 .* 0.9000"
    ):
        methods.check_finalize("q_then_p_iter_g0.5", 0.90, 0.536, 41)
    methods.check_finalize("g", 0.90, 0.89, 41)  # within 2 points
    methods.check_finalize("g", 0.90, 0.875, 40)  # one input of 40 (2.5 points): not a collapse
    with pytest.raises(QuantscanError):
        methods.check_finalize("g", 0.90, 0.85, 40)  # two inputs


def test_every_pruning_variant_goes_through_the_check(data, monkeypatch):
    """A finalize that destroys the weights stops the method with the check's message."""
    model, (train, val, test) = data

    def broken(self, model):
        for layer in prune.weight_layers(model).values():
            layer.weight.data.zero_()
        return {"density": 0.0, "layers": {}}

    monkeypatch.setattr(prune.PruneQuantSchedule, "finalize", broken)
    with pytest.raises(QuantscanError, match="finalize"):
        methods.run_method(
            "qp",
            {"type": "q_then_p_iter", "bits": 8, "gammas": [0.5]},
            model,
            ARCH,
            train,
            val,
            test,
            CLASSES,
            qtrain.TrainConfig(epochs=1, batch_size=8, patience=1),
            3,
        )
