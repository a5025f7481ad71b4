"""`preprocess`, the one preprocessing formula, against a NumPy twin."""

import numpy as np

from keras_wrs.recipes.data import DatasetInfo, normalize, preprocess


def _twin(images, rescale, mean, std):
    x = images.astype(np.float64) * rescale
    return ((x - np.asarray(mean)) / np.asarray(std)).astype(np.float32)


def test_uint8_table_and_float_path_equal_the_formula():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 4, 4, 3), dtype=np.uint8)
    args = (1 / 255, (0.2, 0.5, 0.7), (0.3, 0.25, 0.1))
    table = preprocess(images, *args)
    direct = preprocess(images.astype(np.float32), *args)
    assert table.dtype == direct.dtype == np.float32
    np.testing.assert_array_equal(table, direct)
    np.testing.assert_allclose(table, _twin(images, *args), rtol=1e-6, atol=1e-6)


def test_one_statistic_for_replicated_channels_and_normalize_is_preprocess():
    images = np.arange(2 * 2 * 2 * 3, dtype=np.uint8).reshape(2, 2, 2, 3)
    np.testing.assert_array_equal(
        preprocess(images, 1 / 16, (0.5,), (2.0,)), _twin(images, 1 / 16, (0.5,), (2.0,))
    )
    info = DatasetInfo(
        "x", 2, ("a", "b"), (2, 2, 3), 2, 2, 1 / 16, (0.1, 0.2, 0.3), (1.0, 2.0, 3.0), False, "test"
    )
    np.testing.assert_array_equal(
        normalize(images, info), preprocess(images, 1 / 16, info.mean, info.std)
    )
