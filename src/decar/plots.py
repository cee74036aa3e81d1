"""Figures people would rather look at than read: training curves and cluster statistics."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from decar._io import atomic_write_bytes


def plot_training_curves(history: list[dict[str, Any]], path: str | Path) -> None:
    """Four panels per epoch: loss, NMI with the previous epoch, cluster sizes, and time per phase."""
    if not history:
        return
    epochs = [r["epoch"] for r in history]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), constrained_layout=True)
    ax = axes[0, 0]
    ax.plot(epochs, [r["loss"] for r in history], marker="o")
    ax.set(title="pseudo-label cross-entropy", xlabel="epoch", ylabel="loss")
    ax = axes[0, 1]
    nmi_points = [(r["epoch"], r["nmi_prev"]) for r in history if r.get("nmi_prev") is not None]
    if nmi_points:
        ax.plot(*zip(*nmi_points, strict=True), marker="o", color="tab:green")
    ax.set(title="NMI(assignments t, t-1)", xlabel="epoch", ylim=(0, 1.02))
    ax = axes[1, 0]
    for key, style in (("clusters_max", "-"), ("clusters_median", "--"), ("clusters_min", ":")):
        ax.plot(epochs, [r[key] for r in history], style, label=key.removeprefix("clusters_"))
    ax.plot(epochs, [r["clusters_empty"] for r in history], color="tab:red", label="empty clusters")
    ax.set(title="cluster sizes", xlabel="epoch", ylabel="files", yscale="symlog")
    ax.legend()
    ax = axes[1, 1]
    ax.bar(epochs, [r["seconds_cluster"] for r in history], label="features + k-means")
    ax.bar(
        epochs,
        [r["seconds_train"] for r in history],
        bottom=[r["seconds_cluster"] for r in history],
        label="training",
    )
    ax.set(title="seconds per epoch", xlabel="epoch")
    ax.legend()
    save_png(fig, Path(path))


def save_png(fig: plt.Figure, path: Path) -> None:
    """Write a figure as PNG atomically and close it (plots are rewritten while runs go on)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
