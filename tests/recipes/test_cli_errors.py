"""Hostile inputs at the command line: one paragraph and an exit status, nothing left behind."""

import errno

import pytest

from keras_wrs.recipes import cli, console

SMOKE = ["--smoke", "--regularization", "wrs", "--verbose", "0", "--set", "tensorboard=false"]


def _one_paragraph(err):
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.strip()]


def test_resume_refuses_a_directory_that_is_not_a_run(tmp_path, capsys):
    mine = tmp_path / "notarun"
    mine.mkdir()
    (mine / "readme.txt").write_text("notes")
    status = cli.main(["train", *SMOKE, "--out", str(mine), "--resume"])
    err = capsys.readouterr().err
    assert status == 2 and "not a keras-wrs run directory" in err and len(_one_paragraph(err)) == 1
    assert sorted(p.name for p in mine.iterdir()) == ["readme.txt"]


def test_overwrite_refuses_to_delete_foreign_files(tmp_path, capsys):
    mine = tmp_path / "documents"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    status = cli.main(["train", *SMOKE, "--out", str(mine), "--overwrite"])
    assert status == 2 and "--overwrite applies only" in capsys.readouterr().err
    assert (mine / "thesis.tex").read_text() == "years of work"


@pytest.mark.parametrize(
    "setting,words",
    [
        ("train_examples=5", "`train_examples` must be a multiple of 10"),
        ('noise_kernels=["nosuch"]', "nosuch"),
    ],
)
def test_a_failed_start_leaves_nothing_behind(tmp_path, capsys, setting, words):
    out = tmp_path / "runs" / "new"
    status = cli.main(["train", *SMOKE, "--set", setting, "--out", str(out)])
    err = capsys.readouterr().err
    assert status == 2 and words in err and len(_one_paragraph(err)) == 1
    assert not (tmp_path / "runs").exists()


def test_a_grid_whose_first_run_cannot_start_leaves_nothing(tmp_path, capsys):
    out = tmp_path / "grid"
    status = cli.main(
        [
            "compare",
            "--smoke",
            "--seeds",
            "0",
            "--optimizers",
            "sgdm",
            "--set",
            "train_examples=5",
            "--verbose",
            "0",
            "--out",
            str(out),
        ]
    )
    assert status == 2 and "train_examples" in capsys.readouterr().err
    assert not out.exists()


def test_a_grid_over_the_limit_is_refused_unless_asked_for(tmp_path, capsys):
    lrs = ",".join(str(0.001 * (i + 1)) for i in range(100))
    wds = ",".join(str(1e-5 * (i + 1)) for i in range(100))
    argv = [
        "sweep",
        "--smoke",
        "--grid",
        f"lr={lrs} weight_decay={wds}",
        "--out",
        str(tmp_path / "big"),
    ]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "This grid has 10000 runs, more than 100" in err and "--allow-large-grid" in err
    assert not (tmp_path / "big").exists()
    assert cli.main([*argv, "--allow-large-grid", "--estimate"]) == 0
    assert "10000 cells" in capsys.readouterr().out


def test_an_os_error_after_the_start_says_what_is_kept(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    err = OSError(errno.ENOSPC, "No space left on device", str(run / "plots" / "x.png"))
    argv = ["train", "--out", str(run)]
    assert console.failed("train", err, argv, str(run)) == 1
    text = capsys.readouterr().err
    assert "No space left on device" in text and "keeps every finished epoch" in text
    assert f"--out {run} --resume" in text and len(_one_paragraph(text)) == 1


def test_an_interrupt_before_training_says_nothing_was_kept(tmp_path, capsys):
    assert console.interrupted("train", ["train"], str(tmp_path / "gone")) == 130
    assert "interrupted before training began; nothing was kept" in capsys.readouterr().err


def test_the_progress_bar_names_the_split_it_measures():
    from keras_wrs.recipes.training.callbacks import ShortProgbar

    logs = {"loss": 1.0, "accuracy": 0.5, "val_loss": 1.2, "val_accuracy": 0.4, "norm_mean/c1": 3.0}
    assert ShortProgbar()._short(logs) == {
        "loss": 1.0,
        "accuracy": 0.5,
        "test_loss": 1.2,
        "test_accuracy": 0.4,
    }
    assert "validation_accuracy" in ShortProgbar(held_out="validation")._short(logs)


NO_NESTEROV = ["--set", "optimizer_kwargs={}"]  # fmnist_resnet9's Nesterov is SGD's argument


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "fmnist_resnet9", "--optimizer", "adam", *NO_NESTEROV],
        ["compare", "fmnist_resnet9", "--optimizers", "sgdm,adam", *NO_NESTEROV],
        ["sweep", "fmnist_resnet9", "--grid", "optimizer=adam regularization=wd", *NO_NESTEROV],
        # lr in one group does not cover the group that sets the optimizer
        [
            "sweep",
            "fmnist_resnet9",
            *NO_NESTEROV,
            "--grid",
            "lr=0.1,0.4",
            "--grid",
            "optimizer=adam",
        ],
    ],
)
def test_a_recipe_lr_is_not_carried_to_an_optimizer_of_another_family(tmp_path, capsys, argv):
    # fmnist_resnet9 sets lr 0.2 for SGD-momentum; Adam at 0.2 is 200x its default (a run.sh once
    # trained its zero-shot Adam cells so). Refused before any work, nothing written.
    out = tmp_path / "runs" / "new"
    status = cli.main([*argv, "--out", str(out)])
    err = capsys.readouterr().err
    assert status == 2 and len(_one_paragraph(err)) == 1
    assert "optimizer=adam would train at lr 0.2, which recipe 'fmnist_resnet9' sets" in err
    assert "default lr 0.001" in err and "lr=none" in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "grid",
    [
        "optimizer=adam regularization=wd lr=1e-3",
        "optimizer=adam regularization=wd lr=none",
        "optimizer=sgdm,sgd regularization=wd",  # the same family: the recipe's lr is meant for it
    ],
)
def test_a_named_lr_or_the_same_family_passes_the_check(capsys, grid):
    argv = ["sweep", "fmnist_resnet9", "--grid", grid, *NO_NESTEROV, "--estimate"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    assert "keras-wrs sweep --estimate" in capsys.readouterr().out
