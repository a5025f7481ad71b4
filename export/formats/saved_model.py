"""TensorFlow SavedModel with a named, dynamic-batch serving signature.

Written with `keras.export.ExportArchive` and an endpoint that calls the model
with `training=False`, so that layers which act only in training (dropout,
augmentation inside the model) stay out of serving; `model.export` traces
without that argument.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from keras_wrs.export.formats._common import WriteJob

__all__ = [
    "ENDPOINT",
    "serving_function",
    "write_saved_model",
    "write",
    "load_signature",
    "load_tfsm_layer",
]

ENDPOINT = "serve"  # ExportArchive also publishes the first endpoint as "serving_default".


def _input_spec(model, input_name: str):
    import tensorflow as tf

    shape = (None,) + tuple(model.inputs[0].shape[1:])
    return tf.TensorSpec(shape, tf.float32, name=input_name)


def serving_function(model, input_name: str, output_name: str):
    """A `tf.function` `{input_name: x} -> {output_name: model(x, training=False)}`.

    Args:
        model: a float32 Keras model with one input and one output.
        input_name: the name of the input tensor.
        output_name: the key of the output.

    Returns:
        A `tf.function` with a dynamic-batch input signature.
    """
    import tensorflow as tf

    def serve(inputs):
        return {output_name: model(inputs, training=False)}

    return tf.function(serve, input_signature=[_input_spec(model, input_name)])


def write_saved_model(model, path, input_name: str, output_name: str) -> Path:
    """Writes `model` as a SavedModel whose signature is `serve`/`serving_default`.

    Args:
        model: a float32 Keras model with one input and one output.
        path: the directory to create.
        input_name: the signature's input name.
        output_name: the signature's output key.

    Returns:
        The SavedModel directory.
    """
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(ENDPOINT, serving_function(model, input_name, output_name))
    archive.write_out(str(path), verbose=False)
    return Path(path)


def write(job: WriteJob, path: Path) -> dict:
    """Writes the SavedModel of `job.model` (every other format is converted from it).

    Args:
        job: what the export writes.
        path: the directory to create.

    Returns:
        The artifact's facts for the manifest.
    """
    write_saved_model(job.model, path, *job.names)
    return {"precision": "float32"}


def load_signature(path, input_name: str, output_name: str):
    """Reloads a SavedModel with `tf.saved_model.load`.

    Args:
        path: the SavedModel directory.
        input_name: the signature's input name.
        output_name: the signature's output key.

    Returns:
        A function from a float32 array to the output array.
    """
    import tensorflow as tf

    signature = tf.saved_model.load(str(path)).signatures["serving_default"]

    def run(inputs: np.ndarray) -> np.ndarray:
        return signature(**{input_name: tf.constant(inputs)})[output_name].numpy()

    return run


def load_tfsm_layer(path, output_name: str):
    """Reloads a SavedModel as a `keras.layers.TFSMLayer`.

    Args:
        path: the SavedModel directory.
        output_name: the signature's output key.

    Returns:
        A function from a float32 array to the output array.
    """
    # dtype is explicit: under a mixed global policy the layer would cast inputs to float16.
    layer = keras.layers.TFSMLayer(str(path), call_endpoint=ENDPOINT, dtype="float32")

    def run(inputs: np.ndarray) -> np.ndarray:
        return np.asarray(layer(inputs)[output_name])

    return run
