"""KerasHub task models export with parity against the model as trained.

Built from constructor arguments with random weights (presets need a
download), trained for a step with a keras-wrs optimizer. KerasHub tasks
rebuild their graph in `__init__`, so the float32 copy's generated layer
names differ from the model's (`input_layer` against `input_layer_1`); its
MobileNet blocks hold grouped convolutions, which Keras runs through XLA on
CPU. The ResNet at its preset's widths and MobileNetV3-Small are slow
tests; a narrow ResNet runs by default.
"""

import keras
import numpy as np
import onnx
import pytest

import keras_wrs
from keras_wrs.export import export_model, inference_copy
from keras_wrs.selection import iter_layers

keras_hub = pytest.importorskip(
    "keras_hub", reason="keras-hub is not installed (pip install 'keras-wrs[hub]')"
)


def images(n, size, seed=0):
    return np.random.default_rng(seed).normal(size=(n, size, size, 3)).astype("float32")


def trained(model, x, classes):
    """One step of keras-wrs SGD with momentum on labels 0..classes-1."""
    model.compile(
        keras_wrs.optimizers.SGD(0.1, momentum=0.9, rescale=model),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x, np.arange(len(x)) % classes, batch_size=len(x), epochs=1, verbose=0)
    return model


def narrow_resnet(size=16, classes=4):
    """A two-stage basic-block KerasHub ResNet classifier (the first stage must be 64 wide)."""
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 32],
        stackwise_num_blocks=[1, 1],
        stackwise_num_strides=[1, 2],
        block_type="basic_block",
        image_shape=(size, size, 3),
    )
    return keras_hub.models.ResNetImageClassifier(backbone=backbone, num_classes=classes)


def assert_parity(result):
    assert result.report.passed and not result.errors, result.report.table()
    source = [r for r in result.report.rows if r.runtime.startswith("keras source model")]
    assert source and all(row.passed for row in source)


def test_kerashub_resnet_exports_although_its_copy_renames_generated_layers(tmp_path):
    keras.utils.set_random_seed(0)
    x = images(8, 16)
    model = trained(narrow_resnet(), x, classes=4)
    copy = inference_copy(model)
    assert [layer.name for layer in iter_layers(model)] != [
        layer.name for layer in iter_layers(copy)
    ]
    result = export_model(model, tmp_path / "out", formats="saved_model,onnx", batch=x)
    assert_parity(result)
    model.save(tmp_path / "model.keras")
    assert_parity(export_model(tmp_path / "model.keras", formats="onnx", batch=x))


@pytest.mark.slow
def test_kerashub_resnet18_under_mixed_precision_exports_to_three_formats(tmp_path):
    from support.zoo import resnet18_v1

    keras.config.set_dtype_policy("mixed_float16")
    keras.utils.set_random_seed(0)
    x = images(16, 32)
    model = trained(resnet18_v1(size=32), x, classes=5)
    keras.config.set_dtype_policy("float32")
    result = export_model(model, tmp_path / "out", formats="saved_model,onnx,tflite", batch=x)
    assert_parity(result)
    assert any("mixed_float16" in row.runtime for row in result.report.rows)


@pytest.mark.slow
def test_kerashub_mobilenet_v3_small_exports_its_grouped_convolutions(tmp_path):
    from support.zoo import mobilenet_v3_small

    keras.utils.set_random_seed(0)
    x = images(16, 32)
    model = trained(mobilenet_v3_small(size=32), x, classes=5)
    result = export_model(model, tmp_path / "out", formats="saved_model,onnx,tflite", batch=x)
    assert_parity(result)
    ops_used = {node.op_type for node in onnx.load(result.files["onnx"]).graph.node}
    assert "StatefulPartitionedCall" not in ops_used
