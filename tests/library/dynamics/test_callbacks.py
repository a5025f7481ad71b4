"""WeightDynamics in model.fit: every metric against a NumPy twin from recorded weights.

Also the three callbacks together under mixed precision and MirroredStrategy.
"""

import csv
import logging

import keras
import numpy as np
import pytest
from support.backends import BACKEND, SGDGradients, requires_tf
from support.nets import conv_bn, data, loss

import keras_wrs
from keras_wrs.dynamics import SpanNoise, WeightDynamics
from keras_wrs.dynamics import weight_dynamics as dynamics
from keras_wrs.dynamics.sharpness import Sharpness

L = keras.layers
AXES = (0, 1, 2)


class Recorder(keras.callbacks.Callback):
    """Every model variable before and after every step, as float64 arrays."""

    def on_train_begin(self, logs=None):
        self.before, self.after = [], []

    def on_train_batch_begin(self, batch, logs=None):
        self.before.append({v.path: np.array(v, np.float64) for v in self.model.variables})

    def on_train_batch_end(self, batch, logs=None):
        self.after.append({v.path: np.array(v, np.float64) for v in self.model.variables})


def np_norms(w):
    return np.sqrt(np.sum(w**2, axis=AXES))


def np_angle(a, b):
    return np.arccos(np.clip(np.sum(a * b, axis=AXES) / (np_norms(a) * np_norms(b)), -1, 1))


def np_parts(a, b):
    unit = a / np_norms(a)
    radial = np.sum((b - a) * unit, axis=AXES)
    return radial, np.sqrt(np.sum((b - a - radial * unit) ** 2, axis=AXES))


def np_grad_norms(twin, state, x, y, paths):
    """Twin of grad_norm: Keras's own SGD step at the recorded weights."""
    return [np.linalg.norm(g) for g in twin(state, x, y, paths)]


def make(kind):
    model = conv_bn()
    if kind == "wd":
        opt = keras.optimizers.SGD(0.1, momentum=0.9, weight_decay=0.01)
    else:
        opt = keras_wrs.optimizers.SGD(0.1, momentum=0.9, rescale=model)
    model.compile(opt, loss(), jit_compile=kind == "wrs_jit")
    return model


def test_rotation_after_a_resume_measures_from_the_saved_start(tmp_path):
    x, y = data(48)
    path = tmp_path / "initial.npz"
    model = make("wrs")
    start = {k: np.array(model.get_layer(k).kernel, np.float64) for k in ("c1", "c2")}
    model.fit(
        x,
        y,
        batch_size=16,
        epochs=1,
        callbacks=[WeightDynamics(initial=path)],
        verbose=0,
        shuffle=False,
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["initial.npz"]  # no temporary file left
    with np.load(path) as saved:
        assert sorted(saved.files) == ["c1", "c2"]
        for key in ("c1", "c2"):
            np.testing.assert_array_equal(saved[key], start[key])
    after_one = {k: np.array(model.get_layer(k).kernel, np.float64) for k in ("c1", "c2")}
    # A resumed run builds a new callback; with the same path it reads the start back.
    hist = model.fit(
        x,
        y,
        batch_size=16,
        epochs=2,
        initial_epoch=1,
        verbose=0,
        shuffle=False,
        callbacks=[WeightDynamics(initial=path)],
    ).history
    for key in ("c1", "c2"):
        end = np.array(model.get_layer(key).kernel, np.float64)
        want = np_angle(start[key], end).mean()
        np.testing.assert_allclose(hist[f"rotation/{key}"][-1], want, atol=1e-4)
        # what a callback without `initial` reports: the angle from the restored weights
        assert abs(want - np_angle(after_one[key], end).mean()) > 1e-2
    by_dict = WeightDynamics(initial={k: v.astype("float32") for k, v in start.items()})
    hist = model.fit(
        x, y, batch_size=16, epochs=1, verbose=0, shuffle=False, callbacks=[by_dict]
    ).history
    end = np.array(model.get_layer("c1").kernel, np.float64)
    np.testing.assert_allclose(
        hist["rotation/c1"][-1], np_angle(start["c1"], end).mean(), atol=1e-4
    )


def test_initial_kernels_of_another_model_are_refused(tmp_path):
    x, y = data(16)
    np.savez(tmp_path / "other.npz", conv=np.zeros((3, 3, 4, 8), "float32"))
    with pytest.raises(
        ValueError,
        match=r"`initial` \('.*other.npz'\) must hold the watched "
        r"kernels \['c1', 'c2'\]; it holds \['conv'\]",
    ):
        make("wrs").fit(
            x, y, epochs=1, verbose=0, callbacks=[WeightDynamics(initial=tmp_path / "other.npz")]
        )
    bad = {"c1": np.zeros((3, 3, 4, 8), "float32"), "c2": np.zeros((1, 1, 8, 8), "float32")}
    with pytest.raises(
        ValueError,
        match=r"kernel 'c2' with shape \(1, 1, 8, 8\), but the "
        r"model's has \(3, 3, 8, 8\)",
    ):
        make("wrs").fit(x, y, epochs=1, verbose=0, callbacks=[WeightDynamics(initial=bad)])
    with pytest.raises(TypeError, match=r"`initial` must be None, a dict .* initial=3"):
        WeightDynamics(initial=3)


@pytest.mark.parametrize("damage", ["truncated", "empty", "text"])
def test_a_damaged_initial_file_is_a_clear_error(tmp_path, damage):
    x, y = data(16)
    path = tmp_path / "initial.npz"
    make("wrs").fit(x, y, epochs=1, verbose=0, callbacks=[WeightDynamics(initial=path)])
    content = path.read_bytes()
    path.write_bytes(
        {"truncated": content[: len(content) // 2], "empty": b"", "text": b"not an npz"}[damage]
    )
    with pytest.raises(
        ValueError,
        match=r"`initial`='.*initial.npz' cannot be read as an .npz "
        r"file .*Restore the file the run wrote, or pass a new path",
    ):
        make("wrs").fit(x, y, epochs=1, verbose=0, callbacks=[WeightDynamics(initial=path)])


@pytest.mark.parametrize(
    "kind",
    [
        "wd",
        "wrs",
        pytest.param(
            "wrs_jit",
            marks=pytest.mark.skipif(
                BACKEND == "torch",
                reason="jit_compile on PyTorch is torch.compile, minutes per model on CPU",
            ),
        ),
    ],
)
def test_every_metric_matches_numpy_twin(kind):
    x, y = data(48)
    model = make(kind)
    rec = Recorder()
    probe = (x[:16], y[:16])
    dyn = WeightDynamics(probe=probe, schedule=2)
    hist = model.fit(
        x, y, batch_size=16, epochs=2, callbacks=[rec, dyn], verbose=0, shuffle=False
    ).history
    assert [s.path for s in dyn.selections] == ["c1/kernel", "c2/kernel"]  # the head is not watched
    init = rec.before[0]
    twin = SGDGradients(model, loss())
    for key, path in (("c1", "c1/kernel"), ("c2", "c2/kernel")):
        steps = [s for s, _ in dyn.series[f"angular_update/{key}"]]
        assert steps == [0, 2, 4]
        for step, (_, got) in zip(steps, dyn.series[f"angular_update/{key}"], strict=True):
            a, b = rec.before[step][path], rec.after[step][path]
            # float32 arccos of a cosine near 1: ~1e-4 rad absolute; the angles are ~1e-2.
            np.testing.assert_allclose(got, np_angle(a, b).mean(), atol=1e-4)
            radial, tangential = np_parts(a, b)
            np.testing.assert_allclose(
                dict(dyn.series[f"radial/{key}"])[step], radial.mean(), rtol=1e-3, atol=1e-6
            )
            np.testing.assert_allclose(
                dict(dyn.series[f"tangential/{key}"])[step], tangential.mean(), rtol=1e-3
            )
            want_g = np_grad_norms(twin, rec.before[step], *probe, [path])[0]
            np.testing.assert_allclose(
                dict(dyn.series[f"grad_norm/{key}"])[step], want_g, rtol=1e-4
            )
        for epoch, last in ((0, 2), (1, 5)):  # 3 steps per epoch
            w = rec.after[last][path]
            n = np_norms(w)
            np.testing.assert_allclose(
                [hist[f"norm_{s}/{key}"][epoch] for s in ("mean", "min", "max")],
                [n.mean(), n.min(), n.max()],
                rtol=1e-6,
            )
            np.testing.assert_allclose(
                hist[f"eff_lr/{key}"][epoch], np.mean(0.1 / n**2), rtol=1e-5
            )  # SGD: p = 2
            np.testing.assert_allclose(
                hist[f"rotation/{key}"][epoch], np_angle(init[path], w).mean(), atol=1e-4
            )
        per_epoch = [
            [v for s, v in dyn.series[f"angular_update/{key}"] if s // 3 == e] for e in (0, 1)
        ]
        np.testing.assert_allclose(
            hist[f"angular_update/{key}"], [np.mean(p) for p in per_epoch], rtol=1e-6
        )
    if kind != "wd":  # WRS keeps every filter at norm 1
        np.testing.assert_allclose(hist["norm_min/c1"] + hist["norm_max/c2"], 1.0, rtol=1e-6)


@requires_tf
def test_logs_reach_history_csv_and_tensorboard(tmp_path):
    x, y = data(32)
    model = make("wrs")
    dyn = WeightDynamics(schedule="log", log_dir=str(tmp_path / "steps"))
    callbacks = [
        dyn,
        keras.callbacks.CSVLogger(str(tmp_path / "log.csv")),
        keras.callbacks.TensorBoard(str(tmp_path / "tb"), write_graph=False, profile_batch=0),
    ]
    hist = model.fit(x, y, batch_size=2, epochs=2, callbacks=callbacks, verbose=0).history
    with open(tmp_path / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    np.testing.assert_allclose(
        [float(r["angular_update/c2"]) for r in rows], hist["angular_update/c2"], rtol=1e-6
    )
    # Log-spaced measured steps over 32 steps.
    assert [s for s, _ in dyn.series["angular_update/c1"]] == [*range(10), 10, 13, 16, 20, 25]
    tags = _tags(tmp_path / "tb" / "train")
    assert {"epoch_norm_mean/c1", "epoch_eff_lr/c2", "epoch_angular_update/c1"} <= tags
    step_tags = _tags(tmp_path / "steps", with_steps=True)
    assert sorted(s for t, s in step_tags if t == "tangential/c1") == [
        *range(10),
        10,
        13,
        16,
        20,
        25,
    ]


def _tags(directory, with_steps=False):
    import tensorflow as tf

    out = set()
    for path in tf.io.gfile.glob(str(directory / "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                out.add((value.tag, event.step) if with_steps else value.tag)
    return out


def test_mixed_precision_loss_scale_optimizer():
    keras.config.set_dtype_policy("mixed_float16")
    x, y = data(32)
    model = make("wrs")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    dyn = WeightDynamics(probe=(x[:8], y[:8]))
    others = [SpanNoise(x[:8]), Sharpness((x[:8], y[:8]), max_iterations=3)]
    hist = model.fit(x, y, batch_size=16, epochs=1, callbacks=[dyn, *others], verbose=0).history
    assert [s.path for s in dyn.selections] == ["c1/kernel", "c2/kernel"]
    assert hist["span_rank/c1"] == [36.0] and np.isfinite(hist["sharpness"][0])
    np.testing.assert_allclose(hist["norm_mean/c1"], 1.0, rtol=1e-6)
    np.testing.assert_allclose(hist["eff_lr/c2"], 0.1, rtol=1e-6)  # inner optimizer's lr, p = 2
    assert all(
        np.isfinite(hist[k][0]) and hist[k][0] > 0 for k in ("angular_update/c1", "grad_norm/c2")
    )


@requires_tf
def test_mirrored_strategy_matches_twin(mirrored_strategy):
    # The session's strategy: a second MirroredStrategy in one process aborts the
    # collectives of whichever test uses the other one next (tests/conftest.py).
    x, y = data(32)
    with mirrored_strategy.scope():
        model = conv_bn(synchronized=True)
        model.compile(keras_wrs.optimizers.SGD(0.1, momentum=0.9, rescale=model), loss())
    rec, dyn = Recorder(), WeightDynamics(probe=(x[:8], y[:8]))
    sharp = Sharpness((x[:8], y[:8]), max_iterations=3)
    callbacks = [rec, dyn, SpanNoise(x[:8]), sharp]
    hist = model.fit(
        x, y, batch_size=16, epochs=1, callbacks=callbacks, verbose=0, shuffle=False
    ).history
    assert hist["span_rank/c2"] == [72.0] and np.isfinite(hist["sharpness"][0])
    for step, got in dyn.series["angular_update/c2"]:
        want = np_angle(rec.before[step]["c2/kernel"], rec.after[step]["c2/kernel"]).mean()
        np.testing.assert_allclose(got, want, atol=1e-4)
    # grad_norm is the same as without a strategy (Keras's 1/replicas loss scaling undone).
    want = np_grad_norms(SGDGradients(model, loss()), rec.before[1], x[:8], y[:8], ["c1/kernel"])[0]
    np.testing.assert_allclose(dict(dyn.series["grad_norm/c1"])[1], want, rtol=1e-4)
    assert np.isfinite(hist["rotation/c1"][0])


def test_adam_uses_power_one_and_named_kernels_are_added():
    x, y = data(16)
    model = conv_bn()
    model.compile(keras.optimizers.Adam(1e-3), loss())
    dyn = WeightDynamics(kernels=["head", "c1/kernel"])
    hist = model.fit(x, y, batch_size=16, epochs=1, callbacks=[dyn], verbose=0).history
    assert [s.path for s in dyn.selections] == ["c1/kernel", "c2/kernel", "head/kernel"]
    w = np.array(model.get_layer("head").kernel, np.float64)
    np.testing.assert_allclose(
        hist["eff_lr/head"], np.mean(1e-3 / np.linalg.norm(w, axis=0)), rtol=1e-5
    )


def test_regex_selection_gets_its_layer_back():
    x, y = data(16)
    model = conv_bn()
    model.compile(keras_wrs.optimizers.SGD(0.1, rescale=r"c2/kernel"), loss())
    dyn = WeightDynamics()
    hist = model.fit(x, y, batch_size=16, epochs=1, callbacks=[dyn], verbose=0).history
    assert dyn.keys == ["c2"] and "norm_mean/c2" in hist and "norm_mean/c1" not in hist


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            dict(schedule=0),
            r"`schedule` must be an integer >= 1 \(every n steps\), \"log\" or a callable .*Received: schedule=0",
        ),
        (dict(schedule=-3), r"Received: schedule=-3"),
        (dict(schedule=True), r"Received: schedule=True"),
        (dict(schedule="daily"), r"Received: schedule='daily'"),
        (
            dict(granularity="channel"),
            r"`granularity` must be one of .*Received: granularity='channel'",
        ),
        (dict(probe=(np.zeros((0, 8, 8, 4)), np.zeros(0))), r"`probe` holds no example"),
        (dict(probe=np.zeros((4, 8, 8, 4))), r"`probe` must hold targets"),
    ],
)
def test_bad_arguments_raise_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        WeightDynamics(**kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            dict(kernels=["conv7"]),
            r"`kernels` names 'conv7', which is neither a layer name nor a variable path of model 'tiny'\. Layers with kernels: c1, c2, head",
        ),
        (
            dict(kernels=["bn1"]),
            r"`kernels` names layer 'bn1', a BatchNormalization, which has no Dense or convolution kernel",
        ),
        (
            dict(lr_power=-1),
            r"`lr_power` must be \"auto\" or a number >= 0 .*Received: lr_power=-1",
        ),
        (
            dict(probe=(np.zeros((4, 8, 8, 3)), np.zeros(4))),
            r"`probe` inputs have shape \(4, 8, 8, 3\); model 'tiny' expects \(None, 8, 8, 4\)",
        ),
        (dict(default=False), r"Nothing to watch: `default=False` and `kernels` is empty"),
    ],
)
def test_bad_configuration_raises_before_training(kwargs, match):
    x, y = data(16)
    model = make("wd")
    with pytest.raises(ValueError, match=match):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[WeightDynamics(**kwargs)])
    assert int(model.optimizer.iterations) == 0


def test_model_without_scale_invariant_kernels_says_what_to_do():
    model = keras.Sequential(
        [keras.Input((4,)), L.Dense(8, activation="relu", name="fc"), L.Dense(1, name="out")]
    )
    model.compile(keras.optimizers.SGD(0.1), "mse")
    x, y = np.ones((8, 4), "float32"), np.ones((8, 1), "float32")
    with pytest.raises(
        ValueError, match=r"no scale-invariant kernel.*name them: `kernels=\[layer name"
    ):
        model.fit(x, y, verbose=0, callbacks=[WeightDynamics()])
    hist = model.fit(
        x, y, verbose=0, callbacks=[WeightDynamics(kernels=["fc"])]
    ).history  # named: fine
    assert "norm_mean/fc" in hist


def test_failure_is_logged_once_and_other_metrics_go_on(monkeypatch, caplog):
    def broken(*args):
        raise RuntimeError("device lost")

    monkeypatch.setattr(dynamics, "update_parts", broken)
    x, y = data(32)
    model = make("wrs")
    with caplog.at_level(logging.WARNING, logger="keras_wrs"):
        hist = model.fit(
            x, y, batch_size=8, epochs=2, verbose=0, callbacks=[WeightDynamics()]
        ).history
    assert len(hist["loss"]) == 2 and int(model.optimizer.iterations) == 8
    failures = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert (
        len(failures) == 1
        and "angular_update failed at step 0" in failures[0]
        and "device lost" in failures[0]
    )
    assert all(np.isnan(hist["angular_update/c1"])) and all(np.isfinite(hist["norm_mean/c1"]))
