"""Figures of a hyperparameter sweep, from `keras_wrs.recipes.report` rows.

* `lr_accuracy.png`: test accuracy against the learning rate (log axis), one
  line per method and setting, mean ± std over seeds; WRS sweeps are what it
  is for, other methods with several learning rates are drawn too.
* `wd_heatmap.png`: mean test accuracy over learning rate x weight decay, one
  panel per optimizer, for the weight-decay runs.
* `sensitivity.png`: per method, the spread of mean accuracy over its grid
  and the fraction of grid points within 0.5 pp of its best.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

__all__ = ["write_sweep_plots", "plot_lr_accuracy", "plot_wd_heatmap",
           "plot_sensitivity"]


def _pyplot():
    from keras_wrs.recipes.plotting import _pyplot as pyplot

    return pyplot()


def _setting(row):
    """A row's label without its learning rate and weight decay."""
    from keras_wrs.recipes.report import _cell, _shown_fields

    parts = [f"{k}={_cell(row, k)}" for k in _shown_fields([row])
             if _cell(row, k) != "-"]
    return " ".join([row["regularization"], row["optimizer"], *parts])


def plot_lr_accuracy(rows, out_path):
    """Accuracy vs learning rate per setting; None when no setting has 2+ rates."""
    lines = defaultdict(list)
    for r in rows:
        if r["learning_rate"] is not None and r["test_accuracy"][0] is not None \
                and r["regularization"] != "wd":
            lines[_setting(r)].append((r["learning_rate"], *r["test_accuracy"]))
    lines = {k: sorted(v) for k, v in lines.items() if len({p[0] for p in v}) > 1}
    if not lines:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    styles, markers = ["-", "--", ":", "-."], "osD^v<>"
    for i, (label, points) in enumerate(sorted(lines.items())):
        lr, mean, std = (np.array(c, float) for c in zip(*points))
        # Settings that coincide stay visible: a small shift along the log axis.
        shift = 1 + 0.03 * (i - (len(lines) - 1) / 2)
        ax.errorbar(lr * shift, 100 * mean, yerr=100 * std, capsize=3,
                    marker=markers[i % len(markers)], alpha=0.85,
                    linestyle=styles[i % len(styles)], label=label)
    ax.set_xscale("log")
    ticks = sorted({p[0] for points in lines.values() for p in points})
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set(xlabel="peak learning rate", ylabel="test accuracy (%)",
           title="test accuracy vs learning rate (mean ± std over seeds)")
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
        if r["regularization"] == "wd" and r["test_accuracy"][0] is not None:
            panels[_setting(r)][(r["learning_rate"], r["weight_decay"])] = \
                r["test_accuracy"][0]
    panels = {k: v for k, v in panels.items() if len(v) > 1}
    if not panels:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.8),
                             squeeze=False)
    for ax, (label, cells) in zip(axes[0], sorted(panels.items())):
        lrs = sorted({k[0] for k in cells})
        wds = sorted({k[1] for k in cells})
        grid = np.full((len(wds), len(lrs)), np.nan)
        for (lr, wd), acc in cells.items():
            grid[wds.index(wd), lrs.index(lr)] = 100 * acc
        image = ax.imshow(grid, origin="lower", cmap="viridis", aspect="auto")
        for (i, j), value in np.ndenumerate(grid):
            if np.isfinite(value):
                ax.text(j, i, f"{value:.2f}", ha="center", va="center",
                        color="w", fontsize=8)
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
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 0.5 * len(methods) + 2),
                                      sharey=True)
    names = [f"{m['method']} ({m['points']} pts)" for m in methods]
    y = np.arange(len(methods))
    left.barh(y, [100 * m["spread"] for m in methods], color="tab:red")
    left.set(yticks=y, yticklabels=names, xlabel="best - worst grid point (pp)",
             title="spread over the grid")
    right.barh(y, [100 * m["near_best"] for m in methods], color="tab:green")
    right.set(xlim=(0, 100), xlabel="% of grid points",
              title="within 0.5 pp of the method's best")
    for ax in (left, right):
        ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path


def write_sweep_plots(rows, methods, out_dir):
    """The three figures into `out_dir`; returns the files written."""
    out_dir = Path(out_dir)
    written = [plot_lr_accuracy(rows, out_dir / "lr_accuracy.png"),
               plot_wd_heatmap(rows, out_dir / "wd_heatmap.png"),
               plot_sensitivity(methods, out_dir / "sensitivity.png")]
    return [p for p in written if p is not None]
