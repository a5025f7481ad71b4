"""The keras-wrs dynamics callbacks and plots, as a recipe run uses them.

Runs watch their scale-invariant kernels with `keras_wrs.dynamics.WeightDynamics`
(norms, effective learning rate, angular updates) and
`keras_wrs.noise.SpanNoise` (the span-aware weight noise ratio). Their epoch
values land in the same `logs` as the loss, so `history.csv`, TensorBoard and
`summary.json` carry them, and `keras_wrs.plots` draws them.
"""

from __future__ import annotations

import logging
import math

import numpy as np

__all__ = ["coverage", "dynamics_callbacks", "write_dynamics_plots", "final_dynamics",
           "NOISE_PREFIX"]

logger = logging.getLogger("keras_wrs")

# Epoch-log keys of the noise ratio start with this (one per kernel).
NOISE_PREFIX = "noise_ratio_mean/"


def dynamics_callbacks(config, probe_x, every, initial=None):
    """Callbacks that measure training dynamics (empty if `config.dynamics` is off).

    `WeightDynamics` every `every` steps, and `SpanNoise` (weight noise
    ratio on `probe_x`) every `config.noise_every` epochs.

    Args:
        config: the run's `Config`.
        probe_x: a batch of normalized training inputs for span estimates.
        every: measurement period in steps (the trainer measures twice per
            epoch: each measurement synchronizes the device).
        initial: `WeightDynamics`'s `initial` (the run's `initial_kernels.npz`,
            so that a resumed run measures `rotation` from its start).

    Returns:
        A list of Keras callbacks, to be placed before `CSVLogger`.
    """
    if not config.dynamics:
        return []
    from keras_wrs.dynamics import WeightDynamics
    from keras_wrs.noise import SpanNoise

    return [WeightDynamics(schedule=every, initial=initial),
            SpanNoise(probe_x, kernels=list(config.noise_kernels),
                      every_n_epochs=config.noise_every,
                      rel_threshold=config.noise_threshold)]


def coverage(model, applied):
    """How much of `model` WRS rescales: kernels and their share of the parameters.

    Args:
        model: the run's model.
        applied: whether the run rescales (regularization `wrs`); the numbers
            are the same either way, so WD and WRS runs can be read side by side.

    Returns:
        `{"applied", "kernels", "kernel_params", "trainable_params",
        "param_fraction"}`, as `config.json` records it.
    """
    from keras_wrs.describe import parameter_coverage
    from keras_wrs.selection import select_scale_invariant

    try:
        selected = select_scale_invariant(model)
    except ValueError:  # no scale-invariant kernel at all
        selected = []
    return {"applied": bool(applied), **parameter_coverage(model, selected)}


def write_dynamics_plots(runs, out_dir):
    """`keras_wrs.plots.plot_dynamics` of one run or `{label: run}`.

    Returns:
        The files written; empty when the runs hold no dynamics metric (a
        plot never loses a finished run: failures are logged).
    """
    from keras_wrs.plots import plot_dynamics

    try:
        return plot_dynamics(runs, str(out_dir))
    except Exception as err:
        logger.warning("keras-wrs: no dynamics plots (%s: %s)",
                       type(err).__name__, err)
        return []


def _last_finite(values):
    for value in reversed(list(values)):
        if value is not None and math.isfinite(value):
            return float(value)
    return None


def final_dynamics(history):
    """Summary numbers from a run's epoch logs.

    Metrics measured every few epochs log NaN in between, so each value is
    the last finite one.

    Args:
        history: `{key: [value per epoch]}` (`History.history`).

    Returns:
        `{"noise_ratio": mean over kernels or None, "per_kernel": {key: value}}`
        for every `metric/kernel` key.
    """
    per_kernel = {k: _last_finite(v) for k, v in history.items() if "/" in k}
    noise = [v for k, v in per_kernel.items()
             if k.startswith(NOISE_PREFIX) and v is not None]
    return {"noise_ratio": float(np.mean(noise)) if noise else None,
            "per_kernel": per_kernel}
