"""The public paths of `keras_wrs.recipes`: `__all__`, the documented imports, the console script."""

import importlib.metadata
import subprocess
import sys
import types

import pytest

import keras_wrs.recipes as recipes


def test_every_public_name_resolves_and_none_is_a_module():
    for name in recipes.__all__:
        value = getattr(recipes, name)
        assert not isinstance(value, types.ModuleType), name
    assert callable(recipes.train) and recipes.train.__name__ == "train"
    assert {"Config", "RECIPES", "train", "run_grid", "write_report", "get_recipe"} <= set(
        recipes.__all__
    )


def test_readme_import_calls_the_train_function(tmp_path):
    """`from keras_wrs.recipes import Config, train` then `train(...)` calls the function.

    A fresh interpreter, so that the import order is the README's: once `Config`
    was imported, `train` used to be the submodule of that name.
    """
    script = (
        "from keras_wrs.recipes import Config, train\n"
        "import sys\n"
        "try:\n"
        f"    train(Config(epochs=0), {str(tmp_path / 'run')!r})\n"
        "except ValueError as err:\n"
        "    print('refused:', err)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "refused: `epochs` must be an integer > 0" in done.stdout
    assert not (tmp_path / "run").exists()


def test_documented_paths_stay():
    from keras_wrs.recipes.data import load_splits, register_dataset, splits_for
    from keras_wrs.recipes.models import register_model

    assert all(callable(f) for f in (load_splits, register_dataset, splits_for, register_model))
    (script,) = [
        e for e in importlib.metadata.entry_points(group="console_scripts") if e.name == "keras-wrs"
    ]
    assert script.value == "keras_wrs.recipes.cli:main"
    assert script.load() is importlib.import_module("keras_wrs.recipes.cli").main


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        recipes.nope  # noqa: B018
