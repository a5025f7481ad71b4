"""Selection on the models people train, against the brute-force twin.

Stock `keras.applications` and KerasHub task models (tests/support/zoo.py:
constructor arguments of their presets, random weights, small inputs). For
each, the selected kernels must equal the kernels whose filters the
brute-force twin (one forward pass per kernel, tests/support/invariance.py)
finds invariant, less those the model's outputs do not depend on (left out
with that reason). No false positive, no false negative. The cheapest model
of each kind runs by default; the others are `slow`.
"""

import numpy as np
import pytest
from support import zoo
from support.invariance import RTOL, brute_force_changes, random_batch

import keras_wrs
from keras_wrs.selection import excluded_kernels

HUB_DEFAULT = ("ResNet18 v1, BatchNorm frozen", "MobileNetV3, 2 stacks")
APPS_DEFAULT = ("MobileNet",)
NO_GRADIENT = "the model's outputs do not depend on it"


def compare(name):
    """`(selected, invariant, unused, changes)` for the model called `name`."""
    model = zoo.build(name)
    size = (zoo.HUB.get(name) or zoo.APPLICATIONS[name])[0]
    changes = brute_force_changes(model, random_batch(model, 8, size))
    invariant = {p for p, rel in changes.items() if rel <= RTOL}
    try:
        selected = {s.path for s in keras_wrs.select_scale_invariant(model)}
    except ValueError:
        selected = set()
    unused = {s.path for s in excluded_kernels(model) if NO_GRADIENT in s.reason}
    return selected, invariant, unused, changes


def _check(name):
    selected, invariant, unused, changes = compare(name)
    assert selected - invariant == set(), {p: changes[p] for p in selected - invariant}
    assert invariant - unused - selected == set(), {p: changes[p] for p in invariant - selected}
    return selected, invariant, unused


def _params(names, default):
    return [pytest.param(n, marks=() if n in default else pytest.mark.slow) for n in names]


@pytest.mark.parametrize("name", _params(zoo.APPLICATIONS, APPS_DEFAULT))
def test_keras_applications(name):
    if name == "ConvNeXtTiny":
        # LayerNormalization: no per-filter invariance. Five depthwise kernels move
        # the outputs by less than the twin's threshold through the residual stream
        # (benchmarks/selection_coverage_results.md); their radial derivatives do not vanish.
        selected, invariant, _, _ = compare(name)
        assert selected == set()
        assert all(p.endswith("depthwise_conv/kernel") for p in invariant)
        return
    selected, _, _ = _check(name)
    assert selected


@pytest.mark.skipif(not zoo.hub_available(), reason="keras-hub is not installed")
@pytest.mark.parametrize("name", _params(zoo.HUB, HUB_DEFAULT))
def test_keras_hub(name):
    selected, invariant, unused = _check(name)
    if name == HUB_DEFAULT[0]:  # every BatchNorm frozen: nothing is invariant under fit
        assert selected == invariant == set()
        reasons = [s.reason for s in excluded_kernels(zoo.build(name))]
        assert sum("frozen (trainable=False)" in r for r in reasons) == 20
    else:
        assert selected


@pytest.mark.slow
def test_densenet_concatenated_kernels_are_selected():
    """Every `conv*_block*_2_conv` reaches BatchNorm only through a channel-axis
    Concatenate, where each filter's channel keeps its own BN channel."""
    selected, _, _ = _check("DenseNet121")
    second = {p for p in selected if p.endswith("_2_conv/kernel")}
    assert len(second) == 58


def test_selection_is_reproducible():
    model = zoo.build(APPS_DEFAULT[0])
    first = [(s.path, s.reason) for s in keras_wrs.select_scale_invariant(model)]
    np.testing.assert_equal(
        first,
        [(s.path, s.reason) for s in keras_wrs.select_scale_invariant(zoo.build(APPS_DEFAULT[0]))],
    )
