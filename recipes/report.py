"""Results tables and plots from run directories.

A run directory's `summary.json` is the unit; runs are grouped by
regularization x optimizer and reported as mean ± sample standard deviation
over seeds (markdown and CSV), with overlaid test-accuracy and dynamics plots.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections import defaultdict
from pathlib import Path

from keras_wrs.recipes import instruments, plotting, rundir

__all__ = [
    "find_runs",
    "load_summaries",
    "aggregate",
    "markdown_table",
    "write_csv",
    "write_report",
]

_ORDER = {"none": 0, "wd": 1, "l2": 2, "wrs": 3}


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
    """`[(run_dir, summary dict)]` for each run directory."""
    return [(Path(d), rundir.read_json(Path(d) / rundir.FILES["summary"]))
            for d in run_dirs]


def _mean_std(values):
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return None, None
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.fmean(values), std


def _group_key(summary):
    return (summary["regularization"], summary["optimizer"])


def aggregate(summaries):
    """One row per regularization x optimizer.

    Args:
        summaries: `summary.json` dicts.

    Returns:
        Dicts with `regularization`, `optimizer`, `runs`, `seeds`, and
        `(mean, std)` pairs for `test_accuracy`, `noise_ratio`,
        `wall_seconds` and `images_per_second`, sorted none, wd, l2, wrs.
    """
    groups = defaultdict(list)
    for summary in summaries:
        groups[_group_key(summary)].append(summary)
    rows = []
    for (reg, opt), runs in groups.items():
        row = {"regularization": reg, "optimizer": opt, "runs": len(runs),
               "seeds": sorted(r["seed"] for r in runs),
               "synthetic": any(r.get("synthetic") for r in runs)}
        for key in ("test_accuracy", "noise_ratio", "wall_seconds",
                    "images_per_second"):
            row[key] = _mean_std([r.get(key) for r in runs])
        rows.append(row)
    return sorted(rows, key=lambda r: (r["optimizer"], _ORDER.get(r["regularization"], 9)))


def _fmt(pair, scale=1.0, digits=2, suffix=""):
    mean, std = pair
    if mean is None:
        return "n/a"
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}{suffix}"


def markdown_table(rows):
    """The rows as a markdown table (accuracy in %, mean ± std over seeds)."""
    lines = ["| optimizer | regularization | runs | test accuracy (%) | "
             "final noise ratio | time per run (s) | images/s |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['optimizer']} | {r['regularization']} | {r['runs']} | "
            f"{_fmt(r['test_accuracy'], 100)} | {_fmt(r['noise_ratio'], 1, 3)} | "
            f"{_fmt(r['wall_seconds'], 1, 1)} | {_fmt(r['images_per_second'], 1, 0)} |")
    if any(r["synthetic"] for r in rows):
        lines.append("\nData: synthetic (procedurally drawn shapes), not a benchmark.")
    return "\n".join(lines)


def write_csv(rows, path):
    """The rows as CSV, one column per mean and per std."""
    keys = ("test_accuracy", "noise_ratio", "wall_seconds", "images_per_second")
    with Path(path).open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["optimizer", "regularization", "runs", "seeds"]
                        + [f"{k}_{s}" for k in keys for s in ("mean", "std")])
        for r in rows:
            values = [v for k in keys for v in r[k]]
            writer.writerow([r["optimizer"], r["regularization"], r["runs"],
                             " ".join(map(str, r["seeds"]))]
                            + ["" if v is None else f"{v:.6g}" for v in values])
    return path


def _history_groups(runs):
    groups = defaultdict(list)
    for run_dir, summary in runs:
        label = f"{summary['regularization']}-{summary['optimizer']}"
        groups[label].append(run_dir / rundir.FILES["history"])
    return groups


def write_report(paths, out_dir):
    """Tables and plots of every run under `paths`, written to `out_dir`.

    Writes `results.md`, `results.csv`, `accuracy.png` (test accuracy per
    epoch, mean and min-max band over seeds) and the dynamics figures of
    `keras_wrs.plots` with the first seed of each group overlaid.

    Returns:
        The markdown table (also printed by the CLI).

    Raises:
        FileNotFoundError: no run directory under `paths`.
    """
    runs = load_summaries(find_runs(paths))
    if not runs:
        raise FileNotFoundError(
            f"No run directory (with summary.json) under {', '.join(map(str, paths))}.")
    out_dir = Path(out_dir)
    rundir.check_writable(out_dir)
    rows = aggregate([s for _, s in runs])
    table = markdown_table(rows)
    (out_dir / "results.md").write_text(table + "\n")
    write_csv(rows, out_dir / "results.csv")
    groups = _history_groups(runs)
    plotting.plot_comparison(groups, out_dir / "accuracy.png",
                             title="test accuracy (mean, band: min-max over seeds)")
    first = {label: str(files[0]) for label, files in groups.items()}
    instruments.write_dynamics_plots(first, out_dir)
    return table
