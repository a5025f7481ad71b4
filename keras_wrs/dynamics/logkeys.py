"""The names the dynamics callbacks log under: one owner for every log key.

A per-kernel value is logged as `metric/kernel` (`norm_mean/conv1`); a value
measured before the first step as `metric_initial/kernel`; whole-model values
under the bare metric name (`sharpness`). `History`, `CSVLogger`,
TensorBoard, `plot_dynamics` and the recipes' reports all read these keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = [
    "STATE_METRICS",
    "STEP_METRICS",
    "GRADIENT_METRICS",
    "NOISE_METRICS",
    "SHARPNESS_METRICS",
    "INITIAL_SUFFIX",
    "NORM_MEAN",
    "EFF_LR",
    "ANGULAR_UPDATE",
    "NOISE_RATIO_MEAN",
    "NOISE_NORM",
    "SPAN_NORM",
    "SHARPNESS",
    "EDGE_OF_STABILITY",
    "key",
    "keys",
    "initial",
    "parse",
    "is_initial",
]

# WeightDynamics: values of the weights after a step; the epoch's value is the one at its end.
NORM_MEAN, EFF_LR = "norm_mean", "eff_lr"
STATE_METRICS = (NORM_MEAN, "norm_min", "norm_max", EFF_LR, "rotation")
# WeightDynamics: values of one update; the epoch's value is the mean over its measured steps.
ANGULAR_UPDATE = "angular_update"
STEP_METRICS = (ANGULAR_UPDATE, "radial", "tangential")
# WeightDynamics with a probe batch.
GRADIENT_METRICS = ("grad_norm",)
# SpanNoise.
NOISE_RATIO_MEAN, NOISE_NORM, SPAN_NORM = "noise_ratio_mean", "noise_norm", "span_norm"
NOISE_METRICS = (NOISE_RATIO_MEAN, "noise_ratio_max", NOISE_NORM, SPAN_NORM, "span_rank")
# Sharpness (whole model, no kernel part).
SHARPNESS, EDGE_OF_STABILITY = "sharpness", "edge_of_stability"
SHARPNESS_METRICS = (SHARPNESS, EDGE_OF_STABILITY, "sharpness_iterations")
# `noise_ratio_mean_initial/K`: the value before the first step of `fit`.
INITIAL_SUFFIX = "_initial"


def key(metric: str, kernel: str) -> str:
    """The log key of `metric` for `kernel`: `metric/kernel`."""
    return f"{metric}/{kernel}"


def keys(metrics: Sequence[str], kernels: Iterable[str]) -> list[str]:
    """Every `metric/kernel` key, kernel-major (all metrics of the first kernel first)."""
    return [key(m, k) for k in kernels for m in metrics]


def initial(metric_key: str) -> str:
    """The key of the value measured before the first step: `metric_initial/kernel`."""
    metric, sep, kernel = metric_key.partition("/")
    return f"{metric}{INITIAL_SUFFIX}{sep}{kernel}"


def parse(metric_key: str) -> tuple[str, str]:
    """`(metric, kernel)` of a key; kernel is "" for whole-model metrics."""
    metric, _, kernel = metric_key.partition("/")
    return metric, kernel


def is_initial(metric_key: str) -> bool:
    """Whether a key holds a value measured before the first step."""
    return parse(metric_key)[0].endswith(INITIAL_SUFFIX)
