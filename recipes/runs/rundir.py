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

Rules: an existing, non-empty directory is never written into unless the
caller asks to `resume` it (continue an unfinished run with the same
configuration) or to `overwrite` it (delete and start again). A directory
that cannot be written fails before any work.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

from keras_wrs._files import atomic_write_json, atomic_write_text

__all__ = [
    "RunDirError",
    "FILES",
    "prepare_run_dir",
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


class RunDirError(RuntimeError):
    """A run directory that exists, or cannot be written."""


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


def prepare_run_dir(path, resume=False, overwrite=False):
    """Check the rules above and return the directory, created and writable.

    Args:
        path: the run directory.
        resume: continue the run found there.
        overwrite: delete whatever is there first.

    Returns:
        The directory as a `Path`.

    Raises:
        RunDirError: the directory holds files and neither flag was given, or
            both were given, or it cannot be written.
    """
    path = Path(path)
    if resume and overwrite:
        raise RunDirError("Pass either --resume or --overwrite, not both.")
    exists = path.is_dir() and any(path.iterdir())
    if path.exists() and not path.is_dir():
        raise RunDirError(f"{str(path)!r} exists and is not a directory.")
    if exists and overwrite:
        shutil.rmtree(path)
    elif exists and not resume:
        raise RunDirError(
            f"Run directory {str(path)!r} already exists. Pass --resume to "
            f"continue it, --overwrite to replace it, or choose another --out."
        )
    check_writable(path)
    return path


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


def environment():
    """Versions, devices and the command line of this process."""
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
        "devices": system.devices(),
        "command": sys.argv,
    }


def write_environment(run_dir):
    """Write `environment.json` of `run_dir` (crash-safe)."""
    return atomic_write_json(Path(run_dir) / FILES["environment"], environment())
