"""`keras` and `keras.layers`, imported on first attribute access.

Importing Keras loads its backend (TensorFlow by default, several seconds).
The recipe modules that hold names and configs (`config`, `models`, `optim`,
`pipeline`) use these stand-ins, so `keras-wrs list`, `--help` and usage
errors answer without loading any backend; the first real use imports it.
"""

from __future__ import annotations

import importlib

__all__ = ["keras", "layers"]


class _LazyModule:
    """A module imported when one of its attributes is first read."""

    def __init__(self, name):
        self._name = name

    def __getattr__(self, attr):
        return getattr(importlib.import_module(self._name), attr)

    def __repr__(self):
        return f"<lazy module {self._name!r}>"


keras = _LazyModule("keras")
layers = _LazyModule("keras.layers")
