"""Run-directory rules and what a run records about its environment."""

import keras
import pytest

from keras_wrs.recipes.runs import rundir


def test_run_dir_is_never_reused_silently(tmp_path):
    run = tmp_path / "run"
    rundir.prepare_run_dir(run)
    (run / "config.json").write_text("{}")
    with pytest.raises(rundir.RunDirError, match="already exists.*--resume.*--overwrite"):
        rundir.prepare_run_dir(run)
    assert rundir.prepare_run_dir(run, resume=True) == run
    assert (run / "config.json").exists()
    rundir.prepare_run_dir(run, overwrite=True)
    assert not (run / "config.json").exists()
    with pytest.raises(rundir.RunDirError, match="either"):
        rundir.prepare_run_dir(run, resume=True, overwrite=True)


def test_unwritable_output_dir_fails_at_start(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(rundir.RunDirError, match="not writable"):
        rundir.prepare_run_dir(blocker / "run")
    with pytest.raises(rundir.RunDirError, match="not a directory"):
        rundir.prepare_run_dir(blocker)


def test_backup_epoch_reads_keras_metadata(tmp_path):
    assert rundir.backup_epoch(tmp_path) == 0
    (tmp_path / "backup").mkdir()
    (tmp_path / "backup" / "training_metadata.json").write_text('{"epoch": 3, "batch": 0}')
    assert rundir.backup_epoch(tmp_path) == 3


def test_environment_records_versions_and_devices():
    env = rundir.environment()
    assert env["versions"]["keras"] == keras.__version__
    assert any(d["type"] == "CPU" for d in env["devices"])


def test_resume_and_overwrite_refuse_a_directory_keras_wrs_did_not_write(tmp_path):
    mine = tmp_path / "notarun"
    mine.mkdir()
    (mine / "readme.txt").write_text("my notes")
    for flags, word in (({"resume": True}, "--resume"), ({"overwrite": True}, "--overwrite")):
        with pytest.raises(
            rundir.RunDirError, match=rf"not a keras-wrs run directory .*readme.txt.*{word}"
        ):
            rundir.prepare_run_dir(mine, **flags)
    assert sorted(p.name for p in mine.iterdir()) == ["readme.txt"]
    with pytest.raises(rundir.RunDirError, match="not a keras-wrs grid of runs"):
        rundir.prepare_run_dir(mine, resume=True, kind="grid")


def test_a_grid_is_recognised_by_its_grid_file_or_its_runs(tmp_path):
    grid = tmp_path / "grid"
    (grid / "wd-sgdm-s0").mkdir(parents=True)
    (grid / "wd-sgdm-s0" / "config.json").write_text("{}")
    assert rundir.prepare_run_dir(grid, resume=True, kind="grid") == grid
    other = tmp_path / "other"
    other.mkdir()
    (other / rundir.GRID_FILE).write_text("{}")
    assert rundir.prepare_run_dir(other, resume=True, kind="grid") == other


def test_a_failed_start_leaves_nothing_behind(tmp_path):
    new = tmp_path / "a" / "b" / "run"
    with pytest.raises(RuntimeError, match="setup failed"), rundir.claim_run_dir(new):
        (new / "config.json").write_text("{}")
        raise RuntimeError("setup failed")
    assert not (tmp_path / "a").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RuntimeError), rundir.claim_run_dir(empty):
        (empty / "history.csv").write_text("x")
        raise RuntimeError("setup failed")
    assert empty.is_dir() and not any(empty.iterdir())


def test_a_failure_after_training_began_keeps_the_directory(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(RuntimeError), rundir.claim_run_dir(run) as claim:
        (run / "config.json").write_text("{}")
        claim.keep = True
        raise RuntimeError("disk full")
    assert sorted(p.name for p in run.iterdir()) == ["config.json"]
