"""Fine-tuning: start a run from a saved `.keras` model, part of it frozen.

`init_from` names the model (a finished run leaves it in `<run>/model.keras`);
it replaces `model` and `model_kwargs`. Its weights are loaded, not its
optimizer: the run compiles it with its own optimizer, as any run. `freeze`
chooses what does not train:

* `"none"`: every layer trains;
* `"batchnorm"`: every BatchNormalization of the backbone gets
  `trainable=False`: Keras 3 then runs it in inference mode, with its loaded
  moving statistics, gamma and beta, also under `fit`. The kernels before it
  are then no longer scale-invariant, and keras-wrs's selection leaves them
  out (`keras_wrs.describe_rescaling` says so per kernel): WRS rescales only
  the kernels that stay invariant, such as those before a BatchNormalization
  of the head, and a `wrs` run where none stays is refused before training
  ("has no scale-invariant kernel ... use weight decay");
* `"backbone"`: the whole backbone gets `trainable=False`; the head trains.

The backbone is a KerasHub task model's `.backbone`; for any other model it is
every top-level layer up to the last global pooling or `Flatten` layer, and the
head is what follows (the recipes' builders: the classifier `Dense`, or
`small_cnn(head="mlp")`'s Dense-BN-ReLU and classifier). A model without such a
layer has its last layer with weights as the head.

A resumed fine-tuning run loads `init_from` again for the architecture and
the frozen flags; its own per-epoch backup then replaces the weights.
"""

from __future__ import annotations

from keras_wrs._lazy import keras, layers

__all__ = ["load_initial_model", "split_backbone", "freeze_layers"]

_POOLING = (
    layers.GlobalAveragePooling1D,
    layers.GlobalAveragePooling2D,
    layers.GlobalAveragePooling3D,
    layers.GlobalMaxPooling1D,
    layers.GlobalMaxPooling2D,
    layers.GlobalMaxPooling3D,
    layers.Flatten,
)


def _shape_text(shape):
    return "x".join("?" if d is None else str(d) for d in shape)


def _check_fits(model, path, input_shape, num_classes):
    """The loaded model takes the data's images and predicts its classes."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(
            f"`init_from` must hold an image classifier with one input and one output; "
            f"{model.name!r} has {len(model.inputs)} and {len(model.outputs)}. "
            f"Received: init_from={path!r}"
        )
    expected = tuple(model.inputs[0].shape[1:])
    fits = len(expected) == len(input_shape) and all(
        e is None or e == d for e, d in zip(expected, input_shape, strict=True)
    )
    if not fits:
        raise ValueError(
            f"`init_from` holds a model for {_shape_text(expected)} inputs, but the data "
            f"set's images are {_shape_text(input_shape)}: fine-tune it on data of its "
            f"size (--set image_size, --set channels) or train a model for this data. "
            f"Received: init_from={path!r}"
        )
    classes = model.outputs[0].shape[-1]
    if classes != num_classes:
        raise ValueError(
            f"`init_from` holds a model with {classes} outputs, but the data set has "
            f"{num_classes} classes: fine-tune it on data with {classes} classes. "
            f"Received: init_from={path!r}"
        )


def load_initial_model(path, input_shape, num_classes):
    """The model saved in `path`, uncompiled, checked against the data.

    Args:
        path: a `.keras` file.
        input_shape: the data's image shape.
        num_classes: the data's number of classes.

    Returns:
        The loaded `keras.Model` (its weights; not its optimizer).

    Raises:
        ValueError: the model takes other inputs or predicts another number
            of classes than the data has, naming both.
    """
    model = keras.saving.load_model(path, compile=False)
    _check_fits(model, path, tuple(input_shape), num_classes)
    return model


def split_backbone(model):
    """`(backbone layers, head layers)` of `model`, as the module docstring defines them."""
    backbone = getattr(model, "backbone", None)
    if isinstance(backbone, keras.Layer):
        return [backbone], [layer for layer in model.layers if layer is not backbone]
    top = list(model.layers)
    cut = max((i for i, layer in enumerate(top) if isinstance(layer, _POOLING)), default=None)
    if cut is None:
        cut = max((i for i, layer in enumerate(top) if layer.weights), default=len(top)) - 1
    return top[: cut + 1], top[cut + 1 :]


def freeze_layers(model, freeze):
    """Set `trainable=False` on what `freeze` names (see the module docstring).

    Args:
        model: a built Keras model.
        freeze: `"none"`, `"batchnorm"` or `"backbone"`.

    Returns:
        The layers frozen.
    """
    from keras_wrs.selection import iter_layers

    if freeze == "none":
        return []
    backbone, _ = split_backbone(model)
    if freeze == "backbone":
        frozen = backbone
    else:
        frozen = [
            layer
            for part in backbone
            for layer in iter_layers(part, include_self=True)
            if isinstance(layer, layers.BatchNormalization)
        ]
    for layer in frozen:
        layer.trainable = False
    return frozen
