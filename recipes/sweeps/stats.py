"""Paired comparisons over shared seeds, and time to a target accuracy.

Two methods trained with the same seeds (the same initial weights, data order
and augmentation) form pairs; `paired_difference` gives the mean difference,
its Student-t confidence interval and a verdict against a non-inferiority
margin. `time_to_accuracy` reads a run's `history.csv` columns for the first
epoch that reaches a target, with the process CPU seconds spent until then.
"""

from __future__ import annotations

import dataclasses
import math
import statistics

__all__ = ["PairedDifference", "paired_difference", "verdict", "time_to_accuracy"]


@dataclasses.dataclass(frozen=True)
class PairedDifference:
    """`a - b` over `n` shared seeds: mean and the confidence interval's bounds."""

    n: int
    mean: float
    low: float
    high: float
    confidence: float


def _t_quantile(p, df):
    from scipy import stats

    return float(stats.t.ppf(p, df))


def paired_difference(a, b, confidence=0.95):
    """Mean of `a[i] - b[i]` with its two-sided Student-t confidence interval.

    Args:
        a: one value per seed (for example test accuracies).
        b: the other method's values for the same seeds, in the same order.
        confidence: the interval's coverage.

    Returns:
        A `PairedDifference`; with one pair the interval is unbounded.

    Raises:
        ValueError: `a` and `b` differ in length, are empty, or `confidence`
            is not in (0, 1).
    """
    a, b = [float(v) for v in a], [float(v) for v in b]
    if len(a) != len(b) or not a:
        raise ValueError(
            f"`a` and `b` must be non-empty and paired seed by seed. "
            f"Received: {len(a)} and {len(b)} values."
        )
    if not 0 < confidence < 1:
        raise ValueError(f"`confidence` must be in (0, 1). Received: confidence={confidence!r}")
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    mean = statistics.fmean(diffs)
    if len(diffs) == 1:
        return PairedDifference(1, mean, -math.inf, math.inf, confidence)
    half = _t_quantile(0.5 + confidence / 2, len(diffs) - 1) * (
        statistics.stdev(diffs) / math.sqrt(len(diffs))
    )
    return PairedDifference(len(diffs), mean, mean - half, mean + half, confidence)


def verdict(difference, margin):
    """The verdict on `a` against `b` from the interval only, at `margin` (> 0).

    `"superior"` (low > 0), `"non-inferior"` (low > -margin), `"inferior"`
    (high < -margin), else `"inconclusive"`.
    """
    if not margin > 0:
        raise ValueError(f"`margin` must be > 0. Received: margin={margin!r}")
    if difference.low > 0:
        return "superior"
    if difference.low > -margin:
        return "non-inferior"
    if difference.high < -margin:
        return "inferior"
    return "inconclusive"


def time_to_accuracy(history, target, metric="val_accuracy"):
    """First epoch whose `metric` reaches `target`, and the CPU seconds until its end.

    Args:
        history: `{column: [value per epoch]}` (`rundir.read_history`).
        target: the accuracy to reach (0.92 for 92%).
        metric: the column to read.

    Returns:
        `(epoch, cpu_seconds)` with 1-based `epoch`, `cpu_seconds` the sum of
        `epoch_cpu_seconds` up to that epoch (None if the run did not log
        them); `(None, None)` if the run never reached `target`.
    """
    cpu = history.get("epoch_cpu_seconds")
    for i, value in enumerate(history.get(metric, ())):
        if value is not None and math.isfinite(value) and value >= target:
            return i + 1, (float(sum(cpu[: i + 1])) if cpu else None)
    return None, None
