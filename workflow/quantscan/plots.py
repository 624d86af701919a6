"""Figures written by the workflow (matplotlib, Agg backend, PNG written atomically)."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .atomic import atomic_path  # noqa: E402


def save(fig, path: str | os.PathLike, dpi: int = 120) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    plt.close(fig)


def training_curves(history: list[dict], path, title: str) -> None:
    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
    ax1.plot(epochs, [h["train_loss"] for h in history], "o-", label="train")
    ax1.plot(epochs, [h["val_loss"] for h in history], "o-", label="validation")
    ax1.set(xlabel="epoch", ylabel="cross-entropy loss")
    ax1.legend()
    ax2.plot(epochs, [h["val_accuracy"] for h in history], "o-", color="C1")
    ax2.set(xlabel="epoch", ylabel="validation accuracy", ylim=(0, 1.02))
    fig.suptitle(title)
    save(fig, path)


def example_images(
    images: np.ndarray, labels: np.ndarray, class_names, path, title: str, k: int = 4
):
    """Up to ``k`` images per class, derived alleles dark (as SweepNet's 'black' PNGs)."""
    classes = [c for c in range(len(class_names)) if np.any(labels == c)]
    fig, axes = plt.subplots(
        max(len(classes), 1), k, figsize=(2.2 * k, 2.3 * max(len(classes), 1)), squeeze=False
    )
    for row, c in enumerate(classes):
        picks = np.flatnonzero(labels == c)[:k]
        for col in range(k):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            if col < len(picks):
                ax.imshow(
                    images[picks[col]], cmap="gray_r", vmin=0, vmax=1, interpolation="nearest"
                )
            if col == 0:
                ax.set_ylabel(f"{class_names[c]}\nhaplotypes")
            if row == len(classes) - 1:
                ax.set_xlabel("SNPs")
    fig.suptitle(title)
    save(fig, path)
