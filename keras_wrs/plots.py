"""PNG figures of a run's training dynamics, several runs (e.g. WD vs WRS) overlaid.

Reads what the dynamics callbacks put into the epoch logs (keys
`metric/layer`, plus `sharpness` and `edge_of_stability`), from a Keras
`History`, its `.history` dict, or a `CSVLogger` file. Needs matplotlib
(`pip install 'keras-wrs[recipes]'`).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping

__all__ = ["load_history", "dynamics_figure", "plot_dynamics", "FIGURES"]

# figure name -> (metric key prefix, y label, log scale)
FIGURES = {
    "norms": ("norm_mean", "filter norm ||w|| (mean, band: min-max)", False),
    "eff_lr": ("eff_lr", "effective learning rate", True),
    "angular_update": ("angular_update", "angular update per step (rad)", True),
    "noise_ratio": ("noise_ratio_mean", "weight noise ||w_perp|| / ||w|| (mean)", False),
    "sharpness": ("sharpness", "top Hessian eigenvalue (dashed: edge of stability)", True),
}


def _float(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def load_history(run) -> dict[str, list[float]]:
    """A run's epoch logs as `{key: [value per epoch]}`.

    Args:
        run: a `keras.callbacks.History`, its `.history` dict, or the path of
            a `CSVLogger` file.

    Returns:
        The dict (the CSV's `epoch` column dropped; `NA` becomes NaN).
    """
    if hasattr(run, "history") and isinstance(run.history, Mapping):
        run = run.history
    if isinstance(run, Mapping):
        return {k: [_float(v) for v in vals] for k, vals in run.items()}
    if isinstance(run, (str, os.PathLike)):
        with open(run, newline="") as f:
            rows = list(csv.DictReader(f))
        keys = [k for k in (rows[0].keys() if rows else []) if k != "epoch"]
        return {k: [_float(r.get(k)) for r in rows] for k in keys}
    raise ValueError(
        "A run must be a keras History, a dict of epoch logs or a CSVLogger file path. "
        f"Received: {type(run).__name__}"
    )


def _runs(runs) -> dict[str, dict]:
    """`{label: history}`: a mapping whose values are not lists holds several runs."""
    if isinstance(runs, Mapping) and not all(isinstance(v, (list, tuple)) for v in runs.values()):
        return {str(k): load_history(v) for k, v in runs.items()}
    return {"run": load_history(runs)}


def _layers(runs, prefix):
    seen = {}
    for hist in runs.values():
        for k in hist:
            if k.startswith(prefix + "/"):
                seen.setdefault(k[len(prefix) + 1:], None)
    return list(seen)


def _finite(values):
    pts = [(i, v) for i, v in enumerate(values) if math.isfinite(v)]
    return [p[0] for p in pts], [p[1] for p in pts]


def _pick(layers, max_layers):
    if len(layers) <= max_layers:
        return layers
    idx = sorted({round(i * (len(layers) - 1) / (max_layers - 1)) for i in range(max_layers)})
    return [layers[i] for i in idx]


def dynamics_figure(runs, name: str, max_layers: int = 8):
    """One figure (a `matplotlib.figure.Figure`), or None if no run logged it.

    Args:
        runs: `{label: run}` (see `load_history`) or one run.
        name: a key of `FIGURES`.
        max_layers: per-layer metrics show at most this many layers (evenly
            spaced through the model), one panel each, one line per run.

    Returns:
        The figure, or None.
    """
    from matplotlib.figure import Figure

    runs = _runs(runs)
    prefix, ylabel, log = FIGURES[name]
    colors = [f"C{i}" for i in range(len(runs))]
    if name == "sharpness":
        if not any(prefix in h for h in runs.values()):
            return None
        fig = Figure(figsize=(6, 4))
        ax = fig.add_subplot()
        for color, (label, h) in zip(colors, runs.items()):
            ax.plot(*_finite(h.get("sharpness", [])), color=color, marker=".", label=f"{label}")
            ax.plot(*_finite(h.get("edge_of_stability", [])), color=color, ls="--", label=f"{label}: 2/lr")
        _decorate(ax, ylabel, log, "probe batch")
        return fig
    layers = _pick(_layers(runs, prefix), max_layers)
    if not layers:
        return None
    cols = min(4, len(layers))
    rows = -(-len(layers) // cols)
    fig = Figure(figsize=(3.6 * cols, 2.8 * rows))
    for j, layer in enumerate(layers):
        ax = fig.add_subplot(rows, cols, j + 1)
        for color, (label, h) in zip(colors, runs.items()):
            ax.plot(*_finite(h.get(f"{prefix}/{layer}", [])), color=color, marker=".", label=label)
            if name == "norms":
                lo, hi = h.get(f"norm_min/{layer}", []), h.get(f"norm_max/{layer}", [])
                if lo and hi:
                    ax.fill_between(range(len(lo)), lo, hi, color=color, alpha=0.2)
        _decorate(ax, ylabel if j % cols == 0 else "", log, layer)
    return fig


def _decorate(ax, ylabel, log, title):
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("epoch")
    if ylabel:
        ax.set_ylabel(ylabel, fontsize=8)
    if log and any(y > 0 for line in ax.get_lines() for y in line.get_ydata()):
        ax.set_yscale("log")
    ax.legend(fontsize=7)


def plot_dynamics(runs, out_dir: str, max_layers: int = 8, dpi: int = 100) -> list[str]:
    """Writes the PNG figures of `FIGURES` that the runs have data for.

    Args:
        runs: one run, or `{label: run}` to overlay several (e.g.
            `{"WD": hist_wd, "WRS": hist_wrs}`); a run is a `History`, its
            dict or a `CSVLogger` file.
        out_dir: directory, created if needed.
        max_layers: panels per figure for per-layer metrics.
        dpi: resolution.

    Returns:
        Paths of the files written (`norms.png`, `eff_lr.png`,
        `angular_update.png`, `noise_ratio.png`, `sharpness.png`).

    Example:
        >>> plot_dynamics({"WD": h_wd, "WRS": h_wrs}, "figures/")
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError(
            "plot_dynamics needs matplotlib: `pip install 'keras-wrs[recipes]'`."
        ) from None
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for name in FIGURES:
        fig = dynamics_figure(runs, name, max_layers)
        if fig is None:
            continue
        fig.tight_layout()
        path = os.path.join(out_dir, f"{name}.png")
        fig.savefig(path, dpi=dpi)
        written.append(path)
    if not written:
        raise ValueError(
            "No dynamics metric in these runs (keys like 'norm_mean/<layer>' or "
            "'sharpness'): were WeightDynamics / SpanNoise / Sharpness in the callbacks?"
        )
    return written
