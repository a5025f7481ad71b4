"""A selected kernel that gets no gradient is still at its target after every step.

Keras skips a variable whose gradient is None (TensorFlow and PyTorch give None
for a kernel that feeds only outputs the loss leaves out; JAX gives zeros), so
`update_step`, where the rescale runs, never sees it.
"""

import keras
import numpy as np
from support.nets import loss, norms

import keras_wrs

L = keras.layers


def _two_heads():
    inp = keras.Input((8, 8, 4))
    outputs = {}
    for name in ("used", "unused"):
        h = L.ReLU()(
            L.BatchNormalization()(L.Conv2D(6, 3, padding="same", name=f"conv_{name}")(inp))
        )
        outputs[name] = L.Dense(3, name=f"head_{name}")(L.GlobalAveragePooling2D()(h))
    return keras.Model(inp, outputs)


def _norms(model, layer):
    return norms(keras.ops.convert_to_numpy(model.get_layer(layer).kernel))


def test_a_kernel_left_out_of_the_loss_is_rescaled():
    m = _two_heads()
    opt = keras_wrs.optimizers.SGD(0.1, momentum=0.9, rescale=m)
    m.compile(optimizer=opt, loss={"used": loss(), "unused": None})
    x = np.random.default_rng(0).normal(size=(16, 8, 8, 4)).astype("float32")
    y = np.arange(16) % 3
    unused_before = keras.ops.convert_to_numpy(m.get_layer("conv_unused").kernel)
    assert not np.allclose(norms(unused_before), 1.0)
    m.fit(x, {"used": y, "unused": y}, batch_size=8, epochs=1, verbose=0)
    assert {s.path for s in opt.rescale_selection} == {"conv_used/kernel", "conv_unused/kernel"}
    for layer in ("conv_used", "conv_unused"):
        np.testing.assert_allclose(_norms(m, layer), 1.0, rtol=1e-5)
    # Only the scale changed: the unused kernel's directions are its initial ones.
    after = keras.ops.convert_to_numpy(m.get_layer("conv_unused").kernel)
    np.testing.assert_allclose(after * norms(unused_before), unused_before, rtol=1e-4, atol=1e-6)


def test_apply_with_a_none_gradient_follows_rescale_every():
    m = _two_heads()
    opt = keras_wrs.optimizers.SGD(0.1, rescale=m, rescale_every=2)
    kernels = [m.get_layer(n).kernel for n in ("conv_used", "conv_unused")]
    initial = [norms(keras.ops.convert_to_numpy(k)) for k in kernels]
    grads = [keras.ops.ones(kernels[0].shape), None]
    opt.apply(grads, kernels)  # step 1: not due
    np.testing.assert_allclose(_norms(m, "conv_unused"), initial[1], rtol=1e-6)
    opt.apply(grads, kernels)  # step 2: due
    np.testing.assert_allclose(_norms(m, "conv_unused"), 1.0, rtol=1e-5)
    np.testing.assert_allclose(_norms(m, "conv_used"), 1.0, rtol=1e-5)
