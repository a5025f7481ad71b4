"""Load a `.keras` model with its keras-wrs optimizer, whatever the model's `compile()` does."""

from __future__ import annotations

import json
import os
import warnings
import zipfile

import keras

__all__ = ["load_model", "overrides_compile"]

# Keras's warnings about the restore that `load_model` below completes.
_KERAS_SKIPS = (
    r"`compile\(\)` was not called as part of model loading",
    r"Skipping variable loading for optimizer",
)


def overrides_compile(model) -> bool:
    """Whether `model`'s class overrides `compile()`, as KerasHub task models do.

    Keras restores the optimizer of a `.keras` file through
    `compile_from_config` only for models whose `compile()` is Keras's own.
    """
    return type(model).compile is not keras.Model.compile


def _compile_config(path):
    """The `compile_config` stored in a `.keras` archive, or None."""
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
    return config.get("compile_config")


def load_model(filepath, custom_objects=None, safe_mode: bool = True):
    """`keras.saving.load_model`, then the saved optimizer where Keras leaves it out.

    KerasHub task models (and any model whose class overrides `compile()`)
    come back from `keras.saving.load_model` compiled with their class's
    default optimizer (Adam for KerasHub), without the saved optimizer state:
    Keras only warns. This loads the model with Keras and, when the file holds
    a compile configuration Keras did not apply, compiles the model with it
    (the keras-wrs optimizer with its selection, the loss and metrics), builds
    the optimizer and reads its state from the same file: the step count,
    momentum or moments, and `target_norm="initial"` norms. Training then
    goes on as if the model had never been saved.

    Args:
        filepath: a `.keras` file written by `model.save`.
        custom_objects: as for `keras.saving.load_model`.
        safe_mode: as for `keras.saving.load_model`.

    Returns:
        The model, compiled as it was when saved.

    Raises:
        ValueError: `filepath` is not an existing `.keras` archive.

    Example:
        >>> model = keras_wrs.load_model("classifier.keras")
        >>> model.fit(x, y)  # the same keras-wrs optimizer, momentum included
    """
    path = os.fspath(filepath)
    if not path.endswith(".keras") or not zipfile.is_zipfile(path):
        raise ValueError(
            "`filepath` must be an existing `.keras` archive written by `model.save`. "
            f"Received: filepath={filepath!r}. For `.weights.h5` files, build and compile "
            "the model, then call `model.load_weights(filepath)`."
        )
    compile_config = _compile_config(path)
    with warnings.catch_warnings():
        for message in _KERAS_SKIPS:
            warnings.filterwarnings("ignore", message=message)
        model = keras.saving.load_model(path, custom_objects=custom_objects, safe_mode=safe_mode)
    if compile_config is None or not overrides_compile(model):
        return model  # Keras restored the optimizer itself, or there was none
    config = keras.saving.deserialize_keras_object(
        compile_config, custom_objects=custom_objects, safe_mode=safe_mode
    )
    model.compile(**config)
    model.optimizer.build(model.trainable_variables)
    model.load_weights(path)  # weights again, and the optimizer's variables
    return model
