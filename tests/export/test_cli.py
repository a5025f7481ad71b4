"""`keras-wrs export` through `add_export_arguments` + `run_export`: output and exit status."""

import argparse
import io

import keras
import numpy as np
import onnx
import pytest
import tensorflow as tf

from keras_wrs.export import ParityBatch, add_export_arguments, run_export
from keras_wrs.export.cli import main

L = keras.layers


@keras.saving.register_keras_serializable(package="test_export_cli")
class NoisyCli(L.Layer):
    """Fresh noise on every call: no export can reproduce it."""

    def call(self, x):
        return x + tf.random.normal(tf.shape(x))


@keras.saving.register_keras_serializable(package="test_export_cli")
class LgammaCli(L.Layer):
    """An op tf2onnx cannot convert."""

    def call(self, x):
        return tf.math.lgamma(tf.abs(x) + 1.0)


def save_run(path, extra=None):
    inp = keras.Input((8, 8, 4))
    h = L.BatchNormalization(name="bn")(L.Conv2D(8, 3, name="conv")(inp))
    h = L.GlobalAveragePooling2D()(L.ReLU()(h))
    if extra is not None:
        h = extra(h)
    path.mkdir()
    keras.Model(inp, L.Dense(3, name="head")(h), name="tiny").save(path / "model.keras")
    return path


def cli(*argv, batch_provider=None):
    parser = add_export_arguments(argparse.ArgumentParser(prog="keras-wrs export"))
    out, err = io.StringIO(), io.StringIO()
    code = run_export(parser.parse_args([str(a) for a in argv]), batch_provider, out, err)
    return code, out.getvalue(), err.getvalue()


def test_cli_exports_a_run_dir_and_prints_paths_sizes_and_parity(tmp_path):
    run = save_run(tmp_path / "run")
    code, out, err = cli(run, "--format", "saved_model,onnx", "--opset", "17")
    assert (code, err) == (0, "")
    export = run / "export"
    for line in (f"Export: {export}", f"saved_model   {export / 'saved_model'}", "model.onnx  ("):
        assert line in out
    assert "RANDOM inputs, not real data" in out
    assert "no run config.json names the data set" in out  # says why the inputs are random
    assert "FAIL" not in out and out.count("PASS") == 4  # trained model + 3 runtimes
    opsets = [o.version for o in onnx.load(str(export / "model.onnx")).opset_import if not o.domain]
    assert opsets == [17]


def test_cli_check_writes_nothing_and_uses_the_batch_provider(tmp_path):
    run = save_run(tmp_path / "run")
    x = np.random.default_rng(0).normal(size=(4, 8, 8, 4)).astype("float32")
    real = ParityBatch(x, "toy test split [:4]", real=True)
    code, out, _ = cli(run, "--check", "--format", "onnx", batch_provider=lambda source: real)
    assert code == 0 and "(check only: nothing written)" in out
    assert "toy test split [:4] (n=4)" in out
    assert sorted(p.name for p in run.iterdir()) == ["model.keras"]


def test_cli_batch_file_wins_over_the_provider(tmp_path):
    run = save_run(tmp_path / "run")
    np.save(tmp_path / "b.npy", np.zeros((2, 8, 8, 4), "float32"))
    code, out, _ = cli(
        run,
        "--check",
        "--format",
        "saved_model",
        "--batch",
        tmp_path / "b.npy",
        batch_provider=lambda source: pytest.fail("provider called"),
    )
    assert code == 0 and "given batch b.npy (n=2)" in out


def test_cli_parity_failure_exits_1_and_writes_nothing(tmp_path):
    run = save_run(tmp_path / "run", NoisyCli(name="noisy"))
    code, out, err = cli(run, "--format", "saved_model")
    assert code == 1 and out == ""
    assert "parity FAILED" in err and "FAIL" in err and "Nothing was written" in err
    assert sorted(p.name for p in run.iterdir()) == ["model.keras"]


def test_cli_unconvertible_layer_exits_1_after_writing_the_saved_model(tmp_path):
    run = save_run(tmp_path / "run", LgammaCli(name="lgamma_layer"))
    code, out, err = cli(run)
    assert code == 1
    assert "onnx          NOT EXPORTED" in out and "saved_model   " in out
    assert "op 'Lgamma' in layer 'lgamma_layer' (class LgammaCli" in err
    assert sorted(p.name for p in (run / "export").iterdir()) == ["export.json", "saved_model"]


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--opset", "8"], "`opset` must be an integer from 9 to 18"),
        (["--format", "tflite16"], "`formats` must name one or more"),
        (["--atol", "-1"], "`atol` must be a number >= 0"),
        (["--output", "{tmp}/taken"], "already exists"),
        (["--output", "{run}", "--overwrite"], "contains the model being exported"),
    ],
)
def test_cli_bad_input_exits_2_with_the_fix(tmp_path, argv, match):
    run = save_run(tmp_path / "run")
    (tmp_path / "taken").mkdir()
    code, out, err = cli(run, *[a.format(run=run, tmp=tmp_path) for a in argv])
    assert code == 2 and out == ""
    assert err.startswith("keras-wrs export: error: ") and match in err
    assert sorted(p.name for p in run.iterdir()) == ["model.keras"]


def test_cli_missing_source_exits_2(tmp_path):
    code, _, err = cli(tmp_path / "nowhere")
    assert code == 2 and "does not exist" in err


def test_main_help_lists_the_arguments(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("RUN_DIR_OR_MODEL", "--format", "--opset", "--check", "--overwrite", "--batch"):
        assert flag in text
