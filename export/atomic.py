"""All-or-nothing export directories.

An export is assembled in a hidden staging directory beside its target and
renamed into place only when it is complete and verified. A failure removes
the staging directory; an existing export is replaced only when asked, and is
put back if the replacement cannot be moved in.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path

__all__ = ["check_target", "staging_directory", "commit"]


def check_target(output, overwrite: bool) -> Path:
    """Checks that an export can be written at `output`, before any work is done.

    Args:
        output: the export directory to create.
        overwrite: whether an existing export there may be replaced.

    Returns:
        `output` as a `Path`.

    Raises:
        FileExistsError: `output` exists and `overwrite` is false, or it is a file.
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
    """
    output = Path(output)
    if not output.exists():
        os.rename(staging, output)
        return output
    if not overwrite:
        raise FileExistsError(
            f"`output`={str(output)!r} appeared while exporting. Pass `overwrite=True` "
            "(CLI: --overwrite) to replace it."
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
