"""Heavier export checks: `keras-wrs train` runs end to end, a CLI SIGINT, the benchmark script."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_export.py"
ALL = "saved_model,onnx,tflite,tflite_int8,onnx_int8"


def test_keras_wrs_export_on_a_mixed_precision_training_run(tmp_path, capsys):
    from keras_wrs.recipes.cli import main

    run = tmp_path / "run"
    argv = [
        "train",
        "digits",
        "--smoke",
        "--precision",
        "mixed_float16",
        "--regularization",
        "wrs",
        "--out",
        str(run),
        "--verbose",
        "0",
    ]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(["export", str(run), "--format", "saved_model,onnx", "--float16"]) == 0
    out = capsys.readouterr().out
    assert "keras source model as trained (mixed_float16)" in out and "FAIL" not in out
    assert "the run's own test data: digits test split" in out
    manifest = json.loads((run / "export" / "export.json").read_text())
    config = json.loads((run / "config.json").read_text())
    assert manifest["parity"]["passed"]
    assert manifest["metadata"]["config_hash"] == config["config_hash"]
    assert manifest["metadata"]["class_names"] == config["dataset"]["class_names"]
    assert manifest["metadata"]["preprocessing"]["outside_model"] == config["preprocessing"]


def test_all_five_formats_from_a_trained_digits_run(tmp_path, capsys):
    """The issue's 'done when': five files and a passing parity table from `keras-wrs export`."""
    from keras_wrs.recipes.cli import main

    run = tmp_path / "run"
    argv = [
        "train",
        "digits",
        "--epochs",
        "15",
        "--regularization",
        "wrs",
        "--out",
        str(run),
        "--verbose",
        "0",
    ]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(["export", str(run), "--format", ALL]) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out and out.count("PASS") == 7
    names = sorted(p.name for p in (run / "export").iterdir())
    assert names == [
        "export.json",
        "model.int8.onnx",
        "model.int8.tflite",
        "model.onnx",
        "model.tflite",
        "saved_model",
    ]


@pytest.mark.usefixtures("interactive_sigint")  # the child inherits it
def test_cli_sigint_prints_one_line_and_leaves_nothing(tmp_path):
    import keras

    inp = keras.Input((8, 8, 4))
    h = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(8, 3)(inp))
    keras.Model(inp, keras.layers.Dense(3)(h)).save(tmp_path / "model.keras")
    cmd = [
        sys.executable,
        "-m",
        "keras_wrs.export",
        str(tmp_path / "model.keras"),
        "--output",
        str(tmp_path / "out"),
    ]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    deadline = time.monotonic() + 240
    while not any(p.name.endswith(".partial") for p in tmp_path.iterdir()):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 130
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        "keras-wrs export: interrupted by SIGINT; nothing was written and the staging "
        "directory was removed."
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]


def test_benchmark_script_smoke(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_export", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "results.md"
    assert (
        bench.main(
            [
                "--models",
                "resnet20",
                "--batches",
                "1,2",
                "--repeats",
                "2",
                "--quant-models",
                "resnet20",
                "--train-examples",
                "256",
                "--epochs",
                "1",
                "--min-accuracy",
                "0",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    text = out.read_text()
    assert "| resnet20 | 2 | onnxruntime |" in text and "PASS" in text
    assert "| resnet20 | tflite int8 |" in text and "| resnet20 | onnx int8 (QDQ) |" in text
    assert "| resnet20 | tflite dynamic-range |" in text
    with pytest.raises(SystemExit, match="resnet20 reached test accuracy .*below --min-accuracy"):
        bench.main(
            [
                "--models",
                "none",
                "--quant-models",
                "resnet20",
                "--train-examples",
                "64",
                "--epochs",
                "1",
                "--min-accuracy",
                "1.01",
                "--out",
                str(tmp_path / "x.md"),
            ]
        )
