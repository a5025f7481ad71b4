"""One process per run directory: a live holder is refused, a killed one's lock is not a lock."""

import dataclasses
import json
import os
import signal
import subprocess
import sys

import pytest

from keras_wrs.recipes import cli
from keras_wrs.recipes import config as cfg
from keras_wrs.recipes.runs import lock, rundir

HOLD = (
    "import sys, time\n"
    "from keras_wrs.recipes.runs.lock import RunDirLock\n"
    "RunDirLock(sys.argv[1]).acquire()\n"
    "print('held', flush=True)\n"
    "time.sleep(600)\n"
)


@pytest.fixture
def holder(tmp_path):
    """A process that holds the lock of `tmp_path / "run"` until the test ends."""
    run = tmp_path / "run"
    run.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline() == "held\n"
    yield run, proc
    proc.kill()
    proc.wait()


def test_a_live_holder_is_refused_with_its_process_named(holder):
    run, proc = holder
    with pytest.raises(lock.RunDirBusyError, match=rf"in use by process {proc.pid} on .*alive"):
        lock.RunDirLock(run).acquire()
    assert lock.holder(run)["pid"] == proc.pid


def test_a_second_train_on_a_held_directory_refuses_before_any_work(holder, capsys):
    run, proc = holder
    before = sorted(p.name for p in run.iterdir())
    status = cli.main(["train", "--smoke", "--regularization", "wrs", "--out", str(run)])
    err = capsys.readouterr().err
    assert status == 2 and f"in use by process {proc.pid}" in err and "Traceback" not in err
    assert sorted(p.name for p in run.iterdir()) == before


def test_a_sweep_on_a_held_grid_directory_is_refused(holder, capsys):
    run, proc = holder
    status = cli.main(["sweep", "--smoke", "--grid", "lr=0.1", "--out", str(run)])
    assert status == 2 and f"in use by process {proc.pid}" in capsys.readouterr().err


def test_the_lock_of_a_killed_process_is_released_by_the_kernel(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline() == "held\n"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (run / lock.LOCK_FILE).is_file()  # the file stays behind, the lock does not
    assert lock.holder(run)["pid"] == proc.pid
    with lock.RunDirLock(run) as mine:
        assert mine.held and lock.holder(run)["pid"] == os.getpid()
    assert not (run / lock.LOCK_FILE).exists()


def test_a_directory_left_with_only_a_stale_lock_takes_a_new_run(tmp_path):
    """kill -9 during a start: the next run in that directory needs neither flag."""
    run = tmp_path / "run"
    run.mkdir()
    (run / lock.LOCK_FILE).write_text(json.dumps({"pid": 1, "host": "x", "command": []}))
    assert not rundir.holds_files(run)
    config = dataclasses.replace(
        cfg.smoke(cfg.get_recipe("digits")), tensorboard=False, dynamics=False
    )
    from keras_wrs.recipes import train

    assert train(config, run, verbose=0)["status"] == "finished"
    assert not (run / lock.LOCK_FILE).exists()
