"""Results tables and plots from run directories.

A run directory's `summary.json` and `config.json` are the unit. Runs are
grouped by every config field that differs between them except the seed, so
no row ever averages different hyperparameters; each row is the mean ± sample
standard deviation over its seeds, and the table shows the fields that
differ plus the resolved learning rate and weight decay. The weight noise
ratio is reported per layer (`noise.md`); the main table shows the layer with
the highest ratio. Sweeps also get `sensitivity.md` and accuracy-vs-learning-
rate and learning-rate x weight-decay figures (`keras_wrs.recipes.sweeps.figures`).
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections import defaultdict
from pathlib import Path

from keras_wrs._files import atomic_write_text
from keras_wrs.dynamics import logkeys
from keras_wrs.recipes.config.schema import REGULARIZATIONS
from keras_wrs.recipes.runs import rundir
from keras_wrs.recipes.runs.record import RunRecord
from keras_wrs.recipes.sweeps import figures
from keras_wrs.recipes.training.optim import (
    TOOLKIT,
    applies_weight_decay,
    optimizer_class_name,
    rescales,
)

__all__ = [
    "find_runs",
    "load_summaries",
    "varying_fields",
    "aggregate",
    "markdown_table",
    "method_legend",
    "noise_table",
    "sensitivity",
    "sensitivity_table",
    "write_csv",
    "write_report",
    "report_text",
    "ZERO_NOISE_NOTE",
    "cell_text",
    "shown_fields",
]

_ORDER = {name: i for i, name in enumerate(REGULARIZATIONS)}
# Fields that never separate groups: the seed is what a row averages over;
# the others say where data and output live, not what was trained.
_NOT_GROUPING = {"seed", "data_dir", "download", "plots", "tensorboard"}
# SpanNoise's per-kernel mean and max noise ratio (its first two metrics).
_NOISE_MEAN, _NOISE_MAX = logkeys.NOISE_METRICS[:2]


def find_runs(paths):
    """Run directories (holding `summary.json`) at or below `paths`, sorted."""
    found = set()
    for path in map(Path, paths):
        if (path / rundir.FILES["summary"]).is_file():
            found.add(path)
        elif path.is_dir():
            found.update(p.parent for p in path.rglob(rundir.FILES["summary"]))
    return sorted(found)


def load_summaries(run_dirs):
    """`[(run_dir, summary dict)]` for each run directory.

    Each summary gets `_config` (the run's full config) and `_resolved`
    (learning rate, weight decay, coverage) from its `config.json`.
    """
    runs = []
    for d in map(Path, run_dirs):
        run = RunRecord.read(d)
        summary = dict(run.summary)
        summary["_resolved"] = {**run.resolved, "rescaling": run.rescaling}
        summary["_config"] = _with_defaults(run.stored.get("config", {}), summary["_resolved"])
        runs.append((d, summary))
    return runs


def _with_defaults(config, resolved):
    """`lr`/`weight_decay` of None (the optimizer's defaults) as the numbers
    used, so a run that took the default groups with one that set it."""
    config = dict(config)
    if config.get("lr") is None and resolved.get("learning_rate") is not None:
        config["lr"] = resolved["learning_rate"] / resolved.get("lr_scale", 1.0)
    if config.get("weight_decay") is None and resolved.get("weight_decay") is not None:
        config["weight_decay"] = resolved["weight_decay"]
    return config


def _mean_std(values):
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return None, None
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.fmean(values), std


def _value_key(value):
    return json.dumps(value, sort_keys=True, default=str)


def varying_fields(summaries):
    """Config fields whose values differ between the runs (seed excluded)."""
    configs = [s.get("_config") or {} for s in summaries]
    keys = sorted(set().union(*configs) - _NOT_GROUPING) if configs else []
    fixed = {"regularization", "optimizer"}
    return [k for k in keys if k not in fixed and len({_value_key(c.get(k)) for c in configs}) > 1]


def _group_key(summary, fields):
    config = summary.get("_config") or {}
    return (
        summary["regularization"],
        summary["optimizer"],
        tuple(_value_key(config.get(k)) for k in fields),
    )


def _per_kernel(summary, metric):
    """`{kernel: value}` of one `metric/kernel` family in a run's dynamics."""
    dyn = summary.get("dynamics") or {}
    found = {}
    for k, v in dyn.items():
        name, kernel = logkeys.parse(k)
        if name == metric and kernel and v is not None:
            found[kernel] = v
    return found


def _noise_layers(summary):
    """`{kernel: (last mean ratio, last max ratio)}` of one run."""
    peaks = _per_kernel(summary, _NOISE_MAX)
    return {k: (v, peaks.get(k)) for k, v in _per_kernel(summary, _NOISE_MEAN).items()}


def _noise_initial(summary):
    """`{kernel: mean ratio before the first step}` (SpanNoise logs it once)."""
    return _per_kernel(summary, _NOISE_MEAN + logkeys.INITIAL_SUFFIX)


def _noise_peak(summary):
    """The highest per-layer mean noise ratio of a run, and its layer."""
    layers = _noise_layers(summary)
    if not layers:
        return summary.get("noise_ratio"), None
    layer = max(layers, key=lambda k: layers[k][0])
    return layers[layer][0], layer


def _coverage(summary):
    cov = (summary.get("_resolved") or {}).get("rescaling") or summary.get("rescaling")
    return cov.get("param_fraction") if cov else None


def _row(runs, fields, reg, opt, values):
    config = runs[0].get("_config") or {}
    resolved = runs[0].get("_resolved") or {}
    peaks = [_noise_peak(r) for r in runs]
    row = {
        "regularization": reg,
        "optimizer": opt,
        "method": _method(reg, opt),
        "runs": len(runs),
        "seeds": sorted(r["seed"] for r in runs),
        "synthetic": any(r.get("synthetic") for r in runs),
        "fields": {k: config.get(k) for k in fields},
        "learning_rate": resolved.get("learning_rate"),
        "weight_decay": _effective_wd(config, resolved),
        "coverage": _coverage(runs[0]),
        "diverged": sum(r.get("status") == "diverged" for r in runs),
        "noise_ratio": _mean_std([p[0] for p in peaks]),
        "noise_layer": peaks[0][1],
        "noise_layers": _layer_stats(runs),
    }
    for key in ("test_accuracy", "wall_seconds", "images_per_second"):
        row[key] = _mean_std([r.get(key) for r in runs])
    row["setting"] = _setting(row)
    return row


def _method(regularization, optimizer):
    """The optimizer class a run trained with, or None for names this version does not know."""
    try:
        return optimizer_class_name(regularization, optimizer)
    except (KeyError, ValueError):
        return None


def _effective_wd(config, resolved):
    """The decoupled weight decay the optimizer applied (`l2`: its regularizer's)."""
    reg = config.get("regularization")
    if reg is None:
        return resolved.get("weight_decay")
    if reg == "l2" or applies_weight_decay(reg, config.get("wrs_other_decay", True)):
        return resolved.get("weight_decay")
    return 0.0


def _layer_stats(runs):
    """`{layer: (initial, last mean, last max)}`, each `(mean, std)` over seeds."""
    layers = defaultdict(lambda: ([], [], []))
    for run in runs:
        initial = _noise_initial(run)
        for layer, (mean, peak) in _noise_layers(run).items():
            layers[layer][0].append(initial.get(layer))
            layers[layer][1].append(mean)
            layers[layer][2].append(peak)
    return {k: tuple(_mean_std(v) for v in values) for k, values in layers.items()}


def aggregate(summaries):
    """One row per group of runs that differ only in their seed.

    Args:
        summaries: `summary.json` dicts (with `_config`/`_resolved` as
            `load_summaries` attaches them; without, runs group by
            regularization x optimizer).

    Returns:
        Dicts with `regularization`, `optimizer`, `method` (the optimizer
        class, `optimizer_class_name`), `fields` (the varying
        config fields), `learning_rate`, `weight_decay`, `coverage`, `runs`,
        `seeds`, `diverged`, `setting` (the row's label without learning
        rate and weight decay), and `(mean, std)` pairs for `test_accuracy`,
        `noise_ratio` (the layer with the highest ratio), `wall_seconds` and
        `images_per_second`; sorted by optimizer, regularization, fields.
    """
    fields = varying_fields(summaries)
    groups = defaultdict(list)
    for summary in summaries:
        groups[_group_key(summary, fields)].append(summary)
    rows = [_row(runs, fields, reg, opt, values) for (reg, opt, values), runs in groups.items()]
    return sorted(
        rows,
        key=lambda r: (r["optimizer"], _ORDER.get(r["regularization"], 9), _value_key(r["fields"])),
    )


def _fmt(pair, scale=1.0, digits=2, suffix=""):
    mean, std = pair
    if mean is None:
        return "n/a"
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}{suffix}"


def _num(value):
    return "n/a" if value is None else f"{value:g}"


def _cov(value):
    return "-" if value is None else f"{100 * value:.0f}%"


def markdown_table(rows):
    """The rows as a markdown table (accuracy in %, mean ± std over seeds).

    Columns: optimizer, regularization, each varying config field, the
    resolved learning rate and weight decay (when known), runs, test
    accuracy, the highest per-layer noise ratio (last measurement), the share
    of parameters WRS rescales (when known), time and images/s.
    """
    hyper = any(r["learning_rate"] is not None for r in rows)
    fields = shown_fields(rows, hyper)
    cover = any(r["coverage"] is not None for r in rows)
    head = ["optimizer", "regularization", *fields] + (["lr", "wd"] if hyper else [])
    head += ["runs", "test accuracy (%)", "noise ratio (top layer)"]
    head += ["WRS covers"] if cover else []
    head += ["time per run (s)", "images/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["optimizer"], r["regularization"], *(cell_text(r, k) for k in fields)]
        if hyper:
            cells += [_num(r["learning_rate"]), _num(r["weight_decay"])]
        runs = f"{r['runs']}" + (f" ({r['diverged']} diverged)" if r["diverged"] else "")
        cells += [runs, _fmt(r["test_accuracy"], 100), _fmt(r["noise_ratio"], 1, 3)]
        if cover:
            cells.append(_cov(r["coverage"]) if rescales(r["regularization"]) else "-")
        cells += [_fmt(r["wall_seconds"], 1, 1), _fmt(r["images_per_second"], 1, 0)]
        lines.append("| " + " | ".join(cells) + " |")
    if any(r["regularization"] in TOOLKIT for r in rows):
        lines.append("\n" + method_legend(rows))
    if any(r["synthetic"] for r in rows):
        lines.append("\nData: synthetic (procedurally drawn shapes), not a benchmark.")
    return "\n".join(lines)


def method_legend(rows):
    """`Classes: regularization / optimizer = the optimizer class, ...` of the rows."""
    pairs = {(r["regularization"], r["optimizer"]): r["method"] for r in rows if r["method"]}
    return (
        "Classes: "
        + "; ".join(f"{reg} / {opt} = {method}" for (reg, opt), method in pairs.items())
        + "."
    )


def shown_fields(rows, hyper=True):
    """Varying fields to show; `lr`/`weight_decay` appear as resolved columns.

    Args:
        rows: `aggregate` rows.
        hyper: whether the resolved `lr` and `wd` are shown as columns.
    """
    fields = list(rows[0]["fields"]) if rows else []
    return [k for k in fields if not (hyper and k in ("lr", "weight_decay"))]


def cell_text(row, key):
    """The text of field `key` in `row` (`-` where it does not apply)."""
    value = row["fields"].get(key)
    if key == "wrs_other_decay" and not rescales(row["regularization"]):
        return "-"  # only WRS and AdamH runs have "other" parameters
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _num(value)
    return str(value)


def _setting(row):
    """A row's label without its learning rate and weight decay."""
    parts = [f"{k}={cell_text(row, k)}" for k in shown_fields([row]) if cell_text(row, k) != "-"]
    return " ".join([row["regularization"], row["optimizer"], *parts])


def _label(row):
    parts = [row["setting"]]
    if row["learning_rate"] is not None:
        parts += [f"lr={_num(row['learning_rate'])}", f"wd={_num(row['weight_decay'])}"]
    return " ".join(parts)


def noise_table(rows):
    """Per-layer weight noise ratio (mean and max over filters), per row.

    Returns:
        A markdown table, or "" when no run measured the noise.
    """
    lines = []
    for r in rows:
        for layer, (initial, mean, peak) in sorted(r["noise_layers"].items()):
            lines.append(
                f"| {_label(r)} | {layer} | {_fmt(initial, 1, 3)} | "
                f"{_fmt(mean, 1, 3)} | {_fmt(peak, 1, 3)} |"
            )
    if not lines:
        return ""
    return "\n".join(
        [
            "| run group | layer | before training (mean over filters) | "
            "last: mean over filters | last: max over filters |",
            "|---|---|---|---|---|",
            *lines,
        ]
    )


def sensitivity(rows, within=0.005):
    """Per method (optimizer x regularization), how much the grid matters.

    Args:
        rows: `aggregate` rows.
        within: the accuracy margin (0.005 = 0.5 percentage points).

    Returns:
        `[{"method", "points", "best", "worst", "spread", "near_best"}]`:
        over the method's grid points (rows), the best and worst mean test
        accuracy, their difference, and the fraction of points whose mean is
        within `within` of the method's best.
    """
    methods = defaultdict(list)
    for r in rows:
        if r["test_accuracy"][0] is not None:
            wd = (
                ""
                if not rescales(r["regularization"])
                else (" (+wd others)" if r["fields"].get("wrs_other_decay", True) else "")
            )
            methods[f"{r['regularization']}{wd} / {r['optimizer']}"].append(r["test_accuracy"][0])
    out = []
    for method, accs in sorted(methods.items()):
        best = max(accs)
        out.append(
            {
                "method": method,
                "points": len(accs),
                "best": best,
                "worst": min(accs),
                "spread": best - min(accs),
                "near_best": sum(a >= best - within for a in accs) / len(accs),
            }
        )
    return out


def sensitivity_table(rows):
    """`sensitivity` as markdown (percentage points)."""
    lines = [
        "| method | grid points | best (%) | worst (%) | spread (pp) | "
        "points within 0.5 pp of best |",
        "|---|---|---|---|---|---|",
    ]
    for m in sensitivity(rows):
        lines.append(
            f"| {m['method']} | {m['points']} | {100 * m['best']:.2f} | "
            f"{100 * m['worst']:.2f} | {100 * m['spread']:.2f} | "
            f"{100 * m['near_best']:.0f}% |"
        )
    return "\n".join(lines)


def write_csv(rows, path):
    """The rows as CSV, one column per mean and per std."""
    keys = ("test_accuracy", "noise_ratio", "wall_seconds", "images_per_second")
    fields = list(rows[0]["fields"]) if rows else []
    with Path(path).open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            [
                "optimizer",
                "regularization",
                *fields,
                "learning_rate",
                "weight_decay",
                "coverage",
                "runs",
                "diverged",
                "seeds",
            ]
            + [f"{k}_{s}" for k in keys for s in ("mean", "std")]
        )
        for r in rows:
            values = [v for k in keys for v in r[k]]
            writer.writerow(
                [
                    r["optimizer"],
                    r["regularization"],
                    *(
                        json.dumps(v) if isinstance(v, (list, dict)) else v
                        for v in r["fields"].values()
                    ),
                    r["learning_rate"],
                    r["weight_decay"],
                    r["coverage"],
                    r["runs"],
                    r["diverged"],
                    " ".join(map(str, r["seeds"])),
                ]
                + ["" if v is None else f"{v:.6g}" for v in values]
            )
    return path


def _history_groups(runs, fields):
    groups = defaultdict(list)
    for run_dir, summary in runs:
        config = summary.get("_config") or {}
        label = " ".join(
            [f"{summary['regularization']}-{summary['optimizer']}"]
            + [f"{k}={config.get(k)}" for k in fields]
        )
        groups[label].append(run_dir / rundir.FILES["history"])
    return groups


# Shown when a measured noise ratio is zero (e.g. every layer of the digits recipe).
ZERO_NOISE_NOTE = (
    "A weight noise ratio of 0 is not a missing value: the probe images span the whole "
    "input space of that kernel (on 8x8 digits a first-layer 3x3 patch has 9 dimensions "
    "and the probe fills them all), so no part of its weights lies outside the span and "
    "there is no noise to measure. The fashion_mnist_rgb recipe has a layer where there is."
)


def _some_noise_zero(rows):
    return any(mean[0] == 0 for r in rows for (_, mean, _) in r["noise_layers"].values())


def report_text(runs):
    """The markdown of `results.md` for `[(run_dir, summary)]` (`load_summaries`)."""
    rows = aggregate([s for _, s in runs])
    text = markdown_table(rows)
    noise = noise_table(rows)
    if noise:
        text += "\n\nWeight noise ratio per layer (last measurement):\n\n" + noise
    if _some_noise_zero(rows):
        text += "\n\n" + ZERO_NOISE_NOTE
    if any(m["points"] > 1 for m in sensitivity(rows)):  # a sweep: some method has a grid
        text += "\n\nSensitivity to the grid:\n\n" + sensitivity_table(rows)
    return text, rows


def write_report(paths, out_dir=None):
    """Tables and plots of every run under `paths`, written to `out_dir`.

    Writes `results.md` (the results table, then the per-layer noise table
    and, for sweeps, the sensitivity table), `results.csv`, `accuracy.png`
    (test accuracy per epoch, mean and min-max band over seeds), the dynamics
    figures of `keras_wrs.dynamics.plot_dynamics` with the first seed of each group overlaid,
    and, for sweeps, `lr_accuracy.png`, `wd_heatmap.png` and
    `sensitivity.png`. Every run's record is checked first
    (`keras_wrs.recipes.runs.record.RunRecord`), so nothing is written for a
    damaged one.

    Args:
        paths: run directories, or directories holding them.
        out_dir: where to write; None writes nothing (the text is returned).
            A run directory is refused: a report never writes into a run.

    Returns:
        The markdown of `results.md` (also printed by the CLI).

    Raises:
        FileNotFoundError: no run directory under `paths`.
        keras_wrs.recipes.runs.record.RunRecordError: a damaged record.
        keras_wrs.recipes.runs.rundir.RunDirError: `out_dir` is a run directory.
    """
    runs = load_summaries(find_runs(paths))
    if not runs:
        raise FileNotFoundError(
            f"No run directory (with summary.json) under {', '.join(map(str, paths))}."
        )
    text, rows = report_text(runs)
    if out_dir is None:
        return text
    out_dir = Path(out_dir)
    if (out_dir / rundir.FILES["config"]).is_file():
        raise rundir.RunDirError(
            f"{str(out_dir)!r} is a run directory: a report never writes into a run. "
            f"Pass another --out (a new directory, or the grid directory above it)."
        )
    rundir.check_writable(out_dir)
    methods = sensitivity(rows)
    if any(m["points"] > 1 for m in methods):
        figures.write_sweep_plots(rows, methods, out_dir)
    atomic_write_text(out_dir / "results.md", text + "\n")
    write_csv(rows, out_dir / "results.csv")
    summaries = [s for _, s in runs]
    groups = _history_groups(runs, varying_fields(summaries))
    figures.plot_comparison(
        groups, out_dir / "accuracy.png", title="test accuracy (mean, band: min-max over seeds)"
    )
    first = {label: str(files[0]) for label, files in groups.items()}
    figures.write_dynamics_plots(first, out_dir)
    return text
