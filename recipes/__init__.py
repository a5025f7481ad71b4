"""Recipes: train image classifiers with weight rescaling or weight decay.

`train` fits one configuration into a run directory, `run_grid` compares
regularizations x optimizers x seeds, `RECIPES` holds the registered
configurations; the `keras-wrs` command line (`keras_wrs.recipes.cli`) wraps
them. Needs the `recipes` extra: `pip install 'keras-wrs[recipes]'`.

Rooms: `config` (the `Config`, the recipes, `--set` overrides, checks),
`data` (sources and the input pipeline), `training` (`train` and what it
uses), `runs` (the run directory, its record, backups), `sweeps` (grids of
runs, reports, figures); `models` holds the model builders.
"""

from keras_wrs._lazy import lazy_getattr

# Public name -> the module that defines it, imported on first use, so that
# `keras_wrs.recipes.models` (pure Keras) loads without TensorFlow, e.g.
# under KERAS_BACKEND=jax. No public name is also a submodule's name.
_WHERE = {
    "Config": "config",
    "RECIPES": "config",
    "get_recipe": "config",
    "override": "config",
    "smoke": "config",
    "validate": "config",
    "load_splits": "data",
    "MODELS": "models",
    "build_model": "models",
    "Grid": "sweeps.grid",
    "run_grid": "sweeps.grid",
    "run_sweep": "sweeps.grid",
    "write_report": "sweeps.report",
    "train": "training.train",
}

__getattr__ = lazy_getattr(__name__, _WHERE)

__all__ = sorted(_WHERE)
