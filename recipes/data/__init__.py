"""Image classification data for the recipes: sources, checks and the input pipeline.

`load_splits` and `splits_for` read a data set into memory (`sources`:
scikit-learn digits, Fashion-MNIST's IDX files, synthetic shapes, TFDS, or a
set registered with `register_dataset`); `train_dataset`, `eval_dataset` and
`probe_batch` (`pipeline`) turn it into deterministic batches, normalized by
`preprocess`, the one preprocessing formula of keras-wrs.
"""

from keras_wrs.recipes.config.schema import AUGMENTATIONS, BUILTIN_DATASETS
from keras_wrs.recipes.data.pipeline import (
    eval_dataset,
    normalize,
    preprocess,
    probe_batch,
    train_dataset,
    train_steps,
)
from keras_wrs.recipes.data.sources import (
    DatasetInfo,
    DatasetUnavailableError,
    Splits,
    check_dataset_name,
    load_splits,
    register_dataset,
    splits_for,
    splits_from_arrays,
    subset_splits,
)

__all__ = [
    "BUILTIN_DATASETS",
    "AUGMENTATIONS",
    "DatasetInfo",
    "Splits",
    "DatasetUnavailableError",
    "check_dataset_name",
    "load_splits",
    "splits_for",
    "register_dataset",
    "splits_from_arrays",
    "subset_splits",
    "train_dataset",
    "train_steps",
    "eval_dataset",
    "probe_batch",
    "normalize",
    "preprocess",
]
