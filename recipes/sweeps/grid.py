"""Grids of runs: the comparison (regularization x optimizer x seeds) and sweeps over any fields.

Every cell is one `train` run in its own directory under the grid's, so a grid
resumes cell by cell (`--resume`) and `keras-wrs report OUT` rebuilds its
tables and plots.

* A comparison (`Grid`, `run_grid`) trains every regularization x optimizer
  x seed into `OUT/<regularization>-<optimizer>-s<seed>`: how the project
  reproduces the paper's WD vs WRS comparisons. A method that exists for
  some optimizers only (`adamh`: Adam) skips the others (`skipped_pairs`).
* A sweep (`run_sweep`) is a list of groups; each group is a set of axes
  `field=v1,v2,...` whose cartesian product it trains, for every seed, into
  `OUT/<field-value ...>-s<seed>`. Groups are what lets the grid differ per
  method, as a fair WD-vs-WRS comparison needs::

    keras-wrs sweep fashion_mnist_small \\
        --grid "regularization=wrs optimizer=sgdm lr=0.03,0.1,0.3,1" \\
        --grid "regularization=wd optimizer=sgdm lr=0.03,0.1,0.3 weight_decay=5e-5,5e-4,5e-3" \\
        --seeds 0,1 --out runs/sweep
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
from pathlib import Path

from keras_wrs.recipes.config import Config, override, to_dict, unknown_name, validate

__all__ = [
    "Grid",
    "grid_configs",
    "skipped_pairs",
    "run_grid",
    "compare_cell_name",
    "parse_group",
    "sweep_configs",
    "sweep_cell_name",
    "run_cells",
    "run_sweep",
]


@dataclasses.dataclass(frozen=True)
class Grid:
    """The axes of a comparison."""

    regularizations: tuple = ("none", "wd", "wrs")
    optimizers: tuple = ("sgdm", "adam")
    seeds: tuple = (0, 1, 2)


def compare_cell_name(config):
    """Directory name of one comparison cell: `<regularization>-<optimizer>-s<seed>`."""
    return f"{config.regularization}-{config.optimizer}-s{config.seed}"


def grid_configs(base, grid):
    """Every cell's config, each validated (so a bad axis fails before any run).

    Args:
        base: the recipe's `Config`; its `lr` and `weight_decay` apply to
            every optimizer of the grid (leave them None for per-optimizer
            defaults).
        grid: a `Grid`.

    Returns:
        A list of `Config`, optimizer-major.
    """
    if not (grid.regularizations and grid.optimizers and grid.seeds):
        raise ValueError("A comparison needs at least one regularization, optimizer and seed.")
    skipped = set(skipped_pairs(grid))
    configs = []
    for opt, reg, seed in itertools.product(grid.optimizers, grid.regularizations, grid.seeds):
        if (reg, opt) not in skipped:
            config = dataclasses.replace(base, optimizer=opt, regularization=reg, seed=seed)
            configs.append(validate(config))
    names = [compare_cell_name(c) for c in configs]
    if len(set(names)) != len(names):
        raise ValueError(
            "The grid repeats a cell: each regularization, optimizer and seed must appear once."
        )
    return configs


def skipped_pairs(grid):
    """The `(regularization, optimizer)` pairs of `grid` that a comparison leaves out.

    A method that exists for some optimizers only (`adamh` for Adam, `sgdp`
    and `cwd` for SGD and Adam/AdamW) skips the others, as long as it runs
    with one optimizer of the grid and every optimizer runs one method.

    Raises:
        ValueError: a regularization or an optimizer of the grid would have
            no cell (`check_method`'s message for its first pair).
    """
    from keras_wrs.recipes.training.optim import OPTIMIZERS, check_method, method_exists

    pairs = [
        (reg, opt)
        for opt in grid.optimizers
        for reg in grid.regularizations
        if opt in OPTIMIZERS  # unknown names: `validate`'s message
    ]
    skipped = [(reg, opt) for reg, opt in pairs if not method_exists(reg, opt)]
    for reg, opt in skipped:
        alone = all((reg, o) in skipped for o in grid.optimizers if o in OPTIMIZERS)
        if alone or all((r, opt) in skipped for r in grid.regularizations):
            check_method(reg, opt)
    return skipped


def run_grid(base, grid, out_dir, **kwargs):
    """Train every cell of `grid` and write the results table.

    Args:
        base: the recipe's `Config`.
        grid: a `Grid`.
        out_dir: the comparison directory (never reused without `resume` or
            `overwrite`).
        **kwargs: `run_cells`'s (`resume`, `overwrite`, `verbose`, `recipe`,
            `echo`, `max_runs`, ...).

    Returns:
        The markdown table (also in `out_dir/results.md`).
    """
    from keras_wrs.recipes.sweeps import report

    cells = [(compare_cell_name(c), c) for c in grid_configs(base, grid)]
    run_cells(cells, out_dir, **kwargs)
    return report.write_report([out_dir], out_dir)


def parse_group(text):
    """`"field=v1,v2 field2=v3"` as `[(field, [text values])]`, fields checked.

    List-valued fields take JSON lists, which may hold commas:
    `step_epochs=[3,5]` is one value; separate several with `;`
    (`step_epochs=[3,5];[4,6]`).
    """
    fields = {f.name for f in dataclasses.fields(Config)}
    axes = []
    for item in text.split():
        key, sep, values = item.partition("=")
        key = key.replace("-", "_")
        if not sep or not values:
            raise ValueError(
                f"A sweep axis is FIELD=V1,V2,... Received: {item!r} in --grid {text!r}"
            )
        if key.partition(".")[0] not in fields:
            raise ValueError(unknown_name("config field", key, fields))
        if key in (k for k, _ in axes):
            raise ValueError(f"--grid {text!r} names {key!r} twice.")
        split = values.split(";") if values.startswith(("[", "{")) else values.split(",")
        axes.append((key, [v for v in split if v]))
    if not axes:
        raise ValueError("An empty --grid: give at least one FIELD=V1,V2,...")
    return axes


def _slug(value):
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", str(value)).strip("_") or "x"


def sweep_cell_name(assignments, seed):
    """The directory name of one sweep cell: its group's `field-value` pairs and seed."""
    parts = [f"{_slug(k)}-{_slug(v)}" for k, v in assignments]
    return "_".join(parts + [f"s{seed}"])


def sweep_configs(base, groups, seeds):
    """Every cell of the sweep as `(name, Config)`, each validated first.

    Args:
        base: the recipe's `Config`.
        groups: texts as `parse_group` takes them.
        seeds: the seeds every point runs with.

    Returns:
        A list of `(name, Config)`, group by group.

    Raises:
        ValueError: a bad axis or value (before any run), or two cells that
            would be the same run.
    """
    if not seeds:
        raise ValueError("A sweep needs at least one seed.")
    cells, seen = [], {}
    for text in groups:
        axes = parse_group(text)
        keys = [k for k, _ in axes]
        for values in itertools.product(*(v for _, v in axes)):
            assignments = list(zip(keys, values, strict=True))
            for seed in seeds:
                config = override(base, [f"{k}={v}" for k, v in assignments] + [f"seed={seed}"])
                validate(config)
                name = sweep_cell_name(assignments, seed)
                key = json.dumps(to_dict(config), sort_keys=True, default=str)
                if key in seen:
                    raise ValueError(
                        f"Cells {seen[key]!r} and {name!r} are the "
                        f"same run: remove the repeated grid point."
                    )
                seen[key] = name
                cells.append((name, config))
    return cells


def run_cells(cells, out_dir, **kwargs):
    """Train each `(name, config)` into `out_dir/name`, skipping finished ones.

    `keras_wrs.recipes.sweeps.runner.run_cells` (keyword arguments: `jobs`,
    `results_dir`, `resume`, `overwrite`, `verbose`, `recipe`, `echo`).

    Returns:
        The summaries, in order.
    """
    from keras_wrs.recipes.sweeps import runner

    return runner.run_cells(cells, out_dir, **kwargs)


def run_sweep(base, groups, seeds, out_dir, **kwargs):
    """Validate every cell, train them all, and write the report.

    The report covers the runs under `out_dir` and, with `results_dir`, the
    grid's cells that are only there (collected before, on another machine).

    Returns:
        The markdown report (also in `out_dir/results.md`).
    """
    from keras_wrs.recipes.runs import rundir
    from keras_wrs.recipes.sweeps import report

    cells = sweep_configs(base, groups, seeds)
    run_cells(cells, out_dir, **kwargs)
    paths = [Path(out_dir)]
    results_dir = kwargs.get("results_dir")
    if results_dir is not None:
        summary = rundir.FILES["summary"]
        paths += [
            Path(results_dir) / name
            for name, _ in cells
            if not (Path(out_dir) / name / summary).is_file()
            and (Path(results_dir) / name / summary).is_file()
        ]
    return report.write_report(paths, out_dir)
