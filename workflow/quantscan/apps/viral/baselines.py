"""A composition-only baseline for the viral classifier: k-mer frequencies and logistic regression.

Alignment-free classifiers of viral taxa work on k-mer composition, and a CNN that scores no better
than one has learned little beyond composition; one that scores worse has learned something else
(record length, for instance) or is evaluated wrongly. Next to the length-only
baseline (``dataset.length_only_baseline``) it brackets what the CNN adds.

Features: each record's frequencies of the 4^k k-mers over A, C, G, T (k-mers with any other code
are skipped), standardised with the training split's means and deviations. Model: multinomial
logistic regression with an L2 penalty and balanced class weights, fitted by full-batch L-BFGS in
float64 (deterministic: no random draws).
"""

from __future__ import annotations

import numpy as np
import torch

#: k of the k-mers: 64 features, enough to carry GC content and dinucleotide and codon-scale bias
K = 3


def kmer_frequencies(codes: np.ndarray, offsets: np.ndarray, k: int = K) -> np.ndarray:
    """``(records, 4**k)`` k-mer frequencies from concatenated base codes (0-3 = A, C, G, T;
    anything else breaks a k-mer) and record ``offsets`` (``OneHotSplit.codes`` / ``offsets``).
    A record without a complete k-mer gets a row of zeros."""
    codes = np.asarray(codes, np.int64)
    offsets = np.asarray(offsets, np.int64)
    n_rec = offsets.size - 1
    out = np.zeros((n_rec, 4**k))
    n = codes.size - k + 1
    if n_rec == 0 or n <= 0:
        return out
    rec = np.repeat(np.arange(n_rec), np.diff(offsets))[:n]
    ok = offsets[rec + 1] - np.arange(n) >= k  # the k-mer ends inside its record
    index = np.zeros(n, np.int64)
    for i in range(k):
        part = codes[i : i + n]
        ok &= part < 4
        index = index * 4 + np.minimum(part, 3)
    np.add.at(out, (rec[ok], index[ok]), 1.0)
    totals = out.sum(axis=1, keepdims=True)
    return np.divide(out, totals, out=np.zeros_like(out), where=totals > 0)


def fit_logistic(
    train_x: np.ndarray, train_labels: np.ndarray, n_classes: int, l2: float = 1e-2
) -> dict:
    """Multinomial logistic regression on standardised features (training means and
    deviations), class-balanced cross-entropy plus ``l2`` times the squared weights, full-batch
    L-BFGS in float64. Returns ``{"w", "b", "mean", "std"}`` (numpy arrays)."""
    y = torch.as_tensor(np.asarray(train_labels, np.int64))
    mean, std = train_x.mean(axis=0), train_x.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    xt = torch.as_tensor((train_x - mean) / std, dtype=torch.float64)
    counts = torch.bincount(y, minlength=n_classes).double()
    weight = torch.where(counts > 0, counts.sum() / (n_classes * counts.clamp(min=1)), 0.0)
    w = torch.zeros(xt.shape[1], n_classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [w, b], max_iter=500, tolerance_grad=1e-9, line_search_fn="strong_wolfe"
    )
    loss_fn = torch.nn.CrossEntropyLoss(weight=weight)

    def closure():
        opt.zero_grad()
        loss = loss_fn(xt @ w + b, y) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return {"w": w.detach().numpy(), "b": b.detach().numpy(), "mean": mean, "std": std}


def predict_logits(model: dict, x: np.ndarray) -> np.ndarray:
    """Logits ``(records, classes)`` of a :func:`fit_logistic` model."""
    return ((np.asarray(x) - model["mean"]) / model["std"]) @ model["w"] + model["b"]


def kmer_baseline(
    train_x: np.ndarray,
    train_labels: np.ndarray,
    test_x: np.ndarray,
    n_classes: int,
    l2: float = 1e-2,
) -> np.ndarray:
    """Predicted classes of ``test_x`` from a logistic regression fitted on ``train_x`` (k-mer
    frequencies of :func:`kmer_frequencies`); ``l2`` weighs the squared weights against the
    class-balanced mean cross-entropy."""
    model = fit_logistic(train_x, train_labels, n_classes, l2)
    return predict_logits(model, test_x).argmax(axis=1)
