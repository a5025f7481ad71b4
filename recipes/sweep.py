"""The sweep runner: grids over any config fields, given per group.

A sweep is a list of groups; each group is a set of axes `field=v1,v2,...`
whose cartesian product it trains, for every seed. Groups are what lets the
grid differ per method, as a fair WD-vs-WRS comparison needs:

    keras-wrs sweep fashion_mnist_small \\
        --grid "regularization=wrs optimizer=sgdm lr=0.03,0.1,0.3,1" \\
        --grid "regularization=wd optimizer=sgdm lr=0.03,0.1,0.3 weight_decay=5e-5,5e-4,5e-3" \\
        --seeds 0,1 --out runs/sweep

Every cell is one `train` run in `OUT/<field-value ...>-s<seed>`, named by the
fields its group sweeps, so a sweep resumes cell by cell (`--resume`), and
`keras-wrs report OUT` groups the runs by every field that differs.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
from pathlib import Path

from keras_wrs.recipes import config as cfg
from keras_wrs.recipes import rundir

__all__ = ["parse_group", "sweep_configs", "cell_name", "run_cells", "run_sweep"]


def parse_group(text):
    """`"field=v1,v2 field2=v3"` as `[(field, [text values])]`, fields checked.

    List-valued fields take JSON lists, which may hold commas:
    `step_epochs=[3,5]` is one value; separate several with `;`
    (`step_epochs=[3,5];[4,6]`).
    """
    fields = {f.name for f in dataclasses.fields(cfg.Config)}
    axes = []
    for item in text.split():
        key, sep, values = item.partition("=")
        key = key.replace("-", "_")
        if not sep or not values:
            raise ValueError(f"A sweep axis is FIELD=V1,V2,... Received: {item!r} "
                             f"in --grid {text!r}")
        if key.partition(".")[0] not in fields:
            raise ValueError(cfg._unknown("config field", key, fields))
        if key in (k for k, _ in axes):
            raise ValueError(f"--grid {text!r} names {key!r} twice.")
        split = values.split(";") if values.startswith(("[", "{")) else values.split(",")
        axes.append((key, [v for v in split if v]))
    if not axes:
        raise ValueError("An empty --grid: give at least one FIELD=V1,V2,...")
    return axes


def _slug(value):
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", str(value)).strip("_") or "x"


def cell_name(assignments, seed):
    """The directory name of one cell: its group's `field-value` pairs and seed."""
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
            assignments = list(zip(keys, values))
            for seed in seeds:
                config = cfg.override(base, [f"{k}={v}" for k, v in assignments]
                                      + [f"seed={seed}"])
                cfg.validate(config)
                name = cell_name(assignments, seed)
                key = json.dumps(cfg.to_dict(config), sort_keys=True, default=str)
                if key in seen:
                    raise ValueError(f"Cells {seen[key]!r} and {name!r} are the "
                                     f"same run: remove the repeated grid point.")
                seen[key] = name
                cells.append((name, config))
    return cells


def run_cells(cells, out_dir, *, resume=False, overwrite=False, verbose="auto",
              recipe=None, echo=print):
    """Train each `(name, config)` into `out_dir/name`, skipping finished ones.

    Returns:
        The summaries, in order.
    """
    from keras_wrs.recipes.train import train

    out_dir = rundir.prepare_run_dir(out_dir, resume=resume, overwrite=overwrite)
    summaries = []
    for i, (name, config) in enumerate(cells, 1):
        echo(f"[{i}/{len(cells)}] {name}")
        summary = train(config, Path(out_dir) / name, resume=True,
                        verbose=verbose, recipe=recipe)
        summaries.append(summary)
        echo(f"[{i}/{len(cells)}] {name}: test accuracy "
             f"{summary['test_accuracy']:.4f} in {summary['wall_seconds']:.0f} s")
    return summaries


def run_sweep(base, groups, seeds, out_dir, **kwargs):
    """Validate every cell, train them all, and write the report.

    Returns:
        The markdown report (also in `out_dir/results.md`).
    """
    from keras_wrs.recipes import report

    cells = sweep_configs(base, groups, seeds)
    run_cells(cells, out_dir, **kwargs)
    return report.write_report([out_dir], out_dir)
