"""The `keras-wrs` command line: help, argument errors, a smoke run, report."""

import json

import pytest

from keras_wrs.recipes import cli


def _error(capsys, argv):
    """Run the CLI expecting a usage error; return its stderr."""
    try:
        code = cli.main(argv)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    assert code == 2, argv
    return capsys.readouterr().err


def test_help_of_every_command(capsys):
    for command in ([], ["train"], ["compare"], ["report"], ["export"], ["list"]):
        with pytest.raises(SystemExit) as exit_:
            cli.main([*command, "--help"])
        assert exit_.value.code == 0
        assert "usage: keras-wrs" in capsys.readouterr().out


def test_list_names_everything(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    from keras_wrs.recipes import config as cfg

    assert f"recipes: {', '.join(cfg.RECIPES)}\n" in out
    assert out.startswith("recipes: digits, shapes_resnet20, ")
    assert "regularizations: none, wd, l2, wrs" in out


def test_invalid_numbers_are_rejected_by_the_parser(capsys):
    for argv, match in [
        (["train", "--epochs", "0"], "expected a positive integer, got '0'"),
        (["train", "--batch-size", "-8"], "expected a positive integer"),
        (["train", "--lr", "nan"], "expected a positive number"),
        (["train", "--lr", "abc"], "expected a positive number"),
        (["compare", "--seeds", "0,x"], "expected integers"),
    ]:
        assert match in _error(capsys, argv)


@pytest.mark.tensorflow_only  # TFDS names and data need TensorFlow
def test_unknown_names_list_valid_ones(capsys, tmp_path):
    out = str(tmp_path / "run")
    for argv, match in [
        (["train", "cifar10_resnet18"], "Valid recipes: cifar100_wrn28_10"),
        (["train", "--optimizer", "adagradd"], "Valid optimizers: adadelta, adafactor"),
        (
            ["train", "--regularization", "wd,decay"],
            "Valid regularizations: adamh, cwd, l2, none, sgdp, wd, wrs",
        ),
        (["compare", "--optimizers", "sgdm,sgdw"], "Valid optimizers"),
        (["train", "--set", "dataset=cifar"], "Did you mean: cifar10"),
        (["train", "--set", "model=resnet18"], "Valid models"),
        (["train", "--set", "epoch=3"], "Did you mean: epochs"),
        (["train", "--set", "warmup_epochs=50"], "warmup_epochs"),
        (["train", "--precision", "half"], "Valid precisions"),
    ]:
        assert match in _error(capsys, [*argv, "--out", out])
    assert not (tmp_path / "run").exists()  # rejected before any work


def test_run_dir_rules(capsys, tmp_path):
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "summary.json").write_text("{}")
    assert "already exists" in _error(
        capsys, ["train", "--out", str(existing), "--regularization", "wrs"]
    )
    assert "either" in _error(
        capsys,
        ["train", "--out", str(existing), "--resume", "--overwrite", "--regularization", "wrs"],
    )
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert "not writable" in _error(capsys, ["compare", "--out", str(blocker / "out")])
    assert "--resume needs --out" in _error(capsys, ["train", "--resume"])


@pytest.mark.tensorflow_only  # TFDS names and data need TensorFlow
def test_missing_tfds_data_is_reported(capsys, tmp_path):
    err = _error(
        capsys,
        [
            "train",
            "cifar10_resnet20",
            "--data-dir",
            str(tmp_path),
            "--out",
            str(tmp_path / "run"),
            "--regularization",
            "wrs",
        ],
    )
    assert "--download" in err and "tfds build cifar10" in err


def test_smoke_train_comparison_then_report(capsys, tmp_path):
    out = tmp_path / "runs"
    code = cli.main(
        ["train", "--smoke", "--out", str(out), "--verbose", "0", "--set", "tensorboard=false"]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"keras-wrs train: run directory {out}\n")
    assert "| sgdm | wd | " in printed and "| sgdm | wrs | " in printed
    summary = json.loads((out / "wrs-sgdm-s0" / "summary.json").read_text())
    assert summary["recipe"] == "digits" and summary["epochs"] == 2
    assert cli.main(["report", str(out), "--out", str(tmp_path / "report")]) == 0
    assert "| sgdm | wrs | " in capsys.readouterr().out
    assert (tmp_path / "report" / "results.csv").exists()
    assert "No run directory" in _error(capsys, ["report", str(tmp_path / "report")])
