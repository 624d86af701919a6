"""Mini-batch training with early stopping, shared by every application and compression method.

Methods that change how a mini-batch is processed (pruning schedules, ternary scale updates) pass a
``step`` strategy; the default step is a plain forward / backward / update.

With a ``checkpoint`` path, :func:`fit` saves its whole state after every epoch and a rerun resumes
from it, ending with the weights and history an uninterrupted run gives: a training job killed by a
cluster's time limit (or a workstation's reboot) loses at most one epoch.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .atomic import atomic_path
from .augment import build_augment
from .tasks import CLASSIFICATION, Task

log = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainConfig:
    """``recalibrate_bn``: recompute batch-norm statistics after every epoch (:func:`recalibrate_bn`).
    ``augment``: random crops and reverse complements of sequence batches
    (:class:`quantscan.augment.SequenceAugment` settings; None: the inputs as they are)."""

    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 1e-3
    patience: int = 3
    weight_decay: float = 0.0
    class_weights: list[float] | None = None
    recalibrate_bn: bool = False
    augment: dict | None = None


StepFn = Callable[..., float]

#: inputs per forward pass when evaluating: larger batches of 2-D feature maps outgrow the caches
#: (a 32-filter 2-D CNN on 128 x 128 images, 1 thread: 57 images/s at 16, 25 at 64; a 1-D CNN on
#: 3,500 x 5 one-hot inputs runs alike at 4-128), and they hold less memory
EVAL_BATCH = 16


def default_step(model, optimizer, loss_fn, xb, yb, epoch: int, n_epochs: int) -> float:
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(model(xb), yb)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def to_tensor(x: np.ndarray, channels_last: bool) -> torch.Tensor:
    """uint8/float arrays (B, C, ...) -> float32 tensor; NCHW as channels-last is ~1.8x faster on CPU."""
    t = torch.from_numpy(np.ascontiguousarray(x)).float()
    if channels_last and t.ndim == 4:
        t = t.contiguous(memory_format=torch.channels_last)
    return t


@torch.no_grad()
def predict_proba(
    model: nn.Module, x: np.ndarray, batch_size: int = EVAL_BATCH, task: Task = CLASSIFICATION
) -> np.ndarray:
    """Probabilities in eval mode, by the task's activation (``task.proba``): class probabilities
    (N, n_classes) for classification (softmax over axis 1), per-voxel sigmoids of the logits
    (N, C, *spatial) for a dense binary task."""
    model.eval()
    cl = x.ndim == 4
    out = []
    for i in range(0, len(x), batch_size):
        out.append(task.proba(model(to_tensor(x[i : i + batch_size], cl))).numpy())
    if not out:
        return np.zeros((0, 0), np.float32)
    return np.concatenate(out)


@torch.no_grad()
def recalibrate_bn(model: nn.Module, x: np.ndarray, batch_size: int = 64) -> bool:
    """Replace the running statistics of every batch-norm layer by the exact mean and (unbiased)
    variance of its inputs over ``x`` under the current weights, as "precise BN" does: batch norm in
    training mode (each batch normalised by its own statistics, as in training), everything else in
    eval mode, no gradient. Returns False (nothing changed) without batch norm or inputs.

    Why: the running averages trail the weights by a few dozen mini-batches; with small batches
    whose statistics jitter (e.g. sequence windows with 15 to 100 % zero padding) the model in
    eval mode can score far below the one being trained, and early stopping then keeps the
    wrong epoch. The inputs go through in a fixed random order (not from the training RNG): split
    files are sorted by class, and batches of one class would normalise away the differences
    between classes in every layer below the last and leave each variance without its
    between-class part (a full-scale 1-D sequence CNN then scored 0.71-0.75 on validation where the
    same weights with mixed batches score 0.99-1.00).
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns or len(x) == 0:
        return False
    was_training = model.training
    model.eval()
    for m in bns:
        m.train()
    # per layer: count, mean and sum of squared deviations, merged batch by batch (Chan et al.)
    stats = {m: [0, 0.0, 0.0] for m in bns}

    def accumulate(module, inputs):
        t = inputs[0]
        dims = [0, *range(2, t.dim())]
        var, mean = torch.var_mean(t, dim=dims, correction=0)
        n_b = t.numel() // t.shape[1]
        n_a, mean_a, m2_a = stats[module]
        n = n_a + n_b
        delta = mean.double() - mean_a
        stats[module] = [
            n,
            mean_a + delta * n_b / n,
            m2_a + var.double() * n_b + delta**2 * n_a * n_b / n,
        ]

    hooks = [m.register_forward_pre_hook(accumulate) for m in bns]
    try:
        order = np.random.default_rng(0).permutation(len(x))
        cl = x.ndim == 4
        for i in range(0, len(x), batch_size):
            model(to_tensor(x[np.sort(order[i : i + batch_size])], cl).to(_device_of(model)))
    finally:
        for h in hooks:
            h.remove()
    for m in bns:
        n, mean, m2 = stats[m]
        m.running_mean.copy_(mean)
        m.running_var.copy_(m2 / max(n - 1, 1))
    model.train(was_training)
    return True


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@torch.no_grad()
def _evaluate(model, loss_fn, x, y, batch_size, task: Task = CLASSIFICATION) -> tuple[float, float]:
    model.eval()
    cl = x.ndim == 4
    device = _device_of(model)
    total, correct, n = 0.0, 0, 0
    for i in range(0, len(x), batch_size):
        xb = to_tensor(x[i : i + batch_size], cl).to(device)
        yb = torch.from_numpy(y[i : i + batch_size]).to(device)
        logits = model(xb)
        total += float(loss_fn(logits, yb)) * len(yb)
        correct += task.correct(logits, yb)
        n += len(yb)
    return total / max(n, 1), correct / max(n, 1)


def fit(
    model: nn.Module,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    cfg: TrainConfig,
    seed: int,
    step: StepFn = default_step,
    checkpoint: str | Path | None = None,
    step_state=None,
    task: Task = CLASSIFICATION,
    device: str | torch.device = "cpu",
) -> list[dict]:
    """Train in place; keep the weights of the best epoch: the lowest validation loss, or the
    highest validation accuracy for a task whose ``monitor`` is "accuracy" (without a validation
    set, the lowest training loss).

    Returns one dict per epoch (``epoch, train_loss, val_loss, val_accuracy, seconds``).
    ``checkpoint``: a file to save the training state to after every epoch and to resume from when
    it holds a run of the same model, data, configuration and seed (any other is ignored and
    overwritten); the caller deletes it once the results are saved. A custom ``step`` may keep state
    of its own (a pruning schedule's masks), so it checkpoints only with ``step_state``: an object
    whose ``state_dict()`` (tensors and plain values) and ``load_state_dict()`` hold that state.
    That state is restored with the weights of the best epoch (a schedule's masks of later
    epochs applied to the best epoch's weights removed weights that epoch relied on).
    ``task`` gives the loss (with ``cfg.class_weights``) and what counts as correct.
    ``device``: where the model trains (``quantscan.device.resolve``: cpu or a CUDA device); the
    model is returned on the CPU.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    y_train, y_val = np.asarray(y_train, np.int64), np.asarray(y_val, np.int64)
    if checkpoint is not None and step is not default_step and step_state is None:
        raise ValueError("fit(checkpoint=...) resumes a custom step only with its step_state")
    loss_fn = task.loss(cfg.class_weights)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay
    )
    augment = build_augment(cfg.augment)
    device = torch.device(device)
    model.to(device)
    if device.type != "cpu":
        loss_fn.to(device)
    cl = x_train.ndim == 4
    if cl:
        model.to(memory_format=torch.channels_last)
    best_loss, best_state, stale, history = math.inf, None, 0, []
    # a custom step's own state (a pruning schedule's masks) at the best epoch: restored with
    # the weights, or the masks of later epochs would be applied to the best epoch's weights
    best_step_state = None
    has_val = len(y_val) > 0
    first_epoch = 0
    if checkpoint is not None:
        key = _fingerprint(model, x_train, y_train, x_val, y_val, cfg, seed)
        if step_state is not None:
            key += f"+{type(step_state).__name__}"
        start_weights = weights_digest(model)
        state = _load_checkpoint(checkpoint, key, start_weights)
        if state is not None:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            rng.bit_generator.state = state["numpy_rng"]
            torch.set_rng_state(state["torch_rng"])
            best_loss, best_state, stale = state["best_loss"], state["best_state"], state["stale"]
            best_step_state = state.get("best_step_state")
            history = state["history"]
            if step_state is not None:
                step_state.load_state_dict(state["step_state"])
            # a finished run (early stop) trains no further
            first_epoch = cfg.epochs if state["done"] else len(history)
            log.info("resuming from %s after epoch %d", checkpoint, len(history))
    for epoch in range(first_epoch, cfg.epochs):
        start = time.perf_counter()
        model.train()
        order = rng.permutation(len(x_train))
        losses = []
        for i in range(0, len(order), cfg.batch_size):
            idx = np.sort(order[i : i + cfg.batch_size])
            xb = x_train[idx] if augment is None else augment(x_train[idx], rng)
            xb = to_tensor(xb, cl).to(device, non_blocking=True)
            yb = torch.from_numpy(y_train[idx]).to(device, non_blocking=True)
            losses.append(step(model, optimizer, loss_fn, xb, yb, epoch, cfg.epochs) * len(idx))
        train_loss = sum(losses) / max(len(order), 1)  # running mean over the epoch
        if cfg.recalibrate_bn:
            recalibrate_bn(model, x_train)
        # without a validation set, early stopping watches the training loss
        val_loss, val_acc = (
            _evaluate(model, loss_fn, x_val, y_val, EVAL_BATCH, task)
            if has_val
            else (train_loss, math.nan)
        )
        row = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "val_accuracy": val_acc,
            "seconds": time.perf_counter() - start,
        }
        history.append(row)
        log.info(
            "epoch %d/%d: train loss %.4f, val loss %.4f, val accuracy %.4f (%.1f s)",
            epoch + 1,
            cfg.epochs,
            row["train_loss"],
            val_loss,
            val_acc,
            row["seconds"],
        )
        # best_loss: the lowest value of what the task monitors (minus the accuracy)
        score = -val_acc if has_val and getattr(task, "monitor", "loss") == "accuracy" else val_loss
        done = not math.isfinite(val_loss)
        if done:
            log.warning("validation loss is not finite; stopping")
        elif score < best_loss - 1e-6:
            best_loss, best_state, stale = score, copy.deepcopy(model.state_dict()), 0
            if step_state is not None:
                best_step_state = copy.deepcopy(step_state.state_dict())
        else:
            stale += 1
            done = stale >= cfg.patience
            if done:
                log.info("early stopping: no improvement for %d epochs", cfg.patience)
        if checkpoint is not None:
            state = {
                "key": key,
                "start_weights": start_weights,
                "done": bool(done),
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "numpy_rng": rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(),
                "best_loss": best_loss,
                "best_state": best_state,
                "stale": stale,
                "history": history,
                "step_state": None if step_state is None else step_state.state_dict(),
                "best_step_state": best_step_state,
            }
            with atomic_path(checkpoint) as tmp:
                torch.save(state, tmp)
        if done:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
        if best_step_state is not None:
            step_state.load_state_dict(best_step_state)
    model.to(device="cpu", memory_format=torch.contiguous_format)
    return history


def config_key(cfg: TrainConfig) -> dict:
    """``cfg`` as a dict for checkpoint keys; without augmentation (None, empty, or the schema's
    all-zero defaults), as before ``augment`` existed, so checkpoints of runs started then still
    resume."""
    d = dataclasses.asdict(cfg)
    if build_augment(d["augment"]) is None:
        del d["augment"]
    return d


def _fingerprint(model, x_train, y_train, x_val, y_val, cfg: TrainConfig, seed: int) -> str:
    """What a checkpoint must match to be resumed: the configuration, seed, parameter shapes and
    the data (a hash of the arrays: ~0.1 s for 10,000 images of 128 x 128)."""
    h = hashlib.blake2b(digest_size=16)
    shapes = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    h.update(json.dumps([config_key(cfg), int(seed), shapes]).encode())
    for a in (x_train, y_train, x_val, y_val):
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.data)
    return h.hexdigest()


def weights_digest(model: nn.Module) -> str:
    """A hash of a model's state (e.g. the weights a fine-tune starts from)."""
    h = hashlib.blake2b(digest_size=8)
    for t in model.state_dict().values():
        h.update(t.detach().cpu().numpy().tobytes())  # C order whatever the strides
    return h.hexdigest()


def _load_checkpoint(path: str | Path, key: str, start_weights: str) -> dict | None:
    path = Path(path)
    if not path.exists():
        return None
    try:
        # weights_only: tensors, dicts and plain values only, no code runs on load
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a torn or foreign file: start again
        log.warning("ignoring unreadable checkpoint %s (%s)", path, err)
        return None
    # checkpoints written before start_weights was recorded (2026-12) are matched by key alone
    if (
        not isinstance(state, dict)
        or state.get("key") != key
        or state.get("start_weights", start_weights) != start_weights
    ):
        log.warning(
            "ignoring checkpoint %s: another model, starting weights, data set, configuration "
            "or seed",
            path,
        )
        return None
    return state
