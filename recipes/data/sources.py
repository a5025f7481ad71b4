"""Image classification data sets for the recipes, held in memory as arrays.

Three sources, one pipeline:

* `digits`: scikit-learn's bundled handwritten digits (1,797 real 8x8 images,
  10 classes), the offline default; a fixed stratified split of 1,437 train
  and 360 test images.
* `fashion_mnist`: Fashion-MNIST (60,000 train / 10,000 test 28x28 grayscale
  images, 10 classes) from its IDX files, checked
  (`keras_wrs.recipes.data.fashion_mnist`), or from TFDS.
* `synthetic_shapes`: seeded procedurally drawn shapes, 32x32x3, 10 classes
  (`keras_wrs.recipes.data.shapes`); synthetic, for smoke runs and benchmarks.
* any other name: a TensorFlow Datasets image classification set with
  `train` and `test` splits (`cifar10`, `cifar100`, `mnist`, ...), read with
  `tfds.load`. Nothing is downloaded unless asked (`download=True`), and a
  missing data set fails at once with a message saying how to get it.

Data sets are held in memory as raw arrays (uint8 for images read from TFDS),
which suits CIFAR-scale data; larger sets are refused with a clear message.
The input pipeline over them (`train_dataset`, `eval_dataset`,
`probe_batch`) is `keras_wrs.recipes.data.pipeline`: NumPy batches that are a
pure function of `(seed, epoch, batch)`, on every Keras backend. TFDS sets
need TensorFlow; the other sources do not.
"""

from __future__ import annotations

import dataclasses
import difflib
import os

import numpy as np

from keras_wrs.recipes.config.schema import BUILTIN_DATASETS, MAX_IN_MEMORY_BYTES
from keras_wrs.recipes.data import fashion_mnist as fm
from keras_wrs.recipes.data.shapes import SHAPE_CLASSES, make_shapes

__all__ = [
    "DatasetInfo",
    "Splits",
    "DatasetUnavailableError",
    "check_dataset_name",
    "load_splits",
    "splits_for",
    "register_dataset",
    "splits_from_arrays",
    "subset_splits",
]


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
    """Raw train and test arrays: images `(n, h, w, c)`, int64 labels `(n,)`.

    `x_val`/`y_val` hold a validation split taken out of the training set
    (`subset_splits(validation_examples=...)`), else None.
    """

    info: DatasetInfo
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None


def _import_tfds():
    import importlib.util

    if importlib.util.find_spec("tensorflow") is None:
        raise ImportError(
            "TensorFlow Datasets sets need TensorFlow, which is not "
            "installed: `pip install 'keras-wrs[cpu,recipes]'` (or "
            "[gpu,recipes]). Offline sets that need no TensorFlow: "
            f"{', '.join(BUILTIN_DATASETS)}."
        )
    try:
        import tensorflow_datasets as tfds
    except ImportError as err:
        raise ImportError(
            "TFDS data sets need tensorflow-datasets: `pip install 'keras-wrs[recipes]'`"
        ) from err
    return tfds


_USER_DATASETS = {}


def register_dataset(name, loader):
    """Register your own data set for the recipes, from Python.

    Args:
        name: the name configs use (`Config(dataset=name)`).
        loader: a callable with no arguments returning a `Splits` (see
            `splits_from_arrays`) or a tuple `(x_train, y_train, x_test,
            y_test)` of uint8 images `(n, h, w, c)` in 0..255 and integer
            labels `0..k-1`.

    Example:
        >>> register_dataset("mine", lambda: (x_tr, y_tr, x_te, y_te))
        >>> train(Config(dataset="mine", model="resnet8"), "runs/mine")
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"A data set name is a non-empty string. Received: {name!r}")
    if not callable(loader):
        raise ValueError(f"`loader` must be callable. Received: {loader!r}")
    _USER_DATASETS[name] = loader


def splits_from_arrays(name, x_train, y_train, x_test, y_test, rescale=1 / 255, class_names=None):
    """A `Splits` from arrays, checked; normalization statistics from `x_train`."""
    arrays = [np.asarray(a) for a in (x_train, y_train, x_test, y_test)]
    x_tr, y_tr, x_te, y_te = arrays
    if x_tr.ndim != 4 or x_te.shape[1:] != x_tr.shape[1:]:
        raise ValueError(
            f"Data set {name!r}: images must be (n, h, w, c) with "
            f"equal train and test shapes. Received "
            f"{x_tr.shape} and {x_te.shape}."
        )
    if len(y_tr) != len(x_tr) or len(y_te) != len(x_te):
        raise ValueError(
            f"Data set {name!r}: {len(x_tr)}/{len(x_te)} images but {len(y_tr)}/{len(y_te)} labels."
        )
    classes = int(max(y_tr.max(), y_te.max())) + 1
    if min(y_tr.min(), y_te.min()) < 0:
        raise ValueError(f"Data set {name!r}: labels must be 0..k-1.")
    names = tuple(class_names) if class_names else tuple(str(i) for i in range(classes))
    return _from_arrays(
        name, x_tr, y_tr, x_te, y_te, rescale, names, False, f"registered data set {name!r}"
    )


def _load_user(name):
    result = _USER_DATASETS[name]()
    if isinstance(result, Splits):
        return result
    return splits_from_arrays(name, *result)


def check_dataset_name(name):
    """Raise a ValueError listing valid names if `name` is not a data set."""
    if name in BUILTIN_DATASETS or name in _USER_DATASETS:
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
        f"`tfds.list_builders()`).{hint}"
    )


def _stats(images):
    """Per-channel mean and std of float images `(n, h, w, c)`."""
    axes = tuple(range(images.ndim - 1))
    mean = images.mean(axis=axes, dtype=np.float64)
    std = images.std(axis=axes, dtype=np.float64)
    return tuple(float(m) for m in mean), tuple(float(max(s, 1e-6)) for s in std)


def _from_arrays(
    name,
    x_train,
    y_train,
    x_test,
    y_test,
    rescale,
    class_names,
    synthetic,
    source,
    x_val=None,
    y_val=None,
):
    mean, std = _stats(x_train.astype(np.float32) * rescale)
    info = DatasetInfo(
        name,
        len(class_names),
        tuple(class_names),
        tuple(x_train.shape[1:]),
        len(x_train),
        len(x_test),
        rescale,
        mean,
        std,
        synthetic,
        source,
    )
    return Splits(
        info,
        x_train,
        y_train.astype(np.int64),
        x_test,
        y_test.astype(np.int64),
        x_val,
        None if y_val is None else y_val.astype(np.int64),
    )


def _load_digits():
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as err:
        raise ImportError(
            "The digits data set needs scikit-learn: `pip install 'keras-wrs[recipes]'`"
        ) from err
    digits = load_digits()
    images = digits.images[..., None].astype(np.uint8)  # integers 0..16
    labels = digits.target.astype(np.int64)
    # A fixed split, independent of the run's seed: every run tests on the
    # same 360 images.
    x_tr, x_te, y_tr, y_te = train_test_split(
        images, labels, test_size=360, stratify=labels, random_state=0
    )
    return _from_arrays(
        "digits",
        x_tr,
        y_tr,
        x_te,
        y_te,
        1 / 16,
        [str(i) for i in range(10)],
        False,
        "scikit-learn load_digits (UCI optical digits)",
    )


def _load_shapes(num_train, num_test):
    x_tr, y_tr = make_shapes(num_train, seed=0)
    x_te, y_te = make_shapes(num_test, seed=1)
    return _from_arrays(
        "synthetic_shapes",
        x_tr,
        y_tr,
        x_te,
        y_te,
        1 / 255,
        SHAPE_CLASSES,
        True,
        "synthetic: procedurally drawn shapes (keras-wrs)",
    )


def _unavailable(name, data_dir, err):
    where = data_dir or "~/tensorflow_datasets (the TFDS default)"
    return DatasetUnavailableError(
        f"TFDS dataset {name!r} is not available in data_dir {where} "
        f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). "
        f"To get it: pass `--download` (needs a network); or on a machine "
        f"with a network run `tfds build {name} --data_dir DIR`, copy DIR here "
        f"and pass `--data-dir DIR`; data sets that need a manual download "
        f"read their files from DIR/downloads/manual. Offline data sets that "
        f"need nothing: {', '.join(BUILTIN_DATASETS)}."
    )


def _as_arrays(tfds, dataset, image_size):
    """A whole split as uint8 images and int64 labels, resized if asked."""
    import tensorflow as tf

    def resize(image, label):
        if image_size:
            image = tf.image.resize(image, (image_size, image_size))
            image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
        return image, label

    batches = tfds.as_numpy(dataset.map(resize).batch(10_000))
    images, labels = zip(*batches, strict=True)
    return np.concatenate(images), np.concatenate(labels)


def _check_size(name, tfds_info, shape):
    split = tfds_info.splits["train"] if "train" in tfds_info.splits else None
    n = split.num_examples if split is not None else 0
    if n * int(np.prod(shape)) > MAX_IN_MEMORY_BYTES:
        raise ValueError(
            f"{name!r} ({n} training images of {shape}) is too "
            f"large for the in-memory pipeline of the recipes "
            f"(limit {MAX_IN_MEMORY_BYTES // 2**30} GiB of uint8 images)."
        )


def _load_tfds(name, data_dir, download, image_size):
    tfds = _import_tfds()
    check_dataset_name(name)
    try:
        (train, test), tfds_info = tfds.load(
            name,
            split=["train", "test"],
            as_supervised=True,
            data_dir=data_dir,
            download=download,
            with_info=True,
        )
    except Exception as err:  # tfds raises several types for "not there"
        raise _unavailable(name, data_dir, err) from err
    shape = tuple(tfds_info.features["image"].shape)
    if image_size:
        shape = (image_size, image_size, shape[-1])
    elif None in shape:
        raise ValueError(
            f"Images of {name!r} vary in size {shape}: set `image_size` to resize them."
        )
    _check_size(name, tfds_info, shape)
    x_tr, y_tr = _as_arrays(tfds, train, image_size)
    x_te, y_te = _as_arrays(tfds, test, image_size)
    label = tfds_info.features["label"]
    return _from_arrays(
        name,
        x_tr,
        y_tr,
        x_te,
        y_te,
        1 / 255,
        label.names,
        False,
        f"TensorFlow Datasets {tfds_info.full_name}",
    )


def _load_fashion_mnist(data_dir, download, image_size):
    """Fashion-MNIST from IDX files (see `fashion_mnist`), else TFDS."""
    directory, origin = fm.find_idx_dir(data_dir)
    if directory is None and origin == fm.ENV_VAR:  # a place the user named: no fallback
        raise DatasetUnavailableError(
            f"${fm.ENV_VAR}={os.environ[fm.ENV_VAR]!r} names a directory that holds none "
            f"of the four Fashion-MNIST IDX files. Put them there, or unset "
            f"{fm.ENV_VAR}. {fm.HOW_TO_GET}"
        )
    if directory is None:
        where = (
            f"--data-dir {data_dir!r} (neither its IDX files nor a TensorFlow Datasets copy)"
            if data_dir
            else f"{fm.DEBIAN_DIR} or TensorFlow Datasets"
        )
        try:
            return _load_tfds("fashion_mnist", data_dir, download, image_size)
        except (DatasetUnavailableError, ImportError) as err:
            raise DatasetUnavailableError(
                f"Fashion-MNIST was not found in {where} ({err}). {fm.HOW_TO_GET}"
            ) from err
    x_tr, y_tr, x_te, y_te = fm.load_idx_splits(directory)
    return _from_arrays(
        "fashion_mnist",
        x_tr,
        y_tr,
        x_te,
        y_te,
        1 / 255,
        fm.CLASS_NAMES,
        False,
        f"Fashion-MNIST IDX files in {directory} ({origin})",
    )


def _per_class_count(name, value, info, available):
    """`value / num_classes`, checked: a multiple of the classes, within `available`."""
    if value % info.num_classes or value > available:
        raise ValueError(
            f"`{name}` must be a multiple of {info.num_classes} (the classes of "
            f"{info.name!r}) and at most {available}. Received: {name}={value}"
        )
    return value // info.num_classes


def _balanced(labels, num_classes, per_class, last=False):
    """Sorted indices of the first (or last) `per_class` images of each class."""
    picks = []
    for c in range(num_classes):
        index = np.flatnonzero(labels == c)
        if len(index) < per_class:
            raise ValueError(
                f"Class {c} has {len(index)} training images, fewer "
                f"than the {per_class} a class the split needs."
            )
        picks.append(index[len(index) - per_class :] if last else index[:per_class])
    return np.sort(np.concatenate(picks))


def subset_splits(splits, train_examples=None, channels=None, validation_examples=None):
    """A validation split, a class-balanced training subset, grayscale to RGB.

    The validation split is the last `validation_examples / num_classes`
    training images of each class in file order, taken out of the training
    set; the training subset is the first `train_examples / num_classes` of
    each class of what remains. Both are fixed, balanced and independent of
    the run's seed. Replicating a grayscale image to 3 channels (as when
    grayscale data feeds an RGB network) makes a first convolution's
    k x k x 3 patches span only k*k of their 3*k*k dimensions. Normalization
    statistics are recomputed on the training images that remain.

    Args:
        splits: a `Splits`.
        train_examples: training images to keep (a multiple of the class
            count), or None for all.
        channels: replicate single-channel images to this many channels.
        validation_examples: training images to hold out as the validation
            split (a multiple of the class count), or None for none.

    Returns:
        A `Splits` (the same object when all three are None).
    """
    if train_examples is None and channels is None and validation_examples is None:
        return splits
    info = splits.info
    x_tr, y_tr, x_te = splits.x_train, splits.y_train, splits.x_test
    x_val, y_val = splits.x_val, splits.y_val
    if validation_examples is not None:
        # At least one training image of each class must remain.
        per_class = _per_class_count(
            "validation_examples", validation_examples, info, info.num_train - info.num_classes
        )
        held = _balanced(y_tr, info.num_classes, per_class, last=True)
        rest = np.setdiff1d(np.arange(len(y_tr)), held)
        x_val, y_val, x_tr, y_tr = x_tr[held], y_tr[held], x_tr[rest], y_tr[rest]
    if train_examples is not None:
        per_class = _per_class_count("train_examples", train_examples, info, len(y_tr))
        keep = _balanced(y_tr, info.num_classes, per_class)
        x_tr, y_tr = x_tr[keep], y_tr[keep]
    if channels is not None:
        if x_tr.shape[-1] != 1:
            raise ValueError(
                f"`channels` replicates single-channel images; "
                f"{info.name!r} has {x_tr.shape[-1]} channels. "
                f"Received: channels={channels}"
            )
        x_tr, x_te = np.repeat(x_tr, channels, -1), np.repeat(x_te, channels, -1)
        x_val = None if x_val is None else np.repeat(x_val, channels, -1)
    note = f"; {len(y_val)} balanced validation images held out" if validation_examples else ""
    note += f"; {len(y_tr)} balanced training images" if train_examples else ""
    note += f"; grayscale replicated to {channels} channels" if channels else ""
    return _from_arrays(
        info.name,
        x_tr,
        y_tr,
        x_te,
        splits.y_test,
        info.rescale,
        info.class_names,
        info.synthetic,
        info.source + note,
        x_val,
        y_val,
    )


def load_splits(
    name, data_dir=None, download=False, image_size=None, synthetic_size=(10_000, 2_000)
):
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
    if name in _USER_DATASETS:
        return _load_user(name)
    if name == "digits":
        return _load_digits()
    if name == "synthetic_shapes":
        return _load_shapes(*synthetic_size)
    if name == "fashion_mnist":
        return _load_fashion_mnist(data_dir, download, image_size)
    return _load_tfds(name, data_dir, download, image_size)


def splits_for(config):
    """The data of a recipe `Config`: `load_splits`, then `subset_splits`.

    This is what a run trains and tests on; the export's calibration and
    parity data come from here too.
    """
    splits = load_splits(
        config.dataset,
        config.data_dir,
        config.download,
        config.image_size,
        (config.synthetic_train, config.synthetic_test),
    )
    return subset_splits(splits, config.train_examples, config.channels, config.validation_examples)
