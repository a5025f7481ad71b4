"""Checks of a run record read back from disk: a cut or hand-edited file is named, not trusted.

`config.json` and `summary.json` are written by `keras_wrs.recipes.runs.record`.
Read back (by `--resume`, `keras-wrs report`, the exporter), every value that
is used is checked: JSON that parses, the layout the writer uses, config
fields that pass `validate`, and numbers in their range (an accuracy in
[0, 1], a wall time >= 0, finite statistics). A failure is a `RunRecordError`
naming the file, the value and what to do.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

__all__ = ["RunRecordError", "load_json", "check_config_record", "check_summary"]

# The names a report groups runs by: a summary without them cannot be read.
_NAMES = ("regularization", "optimizer")
_FIX = (
    "The file was cut or edited by hand: start the run again (--overwrite), "
    "or leave its directory out."
)


class RunRecordError(ValueError):
    """A `config.json` or `summary.json` that is not as keras-wrs wrote it."""


def _bad(path, problem):
    return RunRecordError(f"{str(path)!r}: {problem}. {_FIX}")


def load_json(path):
    """The JSON object in `path`, or None if there is no such file.

    Raises:
        RunRecordError: the file is not readable JSON or not a JSON object.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise _bad(path, f"not readable as JSON ({err})") from None
    if not isinstance(value, dict):
        raise _bad(path, f"holds a JSON {type(value).__name__}, not an object")
    return value


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check(path, name, value, low=None, high=None, finite=True, optional=True, integer=False):
    if value is None and optional:
        return
    ok = _number(value) and (not integer or isinstance(value, int))
    ok = ok and (not finite or math.isfinite(value))
    ok = ok and (low is None or not value < low) and (high is None or not value > high)
    if not ok:
        kind = "an integer" if integer else "a finite number" if finite else "a number"
        where = (
            f" in [{low:g}, {high:g}]"
            if low is not None and high is not None
            else f" >= {low:g}"
            if low is not None
            else ""
        )
        raise _bad(path, f"{name}={value!r} is not {kind}{where}")


def check_config_record(stored, path):
    """Check a parsed `config.json`; returns its `Config`.

    Only `config` is required (older and hand-made records hold less); every
    other section is checked where present.

    Raises:
        RunRecordError: no config, a config that does not validate, a
            section that is not an object, or a preprocessing statistic or
            resolved number that is not a finite number in its range.
    """
    from keras_wrs.recipes.config import from_dict, validate

    if not isinstance(stored.get("config"), dict):
        raise _bad(path, "has no 'config' section")
    for section in ("dataset", "preprocessing", "resolved"):
        if section in stored and not isinstance(stored[section], dict):
            raise _bad(path, f"its {section!r} section is {stored[section]!r}, not an object")
    try:
        config = validate(from_dict(stored["config"]))
    except (TypeError, ValueError) as err:
        raise _bad(path, f"its config does not validate ({err})") from None
    if "preprocessing" in stored:
        _check_preprocessing(stored["preprocessing"], path)
    for key in ("learning_rate", "weight_decay", "lr_scale"):
        _check(path, f"resolved.{key}", stored.get("resolved", {}).get(key), low=0)
    return config


def _check_preprocessing(prep, path):
    _check(path, "preprocessing.rescale", prep.get("rescale"), low=0, optional=False)
    for key in ("mean", "std"):
        values = prep.get(key)
        if not isinstance(values, list) or not values:
            raise _bad(path, f"preprocessing.{key}={values!r} is not a list of numbers")
        for value in values:
            low = 1e-12 if key == "std" else None
            _check(path, f"preprocessing.{key}", value, optional=False, low=low)


def check_summary(summary, path):
    """Check a parsed `summary.json`.

    The names and the seed a report groups by are required; every other
    value is checked where present.

    Raises:
        RunRecordError: an unknown status, a missing name, or a number out of
            its range.
    """
    status = summary.get("status", "finished")
    if status not in ("finished", "diverged"):
        raise _bad(path, f"status={status!r} is neither 'finished' nor 'diverged'")
    for key in ("regularization", "optimizer", "dataset", "model"):
        if not isinstance(summary.get(key), str) and (key in summary or key in _NAMES):
            raise _bad(path, f"{key}={summary.get(key)!r} is not a name")
    diverged = status == "diverged"
    _check(path, "seed", summary.get("seed"), low=0, integer=True, optional=False)
    _check(path, "epochs", summary.get("epochs"), low=1, integer=True)
    _check(path, "wall_seconds", summary.get("wall_seconds"), low=0)
    for key in ("test_accuracy", "train_accuracy"):
        _check(path, key, summary.get(key), low=0, high=1, finite=not diverged)
    for key in ("test_loss", "train_loss"):
        _check(path, key, summary.get(key), low=0, finite=not diverged)
    for key in ("images_per_second", "noise_ratio"):
        _check(path, key, summary.get(key), low=0)
    dynamics = summary.get("dynamics") or {}
    if not isinstance(dynamics, dict):
        raise _bad(path, f"dynamics={dynamics!r} is not an object")
    for key, value in dynamics.items():
        _check(path, f"dynamics[{key!r}]", value)
    return summary
