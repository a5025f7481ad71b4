"""Per-epoch backups that a kill at any moment cannot break.

Keras's `BackupAndRestore` rewrites `latest.weights.h5` in place, so a kill
during the write leaves a truncated file and the run cannot resume. Here each
epoch's state goes to a new file under a temporary name, renamed once it is
complete, and a small manifest (written the same way) names the latest and the
previous good files with their size, SHA-256, epoch, optimizer step and the
run's elapsed time. Files the manifest no longer names are deleted only after
the manifest is replaced, so at every moment the manifest names complete
files.

Resuming checks what it loads: the file's size and hash, the optimizer step
after loading, and the epoch against `history.csv`. A latest file that fails
falls back to the previous one (one epoch is trained again); when neither is
usable, or the run directory shows finished epochs and no backup, the error
names the file and the choices. A run is never silently restarted.

Layout of `backup/`::

    training_metadata.json   the manifest (`epoch` is the latest backup's)
    epoch-0003.weights.h5    model and optimizer state after epoch 3
    epoch-0002.weights.h5    the previous one
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import re
import shutil
from pathlib import Path

import keras

from keras_wrs._files import atomic_write, atomic_write_json

__all__ = [
    "AtomicBackup",
    "BackupError",
    "RestorePoint",
    "MANIFEST",
    "find_restore_point",
    "restore",
    "remove_backup",
]

logger = logging.getLogger("keras_wrs")

MANIFEST = "training_metadata.json"
# The files a manifest may name: plain names in the backup directory.
_FILE = re.compile(r"epoch-\d{4,}\.weights\.h5")
_FORMAT = 1
_CHOICES = (
    "Pass --overwrite to start the run again, or put back a copy of "
    "the run's backup/ directory and resume."
)


class BackupError(RuntimeError):
    """A run directory whose finished epochs cannot be restored."""


@dataclasses.dataclass(frozen=True)
class RestorePoint:
    """One backup file and what it must hold.

    Attributes:
        epoch: finished epochs.
        path: the `.weights.h5` file (model and optimizer variables).
        iterations: the optimizer's step count after `epoch` epochs.
        elapsed_seconds: wall time of the run up to this backup, over all
            its earlier segments.
        sha256: hash of the file's bytes.
        size: the file's size in bytes.
    """

    epoch: int
    path: Path
    iterations: int
    elapsed_seconds: float
    sha256: str
    size: int

    def entry(self):
        """The manifest's JSON entry (the file relative to the backup dir)."""
        return {
            "epoch": self.epoch,
            "file": self.path.name,
            "iterations": self.iterations,
            "elapsed_seconds": self.elapsed_seconds,
            "sha256": self.sha256,
            "bytes": self.size,
        }


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_manifest(backup_dir, latest, previous):
    value = {
        "format": _FORMAT,
        "epoch": latest.epoch,
        "latest": latest.entry(),
        "previous": previous.entry() if previous else None,
    }
    atomic_write_json(backup_dir / MANIFEST, value)


def _count(entry, key):
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{key}={value!r} is not an integer >= 0")
    return value


def _point(backup_dir, entry):
    """The `RestorePoint` of a manifest entry, each value checked."""
    name = entry["file"]
    if not isinstance(name, str) or not _FILE.fullmatch(name):
        raise ValueError(f"file={name!r} is not a backup file name (epoch-NNNN.weights.h5)")
    elapsed = entry["elapsed_seconds"]
    if (
        isinstance(elapsed, bool)
        or not isinstance(elapsed, (int, float))
        or not (math.isfinite(elapsed) and elapsed >= 0)
    ):
        raise ValueError(f"elapsed_seconds={elapsed!r} is not a finite number >= 0")
    return RestorePoint(
        _count(entry, "epoch"),
        backup_dir / name,
        _count(entry, "iterations"),
        float(elapsed),
        str(entry["sha256"]),
        _count(entry, "bytes"),
    )


def _read_manifest(backup_dir):
    """`[latest, previous]` restore points (previous may be missing)."""
    path = backup_dir / MANIFEST
    try:
        value = json.loads(path.read_text())
        points = [_point(backup_dir, value["latest"])]
        if value.get("previous"):
            points.append(_point(backup_dir, value["previous"]))
    except (ValueError, KeyError, TypeError) as err:
        raise BackupError(
            f"The backup manifest {str(path)!r} is unreadable "
            f"({type(err).__name__}: {err}). {_CHOICES}"
        ) from err
    return points


def _problem(point):
    """Why `point`'s file is unusable, or None."""
    if not point.path.is_file():
        return "missing"
    size = point.path.stat().st_size
    if size != point.size:
        return f"{size} bytes instead of {point.size}"
    if _sha256(point.path) != point.sha256:
        return "its content does not match the hash written with it"
    return None


def find_restore_point(backup_dir, epochs_logged, at_most=None):
    """The backup a resumed run starts from, checked; None for a fresh start.

    Args:
        backup_dir: the run's `backup/` directory.
        epochs_logged: rows of the run's `history.csv` (finished epochs).
        at_most: the latest epoch the run may resume from (None: any). The
            workers of a cluster resume from the epoch they all have
            (`keras_wrs.recipes.training.cluster.agreed_epoch`); 0 is a
            fresh start.

    Returns:
        The latest usable `RestorePoint` (the previous one, with a warning,
        when the latest file is damaged), or None when the run has no backup
        and at most one logged epoch: `CSVLogger` logs an epoch just before
        its backup is written, so a kill during the first backup leaves one
        row and no manifest, and the run starts again from epoch 0 (the
        same seed gives the same run).

    Raises:
        BackupError: epochs were logged but no backup is usable, or the
            backup is ahead of `history.csv`. The message names the file and
            the choices.
    """
    backup_dir = Path(backup_dir)
    if at_most == 0:
        return None
    if not (backup_dir / MANIFEST).is_file():
        if epochs_logged > 1:
            raise BackupError(
                f"The run has {epochs_logged} finished epoch(s) in history.csv but "
                f"no backup to resume from: {str(backup_dir / MANIFEST)!r} is "
                f"missing. {_CHOICES}"
            )
        return None
    problems = []
    for point in _read_manifest(backup_dir):
        if at_most is not None and point.epoch > at_most:
            continue
        problem = _problem(point)
        if problem is None:
            if problems:
                logger.warning(
                    "keras-wrs: backup %s is damaged (%s); resuming from %s (epoch %d) instead.",
                    problems[0][0],
                    problems[0][1],
                    point.path,
                    point.epoch,
                )
            return _check_history(point, epochs_logged)
        problems.append((str(point.path), problem))
    if not problems and at_most is not None:  # every kept backup is later than `at_most`
        raise BackupError(
            f"No backup in {str(backup_dir)!r} is at or before epoch {at_most}, the latest "
            f"epoch every worker of the cluster has backed up. {_CHOICES}"
        )
    listed = "; ".join(f"{path!r}: {why}" for path, why in problems)
    raise BackupError(f"No usable backup to resume from ({listed}). {_CHOICES}")


def _check_history(point, epochs_logged):
    if epochs_logged < point.epoch:
        raise BackupError(
            f"The backup {str(point.path)!r} is at epoch {point.epoch} but "
            f"history.csv has only {epochs_logged} row(s): the run directory was "
            f"changed by hand. {_CHOICES}"
        )
    return point


def _step(model):
    """The optimizer's step count, on any backend."""
    if model.optimizer is None:
        return 0
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


def restore(model, point):
    """Load `point` into a compiled `model` and check the optimizer step.

    Raises:
        BackupError: the file does not load into this model, or holds another
            step than its manifest says.
    """
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    try:
        model.load_weights(str(point.path))
    except (OSError, ValueError, KeyError) as err:
        raise BackupError(
            f"The backup {str(point.path)!r} does not load into "
            f"this model ({type(err).__name__}: {err}). "
            f"{_CHOICES}"
        ) from err
    step = _step(model)
    if step != point.iterations:
        raise BackupError(
            f"The backup {str(point.path)!r} holds optimizer step "
            f"{step}, its manifest says {point.iterations}. {_CHOICES}"
        )


def remove_backup(backup_dir):
    """Delete a finished run's backup directory (nothing if there is none)."""
    if Path(backup_dir).is_dir():
        shutil.rmtree(backup_dir)


def _finite_loss(logs):
    values = [(logs or {}).get(key) for key in ("loss", "val_loss")]
    return all(v is None or math.isfinite(float(v)) for v in values)


class AtomicBackup(keras.callbacks.Callback):
    """Back up model and optimizer state after every epoch, atomically.

    Place it after `CSVLogger` in the callback list, so that a backup is never
    ahead of `history.csv`. An epoch whose training or validation loss is not
    finite is not backed up (the run diverged; the last good state stays). The
    directory is kept when training ends: the trainer deletes it once the
    run's results are written.

    Restoring is not this callback's job: call `restore` before `fit`, so
    that every callback's `on_train_begin` already sees the restored model
    and optimizer step.

    Args:
        backup_dir: the run's `backup/` directory.
        restored: the `RestorePoint` the model was restored from, or None; it
            is kept as the previous backup after the next save.
        elapsed: callable returning the run's elapsed seconds (all segments),
            recorded in each backup.
    """

    def __init__(self, backup_dir, restored=None, elapsed=lambda: 0.0):
        super().__init__()
        self.backup_dir = Path(backup_dir)
        self.restored = restored
        self.elapsed = elapsed
        self._latest = restored

    def on_epoch_end(self, epoch, logs=None):
        if _finite_loss(logs):
            self.save(epoch + 1)

    def save(self, epoch):
        """Write the state after `epoch` finished epochs; keep the previous."""
        self.backup_dir.mkdir(parents=True, exist_ok=True)
        path = self.backup_dir / f"epoch-{epoch:04d}.weights.h5"
        # The temporary name ends with the .weights.h5 that save_weights
        # wants, and is never one the manifest names.
        atomic_write(path, lambda tmp: self.model.save_weights(str(tmp), overwrite=True))
        point = RestorePoint(
            epoch,
            path,
            _step(self.model),
            float(self.elapsed()),
            _sha256(path),
            path.stat().st_size,
        )
        previous = self._latest if self._latest and self._latest.epoch < epoch else None
        _write_manifest(self.backup_dir, point, previous)
        self._latest = point
        self._prune({point.path.name} | ({previous.path.name} if previous else set()))

    def _prune(self, keep):
        for path in self.backup_dir.glob("*.weights.h5"):
            if path.name not in keep:
                path.unlink(missing_ok=True)
