"""The batch a parity check runs on, and an honest label for where it came from."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

__all__ = ["ParityBatch", "load_batch", "random_batch", "as_parity_batch"]

# Keys tried, in order, when an .npz file holds several arrays.
NPZ_KEYS = ("x", "images", "inputs", "x_test")


@dataclasses.dataclass(frozen=True)
class ParityBatch:
    """Inputs for a parity check.

    Attributes:
        inputs: float32 array of shape `(n,) + input_shape`.
        description: where the inputs came from, printed with the report.
        real: whether these are real examples (`False` for random inputs).
    """

    inputs: np.ndarray
    description: str
    real: bool


def random_batch(shape: tuple[int, ...], batch_size: int = 8, seed: int = 0) -> ParityBatch:
    """Seeded standard-normal inputs, labelled as not real data.

    Args:
        shape: one example's shape.
        batch_size: number of examples.
        seed: NumPy generator seed.

    Returns:
        A `ParityBatch` with `real=False`.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(
            f"`batch_size` must be a positive integer. Received: batch_size={batch_size!r}"
        )
    shape = (batch_size,) + tuple(shape)
    inputs = np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
    description = f"RANDOM inputs, not real data (standard normal, seed={seed})"
    return ParityBatch(inputs, description, real=False)


def load_batch(path, batch_key: str | None = None) -> ParityBatch:
    """Reads a batch from a `.npy` file or one array of an `.npz` file.

    Args:
        path: the file.
        batch_key: the array to use in an `.npz` file; by default the only array,
            or the first of `x`, `images`, `inputs`, `x_test` present.

    Returns:
        A `ParityBatch` with `real=True` (the caller vouches for the data).

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: wrong suffix, unreadable file or no matching array.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"`batch`={str(path)!r} does not exist. Pass a .npy or .npz file.")
    if path.suffix not in (".npy", ".npz"):
        raise ValueError(f"`batch`={str(path)!r} must be a .npy or .npz file (NumPy's formats).")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ValueError(f"`batch`={str(path)!r} is not a readable NumPy file ({err}).") from err
    if isinstance(data, np.ndarray):
        return ParityBatch(data, f"given batch {path.name}", real=True)
    with data:
        name = npz_key(path, list(data.keys()), batch_key)
        return ParityBatch(data[name], f"given batch {path.name}[{name!r}]", real=True)


def npz_key(path: Path, keys: list[str], key: str | None, arg: str = "batch") -> str:
    """The array of an `.npz` to read: `key` if given, the only one, or a usual name.

    `arg` names the command-line argument (`batch`, `calibration`) in errors.
    """
    if key is not None:
        if key not in keys:
            raise ValueError(
                f"`{arg}_key`={key!r} is not in {str(path)!r}, which holds {keys}. "
                "Pass one of those."
            )
        return key
    if len(keys) == 1:
        return keys[0]
    for candidate in NPZ_KEYS:
        if candidate in keys:
            return candidate
    raise ValueError(
        f"`{arg}`={str(path)!r} holds arrays {keys} and none is named {list(NPZ_KEYS)}. "
        f"Name the inputs with `{arg}_key`."
    )


def as_parity_batch(batch, shape: tuple[int, ...]) -> ParityBatch:
    """Checks a batch against the model's input shape and casts it to float32.

    Args:
        batch: a `ParityBatch` or an array (taken as real examples).
        shape: one example's shape.

    Returns:
        A `ParityBatch` whose `inputs` are float32 of shape `(n,) + shape`.

    Raises:
        ValueError: the shape does not match, the batch is empty or not numeric.
    """
    if not isinstance(batch, ParityBatch):
        batch = ParityBatch(np.asarray(batch), "given array", real=True)
    inputs = np.asarray(batch.inputs)
    if inputs.ndim != len(shape) + 1 or tuple(inputs.shape[1:]) != tuple(shape):
        raise ValueError(
            f"The parity batch ({batch.description}) has shape {inputs.shape}, the model takes "
            f"(n,) + {tuple(shape)}. Pass examples of the model's input shape."
        )
    if inputs.shape[0] == 0 or not np.issubdtype(inputs.dtype, np.number):
        raise ValueError(
            f"The parity batch ({batch.description}) must hold at least one numeric example. "
            f"Received: shape={inputs.shape}, dtype={inputs.dtype}"
        )
    return dataclasses.replace(batch, inputs=inputs.astype(np.float32))
