"""Across Keras backends: equal WRS trajectories, and a `.keras` file that travels.

Each backend runs in its own interpreter (`tests/_backend_run.py`), because
Keras picks its backend once per process. The interpreter for a backend is
`$KERAS_WRS_PYTHON_<BACKEND>` (e.g. `KERAS_WRS_PYTHON_JAX=venv-jax/bin/python`)
if set, else this one if it has the backend's package; a backend with
neither is skipped, with the reason. `.ci/run` sets the variables to its
JAX and PyTorch venvs.

Tolerance: the runs share initial weights, batches and hyperparameters, so
they differ only by each backend's float32 kernels (convolution and
reduction order). Measured: after 8 steps the largest difference is 1.7e-6
(PyTorch) and 8.7e-6 (TensorFlow) of the array's largest entry, against
JAX; the bound is 1e-4 of it, while the weights move by about 0.8.
"""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from support import WORKERS

pytestmark = pytest.mark.slow

WORKER = WORKERS / "backend_run.py"
BACKENDS = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
RTOL_OF_MAX = 1e-4


def python_for(backend):
    """The interpreter that runs `backend`, or None."""
    given = os.environ.get(f"KERAS_WRS_PYTHON_{backend.upper()}")
    if given:
        return given
    return sys.executable if importlib.util.find_spec(BACKENDS[backend]) else None


def run(backend, *args):
    python = python_for(backend)
    if python is None:
        pytest.skip(
            f"{backend} is not installed here and KERAS_WRS_PYTHON_{backend.upper()} is not set"
        )
    env = {
        **os.environ,
        "KERAS_BACKEND": backend,
        "JAX_PLATFORMS": "cpu",
        "CUDA_VISIBLE_DEVICES": "",
    }
    done = subprocess.run(
        [python, str(WORKER), *map(str, args)], env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, f"{backend} run failed:\n{done.stderr[-3000:]}"


def assert_close_to(reference, other, keys, label):
    for key in keys:
        scale = np.abs(reference[key]).max()
        np.testing.assert_allclose(
            other[key], reference[key], rtol=0, atol=RTOL_OF_MAX * scale, err_msg=f"{label} {key}"
        )


@pytest.fixture(scope="module")
def available():
    found = [b for b in BACKENDS if python_for(b)]
    if len(found) < 2:
        pytest.skip(
            f"needs two backends; found only {', '.join(found) or 'none'} "
            f"(set KERAS_WRS_PYTHON_JAX / _TORCH / _TENSORFLOW)"
        )
    return found


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, available):
    path = tmp_path_factory.mktemp("backends")
    run(available[0], "init", "-", path / "init.npz")
    return path


@pytest.fixture(scope="module")
def trajectories(workdir, available):
    found = {}
    for backend in available:
        run(backend, "trajectory", workdir / "init.npz", workdir / f"{backend}.npz")
        found[backend] = np.load(workdir / f"{backend}.npz")
    return found


def _steps(arrays):
    return [k for k in arrays.files if k.startswith("step")]


def test_wrs_trajectories_agree_across_backends(trajectories, workdir):
    (first, reference), *others = trajectories.items()
    keys = _steps(reference)
    assert len(keys) == 8 * 12  # 8 steps x every variable
    for backend, arrays in others:
        assert str(arrays["backend"]) == backend
        assert_close_to(reference, arrays, keys, f"{backend} vs {first}:")
    init = np.load(workdir / "init.npz")
    paths = list(reference["paths"])
    for backend, arrays in trajectories.items():
        for j, path in enumerate(paths):
            if path in ("c0/kernel", "c1/kernel"):  # rescaled: unit filters
                w = arrays[f"step8/{j}"]
                norms = np.sqrt((w.reshape(-1, w.shape[-1]) ** 2).sum(0))
                np.testing.assert_allclose(norms, 1.0, rtol=1e-5, err_msg=backend)
        moved = max(np.abs(arrays[f"step8/{j}"] - init[f"w{j}"]).max() for j in range(len(paths)))
        assert moved > 0.1, backend


def test_keras_file_from_jax_continues_and_exports_under_tensorflow(trajectories, workdir):
    for backend in ("jax", "tensorflow"):
        if backend not in trajectories:
            pytest.skip(f"needs jax and tensorflow; {backend} is not available")
    if python_for("tensorflow") == sys.executable:
        pytest.importorskip("tf2onnx", reason="the export extra is not installed")
    model = workdir / "jax4.keras"
    run("jax", "save", workdir / "init.npz", model, "--steps", 4)
    export = workdir / "export"
    run("tensorflow", "resume", model, workdir / "tf_resumed.npz", "--steps", 4, "--export", export)
    resumed = np.load(workdir / "tf_resumed.npz")
    assert int(resumed["resumed_at"]) == 4 and float(resumed["target_norm"]) == 1.0
    # Steps 5..8 on TensorFlow from JAX's file equal JAX's own steps 5..8:
    # weights, BatchNorm statistics and optimizer state travel in the file.
    jax = trajectories["jax"]
    assert_close_to(
        jax,
        resumed,
        [k for k in _steps(jax) if int(k[4:].split("/")[0]) > 4],
        "jax file resumed on tensorflow vs jax:",
    )
    assert (export / "saved_model").is_dir() and (export / "model.onnx").is_file()
    manifest = json.loads((export / "export.json").read_text())
    checks = [c for a in manifest["artifacts"].values() for c in a["parity"]]
    assert checks and all(c["passed"] for c in checks)
