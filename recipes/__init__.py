"""Recipes: train image classifiers with weight rescaling or weight decay.

`train` fits one configuration into a run directory, `run_grid` compares
regularizations x optimizers x seeds, `RECIPES` holds the registered
configurations; the `keras-wrs` command line (`keras_wrs.recipes.cli`) wraps
them. Needs the `recipes` extra: `pip install 'keras-wrs[recipes]'`.
"""

from keras_wrs._lazy import lazy_getattr

# Imported on first use, so that `keras_wrs.recipes.models` (pure Keras) loads
# without TensorFlow, e.g. under KERAS_BACKEND=jax.
_WHERE = {
    "Grid": "compare", "run_grid": "compare",
    "RECIPES": "config", "Config": "config", "get_recipe": "config",
    "override": "config", "smoke": "config", "validate": "config",
    "load_splits": "data", "MODELS": "models", "build_model": "models",
    "write_report": "report", "train": "train",
}

__getattr__ = lazy_getattr(__name__, _WHERE)


__all__ = [
    "Config",
    "Grid",
    "MODELS",
    "RECIPES",
    "build_model",
    "get_recipe",
    "load_splits",
    "override",
    "run_grid",
    "smoke",
    "train",
    "validate",
    "write_report",
]
