import copy
import dataclasses

import numpy as np
import pytest
import torch

from quantscan import modelio
from quantscan.errors import InputFormatError
from quantscan.models import build_model
from quantscan.train import TrainConfig, fit, predict_proba, recalibrate_bn

ARCH = {"name": "sweepnet", "n_classes": 2, "filters": 4, "se_ratio": 2}


def toy_images(n, seed):
    """Class 1 images have a dense left half; class 0 images are sparse noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = (rng.random((n, 1, 8, 8)) < 0.15).astype(np.uint8)
    x[y == 1, :, :, :4] = (rng.random((int((y == 1).sum()), 1, 8, 4)) < 0.9).astype(np.uint8)
    return x, y


def train(seed, epochs=8):
    torch.manual_seed(seed)
    model = build_model(ARCH)
    x, y = toy_images(96, 0)
    xv, yv = toy_images(32, 1)
    cfg = TrainConfig(epochs=epochs, batch_size=8, learning_rate=0.01, patience=4)
    return model, fit(model, x, y, xv, yv, cfg, seed)


def test_fit_learns_a_separable_toy_task():
    model, history = train(seed=1)
    xt, yt = toy_images(64, 2)
    acc = (predict_proba(model, xt).argmax(1) == yt).mean()
    assert acc >= 0.9
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert set(history[0]) == {"epoch", "train_loss", "val_loss", "val_accuracy", "seconds"}


def test_fit_is_reproducible_for_a_seed():
    _, h1 = train(seed=3, epochs=2)
    _, h2 = train(seed=3, epochs=2)
    assert [h["val_loss"] for h in h1] == [h["val_loss"] for h in h2]


def test_best_validation_weights_are_kept():
    model, history = train(seed=4)
    xv, yv = toy_images(32, 1)
    probs = predict_proba(model, xv)
    loss = -np.log(probs[np.arange(len(yv)), yv]).mean()
    assert loss == pytest.approx(min(h["val_loss"] for h in history), rel=1e-4)


def test_fp32_model_file_round_trip(tmp_path):
    model, _ = train(seed=5, epochs=1)
    path = tmp_path / "model.pt"
    size = modelio.save_fp32(model, ARCH, path)
    assert size == path.stat().st_size > 0
    loaded, arch = modelio.load_fp32(path)
    assert arch == ARCH
    x, _ = toy_images(10, 6)
    assert np.array_equal(predict_proba(model, x), predict_proba(loaded, x))
    path.write_bytes(b"garbage")
    with pytest.raises(InputFormatError, match="model.pt"):
        modelio.load_fp32(path)


def bn_net():
    """conv -> batch norm -> dropout -> linear: batch norm statistics over known features."""
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv1d(2, 3, 3, bias=False),
        torch.nn.BatchNorm1d(3),
        torch.nn.Dropout(0.5),
        torch.nn.Flatten(),
        torch.nn.Linear(3 * 6, 2),
    )


def test_recalibrate_bn_gives_the_statistics_of_the_inputs():
    rng = np.random.default_rng(0)
    x = (rng.random((40, 2, 8)) < 0.5).astype(np.uint8)
    model = bn_net()
    bn = model[1]
    bn.running_mean.fill_(5.0)  # stale statistics, as after fast weight changes
    with torch.no_grad():
        feats = model[0](torch.from_numpy(x).float())  # (40, 3, 6)
    expected_mean = feats.mean(dim=(0, 2))
    assert recalibrate_bn(model, x, batch_size=40)
    assert torch.allclose(bn.running_mean, expected_mean, atol=1e-6)
    assert torch.allclose(bn.running_var, feats.transpose(0, 1).reshape(3, -1).var(1), atol=1e-5)
    # batches merge into the same exact statistics; the layer's momentum and the model's mode come back
    model.eval()
    assert recalibrate_bn(model, x, batch_size=8)
    assert torch.allclose(bn.running_mean, expected_mean, atol=1e-5)
    assert torch.allclose(bn.running_var, feats.transpose(0, 1).reshape(3, -1).var(1), atol=1e-5)
    assert bn.momentum == 0.1 and not model.training and not model[2].training
    model.train()
    recalibrate_bn(model, x)
    assert model.training and model[2].training
    assert not recalibrate_bn(torch.nn.Linear(3, 2), x)  # no batch norm: nothing to do


def two_class_inputs(n=64):
    """Inputs sorted by class (as split files are), the classes far apart in density."""
    rng = np.random.default_rng(3)
    dense = (rng.random((n // 2, 2, 8)) < 0.8).astype(np.uint8)
    sparse = (rng.random((n // 2, 2, 8)) < 0.1).astype(np.uint8)
    return np.concatenate([dense, sparse])


def test_recalibration_of_class_sorted_inputs_keeps_the_between_class_variance():
    x = two_class_inputs()
    model = bn_net()
    with torch.no_grad():
        feats = model[0](torch.from_numpy(x).float()).transpose(0, 1).reshape(3, -1)
    # batches of 8 from inputs sorted by class: each would hold one class only
    recalibrate_bn(model, x, batch_size=8)
    assert torch.allclose(model[1].running_var, feats.var(1), rtol=1e-4)
    assert torch.allclose(model[1].running_mean, feats.mean(1), atol=1e-5)


def test_recalibration_below_a_batch_norm_does_not_depend_on_the_order_of_the_inputs():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv1d(2, 3, 3),
        torch.nn.BatchNorm1d(3),
        torch.nn.ReLU(),
        torch.nn.Conv1d(3, 3, 3),
        torch.nn.BatchNorm1d(3),
    )
    x = two_class_inputs(256)
    recalibrate_bn(model, x, batch_size=8)
    sorted_var = model[4].running_var.clone()
    recalibrate_bn(model, x[np.random.default_rng(1).permutation(len(x))], batch_size=8)
    # batches normalise the first layer's output; mixed batches whichever the order of the file
    assert torch.allclose(sorted_var, model[4].running_var, rtol=0.1)


def test_fit_recalibrates_batch_norm_every_epoch():
    rng = np.random.default_rng(1)
    x = (rng.random((48, 2, 8)) < 0.5).astype(np.uint8)
    y = rng.integers(0, 2, 48)
    model = bn_net()
    cfg = TrainConfig(epochs=2, batch_size=4, learning_rate=0.01, patience=2, recalibrate_bn=True)
    fit(model, x, y, x[:8], y[:8], cfg, seed=0)
    kept = model[1].running_mean.clone()
    recalibrate_bn(model, x)  # the kept epoch's weights: the same statistics again
    assert torch.allclose(model[1].running_mean, kept, atol=1e-5)
    # without it the kept statistics are running averages that trail the weights
    plain = bn_net()
    fit(plain, x, y, x[:8], y[:8], dataclasses.replace(cfg, recalibrate_bn=False), seed=0)
    trailing = plain[1].running_mean.clone()
    recalibrate_bn(plain, x)
    assert not torch.allclose(plain[1].running_mean, trailing, atol=1e-3)


def dropout_net():  # dropout: resuming must restore torch's RNG too, not only numpy's
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(64, 16),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.5),
        torch.nn.Linear(16, 2),
    )


def fit_toy(model, checkpoint, seed=5, epochs=6):
    x, y = toy_images(96, 0)
    xv, yv = toy_images(32, 1)
    cfg = TrainConfig(epochs=epochs, batch_size=8, learning_rate=0.01, patience=epochs)
    return fit(model, x, y, xv, yv, cfg, seed, checkpoint=checkpoint)


def without_seconds(history):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def test_a_killed_fit_resumes_from_its_checkpoint_to_the_same_result(tmp_path, monkeypatch):
    import quantscan.train as train_mod

    ref_model = dropout_net()
    ref = fit_toy(ref_model, None)
    ckpt = tmp_path / "checkpoint.pt"
    evaluate, calls = train_mod._evaluate, []

    def dies_in_epoch_3(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the job is killed during epoch 3
        return evaluate(*args)

    monkeypatch.setattr(train_mod, "_evaluate", dies_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        fit_toy(dropout_net(), ckpt)
    assert ckpt.exists()
    calls[:] = [1, 1, 1]  # count on, no kill: epochs 3 to 6 evaluate once each
    model = dropout_net()
    resumed = fit_toy(model, ckpt)
    assert len(calls) == 3 + 4  # epochs 1 and 2 came from the checkpoint
    assert without_seconds(resumed) == without_seconds(ref)
    for a, b in zip(model.state_dict().values(), ref_model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    # a finished checkpoint: nothing is trained again (an evaluation would raise)
    monkeypatch.setattr(train_mod, "_evaluate", lambda *a: 1 / 0)
    again = dropout_net()
    assert without_seconds(fit_toy(again, ckpt)) == without_seconds(ref)
    for a, b in zip(again.state_dict().values(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_a_checkpoint_of_another_run_is_ignored(tmp_path, caplog):
    ckpt = tmp_path / "checkpoint.pt"
    fit_toy(dropout_net(), ckpt, seed=5, epochs=2)
    fresh = without_seconds(fit_toy(dropout_net(), None, seed=6, epochs=2))
    with caplog.at_level("WARNING"):
        assert without_seconds(fit_toy(dropout_net(), ckpt, seed=6, epochs=2)) == fresh
    assert "another model, starting weights, data set, configuration or seed" in caplog.text
    # the same run from other starting weights (a fine-tune of a retrained model): ignored too
    fit_toy(dropout_net(), ckpt, seed=6, epochs=2)
    other = dropout_net()
    with torch.no_grad():
        other[1].weight.add_(0.1)
    fresh_other = without_seconds(fit_toy(copy.deepcopy(other), None, seed=6, epochs=2))
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert without_seconds(fit_toy(other, ckpt, seed=6, epochs=2)) == fresh_other
    assert "starting weights" in caplog.text
    state = torch.load(ckpt, weights_only=True)
    del state["start_weights"]  # as written before the starting weights were recorded
    torch.save(state, ckpt)
    assert without_seconds(fit_toy(dropout_net(), ckpt, seed=6, epochs=2)) == fresh_other
    ckpt.write_bytes(b"not a checkpoint")  # e.g. torn by a full disk
    with caplog.at_level("WARNING"):
        assert without_seconds(fit_toy(dropout_net(), ckpt, seed=6, epochs=2)) == fresh
    assert "unreadable checkpoint" in caplog.text
    with pytest.raises(ValueError, match="custom step only with its step_state"):
        x, y = toy_images(8, 0)
        fit(
            dropout_net(),
            x,
            y,
            x,
            y,
            TrainConfig(epochs=1),
            0,
            step=lambda *a: 0.0,
            checkpoint=ckpt,
        )


def test_an_early_stopped_checkpoint_trains_no_further(tmp_path, monkeypatch):
    import quantscan.train as train_mod

    x, y = toy_images(96, 0)
    noise = np.random.default_rng(9).integers(0, 2, 32)  # random labels: validation loss stalls
    xv = toy_images(32, 1)[0]
    cfg = TrainConfig(epochs=30, batch_size=8, learning_rate=0.05, patience=1)
    ckpt = tmp_path / "checkpoint.pt"
    first = fit(dropout_net(), x, y, xv, noise, cfg, 1, checkpoint=ckpt)
    assert len(first) < 30  # it stopped early
    monkeypatch.setattr(train_mod, "_evaluate", lambda *a: 1 / 0)  # an epoch would raise
    again = fit(dropout_net(), x, y, xv, noise, cfg, 1, checkpoint=ckpt)
    assert without_seconds(again) == without_seconds(first)


@pytest.mark.parametrize("monitor, best", [("loss", 1), ("accuracy", 2)])
def test_the_task_says_which_epoch_is_best(monkeypatch, monitor, best):
    """Early stopping keeps the epoch with the lowest validation loss, or, for a task that
    monitors accuracy (affinities), the highest validation accuracy, even as the loss rises."""
    import quantscan.train as train_mod
    from quantscan.tasks import CLASSIFICATION

    scripted = iter([(0.5, 0.30), (0.7, 0.60), (0.8, 0.50)])  # (val loss, val accuracy) per epoch
    monkeypatch.setattr(train_mod, "_evaluate", lambda *a, **k: next(scripted))
    task = dataclasses.replace(CLASSIFICATION, monitor=monitor)
    model = torch.nn.Linear(2, 2)

    def step(model, optimizer, loss_fn, xb, yb, epoch, epochs):
        with torch.no_grad():  # the weights record the epoch that wrote them
            model.weight.fill_(epoch + 1)
        return 0.0

    x, y = np.zeros((4, 2), np.float32), np.zeros(4, np.int64)
    cfg = TrainConfig(epochs=3, batch_size=4, patience=5)
    history = fit(model, x, y, x, y, cfg, 0, step=step, task=task)
    assert len(history) == 3
    assert float(model.weight[0, 0]) == best
