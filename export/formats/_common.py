"""What every format module shares: the job a writer reads, quiet loggers, the layer of a node."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import logging
from pathlib import Path

from keras_wrs.selection import iter_layers

__all__ = ["WriteJob", "quiet", "require", "layer_classes", "layer_of", "OUTSIDE_ANY_LAYER"]

OUTSIDE_ANY_LAYER = "<outside any layer>"


@dataclasses.dataclass(frozen=True)
class WriteJob:
    """What each format's `write(job, path)` reads.

    Attributes:
        model: the float32 inference copy.
        names: `(input_name, output_name)`.
        opset: the ONNX opset, or `None` when no ONNX file is made.
        metadata: the export's metadata, stored in every file that holds any.
        calibration: a `CalibrationSet` for the calibrated formats, else `None`.
        saved_model: the SavedModel every other format is converted from.
        float_onnx: the float32 ONNX file the float16 and int8 ONNX files are made from.
    """

    model: object
    names: tuple[str, str]
    opset: int | None
    metadata: dict
    calibration: object
    saved_model: Path
    float_onnx: Path


@contextlib.contextmanager
def quiet(*logger_names: str, level: int = logging.CRITICAL):
    """Raises the level of loggers whose errors the caller reports itself.

    Args:
        *logger_names: the loggers (`"tensorflow"`, `"tf2onnx"`).
        level: messages below this level are dropped while the block runs.
    """
    loggers = [logging.getLogger(name) for name in logger_names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(level)
    try:
        yield
    finally:
        for logger, previous in zip(loggers, levels, strict=True):
            logger.setLevel(previous)


def require(module: str, what: str):
    """Imports an optional export dependency, or says which extra installs it.

    Args:
        module: the module to import (`"onnx"`, `"tf2onnx"`).
        what: the task that needs it, for the message (`"ONNX export"`).

    Returns:
        The module.

    Raises:
        ImportError: the module is not installed; the message names the extra.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"{what} needs {module!r}, which is not installed. Install the export "
            "extra: `pip install 'keras-wrs[export]'`."
        ) from err


def layer_classes(model) -> dict[str, str]:
    """Layer name to class name for every layer of `model`, nested ones included."""
    return {layer.name: type(layer).__name__ for layer in iter_layers(model)}


def layer_of(node_name: str, layers: dict[str, str]) -> str:
    """The innermost layer named in a graph node's scope (`.../model_1/layer_1/Op`).

    Args:
        node_name: an ONNX node or LiteRT tensor name.
        layers: `layer_classes(model)`.

    Returns:
        A key of `layers`, or `OUTSIDE_ANY_LAYER`.
    """
    scopes = node_name.split(":")[0].split("/")
    for scope in reversed(scopes):
        base = scope.rsplit("_", 1)[0] if scope.rsplit("_", 1)[-1].isdigit() else scope
        for candidate in (scope, base):
            if candidate in layers:
                return candidate
    return OUTSIDE_ANY_LAYER
