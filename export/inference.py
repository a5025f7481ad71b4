"""A float32 inference copy of a trained model, the thing every export starts from.

A model trained under `mixed_float16` computes in float16 and exports with
float16 weights, Cast chains and BatchNormalization left unfolded. Rebuilding
it from its configuration under float32 and copying the (float32) variables
gives a graph that TensorFlow and tf2onnx fold into plain convolutions. The
copy is never compiled, so the optimizer, its keras-wrs state and any
callbacks cannot reach an export.

State is copied layer by layer through the hooks `keras.saving.load_model`
itself calls (`save_own_variables`/`load_own_variables`, and
`save_assets`/`load_assets` where a layer has assets). Audit of the stateful
layers (tests in `tests/export/test_inference.py`): `Normalization` (adapted or
loaded) recomputes its mean and variance tensors in `load_own_variables`
(copying variables alone left them at 0 and 1); `BatchNormalization` keeps
its moving statistics in variables; `Discretization` keeps adapted bin
boundaries in its config; `IntegerLookup`/`StringLookup` (and
`TextVectorization`, which wraps one) keep the vocabulary in config or
assets. Rescaling, Resizing and CenterCrop hold no state.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import keras
import numpy as np

__all__ = ["check_exportable", "inference_copy", "input_shape", "all_layers"]

_FLOAT_POLICY = re.compile(r"^(mixed_)?(b?float(16|32|64))$")


def check_exportable(model) -> None:
    """Raises unless `model` is a built Keras model with one input and one output.

    Args:
        model: the model to export.

    Raises:
        TypeError: `model` is not a `keras.Model`, or is a subclassed model
            without symbolic inputs.
        ValueError: the model was never built, or has several inputs or
            outputs.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"`model` must be a keras.Model. Received: model={model!r} of type "
            f"{type(model).__name__}"
        )
    if not model.built:
        raise ValueError(
            f"`model`={model.name!r} has never been built, so its input shape is unknown. "
            "Build it first: start it with `keras.Input(shape=...)` or call it once on a batch."
        )
    try:
        inputs, outputs = model.inputs, model.outputs
    except AttributeError as err:
        raise TypeError(
            f"`model`={model.name!r} ({type(model).__name__}) is a subclassed model without "
            "symbolic inputs. Wrap it in a functional model: `x = keras.Input(shape); "
            "keras.Model(x, model(x))`."
        ) from err
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(
            f"`model`={model.name!r} has {len(inputs)} inputs and {len(outputs)} outputs; "
            "export supports one of each. Export one head at a time: "
            "`keras.Model(model.inputs, model.outputs[i])`."
        )


def input_shape(model) -> tuple[int, ...]:
    """The shape of one example (the model's input shape without the batch axis).

    Args:
        model: a model that passes `check_exportable`.

    Returns:
        A tuple of ints.

    Raises:
        ValueError: a non-batch dimension is unknown.
    """
    shape = tuple(model.inputs[0].shape[1:])
    if any(d is None for d in shape):
        raise ValueError(
            f"`model`={model.name!r} has input shape {(None,) + shape}; export needs every "
            "dimension but the batch fixed. Rebuild it with `keras.Input(shape=(...))` "
            "giving all sizes."
        )
    return tuple(int(d) for d in shape)


def all_layers(model) -> list:
    """Every layer of `model`, nested models included, outermost first.

    Args:
        model: a Keras model.

    Returns:
        A list of layers (the model itself excluded).
    """
    found, stack = [], list(reversed(model.layers))
    while stack:
        layer = stack.pop()
        found.append(layer)
        stack.extend(reversed(getattr(layer, "layers", [])))
    return found


def _float32_policies(obj):
    """A serialized model with float dtype policies set to float32 and no compile state.

    Keras serializes a compiled model with its `compile_config` (optimizer,
    loss, metrics) and deserialization compiles it again; dropping it keeps
    every trace of training out of the copy.
    """
    if isinstance(obj, list):
        return [_float32_policies(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if obj.get("class_name") in ("DTypePolicy", "FloatDTypePolicy"):
        name = obj.get("config", {}).get("name", "")
        return "float32" if _FLOAT_POLICY.match(name) else obj
    out = {}
    for key, value in obj.items():
        if key == "compile_config":
            continue
        is_float_name = isinstance(value, str) and _FLOAT_POLICY.match(value)
        out[key] = "float32" if key == "dtype" and is_float_name else _float32_policies(value)
    return out


def _custom_classes(model) -> dict:
    """Classes of the model's layers that Keras itself does not provide."""
    return {
        type(layer).__name__: type(layer)
        for layer in all_layers(model)
        if not type(layer).__module__.startswith("keras.")
    }


def _pairs(source, target) -> list[tuple]:
    """Corresponding layers of a model and its rebuilt copy, checked by class and name."""
    sources, targets = all_layers(source), all_layers(target)
    if len(sources) != len(targets) or any(
        type(s).__name__ != type(t).__name__ or s.name != t.name
        for s, t in zip(sources, targets, strict=True)
    ):
        raise RuntimeError(
            f"The float32 copy of {source.name!r} does not have the same layers as the model. "
            "A custom layer probably builds sub-layers that its `get_config` does not "
            "describe; fix its `get_config`."
        )
    return list(zip(sources, targets, strict=True))


def _as_float32(value):
    value = np.asarray(value)
    return value.astype(np.float32) if np.issubdtype(value.dtype, np.floating) else value


def _copy_layer_state(src, dst, scratch: Path) -> None:
    """Copies one layer's state through the hooks Keras's own loader calls.

    `load_own_variables` is what `keras.saving.load_model` calls; layers that
    derive state from their variables (`Normalization` computes its mean and
    variance tensors there, through `finalize_state`) only work after it.
    Assets (lookup vocabularies) travel through `save_assets`/`load_assets`.
    """
    store = {}
    src.save_own_variables(store)
    if store:
        dst.load_own_variables({key: _as_float32(value) for key, value in store.items()})
    if hasattr(src, "save_assets") and hasattr(dst, "load_assets"):
        folder = scratch / f"{len(list(scratch.iterdir()))}"
        folder.mkdir()
        src.save_assets(str(folder))
        dst.load_assets(str(folder))


def _check_variables(source, target) -> None:
    if len(source.weights) != len(target.weights):
        raise RuntimeError(
            f"The float32 copy of {source.name!r} has {len(target.weights)} variables, the "
            f"model {len(source.weights)}. A custom layer probably creates variables that "
            "its `get_config` does not describe; fix its `get_config`."
        )
    for src, dst in zip(source.weights, target.weights, strict=True):
        if tuple(src.shape) != tuple(dst.shape):
            raise RuntimeError(
                f"Variable {src.path!r} has shape {tuple(src.shape)} but its float32 copy "
                f"{dst.path!r} has {tuple(dst.shape)}; fix the layer's `get_config`."
            )


def _copy_variables(source, target) -> None:
    """Copies every layer's state as `keras.saving.load_model` does, then checks every variable.

    `finalize_state` is not called on its own: Keras's loader does not either
    (a `Discretization` layer would recompute its bins from an empty summary);
    layers that need it call it from `load_own_variables`.
    """
    _check_variables(source, target)
    pairs = _pairs(source, target)
    with tempfile.TemporaryDirectory(prefix="keras-wrs-assets.") as scratch:
        for src, dst in pairs:
            _copy_layer_state(src, dst, Path(scratch))
    # Variables of sub-layers that no `.layers` list reaches (custom layers holding layers).
    for src, dst in zip(source.weights, target.weights, strict=True):
        dst.assign(_as_float32(src.numpy()).astype(keras.backend.standardize_dtype(dst.dtype)))


def inference_copy(model) -> keras.Model:
    """Rebuilds `model` under the float32 policy with the same weights.

    Args:
        model: a built single-input, single-output Keras model, trained under
            any dtype policy.

    Returns:
        An uncompiled float32 `keras.Model` that has been called once in
        inference mode.

    Example:
        >>> keras.config.set_dtype_policy("mixed_float16")
        >>> model = make_model(); model.fit(x, y)
        >>> copy = inference_copy(model)
        >>> {layer.dtype_policy.name for layer in copy.layers}
        {'float32'}
    """
    check_exportable(model)
    shape = input_shape(model)
    config = _float32_policies(keras.saving.serialize_keras_object(model))
    previous = keras.config.dtype_policy()
    # Sub-layers a custom layer creates without a dtype follow the global policy.
    keras.config.set_dtype_policy("float32")
    try:
        with keras.saving.custom_object_scope(_custom_classes(model)):
            copy = keras.saving.deserialize_keras_object(config)
        _copy_variables(model, copy)
        copy(np.zeros((1,) + shape, dtype="float32"), training=False)
    finally:
        keras.config.set_dtype_policy(previous)
    return copy
