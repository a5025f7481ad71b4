"""The inputs an export runs on: the parity batch and the int8 calibration set.

A parity batch carries an honest label for where it came from (random inputs
say so). A calibration set is model inputs exactly as the model sees them
(after the run's preprocessing), from the run's own training data or from an
`.npz` / `.npy` file, checked before any conversion. The default size, 256
examples, is within the 100 to 500 TensorFlow's post-training quantization
guide suggests; activation ranges are min/max over the set, so more examples
only widen them where rare inputs lie.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

__all__ = [
    "DEFAULT_CALIBRATION_SIZE",
    "NPZ_KEYS",
    "CalibrationSet",
    "ParityBatch",
    "as_parity_batch",
    "check_calibration",
    "count",
    "load_batch",
    "load_calibration",
    "npz_key",
    "random_batch",
]

# Keys tried, in order, when an .npz file holds several arrays.
NPZ_KEYS = ("x", "images", "inputs", "x_test")
DEFAULT_CALIBRATION_SIZE = 256


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


def count(value, arg: str, hint: str = "") -> int:
    """Checks a number of examples: a positive integer.

    Args:
        value: the value received.
        arg: the argument's name, for the message.
        hint: a sentence appended to the message (the default, for example).

    Returns:
        `value`.

    Raises:
        ValueError: `value` is not an integer >= 1 (booleans are refused).
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"`{arg}` must be a positive integer. Received: {arg}={value!r}"
            + (f". {hint}" if hint else "")
        )
    return value


def random_batch(shape: tuple[int, ...], batch_size: int = 8, seed: int = 0) -> ParityBatch:
    """Seeded standard-normal inputs, labelled as not real data.

    Args:
        shape: one example's shape.
        batch_size: number of examples.
        seed: NumPy generator seed.

    Returns:
        A `ParityBatch` with `real=False`.
    """
    count(batch_size, "batch_size")
    shape = (batch_size,) + tuple(shape)
    inputs = np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
    description = f"RANDOM inputs, not real data (standard normal, seed={seed})"
    return ParityBatch(inputs, description, real=False)


def _read_array(path: Path, key: str | None, arg: str, missing: str) -> tuple[np.ndarray, str]:
    """One array of a `.npy` file or of an `.npz` file, and its name in descriptions.

    `arg` names the argument (`batch`, `calibration`) in errors; `missing`
    is the fix printed when the file does not exist.
    """
    if not path.is_file():
        raise FileNotFoundError(f"`{arg}`={str(path)!r} does not exist. {missing}")
    if path.suffix not in (".npy", ".npz"):
        raise ValueError(f"`{arg}`={str(path)!r} must be a .npy or .npz file (NumPy's formats).")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ValueError(f"`{arg}`={str(path)!r} is not a readable NumPy file ({err}).") from err
    if isinstance(data, np.ndarray):
        return data, path.name
    with data:
        name = npz_key(path, list(data.keys()), key, arg=arg)
        return data[name], f"{path.name}[{name!r}]"


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
    x, name = _read_array(Path(path), batch_key, "batch", "Pass a .npy or .npz file.")
    return ParityBatch(x, f"given batch {name}", real=True)


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


@dataclasses.dataclass(frozen=True)
class CalibrationSet:
    """Inputs that set the int8 activation ranges.

    Attributes:
        inputs: float32 array of shape `(n,) + input_shape`.
        description: where they came from, recorded in the manifest.
    """

    inputs: np.ndarray
    description: str

    def summary(self) -> dict:
        """JSON-ready description for the manifest."""
        return {"examples": int(len(self.inputs)), "source": self.description}


def load_calibration(path, key: str | None = None) -> CalibrationSet:
    """Reads calibration inputs from a `.npy` file or one array of an `.npz` file.

    Args:
        path: the file.
        key: the array to use in an `.npz`; by default the only array or the
            first of `x`, `images`, `inputs`, `x_test` present.

    Returns:
        An unchecked `CalibrationSet` (see `check_calibration`).

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: wrong suffix, unreadable file or no matching array.
    """
    x, name = _read_array(
        Path(path),
        key,
        "calibration",
        "Pass a .npz or .npy file of model inputs, or export "
        "from a run directory to calibrate on its training data.",
    )
    return CalibrationSet(x, f"given file {name}")


def check_calibration(calibration, shape: tuple[int, ...]) -> CalibrationSet:
    """Checks calibration inputs against the model before any conversion.

    Args:
        calibration: a `CalibrationSet` or an array.
        shape: one example's shape.

    Returns:
        A `CalibrationSet` whose inputs are float32.

    Raises:
        ValueError: wrong shape, empty, not floating point (raw integer
            images are not preprocessed model inputs), or NaN/infinite values.
    """
    if not isinstance(calibration, CalibrationSet):
        calibration = CalibrationSet(np.asarray(calibration), "given array")
    x, where = np.asarray(calibration.inputs), calibration.description
    if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != tuple(shape):
        raise ValueError(
            f"`calibration` ({where}) has shape {x.shape}; the model takes (n,) + "
            f"{tuple(shape)}. Pass model inputs of that shape."
        )
    if x.shape[0] == 0:
        raise ValueError(
            f"`calibration` ({where}) is empty (shape {x.shape}); pass at least one "
            f"example, {DEFAULT_CALIBRATION_SIZE} or so for stable ranges."
        )
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(
            f"`calibration` ({where}) has dtype {x.dtype}; it must hold floating-point model "
            "inputs, preprocessed as in training (for a run: (x * rescale - mean) / std)."
        )
    bad = int(np.sum(~np.isfinite(x)))
    if bad:
        raise ValueError(
            f"`calibration` ({where}) contains {bad} NaN or infinite values; "
            "remove or fix those examples."
        )
    return dataclasses.replace(calibration, inputs=x.astype(np.float32))
