"""Running a grid's cells: cell by cell, resumable, N processes at a time, estimated first.

A grid (a comparison or a sweep, `keras_wrs.recipes.sweeps.grid`) is a list of
`(name, Config)` cells, each trained into `OUT/<name>`. This module runs them:

* **resumable cell by cell**: a finished cell in `OUT` is not trained again,
  an interrupted one continues from its last epoch (`train(resume=True)`);
* **collected**: with a results directory, each finished cell's small files
  (`config.json`, `summary.json`, `history.csv`; never the model or its
  backups) are copied to `RESULTS/<name>/` as soon as it finishes, and a
  cell already there is skipped, even when `OUT` is gone (a fresh machine
  that has only the committed results);
* **parallel**: `jobs` cells at once, each in its own fresh process
  (`spawn`), each process limited to `cpu_count // jobs` threads;
* **estimated**: `plan_cells` counts what is collected, finished and left,
  and `estimate_text` turns it into a line with the expected time, from the
  median wall and CPU seconds of the cells that already finished; before
  any has, from the finished cells in the results directory that differ
  from the grid's only in hyperparameters that leave the work of a step
  alone (`SAME_WORK_FIELDS`: another lr, seed or method).

A cell whose training diverged is a result (a learning rate too high for the
method): it is collected like the others and the grid goes on.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import math
import multiprocessing
import os
import shutil
import statistics
from pathlib import Path

from keras_wrs._files import atomic_write_json
from keras_wrs.recipes import console
from keras_wrs.recipes.config import from_dict, to_dict
from keras_wrs.recipes.runs import rundir
from keras_wrs.recipes.runs.validation import load_json

__all__ = [
    "MAX_RUNS",
    "check_size",
    "SMALL_FILES",
    "CellPlan",
    "collect_cell",
    "cell_state",
    "plan_cells",
    "estimate_text",
    "run_cells",
]

# Grids larger than this are refused unless asked for (--allow-large-grid).
MAX_RUNS = 100
# Config fields that change what a step computes, not how much: cells that
# differ from a grid's only in these are timed like it (the estimate's fallback).
SAME_WORK_FIELDS = frozenset(
    {
        "seed",
        "lr",
        "weight_decay",
        "optimizer",
        "optimizer_kwargs",
        "regularization",
        "target_norm",
        "lr_scaling",
        "base_batch_size",
        "schedule",
        "warmup_epochs",
        "step_epochs",
        "step_factor",
        "label_smoothing",
        "granularity",
        "wrs_other_decay",
    }
)
# The files of a cell worth keeping in version control (kilobytes each).
SMALL_FILES = ("config", "summary", "history")


def _stored(cell_dir):
    """`(summary, config.json)` of a cell directory (each None if absent).

    Raises:
        keras_wrs.recipes.runs.validation.RunRecordError: a file that is not
            readable JSON (cut or edited), named.
    """
    cell_dir = Path(cell_dir)
    return (
        load_json(cell_dir / rundir.FILES["summary"]),
        load_json(cell_dir / rundir.FILES["config"]),
    )


def _normalized(stored):
    """The config a stored `config.json` records, as a dict, or None if it cannot be read.

    Today's defaults are filled in, so cells collected before a new `Config`
    field existed still match.
    """
    try:
        return to_dict(from_dict(stored.get("config", {})))
    except (TypeError, ValueError):
        return None


def _same_config(stored, config):
    """Whether a stored `config.json` records `config`, field by field."""
    return _normalized(stored) == to_dict(config)


def cell_state(cell_dir, config):
    """`"done"`, `"partial"` or `"absent"`: what `cell_dir` holds for `config`.

    Raises:
        ValueError: `cell_dir` holds a run of another configuration (a grid
            changed under the same cell name).
    """
    summary, stored = _stored(cell_dir)
    if stored is None:
        started = Path(cell_dir).is_dir() and any(Path(cell_dir).iterdir())
        return "partial" if started else "absent"
    if not _same_config(stored, config):
        theirs = stored.get("config", {})
        diff = sorted(k for k, v in to_dict(config).items() if theirs.get(k) != v)
        raise ValueError(
            f"{str(cell_dir)!r} holds a run of another configuration (it differs in "
            f"{', '.join(diff) or 'its fields'}): move it away, or give the grid "
            f"another --out/--results."
        )
    if summary is not None and summary.get("status") in ("finished", "diverged"):
        return "done"
    return "partial"


def collect_cell(run_dir, results_dir):
    """Copy a finished cell's small files to `results_dir/<name>/` (crash-safe).

    Each file is written to a temporary name and renamed, so an interrupted
    copy never leaves a half file under its real name; `summary.json` goes
    last, so a cell counts as collected only once all its files are there.

    Returns:
        The cell's directory under `results_dir`.
    """
    run_dir = Path(run_dir)
    target = Path(results_dir) / run_dir.name
    target.mkdir(parents=True, exist_ok=True)
    for key in ("config", "history", "summary"):
        source = run_dir / rundir.FILES[key]
        if not source.is_file():
            continue
        temporary = target / (rundir.FILES[key] + ".partial")
        shutil.copyfile(source, temporary)
        os.replace(temporary, target / rundir.FILES[key])
    return target


@dataclasses.dataclass(frozen=True)
class CellPlan:
    """What a grid holds before it starts."""

    total: int
    collected: tuple  # names already in the results directory
    finished: tuple  # names finished in OUT, not yet collected
    partial: tuple  # names started in OUT and unfinished
    to_run: tuple  # `(name, Config)` still to train (partial ones included)
    seconds: dict  # median `wall`/`cpu` seconds of the done cells, or None each
    similar: int = 0  # when no cell is done: the similar collected cells timed instead


def _median(values):
    values = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.median(values) if values else None


def _same_work(stored, configs):
    """Whether a stored `config.json` differs from one of `configs` only in `SAME_WORK_FIELDS`."""
    theirs = _normalized(stored)
    if theirs is None:
        return False
    keep = [k for k in theirs if k not in SAME_WORK_FIELDS]
    return any(all(theirs[k] == ours.get(k) for k in keep) for ours in configs)


def _similar_summaries(results_dir, cells):
    """Summaries of the finished cells in `results_dir` that do a grid cell's work."""
    ours = [to_dict(config) for _, config in cells]
    found = []
    for cell_dir in sorted(Path(results_dir).iterdir()) if Path(results_dir).is_dir() else ():
        try:
            summary, stored = _stored(cell_dir)
        except ValueError:  # a damaged file: not a basis for a guess
            continue
        if (
            isinstance(summary, dict)
            and isinstance(stored, dict)
            and summary.get("status") == "finished"
            and _same_work(stored, ours)
        ):
            found.append(summary)
    return found


def plan_cells(cells, out_dir, results_dir=None):
    """Count the cells of a grid by state, and time the ones that are done.

    With no done cell, the time comes from the finished cells already in
    `results_dir` that differ from a grid cell only in `SAME_WORK_FIELDS`.

    Args:
        cells: `(name, Config)` pairs.
        out_dir: the grid's run directory.
        results_dir: where finished cells are collected, or None.

    Returns:
        A `CellPlan`.

    Raises:
        ValueError: a cell directory holds another configuration's run.
    """
    collected, finished, partial, to_run, done = [], [], [], [], []
    for name, config in cells:
        kept = None if results_dir is None else Path(results_dir) / name
        if kept is not None and cell_state(kept, config) == "done":
            collected.append(name)
            done.append(_stored(kept)[0])
            continue
        state = cell_state(Path(out_dir) / name, config)
        if state == "done":
            finished.append(name)
            done.append(_stored(Path(out_dir) / name)[0])
            continue
        if state == "partial":
            partial.append(name)
        to_run.append((name, config))
    similar = []
    if not done and to_run and results_dir is not None:
        done = similar = _similar_summaries(results_dir, cells)
    seconds = {
        "wall": _median(s.get("wall_seconds") for s in done),
        "cpu": _median(s.get("cpu_seconds") for s in done),
    }
    return CellPlan(
        len(cells),
        tuple(collected),
        tuple(finished),
        tuple(partial),
        tuple(to_run),
        seconds,
        len(similar),
    )


def _hours(seconds):
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.0f} min"


def estimate_text(plan, jobs=1):
    """One paragraph: the cell counts and the expected time of what is left."""
    done = len(plan.collected) + len(plan.finished)
    lines = [
        f"{plan.total} cells: {len(plan.collected)} collected, "
        f"{len(plan.finished)} finished but not collected, "
        f"{len(plan.partial)} interrupted (they resume), "
        f"{len(plan.to_run)} to run, {jobs} at a time."
    ]
    wall, cpu = plan.seconds["wall"], plan.seconds["cpu"]
    if not plan.to_run:
        lines.append("Nothing to train.")
    elif wall is None:
        lines.append("No finished cell yet to estimate the time from.")
    else:
        rounds = math.ceil(len(plan.to_run) / jobs)
        cpu_note = f", {cpu:.0f} CPU s" if cpu is not None else ""
        basis = f"the {done} done cells"
        if plan.similar:
            basis = (
                f"{plan.similar} finished cells in the results directory that differ "
                f"only in lr, seed or method, none of this grid done yet"
            )
        lines.append(
            f"Estimate: about {_hours(rounds * wall)} ({len(plan.to_run)} cells at "
            f"the median {wall:.0f} wall s{cpu_note} of {basis}; "
            f"cells run at once share the cores, so more jobs need not mean "
            f"less time)."
        )
    return " ".join(lines)


@contextlib.contextmanager
def _thread_limit(threads):
    """Set the thread caps for processes started inside the block."""
    saved = {k: os.environ.get(k) for k in rundir.THREAD_VARIABLES}
    os.environ.update({k: str(threads) for k in rundir.THREAD_VARIABLES})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _train_cell(config, run_dir, verbose, recipe):
    """Train one cell; a diverged cell returns its summary instead of raising."""
    from keras_wrs.recipes.training.train import DivergedError, train

    try:
        return train(config, run_dir, resume=True, verbose=verbose, recipe=recipe)
    except DivergedError as err:
        return err.summary


def _report(echo, index, total, name, summary, remaining=""):
    if summary.get("status") == "diverged":
        echo(f"[{index}/{total}] {name}: diverged{remaining}")
        return
    accuracy = summary.get("validation_accuracy")
    which = "validation"
    if accuracy is None:
        accuracy, which = summary.get("test_accuracy"), "test"
    cpu = summary.get("cpu_seconds")
    cpu_text = f", {cpu:.0f} CPU s" if cpu is not None else ""
    echo(
        f"[{index}/{total}] {name}: {which} accuracy {accuracy:.4f} in "
        f"{summary['wall_seconds']:.0f} s{cpu_text}{remaining}"
    )


def run_cells(
    cells,
    out_dir,
    *,
    jobs=1,
    results_dir=None,
    resume=False,
    overwrite=False,
    verbose="auto",
    recipe=None,
    echo=print,
    max_runs=MAX_RUNS,
):
    """Train the cells of a grid, `jobs` at a time, collecting each as it finishes.

    Args:
        cells: `(name, Config)` pairs, in the order to train them.
        out_dir: the grid's run directory (never reused without `resume` or
            `overwrite`, see `keras_wrs.recipes.runs.rundir`).
        jobs: cells trained at the same time, each in a fresh process with
            `os.cpu_count() // jobs` threads (at least 1). 1 trains in this
            process.
        results_dir: collect each finished cell's small files here, and skip
            the cells already collected.
        resume: continue a grid in an existing `out_dir`.
        overwrite: delete `out_dir` first.
        verbose: `model.fit` verbosity (parallel cells train silently).
        recipe: recipe name recorded in the summaries.
        echo: where progress lines go.
        max_runs: refuse a grid of more cells than this (None: any size).

    Returns:
        The summaries of every cell, in the order of `cells` (collected ones
        read back from `results_dir`).

    Raises:
        ValueError: `jobs` is not a positive integer, the grid is larger than
            `max_runs`, or a cell directory holds another configuration's run
            (all before any training).
        keras_wrs.recipes.runs.lock.RunDirBusyError: another process works in
            `out_dir`.
    """
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ValueError(
            f"`jobs` must be a positive integer (cells trained at once). Received: jobs={jobs!r}"
        )
    check_size(len(cells), max_runs)
    with rundir.claim_run_dir(out_dir, resume=resume, overwrite=overwrite, kind="grid") as claim:
        try:
            return _run_claimed(cells, claim.path, jobs, results_dir, verbose, recipe, echo)
        except BaseException:
            claim.keep = any(
                (claim.path / name / rundir.FILES["config"]).is_file() for name, _ in cells
            )
            raise


def check_size(runs, max_runs=MAX_RUNS):
    """Refuse a grid of more than `max_runs` runs (None: no limit).

    Raises:
        ValueError: the grid is larger, with the flag that allows it.
    """
    if max_runs is not None and runs > max_runs:
        raise ValueError(
            f"This grid has {runs} runs, more than {max_runs}: each is a full training run, "
            f"and the time of one run times {runs} is easy to underestimate. Check the "
            f"grid's axes (`sweep --estimate` counts and times them), or pass "
            f"--allow-large-grid if you mean it."
        )


def _remaining(times, left, jobs):
    """The expected time of `left` cells from the wall seconds of the ones just trained."""
    wall = _median(times)
    if not left or wall is None:
        return ""
    rounds = math.ceil(left / jobs)
    return (
        f"; about {_hours(rounds * wall)} for the {left} left (median {wall:.0f} s "
        f"of the {len(times)} trained now)"
    )


def _run_claimed(cells, out_dir, jobs, results_dir, verbose, recipe, echo):
    """`run_cells` in a claimed grid directory."""
    atomic_write_json(
        out_dir / rundir.GRID_FILE, {"kind": "grid", "runs": [name for name, _ in cells]}
    )
    plan = plan_cells(cells, out_dir, results_dir)
    echo(estimate_text(plan, jobs))
    position = {name: i for i, (name, _) in enumerate(cells, 1)}
    summaries = {}
    for name in plan.collected:
        summaries[name] = _stored(Path(results_dir) / name)[0]
    for name in plan.finished:  # finished before, not yet collected
        summaries[name] = _stored(Path(out_dir) / name)[0]
        if results_dir is not None:
            collect_cell(Path(out_dir) / name, results_dir)

    times = []

    def finish(name, summary):
        summaries[name] = summary
        if results_dir is not None:
            collect_cell(Path(out_dir) / name, results_dir)
        times.append(summary.get("wall_seconds"))
        left = len(plan.to_run) - len(times)
        _report(echo, position[name], len(cells), name, summary, _remaining(times, left, jobs))

    if jobs == 1:
        for name, config in plan.to_run:
            echo(f"[{position[name]}/{len(cells)}] {name}")
            finish(name, _train_cell(config, Path(out_dir) / name, verbose, recipe))
    else:
        threads = max(1, (os.cpu_count() or 1) // jobs)
        context = multiprocessing.get_context("spawn")
        with (
            _thread_limit(threads),
            concurrent.futures.ProcessPoolExecutor(
                jobs,
                mp_context=context,
                max_tasks_per_child=1,
                initializer=console.start_worker,
                initargs=(console.loading_silenced(),),
            ) as pool,
        ):
            # At most `jobs` cells submitted at a time, so that "(started)" is when a cell
            # starts, and a cell that raises stops the sweep without starting the queued ones.
            queued = iter(plan.to_run)
            running = {}

            def start_next():
                item = next(queued, None)
                if item is not None:
                    name, config = item
                    echo(f"[{position[name]}/{len(cells)}] {name} (started)")
                    future = pool.submit(_train_cell, config, Path(out_dir) / name, 0, recipe)
                    running[future] = name

            for _ in range(jobs):
                start_next()
            while running:
                done, _ = concurrent.futures.wait(
                    running, return_when=concurrent.futures.FIRST_COMPLETED
                )
                for future in done:
                    finish(running.pop(future), future.result())
                    start_next()
    return [summaries[name] for name, _ in cells]
