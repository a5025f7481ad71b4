"""Paired differences with t intervals, verdicts at a margin, time to accuracy."""

import math

import numpy as np
import pytest

from keras_wrs.recipes.sweeps import stats

# Two-sided 95% Student-t quantiles from the printed tables (df: t).
T975 = {1: 12.706, 2: 4.303, 4: 2.776, 9: 2.262, 29: 2.045}


@pytest.mark.parametrize("n", [2, 3, 5, 10, 30])
def test_interval_is_mean_plus_minus_t_times_standard_error(n):
    rng = np.random.default_rng(n)
    a, b = rng.normal(0.93, 0.002, n), rng.normal(0.931, 0.002, n)
    d = stats.paired_difference(a, b)
    diffs = a - b
    half = T975[n - 1] * diffs.std(ddof=1) / math.sqrt(n)
    assert d.n == n and d.mean == pytest.approx(diffs.mean())
    assert d.high - d.mean == pytest.approx(half, rel=2e-4)  # tables print 3 decimals
    assert d.mean - d.low == pytest.approx(half, rel=2e-4)


def test_pairing_removes_the_shared_seed_effect():
    seed_effect = np.array([0.010, -0.020, 0.005, 0.015, -0.010])
    a, b = 0.930 + seed_effect, 0.928 + seed_effect + np.array([0.0, 1e-4, -1e-4, 0.0, 0.0])
    d = stats.paired_difference(a, b)
    assert d.mean == pytest.approx(0.002) and d.high - d.low < 0.001


@pytest.mark.parametrize(
    "low, high, expected",
    [
        (0.001, 0.004, "superior"),
        (-0.0015, 0.003, "non-inferior"),
        (-0.006, -0.0025, "inferior"),
        (-0.004, 0.001, "inconclusive"),
    ],
)
def test_verdicts_at_a_margin_of_two_tenths_of_a_point(low, high, expected):
    d = stats.PairedDifference(5, (low + high) / 2, low, high, 0.95)
    assert stats.verdict(d, 0.002) == expected


def test_one_pair_has_no_interval():
    d = stats.paired_difference([0.93], [0.92])
    assert (d.low, d.high) == (-math.inf, math.inf)
    assert stats.verdict(d, 0.002) == "inconclusive"


@pytest.mark.parametrize(
    "a, b, kwargs, words",
    [
        ([0.9, 0.9], [0.9], {}, r"paired seed by seed. Received: 2 and 1"),
        ([], [], {}, r"non-empty"),
        ([0.9, 0.8], [0.9, 0.9], {"confidence": 1.0}, r"confidence=1.0"),
    ],
)
def test_bad_inputs_are_refused(a, b, kwargs, words):
    with pytest.raises(ValueError, match=words):
        stats.paired_difference(a, b, **kwargs)
    with pytest.raises(ValueError, match=r"margin=0"):
        stats.verdict(stats.PairedDifference(2, 0.0, -1.0, 1.0, 0.95), 0)


def test_time_to_accuracy_counts_cpu_seconds_up_to_the_first_epoch_at_target():
    history = {
        "val_accuracy": [0.85, 0.91, 0.905, 0.93],
        "epoch_cpu_seconds": [50.0, 48.0, 47.0, 49.0],
    }
    assert stats.time_to_accuracy(history, 0.90) == (2, 98.0)
    assert stats.time_to_accuracy(history, 0.92) == (4, 194.0)
    assert stats.time_to_accuracy(history, 0.95) == (None, None)
    assert stats.time_to_accuracy({"val_accuracy": [0.95]}, 0.9) == (1, None)
