"""Recipes: train image classifiers with weight rescaling or weight decay.

`train` fits one configuration into a run directory, `run_grid` compares
regularizations x optimizers x seeds, `RECIPES` holds the registered
configurations; the `keras-wrs` command line (`keras_wrs.recipes.cli`) wraps
them. Needs the `recipes` extra: `pip install 'keras-wrs[recipes]'`.
"""

from keras_wrs.recipes.compare import Grid, run_grid
from keras_wrs.recipes.config import RECIPES, Config, get_recipe, override, smoke, validate
from keras_wrs.recipes.data import load_splits
from keras_wrs.recipes.models import MODELS, build_model
from keras_wrs.recipes.report import write_report
from keras_wrs.recipes.train import train

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
