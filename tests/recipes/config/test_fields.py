"""Config fields: typed `--set` parsing, type checks, fixes named in errors."""

import dataclasses
from pathlib import Path

import pytest

from keras_wrs.recipes import config as cfg

BASE = cfg.get_recipe("digits")


@pytest.mark.parametrize(
    "assignment,words",
    [
        ("epochs=3.0", r"`epochs` must be an integer \(e.g. --set epochs=3\)"),
        ("epochs=three", "`epochs` must be an integer"),
        ("step_epochs=5", r"`step_epochs` must be a list \(e.g. --set step_epochs=\[60,120\]\)"),
        ('step_epochs=["a"]', "`step_epochs` must be a list of numbers"),
        (
            "model_kwargs.bogus=3",
            "`model_kwargs.bogus` is not an argument of model 'small_cnn'. "
            "Valid: bn_momentum, head, name, width",
        ),
        (
            "optimizer_kwargs.bogus=1",
            "`optimizer_kwargs.bogus` is not an argument of keras.optimizers.SGD",
        ),
        ("dynamics=maybe", "`dynamics` must be true or false"),
        ("plots=2", "`plots` must be true or false"),
        ("lr=fast", "`lr` must be a number"),
        ("noise_kernels=[1]", "`noise_kernels` must be a list of layer names"),
        ("model_kwargs=3", "`model_kwargs` must be a JSON object"),
    ],
)
def test_bad_values_are_errors_naming_field_and_fix(assignment, words):
    with pytest.raises(ValueError, match=words):
        cfg.validate(cfg.override(BASE, [assignment]))


@pytest.mark.parametrize(
    "assignment,field,value",
    [
        ("plots=False", "plots", False),
        ("plots=no", "plots", False),
        ("tensorboard=TRUE", "tensorboard", True),
        ("augment=none", "augment", "none"),
        ("regularization=none", "regularization", "none"),
        ("lr=none", "lr", None),
        ("lr=1", "lr", 1.0),
        ("epochs=4", "epochs", 4),
        ("step_epochs=[2,3]", "step_epochs", (2, 3)),
        ("target_norm=initial", "target_norm", "initial"),
        ("target_norm=2", "target_norm", 2),
        ("noise_kernels=stem_conv/kernel", "noise_kernels", ("stem_conv/kernel",)),
        ("wrs_other_decay=false", "wrs_other_decay", False),
    ],
)
def test_values_parse_by_field_type(assignment, field, value):
    config = cfg.validate(cfg.override(BASE, [assignment]))
    got = getattr(config, field)
    assert got == value and type(got) is type(value)


def test_python_configs_are_type_checked_too():
    for field, value, words in (
        ("plots", "False", "`plots` must be true or false"),
        ("epochs", 3.0, "`epochs` must be an integer"),
        ("epochs", True, "`epochs` must be an integer"),
        ("lr", "0.1", "`lr` must be a number"),
    ):
        with pytest.raises(ValueError, match=words):
            cfg.validate(dataclasses.replace(BASE, **{field: value}))


def test_short_runs_name_the_set_to_change():
    with pytest.raises(ValueError, match=r"--set warmup_epochs=0\."):
        cfg.validate(dataclasses.replace(BASE, epochs=1))
    with pytest.raises(ValueError, match=r"--set warmup_epochs=0\.5"):
        cfg.validate(dataclasses.replace(BASE, epochs=2))
    cifar = cfg.get_recipe("cifar10_resnet20")
    with pytest.raises(ValueError, match=r"--set step_epochs=\[\d+,\d+\]") as err:
        cfg.validate(dataclasses.replace(cifar, epochs=30))
    fix = str(err.value).split("step_epochs=")[-1].rstrip(".")
    cfg.validate(cfg.override(dataclasses.replace(cifar, epochs=30), [f"step_epochs={fix}"]))


def test_every_recipe_validates_and_fmnist_recipes_follow_the_protocol():
    for recipe in cfg.RECIPES.values():
        cfg.validate(recipe)
    for name in ("fmnist_resnet20", "fmnist_wrn16_4", "fashion_mnist_small"):
        r = cfg.get_recipe(name)
        assert (r.dataset, r.augment, r.pad, r.optimizer) == (
            "fashion_mnist",
            "crop_flip",
            4,
            "sgdm",
        )
        assert r.weight_decay == 5e-4 and r.lr is None  # sgdm default 0.1
    rgb = cfg.get_recipe("fashion_mnist_rgb")
    assert rgb.channels == 3 and rgb.noise_kernels == ("stem_conv/kernel",)


def test_user_model_builder_by_path(tmp_path, monkeypatch):
    (tmp_path / "my_nets.py").write_text(
        "import keras\n"
        "def tiny(input_shape, num_classes, width=4, kernel_regularizer=None):\n"
        "    x = keras.Input(input_shape)\n"
        "    y = keras.layers.Conv2D(width, 3, use_bias=False)(x)\n"
        "    y = keras.layers.BatchNormalization()(y)\n"
        "    y = keras.layers.GlobalAveragePooling2D()(y)\n"
        "    return keras.Model(x, keras.layers.Dense(num_classes)(y))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    config = cfg.validate(cfg.override(BASE, ["model=my_nets:tiny", "model_kwargs.width=6"]))
    from keras_wrs.recipes import models
    from keras_wrs.recipes.training.optim import coverage

    model = models.build_model(config.model, (8, 8, 1), 10, **config.model_kwargs)
    cover = coverage(model, True)
    assert cover["kernels"] == 1 and cover["kernel_params"] == 9 * 6
    assert cover["trainable_params"] == 54 + 12 + 6 * 10 + 10
    with pytest.raises(ValueError, match="`model_kwargs.depth` is not an argument"):
        cfg.validate(cfg.override(config, ["model_kwargs.depth=3"]))
    with pytest.raises(ValueError, match="has no function 'nope'"):
        cfg.validate(cfg.override(BASE, ["model=my_nets:nope"]))
    with pytest.raises(ValueError, match="module 'not_a_module_x' does not import"):
        cfg.validate(cfg.override(BASE, ["model=not_a_module_x:f"]))


def test_coverage_of_the_shipped_networks():
    """WRN pre-activation blocks feed conv2 and shortcuts into an Add, not a BN."""
    from keras_wrs.recipes import models
    from keras_wrs.recipes.training.optim import coverage

    wrn = coverage(models.build_model("wrn16_4", (28, 28, 1), 10), True)
    assert wrn["kernels"] == 7 and wrn["kernel_params"] == 1_152_144
    assert wrn["trainable_params"] == 2_748_602
    r20 = coverage(models.build_model("resnet20", (32, 32, 3), 10), False)
    assert r20["kernels"] == 19 and r20["param_fraction"] > 0.99 and not r20["applied"]


def _cli_config(argv):
    from keras_wrs.recipes import cli

    return cli._build_config(cli.build_parser().parse_args(argv))


def test_smoke_keeps_explicit_epochs_and_sets():
    assert _cli_config(["train", "--smoke"]).epochs == 2
    config = _cli_config(["train", "--smoke", "--epochs", "7", "--set", "batch_size=8"])
    assert (config.epochs, config.batch_size, config.steps_per_epoch) == (7, 8, 2)


def test_resume_of_a_missing_directory_is_an_error(tmp_path, capsys):
    from keras_wrs.recipes import cli

    status = cli.main(
        [
            "train",
            "--smoke",
            "--regularization",
            "wrs",
            "--resume",
            "--out",
            str(tmp_path / "never-ran"),
        ]
    )
    err = capsys.readouterr().err
    assert status == 2 and "no run to continue" in err and "Drop --resume" in err
    assert not (tmp_path / "never-ran").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["list"],
        ["train", "--set", "epochs=3.0"],
        ["compare", "--set", "dynamics=maybe"],
        ["sweep", "--grid", "lr=fast"],
    ],
)
def test_list_and_usage_errors_load_no_backend(argv):
    """`list` and bad config values answer without importing Keras or TensorFlow."""
    import shutil
    import subprocess
    import sys

    script = shutil.which("keras-wrs") or str(Path(sys.executable).parent / "keras-wrs")
    done = subprocess.run(
        [sys.executable, "-X", "importtime", script, *argv],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == (0 if argv == ["list"] else 2), done.stderr[-2000:]
    imported = {
        line.rsplit("|", 1)[-1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert not imported & {"keras", "tensorflow", "jax", "torch"}
    if argv != ["list"]:
        assert "must be" in done.stderr


def test_describe_rescaling_states_the_coverage():
    """WRN-16-4: conv2 and shortcut convs feed an Add, so 7 kernels, 1.15M of 2.75M."""
    import keras_wrs
    from keras_wrs.recipes.models import build_model

    model = build_model("wrn16_4", (28, 28, 1), 10)
    text = keras_wrs.describe_rescaling(keras_wrs.optimizers.SGD(0.1, rescale=model))
    assert "rescales 7 kernel(s)" in text
    assert "Coverage: 1,152,144 of the model's 2,748,602 trainable parameters (41.9%)" in text
