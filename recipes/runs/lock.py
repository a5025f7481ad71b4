"""One owner per run directory: an advisory lock the operating system releases with its process.

A run (`train`), a grid (`compare`, `sweep`) or an export claims the directory
it writes by holding an exclusive `flock` on `<dir>/.keras-wrs.lock` for as
long as it works there. A second process that asks for the same directory is
refused at once, with the holder's process id, host and command (written into
the file) in the message.

Live and stale locks are told apart by the kernel, not by guessing: a `flock`
belongs to the open file of a living process, and the kernel drops it when
that process ends, however it ends (`kill -9` included). A lock file left
behind by a killed process is therefore not a lock: the next claim takes it,
so `--resume` after `kill -9` never waits. The file itself is removed when
its holder finishes normally. File systems where `flock` does not work
(some network mounts) make the claim fail with a message that says so.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
import time
from pathlib import Path

__all__ = ["LOCK_FILE", "RunDirBusyError", "RunDirLock", "holder"]

LOCK_FILE = ".keras-wrs.lock"


class RunDirBusyError(RuntimeError):
    """Another living process holds the run directory."""


def holder(directory):
    """What the lock file of `directory` says about its holder (`{}` if nothing).

    The file may be left by a process that has ended; only a failed claim
    tells that the holder lives.
    """
    try:
        return json.loads((Path(directory) / LOCK_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _describe(info):
    if not info:
        return "another process"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("since", 0)))
    command = " ".join(info.get("command", [])) or "?"
    return f"process {info.get('pid', '?')} on {info.get('host', '?')} (`{command}`, since {since})"


class RunDirLock:
    """An exclusive claim on a directory, held until `release` (or process exit).

    Args:
        directory: the directory to claim; it must exist.

    Example:
        >>> with RunDirLock("runs/mine"):
        ...     train_into("runs/mine")
    """

    def __init__(self, directory):
        self.directory = Path(directory)
        self.path = self.directory / LOCK_FILE
        self._fd = None

    def acquire(self):
        """Claim the directory.

        Raises:
            RunDirBusyError: a living process holds it (named in the message).
            OSError: the lock file cannot be created or locked.
        """
        import fcntl

        while self._fd is None:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                os.close(fd)
                if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                raise RunDirBusyError(
                    f"Run directory {str(self.directory)!r} is in use by "
                    f"{_describe(holder(self.directory))}. One process at a time writes a "
                    f"run directory: wait for that one to finish (or stop it), or choose "
                    f"another --out. A process that was killed holds no lock: the operating "
                    f"system releases it, so this holder is alive."
                ) from None
            if self._same_file(fd):
                self._fd = fd
            else:  # the file was removed by a finishing holder: claim the new one
                os.close(fd)
        self._write_holder()
        return self

    def _same_file(self, fd):
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def _write_holder(self):
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": sys.argv,
            "since": time.time(),
        }
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, (json.dumps(info) + "\n").encode(), 0)

    def release(self):
        """Give the directory up and remove the lock file."""
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            if self._same_file(self._fd):
                self.path.unlink()
        os.close(self._fd)
        self._fd = None

    @property
    def held(self):
        """Whether this object holds the claim."""
        return self._fd is not None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
