"""KerasHub classifiers in the recipes: built at the recipe's size, trained with WD and WRS.

WRS must rescale exactly the kernels that the brute-force twin
(tests/support/invariance.py: one forward pass per kernel) finds
scale-invariant in the trained model. ResNet-18 on digits runs by default;
the three models on Fashion-MNIST are `slow`.
"""

import dataclasses
import json
import sys

import keras
import numpy as np
import pytest
from support.invariance import RTOL, brute_force_changes, random_batch

import keras_wrs
from keras_wrs.recipes import config as cfg
from keras_wrs.recipes import hub_models, models
from keras_wrs.recipes.training.train import RunSetupError, train

HUB = ("hub_resnet18", "hub_mobilenetv3_small", "hub_efficientnetv2_b0")
NO_GRADIENT = "the model's outputs do not depend on it"


def _hub():
    pytest.importorskip("keras_hub")


def _check_selection(run_dir):
    """The trained model's WRS selection equals the twin's invariant set."""
    model = keras_wrs.load_model(run_dir / "model.keras")
    rescaled = {s.path for s in model.optimizer.rescale_selection}
    changes = brute_force_changes(model, random_batch(model, 8))
    invariant = {p for p, rel in changes.items() if rel <= RTOL}
    unused = {
        s.path for s in keras_wrs.selection.excluded_kernels(model) if NO_GRADIENT in s.reason
    }
    assert rescaled, "WRS rescales nothing"
    assert rescaled - invariant == set(), {p: changes[p] for p in rescaled - invariant}
    assert invariant - unused - rescaled == set(), {p: changes[p] for p in invariant - rescaled}
    return model, rescaled


@pytest.mark.parametrize(
    "name", [HUB[0], *(pytest.param(n, marks=pytest.mark.slow) for n in HUB[1:])]
)
def test_builds_at_the_recipe_sizes_with_float32_logits(name):
    _hub()
    for shape in ((28, 28, 1), (8, 8, 1)):
        model = models.build_model(name, shape, 10)
        y = model(np.zeros((2, *shape), "float32"), training=False)
        assert tuple(y.shape) == (2, 10) and keras.backend.standardize_dtype(y.dtype) == "float32"
        assert model.get_layer("logits").activation is keras.activations.linear


def test_l2_regularizes_every_kernel():
    _hub()
    model = models.build_model(
        "hub_resnet18", (8, 8, 1), 10, kernel_regularizer=keras.regularizers.L2(0.5)
    )
    kernels = [v for v in model.trainable_variables if v.name == "kernel"]
    assert len(kernels) == 21  # 20 convolutions and the head
    x = np.zeros((1, 8, 8, 1), "float32")
    model(x)
    expected = sum(0.5 * float(np.sum(keras.ops.convert_to_numpy(v) ** 2)) for v in kernels)
    assert float(sum(keras.ops.convert_to_numpy(loss) for loss in model.losses)) == pytest.approx(
        expected, rel=1e-5
    )


def test_missing_keras_hub_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "keras_hub", None)  # `import keras_hub` fails
    with pytest.raises(cfg.MissingExtraError, match=r'pip install "keras-wrs\[hub\]"'):
        hub_models.hub_resnet18((8, 8, 1), 10)


def test_resnet18_trains_with_wrs_and_rescales_the_invariant_kernels(tmp_path):
    _hub()
    config = dataclasses.replace(
        cfg.smoke(cfg.RECIPES["digits"]),
        model="hub_resnet18",
        model_kwargs={},
        dynamics=False,
        tensorboard=False,
    )
    summary = train(config, tmp_path, verbose=0)
    assert 0.0 <= summary["test_accuracy"] <= 1.0
    model, rescaled = _check_selection(tmp_path)
    assert len(rescaled) == 20  # every convolution feeds a BatchNormalization
    resolved = json.loads((tmp_path / "config.json").read_text())
    assert resolved["rescaling"]["kernels"] == 20
    for s in model.optimizer.rescale_selection:
        norms = np.linalg.norm(
            keras.ops.convert_to_numpy(s.variable).reshape(-1, s.variable.shape[-1]), axis=0
        )
        np.testing.assert_allclose(norms, 1.0, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("regularization", ["wd", "wrs"])
@pytest.mark.parametrize("name", HUB)
def test_fashion_mnist_small_trains_each_hub_model(name, regularization, tmp_path):
    """`keras-wrs train fashion_mnist_small --set model=<name>`, on 320 images."""
    _hub()
    config = dataclasses.replace(
        cfg.RECIPES["fashion_mnist_small"],
        model=name,
        model_kwargs={},
        regularization=regularization,
        train_examples=320,
        epochs=1,
        warmup_epochs=0.0,
        jit_compile=False,
        dynamics=False,
        tensorboard=False,
        plots=False,
    )
    summary = train(config, tmp_path, verbose=0)
    assert np.isfinite(summary["test_loss"])
    if regularization == "wrs":
        _check_selection(tmp_path)


def test_choosing_another_model_drops_the_recipe_model_kwargs():
    """`--set model=hub_resnet18` on fashion_mnist_small (whose model_kwargs are ResNet-8's)."""
    base = cfg.get_recipe("fashion_mnist_small")
    assert base.model_kwargs == {"width": 8}
    switched = cfg.override(base, ["model=hub_resnet18", "regularization=wrs"])
    assert switched.model_kwargs == {}
    cfg.validate(switched)
    assert cfg.override(base, ["model=resnet8"]).model_kwargs == {"width": 8}  # the same model
    assert cfg.override(base, ["model=resnet20", "model_kwargs.width=4"]).model_kwargs == {
        "width": 4
    }
    with pytest.raises(ValueError, match=r"`model_kwargs.width` is not an argument of model"):
        cfg.validate(dataclasses.replace(base, model="hub_resnet18"))


def test_a_noise_kernel_named_inside_a_subclassed_block_is_refused_before_training(tmp_path):
    _hub()
    config = dataclasses.replace(
        cfg.smoke(cfg.RECIPES["digits"]),
        model="hub_mobilenetv3_small",
        model_kwargs={},
        noise_kernels=("block_0_0/block_0_0_conv1/kernel",),
    )
    with pytest.raises(RunSetupError, match=r"inside a subclassed layer.*--set dynamics=false"):
        train(config, tmp_path / "run", verbose=0)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow  # 47 s: dynamics on every step of a 54-kernel model (the library's test is fast)
def test_dynamics_measure_the_noise_of_the_kernels_in_the_models_graph(tmp_path):
    # MobileNetV3-Small: 1 of its 34 rescaled kernels (the stem) is a layer of the
    # model's graph; the 33 inside its blocks are skipped by the noise measurement
    # and still measured by WeightDynamics.
    _hub()
    config = dataclasses.replace(
        cfg.smoke(cfg.RECIPES["digits"]), model="hub_mobilenetv3_small", model_kwargs={}
    )
    train(config, tmp_path / "run", verbose=0)
    history = (tmp_path / "run" / "history.csv").read_text().splitlines()[0].split(",")
    assert "noise_ratio_mean/input_conv" in history
    assert not [k for k in history if k.startswith("noise_") and "block_" in k]
    assert "norm_mean/block_0_0_conv1" in history
