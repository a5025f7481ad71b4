"""keras-wrs on every Keras backend: importing without TensorFlow, and what asks for it."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from keras import ops
from support.backends import BACKEND, tf_installed

from keras_wrs import _backend
from keras_wrs.dynamics import SpanNoise, WeightDynamics

IMPORT_ALL = (
    "import sys, keras, keras_wrs\n"
    "from keras_wrs import WeightDynamics, SpanNoise, Sharpness, plot_dynamics\n"
    "print(keras.backend.backend(), 'tensorflow' in sys.modules)\n"
)


@pytest.mark.skipif(
    BACKEND == "tensorflow", reason="on its own backend Keras itself loads TensorFlow"
)
@pytest.mark.parametrize("chosen_by", ["KERAS_BACKEND", "keras.json"])
def test_import_loads_no_tensorflow_off_the_tensorflow_backend(tmp_path, chosen_by):
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env["KERAS_HOME"] = str(tmp_path)
    if chosen_by == "KERAS_BACKEND":
        env["KERAS_BACKEND"] = BACKEND
    else:
        (tmp_path / "keras.json").write_text(json.dumps({"backend": BACKEND}))
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    backend, loaded_tf = out.stdout.split()[-2:]
    assert (backend, loaded_tf) == (BACKEND, "False")


@pytest.mark.skipif(tf_installed, reason="TensorFlow is installed: nothing to ask for")
def test_tensorflow_only_features_name_the_extra(tmp_path):
    with pytest.raises(
        ImportError,
        match=r"`log_dir` \(TensorBoard step series.*needs TensorFlow, which is not installed.*keras-wrs\[cpu\]",
    ):
        WeightDynamics(log_dir=str(tmp_path))
    with pytest.raises(ImportError, match=r"keras-wrs\[tf\]"):
        SpanNoise(np.zeros((4, 3), "float32"), log_dir=str(tmp_path))
    with pytest.raises(
        ImportError, match=rf"TFDS data sets needs TensorFlow.*the Keras backend is '{BACKEND}'"
    ):
        _backend.require_tensorflow("TFDS data sets")


def test_float64_scope_computes_in_float64():
    with _backend.float64_scope("float64"):
        x = ops.convert_to_tensor(np.array([1e-12]), "float64")
        got = ops.convert_to_numpy((x + 1.0) - 1.0)
    np.testing.assert_allclose(got, [1e-12], rtol=1e-3)  # float32 would give 0
