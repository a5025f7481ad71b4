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

from keras_wrs.dynamics import logkeys

__all__ = [
    "load_history",
    "dynamics_figure",
    "plot_dynamics",
    "run_styles",
    "style_axis",
    "FIGURES",
]

# figure name -> (metric key prefix, y label, log scale)
FIGURES = {
    "norms": (logkeys.NORM_MEAN, "filter norm ||w|| (mean, band: min-max)", False),
    "eff_lr": (logkeys.EFF_LR, "effective learning rate", True),
    "angular_update": (logkeys.ANGULAR_UPDATE, "angular update per step (rad)", True),
    "noise_ratio": (
        logkeys.NOISE_RATIO_MEAN,
        "weight noise ||w_perp|| / ||w|| (mean over filters)",
        False,
    ),
    "noise_norm": (logkeys.NOISE_NORM, "||w_perp|| (solid), in-span ||w_par|| (dashed)", False),
    "sharpness": (logkeys.SHARPNESS, "top Hessian eigenvalue (dashed: edge of stability)", True),
}
_LINESTYLES = ("-", "--", "-.", ":")
_MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*")


def run_styles(n: int) -> list[dict]:
    """Line styles for `n` overlaid runs: color, line style and marker all differ.

    Identical curves stay visible: later runs draw smaller hollow markers
    of another shape over earlier ones.
    """
    return [
        dict(
            color=f"C{i % 10}",
            linestyle=_LINESTYLES[i % len(_LINESTYLES)],
            marker=_MARKERS[i % len(_MARKERS)],
            markersize=max(6 - i * 0.6, 2.5),
            markerfacecolor="none",
            linewidth=1.2,
        )
        for i in range(n)
    ]


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
            metric, kernel = logkeys.parse(k)
            if metric == prefix and kernel:
                seen.setdefault(kernel, None)
    return list(seen)


def _finite(values, offset: int = 1):
    """`(x, y)` of the finite values; row `e` (the end of epoch `e`) is at `e + offset`."""
    pts = [(i + offset, v) for i, v in enumerate(values) if math.isfinite(v)]
    return [p[0] for p in pts], [p[1] for p in pts]


def _series(hist, key):
    """A metric's points in epochs completed: `<metric>_initial` at x = e, then ends at e + 1."""
    first = _finite(hist.get(logkeys.initial(key), []), offset=0)
    rest = _finite(hist.get(key, []))
    pts = sorted(zip(first[0] + rest[0], first[1] + rest[1], strict=True))
    return [p[0] for p in pts], [p[1] for p in pts]


def _pick(layers, max_layers):
    if len(layers) <= max_layers:
        return layers
    idx = sorted({round(i * (len(layers) - 1) / (max_layers - 1)) for i in range(max_layers)})
    return [layers[i] for i in idx]


def _has_initial(runs, prefix) -> bool:
    return any(
        logkeys.parse(k)[0] == prefix + logkeys.INITIAL_SUFFIX for h in runs.values() for k in h
    )


def dynamics_figure(runs, name: str, max_layers: int = 8):
    """One figure (a `matplotlib.figure.Figure`), or None if no run logged it.

    The x axis counts epochs completed: the end of epoch `e` (0-based, as
    in Keras's logs) is at `e + 1`, a measurement before the first step
    (`<metric>_initial/<layer>`, see `SpanNoise`) at 0. Runs differ in
    color, line style and marker; one legend for the figure, below it.

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
    styles = dict(zip(runs, run_styles(len(runs)), strict=True))
    xlabel = "epoch (0: before training)" if _has_initial(runs, prefix) else "epoch"
    if name == "sharpness":
        if not any(prefix in h for h in runs.values()):
            return None
        fig = Figure(figsize=(6, 4.2), layout="constrained")
        ax = fig.add_subplot()
        for label, h in runs.items():
            st = styles[label]
            ax.plot(*_finite(h.get(logkeys.SHARPNESS, [])), **st, label=label)
            ax.plot(
                *_finite(h.get(logkeys.EDGE_OF_STABILITY, [])),
                color=st["color"],
                ls="--",
                lw=0.8,
                label=f"{label}: 2/lr",
            )
        style_axis(ax, ylabel, log, "probe batch", xlabel)
        _legend(fig, runs)
        return fig
    layers = _pick(_layers(runs, prefix), max_layers)
    if not layers:
        return None
    cols = min(4, len(layers))
    rows = -(-len(layers) // cols)
    fig = Figure(figsize=(3.6 * cols, 2.8 * rows + 0.5), layout="constrained")
    for j, layer in enumerate(layers):
        ax = fig.add_subplot(rows, cols, j + 1)
        for label, h in runs.items():
            _draw(ax, name, h, layer, styles[label], label, len(runs))
        style_axis(ax, ylabel if j % cols == 0 else "", log, layer, xlabel)
    _legend(fig, runs)
    return fig


def _draw(ax, name, h, layer, style, label, n_runs):
    prefix = FIGURES[name][0]
    if name == "noise_norm":
        plain = dict(style, linestyle="-")
        ax.plot(*_series(h, f"noise_norm/{layer}"), **plain, label=label)
        ax.plot(
            *_series(h, logkeys.key(logkeys.SPAN_NORM, layer)),
            **dict(plain, linestyle="--"),
            label=f"{label}: in span",
        )
        return
    ax.plot(*_series(h, logkeys.key(prefix, layer)), **style, label=label)
    if name == "norms":
        lo, hi = h.get(f"norm_min/{layer}", []), h.get(f"norm_max/{layer}", [])
        if lo and hi:  # thin bands: several runs stay readable
            ax.fill_between(
                range(1, len(lo) + 1),
                lo,
                hi,
                color=style["color"],
                alpha=0.2 if n_runs <= 2 else 0.08,
                linewidth=0,
            )


def _legend(fig, runs):
    """One compact legend below the panels, one entry per run (none for a single run).

    Dashed companions (edge of stability, in-span norm) are explained by
    the y label and share their run's color and marker.
    """
    if len(runs) < 2:
        return
    handles = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            if line.get_label() in runs:
                handles.setdefault(line.get_label(), line)
    fig.legend(
        list(handles.values()),
        list(handles),
        loc="outside lower center",
        ncols=min(len(handles), 6),
        fontsize=7,
        frameon=False,
    )


def style_axis(ax, ylabel, log, title, xlabel="epoch"):
    """Title, labels and a y scale that shows every point, without offset notation.

    Log scale when asked for and every value is positive; symlog when some
    are 0 or negative (a learning rate decayed to 0 stays on the plot);
    linear otherwise, with plain tick labels (no "1e-7 + 1" offset) and,
    for a flat line, limits 5% around its value, so that float rounding
    does not look like a wobble.
    """
    from matplotlib.ticker import MaxNLocator

    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel, fontsize=8)
    if ylabel:
        ax.set_ylabel(ylabel, fontsize=8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ys = [float(y) for line in ax.get_lines() for y in line.get_ydata() if math.isfinite(y)]
    positive = [y for y in ys if y > 0]
    if log and positive and len(positive) == len(ys):
        ax.set_yscale("log")
        return
    if log and positive:  # linear below the smallest positive value's decade
        ax.set_yscale("symlog", linthresh=10 ** math.floor(math.log10(min(positive))))
        return
    ax.ticklabel_format(axis="y", useOffset=False, style="plain")
    if ys:
        lo, hi = min(ys), max(ys)
        center = (lo + hi) / 2
        if hi - lo <= 1e-3 * abs(center):
            pad = 0.05 * abs(center) if center else 1.0
            ax.set_ylim(center - pad, center + pad)


def plot_dynamics(runs, out_dir: str, max_layers: int = 8, dpi: int = 100) -> list[str]:
    """Writes the PNG figures of `FIGURES` that the runs have data for.

    Needs matplotlib only (no TensorFlow, any Keras backend).

    Args:
        runs: one run, or `{label: run}` to overlay several (e.g.
            `{"WD": hist_wd, "WRS": hist_wrs}`); a run is a `History`, its
            dict or a `CSVLogger` file.
        out_dir: directory, created if needed.
        max_layers: panels per figure for per-layer metrics.
        dpi: resolution.

    Returns:
        Paths of the files written (`norms.png`, `eff_lr.png`,
        `angular_update.png`, `noise_ratio.png`, `noise_norm.png`,
        `sharpness.png`).

    Example:
        >>> plot_dynamics({"WD": h_wd, "WRS": h_wrs}, "figures/")
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError(
            "plot_dynamics needs matplotlib: `pip install 'keras-wrs[recipes]'`."
        ) from None
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(
            f"`out_dir` must be a directory (created if needed); {str(out_dir)!r} is an "
            "existing file. Pass a folder path, e.g. 'figures/'."
        )
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for name in FIGURES:
        fig = dynamics_figure(runs, name, max_layers)
        if fig is None:
            continue
        path = os.path.join(out_dir, f"{name}.png")
        fig.savefig(path, dpi=dpi)
        written.append(path)
    if not written:
        raise ValueError(
            "No dynamics metric in these runs (keys like 'norm_mean/<layer>' or "
            "'sharpness'): were WeightDynamics / SpanNoise / Sharpness in the callbacks?"
        )
    return written
