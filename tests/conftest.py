"""Shared test setup: two logical CPUs for tf.distribute, and a clean Keras state per test."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import ast
import signal
from pathlib import Path

import keras
import pytest
from support.backends import BACKEND

# Test modules importing one of these at top level run on TensorFlow only:
# TensorFlow, TFDS, and the export stack (SavedModel/ONNX export needs TensorFlow).
_TF_MODULES = (
    "tensorflow",
    "tensorflow_datasets",
    "tf2onnx",
    "onnx",
    "onnxruntime",
    "keras_wrs.export",
)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "tensorflow_only: needs the TensorFlow backend; skipped on the others"
    )


def _imports_tensorflow(path):
    """Whether a test module imports a TensorFlow package at its top level."""
    for node in ast.parse(Path(path).read_text()).body:
        names = (
            [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else []
        )
        if any(n == m or n.startswith(m + ".") for n in names for m in _TF_MODULES):
            return True
    return False


def pytest_ignore_collect(collection_path, config):
    """On JAX and PyTorch, leave out test modules that import TensorFlow."""
    if (
        BACKEND != "tensorflow"
        and collection_path.suffix == ".py"
        and collection_path.name.startswith("test_")
        and _imports_tensorflow(collection_path)
    ):
        return True
    return None


def pytest_collection_modifyitems(config, items):
    """On JAX and PyTorch, skip the tests marked `tensorflow_only`."""
    skip = pytest.mark.skip(reason=f"TensorFlow backend only (KERAS_BACKEND={BACKEND})")
    for item in items:
        if BACKEND != "tensorflow" and "tensorflow_only" in item.keywords:
            item.add_marker(skip)


if BACKEND == "tensorflow":
    import tensorflow as tf

    # Logical devices must be configured before the first TensorFlow op.
    _cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        _cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )


@pytest.fixture(autouse=True)
def _clean_keras_state():
    keras.config.set_dtype_policy("float32")
    # No full garbage collection per test: in a process that has built a
    # thousand models it took 0.5-2.5 s each time (136 of the 316 s of
    # tests/library/optimizers); Python's own collector still runs.
    keras.backend.clear_session(free_memory=False)
    yield
    keras.config.set_dtype_policy("float32")


@pytest.fixture
def interactive_sigint():
    """SIGINT raises KeyboardInterrupt during the test, as in a terminal.

    A shell without job control starts background commands (`cmd &`, `nohup`)
    with SIGINT ignored, and Python then leaves it ignored. Tests of what
    Ctrl-C does set Python's handler for their duration; a child process
    started meanwhile gets SIGINT at its default (exec resets a handler, not
    an ignored signal), so Python in it raises KeyboardInterrupt too.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture(scope="session")
def mirrored_strategy():
    """One MirroredStrategy over the two logical CPUs for the whole session.

    A second MirroredStrategy in the same process aborts its collectives
    ("Shape mismatch in the collective instance"), so tests share this one.
    """
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    assert len(devices) == 2
    return tf.distribute.MirroredStrategy(devices)
