"""A run directory's own data: test examples for parity, training examples for calibration.

`keras-wrs train` writes `config.json` with the data set (`config.dataset`,
`data_dir`, `image_size`, synthetic sizes) and the preprocessing the model
was trained with (`preprocessing`: `(x * rescale - mean) / std`, applied
outside the model). The data set is read again with
`keras_wrs.recipes.data.load_splits` (nothing is downloaded) and preprocessed
with those recorded values.
"""

from __future__ import annotations

import numpy as np

from keras_wrs.export.batch import ParityBatch
from keras_wrs.export.calibration import CalibrationSet

__all__ = ["data_spec", "preprocess", "run_test_batch", "run_calibration"]


def data_spec(config: dict | None) -> dict | None:
    """Where a run's data comes from, or `None` if its config does not say.

    Args:
        config: the parsed `config.json`.

    Returns:
        `name`, `data_dir`, `image_size`, `synthetic_size` and
        `preprocessing` (`rescale`, `mean`, `std`), or `None`.
    """
    if not isinstance(config, dict):
        return None
    train = config.get("config")
    prep = config.get("preprocessing")
    if not isinstance(train, dict) or not isinstance(train.get("dataset"), str):
        return None
    if not isinstance(prep, dict) or not {"rescale", "mean", "std"} <= set(prep):
        return None
    synthetic = (train.get("synthetic_train", 10_000), train.get("synthetic_test", 2_000))
    return {"name": train["dataset"], "data_dir": train.get("data_dir"),
            "image_size": train.get("image_size"), "synthetic_size": synthetic,
            "preprocessing": {k: prep[k] for k in ("rescale", "mean", "std")}}


def preprocess(images: np.ndarray, preprocessing: dict) -> np.ndarray:
    """Raw images to model inputs: `(x * rescale - mean) / std`, float32.

    Args:
        images: raw images `(n, h, w, c)`.
        preprocessing: `rescale`, per-channel `mean` and `std`.

    Returns:
        float32 model inputs.
    """
    x = np.asarray(images, np.float32) * np.float32(preprocessing["rescale"])
    mean = np.asarray(preprocessing["mean"], np.float32)
    std = np.asarray(preprocessing["std"], np.float32)
    return ((x - mean) / std).astype(np.float32)


def _splits(spec: dict):
    from keras_wrs.recipes.data import load_splits

    return load_splits(spec["name"], data_dir=spec["data_dir"], download=False,
                       image_size=spec["image_size"], synthetic_size=spec["synthetic_size"])


def run_test_batch(config: dict | None, size: int) -> tuple[ParityBatch | None, str | None]:
    """The first `size` test examples of the run's data set, preprocessed.

    Args:
        config: the run's parsed `config.json`.
        size: how many examples (fewer if the test split is smaller).

    Returns:
        `(batch, None)`, or `(None, reason)` when the data cannot be read.
    """
    spec = data_spec(config)
    if spec is None:
        return None, "the run's config.json does not name its data set and preprocessing"
    try:
        splits = _splits(spec)
    except Exception as err:  # a missing TFDS set, a missing optional dependency
        return None, f"the run's data set {spec['name']!r} could not be read ({err})"
    n = min(size, len(splits.x_test))
    x = preprocess(splits.x_test[:n], spec["preprocessing"])
    where = (f"the run's own test data: {spec['name']} test split, first {n} of "
             f"{len(splits.x_test)}, preprocessed as in config.json")
    return ParityBatch(x, where, real=True), None


def run_calibration(config: dict | None, size: int, seed: int = 0) -> CalibrationSet:
    """`size` training examples of the run's data set, drawn without replacement, preprocessed.

    Args:
        config: the run's parsed `config.json`.
        size: how many examples (fewer if the training split is smaller).
        seed: NumPy generator seed of the draw.

    Returns:
        A `CalibrationSet`.

    Raises:
        ValueError: the configuration does not name the data, or it cannot
            be read; the message says to pass a calibration file.
    """
    spec = data_spec(config)
    if spec is None:
        raise ValueError(
            "int8 formats need calibration inputs: the source has no run config.json naming "
            "its data set. Pass `calibration=` (CLI: --calibration FILE.npz) with model inputs.")
    try:
        splits = _splits(spec)
    except Exception as err:
        raise ValueError(
            f"int8 formats calibrate on the run's training data, but data set {spec['name']!r} "
            f"could not be read ({err}). Pass `calibration=` (CLI: --calibration FILE.npz).") from err
    n = min(size, len(splits.x_train))
    index = np.sort(np.random.default_rng(seed).choice(len(splits.x_train), n, replace=False))
    x = preprocess(splits.x_train[index], spec["preprocessing"])
    where = (f"the run's own training data: {spec['name']} train split, {n} of "
             f"{len(splits.x_train)} drawn with seed {seed}, preprocessed as in config.json")
    return CalibrationSet(x, where)
