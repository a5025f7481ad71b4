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

Layers of the model and of its copy correspond by their place in the layer
walk (`keras_wrs.selection.iter_layers`, which reaches into subclassed blocks),
their class and their weights (names and shapes), never by the layer's own
name: a model that rebuilds itself in its constructor (a KerasHub task, a
subclassed model) gets new generated names (`input_layer_1` for
`input_layer`). A subclassed model without `keras.Input` is rebuilt from its
registered class and the input shape it was built with, and wrapped in a
functional model for the export. Grouped convolutions of the copy compute
without XLA (`keras_wrs.export.grouped`).
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import keras
import numpy as np

from keras_wrs.export.grouped import ungroup_convolutions
from keras_wrs.selection import iter_layers

__all__ = ["check_exportable", "inference_copy", "input_shape", "layer_signature"]

_FLOAT_POLICY = re.compile(r"^(mixed_)?(b?float(16|32|64))$")
_WRAP = "or wrap it in a functional model: `x = keras.Input(shape); keras.Model(x, model(x))`."


def _symbolic(model) -> tuple[list, list] | None:
    """The symbolic inputs and outputs of a model built on `keras.Input`, else `None`."""
    try:
        return model.inputs, model.outputs
    except AttributeError:  # a subclassed model called on data has neither
        return None


def _built_shape(model) -> tuple | None:
    """The input shape a subclassed model was built with, if it had one input."""
    shape = (model.get_build_config() or {}).get("input_shape")
    if isinstance(shape, (list, tuple)) and all(d is None or isinstance(d, int) for d in shape):
        return tuple(shape)
    return None


def _check_subclassed(model) -> None:
    """A subclassed model is exported when it can be rebuilt: registered, with one input."""
    cls = type(model)
    if keras.saving.get_registered_name(cls) == cls.__name__:
        raise TypeError(
            f"`model`={model.name!r} ({cls.__name__}) is a subclassed model without symbolic "
            "inputs, and its class is not registered: export rebuilds the model from its "
            "config in float32. Register it with `@keras.saving.register_keras_serializable()` "
            f"(with a `get_config` that returns its constructor arguments), {_WRAP}"
        )
    if _built_shape(model) is None:
        raise ValueError(
            f"`model`={model.name!r} ({cls.__name__}) is a subclassed model built without one "
            f"input shape (build config: {model.get_build_config()!r}); export supports one "
            f"input. Call it once on a batch of that input, {_WRAP}"
        )


def check_exportable(model) -> None:
    """Raises unless `model` is a built Keras model with one input and one output.

    A subclassed model (no `keras.Input`) must be registered with
    `keras.saving.register_keras_serializable` and have been called on one
    input; its outputs are checked on its rebuilt copy.

    Args:
        model: the model to export.

    Raises:
        TypeError: `model` is not a `keras.Model`, or is an unregistered
            subclassed model without symbolic inputs.
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
    symbolic = _symbolic(model)
    if symbolic is None:
        _check_subclassed(model)
        return
    inputs, outputs = symbolic
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
    symbolic = _symbolic(model)
    shape = tuple(symbolic[0][0].shape[1:]) if symbolic else _built_shape(model)[1:]
    if any(d is None for d in shape):
        raise ValueError(
            f"`model`={model.name!r} has input shape {(None,) + shape}; export needs every "
            "dimension but the batch fixed. Rebuild it with `keras.Input(shape=(...))` "
            "giving all sizes."
        )
    return tuple(int(d) for d in shape)


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
    """Classes of the model and its layers that Keras itself does not provide."""
    return {
        type(layer).__name__: type(layer)
        for layer in iter_layers(model, include_self=True)
        if not type(layer).__module__.startswith("keras.")
    }


def layer_signature(layer) -> tuple:
    """What tells a layer's place in a model apart, its generated name aside.

    Args:
        layer: a Keras layer.

    Returns:
        `(class name, ((weight name, shape), ...))` over `layer.weights`
        (its sub-layers' weights included).
    """
    weights = tuple((w.name, tuple(w.shape)) for w in layer.weights)
    return type(layer).__qualname__, weights


def _describe(layer) -> str:
    cls, weights = layer_signature(layer)
    shown = ", ".join(f"{name} {shape}" for name, shape in weights[:4])
    more = f" and {len(weights) - 4} more" if len(weights) > 4 else ""
    return f"{layer.name!r} ({cls}; weights: {shown or 'none'}{more})"


def _pairs(source, target) -> list[tuple]:
    """Corresponding layers of a model and its rebuilt copy.

    Layers correspond by their place in `iter_layers`, their class and their
    weights; their names are not compared (see the module docstring).
    """
    sources, targets = list(iter_layers(source)), list(iter_layers(target))
    fix = (
        "A custom layer probably builds sub-layers or weights that its `get_config` does not "
        "describe; fix its `get_config`."
    )
    for i, (src, dst) in enumerate(zip(sources, targets, strict=False)):
        if layer_signature(src) != layer_signature(dst):
            raise ValueError(
                f"The float32 copy of {source.name!r} does not have the same layers as the "
                f"model: layer {i} of the walk is {_describe(src)} in the model but "
                f"{_describe(dst)} in the copy. {fix}"
            )
    if len(sources) != len(targets):
        raise ValueError(
            f"The float32 copy of {source.name!r} does not have the same layers as the model: "
            f"the model has {len(sources)} layers, the copy {len(targets)}. {fix}"
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
        raise ValueError(
            f"The float32 copy of {source.name!r} has {len(target.weights)} variables, the "
            f"model {len(source.weights)}. A custom layer probably creates variables that "
            "its `get_config` does not describe; fix its `get_config`."
        )
    for src, dst in zip(source.weights, target.weights, strict=True):
        if tuple(src.shape) != tuple(dst.shape):
            raise ValueError(
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
    # Variables that no layer of the walk owns (held in a custom layer's dict or list of
    # variables, for example).
    for src, dst in zip(source.weights, target.weights, strict=True):
        dst.assign(_as_float32(src.numpy()).astype(keras.backend.standardize_dtype(dst.dtype)))


def _rebuild(model, config):
    """The model rebuilt from its serialized config (policies already float32)."""
    try:
        with keras.saving.custom_object_scope(_custom_classes(model)):
            return keras.saving.deserialize_keras_object(config)
    except Exception as err:  # from_config and build raise whatever the model's code raises
        raise ValueError(
            f"`model`={model.name!r} ({type(model).__name__}) could not be rebuilt from its "
            f"config ({type(err).__name__}: {err}). Export rebuilds the model in float32 from "
            "`get_config`: give each custom class a `get_config` that returns its constructor "
            "arguments and register it with `keras.saving.register_keras_serializable`."
        ) from err


def _functional(copy, shape: tuple[int, ...], name: str) -> keras.Model:
    """A subclassed copy wrapped on `keras.Input`, so that it has symbolic inputs and outputs."""
    inputs = keras.Input(shape=shape)
    wrapped = keras.Model(inputs, copy(inputs), name=name)
    check_exportable(wrapped)  # one output
    return wrapped


def inference_copy(model) -> keras.Model:
    """Rebuilds `model` under the float32 policy with the same weights.

    Args:
        model: a built single-input, single-output Keras model, trained under
            any dtype policy: functional, Sequential, a KerasHub task, or a
            registered subclassed model that has been called on a batch.

    Returns:
        An uncompiled float32 `keras.Model` with symbolic inputs (a
        subclassed model is wrapped on `keras.Input`) that has been called
        once in inference mode.

    Raises:
        TypeError, ValueError: see `check_exportable`; also when the model
            cannot be rebuilt from its config, or its copy does not have the
            same layers and weights.

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
        copy = _rebuild(model, config)
        _copy_variables(model, copy)
        ungroup_convolutions(iter_layers(copy))
        if _symbolic(copy) is None:
            copy = _functional(copy, shape, model.name)
        copy(np.zeros((1,) + shape, dtype="float32"), training=False)
    finally:
        keras.config.set_dtype_policy(previous)
    return copy
