"""Models that are not plain functional graphs: subclassed, rebuilt by their constructor, grouped.

A model that builds its graph in `__init__` (KerasHub's tasks and backbones
do) gets new generated layer names when the export rebuilds it; layers must
correspond by structure, not by those names. A registered subclassed model
is rebuilt from its class and wrapped on `keras.Input`. Grouped
convolutions, which Keras runs through XLA on CPU, are computed without it
in the copy so that ONNX can hold them. Every export is checked against the
model as trained.
"""

import keras
import numpy as np
import onnx
import pytest
from keras import ops

import keras_wrs
from keras_wrs.export import export_model, inference_copy
from keras_wrs.export.grouped import ungroup_convolutions
from keras_wrs.export.inference import layer_signature
from keras_wrs.selection import iter_layers, select_scale_invariant

L = keras.layers
PACKAGE = "test_export_models"


def images(n=16, size=8, channels=4, seed=0):
    return np.random.default_rng(seed).normal(size=(n, size, size, channels)).astype("float32")


def train_briefly(model, x, classes=3):
    """Two keras-wrs SGD steps: moving statistics and weights away from their initial values."""
    y = np.arange(len(x)) % classes
    model.compile(
        keras_wrs.optimizers.SGD(0.1, momentum=0.9, rescale=select_scale_invariant(model, x)),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x, y, batch_size=len(x) // 2, epochs=1, verbose=0)
    return model


def source_row(result):
    (row,) = [r for r in result.report.rows if r.runtime.startswith("keras source model")]
    return row


@keras.saving.register_keras_serializable(package=PACKAGE)
class SelfBuilt(keras.Model):
    """A functional graph built in `__init__` from arguments, its layers unnamed (as KerasHub)."""

    def __init__(self, filters=8, classes=3, **kwargs):
        inp = keras.Input((8, 8, 4))
        h = L.Conv2D(filters, 3, padding="same", use_bias=False)(inp)
        h = L.ReLU()(L.BatchNormalization(momentum=0.5)(h))
        out = L.Dense(classes)(L.GlobalAveragePooling2D()(h))
        super().__init__(inp, out, **kwargs)
        self.filters, self.classes = filters, classes

    def get_config(self):
        return {"filters": self.filters, "classes": self.classes, "name": self.name}


@keras.saving.register_keras_serializable(package=PACKAGE)
class ConvBNNet(keras.Model):
    """A subclassed model: no `keras.Input`, built by calling it on a batch."""

    def __init__(self, filters=8, classes=3, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.classes = filters, classes
        self.conv = L.Conv2D(filters, 3, padding="same", use_bias=False)
        self.bn = L.BatchNormalization(momentum=0.5)
        self.pool = L.GlobalAveragePooling2D()
        self.head = L.Dense(classes)

    def call(self, x, training=None):
        return self.head(self.pool(ops.relu(self.bn(self.conv(x), training=training))))

    def get_config(self):
        return {"filters": self.filters, "classes": self.classes, "name": self.name}


def test_a_model_rebuilt_by_its_constructor_exports_although_its_generated_names_change(
    tmp_path,
):
    x = images()
    model = train_briefly(SelfBuilt(name="self_built"), x)
    copy = inference_copy(model)
    names = [layer.name for layer in iter_layers(model)]
    copied = [layer.name for layer in iter_layers(copy)]
    assert names != copied  # input_layer -> input_layer_1, conv2d -> conv2d_1, ...
    assert [layer_signature(a) for a in iter_layers(model)] == [
        layer_signature(b) for b in iter_layers(copy)
    ]
    result = export_model(model, tmp_path / "out", formats="saved_model,onnx", batch=x)
    assert result.report.passed and not result.errors
    assert source_row(result).max_abs <= 1e-5
    np.testing.assert_allclose(copy(x, training=False), model(x, training=False), atol=1e-5)


def test_a_registered_subclassed_model_is_rebuilt_wrapped_and_exported(tmp_path):
    x = images()
    model = ConvBNNet(name="convbn")
    model(x[:1])
    train_briefly(model, x)
    copy = inference_copy(model)
    assert copy.name == "convbn" and tuple(copy.inputs[0].shape) == (None, 8, 8, 4)
    assert {layer.dtype_policy.name for layer in iter_layers(copy)} == {"float32"}
    result = export_model(model, tmp_path / "out", formats="saved_model,onnx", batch=x)
    assert result.report.passed and source_row(result).max_abs <= 1e-5
    assert result.metadata["input_shape"] == [None, 8, 8, 4]
    assert result.metadata["output_shape"] == [None, 3]
    model.save(tmp_path / "model.keras")
    from_file = export_model(tmp_path / "model.keras", formats="onnx", batch=x)
    assert from_file.report.passed


class TwoInputs(keras.Model):
    def call(self, inputs):
        return inputs[0] + inputs[1]


keras.saving.register_keras_serializable(package=PACKAGE)(TwoInputs)


@keras.saving.register_keras_serializable(package=PACKAGE)
class Forgetful(keras.Model):
    """Its `get_config` leaves out the required `units`: it cannot be rebuilt."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.head = L.Dense(units)

    def call(self, x):
        return self.head(x)

    def get_config(self):
        return {"name": self.name}


def test_subclassed_models_that_cannot_be_rebuilt_are_clear_errors(tmp_path):
    two = TwoInputs()
    two([np.zeros((1, 4), "float32"), np.zeros((1, 4), "float32")])
    with pytest.raises(ValueError, match=r"built without one input shape.*export supports one"):
        export_model(two, tmp_path / "out")
    forgetful = Forgetful(3)
    forgetful(np.zeros((1, 4), "float32"))
    with pytest.raises(
        ValueError,
        match=r"(?s)could not be rebuilt from its config \(TypeError: .*"
        r"units.*`get_config` that returns its constructor",
    ):
        export_model(forgetful, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


@keras.saving.register_keras_serializable(package=PACKAGE)
class Block(L.Layer):
    """Conv, and a Dropout when `dropout` is on; `get_config` forgets `dropout`."""

    def __init__(self, dropout=False, **kwargs):
        super().__init__(**kwargs)
        self.conv = L.Conv2D(4, 1, name="block_conv")
        self.drop = L.Dropout(0.5, name="drop") if dropout else None

    def build(self, input_shape):
        self.conv.build(input_shape)

    def call(self, x, training=None):
        x = self.conv(x)
        return x if self.drop is None else self.drop(x, training=training)

    def get_config(self):
        return super().get_config()


@keras.saving.register_keras_serializable(package=PACKAGE)
class Widening(L.Layer):
    """Its `get_config` forgets `units`, so the copy's kernel has another shape."""

    def __init__(self, units=2, **kwargs):
        super().__init__(**kwargs)
        self.dense = L.Dense(units, name="wide")

    def build(self, input_shape):
        self.dense.build(input_shape)

    def call(self, x):
        return self.dense(x)

    def get_config(self):
        return super().get_config()


def test_a_copy_with_other_layers_or_shapes_is_refused_naming_the_layer(tmp_path):
    inp = keras.Input((8, 8, 4))
    h = Block(dropout=True, name="block")(inp)
    model = keras.Model(inp, L.Dense(3, name="head")(L.GlobalAveragePooling2D()(h)))
    with pytest.raises(
        ValueError,
        match=r"does not have the same layers as the model: layer 3 "
        r"of the walk is 'drop' \(Dropout; weights: none\).*"
        r"fix its `get_config`",
    ):
        export_model(model, tmp_path / "out", batch=images(4))
    inp = keras.Input((4,))
    model = keras.Model(inp, Widening(units=5, name="widening")(inp))
    with pytest.raises(
        ValueError,
        match=r"has shape \(4, 5\) but its float32 copy .* has "
        r"\(4, 2\); fix the layer's `get_config`",
    ):
        export_model(model, tmp_path / "out", batch=np.zeros((2, 4), "float32"))
    assert list(tmp_path.iterdir()) == []


def grouped_net():
    """Convolutions with groups: depthwise (1 channel a group, 2 filters each) and 2 groups."""
    inp = keras.Input((8, 8, 4))
    h = L.Conv2D(8, 3, padding="same", groups=4, use_bias=False, name="depthwise")(inp)
    h = L.ReLU()(L.BatchNormalization(momentum=0.5, name="bn")(h))
    h = L.Conv2D(6, 3, strides=2, groups=2, name="two_groups")(h)
    out = L.Dense(3, name="head")(L.GlobalAveragePooling2D()(h))
    return keras.Model(inp, out, name="grouped")


def test_grouped_convolutions_compute_the_same_without_a_grouped_kernel():
    keras.utils.set_random_seed(1)
    model = grouped_net()
    x = images(4, seed=3)
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    assert ungroup_convolutions(iter_layers(copy)) == ["depthwise", "two_groups"]
    # Keras's own grouped convolution (XLA on CPU) is the reference.
    for name in ("depthwise", "two_groups"):
        inputs = keras.Model(model.inputs, model.get_layer(name).input)(x)
        np.testing.assert_allclose(
            copy.get_layer(name)(inputs), model.get_layer(name)(inputs), atol=1e-5, rtol=1e-5
        )
    conv3d = L.Conv3D(4, 2, groups=2)
    cube = np.random.default_rng(4).normal(size=(2, 4, 4, 4, 4)).astype("float32")
    expected = conv3d(cube)
    assert ungroup_convolutions([conv3d]) == [conv3d.name]
    np.testing.assert_allclose(conv3d(cube), expected, atol=1e-5, rtol=1e-5)


def test_grouped_convolutions_export_to_onnx_and_litert_with_parity(tmp_path):
    x = images()
    keras.utils.set_random_seed(2)
    model = train_briefly(grouped_net(), x)
    result = export_model(model, tmp_path / "out", formats="saved_model,onnx,tflite", batch=x)
    assert result.report.passed and not result.errors
    assert source_row(result).max_abs <= 1e-5  # the copy's depthwise path against XLA's
    ops_used = {node.op_type for node in onnx.load(result.files["onnx"]).graph.node}
    assert "StatefulPartitionedCall" not in ops_used and "Conv" in ops_used
