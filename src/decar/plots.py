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
    """Four panels per epoch: loss against its chance level, what the assignments encode (stability, balance as
    entropy / ln K, and the shortcuts), cluster sizes, and time per phase."""
    if not history:
        return
    epochs = [r["epoch"] for r in history]
    fig, axes = plt.subplots(2, 2, figsize=(11, 8), constrained_layout=True)
    ax = axes[0, 0]
    ax.plot(epochs, [r["loss"] for r in history], marker="o", label="loss")
    chance = [r.get("loss_chance") for r in history]
    if all(value is not None for value in chance):
        ax.plot(epochs, chance, ":", color="grey", label="chance (ln K)")
    ax.set(title="pseudo-label cross-entropy", xlabel="epoch", ylabel="loss")
    ax.legend()
    ax = axes[0, 1]
    for key, label, color in (
        ("nmi_prev", "NMI with previous epoch", "tab:green"),
        ("assignment_entropy", "entropy of cluster sizes / ln K", "tab:blue"),
        ("ami_duration", "AMI with clip duration (shortcut)", "tab:red"),
        ("ami_level", "AMI with clip level (shortcut)", "tab:orange"),
        ("ami_gain", "AMI with a random gain (by intervention)", "tab:purple"),
        ("ami_cut", "AMI with a random cut length (by intervention)", "tab:brown"),
    ):
        points = [(r["epoch"], r[key]) for r in history if r.get(key) is not None]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", color=color, label=label)
    ax.axhline(0.0, color="grey", linewidth=0.5)
    # below 0: an AMI under chance, which the intervention checks often read; below the axes: the legend, which
    # would otherwise hide the lines it names
    ax.set(title="what the assignments encode", xlabel="epoch", ylim=(-0.1, 1.05))
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2)
    ax = axes[1, 0]
    for key, style in (("clusters_max", "-"), ("clusters_median", "--"), ("clusters_min", ":")):
        points = [(r["epoch"], r[key]) for r in history if r.get(key) is not None]
        if points:
            ax.plot(*zip(*points, strict=True), style, label=key.removeprefix("clusters_"))
    empty = [(r["epoch"], r["clusters_empty"]) for r in history if r.get("clusters_empty") is not None]
    if empty:
        ax.plot(*zip(*empty, strict=True), color="tab:red", label="empty clusters")
    ax.set(title="cluster sizes", xlabel="epoch", ylabel="files", yscale="symlog")
    ax.legend()
    ax = axes[1, 1]
    clustering = [r["seconds_cluster"] + r.get("seconds_extra_pass", 0.0) for r in history]
    ax.bar(epochs, clustering, label="clustering + extra pass")
    ax.bar(epochs, [r["seconds_train"] for r in history], bottom=clustering, label="training")
    ax.set(title="seconds per epoch", xlabel="epoch")
    ax.legend()
    save_png(fig, Path(path))


def save_png(fig: plt.Figure, path: Path) -> None:
    """Write a figure as PNG atomically and close it (plots are rewritten while runs go on)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
