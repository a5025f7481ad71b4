"""Plots of recipe runs: one run's history, and several runs overlaid."""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

__all__ = ["read_history", "plot_history", "plot_comparison"]


def _pyplot():
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError("Plots need matplotlib: "
                          "`pip install 'keras-wrs[recipes]'`") from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_history(path):
    """Columns of a `CSVLogger` file as `{name: float array}` (empty if missing)."""
    path = Path(path)
    if not path.is_file() or not path.stat().st_size:
        return {}
    with path.open() as f:
        rows = list(csv.DictReader(f))
    columns = defaultdict(list)
    for row in rows:
        for key, value in row.items():
            try:
                columns[key].append(float(value))
            except (TypeError, ValueError):
                columns[key].append(math.nan)
    return {k: np.asarray(v) for k, v in columns.items()}


def plot_history(history_csv, out_path):
    """Loss and accuracy per epoch, train and test, of one run.

    Returns:
        `out_path`, or None when the history is empty.
    """
    history = read_history(history_csv)
    if "epoch" not in history:
        return None
    plt = _pyplot()
    epochs = history["epoch"] + 1
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for prefix, label in (("", "train"), ("val_", "test")):
            if prefix + metric in history:
                ax.plot(epochs, history[prefix + metric], label=label)
        ax.set(xlabel="epoch", title=metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path


def plot_comparison(groups, out_path, metric="val_accuracy", title=None):
    """Overlay one metric of several run groups, mean and min-max band.

    Args:
        groups: `{label: [history_csv, ...]}`, e.g. one label per
            regularization x optimizer and one file per seed.
        out_path: the PNG to write.
        metric: a `history.csv` column.
        title: plot title (the metric by default).

    Returns:
        `out_path`, or None when no run has the metric.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    drawn = False
    for label, paths in sorted(groups.items()):
        curves = [read_history(p).get(metric) for p in paths]
        curves = [c for c in curves if c is not None and len(c)]
        if not curves:
            continue
        length = min(len(c) for c in curves)
        stack = np.stack([c[:length] for c in curves])
        epochs = np.arange(1, length + 1)
        line, = ax.plot(epochs, stack.mean(axis=0), label=f"{label} (n={len(curves)})")
        if len(curves) > 1:
            ax.fill_between(epochs, stack.min(axis=0), stack.max(axis=0),
                            color=line.get_color(), alpha=0.2)
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set(xlabel="epoch", ylabel=metric, title=title or metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path
