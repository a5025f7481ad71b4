"""The command line from the outside: fast quiet help, Ctrl-C, divergence, extras, setup errors."""

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from keras_wrs import _lazy
from keras_wrs.recipes import cli, console
from keras_wrs.recipes.config import extras
from keras_wrs.recipes.runs import rundir
from keras_wrs.recipes.sweeps import evidence

_COMMAND = Path(sys.executable).with_name("keras-wrs")
_SMOKE = ["--smoke", "--regularization", "wrs", "--verbose", "0", "--set", "tensorboard=false"]


def _env():
    """This process's environment without the test suite's TF log setting."""
    return {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}


def _run_command(argv, importtime=True, **kwargs):
    flags = ["-X", "importtime"] if importtime else []
    return subprocess.run(
        [sys.executable, *flags, str(_COMMAND), *argv],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=600,
        **kwargs,
    )


def _imported(stderr):
    return {
        line.rsplit("|", 1)[-1].strip()
        for line in stderr.splitlines()
        if line.startswith("import time:")
    }


def _console(stderr):
    return [line for line in stderr.splitlines() if not line.startswith("import time:")]


@pytest.mark.parametrize(
    "argv, code",
    [
        (["--help"], 0),
        ([], 0),
        (["train", "--help"], 0),
        (["compare", "--help"], 0),
        (["train", "--epochs", "0"], 2),
        (["nosuch"], 2),
    ],
)
def test_help_and_parser_errors_import_neither_keras_nor_tensorflow(argv, code):
    result = _run_command(argv)
    assert result.returncode == code, result.stderr[-2000:]
    imported = _imported(result.stderr)
    assert "keras_wrs.recipes.cli" in imported
    assert not {"keras", "tensorflow", "jax", "torch"} & imported
    assert "usage: keras-wrs" in result.stdout + result.stderr


@pytest.mark.tensorflow_only
def test_tensorflow_log_lines_stay_off_the_console():
    # `export --help` loads TensorFlow (the export stack); `list` no longer does.
    result = _run_command(["export", "--help"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert "tensorflow" in _imported(result.stderr)
    assert _console(result.stderr) == []  # no absl / cpu_feature_guard lines
    assert "usage: keras-wrs export" in result.stdout


@pytest.mark.tensorflow_only
def test_a_config_whose_optimizer_kwargs_load_keras_keeps_the_console_quiet(tmp_path):
    # fmnist_resnet9 sets optimizer_kwargs (nesterov): checking them loads Keras in the
    # config's validation, before the command's own quiet import.
    argv = ["sweep", "fmnist_resnet9", "--grid", "regularization=wd", "--estimate"]
    result = _run_command([*argv, "--out", str(tmp_path / "grid")])
    assert result.returncode == 0, result.stderr[-2000:]
    assert "tensorflow" in _imported(result.stderr)
    assert _console(result.stderr) == []
    assert result.stdout.startswith("keras-wrs sweep --estimate: 1 cells")


@pytest.mark.tensorflow_only
def test_a_sweeps_worker_processes_keep_the_console_quiet(tmp_path):
    argv = ["sweep", "digits", "--smoke", "--jobs", "2", "--grid", "regularization=wd,wrs"]
    # Without -X importtime: three processes writing import lines to one pipe interleave them.
    out = str(tmp_path / "grid")
    result = _run_command([*argv, "--verbose", "0", "--out", out], importtime=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr == ""
    assert "2 at a time" in result.stdout


_EVIDENCE = ["-m", "keras_wrs.recipes.sweeps.evidence"]
_CELLS = Path(__file__).resolve().parents[2] / "recipes" / "results" / "fmnist_full" / "cells"


def test_the_evidence_modules_usage_imports_neither_keras_nor_tensorflow():
    # `python -m keras_wrs.recipes.X` starts like the command: `import keras_wrs` stays lazy,
    # and reading runs (their log keys) loads no backend.
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *_EVIDENCE],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    assert result.returncode == 1
    assert "usage: python -m keras_wrs.recipes.sweeps.evidence chosen" in result.stderr
    imported = _imported(result.stderr)
    assert "keras_wrs.recipes.runs.record" in imported
    assert not {"keras", "tensorflow", "jax", "torch", "keras_wrs.optimizers"} & imported


@pytest.mark.tensorflow_only
def test_the_evidence_modules_answer_keeps_the_console_quiet():
    # Checking the cells' optimizer_kwargs loads Keras, quietly as the command does: stderr
    # holds only the names of the methods whose tuning is not complete.
    result = subprocess.run(
        [sys.executable, *_EVIDENCE, "chosen", str(_CELLS), "sgdm"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    cells = evidence.load_cells([_CELLS])
    assert result.stdout.splitlines() == evidence.chosen_grids(cells, "sgdm")
    assert {"optimizer=sgdm regularization=wd", "optimizer=sgdm regularization=wrs"} <= {
        " ".join(line.split()[:2]) for line in result.stdout.splitlines()
    }
    named = [line.split()[3] for line in result.stderr.splitlines()]
    assert all(line.startswith("evidence chosen: sgdm ") for line in result.stderr.splitlines())
    assert named == list(evidence.tuning_left(cells, "sgdm"))


@pytest.mark.parametrize(
    "argv, module",
    [
        (
            ["python", "-m", "keras_wrs.recipes.sweeps.evidence", "chosen"],
            "keras_wrs.recipes.sweeps.evidence",
        ),
        (["python", "-X", "importtime", "-mkeras_wrs.recipes.cli"], "keras_wrs.recipes.cli"),
        (["python", "-W", "ignore", "-u", "-m", "pkg", "-m", "x"], "pkg"),
        (["python", "script.py", "-m", "keras_wrs.recipes.cli"], ""),
        (["python", "-c", "import keras_wrs", "-m", "keras_wrs.recipes.cli"], ""),
        (["python", "-m"], ""),
        (["python"], ""),
    ],
)
def test_the_module_a_python_command_line_runs(argv, module):
    assert _lazy._run_module(argv) == module


def test_quiet_tensorflow_keeps_a_level_the_caller_set(monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    console.quiet_tensorflow(verbose=True)
    assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ
    console.quiet_tensorflow()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    console.quiet_tensorflow()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"


def test_bare_command_prints_help(capsys):
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: keras-wrs") and "Start with `keras-wrs train`" in out


def test_resume_command_adds_out_and_resume_and_drops_overwrite():
    assert console.resume_command(["train", "--smoke"], "runs/a b") == (
        "keras-wrs train --smoke --out 'runs/a b' --resume"
    )
    assert console.resume_command(["train", "--out=x", "--overwrite"], "x") == (
        "keras-wrs train --out=x --resume"
    )
    assert console.resume_command(["compare", "--out", "x", "--resume"], "x") == (
        "keras-wrs compare --out x --resume"
    )


def _wait_for(path, proc, timeout=300.0):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)


@pytest.mark.usefixtures("interactive_sigint")  # the child inherits it
def test_ctrl_c_prints_one_line_with_the_resume_command(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", *_SMOKE, "--set", "epochs=6", "--set", "steps_per_epoch=3", "--out", str(out)]
    proc = subprocess.Popen(
        [str(_COMMAND), *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    assert proc.stdout.readline() == f"keras-wrs train: run directory {out}\n"
    _wait_for(out / "backup" / "training_metadata.json", proc)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert f"run directory {out} keeps every finished epoch" in lines[0]
    command = lines[0].split("Continue with: ", 1)[1]
    assert command == shlex.join(["keras-wrs", *argv, "--resume"])
    assert not (out / "summary.json").exists()
    assert cli.main(shlex.split(command)[1:]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["epochs"] == 6
    assert rundir.history_rows(out / "history.csv") == 6


def test_a_diverging_run_stops_exits_1_and_is_marked(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", *_SMOKE, "--lr", "1e6", "--out", str(out)]
    assert cli.main(argv) == 1
    captured = capsys.readouterr()
    assert "terminating training" in captured.out
    assert "Training diverged" in captured.err and "--lr" in captured.err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "diverged"
    assert summary["diverged"]["epoch"] == 1 and summary["test_accuracy"] is None
    assert not (out / "model.keras").exists() and not (out / "backup").exists()
    assert rundir.history_rows(out / "history.csv") == 1  # stopped, not 2 epochs
    # Resuming does not turn it into a success; report shows it.
    assert cli.main([*argv, "--resume"]) == 1
    assert "Training diverged" in capsys.readouterr().err
    assert cli.main(["report", str(out), "--out", str(tmp_path / "report")]) == 0
    assert "diverged" in capsys.readouterr().out


def test_a_batch_larger_than_the_data_is_a_usage_error(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", *_SMOKE, "--batch-size", "5000", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "batch_size=5000 is larger than the" in err and "Traceback" not in err


def test_missing_extras_are_reported_before_any_work(tmp_path, capsys, monkeypatch):
    real = extras.installed
    monkeypatch.setattr(
        extras, "installed", lambda module: module not in ("matplotlib", "sklearn") and real(module)
    )
    out = tmp_path / "run"
    assert cli.main(["train", *_SMOKE, "--set", "plots=true", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "pip install matplotlib scikit-learn" in err and "--set plots=false" in err
    assert not out.exists()
    assert cli.main(["report", str(tmp_path)]) == 2
    assert "pip install matplotlib" in capsys.readouterr().err
