"""Figures of the compression methods (van de Wetering 2024, Figs. 2-3; Chen 2024: search and po2 comparisons).

Each function takes the method's details table (``methods.variant_table`` or the trial table) and
writes one PNG through ``quantscan.plots.save`` (atomic). Accuracies are test accuracies unless the
axis says validation.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..plots import plt, save


def _fp32_line(ax, table: pd.DataFrame, horizontal: bool = True) -> None:
    ref = table[table.variant == "fp32"]
    if len(ref):
        acc = float(ref.accuracy.iloc[0])
        line = ax.axhline if horizontal else ax.axvline
        line(acc, color="0.4", ls="--", lw=1, label=f"fp32 ({acc:.3f})")


def _primary_marker(ax, rows: pd.DataFrame, x: str, ms: float) -> None:
    """A hollow square on the primary variant's test accuracy against column ``x``."""
    primary = rows[rows.primary.astype(bool)]
    if len(primary):
        ax.plot(
            primary[x],
            primary.accuracy,
            "s",
            mfc="none",
            mec="k",
            ms=ms,
            label=f"primary ({primary.variant.iloc[0]})",
        )


def layer_sensitivity(table: pd.DataFrame, path, title: str) -> None:
    """Accuracy per layer and bit width, one layer quantized at a time (van de Wetering 2024 Fig. 2)."""
    scan = table[table.variant.ne("fp32") & table.kind.isin(["weight", "activation"])]
    bits = sorted(int(b) for b in scan.bits.unique())
    pos = {b: i for i, b in enumerate(bits)}
    fig, ax = plt.subplots(figsize=(8, 4.2))
    for i, (layer, rows) in enumerate(scan.groupby("layer", sort=False)):
        rows = rows.sort_values("bits")
        ax.plot(
            [pos[int(b)] for b in rows.bits],
            rows.accuracy,
            "o-",
            color=f"C{i % 10}",
            label=layer,
            ms=4,
        )
    _fp32_line(ax, table)
    primary = table[table.primary.astype(bool)]
    if len(primary):
        acc = float(primary.accuracy.iloc[0])
        ax.axhline(acc, color="k", ls=":", lw=1, label=f"combined ({acc:.3f})")
    ax.set_xticks(range(len(bits)), [str(b) for b in bits])
    ax.set(
        xlabel="bits of the quantized layer (others fp32)", ylabel="test accuracy", ylim=(0, 1.02)
    )
    ax.legend(fontsize=7, loc="lower right", ncol=2)
    ax.set_title(title)
    save(fig, path)


def uniform(table: pd.DataFrame, path, title: str) -> None:
    """Accuracy vs uniform bit width (van de Wetering 2024 Fig. 3), and vs model size with flat and mixed."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    rows = table[table.variant.ne("fp32")]
    series = [s for s in rows.series.unique() if s != "primary"]
    bits = sorted({int(b) for b in rows.bits.dropna()})
    pos = {b: i for i, b in enumerate(bits)}
    for i, s in enumerate(series):
        part = rows[(rows.series == s) & rows.bits.notna()].sort_values("bits")
        if len(part):
            ax1.plot([pos[int(b)] for b in part.bits], part.accuracy, "o-", color=f"C{i}", label=s)
        part = rows[rows.series == s]
        marker = "*" if s.startswith("mixed") else "o"
        ax2.plot(
            part.model_bits,
            part.accuracy,
            marker + ("-" if len(part) > 1 else ""),
            color=f"C{i}",
            label=s,
            ms=10 if marker == "*" else 5,
        )
    _primary_marker(ax2, rows, "model_bits", ms=10)
    for ax in (ax1, ax2):
        _fp32_line(ax, table)
        ax.set(ylabel="test accuracy", ylim=(0, 1.02))
        ax.legend(fontsize=7, loc="lower right")
    ax1.set_xticks(range(len(bits)), [str(b) for b in bits])
    ax1.set(xlabel="bits of every weight layer")
    ax2.set(xlabel="weight bits of the model", xscale="log")
    fig.suptitle(title)
    save(fig, path)


def rounds(table: pd.DataFrame, path, title: str) -> None:
    """Validation and test accuracy of each 1-bit round (van de Wetering 2024 sections 3.4.4-3.4.5)."""
    rows = table[table.variant.ne("fp32")].iloc[::-1]
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(rows) + 1.5))
    y = np.arange(len(rows))
    ax.barh(y + 0.2, rows.accuracy, height=0.4, label="test", color="C0")
    ax.barh(y - 0.2, rows.val_accuracy, height=0.4, label="validation", color="C1", alpha=0.7)
    labels = [v.split("_", 3)[-1] if v.startswith("one_bit_rounds") else v for v in rows.variant]
    ax.set_yticks(y, labels, fontsize=7)
    _fp32_line(ax, table, horizontal=False)
    ax.set(xlabel="accuracy", xlim=(0, 1.02))
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title)
    save(fig, path)


def search(trials: pd.DataFrame, path, title: str) -> None:
    """Score and validation accuracy over trials, and accuracy against size (Chen 2024 Figs. 3.17-18)."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(trials.trial, trials.score, "o", ms=4, label="score")
    ax1.plot(trials.trial, trials.val_accuracy, "x", ms=4, label="validation accuracy")
    ax1.plot(trials.trial, trials.score.cummax(), "-", color="C0", lw=1, label="best score")
    ax1.set(xlabel="trial", ylabel="score / accuracy")
    ax1.legend(fontsize=7)
    sc = ax2.scatter(trials.size_pct, trials.val_accuracy, c=trials.score, cmap="viridis", s=18)
    best = trials[trials.best]
    ax2.plot(best.size_pct, best.val_accuracy, "*", color="r", ms=14, label="best")
    fig.colorbar(sc, ax=ax2, label="score")
    ax2.set(xlabel="weight bits (% of fp32)", ylabel="validation accuracy", xscale="log")
    ax2.legend(fontsize=7)
    fig.suptitle(title)
    save(fig, path)


def po2_vs_auto(table: pd.DataFrame, path, title: str) -> None:
    """Test accuracy of each configuration with float ('auto') and power-of-two ('auto_po2') scales."""
    rows = table[table.variant.ne("fp32")]
    labels = list(dict.fromkeys(rows.configuration))
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(labels) + 2), 4))
    for i, alpha in enumerate(("auto", "auto_po2")):
        acc = [
            rows[(rows.configuration == c) & (rows.alpha == alpha)].accuracy.mean() for c in labels
        ]
        ax.bar(x + (i - 0.5) * 0.38, acc, width=0.38, label=alpha, color=f"C{i}")
    _fp32_line(ax, table)
    ax.set_xticks(x, labels)
    ax.set(ylabel="test accuracy", ylim=(0, 1.02))
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title)
    save(fig, path)


def layer_bits(table: pd.DataFrame, path, title: str, accuracy: float = math.nan) -> None:
    """Bits per module of one configuration (weights: kernel bits; activations: output bits)."""
    rows = table[table.name != "total"]
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(rows) + 1.5))
    y = np.arange(len(rows))[::-1]
    colors = ["C1" if t == "QActivation" else "C0" for t in rows.type]
    ax.barh(y, pd.to_numeric(rows.kernel_bits), color=colors)
    ax.set_yticks(y, rows.name, fontsize=7)
    ax.set(xlabel="bits (blue: weights, orange: activations)", xscale="log", xlim=(0.8, 40))
    ax.set_xticks([1, 2, 4, 8, 16, 32], ["1", "2", "4", "8", "16", "32"])
    ax.set_title(f"{title}\ntest accuracy {accuracy:.3f}" if math.isfinite(accuracy) else title)
    save(fig, path)


def ternary(table: pd.DataFrame, path, title: str, accuracy: float = math.nan) -> None:
    """Per weight layer: zero fraction of the deployed weights and bits (ternary / DoReFa methods),
    with the Hessian trace per weight when the layers were chosen by it (Vindas et al. section 4.3)."""
    rows = table[table.n_weights.notna()] if "n_weights" in table else table
    hessian = "trace_per_weight" in rows
    fig, axes = plt.subplots(
        1, 2 if hessian else 1, figsize=(11 if hessian else 7, 0.35 * len(rows) + 1.8)
    )
    axes = np.atleast_1d(axes)
    y = np.arange(len(rows))[::-1]
    quantized = rows.quantized.astype(bool).to_numpy()
    ax = axes[0]
    ax.barh(y, rows.sparsity, color=np.where(quantized, "C0", "0.7"))
    for yi, b, s in zip(y, rows.bits, rows.sparsity, strict=True):
        ax.text(min(float(s), 0.9) + 0.02, yi, f"{int(b)} bit", va="center", fontsize=7)
    ax.set_yticks(y, rows.layer, fontsize=7)
    ax.set(xlabel="zero weights (blue: quantized, grey: fp32)", xlim=(0, 1.15))
    if hessian:
        ax = axes[1]
        selected = rows.hessian_selected.astype(bool).to_numpy()
        traces = rows.trace_per_weight.abs().to_numpy(dtype=float)
        ax.barh(y, traces, color=np.where(selected, "C1", "0.7"))
        for yi, t in zip(y, traces, strict=True):
            if not t > 0:  # a zero trace has no bar on the log axis (e.g. a dead ReLU upstream)
                ax.annotate(
                    "0", (0, yi), xycoords=("axes fraction", "data"), va="center", fontsize=7
                )
        ax.set_yticks(y, [""] * len(y))
        ax.set(xlabel="|Hessian trace| per weight (orange: selected)", xscale="log")
    head = f"{title}\ntest accuracy {accuracy:.3f}" if math.isfinite(accuracy) else title
    fig.suptitle(head)
    save(fig, path)


def pruning(table: pd.DataFrame, path, title: str) -> None:
    """Test and validation accuracy against density, one point per gamma (Fernandes & Kung)."""
    rows = table[table.variant.ne("fp32")].sort_values("density")
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(rows.density, rows.accuracy, "o-", color="C0", label="test")
    ax.plot(rows.density, rows.val_accuracy, "x--", color="C1", label="validation")
    for d, a, g in zip(rows.density, rows.accuracy, rows.gamma, strict=True):
        ax.annotate(f"γ={g:g}", (d, a), textcoords="offset points", xytext=(3, 4), fontsize=7)
    _primary_marker(ax, rows, "density", ms=11)
    _fp32_line(ax, table)
    ax.set(xlabel="density (non-zero weights / all weights)", ylabel="accuracy", ylim=(0, 1.02))
    ax.set_xlim(0, 1.02)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title)
    save(fig, path)
