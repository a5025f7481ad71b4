"""Module attributes imported on first use (PEP 562), and when not to import Keras at all."""

import importlib
import os
import sys

__all__ = ["lazy_getattr", "is_cli_start", "LazyModule", "keras", "layers"]

_CLI_NAMES = ("keras-wrs", "keras-wrs.exe")


def is_cli_start() -> bool:
    """Whether this process is the `keras-wrs` command.

    The command imports Keras (whose import loads the backend, TensorFlow by
    default, several seconds) only once a command needs it, so that `--help`
    and argument errors answer at once; anywhere else `import keras_wrs`
    imports the optimizers at once.
    """
    return os.path.basename(getattr(sys, "argv", [""])[0] or "") in _CLI_NAMES


def lazy_getattr(package: str, where: dict):
    """A module `__getattr__` that imports `package.<where[name]>` on first use.

    Args:
        package: the package's `__name__`.
        where: attribute name -> submodule that defines it (None: the
            attribute is the submodule of that name).
    """

    def __getattr__(name):
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        if where[name] is None:
            return importlib.import_module(f"{package}.{name}")
        return getattr(importlib.import_module(f"{package}.{where[name]}"), name)

    return __getattr__


class LazyModule:
    """A module imported when one of its attributes is first read.

    The recipe modules that hold names and configs use `keras` and `layers`
    below, so `keras-wrs list`, `--help` and usage errors answer without
    loading any backend; the first real use imports it.
    """

    def __init__(self, name):
        self._name = name

    def __getattr__(self, attr):
        return getattr(importlib.import_module(self._name), attr)

    def __repr__(self):
        return f"<lazy module {self._name!r}>"


keras = LazyModule("keras")
layers = LazyModule("keras.layers")
