"""Check numerically that kernels are scale-invariant, so users can trust a selection."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from keras_wrs.selection import (
    Selection,
    iter_layers,
    kernel_channel_axes,
    select_scale_invariant,
)

__all__ = ["InvarianceResult", "InvarianceReport", "verify_scale_invariance"]


@dataclasses.dataclass(frozen=True)
class InvarianceResult:
    """One kernel: the output's relative change when its filters were scaled."""

    path: str
    relative_change: float
    invariant: bool


@dataclasses.dataclass(frozen=True)
class InvarianceReport:
    """Results per kernel; `ok` when every kernel checked was invariant."""

    results: tuple
    rtol: float
    switched_off: tuple = ()  # stochastic layers turned off during the check

    @property
    def failures(self) -> list[InvarianceResult]:
        return [r for r in self.results if not r.invariant]

    @property
    def ok(self) -> bool:
        return not self.failures

    def __str__(self) -> str:
        w = max([len("path")] + [len(r.path) for r in self.results])
        lines = [f"{'path'.ljust(w)}  relative change  scale-invariant (rtol={self.rtol:g})"]
        lines += [
            f"{r.path.ljust(w)}  {r.relative_change:15.3e}  {'yes' if r.invariant else 'NO'}"
            for r in self.results
        ]
        if self.switched_off:
            lines.append(f"stochastic layers switched off for the check: {', '.join(self.switched_off)}")
        return "\n".join(lines)


def _all_kernels(model):
    out = []
    for layer in iter_layers(model):
        spec = kernel_channel_axes(layer)
        if spec is not None and layer.built:
            v = getattr(layer, spec[0])
            out.append(Selection(v, v.path, spec[1], layer, "candidate"))
    return out


def _as_selections(model, variables):
    if variables is None:
        return select_scale_invariant(model)
    if variables == "all":
        return _all_kernels(model)
    return [v if isinstance(v, Selection) else Selection(v, v.path, (-1,)) for v in variables]


# The attribute that makes each stochastic layer random in training mode;
# 0 makes it the identity (Keras skips the noise when it is 0).
_NOISE_ATTRS = (
    (keras.layers.Dropout, "rate"),  # SpatialDropout*D derive from it
    (keras.layers.GaussianDropout, "rate"),
    (keras.layers.AlphaDropout, "rate"),
    (keras.layers.GaussianNoise, "stddev"),
)


def _stochastic_layers(model):
    """`(layer, attribute, value)` for each stochastic layer that is switched on."""
    out = []
    for layer in iter_layers(model):
        for cls, attr in _NOISE_ATTRS:
            if isinstance(layer, cls) and getattr(layer, attr, 0):
                out.append((layer, attr, getattr(layer, attr)))
                break
    return out


def _scales(shape, channel_axes, rng):
    """Random per-filter factors in [0.5, 2], broadcastable against the kernel."""
    ndim = len(shape)
    kept = {a % ndim for a in channel_axes}
    fshape = tuple(d if a in kept else 1 for a, d in enumerate(shape))
    return np.exp(rng.uniform(np.log(0.5), np.log(2.0), size=fshape)).astype("float32")


def verify_scale_invariance(
    model, x, variables=None, rtol: float = 1e-3, ignore_bn_epsilon: bool = True, seed: int = 0
) -> InvarianceReport:
    """Scale each kernel's filters by random factors and compare training-mode outputs.

    For each kernel, every output filter is multiplied by its own factor in
    [0.5, 2]; the kernel is scale-invariant if the model's training-mode
    output changes by less than `rtol` relative to its largest magnitude.
    Weights and BatchNorm statistics are restored afterwards.

    Args:
        model: a built Keras model.
        x: a batch of inputs (a few dozen examples are enough).
        variables: kernels to check: None (the automatic selection), "all"
            (every Conv/Dense kernel: shows which ones are invariant), or a
            list of variables / `Selection`s.
        rtol: largest relative change counted as invariant.
        ignore_bn_epsilon: BatchNorm's epsilon is the one term that breaks
            exact invariance (by about epsilon / variance); when True it is
            set to 1e-10 during the check so that the test is sharp.
        seed: seed of the random factors.

    Returns:
        An `InvarianceReport`; `report.ok` is False if any kernel is not
        invariant, and `print(report)` shows the table.

    Note:
        Stochastic layers (Dropout, SpatialDropout, GaussianDropout,
        AlphaDropout, GaussianNoise) would make training-mode outputs differ
        between calls: they are switched off for the check, restored after,
        and named in the report.
    """
    if not model.built:
        raise ValueError(
            f"Model {model.name!r} is not built: call it on a batch (or give it "
            "an Input) before verifying scale invariance."
        )
    rng = np.random.default_rng(seed)
    state = [v.numpy() for v in model.non_trainable_variables]
    bns = [
        layer for layer in iter_layers(model, include_self=True)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    eps = [bn.epsilon for bn in bns]
    noisy = _stochastic_layers(model)
    try:
        for layer, attr, _ in noisy:
            setattr(layer, attr, 0)
        if ignore_bn_epsilon:
            for bn in bns:
                bn.epsilon = 1e-10
        base = keras.ops.convert_to_numpy(model(x, training=True))
        ref = max(float(np.max(np.abs(base))), 1e-12)
        results = []
        for s in _as_selections(model, variables):
            w = s.variable.numpy()
            s.variable.assign(w * _scales(w.shape, s.channel_axes, rng))
            out = keras.ops.convert_to_numpy(model(x, training=True))
            s.variable.assign(w)
            rel = float(np.max(np.abs(out - base))) / ref
            results.append(InvarianceResult(s.path, rel, rel <= rtol))
    finally:
        for layer, attr, value in noisy:
            setattr(layer, attr, value)
        for bn, e in zip(bns, eps):
            bn.epsilon = e
        for v, val in zip(model.non_trainable_variables, state):
            v.assign(val)
    return InvarianceReport(tuple(results), rtol, tuple(layer.name for layer, _, _ in noisy))
