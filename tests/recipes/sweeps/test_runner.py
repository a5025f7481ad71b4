"""The sweep runner: cells collected as they finish, resumed from the results alone, estimated."""

import dataclasses
import json
import os
import re

import pytest

from keras_wrs.recipes import config as cfg
from keras_wrs.recipes.runs import rundir
from keras_wrs.recipes.sweeps import grid, runner

TINY = dataclasses.replace(cfg.smoke(cfg.get_recipe("digits")), tensorboard=False, dynamics=False)


def _cells(*groups, seeds=(0,)):
    return grid.sweep_configs(TINY, list(groups), seeds)


def _history(path):
    return rundir.read_history(path / rundir.FILES["history"])


def test_cells_are_collected_as_they_finish_and_a_sweep_resumes_from_them_alone(tmp_path):
    cells = _cells("regularization=wd,wrs")
    lines = []
    first = runner.run_cells(
        cells, tmp_path / "out", results_dir=tmp_path / "results", verbose=0, echo=lines.append
    )
    assert lines[0].startswith("2 cells: 0 collected") and "2 to run" in lines[0]
    for (name, _), summary in zip(cells, first, strict=True):
        kept = tmp_path / "results" / name
        assert sorted(p.name for p in kept.iterdir()) == [
            "config.json",
            "history.csv",
            "summary.json",
        ]
        assert json.loads((kept / "summary.json").read_text()) == summary
        # Each epoch's process CPU seconds are logged, and the summary adds them up.
        cpu = _history(kept)["epoch_cpu_seconds"]
        assert len(cpu) == TINY.epochs and all(c > 0 for c in cpu)
        assert summary["cpu_seconds"] == pytest.approx(sum(cpu))
        assert all(w > 0 for w in _history(kept)["epoch_wall_seconds"])
    # A fresh machine with only the collected files: nothing is trained again.
    lines.clear()
    again = runner.run_cells(
        cells, tmp_path / "fresh", results_dir=tmp_path / "results", verbose=0, echo=lines.append
    )
    assert again == first
    assert lines == [lines[0]] and lines[0].startswith("2 cells: 2 collected")
    assert "0 to run" in lines[0] and "Nothing to train" in lines[0]
    assert not any(p.is_dir() for p in (tmp_path / "fresh").iterdir())  # no cell started
    # The estimate for a larger grid uses the done cells' median wall seconds.
    plan = runner.plan_cells(
        _cells("regularization=wd,wrs", seeds=(0, 1, 2)), tmp_path / "fresh", tmp_path / "results"
    )
    assert (plan.total, len(plan.collected), len(plan.to_run)) == (6, 2, 4)
    wall = sorted(s["wall_seconds"] for s in first)
    assert plan.seconds["wall"] == pytest.approx(sum(wall) / 2)
    text = runner.estimate_text(plan, jobs=2)
    assert f"4 cells at the median {plan.seconds['wall']:.0f} wall s" in text
    minutes = 2 * plan.seconds["wall"] / 60  # 4 cells, 2 at a time
    assert re.search(rf"about {minutes:.0f} min", text)


def test_a_sweep_of_collected_cells_reports_them_on_a_fresh_machine(tmp_path):
    """Every cell collected, a new out directory: the report reads the results, no error."""
    results = tmp_path / "results"
    kwargs = dict(results_dir=results, verbose=0, echo=lambda _: None)
    grid.run_sweep(TINY, ["regularization=wd,wrs"], [0], tmp_path / "out", **kwargs)
    first = (tmp_path / "out" / "results.csv").read_text()
    # One cell finished in the new out directory, the other only in the results.
    grid.run_sweep(TINY, ["regularization=wd"], [0], tmp_path / "fresh", **kwargs)
    text = grid.run_sweep(
        TINY, ["regularization=wd,wrs"], [0], tmp_path / "fresh", resume=True, **kwargs
    )
    assert "| sgdm | wd |" in text and "| sgdm | wrs |" in text
    assert (tmp_path / "fresh" / "results.csv").read_text() == first
    assert not (tmp_path / "fresh" / "regularization-wrs_s0").exists()  # nothing trained


def test_a_grid_with_no_cell_done_is_timed_by_collected_cells_that_do_the_same_work(tmp_path):
    results = tmp_path / "results"
    (summary,) = runner.run_cells(
        _cells("regularization=wd"),
        tmp_path / "out",
        results_dir=results,
        verbose=0,
        echo=lambda _: None,
    )
    (results / "damaged").mkdir()
    (results / "damaged" / "config.json").write_text("{")
    (results / "damaged" / "summary.json").write_text("{")
    # Another lr, method and seed: the same work a step, so the collected cell times it.
    plan = runner.plan_cells(
        _cells("regularization=wrs lr=0.01,0.02", seeds=(3,)), tmp_path / "new", results
    )
    assert plan.similar == 1 and len(plan.to_run) == 2
    assert plan.seconds["wall"] == summary["wall_seconds"]
    text = runner.estimate_text(plan, jobs=1)
    assert f"2 cells at the median {summary['wall_seconds']:.0f} wall s" in text
    assert "1 finished cells in the results directory that differ only in lr" in text
    # More epochs or another network is other work: no estimate without a cell of its own.
    for other in ("epochs=3", "model=resnet20"):
        plan = runner.plan_cells(_cells(other), tmp_path / "new", results)
        assert plan.similar == 0 and plan.seconds["wall"] is None
        assert "No finished cell yet" in runner.estimate_text(plan)


def test_a_finished_cell_not_yet_collected_is_copied_without_training(tmp_path):
    cells = _cells("regularization=wd")
    (summary,) = runner.run_cells(cells, tmp_path / "out", verbose=0, echo=lambda _: None)
    lines = []
    (again,) = runner.run_cells(
        cells,
        tmp_path / "out",
        resume=True,
        results_dir=tmp_path / "results",
        verbose=0,
        echo=lines.append,
    )
    assert again == summary and "1 finished but not collected" in lines[0]
    assert (tmp_path / "results" / cells[0][0] / "summary.json").is_file()


def test_partial_and_absent_cells_are_counted_apart(tmp_path):
    cells = _cells("regularization=wd,wrs")
    started = tmp_path / "out" / cells[0][0]
    started.mkdir(parents=True)
    (started / rundir.FILES["history"]).write_text("epoch,loss\n0,1.0\n")
    plan = runner.plan_cells(cells, tmp_path / "out")
    assert plan.partial == (cells[0][0],) and len(plan.to_run) == 2
    assert "1 interrupted (they resume)" in runner.estimate_text(plan)
    assert "No finished cell yet" in runner.estimate_text(plan)


def test_a_collected_cell_of_another_configuration_is_refused_before_any_training(tmp_path):
    ((name, config),) = _cells("regularization=wd")
    kept = tmp_path / "results" / name
    kept.mkdir(parents=True)
    other = dataclasses.replace(config, lr=0.5)
    (kept / "config.json").write_text(json.dumps({"config": cfg.to_dict(other)}))
    with pytest.raises(ValueError, match=r"another configuration \(it differs in lr\)"):
        runner.run_cells([(name, config)], tmp_path / "out", results_dir=tmp_path / "results")
    assert not (tmp_path / "out").exists()


def test_a_cell_collected_before_a_new_config_field_still_matches(tmp_path):
    ((name, config),) = _cells("regularization=wd")
    kept = tmp_path / "results" / name
    kept.mkdir(parents=True)
    stored = cfg.to_dict(config)
    del stored["validation_examples"]  # written before the field existed; default None
    (kept / "config.json").write_text(json.dumps({"config": stored}))
    assert runner.cell_state(kept, config) == "partial"  # no summary yet, but the same run


@pytest.mark.parametrize("jobs", [0, -1, 1.5, True])
def test_jobs_must_be_a_positive_integer(tmp_path, jobs):
    with pytest.raises(ValueError, match=rf"`jobs` must be a positive integer.*jobs={jobs!r}"):
        runner.run_cells(_cells("regularization=wd"), tmp_path / "out", jobs=jobs)
    assert not (tmp_path / "out").exists()


def test_a_diverged_cell_is_a_result_and_the_sweep_goes_on(tmp_path):
    cells = _cells("lr=1e6,0.1")
    summaries = runner.run_cells(
        cells, tmp_path / "out", results_dir=tmp_path / "results", verbose=0, echo=lambda _: None
    )
    assert [s["status"] for s in summaries] == ["diverged", "finished"]
    assert (tmp_path / "results" / cells[0][0] / "summary.json").is_file()


@pytest.mark.slow
def test_parallel_cells_match_the_same_cells_trained_one_by_one(tmp_path):
    cells = _cells("regularization=wd,wrs")
    one = runner.run_cells(cells, tmp_path / "one", verbose=0, echo=lambda _: None)
    lines = []
    two = runner.run_cells(
        cells,
        tmp_path / "two",
        jobs=2,
        results_dir=tmp_path / "results",
        verbose=0,
        echo=lines.append,
    )
    assert "2 at a time" in lines[0]
    # Each cell records the thread caps it trained under (a rerun needs them to repeat it).
    share = str(max(1, (os.cpu_count() or 1) // 2))
    for name, _ in cells:
        stored = json.loads((tmp_path / "results" / name / "config.json").read_text())
        assert stored["resolved"]["thread_caps"] == dict.fromkeys(rundir.THREAD_VARIABLES, share)
        assert stored["resolved"]["cpu_count"] == os.cpu_count()
    one_stored = json.loads((tmp_path / "one" / cells[0][0] / "config.json").read_text())
    assert one_stored["resolved"]["thread_caps"] == rundir.thread_caps()
    for a, b in zip(one, two, strict=True):
        assert b["test_accuracy"] == pytest.approx(a["test_accuracy"], abs=1e-6)
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == sorted(n for n, _ in cells)


@pytest.mark.slow
def test_a_parallel_sweep_starts_a_queued_cell_when_one_finishes(tmp_path):
    cells = _cells("lr=0.05,0.1,0.2")
    lines = []
    runner.run_cells(cells, tmp_path / "out", jobs=2, verbose=0, echo=lines.append)
    started = [i for i, line in enumerate(lines) if line.endswith("(started)")]
    done = [i for i, line in enumerate(lines) if " accuracy " in line]
    assert len(started) == len(done) == 3
    # Two at once, then the third only after the first result: "(started)" is when it starts.
    assert started[1] < done[0] < started[2]
