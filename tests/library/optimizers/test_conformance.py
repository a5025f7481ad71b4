"""Keras's own optimizer tests, run against the keras-wrs classes with rescaling off.

The test files ship in the Keras wheel (`keras/src/optimizers/*_test.py`).
Each is loaded here as a private copy whose optimizer classes are keras-wrs
twins (`keras_wrs.optimizers.X` with `rescale=[]` as default): the names the
file imports, the `optimizers` namespace its tests read, and the classes its
parameter lists hold when the file is loaded. Keras's own modules are left
untouched. The backend is whatever `KERAS_BACKEND` says; tests Keras marks as
backend-specific skip with Keras's reason.
"""

import contextlib
import importlib.util
import os
import types

import keras
import keras.src.optimizers as kopt
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
NEEDS_TENSORFLOW = {"multi_optimizer_test.MultiOptimizerTest.test_tensorboard_logging_with_multi_optimizer"}
# Files for the project's own classes run by default; the rest (Keras's
# generic optimizer tests, sparse updates, wrappers, the other optimizers)
# under the `slow` marker.
DEFAULT = {"sgd_test", "adam_test", "adamw_test", "rmsprop_test", "nadam_test", "lion_test", "lamb_test"}


def _twin(name):
    """`keras_wrs.optimizers.<name>` with `rescale=[]` unless given, registered apart."""
    parent = getattr(wo, name)

    def __init__(self, *args, rescale=(), **kwargs):
        parent.__init__(self, *args, rescale=list(rescale) if isinstance(rescale, tuple) else rescale, **kwargs)

    cls = type(name, (parent,), {"__init__": __init__, "__module__": __name__})
    return keras.saving.register_keras_serializable(package="keras_wrs_conformance", name=name)(cls)


# Keras optimizers with a keras-wrs twin of the same name.
TWINS = {n: _twin(n) for n in keras_twins.__all__}


@contextlib.contextmanager
def _keras_optimizers_replaced():
    """While a test file loads: Keras's optimizer names resolve to the twins."""
    saved = []
    for name, twin in TWINS.items():
        home = importlib.import_module(getattr(keras.optimizers, name).__module__)
        for module in [home] + ([kopt] if hasattr(kopt, name) else []):
            saved.append((module, name, getattr(module, name)))
            setattr(module, name, twin)
    try:
        yield
    finally:
        for module, name, value in reversed(saved):
            setattr(module, name, value)


def _load(stem):
    spec = importlib.util.find_spec(f"keras.src.optimizers.{stem}")
    module = importlib.util.module_from_spec(spec)
    module.__name__ = f"{__name__}.keras_{stem}"
    with _keras_optimizers_replaced():
        spec.loader.exec_module(module)
    if isinstance(getattr(module, "optimizers", None), types.ModuleType):
        # Tests that read `optimizers.X` when they run see the twins too.
        module.optimizers = types.SimpleNamespace(**{**vars(kopt), **TWINS})
    return module


def _stems():
    folder = os.path.dirname(kopt.__file__)
    return sorted(f[:-3] for f in os.listdir(folder) if f.endswith("_test.py"))


def _collect():
    import unittest

    found = {}
    for stem in _stems():
        if stem in REFUSED:
            continue
        module = _load(stem)
        for attr, obj in vars(module).items():
            if isinstance(obj, type) and issubclass(obj, unittest.TestCase) and obj.__module__ == module.__name__:
                for test, reason in DIFFERENT.items():
                    where, _, method = test.rpartition(".")
                    if where == f"{stem}.{attr}":
                        setattr(obj, method, pytest.mark.xfail(strict=True, reason=reason)(getattr(obj, method)))
                for test in NEEDS_TENSORFLOW:
                    where, _, method = test.rpartition(".")
                    if where == f"{stem}.{attr}" and importlib.util.find_spec("tensorflow") is None:
                        skip = pytest.mark.skip(reason="Keras's test uses the TensorBoard callback, which needs TensorFlow")
                        setattr(obj, method, skip(getattr(obj, method)))
                if stem not in DEFAULT:
                    obj = pytest.mark.slow(obj)
                found[f"TestKeras_{stem}_{attr}"] = obj
    return found


globals().update(_collect())


def test_refused_files_exist_and_their_optimizers_are_refused():
    assert REFUSED | DEFAULT <= set(_stems())
    for name in ("Ftrl", "ScheduleFreeAdamW"):
        with pytest.raises(ValueError, match="refuses"):
            wo.wrs(getattr(keras.optimizers, name))
