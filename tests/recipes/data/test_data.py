"""Recipe data: digits, synthetic shapes, the TFDS path on mock data, the stream.

The TFDS tests (`tensorflow_only`) need TensorFlow; the rest run on every backend.
"""

import numpy as np
import pytest

from keras_wrs.recipes import data
from keras_wrs.recipes.data import pipeline, shapes


@pytest.fixture(scope="module")
def cifar():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=48):
        return data.load_splits("cifar10")


@pytest.fixture(scope="module")
def digits():
    return data.load_splits("digits")


def _batches(stream):
    return [(x.copy(), y.copy()) for x, y in (stream[i] for i in range(len(stream)))]


def test_digits_is_real_fixed_split(digits):
    info = digits.info
    assert (info.num_train, info.num_test, info.input_shape) == (1437, 360, (8, 8, 1))
    assert not info.synthetic and "load_digits" in info.source
    assert digits.x_train.dtype == np.uint8 and digits.x_train.max() == 16
    assert info.rescale == 1 / 16
    assert np.bincount(digits.y_test).min() >= 35  # stratified
    np.testing.assert_array_equal(digits.x_test, data.load_splits("digits").x_test)


def test_shapes_are_seeded_balanced_and_named_synthetic():
    x1, y1 = shapes.make_shapes(40, seed=3)
    x2, y2 = shapes.make_shapes(40, seed=3)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(x1, shapes.make_shapes(40, seed=4)[0])
    assert x1.shape == (40, 32, 32, 3) and x1.dtype == np.uint8
    assert np.bincount(y1).tolist() == [4] * 10
    splits = data.load_splits("synthetic_shapes", synthetic_size=(30, 20))
    assert splits.info.synthetic and "synthetic" in splits.info.source
    assert splits.info.class_names == shapes.SHAPE_CLASSES


@pytest.mark.tensorflow_only
def test_tfds_path_on_mock_data(cifar):
    info = cifar.info
    assert info.name == "cifar10" and info.num_classes == 10
    assert info.input_shape == (32, 32, 3) and info.num_train == 48
    assert cifar.x_train.dtype == np.uint8 and cifar.x_train.shape == (48, 32, 32, 3)
    assert len(info.mean) == len(info.std) == 3
    stream, steps = data.train_dataset(cifar, 16, seed=0, epochs=2)
    batches = _batches(stream)
    assert steps == 3 and len(batches) == 6
    x, y = batches[0]
    assert x.shape == (16, 32, 32, 3) and x.dtype == np.float32
    assert y.shape == (16, 10) and np.all(y.sum(axis=1) == 1)


@pytest.mark.tensorflow_only
def test_augmentation_stays_within_normalized_pixel_range(cifar):
    info = cifar.info
    low = (0 - np.array(info.mean)) / np.array(info.std)
    high = (1 - np.array(info.mean)) / np.array(info.std)
    stream, _ = data.train_dataset(cifar, 16, seed=1, augment="crop_flip", pad=4)
    for x, _ in _batches(stream):
        assert np.all(x >= low - 1e-5) and np.all(x <= high + 1e-5)


@pytest.mark.tensorflow_only
def test_no_augmentation_is_plain_normalization(cifar):
    info = cifar.info
    stream, _ = data.train_dataset(cifar, 48, seed=0, augment="none")
    x, y = _batches(stream)[0]
    raw = cifar.x_train.astype(np.float32) / 255
    expected = (raw - np.array(info.mean, "float32")) / np.array(info.std, "float32")
    # Same examples, shuffled: match them up by label and content.
    order = [int(np.argmin(((expected - xi) ** 2).sum(axis=(1, 2, 3)))) for xi in x]
    assert sorted(order) == list(range(48))
    np.testing.assert_allclose(x, expected[order], atol=1e-5)
    np.testing.assert_array_equal(y.argmax(axis=1), cifar.y_train[order])


def test_stream_is_deterministic_per_seed(digits):
    a = _batches(data.train_dataset(digits, 64, seed=5, epochs=2, augment="crop")[0])
    b = _batches(data.train_dataset(digits, 64, seed=5, epochs=2, augment="crop")[0])
    c = _batches(data.train_dataset(digits, 64, seed=6, epochs=2, augment="crop")[0])
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(a[0][0], c[0][0])


def test_epochs_differ_and_resumed_stream_matches(digits):
    full, steps = data.train_dataset(digits, 128, seed=0, epochs=3, steps_per_epoch=4)
    resumed, _ = data.train_dataset(digits, 128, seed=0, start_epoch=2, epochs=3, steps_per_epoch=4)
    full, resumed = _batches(full), _batches(resumed)
    assert steps == 4 and len(full) == 12 and len(resumed) == 4
    assert not np.array_equal(full[0][0], full[4][0])
    for (xa, ya), (xb, yb) in zip(full[8:], resumed, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


@pytest.mark.tensorflow_only
def test_missing_tfds_data_fails_fast_with_instructions(tmp_path):
    with pytest.raises(data.DatasetUnavailableError, match="--download") as info:
        data.load_splits("cifar10", data_dir=str(tmp_path))
    message = str(info.value)
    assert str(tmp_path) in message and "tfds build cifar10" in message
    assert "downloads/manual" in message


@pytest.mark.tensorflow_only
def test_unknown_dataset_lists_valid_names():
    with pytest.raises(
        ValueError, match="digits, fashion_mnist, synthetic_shapes.*Did you mean: cifar10"
    ):
        data.check_dataset_name("cifar")


def test_batch_larger_than_data_is_rejected(digits):
    with pytest.raises(ValueError, match="larger than the 1437 training examples"):
        data.train_dataset(digits, 2048)


def test_unknown_augmentation_is_rejected(digits):
    with pytest.raises(ValueError, match="crop_flip"):
        data.train_dataset(digits, 64, augment="mixup")


def _augment_twin(images, rng, augment, pad):
    """Image by image: zero-pad, cut at the drawn offset, mirror on the coin."""
    n, h, w, _ = images.shape
    offsets = rng.integers(0, 2 * pad + 1, size=(n, 2))
    flips = rng.random(n) < 0.5
    out = []
    for image, (dy, dx), flip in zip(images, offsets, flips, strict=True):
        crop = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))[dy : dy + h, dx : dx + w]
        out.append(crop[:, ::-1] if flip and augment == "crop_flip" else crop)
    return np.stack(out)


def test_normalization_table_equals_the_formula(digits):
    info = digits.info
    for images in (digits.x_train[:50], np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)):
        want = (
            images.astype(np.float32) * np.float32(info.rescale) - np.float32(info.mean)
        ) / np.float32(info.std)
        got = pipeline.normalize(images, info)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(pipeline.normalize(images.astype(np.float32), info), want)


def test_augmentation_equals_its_twin():
    images = np.random.default_rng(0).integers(1, 255, (64, 9, 7, 3), dtype=np.uint8)
    for augment, pad in (("crop", 2), ("crop_flip", 4), ("crop_flip", 1)):
        got = pipeline.augment_batch(images, np.random.default_rng(3), augment, pad)
        want = _augment_twin(images, np.random.default_rng(3), augment, pad)
        np.testing.assert_array_equal(got, want)
        assert got.dtype == np.uint8 and not np.array_equal(got, images)
    assert pipeline.augment_batch(images, None, "none", 4) is images


def test_batch_is_a_function_of_seed_epoch_and_index(digits):
    ahead, _ = data.train_dataset(digits, 64, seed=2, epochs=2, steps_per_epoch=5)
    alone, _ = data.train_dataset(digits, 64, seed=2, epochs=2, steps_per_epoch=5, prefetch=0)
    backwards = [alone[i] for i in reversed(range(len(alone)))][::-1]
    for (xa, ya), (xb, yb) in zip(_batches(ahead), backwards, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    x, y = ahead[7]  # epoch 1, batch 2, by hand
    index = pipeline.epoch_order(2, 1, digits.info.num_train)[128:192]
    raw = pipeline.augment_batch(digits.x_train[index], pipeline._rng(2, 1, 1, 2), "crop_flip", 4)
    np.testing.assert_array_equal(x, pipeline.normalize(raw, digits.info))
    np.testing.assert_array_equal(y.argmax(1), digits.y_train[index])
    with pytest.raises(IndexError):
        ahead[len(ahead)]


def test_each_epoch_visits_distinct_examples(digits):
    order = pipeline.epoch_order(0, 3, digits.info.num_train)
    assert sorted(order) == list(range(digits.info.num_train))
    assert not np.array_equal(order, pipeline.epoch_order(0, 4, digits.info.num_train))
    stream, steps = data.train_dataset(digits, 100, seed=0, augment="none", start_epoch=3, epochs=4)
    seen = np.concatenate([x for x, _ in _batches(stream)])
    assert steps == 14 and len(seen) == 1400
    np.testing.assert_array_equal(seen, data.probe_batch(digits, 1437)[order[:1400]])


def test_eval_stream_keeps_order_and_the_short_last_batch(digits):
    stream = data.eval_dataset(digits, 100)
    batches = _batches(stream)
    assert len(batches) == 4 and len(batches[-1][0]) == 60
    x = np.concatenate([b[0] for b in batches])
    raw = digits.x_test.astype(np.float32) / 16
    want = (raw - np.float32(digits.info.mean)) / np.float32(digits.info.std)
    np.testing.assert_allclose(x, want, atol=1e-6)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]).argmax(1), digits.y_test)


def test_negative_seed_is_rejected(digits):
    with pytest.raises(ValueError, match="seed=-1"):
        data.train_dataset(digits, 64, seed=-1)


def test_tfds_without_tensorflow_names_the_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "tensorflow" else real(name, *a),
    )
    with pytest.raises(ImportError, match=r"need TensorFlow.*keras-wrs\[cpu,recipes\]"):
        data.load_splits("cifar10")
