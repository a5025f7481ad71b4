"""Interrupted exports leave nothing behind; two exports to one target cannot both succeed."""

import argparse
import io
import os
import signal
import subprocess
import sys
import threading
import time

import keras
import numpy as np
import pytest

from keras_wrs.export import (
    ExportInterrupted,
    add_export_arguments,
    atomic,
    export_model,
    run_export,
)

L = keras.layers
pytestmark = pytest.mark.usefixtures("interactive_sigint")  # Ctrl-C as in a terminal


def tiny():
    inp = keras.Input((8, 8, 4))
    h = L.GlobalAveragePooling2D()(L.BatchNormalization()(L.Conv2D(8, 3, name="conv")(inp)))
    return keras.Model(inp, L.Dense(3, name="head")(h), name="tiny")


def signal_when_staging_appears(folder, signum):
    """Sends `signum` to this process once a staging directory exists in `folder`."""

    def watch():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any(p.name.endswith(".partial") for p in folder.iterdir()):
                os.kill(os.getpid(), signum)
                return
            time.sleep(0.005)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize(
    "signum, error", [(signal.SIGTERM, ExportInterrupted), (signal.SIGINT, KeyboardInterrupt)]
)
def test_signal_during_export_removes_staging_and_lock(tmp_path, signum, error):
    previous = signal.getsignal(signal.SIGTERM)
    watcher = signal_when_staging_appears(tmp_path, signum)
    with pytest.raises(error):
        export_model(tiny(), tmp_path / "out", formats="saved_model,onnx")
    watcher.join()
    assert list(tmp_path.iterdir()) == []  # no staging directory, no lock file, no output
    assert signal.getsignal(signal.SIGTERM) == previous  # the handler is put back


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_first_signal_stops_at_the_next_checkpoint_and_a_second_at_once(signum):
    # Raised at once, the interrupt can land inside TensorFlow's C code, which
    # turns it into SystemError and prints a traceback (seen in CI).
    name = signal.Signals(signum).name
    with pytest.raises(ExportInterrupted, match=name):
        with atomic.interruptible():
            os.kill(os.getpid(), signum)
            time.sleep(0.2)  # the handler has run; nothing was raised
            reached = True
            atomic.raise_if_interrupted()
    assert reached
    with pytest.raises(ExportInterrupted, match=name) as caught:
        with atomic.interruptible():
            os.kill(os.getpid(), signum)
            time.sleep(0.2)
            os.kill(os.getpid(), signum)
            time.sleep(5)
            pytest.fail("a second signal must stop the block at once")
    assert caught.value.signal_name == name
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_error_after_a_signal_is_reported_as_the_interrupt(signum):
    with pytest.raises(ExportInterrupted) as caught:
        with atomic.interruptible():
            os.kill(os.getpid(), signum)
            time.sleep(0.2)
            raise SystemError("bad argument to internal function")
    assert caught.value.signal_name == signal.Signals(signum).name
    assert isinstance(caught.value.__cause__, SystemError)


def test_commit_refuses_after_a_signal(tmp_path):
    staging, out = tmp_path / "staging", tmp_path / "out"
    staging.mkdir()
    with pytest.raises(ExportInterrupted, match="SIGTERM"):
        with atomic.interruptible():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)
            atomic.commit(staging, out, overwrite=False)
    assert not out.exists()
    atomic.commit(staging, out, overwrite=False)  # a later export is not affected
    assert out.is_dir()


def test_ctrl_c_after_the_last_checkpoint_reaches_the_caller():
    # The export is complete: the signal is not lost, and not reported as an
    # interrupted export; the caller's own Ctrl-C handling gets it.
    with pytest.raises(KeyboardInterrupt) as caught:
        with atomic.interruptible():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)
    assert not isinstance(caught.value, ExportInterrupted)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_cli_prints_one_line_on_sigterm(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    tiny().save(run / "model.keras")
    parser = add_export_arguments(argparse.ArgumentParser(prog="keras-wrs export"))
    out, err = io.StringIO(), io.StringIO()
    watcher = signal_when_staging_appears(run, signal.SIGTERM)
    code = run_export(parser.parse_args([str(run)]), None, out, err)
    watcher.join()
    assert code == 143 and out.getvalue() == ""
    assert err.getvalue().splitlines() == [
        "keras-wrs export: interrupted by SIGTERM; nothing was written and the staging "
        "directory was removed."
    ]
    assert sorted(p.name for p in run.iterdir()) == ["model.keras"]


def test_second_export_to_a_locked_target_fails_at_once(tmp_path):
    out = tmp_path / "out"
    with atomic.export_lock(out) as lock:
        assert lock.read_text() == str(os.getpid())
        with pytest.raises(FileExistsError, match=rf"Another export .*\(process {os.getpid()},"):
            export_model(tiny(), out, formats="saved_model")
    assert list(tmp_path.iterdir()) == []


def test_lock_of_a_killed_export_is_taken_over(tmp_path):
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    out = tmp_path / "out"
    (tmp_path / ".out.keras-wrs-export.lock").write_text(gone.stdout.strip())
    export_model(tiny(), out, formats="saved_model")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_commit_never_replaces_a_directory_that_appeared_and_is_not_an_export(tmp_path):
    staging, out = tmp_path / "staging", tmp_path / "out"
    staging.mkdir()
    out.mkdir()
    (out / "mine.txt").write_text("someone else's")
    with pytest.raises(FileExistsError, match="appeared while exporting and is not a keras-wrs"):
        atomic.commit(staging, out, overwrite=True)
    assert [p.name for p in out.iterdir()] == ["mine.txt"]


def test_is_export_reads_the_manifest(tmp_path):
    assert not atomic.is_export(tmp_path)
    (tmp_path / "export.json").write_text('{"kind": "something else"}')
    assert not atomic.is_export(tmp_path)
    (tmp_path / "export.json").write_text("[not json")
    assert not atomic.is_export(tmp_path)
    (tmp_path / "export.json").write_text('{"kind": "keras-wrs export"}')
    assert atomic.is_export(tmp_path)
    legacy = '{"files": {}, "parity": {}, "versions": {"keras-wrs": "0.1.0"}}'
    (tmp_path / "export.json").write_text(legacy)
    assert atomic.is_export(tmp_path)


@pytest.mark.slow
def test_two_concurrent_exports_to_one_target_do_not_both_succeed(tmp_path):
    model = tiny()
    model.save(tmp_path / "model.keras")
    np.save(tmp_path / "batch.npy", np.zeros((2, 8, 8, 4), "float32"))
    cmd = [
        sys.executable,
        "-m",
        "keras_wrs.export",
        str(tmp_path / "model.keras"),
        "--output",
        str(tmp_path / "out"),
        "--format",
        "saved_model,onnx",
        "--batch",
        str(tmp_path / "batch.npy"),
    ]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, err in results if code == 2)
    assert "already exists" in loser or "Another export" in loser
    assert sorted(p.name for p in tmp_path.iterdir()) == ["batch.npy", "model.keras", "out"]
