"""SGDP and AdamP against the `adamp` package, step by step, and their arguments."""

import math

import keras
import numpy as np
import pytest
from support.backends import BACKEND
from support.nets import conv_bn
from support.reference_twin import TorchReference, run_twin

from keras_wrs import math as wmath
from keras_wrs.optimizers import SGDP, AdamP
from keras_wrs.optimizers.sgdp import projected_update

adamp = None
if BACKEND != "tensorflow":
    try:
        import adamp
    except ImportError:
        pass
# The references are PyTorch optimizers; these twins run under KERAS_BACKEND=torch
# (CI's TensorFlow venv has no PyTorch, and a CUDA build of PyTorch imported next
# to TensorFlow can crash the process when it loads triton).
torch_reference = pytest.mark.skipif(
    BACKEND == "tensorflow" or adamp is None,
    reason="the adamp reference runs on the torch backend with `pip install adamp==0.3.0`",
)

# float32 round-off after 100 steps (largest seen: 6e-7)
TOLERANCE = 2e-6


def np_decision(w, g, delta, eps=1e-8):
    """The reference's test in NumPy: "channel", "layer" or None (Keras layout)."""

    def cos(a, b):
        a = a / np.maximum(np.linalg.norm(a, axis=0), eps)
        b = b / np.maximum(np.linalg.norm(b, axis=0), eps)
        return np.abs(np.sum(a * b, axis=0))

    channels = w.reshape(-1, w.shape[-1]), g.reshape(-1, w.shape[-1])
    if cos(*channels).max() < delta / math.sqrt(channels[0].shape[0]):
        return "channel"
    if cos(w.reshape(-1, 1), g.reshape(-1, 1)).max() < delta / math.sqrt(w.size):
        return "layer"
    return None


def _decisions(delta):
    seen = {}

    def watch(weights, grads, t):
        for i, (w, g) in enumerate(zip(weights, grads, strict=True)):
            if w.ndim > 1:
                seen.setdefault(i, set()).add(np_decision(w, g, delta))

    return seen, watch


SGDP_CASES = {
    "momentum, decay": dict(lr=0.1, momentum=0.9, weight_decay=1e-3),
    "nesterov, dampening": dict(
        lr=0.1, momentum=0.9, dampening=0.1, nesterov=True, weight_decay=5e-4
    ),
    "no momentum, delta, wd_ratio": dict(
        lr=0.05, weight_decay=1e-2, delta=0.2, wd_ratio=0.5, eps=1e-6
    ),
}
ADAMP_CASES = {
    "decay": dict(lr=1e-2, weight_decay=1e-2),
    "nesterov, betas": dict(lr=1e-2, betas=(0.8, 0.99), nesterov=True, weight_decay=1e-2),
    "no decay, delta": dict(lr=3e-3, delta=0.05, wd_ratio=0.0, eps=1e-6),
}
_KERAS_NAMES = {"lr": "learning_rate", "eps": "epsilon"}


def _keras_kwargs(kw):
    out = {_KERAS_NAMES.get(k, k): v for k, v in kw.items() if k != "betas"}
    if "betas" in kw:
        out["beta_1"], out["beta_2"] = kw["betas"]
    return out


@torch_reference
@pytest.mark.parametrize("case", SGDP_CASES)
def test_sgdp_matches_the_adamp_package(case):
    kw = SGDP_CASES[case]
    seen, watch = _decisions(kw.get("delta", 0.1))
    rel = run_twin(
        lambda m: SGDP(**_keras_kwargs(kw)),
        lambda w: TorchReference(lambda p: adamp.SGDP(p, **kw), w),
        watch=watch,
    )
    assert max(rel.values()) < TOLERANCE, rel
    # c1, c2 projected per channel, c3 per layer, the head mostly not: every branch ran.
    assert seen[0] == seen[3] == {"channel"} and seen[7] == {"layer"} and None in seen[8]


@torch_reference
@pytest.mark.parametrize("case", ADAMP_CASES)
def test_adamp_matches_the_adamp_package(case):
    kw = ADAMP_CASES[case]
    seen, watch = _decisions(kw.get("delta", 0.1))
    rel = run_twin(
        lambda m: AdamP(**_keras_kwargs(kw)),
        lambda w: TorchReference(lambda p: adamp.AdamP(p, **kw), w),
        watch=watch,
    )
    assert max(rel.values()) < TOLERANCE, rel
    assert seen[0] == seen[3] == {"channel"} and seen[7] == {"layer"} and None in seen[8]


@torch_reference
def test_sgdp_with_a_schedule_matches_the_reference_given_the_same_rates():
    schedule = keras.optimizers.schedules.CosineDecay(0.1, 100, alpha=0.01)
    rate = lambda t: float(keras.ops.convert_to_numpy(schedule(t)))
    kw = dict(momentum=0.9, weight_decay=1e-3, nesterov=True)
    rel = run_twin(
        lambda m: SGDP(schedule, **kw),
        lambda w: TorchReference(lambda p: adamp.SGDP(p, lr=0.1, **kw), w, schedule=rate),
    )
    assert max(rel.values()) < TOLERANCE, rel


@pytest.mark.tensorflow_only  # backend-independent logic; two short fits cost 80 s on eager JAX
def test_projection_by_keras_wrs_selection_equals_cosine_where_they_agree():
    # On conv_bn the cosine test projects c1 and c2 per channel and nothing
    # else; the graph walk selects the same two kernels.
    def run(projection):
        keras.utils.set_random_seed(0)
        model = conv_bn()
        opt = AdamP(
            1e-2, weight_decay=1e-2, projection=model if projection == "model" else projection
        )
        model.compile(
            optimizer=opt, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        )
        rng = np.random.default_rng(0)
        x, y = rng.normal(size=(64, 8, 8, 4)).astype("float32"), rng.integers(0, 3, 64)
        model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
        return model, opt

    by_cosine, _ = run("cosine")
    by_model, opt = run("model")
    assert opt.projected_selection == {"c1/kernel": (-1,), "c2/kernel": (-1,)}
    for a, b in zip(by_cosine.weights, by_model.weights, strict=True):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), rtol=1e-5, atol=1e-6
        )


def test_projected_update_matches_numpy():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 3, 4, 5)).astype("float32")
    g = rng.normal(size=w.shape).astype("float32")
    tangential = g - w * (np.sum(w * g, axis=(0, 1, 2)) / np.sum(w * w, axis=(0, 1, 2)))
    layer_only = g - w * np.sum(w * g) / np.sum(w * w)
    for grad, expected in ((tangential, "channel"), (layer_only, "layer"), (g, None)):
        u = rng.normal(size=w.shape).astype("float32")
        out, factor = projected_update(u, w, grad, 0.1, 0.25, 1e-8)
        assert np_decision(w, grad, 0.1) == expected
        axes = {"channel": (0, 1, 2), "layer": (0, 1, 2, 3)}.get(expected)
        if axes is None:
            want = u
        else:
            unit = w / (np.sqrt(np.sum(w * w, axis=axes, keepdims=True)) + 1e-8)
            want = u - unit * np.sum(unit * u, axis=axes, keepdims=True)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(out), want, rtol=1e-5, atol=1e-6)
        assert float(keras.ops.convert_to_numpy(factor)) == (1.0 if expected is None else 0.25)


@torch_reference
def test_abs_cosine_clamps_each_norm_like_pytorch():
    import torch

    a = np.array([[3e-9, 1.0], [4e-9, 0.0]], np.float32)
    b = np.array([[1.0, 3.0], [0.0, 4.0]], np.float32)
    ours = keras.ops.convert_to_numpy(wmath.abs_cosine(a, b, (0,), 1e-8))[0]
    theirs = (
        torch.nn.functional.cosine_similarity(torch.tensor(a.T), torch.tensor(b.T), dim=1, eps=1e-8)
        .abs()
        .numpy()
    )
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)


@pytest.mark.parametrize("cls", [SGDP, AdamP])
def test_get_config_round_trip(cls):
    model = conv_bn()
    opt = cls(0.01, weight_decay=1e-3, delta=0.2, wd_ratio=0.3, nesterov=True, projection=model)
    config = opt.get_config()
    assert config["projection"] == {"c1/kernel": [-1], "c2/kernel": [-1]}
    clone = cls.from_config(config)
    assert clone.get_config() == config
    clone.build(model.trainable_variables)
    assert clone.projected_selection == {"c1/kernel": (-1,), "c2/kernel": (-1,)}
    assert clone.get_config() == config
    assert cls.from_config(cls(0.01).get_config()).projection == "cosine"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            dict(momentum=1.0),
            r"`momentum` must be a float between \[0, 1\].*1 - momentum.*momentum=1.0",
        ),
        (dict(momentum=-0.1), r"`momentum`.*Received: momentum=-0.1"),
        (dict(dampening=1.5), r"`dampening` must be a number in \[0.0, 1.0\].*dampening=1.5"),
        (dict(epsilon=0.0), r"`epsilon` must be > 0.*epsilon=0.0"),
        (
            dict(delta=-1.0),
            r"`delta` must be a number in \[0.0, inf\] \(0 never projects\).*delta=-1.0",
        ),
        (dict(wd_ratio="x"), r"`wd_ratio`.*wd_ratio='x'"),
        (dict(weight_decay=-1e-4), r"`weight_decay`.*weight_decay=-0.0001"),
        (dict(nesterov=1), r"`nesterov` must be True or False.*nesterov=1"),
        (dict(projection=None), r"`projection` must be \"cosine\".*projection=None"),
        (dict(projection="("), r"`projection` is not a valid regular expression.*projection='\('"),
    ],
)
def test_sgdp_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SGDP(0.1, **kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(beta_1=1.0), r"`beta_1` must be a number in \[0.0, 1.0\).*beta_1=1.0"),
        (dict(beta_2=-0.5), r"`beta_2`.*beta_2=-0.5"),
        (dict(projection=3), r"`projection` must be a Keras model.*projection=3"),
    ],
)
def test_adamp_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AdamP(1e-3, **kwargs)


def test_projection_selecting_nothing_is_an_error_at_build():
    model = conv_bn()
    with pytest.raises(
        ValueError, match=r"`projection` regex 'nothing' matches no trainable variable"
    ):
        SGDP(0.1, projection="nothing").build(model.trainable_variables)
