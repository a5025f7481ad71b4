"""`save_weights` / `load_weights` with an optimizer that holds its model (`rescale=model`).

Keras's saving walks an optimizer's public attributes; one that returned the
model made `load_weights` recurse (model -> optimizer -> model). Backups and
`--resume` restore this way.
"""

import keras
import numpy as np
from support.nets import conv_bn, data, loss

from keras_wrs import optimizers as wo


def compiled():
    model = conv_bn()
    model.compile(wo.SGD(0.1, momentum=0.9, rescale=model), loss())
    return model


def test_weights_of_a_wrs_model_restore_into_a_fresh_one(tmp_path):
    x, y = data(16)
    first = compiled()
    first.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    path = tmp_path / "state.weights.h5"
    first.save_weights(path)
    second = compiled()
    second.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)  # builds its optimizer
    second.load_weights(path)
    for a, b in zip(first.weights, second.weights, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    for a, b in zip(first.optimizer.variables, second.optimizer.variables, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
