"""Plots of recipe runs: one run's history, and several runs overlaid."""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

__all__ = ["read_history", "metric_label", "plot_history", "plot_comparison"]


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


def metric_label(metric, validation_split="test"):
    """A history column in words: `val_accuracy` -> "test accuracy" (recipes validate on the test split)."""
    if metric.startswith("val_"):
        return f"{validation_split} {metric[4:]}"
    return f"train {metric}"


def plot_history(history_csv, out_path):
    """Loss and accuracy per epoch, train and test, of one run.

    Returns:
        `out_path`, or None when the history is empty.
    """
    from keras_wrs.plots import run_styles, style_axis

    history = read_history(history_csv)
    if "epoch" not in history:
        return None
    plt = _pyplot()
    epochs = history["epoch"] + 1
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), layout="constrained")
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for style, prefix in zip(run_styles(2), ("", "val_")):
            if prefix + metric in history:
                ax.plot(epochs, history[prefix + metric], **style, label=metric_label(prefix + metric))
        style_axis(ax, metric, False, f"{metric} per epoch")
        ax.legend(fontsize=8)
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path


def plot_comparison(groups, out_path, metric="val_accuracy", title=None):
    """Overlay one metric of several run groups, mean and min-max band.

    Groups differ in color, line style and marker, so identical curves stay
    visible; the legend sits below the axes.

    Args:
        groups: `{label: [history_csv, ...]}`, e.g. one label per
            regularization x optimizer and one file per seed.
        out_path: the PNG to write.
        metric: a `history.csv` column; the y label says it in words
            (`val_accuracy` is the test split's accuracy: the recipes
            validate on it).
        title: plot title (by default the y label and what the band is).

    Returns:
        `out_path`, or None when no run has the metric.
    """
    from keras_wrs.plots import run_styles, style_axis

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5), layout="constrained")
    drawn = 0
    styles = run_styles(len(groups))
    for style, (label, paths) in zip(styles, sorted(groups.items())):
        curves = [read_history(p).get(metric) for p in paths]
        curves = [c for c in curves if c is not None and len(c)]
        if not curves:
            continue
        length = min(len(c) for c in curves)
        stack = np.stack([c[:length] for c in curves])
        epochs = np.arange(1, length + 1)
        ax.plot(epochs, stack.mean(axis=0), **style, label=f"{label} (n={len(curves)})")
        if len(curves) > 1:
            ax.fill_between(epochs, stack.min(axis=0), stack.max(axis=0), color=style["color"],
                            alpha=0.2 if len(groups) <= 2 else 0.08, linewidth=0)
        drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ylabel = metric_label(metric)
    style_axis(ax, ylabel, False, title or f"{ylabel} (mean, band: min-max over seeds)")
    fig.legend(loc="outside lower center", ncols=min(drawn, 3), fontsize=8, frameon=False)
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path
