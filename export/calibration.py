"""Representative inputs for int8 quantization, checked before any conversion.

A calibration set is model inputs exactly as the model sees them (after the
run's preprocessing), from the run's own training data or from an `.npz` /
`.npy` file. The default size, 256 examples, is within the 100 to 500
TensorFlow's post-training quantization guide suggests; activation ranges are
min/max over the set, so more examples only widen them where rare inputs lie.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from keras_wrs.export.batch import npz_key

__all__ = ["DEFAULT_CALIBRATION_SIZE", "CalibrationSet", "load_calibration", "check_calibration"]

DEFAULT_CALIBRATION_SIZE = 256


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
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"`calibration`={str(path)!r} does not exist. Pass a .npz or .npy file of model "
            "inputs, or export from a run directory to calibrate on its training data.")
    if path.suffix not in (".npy", ".npz"):
        raise ValueError(
            f"`calibration`={str(path)!r} must be a .npz or .npy file (NumPy's formats).")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ValueError(f"`calibration`={str(path)!r} is not a readable NumPy file ({err}).") from err
    if isinstance(data, np.ndarray):
        return CalibrationSet(data, f"given file {path.name}")
    with data:
        keys = list(data.keys())
        name = npz_key(path, keys, key, arg="calibration")
        return CalibrationSet(data[name], f"given file {path.name}[{name!r}]")


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
            f"{tuple(shape)}. Pass model inputs of that shape.")
    if x.shape[0] == 0:
        raise ValueError(f"`calibration` ({where}) is empty (shape {x.shape}); pass at least one "
                         f"example, {DEFAULT_CALIBRATION_SIZE} or so for stable ranges.")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(
            f"`calibration` ({where}) has dtype {x.dtype}; it must hold floating-point model "
            "inputs, preprocessed as in training (for a run: (x * rescale - mean) / std).")
    bad = int(np.sum(~np.isfinite(x)))
    if bad:
        raise ValueError(f"`calibration` ({where}) contains {bad} NaN or infinite values; "
                         "remove or fix those examples.")
    return dataclasses.replace(calibration, inputs=x.astype(np.float32))
