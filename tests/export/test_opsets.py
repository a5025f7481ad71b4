"""Every accepted ONNX opset converts a small Normalization-Conv-BN classifier exactly."""

import keras
import numpy as np
import onnxruntime as ort
import pytest

from keras_wrs.export import SUPPORTED_OPSETS, inference_copy
from keras_wrs.export.formats.onnx import convert_to_onnx, validate_opset
from keras_wrs.export.formats.saved_model import write_saved_model

L = keras.layers


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    rng = np.random.default_rng(0)
    inp = keras.Input((6, 6, 2))
    norm = L.Normalization(name="norm")
    norm.adapt(rng.normal(2.0, 3.0, size=(32, 6, 6, 2)).astype("float32"))
    h = L.BatchNormalization(name="bn")(L.Conv2D(4, 3, name="conv")(norm(inp)))
    h = L.GlobalAveragePooling2D()(L.ReLU()(h))
    model = inference_copy(keras.Model(inp, L.Dense(3, name="head")(h), name="tiny"))
    path = tmp_path_factory.mktemp("opsets") / "saved_model"
    write_saved_model(model, path, "images", "scores")
    return model, path


def test_accepted_opsets_are_9_to_18():
    assert SUPPORTED_OPSETS == tuple(range(9, 19))
    for bad in (8, 19, 15.0, True):
        with pytest.raises(ValueError, match="`opset` must be an integer from 9 to 18"):
            validate_opset(bad)


@pytest.mark.parametrize("opset", SUPPORTED_OPSETS)
def test_opset_converts_with_one_input_and_matches_keras(saved, opset):
    model, path = saved
    proto = convert_to_onnx(path, model, opset, "images", "scores")
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [opset]
    assert [i.name for i in proto.graph.input] == ["images"]
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(opset).normal(2.0, 3.0, size=(4, 6, 6, 2)).astype("float32")
    np.testing.assert_allclose(session.run(None, {"images": x})[0], model(x), atol=1e-5)
