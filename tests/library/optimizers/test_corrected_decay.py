"""SGDC and AdamC against timm's `corrected_weight_decay=True`, a NumPy twin, and Keras with it off."""

import math

import keras
import numpy as np
import pytest
from support.backends import BACKEND
from support.nets import conv_bn, data, loss
from support.reference_twin import NumpyReference, TorchReference, run_twin, timm_optim

from keras_wrs.optimizers import SGDC, AdamC

timm = None
if BACKEND != "tensorflow":  # see test_sgdp.py: the PyTorch references run on the torch backend
    try:
        timm = timm_optim("sgdw"), timm_optim("adamw")
    except ImportError:
        pass
torch_reference = pytest.mark.skipif(
    timm is None, reason="timm's optimizers run on the torch backend (`pip install --no-deps timm`)"
)

SCHEDULE = keras.optimizers.schedules.CosineDecay(0.1, 100, alpha=0.01)
ADAM_SCHEDULE = keras.optimizers.schedules.CosineDecay(0.01, 100, alpha=0.01)


def rate(schedule):
    return lambda t: float(keras.ops.convert_to_numpy(schedule(t)))


@torch_reference
def test_sgdc_matches_timm_along_a_schedule():
    # Without momentum: Keras's SGD and PyTorch's differ in how a changing
    # learning rate enters the momentum buffer, not in the decay.
    rel = run_twin(
        lambda m: SGDC(SCHEDULE, weight_decay=0.05, max_learning_rate=0.1),
        lambda w: TorchReference(
            lambda p: timm[0].SGDW(
                p, lr=0.1, weight_decay=0.05, corrected_weight_decay=True, foreach=False
            ),
            w,
            schedule=rate(SCHEDULE),
        ),
    )
    assert max(rel.values()) < 3e-6, rel


@torch_reference
def test_sgdc_with_nesterov_momentum_matches_timm():
    rel = run_twin(
        lambda m: SGDC(0.05, momentum=0.9, nesterov=True, weight_decay=0.05, max_learning_rate=0.2),
        lambda w: TorchReference(
            lambda p: timm[0].SGDW(
                p,
                lr=0.2,
                momentum=0.9,
                nesterov=True,
                weight_decay=0.05,
                corrected_weight_decay=True,
                foreach=False,
            ),
            w,
            schedule=lambda t: 0.05,
        ),
    )
    assert max(rel.values()) < 3e-6, rel


@torch_reference
@pytest.mark.parametrize("betas, tolerance", [((0.75, 0.875), 3e-6), ((0.9, 0.999), 2e-5)])
def test_adamc_matches_timm_along_a_schedule(betas, tolerance):
    # Keras adds epsilon before the bias correction (`epsilon * sqrt(1 - b2^t)`
    # in PyTorch's terms): the reference gets that epsilon at each step. With
    # betas whose powers float32 holds exactly, the rest is round-off; with
    # 0.999, Keras's float32 `1 - beta_2**t` adds about 1e-5.
    eps = 1e-7

    def keras_epsilon(group, t):
        group["eps"] = eps / math.sqrt(1 - betas[1] ** (t + 1))

    rel = run_twin(
        lambda m: AdamC(
            ADAM_SCHEDULE,
            beta_1=betas[0],
            beta_2=betas[1],
            epsilon=eps,
            weight_decay=0.05,
            max_learning_rate=0.01,
        ),
        lambda w: TorchReference(
            lambda p: timm[1].AdamWLegacy(
                p,
                lr=0.01,
                betas=betas,
                weight_decay=0.05,
                corrected_weight_decay=True,
                foreach=False,
            ),
            w,
            schedule=rate(ADAM_SCHEDULE),
            before_step=keras_epsilon,
        ),
    )
    assert max(rel.values()) < tolerance, rel


def numpy_sgdc(lr_fn, momentum, nesterov, wd, max_lr):
    """Keras's SGD (momentum accumulates -lr * g) after the corrected decay."""
    state = {}

    def step(weights, grads, t):
        lr = lr_fn(t)
        out = []
        for i, (w, g) in enumerate(zip(weights, grads, strict=True)):
            w = w - w * (lr * lr / max_lr * wd)
            m = momentum * state.get(i, 0.0) - lr * g
            state[i] = m
            out.append(w + (momentum * m - lr * g if nesterov else m))
        return out

    return step


def test_sgdc_matches_numpy_with_momentum_along_a_schedule():
    rel = run_twin(
        lambda m: SGDC(
            SCHEDULE, momentum=0.9, nesterov=True, weight_decay=0.05, max_learning_rate=0.1
        ),
        lambda w: NumpyReference(numpy_sgdc(rate(SCHEDULE), 0.9, True, 0.05, 0.1), w),
    )
    assert max(rel.values()) < 3e-6, rel


@pytest.mark.parametrize(
    "cls, parent", [(SGDC, keras.optimizers.SGD), (AdamC, keras.optimizers.AdamW)]
)
def test_off_is_the_keras_parent_bit_for_bit(cls, parent):
    def fit(opt):
        keras.utils.set_random_seed(1)
        model = conv_bn()
        model.compile(optimizer=opt, loss=loss())
        model.fit(*data(32), batch_size=8, verbose=0, shuffle=False)
        return [keras.ops.convert_to_numpy(v) for v in model.weights]

    kw = dict(learning_rate=SCHEDULE, weight_decay=0.05)
    for a, b in zip(fit(cls(corrected_weight_decay=False, **kw)), fit(parent(**kw)), strict=True):
        np.testing.assert_array_equal(a, b)


def test_constant_rate_equals_keras_decay():
    # lr**2 / max_lr = lr when the rate never moves from its peak.
    def fit(opt):
        keras.utils.set_random_seed(1)
        model = conv_bn()
        model.compile(optimizer=opt, loss=loss())
        model.fit(*data(32), batch_size=8, verbose=0, shuffle=False)
        return [keras.ops.convert_to_numpy(v) for v in model.weights]

    ours = fit(SGDC(0.1, momentum=0.9, weight_decay=0.1))
    for a, b in zip(
        ours, fit(keras.optimizers.SGD(0.1, momentum=0.9, weight_decay=0.1)), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_excluded_variables_are_not_decayed():
    model = conv_bn()
    opt = SGDC(0.1, weight_decay=0.5)
    opt.exclude_from_weight_decay(var_list=[model.get_layer("head").kernel])
    before = keras.ops.convert_to_numpy(model.get_layer("head").kernel)
    kernel_before = keras.ops.convert_to_numpy(model.get_layer("c1").kernel)
    zeros = [keras.ops.zeros(v.shape) for v in model.trainable_variables]
    opt.apply(zeros, model.trainable_variables)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(model.get_layer("head").kernel), before
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model.get_layer("c1").kernel),
        kernel_before * (1 - 0.1 * 0.5),
        rtol=1e-6,
    )


@pytest.mark.parametrize("cls", [SGDC, AdamC])
def test_get_config_round_trip(cls):
    opt = cls(0.05, weight_decay=0.02, max_learning_rate=0.1)
    config = opt.get_config()
    assert config["corrected_weight_decay"] is True and config["max_learning_rate"] == 0.1
    assert cls.from_config(config).get_config() == config
    assert cls(0.3, weight_decay=0.01).max_learning_rate == 0.3


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            dict(learning_rate=SCHEDULE, weight_decay=0.1),
            r"`max_learning_rate` is required.*schedule's peak.*max_learning_rate=None",
        ),
        (
            dict(max_learning_rate=0.0),
            r"`max_learning_rate` must be a positive number.*max_learning_rate=0.0",
        ),
        (dict(max_learning_rate="peak"), r"`max_learning_rate`.*max_learning_rate='peak'"),
        (
            dict(corrected_weight_decay="yes"),
            r"`corrected_weight_decay` must be True or False.*'yes'",
        ),
    ],
)
def test_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SGDC(**kwargs)
