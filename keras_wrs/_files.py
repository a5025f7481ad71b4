"""The one crash-safe file write of keras-wrs: write a temporary file, fsync, rename.

A reader (or a run resumed after `kill -9`) sees the old file or the new one,
never half of one. The temporary file lives in the target's folder (a rename
across file systems is not atomic), keeps the target's name at its end (so
writers that insist on a suffix, like Keras's `save_weights` and its
`.weights.h5`, accept it), and is removed when the write fails.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "atomic_write",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_write_npz",
    "partial_name",
    "PARTIAL_PREFIX",
]

# Temporary files start with this; a folder listing can tell them from real files.
PARTIAL_PREFIX = ".partial-"


def partial_name(path: Path) -> Path:
    """A fresh temporary path beside `path` that ends with `path`'s own name."""
    return path.with_name(f"{PARTIAL_PREFIX}{secrets.token_hex(4)}-{path.name}")


def _fsync(path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path, write: Callable[[Path], None]) -> Path:
    """Writes `path` through `write(temporary_path)`, then renames it into place.

    Args:
        path: the file to write (its folder must exist).
        write: writes the whole file at the path it is given.

    Returns:
        `path`, as a `Path`.
    """
    path = Path(path)
    tmp = partial_name(path)
    try:
        write(tmp)
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # the rename itself survives a power cut once the folder is synced
        _fsync(path.parent)
    except OSError:  # some file systems refuse to open a folder; the rename is done
        pass
    return path


def atomic_write_text(path, text: str) -> Path:
    """Writes `text` (UTF-8) to `path` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path, value) -> Path:
    """Writes `value` as indented JSON to `path` atomically (non-JSON values via `str`)."""
    return atomic_write_text(path, json.dumps(value, indent=2, default=str) + "\n")


def atomic_write_npz(path, arrays: dict) -> Path:
    """Writes `arrays` with `np.savez` to `path` atomically."""
    import numpy as np

    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    return atomic_write(path, write)
