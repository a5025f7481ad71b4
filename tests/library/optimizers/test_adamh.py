"""AdamH against the published update in NumPy and against levanter's closed form."""

import keras
import numpy as np
import pytest
from support.backends import BACKEND
from support.nets import conv_bn, data, loss, norms
from support.reference_twin import NumpyReference, run_twin

from keras_wrs.optimizers import AdamH

SELECTED = ("c1/kernel", "c2/kernel")  # the BN-fed kernels of reference_twin.conv_bn_ln
INDICES = (0, 3)


def adam_u(m, v, g, t, b1, b2, eps):
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    return m, v, (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)


def published(lr, b1=0.9, b2=0.999, eps=1e-8, per_filter=False):
    """`W <- R Normalize(W - lr R Normalize(u))` on c1 and c2, Keras's Adam elsewhere."""
    state = {}

    def norm(x):
        axes = tuple(range(x.ndim - 1)) if per_filter else None
        return np.sqrt(np.sum(x * x, axis=axes, keepdims=per_filter))

    def step(weights, grads, t):
        t += 1
        out = []
        for i, (w, g) in enumerate(zip(weights, grads, strict=True)):
            m, v, r = state.get(i, (0.0, 0.0, norm(w)))
            if i in INDICES:
                m, v, u = adam_u(m, v, g, t, b1, b2, eps)
                moved = w - lr * r * u / norm(u)
                w = r * moved / norm(moved)
            else:  # Keras's Adam: epsilon before the bias correction
                m = b1 * m + (1 - b1) * g
                v = b2 * v + (1 - b2) * g * g
                w = w - lr * np.sqrt(1 - b2**t) / (1 - b1**t) * m / (np.sqrt(v) + eps)
            state[i] = (m, v, r)
            out.append(w)
        return out

    return step


def levanter(lr, b1=0.9, b2=0.999, eps=1e-8):
    """levanter's `_adamh_projected_update` (a closed form of the same step), per matrix."""
    inner = published(lr, b1, b2, eps)
    state = {}

    def step(weights, grads, t):
        out = inner(weights, grads, t)  # Adam on the others (and the moments, discarded)
        for i in INDICES:
            w, g = weights[i], grads[i]
            m, v, target = state.get(i, (0.0, 0.0, np.linalg.norm(w)))
            m, v, u = adam_u(m, v, g, t + 1, b1, b2, eps)
            state[i] = (m, v, target)
            p_sq, dot, u_norm = np.sum(w * w), np.sum(w * u), max(np.linalg.norm(u), 1e-10)
            projected = np.sqrt(
                max(p_sq - 2 * lr * target * dot / u_norm + lr**2 * target**2, 1e-10)
            )
            ratio = target / projected
            out[i] = w + w * (ratio - 1.0) - u * (lr * target * ratio / u_norm)
        return out

    return step


@pytest.mark.parametrize("reference", [published, levanter])
def test_adamh_per_layer_matches_the_published_update(reference):
    # Betas whose powers float32 holds exactly: Keras's Adam on the other
    # variables computes `1 - beta**t` in float32 (1e-5 off for 0.999).
    rel = run_twin(
        lambda m: AdamH(0.02, beta_1=0.75, beta_2=0.875, rescale=list(SELECTED)),
        lambda w: NumpyReference(reference(0.02, 0.75, 0.875), w),
    )
    assert max(rel.values()) < 2e-6, rel


def test_adamh_per_filter_matches_numpy():
    rel = run_twin(
        lambda m: AdamH(
            0.02, beta_1=0.8, beta_2=0.99, rescale=list(SELECTED), granularity="filter"
        ),
        lambda w: NumpyReference(published(0.02, 0.8, 0.99, per_filter=True), w),
    )
    assert max(rel.values()) < 2e-6, rel


def _fit(opt, steps=6, seed=0):
    keras.utils.set_random_seed(seed)
    model = conv_bn()
    initial = {
        n: norms(keras.ops.convert_to_numpy(model.get_layer(n).kernel), None) for n in ("c1", "c2")
    }
    model.compile(optimizer=opt(model), loss=loss())
    model.fit(*data(steps * 8), batch_size=8, verbose=0, shuffle=False)
    return model, initial


def test_norms_stay_at_the_initial_radius_and_the_step_angle_is_the_learning_rate():
    model, initial = _fit(lambda m: AdamH(0.05, rescale=m))
    for name, r in initial.items():
        w = keras.ops.convert_to_numpy(model.get_layer(name).kernel)
        np.testing.assert_allclose(norms(w, None), r, rtol=1e-5)
    # One step turns a kernel by atan(lr sin a / (1 - lr cos a)) <= asin(lr) radians (a: angle of u to W).
    kernel = model.get_layer("c2").kernel
    before = keras.ops.convert_to_numpy(kernel)
    model.fit(*data(8, seed=9), batch_size=8, verbose=0)
    after = keras.ops.convert_to_numpy(kernel)
    cos = np.sum(before * after) / (np.linalg.norm(before) * np.linalg.norm(after))
    assert 0.5 * 0.05 < np.arccos(min(cos, 1.0)) <= np.arcsin(0.05) + 1e-5


def _apply_random_gradients(make, steps=5):
    keras.utils.set_random_seed(0)
    model = conv_bn()
    opt = make(model)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        grads = [rng.normal(size=v.shape).astype("float32") for v in model.trainable_variables]
        opt.apply([keras.ops.convert_to_tensor(g) for g in grads], model.trainable_variables)
    return {v.path: keras.ops.convert_to_numpy(v) for v in model.trainable_variables}


def _assert_same(a, b):
    if BACKEND == "torch":
        # Keras's Adam on PyTorch is its fused multi-tensor step; AdamH updates
        # per variable (its selected kernels need it): same formula, other rounding.
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    else:
        np.testing.assert_array_equal(a, b)


def test_off_is_keras_adam():
    ours = _apply_random_gradients(lambda m: AdamH(1e-2, epsilon=1e-7, rescale=[]))
    theirs = _apply_random_gradients(lambda m: keras.optimizers.Adam(1e-2))
    for path in ours:
        _assert_same(ours[path], theirs[path])


def test_unselected_variables_take_keras_adam_steps_and_decay():
    ours = _apply_random_gradients(lambda m: AdamH(1e-2, epsilon=1e-7, weight_decay=0.1, rescale=m))
    theirs = _apply_random_gradients(lambda m: keras.optimizers.Adam(1e-2, weight_decay=0.1))
    assert not np.allclose(ours["c1/kernel"], theirs["c1/kernel"])
    for path in ours:
        if path not in SELECTED:
            _assert_same(ours[path], theirs[path])


def test_get_config_round_trip():
    model = conv_bn()
    opt = AdamH(0.01, rescale=model, granularity="filter", amsgrad=True)
    config = opt.get_config()
    assert config["rescale"] == {"c1/kernel": [-1], "c2/kernel": [-1]}
    assert config["target_norm"] == "initial" and "rescale_every" not in config
    clone = AdamH.from_config(config)
    assert clone.get_config() == config


def test_rescale_every_is_refused():
    with pytest.raises(ValueError, match=r"AdamH rescales after every step.*rescale_every=2"):
        AdamH(rescale=[], rescale_every=2)
