"""The comparison runner: regularization x optimizer x seeds, then a table.

Every cell is one `train` run in `OUT/<regularization>-<optimizer>-s<seed>`,
so a grid is resumable cell by cell and `keras-wrs report OUT` rebuilds its
tables and plots. This is how the project reproduces the paper's WD vs WRS
comparisons.
"""

from __future__ import annotations

import dataclasses
import itertools

from keras_wrs.recipes import config as cfg
from keras_wrs.recipes import report

__all__ = ["Grid", "grid_configs", "run_grid", "cell_name"]


@dataclasses.dataclass(frozen=True)
class Grid:
    """The axes of a comparison."""

    regularizations: tuple = ("none", "wd", "wrs")
    optimizers: tuple = ("sgdm", "adam")
    seeds: tuple = (0, 1, 2)


def cell_name(config):
    """Directory name of one cell: `<regularization>-<optimizer>-s<seed>`."""
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
        raise ValueError("A comparison needs at least one regularization, "
                         "optimizer and seed.")
    configs = []
    for opt, reg, seed in itertools.product(grid.optimizers, grid.regularizations,
                                            grid.seeds):
        config = dataclasses.replace(base, optimizer=opt, regularization=reg,
                                     seed=seed)
        configs.append(cfg.validate(config))
    names = [cell_name(c) for c in configs]
    if len(set(names)) != len(names):
        raise ValueError("The grid repeats a cell: each regularization, "
                         "optimizer and seed must appear once.")
    return configs


def run_grid(base, grid, out_dir, *, resume=False, overwrite=False,
             verbose="auto", recipe=None, echo=print):
    """Train every cell of `grid` and write the results table.

    Args:
        base: the recipe's `Config`.
        grid: a `Grid`.
        out_dir: the comparison directory (never reused without `resume` or
            `overwrite`).
        resume: skip finished cells, resume an interrupted one.
        overwrite: delete `out_dir` first.
        verbose: `model.fit` verbosity.
        recipe: recipe name recorded in the summaries.
        echo: where progress lines go.

    Returns:
        The markdown table (also in `out_dir/results.md`).
    """
    from keras_wrs.recipes.sweep import run_cells

    cells = [(cell_name(c), c) for c in grid_configs(base, grid)]
    run_cells(cells, out_dir, resume=resume, overwrite=overwrite,
              verbose=verbose, recipe=recipe, echo=echo)
    return report.write_report([out_dir], out_dir)
