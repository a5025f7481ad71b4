"""WRS optimizer steps against hand computation and independent NumPy twins."""

import pickle

import keras
import numpy as np
import pytest
from support.nets import conv_bn, data, loss, norms

import keras_wrs
from keras_wrs import optimizers as wo

ALL = ["SGD", "Adam", "AdamW", "RMSprop", "Nadam", "Lion", "Lamb"]
# Keras optimizers that update the weights in place: rescaling works on them.
MORE = ["Adagrad", "Adadelta", "Adamax", "Adafactor", "Muon"]


def _apply(opt, grads, variables):
    """`opt.apply` with backend tensors: Keras's fused PyTorch optimizers refuse NumPy arrays."""
    opt.apply([keras.ops.convert_to_tensor(g) for g in grads], variables)


def _np_rescale(w, axes, target=1.0):
    n = np.sqrt(np.sum(np.square(w), axis=axes, keepdims=True))
    return np.where(n > 1e-12, w * target / np.where(n > 1e-12, n, 1.0), w)


def test_single_step_by_hand():
    w = keras.Variable([[3.0], [4.0]], name="w")  # one filter, norm 5
    opt = wo.SGD(learning_rate=0.1, rescale=[w])
    _apply(opt, [np.array([[1.0], [0.0]], "float32")], [w])
    # SGD: [[2.9], [4.0]]; rescaled to norm 1: divide by sqrt(2.9^2 + 16).
    expected = np.array([[2.9], [4.0]]) / np.sqrt(2.9**2 + 16.0)
    np.testing.assert_allclose(w.numpy(), expected, rtol=1e-6)


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("target", [1.0, 2.5, "initial"])
def test_sgd_momentum_matches_numpy_twin(nesterov, target):
    rng = np.random.default_rng(1)
    w0 = rng.normal(size=(3, 3, 2, 4)).astype("float32")
    grads = rng.normal(size=(6, 3, 3, 2, 4)).astype("float32")
    w = keras.Variable(w0)
    opt = wo.SGD(0.05, momentum=0.9, nesterov=nesterov, rescale=[w], target_norm=target)
    axes = (0, 1, 2)
    tgt = (
        np.sqrt(np.sum(w0.astype(np.float64) ** 2, axis=axes, keepdims=True))
        if target == "initial"
        else target
    )
    ref, m = w0.astype(np.float64), np.zeros_like(w0, dtype=np.float64)
    for g in grads:
        _apply(opt, [g], [w])
        # Keras SGD: m <- mu*m - lr*g; w <- w + m (or w + mu*m - lr*g with Nesterov)
        m = 0.9 * m - 0.05 * g
        ref = ref + (0.9 * m - 0.05 * g if nesterov else m)
        ref = _np_rescale(ref, axes, tgt)
        np.testing.assert_allclose(w.numpy(), ref, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(
        np.sqrt(np.sum(w.numpy().astype(np.float64) ** 2, axis=axes, keepdims=True)),
        np.broadcast_to(tgt, (1, 1, 1, 4)),
        rtol=1e-5,
    )


def test_adam_matches_numpy_twin():
    rng = np.random.default_rng(2)
    w0 = rng.normal(size=(5, 3)).astype("float32")
    w = keras.Variable(w0)
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-7
    opt = wo.Adam(lr, rescale=[w])
    ref = w0.astype(np.float64)
    m = np.zeros_like(ref)
    v = np.zeros_like(ref)
    for t in range(1, 6):
        g = rng.normal(size=w0.shape).astype("float32")
        _apply(opt, [g], [w])
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        alpha = lr * np.sqrt(1 - b2**t) / (1 - b1**t)
        ref = _np_rescale(ref - alpha * m / (np.sqrt(v) + eps), (0,))
        np.testing.assert_allclose(w.numpy(), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ALL + MORE)
def test_each_optimizer_is_keras_step_then_rescale(name):
    """WRS(opt) == the Keras optimizer's step followed by a NumPy rescale, every step."""
    rng = np.random.default_rng(3)
    w0 = rng.normal(size=(3, 3, 2, 4)).astype("float32")
    a, b = keras.Variable(w0), keras.Variable(w0)
    ours = getattr(wo, name)(learning_rate=0.01, rescale=[a])
    theirs = getattr(keras.optimizers, name)(learning_rate=0.01)
    for _ in range(4):
        g = rng.normal(size=w0.shape).astype("float32")
        _apply(ours, [g], [a])
        _apply(theirs, [g], [b])
        b.assign(_np_rescale(b.numpy().astype(np.float64), (0, 1, 2)).astype("float32"))
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    assert isinstance(ours, getattr(keras.optimizers, name))


@pytest.mark.parametrize("name", ALL + MORE)
def test_rescaling_off_is_bit_identical_to_keras(name):
    """Bit for bit on every backend; on PyTorch the twins keep Keras's fused path."""
    rng = np.random.default_rng(4)
    w0 = rng.normal(size=(4, 3)).astype("float32")
    a, b = keras.Variable(w0), keras.Variable(w0)
    ours = getattr(wo, name)(learning_rate=0.01, weight_decay=0.01, rescale=[])
    theirs = getattr(keras.optimizers, name)(learning_rate=0.01, weight_decay=0.01)
    for _ in range(5):
        g = rng.normal(size=w0.shape).astype("float32")
        _apply(ours, [g], [a])
        _apply(theirs, [g], [b])
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert len(ours.variables) == len(theirs.variables)
    for u, t in zip(ours.variables, theirs.variables, strict=True):
        np.testing.assert_array_equal(u.numpy(), t.numpy())


def test_layer_granularity_and_special_axes():
    rng = np.random.default_rng(5)
    w0 = rng.normal(size=(3, 3, 6, 2)).astype("float32")  # Conv2DTranspose: out on axis -2
    w = keras.Variable(w0)
    opt = wo.SGD(0.1, rescale={w.path: (-2,)}, target_norm=3.0)
    _apply(opt, [np.zeros_like(w0)], [w])
    np.testing.assert_allclose(np.sqrt((w.numpy() ** 2).sum(axis=(0, 1, 3))), 3.0, rtol=1e-6)
    v = keras.Variable(w0)
    opt = wo.SGD(0.1, rescale=[v], granularity="layer", target_norm=3.0)
    _apply(opt, [np.zeros_like(w0)], [v])
    np.testing.assert_allclose(np.linalg.norm(v.numpy()), 3.0, rtol=1e-6)
    # Layer granularity keeps the relative sizes of the filters.
    np.testing.assert_allclose(
        v.numpy() / w0, np.full(w0.shape, 3.0 / np.linalg.norm(w0)), rtol=1e-5
    )


def test_zero_filter_stays_zero():
    w0 = np.ones((2, 3), "float32")
    w0[:, 1] = 0.0
    w = keras.Variable(w0)
    opt = wo.SGD(0.1, rescale=[w])
    _apply(opt, [np.zeros_like(w0)], [w])
    out = w.numpy()
    assert np.all(np.isfinite(out))
    np.testing.assert_array_equal(out[:, 1], 0.0)
    np.testing.assert_allclose(np.linalg.norm(out[:, 0]), 1.0, rtol=1e-6)


def test_rescale_every_n_steps():
    rng = np.random.default_rng(6)
    w = keras.Variable(rng.normal(size=(4, 2)).astype("float32") * 3)
    opt = wo.SGD(0.1, rescale=[w], rescale_every=3)
    for step in range(1, 7):
        before = w.numpy()
        g = rng.normal(size=(4, 2)).astype("float32")
        _apply(opt, [g], [w])
        n = np.linalg.norm(w.numpy(), axis=0)
        if step % 3 == 0:
            np.testing.assert_allclose(n, 1.0, rtol=1e-6)
        else:
            np.testing.assert_allclose(w.numpy(), before - 0.1 * g, rtol=1e-6)


def test_weight_decay_skips_rescaled_kernels_and_keeps_user_exclusions():
    k = keras.Variable(np.eye(3, dtype="float32"), name="k")  # unit filters already
    head = keras.Variable(np.full((3, 2), 2.0, "float32"), name="head")
    bias = keras.Variable(np.full((2,), 2.0, "float32"), name="bias")
    opt = wo.SGD(0.1, weight_decay=0.5, rescale=[k])
    opt.exclude_from_weight_decay(var_list=[bias])
    zeros = [np.zeros((3, 3), "float32"), np.zeros((3, 2), "float32"), np.zeros((2,), "float32")]
    _apply(opt, zeros, [k, head, bias])
    np.testing.assert_array_equal(k.numpy(), np.eye(3))  # no decay: still unit norm
    np.testing.assert_allclose(head.numpy(), 2.0 * (1 - 0.1 * 0.5), rtol=1e-6)
    np.testing.assert_array_equal(bias.numpy(), 2.0)


def test_users_own_optimizer_class():
    class MySGD(keras.optimizers.SGD):
        pass

    cls = keras_wrs.wrs(MySGD, name="MyWRSSGD")
    assert issubclass(cls, MySGD) and keras_wrs.wrs(cls) is cls
    w = keras.Variable(np.full((2, 2), 3.0, "float32"))
    opt = cls(0.1, rescale=[w])
    _apply(opt, [np.zeros((2, 2), "float32")], [w])
    np.testing.assert_allclose(np.linalg.norm(w.numpy(), axis=0), 1.0, rtol=1e-6)
    assert type(keras.optimizers.deserialize(keras.optimizers.serialize(opt))) is cls


@pytest.mark.parametrize("name", ALL + MORE)
def test_twins_run_the_same_backend_update_as_keras(name):
    """On PyTorch, Keras swaps its exact classes for fused `torch._foreach_*` ones;
    the twins derive from those, so no backend loses Keras's fast path."""
    ours = getattr(wo, name)(rescale=[])
    theirs = getattr(keras.optimizers, name)()
    assert isinstance(ours, type(theirs))  # the class Keras instantiates on this backend


def test_gradient_accumulation_rescales_on_update_steps_only():
    rng = np.random.default_rng(7)
    w0 = rng.normal(size=(3, 2)).astype("float32") * 2
    g1, g2 = rng.normal(size=(2, 3, 2)).astype("float32")
    w = keras.Variable(w0)
    opt = wo.SGD(0.1, rescale=[w], gradient_accumulation_steps=2)
    _apply(opt, [g1], [w])
    np.testing.assert_array_equal(w.numpy(), w0)  # accumulating: no step, no rescale
    _apply(opt, [g2], [w])
    expected = _np_rescale(w0.astype(np.float64) - 0.1 * (g1 + g2) / 2, (0,))
    np.testing.assert_allclose(w.numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["SGD", "AdamW", "Lion"])
def test_weight_decay_with_every_variable_rescaled(name):
    """Every variable excluded from decay: no decay at all (Keras's PyTorch
    optimizer used to fail on the empty list of decayed variables)."""
    rng = np.random.default_rng(8)
    w0 = rng.normal(size=(3, 2)).astype("float32")
    a, b = keras.Variable(w0), keras.Variable(w0)
    decayed = getattr(wo, name)(0.1, weight_decay=0.5, rescale=[a])
    plain = getattr(wo, name)(0.1, rescale=[b])
    for _ in range(3):
        g = rng.normal(size=w0.shape).astype("float32")
        _apply(decayed, [g], [a])
        _apply(plain, [g], [b])
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_allclose(np.linalg.norm(a.numpy(), axis=0), 1.0, rtol=1e-6)


def test_ema_overwrite_is_projected_onto_the_target():
    """Keras writes the EMA over the weights every `ema_overwrite_frequency`
    steps, after the rescale; that write is projected too (NumPy twin)."""
    rng = np.random.default_rng(9)
    w0 = rng.normal(size=(4, 3)).astype("float32")
    w = keras.Variable(w0)
    lr, mom, freq = 0.3, 0.5, 2
    opt = wo.SGD(lr, rescale=[w], use_ema=True, ema_momentum=mom, ema_overwrite_frequency=freq)
    ref, avg = w0.astype(np.float64), None
    for step in range(1, 7):
        g = rng.normal(size=w0.shape).astype("float32")
        _apply(opt, [g], [w])
        ref = _np_rescale(ref - lr * g, (0,))
        avg = ref if avg is None else mom * avg + (1 - mom) * ref  # Keras: no momentum at step 1
        if step % freq == 0:
            ref = _np_rescale(avg, (0,))
        np.testing.assert_allclose(w.numpy(), ref, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.linalg.norm(w.numpy(), axis=0), 1.0, rtol=1e-6)


@pytest.mark.parametrize("name", ALL + MORE)
def test_pickle_round_trip(name):
    w = keras.Variable(np.ones((3, 2), "float32"))
    opt = getattr(wo, name)(0.01, rescale=[w], target_norm=2.0)
    back = pickle.loads(pickle.dumps(opt))
    assert type(back) is type(opt)
    assert back.get_config() == opt.get_config()


def test_pickle_users_class_made_by_wrs():
    class MyMomentum(keras.optimizers.SGD):
        pass

    cls = keras_wrs.wrs(MyMomentum, name="PickledMomentum")
    opt = cls(0.1, momentum=0.5, rescale={"dense/kernel": [-1]})
    back = pickle.loads(pickle.dumps(opt))
    assert type(back) is cls and back.get_config() == opt.get_config()


def test_loss_scale_optimizer_around_a_wrs_optimizer_rescales():
    m = conv_bn()
    x, y = data(16)
    before = m.get_layer("c1").kernel.numpy()
    opt = keras.optimizers.LossScaleOptimizer(wo.SGD(0.5, momentum=0.9, rescale=m))
    m.compile(optimizer=opt, loss=loss())
    m.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    assert not np.allclose(m.get_layer("c1").kernel.numpy(), before)
    for name in ("c1", "c2"):
        np.testing.assert_allclose(norms(m.get_layer(name).kernel.numpy()), 1.0, rtol=1e-5)


def test_wrs_of_a_keras_class_is_the_projects_class():
    assert keras_wrs.wrs(keras.optimizers.SGD) is wo.SGD
    assert keras_wrs.wrs(keras.optimizers.Adagrad) is wo.Adagrad
    other = keras_wrs.wrs(keras.optimizers.SGD, name="OtherWRSSGD")
    assert other is not wo.SGD and keras_wrs.wrs(keras.optimizers.SGD, name="OtherWRSSGD") is other
    assert keras.saving.get_registered_object("keras_wrs>SGD") is wo.SGD
