"""The run directory: what a training run leaves behind, and its safety rules.

Layout of a run directory::

    config.json        resolved configuration, dataset facts, preprocessing
    environment.json   versions, devices, command line
    history.csv        one row per epoch (CSVLogger)
    tb/                TensorBoard logs
    backup/            per-epoch state while the run is unfinished
                       (see `keras_wrs.recipes.runs.backup`)
    initial_kernels.npz  the watched kernels at step 0, so that `rotation`
                       after a resume measures from the run's start
    model.keras        the final model (not written for a diverged run)
    plots/             history and dynamics plots
    summary.json       final metrics, images/second, wall time over all
                       segments of a resumed run; `status` is "finished"
                       or "diverged"

A grid of runs (`keras-wrs compare` and `sweep`) is a directory of run
directories with a `grid.json` that names its runs.

Rules (`claim_run_dir`):

* one process at a time writes a directory (`keras_wrs.recipes.runs.lock`);
* an existing, non-empty directory is never written into unless the caller
  asks to `resume` it (continue an unfinished run with the same
  configuration) or to `overwrite` it (delete and start again); both are
  refused for a directory that keras-wrs did not write (no `config.json`, or
  no `grid.json` for a grid), so neither can adopt or delete foreign files;
* a directory that cannot be written fails before any work;
* a start that fails before training begins leaves nothing behind that was
  not there before; once training has begun, the directory keeps what a
  `--resume` needs.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

from keras_wrs._files import atomic_write_json, atomic_write_text
from keras_wrs.recipes.runs.lock import LOCK_FILE, RunDirLock

__all__ = [
    "RunDirError",
    "FILES",
    "GRID_FILE",
    "Claim",
    "claim_run_dir",
    "prepare_run_dir",
    "holds_files",
    "check_writable",
    "write_environment",
    "read_json",
    "backup_epoch",
    "read_history",
    "history_rows",
    "truncate_history",
    "environment",
]

FILES = {
    "config": "config.json",
    "environment": "environment.json",
    "history": "history.csv",
    "tensorboard": "tb",
    "backup": "backup",
    "initial_kernels": "initial_kernels.npz",
    "model": "model.keras",
    "plots": "plots",
    "summary": "summary.json",
}


# The file that marks a directory as a grid of runs (compare, sweep).
GRID_FILE = "grid.json"


class RunDirError(RuntimeError):
    """A run directory that exists, is not keras-wrs's, or cannot be written."""


def check_writable(path):
    """Create `path` if needed and prove it writable with a probe file.

    Raises:
        RunDirError: the directory cannot be created or written.
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".probe-"):
            pass
    except OSError as err:
        raise RunDirError(
            f"Output directory {str(path)!r} is not writable "
            f"({err.strerror or err}). Choose another with "
            f"--out."
        ) from err


def _entries(path):
    """What `path` holds, the lock file left out."""
    return sorted(p.name for p in path.iterdir() if p.name != LOCK_FILE)


def holds_files(path):
    """Whether `path` is a directory holding anything but a lock file."""
    path = Path(path)
    return path.is_dir() and bool(_entries(path))


def _is_ours(path, kind):
    """Whether `path` holds a keras-wrs run (`kind="run"`) or grid of runs."""
    if kind == "run":
        return (path / FILES["config"]).is_file()
    return (path / GRID_FILE).is_file() or any(
        (p / FILES["config"]).is_file() for p in path.iterdir() if p.is_dir()
    )


def _foreign(path, kind, entries, flag):
    shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
    what = (
        "run directory (it has no config.json)"
        if kind == "run"
        else ("grid of runs (it has no grid.json and no run directory)")
    )
    fix = (
        "choose the directory the run was started in"
        if flag == "--resume"
        else "remove its files yourself"
    )
    return RunDirError(
        f"{str(path)!r} is not a keras-wrs {what}: it holds {shown}. {flag} applies "
        f"only to a directory keras-wrs wrote; {fix}, or choose another --out."
    )


def prepare_run_dir(path, resume=False, overwrite=False, kind="run"):
    """Check the rules above and return the directory, created and writable.

    Args:
        path: the run directory.
        resume: continue the run found there (a missing or empty directory
            starts a new one).
        overwrite: delete the keras-wrs run found there first.
        kind: `"run"` or `"grid"` (a directory of runs).

    Returns:
        The directory as a `Path`.

    Raises:
        RunDirError: the directory holds files and neither flag was given, or
            both were given, or the flag meets a directory keras-wrs did not
            write, or it cannot be written.
    """
    path = Path(path)
    if resume and overwrite:
        raise RunDirError("Pass either --resume or --overwrite, not both.")
    if path.exists() and not path.is_dir():
        raise RunDirError(f"{str(path)!r} exists and is not a directory.")
    entries = _entries(path) if path.is_dir() else []
    if entries and (resume or overwrite) and not _is_ours(path, kind):
        raise _foreign(path, kind, entries, "--resume" if resume else "--overwrite")
    if entries and overwrite:
        for name in entries:
            target = path / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink()
    elif entries and not resume:
        raise RunDirError(
            f"Run directory {str(path)!r} already exists. Pass --resume to "
            f"continue it, --overwrite to replace it, or choose another --out."
        )
    check_writable(path)
    return path


class Claim:
    """A directory claimed by `claim_run_dir`.

    Attributes:
        path: the directory.
        fresh: it was missing or empty before the claim.
        keep: set True once work worth keeping has begun (training started);
            until then a failure removes what the claim created.
    """

    def __init__(self, path, fresh):
        self.path = path
        self.fresh = fresh
        self.keep = False


def _first_missing(path):
    """The outermost directory of `path` that does not exist yet, or None."""
    missing = None
    for p in (path, *path.parents):
        if p.exists():
            break
        missing = p
    return missing


def _undo(path, created):
    """Remove what a failed start made: the directories it created, else the contents."""
    if created is not None:
        shutil.rmtree(created, ignore_errors=True)
        return
    for name in _entries(path):
        target = path / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target, ignore_errors=True)
        else:
            target.unlink(missing_ok=True)


@contextlib.contextmanager
def claim_run_dir(path, resume=False, overwrite=False, kind="run"):
    """Lock `path` for this process and check it (`prepare_run_dir`) for the block.

    A failure inside the block before `claim.keep` is set removes what the
    start made, if the directory was missing or empty before.

    Args:
        path: the run directory (or grid directory).
        resume: see `prepare_run_dir`.
        overwrite: see `prepare_run_dir`.
        kind: `"run"` or `"grid"`.

    Yields:
        A `Claim`.

    Raises:
        RunDirError: see `prepare_run_dir`.
        keras_wrs.recipes.runs.lock.RunDirBusyError: another process holds it.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunDirError(f"{str(path)!r} exists and is not a directory.")
    created = _first_missing(path)
    check_writable(path)
    lock = RunDirLock(path)
    claim = None
    try:
        lock.acquire()
        claim = Claim(path, fresh=not _entries(path))
        prepare_run_dir(path, resume=resume, overwrite=overwrite, kind=kind)
        yield claim
    except BaseException:
        lock.release()
        if claim is not None and claim.fresh and not claim.keep:
            _undo(path, created)
        elif claim is None and created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise
    lock.release()


def read_json(path):
    """Read a JSON file; None if it does not exist."""
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else None


def read_history(path):
    """A run's `history.csv` as `{column: [float per epoch]}` (`epoch` left out).

    Cells that are not numbers (CSVLogger writes "NA" for a missing key)
    become NaN; an absent file gives `{}`.
    """
    from keras_wrs.dynamics import load_history

    return load_history(str(path)) if Path(path).is_file() else {}


def history_rows(path):
    """Number of epochs logged in `history.csv` (0 if absent)."""
    path = Path(path)
    if not path.is_file():
        return 0
    with path.open(newline="") as f:
        return sum(1 for _ in csv.DictReader(f))


def truncate_history(path, epochs):
    """Keep the header and the first `epochs` rows of a resumed run's CSV.

    Written crash-safe: a kill here must not leave a history shorter than the
    backup.
    """
    path = Path(path)
    if not path.is_file():
        return
    text = path.read_text()
    kept = "".join(text.splitlines(keepends=True)[: epochs + 1]) if epochs else ""
    if kept != text:
        atomic_write_text(path, kept)


def backup_epoch(run_dir):
    """Finished epochs of the run's latest backup (0 when there is none).

    Reads `backup/training_metadata.json`, the manifest of
    `keras_wrs.recipes.runs.backup` (same file name and `epoch` key as Keras's
    `BackupAndRestore`).
    """
    meta = read_json(Path(run_dir) / FILES["backup"] / "training_metadata.json")
    return int(meta["epoch"]) if meta else 0


def _cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# Environment variables that cap a process's compute threads, per framework
# (TensorFlow's two pools; OpenMP for PyTorch and oneDNN). Float sums run in
# another order under another cap: a run repeats bit for bit under its own.
THREAD_VARIABLES = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS")


def thread_caps():
    """`{variable: value}` of the `THREAD_VARIABLES` this process runs under.

    Empty: each framework's default, one thread a core (`cpu_count`).
    """
    return {k: os.environ[k] for k in THREAD_VARIABLES if k in os.environ}


def environment():
    """Versions, devices, thread caps and the command line of this process."""
    import keras
    import numpy

    import keras_wrs
    from keras_wrs.recipes.training import system

    versions = {
        "python": platform.python_version(),
        **system.backend_versions(),
        "keras": keras.__version__,
        "keras_wrs": keras_wrs.__version__,
        "numpy": numpy.__version__,
    }
    try:
        import tensorflow_datasets as tfds

        versions["tensorflow_datasets"] = tfds.__version__
    except ImportError:
        pass
    return {
        "versions": versions,
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "thread_caps": thread_caps(),
        "devices": system.devices(),
        "command": sys.argv,
    }


def write_environment(run_dir):
    """Write `environment.json` of `run_dir` (crash-safe)."""
    return atomic_write_json(Path(run_dir) / FILES["environment"], environment())
