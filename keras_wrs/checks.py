"""The library's argument checks, importable without Keras (the recipes' config calls them).

Each raises a `ValueError` that names the argument, the value received and
what is accepted, before any work is done.
"""

from __future__ import annotations

import math
import numbers

__all__ = [
    "GRANULARITIES",
    "TARGET_NORM_RANGE",
    "as_real_number",
    "check_granularity",
    "check_rescale_every",
    "check_target_norm",
    "positive_int",
]

# One norm per output channel (the unit BatchNorm normalizes), or one per kernel.
GRANULARITIES = ("filter", "layer")

# The target norms a rescale can hold: norms are summed as squares in float32,
# whose largest value is 3.4e38 (a norm up to 1.8e19) and smallest normal
# 1.2e-38. A margin of 1e3 on both sides leaves room for one step's growth of
# a filter and keeps every target far above `keras_wrs.math.EPSILON` (1e-12),
# below which a filter counts as zero and is left alone.
TARGET_NORM_RANGE = (1e-9, 1e16)


def as_real_number(value):
    """`value` as a Python int or float if it is a real number, else None.

    NumPy scalars and 0-d arrays count as numbers; booleans do not.
    """
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def positive_int(value, name: str, none_ok: bool = False):
    """An integer `>= 1` (NumPy integers included), as a Python int; None if allowed."""
    if value is None and none_ok:
        return None
    number = as_real_number(value)
    if not isinstance(number, int) or number < 1:
        raise ValueError(f"`{name}` must be an integer >= 1. Received: {name}={value!r}")
    return number


def check_target_norm(target_norm):
    """`"initial"`, or a float within `TARGET_NORM_RANGE`."""
    if isinstance(target_norm, str) and target_norm == "initial":
        return target_norm
    value = as_real_number(target_norm)
    low, high = TARGET_NORM_RANGE
    if value is None or not math.isfinite(value) or not low <= value <= high:
        raise ValueError(
            f"`target_norm` must be a positive finite number from {low:g} to {high:g} "
            "(float32 must hold the squared filter norms after a step), or the string "
            f'"initial". Received: target_norm={target_norm!r}'
        )
    return float(value)


def check_rescale_every(rescale_every):
    """An integer `>= 1`: rescale after every n-th step."""
    value = as_real_number(rescale_every)
    if not isinstance(value, int) or value < 1:
        raise ValueError(
            "`rescale_every` must be an integer >= 1 (rescale after every n-th "
            f"step). Received: rescale_every={rescale_every!r}"
        )
    return value


def check_granularity(granularity):
    """One of `GRANULARITIES`."""
    if not isinstance(granularity, str) or granularity not in GRANULARITIES:
        raise ValueError(
            f"`granularity` must be one of {GRANULARITIES}. Received: granularity={granularity!r}"
        )
    return granularity
