"""Automatic selection against the numerical check on stock keras.applications models.

For each architecture (weights=None, small inputs) the graph walk's selection
is compared with `verify_scale_invariance(variables="all")`, which scales
every Conv/Dense kernel's filters and watches the training-mode output. The
check runs at perturbed weights: at initialization biases and BatchNorm
offsets are 0, which makes some paths look invariant that are not (a bias
followed by zero padding, for instance). Dropout is switched off by the
verifier. Expected: no false positive (a selected kernel that is not
invariant), and every false negative listed with its reason.
"""

import keras
import numpy as np
import pytest

import keras_wrs

# name -> (input size, constructor arguments, {kernel path: why the walk
# does not select it although the check finds it invariant})
APPS = {
    "MobileNet": (32, {"alpha": 0.25}, {}),
    "MobileNetV3Small": (64, {"alpha": 0.75}, {}),
    "MobileNetV2": (64, {"alpha": 0.35}, {}),
    "EfficientNetB0": (64, {}, {}),
    "DenseNet121": (32, {}, {}),
    "ResNet50": (64, {}, {}),
    "ResNet50V2": (64, {}, {}),
    "NASNetMobile": (32, {}, {}),
}
DEFAULT = "MobileNet"  # the cheapest (depthwise separable); the others run under `slow`


def _perturbed(model, seed=0):
    """Non-zero biases and BatchNorm offsets, scales away from 1."""
    rng = np.random.default_rng(seed)
    for v in model.trainable_variables:
        if len(v.shape) == 1:
            shift = 1.0 if v.path.endswith("gamma") else 0.0
            v.assign((shift + rng.normal(0.3, 0.5, size=v.shape)).astype(v.dtype))
    return model


def _compare(name):
    size, kwargs, known = APPS[name]
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3), classes=5, **kwargs)
    _perturbed(model)
    x = np.random.default_rng(1).normal(size=(16, size, size, 3)).astype("float32")
    selected = {s.path for s in keras_wrs.select_scale_invariant(model)}
    report = keras_wrs.verify_scale_invariance(model, x, variables="all")
    invariant = {r.path for r in report.results if r.invariant}
    assert selected - invariant == set(), f"false positives:\n{report}"
    assert invariant - selected == set(known), f"unexplained false negatives:\n{report}"
    assert len(selected) > len(report.results) // 2
    return selected, report


# The graph walk is the same on every backend; the numerical check's float32
# error is not: on JAX, MobileNet's stride-2 depthwise blocks at 32x32 move by
# 2e-3 (rtol 1e-3) under a rescale that TensorFlow reproduces to 1e-5. So the
# comparison runs on TensorFlow, where its tolerance is tight.
@pytest.mark.tensorflow_only
@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=() if n == DEFAULT else pytest.mark.slow) for n in APPS]
)
def test_selection_equals_the_numerical_check(name):
    _compare(name)


@pytest.mark.slow
def test_densenet_concatenated_kernels_are_selected():
    """Every `conv*_block*_2_conv` reaches BatchNorm only through a channel-axis
    Concatenate, where each filter's channel keeps its own BN channel."""
    selected, report = _compare("DenseNet121")
    second = {r.path for r in report.results if r.path.endswith("_2_conv/kernel")}
    assert len(second) == 58 and second <= selected
