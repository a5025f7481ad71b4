"""Figures of recipe runs: one run's history, several runs overlaid, and sweeps.

* `plot_history`: loss and accuracy per epoch, train and test, of one run;
* `plot_comparison`: one metric of several run groups, mean and min-max band;
* `write_dynamics_plots`: the library's `plot_dynamics` figures of runs;
* the figures of a hyperparameter sweep, from `keras_wrs.recipes.sweeps.report`
  rows (`write_sweep_plots`):
  - `lr_accuracy.png`: test accuracy against the learning rate (log axis), one
    line per method and setting, mean ± std over seeds; WRS sweeps are what it
    is for, other methods with several learning rates are drawn too;
  - `wd_heatmap.png`: mean test accuracy over learning rate x weight decay, one
    panel per optimizer, for the runs that decay every variable (`wd`, `sgdp`,
    `cwd`);
  - `sensitivity.png`: per method, the spread of mean accuracy over its grid
    and the fraction of grid points within 0.5 pp of its best.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

import numpy as np

from keras_wrs.recipes.runs.rundir import read_history
from keras_wrs.recipes.training.optim import applies_weight_decay, rescales

__all__ = [
    "metric_label",
    "plot_history",
    "plot_comparison",
    "write_dynamics_plots",
    "write_sweep_plots",
    "plot_lr_accuracy",
    "plot_wd_heatmap",
    "plot_sensitivity",
]

logger = logging.getLogger("keras_wrs")


def _pyplot():
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError("Plots need matplotlib: `pip install 'keras-wrs[recipes]'`") from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


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
    from keras_wrs.dynamics import run_styles, style_axis

    history = read_history(history_csv)
    if not history:
        return None
    plt = _pyplot()
    epochs = np.arange(1, len(next(iter(history.values()))) + 1)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), layout="constrained")
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for style, prefix in zip(run_styles(2), ("", "val_"), strict=True):
            if prefix + metric in history:
                ax.plot(
                    epochs, history[prefix + metric], **style, label=metric_label(prefix + metric)
                )
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
    from keras_wrs.dynamics import run_styles, style_axis

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5), layout="constrained")
    drawn = 0
    styles = run_styles(len(groups))
    for style, (label, paths) in zip(styles, sorted(groups.items()), strict=True):
        histories = [read_history(p) for p in paths]
        curves = [np.asarray(h[metric]) for h in histories if h.get(metric)]
        if not curves:
            continue
        length = min(len(c) for c in curves)
        stack = np.stack([c[:length] for c in curves])
        epochs = np.arange(1, length + 1)
        ax.plot(epochs, stack.mean(axis=0), **style, label=f"{label} (n={len(curves)})")
        if len(curves) > 1:
            ax.fill_between(
                epochs,
                stack.min(axis=0),
                stack.max(axis=0),
                color=style["color"],
                alpha=0.2 if len(groups) <= 2 else 0.08,
                linewidth=0,
            )
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


def write_dynamics_plots(runs, out_dir):
    """`keras_wrs.dynamics.plot_dynamics` of one run or `{label: run}`.

    Returns:
        The files written; empty when the runs hold no dynamics metric (a
        plot never loses a finished run: failures are logged).
    """
    from keras_wrs.dynamics import plot_dynamics

    try:
        return plot_dynamics(runs, str(out_dir))
    except Exception as err:
        logger.warning("keras-wrs: no dynamics plots (%s: %s)", type(err).__name__, err)
        return []


def _decays_every_variable(regularization):
    """Runs whose weight decay is a knob of every variable: drawn over lr x wd."""
    return applies_weight_decay(regularization) and not rescales(regularization)


def plot_lr_accuracy(rows, out_path):
    """Accuracy vs learning rate per setting; None when no setting has 2+ rates."""
    lines = defaultdict(list)
    for r in rows:
        if (
            r["learning_rate"] is not None
            and r["test_accuracy"][0] is not None
            and not _decays_every_variable(r["regularization"])
        ):
            lines[r["setting"]].append((r["learning_rate"], *r["test_accuracy"]))
    lines = {k: sorted(v) for k, v in lines.items() if len({p[0] for p in v}) > 1}
    if not lines:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    styles, markers = ["-", "--", ":", "-."], "osD^v<>"
    for i, (label, points) in enumerate(sorted(lines.items())):
        lr, mean, std = (np.array(c, float) for c in zip(*points, strict=True))
        # Settings that coincide stay visible: a small shift along the log axis.
        shift = 1 + 0.03 * (i - (len(lines) - 1) / 2)
        ax.errorbar(
            lr * shift,
            100 * mean,
            yerr=100 * std,
            capsize=3,
            marker=markers[i % len(markers)],
            alpha=0.85,
            linestyle=styles[i % len(styles)],
            label=label,
        )
    ax.set_xscale("log")
    ticks = sorted({p[0] for points in lines.values() for p in points})
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set(
        xlabel="peak learning rate",
        ylabel="test accuracy (%)",
        title="test accuracy vs learning rate (mean ± std over seeds)",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path


def plot_wd_heatmap(rows, out_path):
    """Mean accuracy over lr x wd, one panel per WD setting; None if no grid."""
    panels = defaultdict(dict)
    for r in rows:
        if _decays_every_variable(r["regularization"]) and r["test_accuracy"][0] is not None:
            panels[r["setting"]][(r["learning_rate"], r["weight_decay"])] = r["test_accuracy"][0]
    panels = {k: v for k, v in panels.items() if len(v) > 1}
    if not panels:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.8), squeeze=False)
    for ax, (label, cells) in zip(axes[0], sorted(panels.items()), strict=True):
        lrs = sorted({k[0] for k in cells})
        wds = sorted({k[1] for k in cells})
        grid = np.full((len(wds), len(lrs)), np.nan)
        for (lr, wd), acc in cells.items():
            grid[wds.index(wd), lrs.index(lr)] = 100 * acc
        image = ax.imshow(grid, origin="lower", cmap="viridis", aspect="auto")
        for (i, j), value in np.ndenumerate(grid):
            if np.isfinite(value):
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", color="w", fontsize=8)
        ax.set_xticks(range(len(lrs)), [f"{v:g}" for v in lrs])
        ax.set_yticks(range(len(wds)), [f"{v:g}" for v in wds])
        ax.set(xlabel="learning rate", ylabel="weight decay", title=label)
        fig.colorbar(image, ax=ax, label="test accuracy (%)")
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path


def plot_sensitivity(methods, out_path):
    """Spread and near-best fraction per method (`report.sensitivity`)."""
    methods = [m for m in methods if m["points"] > 1]
    if not methods:
        return None
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 0.5 * len(methods) + 2), sharey=True)
    names = [f"{m['method']} ({m['points']} pts)" for m in methods]
    y = np.arange(len(methods))
    left.barh(y, [100 * m["spread"] for m in methods], color="tab:red")
    left.set(
        yticks=y,
        yticklabels=names,
        xlabel="best - worst grid point (pp)",
        title="spread over the grid",
    )
    right.barh(y, [100 * m["near_best"] for m in methods], color="tab:green")
    right.set(xlim=(0, 100), xlabel="% of grid points", title="within 0.5 pp of the method's best")
    for ax in (left, right):
        ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path


def write_sweep_plots(rows, methods, out_dir):
    """The three figures into `out_dir`; returns the files written."""
    out_dir = Path(out_dir)
    written = [
        plot_lr_accuracy(rows, out_dir / "lr_accuracy.png"),
        plot_wd_heatmap(rows, out_dir / "wd_heatmap.png"),
        plot_sensitivity(methods, out_dir / "sensitivity.png"),
    ]
    return [p for p in written if p is not None]
