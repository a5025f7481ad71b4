"""All-or-nothing export directories.

An export is assembled in a hidden staging directory beside its target and
renamed into place only when it is complete and verified. A failure removes
the staging directory; an existing export is replaced only when asked and
only when its manifest says it is a keras-wrs export, and is put back if the
replacement cannot be moved in. A lock file beside the target keeps two
exports to one target from both succeeding, and SIGTERM is turned into an
exception while an export runs so that its staging directory is removed as
on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import tempfile
import threading
import uuid
from pathlib import Path

__all__ = [
    "MANIFEST_FILE",
    "MANIFEST_KIND",
    "ExportInterrupted",
    "check_target",
    "is_export",
    "export_lock",
    "interruptible",
    "staging_directory",
    "commit",
]

MANIFEST_FILE = "export.json"
MANIFEST_KIND = "keras-wrs export"


class ExportInterrupted(KeyboardInterrupt):
    """SIGTERM (or SIGINT) arrived during an export; the staging directory is removed.

    Attributes:
        signal_name: `"SIGTERM"` or `"SIGINT"`.
    """

    def __init__(self, signal_name: str):
        super().__init__(signal_name)
        self.signal_name = signal_name


def is_export(path) -> bool:
    """Whether `path` is a directory whose manifest says keras-wrs wrote it.

    Args:
        path: a directory.

    Returns:
        True when `path/export.json` is a JSON object with
        `"kind": "keras-wrs export"`, or (exports written before that field)
        one listing `files`, `parity` and a `keras-wrs` version.
    """
    manifest = Path(path) / MANIFEST_FILE
    try:
        data = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(data, dict):
        return False
    if data.get("kind") == MANIFEST_KIND:
        return True
    versions = data.get("versions")
    legacy = isinstance(versions, dict) and "keras-wrs" in versions
    return legacy and {"files", "parity"} <= set(data)


def check_target(output, overwrite: bool) -> Path:
    """Checks that an export can be written at `output`, before any work is done.

    Args:
        output: the export directory to create.
        overwrite: whether an existing export there may be replaced.

    Returns:
        `output` as a `Path`.

    Raises:
        FileExistsError: `output` exists and `overwrite` is false, it is a
            file, or it is a directory that is not a keras-wrs export.
        FileNotFoundError: the parent directory does not exist.
        PermissionError: the parent directory is not writable.
    """
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise FileExistsError(
            f"`output`={str(output)!r} is a file, not an export directory. Choose another "
            "output directory."
        )
    if output.exists() and not overwrite:
        raise FileExistsError(
            f"`output`={str(output)!r} already exists. Pass `overwrite=True` (CLI: "
            "--overwrite) to replace it, or choose another output directory."
        )
    if output.exists() and not is_export(output):
        raise FileExistsError(
            f"`output`={str(output)!r} exists and is not a keras-wrs export (it has no "
            f"{MANIFEST_FILE} written by keras-wrs), so `overwrite` will not delete it. Choose "
            "another output directory, or remove that directory yourself if it is disposable."
        )
    parent = output.parent
    if not parent.is_dir():
        raise FileNotFoundError(
            f"`output`={str(output)!r} cannot be created: its parent {str(parent)!r} is not an "
            "existing directory. Create the parent first or choose another output."
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(
            f"`output`={str(output)!r} cannot be created: {str(parent)!r} is not writable. "
            "Choose an output directory you can write to."
        )
    return output


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def staging_directory(parent=None):
    """A hidden temporary directory, removed on exit unless it was committed.

    Args:
        parent: where to create it (the target's parent, so that the final
            rename stays on one file system); the system temp dir if `None`.

    Yields:
        The staging directory's `Path`.
    """
    try:
        staging = Path(tempfile.mkdtemp(prefix=".keras-wrs-export.", suffix=".partial", dir=parent))
    except OSError as err:
        raise PermissionError(
            f"Cannot create a staging directory in {str(parent)!r} ({err}). Choose an output "
            "directory you can write to."
        ) from err
    os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes it private; exports are not.
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _lock_path(output: Path) -> Path:
    return output.parent / f".{output.name}.keras-wrs-export.lock"


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _take_lock(lock: Path) -> int:
    try:
        return os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        try:
            pid = int(lock.read_text().strip() or "0")
        except (OSError, ValueError):
            pid = 0
        if pid and not _running(pid):  # left by a killed export (kill -9)
            lock.unlink(missing_ok=True)
            return os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        raise FileExistsError(
            f"Another export to the same `output` is running (process {pid or '?'}, lock file "
            f"{str(lock)!r}). Wait for it to finish or choose another output directory; if no "
            "export is running, delete the lock file."
        ) from None


@contextlib.contextmanager
def export_lock(output):
    """An exclusive lock on one export target, held while the export runs.

    The lock is a file created with `O_EXCL` beside the target and holding
    the owner's process id, so a second export to the same target fails at
    once instead of racing to the final rename. A lock whose process is
    gone (killed with SIGKILL) is taken over.

    Args:
        output: the export directory.

    Yields:
        The lock file's `Path`.

    Raises:
        FileExistsError: another running export holds the lock.
    """
    lock = _lock_path(Path(output))
    fd = _take_lock(lock)
    try:
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        yield lock
    finally:
        lock.unlink(missing_ok=True)


# Signals that arrived during the current `interruptible()` block (main thread only).
_RECEIVED: list = []


@contextlib.contextmanager
def interruptible():
    """Turns SIGTERM and Ctrl-C into `ExportInterrupted` while the block runs (main thread only).

    Python runs `finally` blocks on Ctrl-C (KeyboardInterrupt) but not on a
    default SIGTERM, which would leave the staging directory behind. The
    first signal is only recorded: the export stops at its next checkpoint
    (`raise_if_interrupted`, called between conversions and before the commit,
    seconds apart). An exception raised from a signal handler can land inside
    a C extension that calls back into Python, where TensorFlow turns it into
    `SystemError` and prints a traceback; that is why it is not raised at
    once. A second signal raises at once, and any error after a signal is
    reported as the interrupt it was, with the original error chained. A
    signal after the last checkpoint (the export is complete) is delivered
    again, to the handler the caller had, once the block ends.
    SIGINT is only taken over while Python's default Ctrl-C handler is
    installed.

    Yields:
        None.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        name = signal.Signals(signum).name
        _RECEIVED.append(name)
        if len(_RECEIVED) > 1:  # asked again: stop now
            raise ExportInterrupted(_RECEIVED[0])

    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, handler)}
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, handler)
    outer = list(_RECEIVED)
    _RECEIVED.clear()
    completed = False
    try:
        yield
        completed = True
    except BaseException as error:
        if _RECEIVED and not isinstance(error, ExportInterrupted):
            raise ExportInterrupted(_RECEIVED[0]) from error
        raise
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
        pending = list(_RECEIVED) if completed else []
        _RECEIVED[:] = outer
    if pending:  # arrived after the last checkpoint: the export is complete, the signal
        signal.raise_signal(signal.Signals[pending[0]])  # goes to the caller's handler


def raise_if_interrupted() -> None:
    """Raises `ExportInterrupted` if a signal arrived in the current `interruptible()` block.

    Raises:
        ExportInterrupted: a signal arrived.
    """
    if _RECEIVED:
        raise ExportInterrupted(_RECEIVED[0])


def commit(staging: Path, output: Path, overwrite: bool) -> Path:
    """Moves a finished staging directory to `output`.

    Args:
        staging: the complete export.
        output: where it belongs.
        overwrite: whether an existing `output` may be replaced.

    Returns:
        `output`.

    Raises:
        FileExistsError: `output` appeared meanwhile and `overwrite` is false.
        ExportInterrupted: a signal arrived during the export.
    """
    raise_if_interrupted()
    output = Path(output)
    if not output.exists():
        os.rename(staging, output)
        return output
    if not overwrite:
        raise FileExistsError(
            f"`output`={str(output)!r} appeared while exporting. Pass `overwrite=True` "
            "(CLI: --overwrite) to replace it."
        )
    if not is_export(output):
        raise FileExistsError(
            f"`output`={str(output)!r} appeared while exporting and is not a keras-wrs "
            "export; it was left untouched. Choose another output directory."
        )
    retired = output.parent / f".{output.name}.{uuid.uuid4().hex[:8]}.old"
    os.rename(output, retired)
    try:
        os.rename(staging, output)
    except OSError:
        os.rename(retired, output)
        raise
    shutil.rmtree(retired, ignore_errors=True)
    return output
