"""A readable table of what a keras-wrs optimizer rescales, and why."""

from __future__ import annotations

import math

import keras

from keras_wrs.optimizers.factory import base_optimizer
from keras_wrs.optimizers.wrs_mixin import WRSMixin
from keras_wrs.selection import excluded_kernels

__all__ = ["describe_rescaling", "parameter_coverage"]


def _unwrap(obj):
    if isinstance(obj, keras.Model):
        obj = obj.optimizer
    obj = base_optimizer(obj)
    if not isinstance(obj, WRSMixin):
        raise ValueError(
            "`describe_rescaling` needs a keras-wrs optimizer (or a model compiled "
            f"with one). Received: {type(obj).__name__}. Create it with "
            "`keras_wrs.optimizers.SGD(..., rescale=model)` or `keras_wrs.wrs(cls)`."
        )
    return obj


def _target(target):
    """A float target, "initial" before build, or the stored initial norms."""
    if isinstance(target, float):
        return f"{target:g}"
    return "initial" if target is None else f"initial (mean {float(keras.ops.mean(target)):.4g})"


def describe_rescaling(optimizer) -> str:
    """Which kernels `optimizer` rescales: path, shape, granularity, target, reason.

    Args:
        optimizer: a keras-wrs optimizer, a `LossScaleOptimizer` around one,
            or a model compiled with one. An optimizer not yet built is
            resolved against its `rescale=` model when it has one.

    Returns:
        A text table, one row per rescaled kernel; when the optimizer was
        given its model, the share of parameters covered and, for each kernel
        left out, the reason (a frozen BatchNorm, no gradient, not invariant).

    Example:
        >>> print(keras_wrs.describe_rescaling(model.optimizer))
    """
    opt = _unwrap(optimizer)
    if opt.built:
        rows = opt.rescale_targets
    elif isinstance(opt.rescale_spec(), keras.Model):
        model = opt.rescale_spec()
        target = None if opt.target_norm == "initial" else opt.target_norm
        rows = [(s, target) for s in opt.resolved_selection(model.trainable_variables)]
    else:
        return (
            f"{type(opt).__name__}: rescale={opt.rescale_spec()!r}, resolved when the "
            "optimizer is built (after the first training step)."
        )
    header = ("path", "shape", "granularity", "target", "reason")
    table = [header] + [
        (
            s.path,
            "x".join(str(d) for d in s.variable.shape),
            opt.granularity
            if opt.granularity == "layer"
            else f"filter (axes {list(s.channel_axes)})",
            _target(t),
            s.reason,
        )
        for s, t in rows
    ]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    every = "" if opt.rescale_every == 1 else f", every {opt.rescale_every} steps"
    return (
        f"{type(opt).__name__} rescales {len(rows)} kernel(s){every}:\n"
        + "\n".join(lines)
        + _coverage_line(opt, [s for s, _ in rows])
        + _left_out(opt)
    )


def _left_out(opt):
    """The model's other kernels, each with the reason the selection leaves it out."""
    if not isinstance(opt.rescale_spec(), keras.Model):
        return ""
    excluded = excluded_kernels(opt.rescale_spec())
    if not excluded:
        return ""
    return f"\nLeft out ({len(excluded)} kernel(s)):\n" + "\n".join(
        f"  {s.path}: {s.reason}" for s in excluded
    )


def _size(variable):
    return int(math.prod(variable.shape))


def parameter_coverage(model, selections) -> dict:
    """How much of `model` the kernels in `selections` are.

    Args:
        model: a built Keras model.
        selections: `Selection`s of its kernels.

    Returns:
        `{"kernels", "kernel_params", "trainable_params", "param_fraction"}`.
    """
    covered = sum(_size(s.variable) for s in selections)
    total = sum(_size(v) for v in model.trainable_variables)
    return {
        "kernels": len(selections),
        "kernel_params": covered,
        "trainable_params": total,
        "param_fraction": covered / total if total else 0.0,
    }


def _coverage_line(opt, selections):
    """How much of the model the rescaled kernels are (when the model is known)."""
    if not isinstance(opt.rescale_spec(), keras.Model):
        return ""
    found = parameter_coverage(opt.rescale_spec(), selections)
    return (
        f"\nCoverage: {found['kernel_params']:,} of the model's {found['trainable_params']:,} "
        f"trainable parameters ({100 * found['param_fraction']:.1f}%) are in rescaled kernels."
    )
