"""Fashion-MNIST from its four official IDX files, checked before use.

Fashion-MNIST (Xiao, Rasul and Vollgraf 2017, arXiv 1708.07747): 70,000
grayscale 28x28 images of 10 clothing classes, 60,000 for training and 10,000
for testing. The files are read, gzipped or not, from the first place that
holds them:

1. the `data_dir` of the run (`--data-dir DIR`) if one is given: the IDX
   files there, else TensorFlow Datasets' `fashion_mnist` prepared in DIR;
2. else the directory named by the environment variable
   `KERAS_WRS_FASHION_MNIST`, if it is set;
3. else `/usr/share/datasets/fashion-mnist`, where Debian's package
   `dataset-fashion-mnist` installs them (`apt-get install dataset-fashion-mnist`),
   then TensorFlow Datasets' `fashion_mnist` (with `download=False` unless
   `--download`), through `keras_wrs.recipes.data.sources`.

A place the user names (1 or 2) must hold the data: a missing directory, or
one without the files, is an error, never a reason to read another copy.

Every file is checked: the IDX magic number, the element type (unsigned
byte), the shape, the exact size (a truncated file fails), the label range,
and the SHA-256 of the decompressed content against the genuine files'
(`FILES`). The gzip bytes themselves may differ between packagings (Debian
re-gzipped them, so the MD5 sums Fashion-MNIST's README publishes, which are
of the original .gz files, do not match), but the decompressed bytes do not.
A place that holds some of the files but not all, or a bad file, is an error
at once, never a reason to try the next place or other data.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
from pathlib import Path

import numpy as np

__all__ = [
    "ENV_VAR",
    "DEBIAN_DIR",
    "CLASS_NAMES",
    "HOW_TO_GET",
    "FILES",
    "IdxFile",
    "FashionMnistError",
    "read_idx",
    "find_idx_dir",
    "load_idx_splits",
]

ENV_VAR = "KERAS_WRS_FASHION_MNIST"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
HOW_TO_GET = (
    "To get Fashion-MNIST: `apt-get install dataset-fashion-mnist` (Debian and "
    "Ubuntu; installs the files in /usr/share/datasets/fashion-mnist), or put "
    "the four IDX files (gzipped or not) in a directory and pass `--data-dir "
    f"DIR` or set {ENV_VAR}=DIR, or pass `--download` to let TensorFlow "
    "Datasets fetch it (needs a network)."
)

_MAGIC = {3: 2051, 1: 2049}  # images (n, rows, cols), labels (n,)


@dataclasses.dataclass(frozen=True)
class IdxFile:
    """What one of the four files must hold once decompressed."""

    name: str
    shape: tuple[int, ...]
    sha256: str


# Recorded from the genuine files (decompressed): the same for Debian's
# re-gzipped copies and for the originals.
FILES = {
    "train_images": IdxFile(
        "train-images-idx3-ubyte",
        (60_000, 28, 28),
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    ),
    "train_labels": IdxFile(
        "train-labels-idx1-ubyte",
        (60_000,),
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    ),
    "test_images": IdxFile(
        "t10k-images-idx3-ubyte",
        (10_000, 28, 28),
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    ),
    "test_labels": IdxFile(
        "t10k-labels-idx1-ubyte",
        (10_000,),
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    ),
}


class FashionMnistError(RuntimeError):
    """A Fashion-MNIST file that is missing, truncated or not genuine."""


def _fail(path, problem):
    return FashionMnistError(f"Fashion-MNIST file {str(path)!r}: {problem}. {HOW_TO_GET}")


def _candidates(directory, stem):
    return [Path(directory) / (stem + ".gz"), Path(directory) / stem]


def _locate(directory, spec):
    """The path of `spec` in `directory` (gzipped first), or None."""
    for path in _candidates(directory, spec.name):
        if path.is_file():
            return path
    return None


def _read_bytes(path):
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise _fail(path, f"cannot be read or decompressed ({err})") from err


def read_idx(path, spec):
    """Read and check one IDX file against `spec`.

    Args:
        path: the file, gzipped (`.gz`) or not.
        spec: an `IdxFile`: the expected shape and SHA-256 of the
            decompressed bytes.

    Returns:
        A uint8 array of `spec.shape`.

    Raises:
        FashionMnistError: the file is unreadable, has a wrong magic number,
            element type, shape or size, labels outside 0..9, or content
            other than the genuine file's.
    """
    raw = _read_bytes(Path(path))
    ndim = len(spec.shape)
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise _fail(path, f"truncated: {len(raw)} bytes, shorter than its {header}-byte header")
    magic = int.from_bytes(raw[:4], "big")
    if magic != _MAGIC[ndim]:
        raise _fail(
            path,
            f"IDX magic number {magic:#010x}, expected "
            f"{_MAGIC[ndim]:#010x} (unsigned bytes, {ndim} dims)",
        )
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if dims != spec.shape:
        raise _fail(path, f"shape {dims}, expected {spec.shape}")
    expected = header + int(np.prod(spec.shape))
    if len(raw) != expected:
        state = "truncated" if len(raw) < expected else "too long"
        raise _fail(path, f"{state}: {len(raw)} bytes decompressed, expected {expected}")
    digest = hashlib.sha256(raw).hexdigest()
    if digest != spec.sha256:
        raise _fail(
            path,
            f"content differs from the genuine file (SHA-256 of "
            f"the decompressed bytes {digest[:16]}..., expected "
            f"{spec.sha256[:16]}...)",
        )
    array = np.frombuffer(raw, np.uint8, offset=header).reshape(spec.shape)
    if ndim == 1 and array.max(initial=0) > 9:
        raise _fail(path, f"label {int(array.max())} outside 0..9")
    return array


def _search_dirs(data_dir):
    """The places to look, in order: a place the user names is the only one."""
    if data_dir:
        return [("--data-dir", Path(data_dir), True)]
    if os.environ.get(ENV_VAR):
        return [(ENV_VAR, Path(os.environ[ENV_VAR]), True)]
    return [("the Debian package dataset-fashion-mnist", DEBIAN_DIR, False)]


def find_idx_dir(data_dir=None, files=None):
    """The directory that holds the IDX files.

    A directory the user names (`data_dir`, else `KERAS_WRS_FASHION_MNIST`)
    is the only place searched: it must exist. Without one, the Debian
    package's directory is searched.

    Args:
        data_dir: the run's `--data-dir`.
        files: the expected files (default `FILES`).

    Returns:
        `(directory, origin)`, or `(None, origin)` when the directory holds
        none of the files (the caller then tries TensorFlow Datasets, in
        `data_dir` when one is given).

    Raises:
        FashionMnistError: a named directory that does not exist or is not
            a directory, or a directory that holds some of the files but not all.
    """
    files = FILES if files is None else files
    for origin, directory, named in _search_dirs(data_dir):
        if named and not directory.is_dir():
            state = "is not a directory" if directory.exists() else "does not exist"
            raise _fail(directory, f"(from {origin}) {state}")
        found = {key: _locate(directory, spec) for key, spec in files.items()}
        present = [k for k, p in found.items() if p is not None]
        if not present:
            return None, origin
        missing = [files[k].name for k, p in found.items() if p is None]
        if missing:
            raise _fail(
                directory,
                f"(from {origin}) holds "
                f"{len(present)} of the 4 files; missing: "
                f"{', '.join(m + '[.gz]' for m in missing)}",
            )
        return directory, origin
    return None, None


def load_idx_splits(directory, files=None):
    """The four arrays of the IDX files in `directory`, each checked.

    Args:
        directory: a directory found by `find_idx_dir`.
        files: the expected files (default `FILES`).

    Returns:
        `(x_train, y_train, x_test, y_test)`: uint8 images `(n, 28, 28, 1)`
        and int64 labels.
    """
    files = FILES if files is None else files
    arrays = {key: read_idx(_locate(directory, spec), spec) for key, spec in files.items()}
    return (
        arrays["train_images"][..., None],
        arrays["train_labels"].astype(np.int64),
        arrays["test_images"][..., None],
        arrays["test_labels"].astype(np.int64),
    )
