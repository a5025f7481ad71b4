"""The toolkit's benchmark scripts: the cosine-test classification, and smoke runs at tiny sizes."""

import importlib.util
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_wrs.optimizers import AdamP

pytestmark = pytest.mark.tensorflow_only  # the scripts time TensorFlow's compiled steps

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _script(name):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_decision_tells_per_channel_per_layer_and_none_apart():
    agreement = _script("projection_agreement")
    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 3, 2, 4)).astype("float32")
    axes = (0, 1, 2)
    g = rng.normal(size=w.shape).astype("float32")
    # Orthogonal to every output channel: the per-channel test fires.
    per_channel = g - w * (g * w).sum(axes, keepdims=True) / (w * w).sum(axes, keepdims=True)
    # Orthogonal to the kernel as a whole only: channel 0 along w_0, channel 1 against w_1.
    sq = (w * w).sum(axes)
    per_layer = w * np.array([1.0, -sq[0] / sq[1], 0.0, 0.0], "float32")
    optimizer = AdamP()
    found = [
        int(agreement._decision(keras.ops.convert_to_tensor(grad), keras.Variable(w), optimizer))
        for grad in (per_channel, per_layer, w)
    ]
    assert found == [agreement.CHANNEL, agreement.LAYER, agreement.NONE]


@pytest.mark.slow
def test_projection_agreement_smoke(tmp_path):
    out = tmp_path / "agreement.md"
    _script("projection_agreement").main(
        ["--models", "small_cnn", "--steps", "2", "--batch-size", "8", "--out", str(out)]
    )
    text = out.read_text()
    assert "| small_cnn (defaults) | digits, 8x8x1, digits |" in text
    assert "Command: `python benchmarks/projection_agreement.py --models small_cnn" in text


@pytest.mark.slow
def test_bench_toolkit_smoke(tmp_path):
    out = tmp_path / "toolkit.md"
    _script("bench_toolkit").main(
        [
            "--rounds",
            "1",
            "--steps",
            "1",
            "--apply-steps",
            "1",
            "--batch-size",
            "4",
            "--out",
            str(out),
        ]
    )
    text = out.read_text()
    for row in (
        "| SGDP (cosine test) | keras SGD |",
        "| AdamH (rescale=model) | keras Adam |",
        "| AdamC | keras AdamW |",
        "| WRS SGD (rescale=model) | keras SGD |",
    ):
        assert row in text
