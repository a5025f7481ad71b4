"""Where an export starts: a Keras model, a `.keras` file or a training run, and its data.

A run directory written by `keras-wrs train` holds `model.keras` (the final
model) and `config.json` (the run record). Either the directory or the
`.keras` file can be exported; a `config.json` beside the model supplies the
metadata the model itself does not carry (class names, preprocessing,
dataset, the configuration hash).

A `config.json` written by the recipes (it has a `config_hash`, `config` or
`resolved` entry) is read and checked by the recipes' own reader,
`keras_wrs.recipes.runs.record.RunRecord.read`: a cut or hand-edited record
is a `ValueError` naming the file. The record names the run's data set and the
preprocessing the model was trained with (`(x * rescale - mean) / std`,
applied outside the model); `RunRecord.splits` reads the data again (nothing
is downloaded) and `RunRecord.preprocessing` applies those recorded values:
the run's test examples check parity, its training examples calibrate the
int8 formats. Any other `config.json` beside a `.keras` file is a foreign
configuration: only its class names, data set name and preprocessing are
looked up (`find_config_value`), and no data is read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import keras
import numpy as np

from keras_wrs.export.inputs import CalibrationSet, ParityBatch
from keras_wrs.recipes.runs.record import RunRecord

__all__ = [
    "ExportSource",
    "load_source",
    "config_hash",
    "find_config_value",
    "run_facts",
    "run_test_batch",
    "run_calibration",
]

MODEL_FILE = "model.keras"
CONFIG_FILE = "config.json"
# A foreign config may keep dataset facts at the top or one level down.
_CONFIG_SECTIONS = ("data", "dataset", "model", "preprocessing")
# Entries only a recipes' run record has (`keras_wrs.recipes.runs.record.resolved_config`).
_RECORD_KEYS = frozenset({"config_hash", "config", "resolved"})


@dataclasses.dataclass(frozen=True)
class ExportSource:
    """A model to export and what is known about where it came from.

    Attributes:
        model: the Keras model as trained (any dtype policy).
        model_path: the `.keras` file it was loaded from, or `None`.
        run_dir: the run directory, when the source was one.
        config: the parsed `config.json`, or `None` when there was none.
        config_path: where `config` was read from, or `None`.
        record: the checked `RunRecord` when `config.json` is a recipes' run
            record, else `None`.
    """

    model: keras.Model
    model_path: Path | None = None
    run_dir: Path | None = None
    config: dict | None = None
    config_path: Path | None = None
    record: RunRecord | None = None

    @property
    def label(self) -> str:
        """A short description of the source for reports."""
        if self.run_dir is not None:
            return f"run directory {self.run_dir}"
        if self.model_path is not None:
            return f"model file {self.model_path}"
        return f"in-memory model {self.model.name!r}"


def load_source(source, custom_objects: dict | None = None) -> ExportSource:
    """Resolves a model, a `.keras` file or a run directory.

    Args:
        source: a `keras.Model`, a path to a `.keras` file, or a run directory
            containing `model.keras` (and optionally `config.json`).
        custom_objects: classes the `.keras` file needs that are not
            registered with `keras.saving.register_keras_serializable`.

    Returns:
        An `ExportSource`.

    Raises:
        FileNotFoundError: the path, or `model.keras` inside it, is missing.
        ValueError: the file is not a loadable `.keras` model, `config.json`
            is not valid JSON, or a run record in it was cut or edited.
    """
    if isinstance(source, keras.Model):
        return ExportSource(model=source)
    if not isinstance(source, (str, Path)):
        raise TypeError(
            "`source` must be a keras.Model, a .keras file or a run directory. "
            f"Received: source={source!r} of type {type(source).__name__}"
        )
    path = Path(source)
    run_dir = path if path.is_dir() else None
    model_path = _model_path(path)
    config_path = model_path.parent / CONFIG_FILE
    config = _read_config(config_path) if config_path.is_file() else None
    record = None
    if config is not None and _RECORD_KEYS & set(config):
        record = RunRecord.read(model_path.parent)
        config = record.stored
    return ExportSource(
        model=_load_model(model_path, custom_objects),
        model_path=model_path,
        run_dir=run_dir,
        config=config,
        config_path=config_path if config is not None else None,
        record=record,
    )


def _model_path(path: Path) -> Path:
    if path.is_dir():
        model_path = path / MODEL_FILE
        if not model_path.is_file():
            raise FileNotFoundError(
                f"`source`={str(path)!r} is a directory without {MODEL_FILE}. Pass a run "
                "directory written by `keras-wrs train` or the path of a .keras file."
            )
        return model_path
    if not path.exists():
        raise FileNotFoundError(
            f"`source`={str(path)!r} does not exist. Pass a run directory or a .keras file."
        )
    if path.suffix != ".keras":
        raise ValueError(
            f"`source`={str(path)!r} is not a .keras file. Save the model with "
            "`model.save('model.keras')` or pass the run directory that contains it."
        )
    return path


def _load_model(path: Path, custom_objects: dict | None) -> keras.Model:
    # compile=False: the optimizer (keras-wrs or not) is training state, never exported.
    try:
        model = keras.saving.load_model(path, custom_objects=custom_objects, compile=False)
    except Exception as err:  # Keras raises many types for a damaged archive.
        raise ValueError(
            f"`source`={str(path)!r} could not be loaded as a Keras model "
            f"({type(err).__name__}: {err}). The file may be truncated or corrupted: "
            "save it again with `model.save(...)` or re-run training. Custom layers "
            "must be registered with `keras.saving.register_keras_serializable` or "
            "passed in `custom_objects`."
        ) from err
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"`source`={str(path)!r} holds a {type(model).__name__}, not a keras.Model. "
            "Export a model saved with `model.save(...)`."
        )
    return model


def _read_config(path: Path) -> dict:
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(
            f"The run configuration {str(path)!r} is not readable JSON ({err}). "
            "Restore it from the run, or export the .keras file from another directory."
        ) from err
    if not isinstance(config, dict):
        raise ValueError(
            f"The run configuration {str(path)!r} holds a {type(config).__name__}, not a "
            "JSON object. Restore it from the run."
        )
    return config


def config_hash(config: dict | None) -> str | None:
    """The training configuration's hash.

    A `config_hash` entry written by the training run wins; otherwise the
    SHA-256 of the configuration as canonical JSON (sorted keys, no spaces).

    Args:
        config: the parsed run configuration, or `None`.

    Returns:
        The hash as a string, or `None` without a configuration.
    """
    if config is None:
        return None
    recorded = config.get("config_hash")
    if isinstance(recorded, str) and recorded:
        return recorded
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def find_config_value(config: dict | None, key: str) -> Any:
    """Looks `key` up at the top of a foreign configuration or one section down.

    Args:
        config: the parsed configuration, or `None`.
        key: the entry to find, e.g. `"class_names"`.

    Returns:
        The value, or `None` when absent.
    """
    if not config:
        return None
    if key in config:
        return config[key]
    for section in _CONFIG_SECTIONS:
        sub = config.get(section)
        if isinstance(sub, dict) and key in sub:
            return sub[key]
    return None


def run_facts(source: ExportSource) -> dict:
    """What the source's `config.json` says that the model does not carry.

    A run record is read through its typed accessors; a foreign
    configuration through `find_config_value`.

    Args:
        source: the `ExportSource`.

    Returns:
        `dataset` (a name), `class_names`, `preprocessing` (outside the
        model) and `config_hash`; each `None` when unknown.
    """
    config = source.config
    if source.record is not None:
        dataset = source.record.dataset
        names = dataset.get("class_names")
        prep = config.get("preprocessing")
        dataset = dataset.get("name")
    else:
        names = find_config_value(config, "class_names")
        prep = find_config_value(config, "preprocessing")
        dataset = find_config_value(config, "dataset")
        if isinstance(dataset, dict):
            dataset = dataset.get("name")
    return {
        "dataset": dataset if isinstance(dataset, str) else None,
        "class_names": names,
        "preprocessing": prep,
        "config_hash": config_hash(config),
    }


def _name(record: RunRecord) -> str:
    return record.config.dataset


def _unprepared(record: RunRecord | None) -> str | None:
    """Why the run's model inputs cannot be made from its record, or `None`."""
    if record is None:
        return "no run config.json names the data set"
    if "preprocessing" not in record.stored:
        return "the run's config.json does not record its preprocessing"
    return None


def run_test_batch(record: RunRecord | None, size: int) -> tuple[ParityBatch | None, str | None]:
    """The first `size` test examples of the run's data set, preprocessed.

    Args:
        record: the run's `RunRecord`, or `None`.
        size: how many examples (fewer if the test split is smaller).

    Returns:
        `(batch, None)`, or `(None, reason)` when the data cannot be read.
    """
    reason = _unprepared(record)
    if reason is not None:
        return None, reason
    try:
        splits = record.splits()
    except Exception as err:  # a missing TFDS set, a missing optional dependency
        return None, f"the run's data set {_name(record)!r} could not be read ({err})"
    n = min(size, len(splits.x_test))
    x = np.asarray(record.preprocessing.apply(splits.x_test[:n]), np.float32)
    where = (
        f"the run's own test data: {_name(record)} test split, first {n} of "
        f"{len(splits.x_test)}, preprocessed as in config.json"
    )
    return ParityBatch(x, where, real=True), None


def run_calibration(record: RunRecord | None, size: int, seed: int = 0) -> CalibrationSet:
    """`size` training examples of the run's data set, drawn without replacement, preprocessed.

    Args:
        record: the run's `RunRecord`, or `None`.
        size: how many examples (fewer if the training split is smaller).
        seed: NumPy generator seed of the draw.

    Returns:
        A `CalibrationSet`.

    Raises:
        ValueError: there is no run record, it records no preprocessing, or
            its data cannot be read; the message says to pass a calibration
            file.
    """
    if record is None:
        raise ValueError(
            "int8 formats need calibration inputs: the source has no run config.json naming "
            "its data set. Pass `calibration=` (CLI: --calibration FILE.npz) with model inputs."
        )
    if _unprepared(record) is not None:
        raise ValueError(
            f"int8 formats need calibration inputs, but {_unprepared(record)}. Pass "
            "`calibration=` (CLI: --calibration FILE.npz) with model inputs."
        )
    try:
        splits = record.splits()
    except Exception as err:
        raise ValueError(
            f"int8 formats calibrate on the run's training data, but data set "
            f"{_name(record)!r} could not be read ({err}). Pass `calibration=` "
            "(CLI: --calibration FILE.npz)."
        ) from err
    n = min(size, len(splits.x_train))
    index = np.sort(np.random.default_rng(seed).choice(len(splits.x_train), n, replace=False))
    x = np.asarray(record.preprocessing.apply(splits.x_train[index]), np.float32)
    where = (
        f"the run's own training data: {_name(record)} train split, {n} of "
        f"{len(splits.x_train)} drawn with seed {seed}, preprocessed as in config.json"
    )
    return CalibrationSet(x, where)
