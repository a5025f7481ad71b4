"""Sharpness against exact Hessians: least squares (2 X^T X / n) and NumPy finite differences."""

import logging

import keras
import numpy as np
import pytest
from keras import ops

import keras_wrs
from keras_wrs import _backend
from keras_wrs.dynamics.probe import probe_loss
from keras_wrs.dynamics.sharpness import (
    Sharpness,
    edge_of_stability,
    hessian_vector_product,
    top_hessian_eigenvalue,
)

L = keras.layers
RNG = np.random.default_rng(0)


def least_squares(n=64):
    # Column scales 3, 1, 1, .5, .2: a clear gap between the two top eigenvalues.
    x = (RNG.normal(size=(n, 5)) * [3, 1, 1, 0.5, 0.2]).astype("float32")
    y = RNG.normal(size=(n, 1)).astype("float32")
    model = keras.Sequential([keras.Input((5,)), L.Dense(1, use_bias=False)])
    model.compile(keras.optimizers.SGD(0.01), "mse")
    return model, x, y


def test_least_squares_sharpness_is_top_eigenvalue_of_2xtx_over_n():
    model, x, y = least_squares()
    cb = Sharpness((x, y), max_iterations=300, tolerance=1e-9)
    hist = model.fit(x, y, batch_size=64, epochs=2, callbacks=[cb], verbose=0).history
    x64 = x.astype(np.float64)
    top = np.linalg.eigvalsh(2 * x64.T @ x64 / len(x))[
        -1
    ]  # mean((Xw - y)^2) has Hessian 2 X^T X / n
    # The Hessian does not depend on w; the HVPs run in float32, hence 1e-5.
    np.testing.assert_allclose(hist["sharpness"], [top, top], rtol=1e-5)
    np.testing.assert_allclose(hist["edge_of_stability"], [200.0, 200.0], rtol=1e-6)


def tanh_mlp():
    model = keras.Sequential([keras.Input((3,)), L.Dense(4, activation="tanh"), L.Dense(1)])
    model.compile(keras.optimizers.SGD(0.1), "mse")
    x = RNG.normal(size=(16, 3)).astype("float32")
    y = RNG.normal(size=(16, 1)).astype("float32")
    return model, x, y


def np_mlp_loss(flat, shapes, x, y):
    """The tanh MLP's mse loss in float64 NumPy, from its flattened weights."""
    parts, start = [], 0
    for shape in shapes:
        size = int(np.prod(shape))
        parts.append(flat[start : start + size].reshape(shape))
        start += size
    w1, b1, w2, b2 = parts
    pred = np.tanh(x @ w1 + b1) @ w2 + b2
    return np.mean((pred - y) ** 2)


def brute_force_hessian(model, x, y, eps=1e-4):
    """Twin: the full Hessian by central second differences of the NumPy loss.

    Truncation error O(eps^2) = 1e-8 and rounding 1e-16 / eps^2 = 1e-8, far
    below the 1e-4 the float32 products are held to.
    """
    shapes = [tuple(v.shape) for v in model.trainable_variables]
    w = np.concatenate([np.asarray(v, np.float64).reshape(-1) for v in model.trainable_variables])
    x, y = x.astype(np.float64), y.astype(np.float64)
    f = lambda v: np_mlp_loss(v, shapes, x, y)
    eye = np.eye(len(w)) * eps
    h = np.empty((len(w), len(w)))
    for i in range(len(w)):
        for j in range(i, len(w)):
            h[i, j] = h[j, i] = (
                f(w + eye[i] + eye[j])
                - f(w + eye[i] - eye[j])
                - f(w - eye[i] + eye[j])
                + f(w - eye[i] - eye[j])
            ) / (4 * eps**2)
    return h


def test_hessian_vector_product_matches_brute_force_hessian():
    model, x, y = tanh_mlp()
    h = brute_force_hessian(model, x, y)
    variables = model.trainable_variables
    vec = [RNG.normal(size=v.shape).astype("float32") for v in variables]
    got = hessian_vector_product(lambda: probe_loss(model, x, y), variables, vec)
    flat_got = np.concatenate([np.reshape(ops.convert_to_numpy(g), -1) for g in got])
    np.testing.assert_allclose(
        flat_got, h @ np.concatenate([v.reshape(-1) for v in vec]), rtol=1e-4, atol=1e-5
    )


def test_power_iteration_finds_largest_magnitude_eigenvalue():
    model, x, y = tanh_mlp()
    eig = np.linalg.eigvalsh(brute_force_hessian(model, x, y))
    want = eig[np.argmax(np.abs(eig))]
    variables = model.trainable_variables
    hvp = lambda v: hessian_vector_product(lambda: probe_loss(model, x, y), variables, v)
    start = [ops.convert_to_tensor(RNG.normal(size=v.shape), "float32") for v in variables]
    value, vector, its, ok = top_hessian_eigenvalue(hvp, start, max_iterations=2000, tolerance=1e-8)
    assert ok and its < 2000
    # float32 products: the Rayleigh quotient is accurate to ~1e-6 relative; 1e-4 leaves margin.
    np.testing.assert_allclose(value, want, rtol=1e-4)
    assert abs(value) > 2 * min(abs(eig[0]), abs(eig[-1])) or np.sign(value) == np.sign(want)


def test_top_eigenvalue_stops_at_max_iterations_without_convergence():
    diag = ops.convert_to_tensor([1.0, 0.999, 0.5])  # tiny gap: slow convergence
    value, _, its, ok = top_hessian_eigenvalue(
        lambda v: [diag * v[0]], [ops.ones(3)], max_iterations=3, tolerance=1e-12
    )
    assert its == 3 and not ok and 0.5 < value <= 1.0


@pytest.mark.parametrize(
    "optimizer, want",
    [
        (keras.optimizers.SGD(0.1), 20.0),
        (keras.optimizers.SGD(0.1, momentum=0.9), 38.0),
        (keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True), 3.8 / (0.1 * 2.8)),
        (keras.optimizers.Adam(0.01), 200.0),
        (keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.5)), 4.0),
    ],
)
def test_edge_of_stability(optimizer, want):
    np.testing.assert_allclose(edge_of_stability(optimizer), want, rtol=1e-6)


def test_step_schedule_series_and_no_side_effects():
    inp = keras.Input((4,))
    h = L.ReLU()(L.BatchNormalization(momentum=0.9)(L.Dense(6)(inp)))
    model = keras.Model(inp, L.Dense(1)(h))
    model.compile(keras_wrs.optimizers.SGD(0.05, rescale=model), "mse")
    x, y = RNG.normal(size=(32, 4)).astype("float32"), RNG.normal(size=(32, 1)).astype("float32")
    cb = Sharpness((x, y), schedule=3, every_n_epochs=2, max_iterations=5)
    hist = model.fit(x, y, batch_size=8, epochs=3, callbacks=[cb], verbose=0).history
    assert [s for s, _ in cb.series["sharpness"]] == [
        1,
        4,
        4,
        7,
        10,
        12,
    ]  # steps 0,3,6,9 (+1) and ends of epochs 0, 2
    assert np.isfinite(hist["sharpness"][0]) and np.isnan(hist["sharpness"][1])
    before = [np.array(v) for v in model.variables]
    cb.estimate()
    for a, b in zip(before, model.variables, strict=True):  # BN moving statistics included
        np.testing.assert_array_equal(a, np.array(b))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(probe=np.zeros((4, 5), "float32")), r"`probe` must hold targets, `\(x, y\)`"),
        (dict(probe=(np.zeros((0, 5)), np.zeros((0, 1)))), r"`probe` holds no example"),
        (
            dict(probe=(np.zeros((4, 5)), np.zeros((4, 1))), tolerance=0),
            r"`tolerance` must be a number > 0\. Received: tolerance=0",
        ),
        (
            dict(probe=(np.zeros((4, 5)), np.zeros((4, 1))), max_iterations=0),
            r"`max_iterations` must be an integer >= 1",
        ),
        (
            dict(probe=(np.zeros((4, 5)), np.zeros((4, 1))), schedule="weekly"),
            r"`schedule` must be an integer >= 1 .*Received: schedule='weekly'",
        ),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Sharpness(**kwargs)


def test_wrong_probe_shape_raises_before_training():
    model, x, y = least_squares()
    with pytest.raises(
        ValueError, match=r"`probe` inputs have shape \(4, 3\); model .* expects \(None, 5\)"
    ):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[Sharpness((x[:4, :3], y[:4]))])


def test_failure_is_logged_once_and_training_goes_on(monkeypatch, caplog):
    def broken(*args):
        raise RuntimeError("no second derivative for this op")

    monkeypatch.setattr(_backend, "hessian_vector_product", broken)
    model, x, y = least_squares()
    with caplog.at_level(logging.WARNING, logger="keras_wrs"):
        hist = model.fit(
            x, y, batch_size=16, epochs=3, verbose=0, callbacks=[Sharpness((x, y))]
        ).history
    assert len(hist["loss"]) == 3 and all(np.isnan(hist["sharpness"]))
    assert sum("sharpness failed" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.slow
def test_full_batch_gd_settles_at_the_edge_of_stability():
    """Cohen et al. 2021 on digits: GD started sharper than 2/lr comes down to 2/lr and stays there."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.data[:500] / 16).astype("float32")
    y = keras.utils.to_categorical(d.target[:500], 10).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((64,)),
            L.Dense(64, activation="tanh"),
            L.Dense(64, activation="tanh"),
            L.Dense(10),
        ]
    )
    lr = 0.5
    model.compile(keras.optimizers.SGD(lr), "mse")
    cb = Sharpness((x, y), schedule=100, max_iterations=50, tolerance=1e-4)
    # 2 epochs of 500 full-batch steps: the data set 500 times over, unshuffled, one copy per batch.
    model.fit(
        np.tile(x, (500, 1)),
        np.tile(y, (500, 1)),
        batch_size=len(x),
        epochs=2,
        shuffle=False,
        verbose=0,
        callbacks=[cb],
    )
    steps, values = zip(*cb.series["sharpness"], strict=True)
    assert values[0] > 2 * (2 / lr)  # measured 10.3 at initialization, 2/lr = 4
    # Measured 3.8-4.2 from step 100 on (it oscillates around 2/lr); 10% is the band.
    settled = [v for s, v in cb.series["sharpness"] if s >= 100]
    np.testing.assert_allclose(settled, 2 / lr, rtol=0.1)
    np.testing.assert_allclose(cb.series["edge_of_stability"][-1][1], 2 / lr, rtol=1e-6)
