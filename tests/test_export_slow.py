"""Heavier export checks: a `keras-wrs train` run end to end, and the benchmark script."""

import importlib.util
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_export.py"


def test_keras_wrs_export_on_a_mixed_precision_training_run(tmp_path, capsys):
    from keras_wrs.recipes.cli import main

    run = tmp_path / "run"
    argv = ["train", "digits", "--smoke", "--precision", "mixed_float16",
            "--regularization", "wrs", "--out", str(run), "--verbose", "0"]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(["export", str(run), "--format", "saved_model,onnx", "--float16"]) == 0
    out = capsys.readouterr().out
    assert "keras source model as trained (mixed_float16)" in out and "FAIL" not in out
    manifest = json.loads((run / "export" / "export.json").read_text())
    config = json.loads((run / "config.json").read_text())
    assert manifest["parity"]["passed"]
    assert manifest["metadata"]["config_hash"] == config["config_hash"]
    assert manifest["metadata"]["class_names"] == config["dataset"]["class_names"]
    assert manifest["metadata"]["preprocessing"]["outside_model"] == config["preprocessing"]


def test_benchmark_script_smoke(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_export", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "results.md"
    assert bench.main(["--models", "resnet20", "--batches", "1,2", "--repeats", "2",
                       "--out", str(out)]) == 0
    text = out.read_text()
    assert "| resnet20 | 2 | onnxruntime |" in text and "PASS" in text and "FAIL" not in text
