"""`keras-wrs report` on damaged or foreign inputs, and where it writes."""

import dataclasses
import json

import pytest

from keras_wrs.recipes import cli
from keras_wrs.recipes import config as cfg
from keras_wrs.recipes.sweeps import report
from keras_wrs.recipes.sweeps.grid import run_cells


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """A finished 2-run grid on digits (smoke size) and the lines it printed."""
    out = tmp_path_factory.mktemp("grid") / "g"
    base = dataclasses.replace(
        cfg.smoke(cfg.get_recipe("digits")), tensorboard=False, noise_every=1
    )
    lines = []
    cells = [(f"s{seed}", dataclasses.replace(base, seed=seed)) for seed in (0, 1)]
    run_cells(cells, out, verbose=0, echo=lines.append)
    return out, lines


def test_counts_first_then_an_estimate_from_the_measured_runs(grid):
    _, lines = grid
    assert lines[0].startswith("2 cells: 0 collected")
    assert "for the 1 left (median" in lines[2] and "s of the 1 trained now" in lines[2]
    assert "left" not in lines[-1]


def test_a_report_never_writes_into_a_run_directory(grid, capsys, tmp_path):
    out, _ = grid
    run = out / "s0"
    before = sorted(p.name for p in run.iterdir())
    assert cli.main(["report", str(run)]) == 0
    captured = capsys.readouterr()
    assert "| sgdm | wrs |" in captured.out and "pass --out DIR" in captured.err
    assert sorted(p.name for p in run.iterdir()) == before
    assert cli.main(["report", str(out), "--out", str(run)]) == 2
    assert "a report never writes into a run" in capsys.readouterr().err
    assert cli.main(["report", str(out), "--out", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "results.md").is_file()


def test_digits_zeros_are_explained(grid):
    out, _ = grid
    text, _ = report.report_text(report.load_summaries(report.find_runs([out])))
    assert "0.000 ± 0.000" in text and report.ZERO_NOISE_NOTE in text


@pytest.mark.parametrize(
    "edit,words",
    [
        (lambda s: s[: len(s) // 2], "not readable as JSON"),
        (lambda s: json.dumps({**json.loads(s), "test_accuracy": 1e300}), "test_accuracy=1e+300"),
        (lambda s: json.dumps({**json.loads(s), "wall_seconds": -3.0}), "wall_seconds=-3.0"),
    ],
)
def test_a_damaged_summary_is_one_message_naming_the_file(grid, tmp_path, capsys, edit, words):
    import shutil

    copy = tmp_path / "g"
    shutil.copytree(grid[0], copy)
    path = copy / "s1" / "summary.json"
    path.write_text(edit(path.read_text()))
    assert cli.main(["report", str(copy), "--out", str(tmp_path / "rep")]) == 2
    err = capsys.readouterr().err
    assert words in err and "s1/summary.json" in err and "Traceback" not in err
    assert not (tmp_path / "rep").exists()
