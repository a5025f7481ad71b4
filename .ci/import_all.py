"""Imports every module of the installed keras-wrs wheel (run from outside the checkout).

A subpackage missing from pyproject.toml's `packages` is absent from the wheel:
an editable install hides that, an installed wheel does not.
"""

import importlib
import pkgutil
import sys
from pathlib import Path

import keras_wrs

checkout = Path(__file__).resolve().parents[1]
if (
    Path(keras_wrs.__file__).resolve().is_relative_to(checkout)
    or "site-packages" not in keras_wrs.__file__
):
    sys.exit(f"keras_wrs comes from {keras_wrs.__file__}, not from an installed wheel")
# `__main__` modules run their command when imported: their imports are covered by `cli`.
names = sorted(
    m.name
    for m in pkgutil.walk_packages(keras_wrs.__path__, "keras_wrs.")
    if not m.name.endswith(".__main__")
)
for name in names:
    importlib.import_module(name)
expected = {"keras_wrs.optimizers", "keras_wrs.dynamics", "keras_wrs.recipes", "keras_wrs.export"}
missing = expected - set(names)
if missing:
    sys.exit(f"not in the wheel: {sorted(missing)}")
print(f"imported {len(names)} modules from the installed wheel")
