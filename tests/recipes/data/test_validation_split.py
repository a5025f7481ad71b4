"""The validation split: held out of the training set, fixed, class-balanced, disjoint."""

import numpy as np
import pytest

from keras_wrs.recipes import data


def _arrays(per_class=(7, 5, 6), test=4):
    """Images whose single pixel is their index in the training set (file order)."""
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(per_class)])
    order = np.random.default_rng(0).permutation(len(labels))  # classes interleaved
    y_train = labels[order]
    x_train = np.arange(len(y_train), dtype=np.uint8).reshape(-1, 1, 1, 1)
    x_test = np.zeros((test, 1, 1, 1), np.uint8)
    return data.splits_from_arrays("toy", x_train, y_train, x_test, np.arange(test) % 3)


def test_validation_is_the_last_images_of_each_class_and_leaves_the_rest_to_train():
    splits = _arrays()
    held = data.subset_splits(splits, validation_examples=6)
    ids_val = held.x_val.ravel().tolist()
    ids_train = held.x_train.ravel().tolist()
    # Brute force: walk the file, keep each class's last two images.
    expected = []
    for c in range(3):
        expected += [i for i, y in enumerate(splits.y_train) if y == c][-2:]
    assert sorted(ids_val) == sorted(expected)
    assert np.bincount(held.y_val).tolist() == [2, 2, 2]
    assert sorted(ids_train + ids_val) == list(range(18))
    assert not set(ids_train) & set(ids_val)
    assert held.info.num_train == 12 and "6 balanced validation images held out" in held.info.source
    # Labels travel with their images.
    np.testing.assert_array_equal(held.y_val, splits.y_train[held.x_val.ravel()])
    # Normalization statistics come from the images left for training.
    assert held.info.mean[0] == pytest.approx(np.mean(held.x_train / 255.0))
    # The test set is untouched, and the split does not depend on anything else.
    np.testing.assert_array_equal(held.x_test, splits.x_test)
    again = data.subset_splits(splits, validation_examples=6)
    np.testing.assert_array_equal(again.x_val, held.x_val)


def test_training_subset_is_taken_from_what_the_validation_split_leaves():
    held = data.subset_splits(_arrays(), train_examples=3, validation_examples=3)
    assert not set(held.x_train.ravel()) & set(held.x_val.ravel())
    assert np.bincount(held.y_train).tolist() == [1, 1, 1]
    assert data.subset_splits(_arrays()).x_val is None


def test_validation_stream_holds_the_split_in_order_and_test_stays_the_default():
    held = data.subset_splits(_arrays(), validation_examples=6)
    stream = data.eval_dataset(held, 4, "validation")
    x = np.concatenate([stream[i][0] for i in range(len(stream))])
    np.testing.assert_allclose(x, data.normalize(held.x_val, held.info))
    assert len(data.eval_dataset(held, 4)) == 1  # the 4 test images


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"validation_examples": 5}, r"`validation_examples` must be a multiple of 3.*at most 15"),
        ({"validation_examples": 18}, r"validation_examples=18"),
        ({"validation_examples": 9, "train_examples": 12}, r"`train_examples`.*at most 9"),
    ],
)
def test_bad_split_sizes_name_the_field_and_the_limit(kwargs, words):
    with pytest.raises(ValueError, match=words):
        data.subset_splits(_arrays(), **kwargs)


def test_a_class_too_small_for_its_share_is_refused():
    with pytest.raises(ValueError, match="Class 1 has 2 training images, fewer than the 3"):
        data.subset_splits(_arrays(per_class=(9, 2, 9)), validation_examples=9)


def test_asking_for_a_validation_stream_without_a_split_says_how_to_get_one():
    with pytest.raises(ValueError, match=r"set validation_examples.*split='validation'"):
        data.eval_dataset(_arrays(), 4, "validation")
    with pytest.raises(ValueError, match=r"split='train'"):
        data.eval_dataset(_arrays(), 4, "train")
