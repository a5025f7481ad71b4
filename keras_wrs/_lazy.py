"""Module attributes imported on first use (PEP 562), and when not to import Keras at all."""

import importlib
import os
import sys

__all__ = ["lazy_getattr", "is_cli_start", "LazyModule", "keras", "layers"]

_CLI_NAMES = ("keras-wrs", "keras-wrs.exe")
# `python -m` of a module under this package is a command start too (the recipes'
# modules with a command line of their own: cli, sweeps.evidence).
_CLI_PACKAGE = "keras_wrs.recipes"


def is_cli_start() -> bool:
    """Whether this process is the `keras-wrs` command (or `python -m keras_wrs.recipes.X`).

    The command imports Keras (whose import loads the backend, TensorFlow by
    default, several seconds) only once a command needs it, so that `--help`
    and argument errors answer at once; anywhere else `import keras_wrs`
    imports the optimizers at once.
    """
    if os.path.basename(getattr(sys, "argv", [""])[0] or "") in _CLI_NAMES:
        return True
    module = _run_module(getattr(sys, "orig_argv", []))
    return module == _CLI_PACKAGE or module.startswith(_CLI_PACKAGE + ".")


def _run_module(argv) -> str:
    """The module of a `python [options] -m module` command line ("" when none)."""
    args = iter(argv[1:])
    for arg in args:
        if arg in ("-X", "-W"):
            next(args, None)  # the option's value
        elif arg == "-m":
            return next(args, "")
        elif arg.startswith("-m"):
            return arg[2:]
        elif arg.startswith("-c") or arg == "-" or not arg.startswith("-"):
            return ""  # a script, `-c` or stdin: the options end there
    return ""


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
