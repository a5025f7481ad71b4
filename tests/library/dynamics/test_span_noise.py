"""SpanNoise in model.fit: logged values against an explicit im2col + SVD twin, schedule, errors."""

import logging

import keras
import numpy as np
import pytest
from sklearn.datasets import load_digits
from support.nets import conv_bn, loss
from support.twins import np_noise, np_patches

from keras_wrs.dynamics import SpanNoise
from keras_wrs.dynamics import span as wspan
from keras_wrs.dynamics.logkeys import NOISE_METRICS

L = keras.layers
MIX = np.array([1.0, 0.5, -2.0, 0.25], "float32")  # powers of two: exact in float32


def digits4(n=96):
    """Digits as 8x8x4 images whose channels are multiples of one: 3x3 patches span 9 of 36 dims."""
    d = load_digits()
    img = (d.images[:n] / 16.0).astype("float32")
    return img[..., None] * MIX, (d.target[:n] % 3).astype("int32")


def fit(callbacks, epochs=1, model=None, x=None, y=None):
    x, y = (x, y) if x is not None else digits4()
    model = model or conv_bn()
    model.compile(keras.optimizers.SGD(0.05), loss())
    hist = model.fit(
        x, y, batch_size=32, epochs=epochs, callbacks=callbacks, verbose=0, shuffle=False
    )
    return model, hist.history


def twin(model, layer_name, probe):
    layer = model.get_layer(layer_name)
    inputs = keras.Model(model.input, layer.input)(probe, training=False)
    rows = np_patches(keras.ops.convert_to_numpy(inputs), (3, 3), (1, 1), "same", (1, 1))
    w2d = np.asarray(layer.kernel).reshape(-1, layer.kernel.shape[-1])
    return np_noise(w2d, rows, 1e-6)


def test_logged_noise_matches_twin_for_both_convs():
    x, y = digits4()
    probe = x[:1]  # one image: 64 patches, so even c2 (d = 72) has a nontrivial span
    cb = SpanNoise(probe)
    model, hist = fit([cb], x=x, y=y)
    for name in ("c1", "c2"):
        want = twin(model, name, probe)
        got = np.array([hist[f"{m}/{name}"][0] for m in NOISE_METRICS])
        assert got[4] == want[4], name  # span rank
        np.testing.assert_allclose(got[:4], want[:4], rtol=1e-5, err_msg=name)
    assert hist["span_rank/c1"][0] == 9 and hist["noise_ratio_mean/c1"][0] > 0.5
    assert 0 < hist["span_rank/c2"][0] <= 64 and hist["noise_norm/c2"][0] > 0


def test_dense_span_rank_is_data_rank():
    d = load_digits()
    x, y = (d.data[:300] / 16.0).astype("float32"), (d.target[:300] % 3).astype("int32")
    model = keras.Sequential(
        [
            keras.Input((64,)),
            L.Dense(16, name="fc"),
            L.BatchNormalization(momentum=0.9),
            L.ReLU(),
            L.Dense(3, name="head"),
        ]
    )
    cb = SpanNoise(x)
    _, hist = fit([cb], model=model, x=x, y=y)
    s = np.linalg.svd(x.astype(np.float64), compute_uv=False)
    # Rank at the default threshold (eigenvalues of the Gram = squared singular values).
    assert (
        hist["span_rank/fc"][0] == np.sum(s**2 > 1e-6 * s[0] ** 2) < 64
    )  # pixels that never light up
    want = np_noise(np.asarray(model.get_layer("fc").kernel), x, 1e-6)
    np.testing.assert_allclose(hist["noise_ratio_max/fc"][0], want[1], rtol=1e-5)


def test_randomized_matches_exact_when_rank_fits():
    x, y = digits4()
    x = np.tile(
        x, (1, 1, 1, 4)
    )  # 16 channels: d = 144 > 2 k, so the sketch is used; rank 9 <= k - 10
    inp = keras.Input((8, 8, 16))
    h = L.ReLU()(L.BatchNormalization(momentum=0.9)(L.Conv2D(8, 3, padding="same", name="c1")(inp)))
    model = keras.Model(inp, L.Dense(3)(L.GlobalAveragePooling2D()(h)))
    exact, rand = SpanNoise(x[:8]), SpanNoise(x[:8], method="randomized", sketch_size=20)
    fit([exact, rand], model=model, x=x, y=y)
    assert rand._dim(0) > 2 * rand.sketch_size
    for key in ("noise_ratio_mean", "noise_ratio_max", "noise_norm", "span_rank"):
        assert exact.series[f"{key}/c1"][-1][1] > 0
        np.testing.assert_allclose(
            rand.series[f"{key}/c1"][-1][1], exact.series[f"{key}/c1"][-1][1], rtol=1e-6
        )


def test_every_n_epochs_logs_nan_between_and_series_has_begin_and_end():
    x, y = digits4(64)
    cb = SpanNoise(x[:4], every_n_epochs=2)
    _, hist = fit([cb], epochs=3, x=x, y=y)
    ratio = hist["noise_ratio_mean/c1"]
    assert np.isfinite(ratio[0]) and np.isnan(ratio[1]) and np.isfinite(ratio[2])
    assert [s for s, _ in cb.series["noise_norm/c1"]] == [0, 2, 6]  # begin, after epochs 0 and 2
    # The measurement before the first step is in the first epoch's logs.
    for m in NOISE_METRICS:
        initial = hist[f"{m}_initial/c2"]
        assert initial[0] == cb.series[f"{m}/c2"][0][1] and np.isnan(initial[1:]).all(), m
    # c1 reads the model input: its span is computed once and reused.
    assert cb._fixed == [True, False]


def test_probe_size_takes_the_first_examples():
    x, y = digits4(64)
    small, cut = SpanNoise(x[:1]), SpanNoise((x[i : i + 3] for i in range(0, 12, 3)), probe_size=1)
    _, hist = fit([small, cut], x=x, y=y)
    assert cut.probe_size == 1 and [int(b.shape[0]) for b in cut._batches] == [1]
    assert [int(b.shape[0]) for b in small._batches] == [1]
    for m in NOISE_METRICS:  # two callbacks on one run: same probe, same numbers
        np.testing.assert_array_equal(
            [v for _, v in cut.series[f"{m}/c2"]], [v for _, v in small.series[f"{m}/c2"]]
        )
    assert small.series["span_rank/c2"][0][1] <= 64  # one image: at most 64 patches


def test_plain_sgd_keeps_first_layer_noise_norm():
    x, y = digits4()
    cb = SpanNoise(x[:16], kernels=["c1"], default=False)
    fit([cb], epochs=2, x=x, y=y)
    values = np.array([v for _, v in cb.series["noise_norm/c1"]])
    # Plain SGD never moves w_perp (see test_claims for the tolerance).
    np.testing.assert_allclose(values, values[0], rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            dict(probe=np.zeros((0, 8, 8, 4), "float32")),
            r"`probe` holds no example \(it is empty\)",
        ),
        (
            dict(probe=np.zeros((4, 8, 8, 4)), every_n_epochs=0),
            r"`every_n_epochs` must be an integer >= 1\. Received: every_n_epochs=0",
        ),
        (
            dict(probe=np.zeros((4, 8, 8, 4)), method="svd"),
            r"`method` must be one of .*Received: method='svd'",
        ),
        (
            dict(probe=np.zeros((4, 8, 8, 4)), rel_threshold=1.5),
            r"`rel_threshold` .*Received: rel_threshold=1\.5",
        ),
        (
            dict(probe=np.zeros((4, 8, 8, 4)), probe_size=0),
            r"`probe_size` must be an integer >= 1\. Received: probe_size=0",
        ),
        (
            dict(probe="images.npy"),
            r"`probe` must be an array of inputs.*Received: probe='images\.npy'",
        ),
    ],
)
def test_bad_arguments_raise_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SpanNoise(**kwargs)


def test_wrong_probe_shape_raises_before_training():
    x, y = digits4(32)
    with pytest.raises(
        ValueError,
        match=r"`probe` inputs have shape \(4, 8, 8, 3\); model 'tiny' expects \(None, 8, 8, 4\)",
    ):
        fit([SpanNoise(x[:4, ..., :3])], x=x, y=y)


def test_unknown_and_unsupported_kernels_raise():
    x, y = digits4(32)
    with pytest.raises(
        ValueError,
        match=r"`kernels` names 'conv9', which is neither a layer name nor a variable path",
    ):
        fit([SpanNoise(x[:4], kernels=["conv9"])], x=x, y=y)
    inp = keras.Input((8, 8, 4))
    h = L.BatchNormalization()(L.DepthwiseConv2D(3, name="dw")(inp))
    model = keras.Model(inp, L.Dense(3)(L.GlobalAveragePooling2D()(h)))
    with pytest.raises(
        ValueError, match=r"'dw/kernel', whose weight noise cannot be measured: DepthwiseConv2D"
    ):
        fit([SpanNoise(x[:4], kernels=["dw"])], model=model, x=x, y=y)
    with pytest.raises(ValueError, match=r"SpanNoise has no Dense or Conv kernel to measure"):
        fit([SpanNoise(x[:4])], model=model, x=x, y=y)


class _ConvBNReLU(L.Layer):
    """A user's block: its Conv2D is called inside `call`, not in the model's graph."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = L.Conv2D(6, 3, padding="same", use_bias=False, name="inner")
        self.bn = L.BatchNormalization()

    def call(self, x, training=None):
        return keras.ops.relu(self.bn(self.conv(x), training=training))


def _model_with_a_block():
    inp = keras.Input((8, 8, 4))
    h = L.BatchNormalization()(L.Conv2D(8, 3, padding="same", use_bias=False, name="c1")(inp))
    h = _ConvBNReLU(name="block")(L.ReLU()(h))
    return keras.Model(inp, L.Dense(3, name="head")(L.GlobalAveragePooling2D()(h)))


def test_kernels_inside_a_subclassed_block_are_skipped_by_default_and_refused_by_name(caplog):
    x, y = digits4(32)
    with caplog.at_level(logging.INFO, logger="keras_wrs"):
        model, hist = fit([SpanNoise(x[:8])], model=_model_with_a_block(), x=x, y=y)
    assert "span_rank/c1" in hist and "noise_ratio_mean/c1" in hist
    assert not [k for k in hist if k.endswith("/inner")]
    assert "sits inside a subclassed layer or a nested model" in caplog.text
    want = twin(model, "c1", x[:8])
    assert hist["noise_norm/c1"][0] == pytest.approx(want[NOISE_METRICS.index("noise_norm")])
    with pytest.raises(
        ValueError, match=r"`kernels` names 'block/inner/kernel'.*inside a subclass"
    ):
        fit(
            [SpanNoise(x[:8], kernels=["block/inner/kernel"])],
            model=_model_with_a_block(),
            x=x,
            y=y,
        )


def test_failure_at_run_time_is_logged_once_and_training_goes_on(monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise FloatingPointError("eigh did not converge")

    monkeypatch.setattr(wspan, "noise_stats", broken)
    x, y = digits4(64)
    with caplog.at_level(logging.WARNING, logger="keras_wrs"):
        _, hist = fit([SpanNoise(x[:4])], epochs=3, x=x, y=y)
    assert len(hist["loss"]) == 3
    warnings = [r for r in caplog.records if "span_noise failed" in r.getMessage()]
    assert len(warnings) == 1 and "eigh did not converge" in warnings[0].getMessage()
    assert all(np.isnan(v) for v in hist["noise_norm/c1"])
