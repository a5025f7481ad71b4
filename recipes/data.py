"""Image classification data through TensorFlow Datasets and `tf.data`.

Three sources, one pipeline:

* `digits`: scikit-learn's bundled handwritten digits (1,797 real 8x8 images,
  10 classes), the offline default; a fixed stratified split of 1,437 train
  and 360 test images.
* `synthetic_shapes`: seeded procedurally drawn shapes, 32x32x3, 10 classes
  (`keras_wrs.recipes.shapes`); synthetic, for smoke runs and benchmarks.
* any other name: a TensorFlow Datasets image classification set with
  `train` and `test` splits (`cifar10`, `cifar100`, `mnist`, ...), read with
  `tfds.load`. Nothing is downloaded unless asked (`download=True`), and a
  missing data set fails at once with a message saying how to get it.

Data sets are held in memory as raw arrays (uint8 for images read from TFDS),
which suits CIFAR-scale data; larger sets are refused with a clear message.
The training stream is a pure function of `(seed, position)`: example `i` of
epoch `e` is `index_shuffle(i, (seed, e))` of the training set, augmented
with stateless seeds `(seed, position)`. A run resumed at epoch `k` therefore
sees exactly the batches an uninterrupted run sees there, with no shuffle
buffer to replay.
"""

from __future__ import annotations

import dataclasses
import difflib

import numpy as np
import tensorflow as tf

from keras_wrs.recipes import shapes

__all__ = [
    "BUILTIN_DATASETS",
    "AUGMENTATIONS",
    "DatasetInfo",
    "Splits",
    "DatasetUnavailableError",
    "check_dataset_name",
    "load_splits",
    "train_dataset",
    "eval_dataset",
    "probe_batch",
]

BUILTIN_DATASETS = ("digits", "synthetic_shapes")
AUGMENTATIONS = ("none", "crop", "crop_flip")
_MAX_BYTES = 8 * 2**30


class DatasetUnavailableError(RuntimeError):
    """A TFDS data set is not on disk and could not be downloaded."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a model and an exporter need to know about a data set.

    A raw image `x` becomes the model input `(x * rescale - mean) / std`.
    """

    name: str
    num_classes: int
    class_names: tuple[str, ...]
    input_shape: tuple[int, int, int]
    num_train: int
    num_test: int
    rescale: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    synthetic: bool
    source: str


@dataclasses.dataclass(frozen=True)
class Splits:
    """Raw train and test arrays: images `(n, h, w, c)`, int64 labels `(n,)`."""

    info: DatasetInfo
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def _import_tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError as err:
        raise ImportError("TFDS data sets need tensorflow-datasets: "
                          "`pip install 'keras-wrs[recipes]'`") from err
    return tfds


def check_dataset_name(name):
    """Raise a ValueError listing valid names if `name` is not a data set."""
    if name in BUILTIN_DATASETS:
        return
    tfds = _import_tfds()
    known = tfds.list_builders()
    if name.split(":")[0] in known:
        return
    close = difflib.get_close_matches(name, list(BUILTIN_DATASETS) + known, 3)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise ValueError(
        f"Unknown dataset {name!r}. Built-in offline datasets: "
        f"{', '.join(BUILTIN_DATASETS)}; or any TensorFlow Datasets image "
        f"classification set (cifar10, cifar100, mnist, ...; the full list is "
        f"`tfds.list_builders()`).{hint}")


def _stats(images):
    """Per-channel mean and std of float images `(n, h, w, c)`."""
    axes = tuple(range(images.ndim - 1))
    mean = images.mean(axis=axes, dtype=np.float64)
    std = images.std(axis=axes, dtype=np.float64)
    return tuple(float(m) for m in mean), tuple(float(max(s, 1e-6)) for s in std)


def _from_arrays(name, x_train, y_train, x_test, y_test, rescale, class_names,
                 synthetic, source):
    mean, std = _stats(x_train.astype(np.float32) * rescale)
    info = DatasetInfo(name, len(class_names), tuple(class_names),
                       tuple(x_train.shape[1:]), len(x_train), len(x_test),
                       rescale, mean, std, synthetic, source)
    return Splits(info, x_train, y_train.astype(np.int64), x_test,
                  y_test.astype(np.int64))


def _load_digits():
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as err:
        raise ImportError("The digits data set needs scikit-learn: "
                          "`pip install 'keras-wrs[recipes]'`") from err
    digits = load_digits()
    images = digits.images[..., None].astype(np.uint8)  # integers 0..16
    labels = digits.target.astype(np.int64)
    # A fixed split, independent of the run's seed: every run tests on the
    # same 360 images.
    x_tr, x_te, y_tr, y_te = train_test_split(
        images, labels, test_size=360, stratify=labels, random_state=0)
    return _from_arrays("digits", x_tr, y_tr, x_te, y_te, 1 / 16,
                        [str(i) for i in range(10)], False,
                        "scikit-learn load_digits (UCI optical digits)")


def _load_shapes(num_train, num_test):
    x_tr, y_tr = shapes.make_shapes(num_train, seed=0)
    x_te, y_te = shapes.make_shapes(num_test, seed=1)
    return _from_arrays("synthetic_shapes", x_tr, y_tr, x_te, y_te, 1 / 255,
                        shapes.SHAPE_CLASSES, True,
                        "synthetic: procedurally drawn shapes (keras-wrs)")


def _unavailable(name, data_dir, err):
    where = data_dir or "~/tensorflow_datasets (the TFDS default)"
    return DatasetUnavailableError(
        f"TFDS dataset {name!r} is not available in data_dir {where} "
        f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). "
        f"To get it: pass `--download` (needs a network); or on a machine "
        f"with a network run `tfds build {name} --data_dir DIR`, copy DIR here "
        f"and pass `--data-dir DIR`; data sets that need a manual download "
        f"read their files from DIR/downloads/manual. Offline data sets that "
        f"need nothing: {', '.join(BUILTIN_DATASETS)}.")


def _as_arrays(tfds, dataset, image_size):
    """A whole split as uint8 images and int64 labels, resized if asked."""
    def resize(image, label):
        if image_size:
            image = tf.image.resize(image, (image_size, image_size))
            image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
        return image, label

    batches = tfds.as_numpy(dataset.map(resize).batch(10_000))
    images, labels = zip(*batches)
    return np.concatenate(images), np.concatenate(labels)


def _check_size(name, tfds_info, shape):
    split = tfds_info.splits["train"] if "train" in tfds_info.splits else None
    n = split.num_examples if split is not None else 0
    if n * int(np.prod(shape)) > _MAX_BYTES:
        raise ValueError(f"{name!r} ({n} training images of {shape}) is too "
                         f"large for the in-memory pipeline of the recipes "
                         f"(limit {_MAX_BYTES // 2**30} GiB of uint8 images).")


def _load_tfds(name, data_dir, download, image_size):
    tfds = _import_tfds()
    check_dataset_name(name)
    try:
        (train, test), tfds_info = tfds.load(
            name, split=["train", "test"], as_supervised=True,
            data_dir=data_dir, download=download, with_info=True)
    except Exception as err:  # tfds raises several types for "not there"
        raise _unavailable(name, data_dir, err) from err
    shape = tuple(tfds_info.features["image"].shape)
    if image_size:
        shape = (image_size, image_size, shape[-1])
    elif None in shape:
        raise ValueError(f"Images of {name!r} vary in size {shape}: set "
                         f"`image_size` to resize them.")
    _check_size(name, tfds_info, shape)
    x_tr, y_tr = _as_arrays(tfds, train, image_size)
    x_te, y_te = _as_arrays(tfds, test, image_size)
    label = tfds_info.features["label"]
    return _from_arrays(name, x_tr, y_tr, x_te, y_te, 1 / 255,
                        label.names, False,
                        f"TensorFlow Datasets {tfds_info.full_name}")


def load_splits(name, data_dir=None, download=False, image_size=None,
                synthetic_size=(10_000, 2_000)):
    """Load a data set's train and test splits.

    Args:
        name: `"digits"`, `"synthetic_shapes"` or a TFDS name.
        data_dir: TFDS data directory (TFDS default when None).
        download: let TFDS download and prepare a missing data set.
        image_size: resize TFDS images to this square size (needed for data
            sets whose images vary in size).
        synthetic_size: `(train, test)` sizes of `synthetic_shapes`.

    Returns:
        A `Splits`.

    Raises:
        ValueError: unknown name (the message lists the valid ones).
        DatasetUnavailableError: a TFDS data set that is not on disk.
    """
    if name == "digits":
        return _load_digits()
    if name == "synthetic_shapes":
        return _load_shapes(*synthetic_size)
    return _load_tfds(name, data_dir, download, image_size)


def _augment(image, seed, augment, pad):
    if augment == "none":
        return image
    shape = image.shape
    padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
    image = tf.image.stateless_random_crop(padded, shape, seed)
    if augment == "crop_flip":
        image = tf.image.stateless_random_flip_left_right(image, seed + 1)
    return image


def _preprocess(info):
    """Raw image to model input: `(x * rescale - mean) / std`; one-hot label."""
    mean = tf.constant(info.mean, tf.float32)
    std = tf.constant(info.std, tf.float32)

    def to_float(image):
        return tf.cast(image, tf.float32) * info.rescale

    def normalize(image, label):
        return (image - mean) / std, tf.one_hot(label, info.num_classes)

    return to_float, normalize


def train_dataset(splits, batch_size, seed=0, augment="crop_flip", pad=4,
                  start_epoch=0, epochs=1, steps_per_epoch=None):
    """The training stream for epochs `start_epoch .. epochs - 1`.

    Position `p` of the stream is example `index_shuffle(p mod m, (seed, e))`
    of the training set, `e = p div m`, `m = steps * batch_size`; it is
    augmented with the stateless seed `(seed, p)`, normalized, its label
    one-hot. Batches never span two epochs.

    Args:
        splits: a `Splits`.
        batch_size: global batch size.
        seed: data seed.
        augment: `"none"`, `"crop"` (zero-pad `pad` pixels, random crop back)
            or `"crop_flip"` (plus random horizontal flip).
        pad: pixels of padding before the random crop.
        start_epoch: first epoch of the stream (a resumed run's epoch).
        epochs: one past the last epoch.
        steps_per_epoch: at most this many batches per epoch (smoke runs);
            all full batches when None.

    Returns:
        `(dataset, steps_per_epoch)`; fit with `steps_per_epoch`.
    """
    if augment not in AUGMENTATIONS:
        raise ValueError(f"Unknown augmentation {augment!r}. Valid: "
                         f"{', '.join(AUGMENTATIONS)}")
    n = splits.info.num_train
    steps = n // batch_size
    if steps_per_epoch:
        steps = min(steps, steps_per_epoch)
    if steps < 1:
        raise ValueError(f"batch_size={batch_size} is larger than the "
                         f"{n} training examples of {splits.info.name!r}")
    per_epoch = steps * batch_size
    images = tf.constant(splits.x_train)
    labels = tf.constant(splits.y_train)
    to_float, normalize = _preprocess(splits.info)

    def example(position):
        epoch_seed = tf.stack([tf.constant(seed, tf.int64), position // per_epoch])
        index = tf.random.experimental.index_shuffle(
            position % per_epoch, epoch_seed, n - 1)
        image = to_float(tf.gather(images, index))
        image = _augment(image, tf.stack([tf.constant(seed, tf.int64), position]),
                         augment, pad)
        return normalize(image, tf.gather(labels, index))

    positions = tf.data.Dataset.range(start_epoch * per_epoch, epochs * per_epoch)
    return (positions.map(example, num_parallel_calls=tf.data.AUTOTUNE)
            .batch(batch_size, drop_remainder=True)
            .prefetch(tf.data.AUTOTUNE)), steps


def eval_dataset(splits, batch_size):
    """The test set, normalized, one-hot labels, batched and prefetched."""
    to_float, normalize = _preprocess(splits.info)
    dataset = tf.data.Dataset.from_tensor_slices((splits.x_test, splits.y_test))
    return (dataset.map(lambda x, y: normalize(to_float(x), y),
                        num_parallel_calls=tf.data.AUTOTUNE)
            .batch(batch_size).prefetch(tf.data.AUTOTUNE))


def probe_batch(splits, num_examples):
    """The first `num_examples` training images, normalized, unaugmented.

    A fixed batch for measurements on the training distribution (the span of
    a layer's inputs, for the weight noise ratio).
    """
    to_float, normalize = _preprocess(splits.info)
    images = splits.x_train[:num_examples]
    return normalize(to_float(tf.constant(images)), splits.y_train[:num_examples])[0]
