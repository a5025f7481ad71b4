"""Keras's own optimizer tests, run against the keras-wrs classes with rescaling off.

The test files ship in the Keras wheel (`keras/src/optimizers/*_test.py`).
Each is loaded here as a private copy whose optimizer classes are keras-wrs
twins (`keras_wrs.optimizers.X` with `rescale=[]` as default): the names the
file imports, the `optimizers` namespace its tests read, and the classes its
parameter lists hold when the file is loaded. Keras's own modules are left
untouched. The backend is whatever `KERAS_BACKEND` says; tests Keras marks as
backend-specific skip with Keras's reason.

The toolkit's classes run the same way with their feature off, each through
the file of the Keras class whose step it then is (`TOOLKIT`): `AdamH` with
`rescale=[]` through `adam_test`, `SGDC` and `AdamC` with
`corrected_weight_decay=False` through `sgd_test` and `adamw_test`. `SGDP`
and `AdamP` with `projection=[]` take the `adamp` package's step, which is
not Keras's (`NOT_KERAS_STEPS` says where it differs).
"""

import contextlib
import importlib.util
import os
import types

import keras
import keras.src.optimizers as kopt
import numpy as np
import pytest

from keras_wrs import optimizers as wo
from keras_wrs.optimizers import keras_twins

# Keras test files whose optimizer is refused by `wrs()` (they rebuild the
# weights from their state every step, see `keras_wrs.optimizers._REFUSED`).
REFUSED = {"ftrl_test", "schedule_free_adamw_test"}

# Tests whose outcome differs by design, each with the reason. Marked
# xfail(strict=True): if one starts passing, the list is out of date.
DIFFERENT = {
    "optimizer_test.OptimizerTest.test_get_method": (
        "`optimizers.get('sgd')` returns Keras's own SGD by its string name, "
        "which is no instance of the keras-wrs twin the test compares it with"
    ),
}
# Tests that need TensorFlow installed whatever the backend (Keras's own
# TensorBoard callback writes summaries with it).
NEEDS_TENSORFLOW = {
    "multi_optimizer_test.MultiOptimizerTest.test_tensorboard_logging_with_multi_optimizer"
}
# Files for the project's own classes run by default; the rest (Keras's
# generic optimizer tests, sparse updates, wrappers, the other optimizers)
# under the `slow` marker.
DEFAULT = {
    "sgd_test",
    "adam_test",
    "adamw_test",
    "rmsprop_test",
    "nadam_test",
    "lion_test",
    "lamb_test",
}


def _twin(name):
    """`keras_wrs.optimizers.<name>` with `rescale=[]` unless given, registered apart."""
    parent = getattr(wo, name)

    def __init__(self, *args, rescale=(), **kwargs):
        parent.__init__(
            self, *args, rescale=list(rescale) if isinstance(rescale, tuple) else rescale, **kwargs
        )

    cls = type(name, (parent,), {"__init__": __init__, "__module__": __name__})
    return keras.saving.register_keras_serializable(package="keras_wrs_conformance", name=name)(cls)


# Keras optimizers with a keras-wrs twin of the same name.
TWINS = {n: _twin(n) for n in keras_twins.__all__}


def _feature_off(cls, keras_name, off):
    """`cls` with `off` as default arguments, standing in for Keras's `keras_name`."""

    def __init__(self, *args, **kwargs):
        cls.__init__(self, *args, **{**off, **kwargs})

    twin = type(keras_name, (cls,), {"__init__": __init__, "__module__": __name__})
    name = f"{cls.__name__}Off"
    return keras.saving.register_keras_serializable(package="keras_wrs_conformance", name=name)(
        twin
    )


# The toolkit's classes with their feature off: (the Keras test file of the
# class whose step each then takes, the Keras name it stands in for, the class).
# AdamH's epsilon default is the ports' 1e-8; Keras's Adam has 1e-7.
TOOLKIT = {
    "AdamH": ("adam_test", _feature_off(wo.AdamH, "Adam", {"rescale": [], "epsilon": 1e-7})),
    "SGDC": ("sgd_test", _feature_off(wo.SGDC, "SGD", {"corrected_weight_decay": False})),
    "AdamC": ("adamw_test", _feature_off(wo.AdamC, "AdamW", {"corrected_weight_decay": False})),
}
# Why SGDP and AdamP with `projection=[]` are not run through Keras's files.
NOT_KERAS_STEPS = {
    "SGDP": (
        "the adamp package's SGD step: its momentum buffer accumulates gradients and the "
        "learning rate multiplies the step (Keras's accumulates lr * g: the two part when "
        "the rate changes), it keeps a buffer without momentum (Keras's SGD has none: other "
        "optimizer variables), and it divides weight decay by 1 - momentum"
    ),
    "AdamP": (
        "PyTorch's Adam step: epsilon is added after the bias correction of sqrt(v) "
        "(Keras's Adam adds it before: epsilon * sqrt(1 - beta_2**t) in these terms), the "
        "decoupled decay runs after the projection, and there is no amsgrad"
    ),
}


@contextlib.contextmanager
def _keras_optimizers_replaced(twins):
    """While a test file loads: Keras's optimizer names resolve to `twins`."""
    saved = []
    for name, twin in twins.items():
        home = importlib.import_module(getattr(keras.optimizers, name).__module__)
        for module in [home] + ([kopt] if hasattr(kopt, name) else []):
            saved.append((module, name, getattr(module, name)))
            setattr(module, name, twin)
    try:
        yield
    finally:
        for module, name, value in reversed(saved):
            setattr(module, name, value)


def _load(stem, twins=None, suffix=""):
    twins = TWINS if twins is None else twins
    spec = importlib.util.find_spec(f"keras.src.optimizers.{stem}")
    module = importlib.util.module_from_spec(spec)
    module.__name__ = f"{__name__}.keras_{stem}{suffix}"
    with _keras_optimizers_replaced(twins):
        spec.loader.exec_module(module)
    if isinstance(getattr(module, "optimizers", None), types.ModuleType):
        # Tests that read `optimizers.X` when they run see the twins too.
        module.optimizers = types.SimpleNamespace(**{**vars(kopt), **twins})
    return module


def _stems():
    folder = os.path.dirname(kopt.__file__)
    return sorted(f[:-3] for f in os.listdir(folder) if f.endswith("_test.py"))


def _test_classes(module):
    import unittest

    for attr, obj in vars(module).items():
        if (
            isinstance(obj, type)
            and issubclass(obj, unittest.TestCase)
            and obj.__module__ == module.__name__
        ):
            yield attr, obj


def _collect_toolkit():
    found = {}
    for name, (stem, twin) in TOOLKIT.items():
        module = _load(stem, {twin.__name__: twin}, f"_as_{name}")
        for attr, obj in _test_classes(module):
            found[f"TestKeras_{stem}_{attr}_as_{name}"] = obj
    return found


def _collect():
    import unittest

    found = {}
    for stem in _stems():
        if stem in REFUSED:
            continue
        module = _load(stem)
        for attr, obj in vars(module).items():
            if (
                isinstance(obj, type)
                and issubclass(obj, unittest.TestCase)
                and obj.__module__ == module.__name__
            ):
                for test, reason in DIFFERENT.items():
                    where, _, method = test.rpartition(".")
                    if where == f"{stem}.{attr}":
                        setattr(
                            obj,
                            method,
                            pytest.mark.xfail(strict=True, reason=reason)(getattr(obj, method)),
                        )
                for test in NEEDS_TENSORFLOW:
                    where, _, method = test.rpartition(".")
                    if where == f"{stem}.{attr}" and importlib.util.find_spec("tensorflow") is None:
                        skip = pytest.mark.skip(
                            reason="Keras's test uses the TensorBoard callback, which needs TensorFlow"
                        )
                        setattr(obj, method, skip(getattr(obj, method)))
                if stem not in DEFAULT:
                    obj = pytest.mark.slow(obj)
                found[f"TestKeras_{stem}_{attr}"] = obj
    return found


globals().update(_collect())
globals().update(_collect_toolkit())


def test_refused_files_exist_and_their_optimizers_are_refused():
    assert REFUSED | DEFAULT <= set(_stems())
    for name in ("Ftrl", "ScheduleFreeAdamW"):
        with pytest.raises(ValueError, match="refuses"):
            wo.wrs(getattr(keras.optimizers, name))


def test_the_toolkit_files_load_the_toolkit_classes():
    for name, (stem, twin) in TOOLKIT.items():
        module = _load(stem, {twin.__name__: twin}, f"_as_{name}")
        assert getattr(module, twin.__name__) is twin and issubclass(twin, getattr(wo, name))
    assert set(TOOLKIT) | set(NOT_KERAS_STEPS) == {"SGDP", "AdamP", "AdamH", "SGDC", "AdamC"}


def _run(optimizer, grads, start):
    var = keras.Variable(start)
    for g in grads:
        optimizer.apply([keras.ops.convert_to_tensor(g)], [var])
    return keras.ops.convert_to_numpy(var)


def _relative(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def test_sgdp_without_projection_is_keras_sgd_only_at_a_constant_rate():
    """What `NOT_KERAS_STEPS["SGDP"]` says, measured on eight steps."""
    rng = np.random.default_rng(0)
    start = rng.normal(size=(4, 3)).astype("float32")
    grads = [rng.normal(size=(4, 3)).astype("float32") for _ in range(8)]
    for nesterov in (False, True):
        ours = _run(wo.SGDP(0.1, momentum=0.9, nesterov=nesterov, projection=[]), grads, start)
        keras_sgd = keras.optimizers.SGD(0.1, momentum=0.9, nesterov=nesterov)
        assert _relative(ours, _run(keras_sgd, grads, start)) < 1e-6
    # The decay divided by 1 - momentum: SGDP's wd * (1 - momentum) is Keras's wd.
    ours = _run(wo.SGDP(0.1, momentum=0.9, weight_decay=1e-3, projection=[]), grads, start)
    theirs = _run(keras.optimizers.SGD(0.1, momentum=0.9, weight_decay=1e-2), grads, start)
    assert _relative(ours, theirs) < 1e-6
    halving = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=1, decay_rate=0.5)
    ours = _run(wo.SGDP(halving, momentum=0.9, projection=[]), grads, start)
    theirs = _run(keras.optimizers.SGD(halving, momentum=0.9), grads, start)
    assert _relative(ours, theirs) > 1e-2  # the buffers part when the rate changes


def test_adamp_without_projection_is_keras_adam_but_for_epsilon():
    """What `NOT_KERAS_STEPS["AdamP"]` says: the steps differ by where epsilon goes."""
    rng = np.random.default_rng(1)
    start = rng.normal(size=(4, 3)).astype("float32")
    grads = [1e-3 * rng.normal(size=(4, 3)).astype("float32") for _ in range(8)]
    for epsilon, close in ((1e-12, True), (1e-3, False)):
        ours = _run(wo.AdamP(0.01, epsilon=epsilon, projection=[]), grads, start)
        theirs = _run(keras.optimizers.Adam(0.01, epsilon=epsilon), grads, start)
        assert (_relative(ours, theirs) < 1e-5) is close, epsilon
