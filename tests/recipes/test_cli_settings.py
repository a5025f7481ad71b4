"""One rule for a field named twice on the command line: a conflict is refused."""

import pytest

from keras_wrs.recipes import cli
from keras_wrs.recipes import config as cfg


def _config(argv):
    return cli._build_config(cli.build_parser().parse_args(argv))


@pytest.mark.parametrize(
    "argv,words",
    [
        (
            ["train", "--regularization", "wrs", "--set", "regularization=wd"],
            "--regularization sets regularization='wrs' but --set gives regularization='wd'",
        ),
        (
            ["train", "--optimizer", "adam", "--set", "optimizer=sgd"],
            "--optimizer sets optimizer='adam' but --set gives optimizer='sgd'",
        ),
        (
            ["train", "--xla", "--set", "jit_compile=false"],
            "--xla sets jit_compile=True but --set gives jit_compile=False",
        ),
        (["train", "--epochs", "3", "--set", "epochs=4"], "--epochs sets epochs=3"),
        (["compare", "--set", "optimizer=sgd"], "conflicts with --optimizers"),
        (["compare", "--set", "seed=3"], "conflicts with --seeds"),
        (
            ["train", "--regularization", "wd,wrs", "--set", "regularization=wd"],
            "conflicts with --regularization",
        ),
        (
            ["sweep", "--grid", "lr=0.1,0.2", "--set", "lr=0.3"],
            "--set lr=... conflicts with --grid",
        ),
    ],
)
def test_a_conflict_is_refused_naming_both(argv, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        _config(argv)


def test_the_same_value_twice_is_not_a_conflict():
    config = _config(
        ["train", "--epochs", "3", "--set", "epochs=3", "--xla", "--set", "jit_compile=true"]
    )
    assert config.epochs == 3 and config.jit_compile is True


def test_conflicts_exit_2_without_traceback(capsys, tmp_path):
    status = cli.main(
        ["train", "--xla", "--set", "jit_compile=false", "--out", str(tmp_path / "run")]
    )
    err = capsys.readouterr().err
    assert status == 2 and "a field is set once" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_set_regularization_alone_makes_one_run(capsys, tmp_path):
    out = tmp_path / "run"
    status = cli.main(
        [
            "train",
            "--smoke",
            "--set",
            "regularization=wd",
            "--set",
            "tensorboard=false",
            "--verbose",
            "0",
            "--out",
            str(out),
        ]
    )
    assert status == 0, capsys.readouterr().err
    assert (out / "config.json").is_file()  # one run, not a wd,wrs grid
    assert "wd / sgdm: test accuracy" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["--epochs", "99999999999999999999999"],
        ["--seed", "99999999999999999999"],
        ["--set", "target_norm=1e30"],
    ],
)
def test_numbers_too_large_exit_2_without_traceback(argv, capsys, tmp_path):
    status = cli.main(["train", "--smoke", *argv, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert status == 2 and "must be" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_every_keras_optimizer_is_offered(capsys):
    from keras_wrs.recipes.training import optim

    assert cli.main(["list"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("optimizers:"))
    classes = {spec.class_name for spec in optim.OPTIMIZERS.values()}
    assert classes == {
        "SGD",
        "Adam",
        "AdamW",
        "RMSprop",
        "Nadam",
        "Lion",
        "Lamb",
        "Adagrad",
        "Adadelta",
        "Adamax",
        "Adafactor",
        "Muon",
    }
    assert all(name in line for name in optim.OPTIMIZERS)
    for name in optim.OPTIMIZERS:
        cfg.validate(cfg.Config(optimizer=name))
