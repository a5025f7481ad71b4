"""WRS under Keras's JAX distribution API: DataParallel and ModelParallel on 2 CPU devices.

The training runs in its own process (`tests/jax_dp_worker.py`) with
`KERAS_BACKEND=jax` and `XLA_FLAGS=--xla_force_host_platform_device_count=2`:
the device count is fixed when JAX starts, and the test process may run on
another backend. Skipped where JAX is not installed.

Tolerances: the distributed runs compute the same float32 step as one
device with sums split across devices (partial sums, then an all-reduce), so
results differ from one device's by float32 rounding: observed up to 2.4e-7
after 4 steps; the test allows 1e-5. The norm of each selected filter is 1 to
float32 precision (observed below 2e-7; allowed 1e-6).
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support import WORKERS

pytest.importorskip(
    "jax",
    reason="JAX is not installed in this environment "
    "(`pip install jax` to run Keras's JAX distribution tests)",
)

HERE = Path(__file__).parent
KERNELS = ("c1/kernel", "c2/kernel")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("jax") / "runs.npz"
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
    }
    done = subprocess.run(
        [sys.executable, str(WORKERS / "jax_data_parallel.py"), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return np.load(out)


def _steps(runs, kind):
    names = [str(n) for n in runs[f"{kind}_names"]]
    steps = sorted(
        {
            int(k.split("_")[-2])
            for k in runs.files
            if k.startswith(f"{kind}_") and k.split("_")[-2].isdigit()
        }
    )
    return names, [[runs[f"{kind}_{s}_{i}"] for i in range(len(names))] for s in steps]


@pytest.mark.parametrize(
    "kind, shard",
    [
        ("data", {"c1/kernel": (3, 3, 4, 8), "c2/kernel": (3, 3, 8, 8)}),  # replicated
        ("model_out", {"c1/kernel": (3, 3, 4, 4), "c2/kernel": (3, 3, 8, 4)}),
        ("model_in", {"c1/kernel": (3, 3, 2, 8), "c2/kernel": (3, 3, 4, 8)}),
    ],
)
def test_distributed_wrs_equals_one_device(runs, kind, shard):
    for path, shape in shard.items():  # the layout asked for is the one used
        assert int(runs[f"{kind}_devices_{path}"]) == 2
        assert tuple(runs[f"{kind}_shard_{path}"]) == shape
    names, steps = _steps(runs, kind)
    one_names, one = _steps(runs, "one")
    assert names == one_names and len(steps) == len(one) == 4
    for s, (weights, reference) in enumerate(zip(steps, one, strict=True)):
        for name, w, ref in zip(names, weights, reference, strict=True):
            np.testing.assert_allclose(w, ref, rtol=0, atol=1e-5, err_msg=f"step {s} {name}")
        for path in KERNELS:
            w = weights[names.index(path)].astype(np.float64)
            np.testing.assert_allclose(
                np.sqrt(np.sum(w * w, axis=(0, 1, 2))), 1.0, atol=1e-6, err_msg=f"step {s} {path}"
            )
    # The steps moved the weights: equality is not the initial state twice.
    assert np.max(np.abs(steps[-1][0] - steps[0][0])) > 1e-3
