"""The numerical test of per-filter scale invariance, shared by selection and `verify`.

A kernel is scale-invariant per output filter when multiplying any one filter
`w_k` by `c > 0` leaves the model's training-mode function unchanged. Two
tests decide, both over every kernel at once, in a few passes:

1. The radial derivative. For an invariant filter it vanishes for every loss
   at every weight: `<w_k, dL/dw_k> = d/dc L(c w_k) at c = 1 = 0`. One
   backward pass of a random linear loss of the outputs gives the cosine
   between `w_k` and its gradient for every filter; a filter whose cosine
   exceeds `COSINE_TOL` at every test point is not invariant, and its kernel
   is out. The points are weight settings away from the model's (biases,
   BatchNorm gammas and betas and other variables perturbed, so that no
   invariance holds by the accident of a zero bias), the second one with
   every filter moved along its ray and the inputs rescaled.
2. The finite test, for the kernels left: their filters scaled together by
   random factors in [0.5, 2] must leave the outputs unchanged within `RTOL`
   at the first two points (one forward pass each; a failing group is
   bisected down to the kernels that change the outputs). At the second
   point, a function that is homogeneous only below a clip (ReLU6 after a
   kernel without bias) is past the clip and fails.

Everything runs through `model.stateless_call(..., training=True)`, which is
what `fit` computes: BatchNorm layers that `fit` keeps in inference mode
(`trainable=False`) are in inference mode here too, stochastic layers draw the
same masks in both passes of a finite test, and the model's variables are
never written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading

import keras
import numpy as np
from keras import ops

from keras_wrs import math as wmath
from keras_wrs._backend import backend, gradient, seeded_global_rng
from keras_wrs._kernels import layer_kernels
from keras_wrs._walk import iter_layers

__all__ = ["KernelCheck", "check_kernels", "sample_inputs", "COSINE_TOL", "RTOL"]

# |cos(w_k, dL/dw_k)| above which a filter varies. Measured in float32 on the
# models of benchmarks/selection_coverage_results.md: invariant filters up to
# a few 1e-3 where a channel is nearly constant over the batch, non-invariant
# kernels from 3.5e-2 up; the finite test decides below.
COSINE_TOL = 1e-2
# Largest relative change of the outputs, when the filters of invariant
# kernels are scaled by 0.5-2, that still counts as unchanged. Measured:
# invariant kernels up to 1.1e-3 (a depthwise kernel on 1x1 maps, whose
# channels are nearly constant over the batch), non-invariant ones from 7e-3.
RTOL = 2e-3
_EPSILON = 1e-20  # BatchNorm epsilon during the test: it alone breaks exact invariance


@dataclasses.dataclass(frozen=True)
class KernelCheck:
    """The outcome of the test for one kernel.

    Attributes:
        selection: the kernel (a `Selection` with its channel axes).
        verdict: "invariant"; "varies" (some filter's radial derivative is not
            zero); "changed" (the finite test changed the outputs);
            "no_gradient" (the outputs do not depend on the kernel at all);
            "not_trainable".
        cosine: largest |cos(w_k, dL/dw_k)| over informed filters and points
            (NaN when no filter's gradient rose above float32 noise).
        relative_change: largest output change in the finite tests of the
            groups this kernel was confirmed or refuted in (None if not tested).
    """

    selection: object
    verdict: str
    cosine: float
    relative_change: float | None = None

    @property
    def invariant(self) -> bool:
        return self.verdict == "invariant"


def sample_inputs(model, batch_size: int = 16, spatial: int = 64, seed: int = 0):
    """Random inputs shaped like `model`'s inputs (None dimensions set to `spatial`).

    Args:
        model: a Keras model with known inputs (functional, Sequential with
            an Input, or any model called once on symbolic inputs).
        batch_size: examples in the batch (BatchNorm needs several).
        spatial: size used for every unknown non-batch dimension.
        seed: seed of the draw.

    Returns:
        A structure like `model.input` of NumPy arrays: standard normal for
        float inputs, zeros and ones for integer inputs.

    Raises:
        ValueError: the model has no known inputs.
    """
    spec = _input_spec(model)
    if spec is None:
        raise ValueError(
            f"Model {getattr(model, 'name', model)!r} has no known inputs, so no batch "
            "can be made up for the numerical scale-invariance test. Pass a batch: "
            "`x=` (select_scale_invariant / verify_scale_invariance), or give the model "
            "an `keras.Input`."
        )
    rng = np.random.default_rng(seed)

    def draw(t):
        shape = (batch_size,) + tuple(spatial if d is None else d for d in t.shape[1:])
        if "int" in str(t.dtype) or "bool" in str(t.dtype):
            return rng.integers(0, 2, size=shape).astype(str(t.dtype))
        return rng.standard_normal(shape).astype("float32")

    return keras.tree.map_structure(draw, spec)


def _input_spec(model):
    """The model's symbolic inputs in the structure it is called with, or None."""
    try:
        return model.input  # functional models: the structure given to the constructor
    except (AttributeError, ValueError):
        pass
    inputs = getattr(model, "inputs", None)  # Sequential: a list of one
    if not inputs:
        return None
    return inputs[0] if len(inputs) == 1 else list(inputs)


@contextlib.contextmanager
def _sharp_batchnorm(model, sharpen: bool):
    """BatchNorm epsilon set to 1e-20 for the test (it makes invariance approximate)."""
    bns = [
        bn
        for bn in iter_layers(model, include_self=True)
        if isinstance(bn, keras.layers.BatchNormalization)
    ]
    saved = [bn.epsilon for bn in bns]
    try:
        if sharpen:
            for bn in bns:
                bn.epsilon = _EPSILON
        yield
    finally:
        for bn, eps in zip(bns, saved, strict=True):
            bn.epsilon = eps


@contextlib.contextmanager
def _float32_compute(model):
    """Layers computing in float16/bfloat16 compute in float32 for the test."""
    changed = []
    for layer in iter_layers(model, include_self=True):
        policy = getattr(layer, "dtype_policy", None)
        if (
            policy is not None
            and policy.compute_dtype in ("float16", "bfloat16")
            and policy.quantization_mode is None
        ):
            changed.append((layer, policy))
    try:
        for layer, _ in changed:
            layer.dtype_policy = "float32"
        yield
    finally:
        for layer, policy in changed:
            layer.dtype_policy = policy


def _float_leaves(outputs):
    return [y for y in keras.tree.flatten(outputs) if "float" in str(y.dtype)]


def _filter_factors(shape, channel_axes, rng, low, high):
    """Log-uniform factors in [low, high], one per filter, broadcastable to the kernel."""
    kept = {a % len(shape) for a in channel_axes}
    fshape = tuple(d if a in kept else 1 for a, d in enumerate(shape))
    return np.exp(rng.uniform(np.log(low), np.log(high), size=fshape))


def _perturbed(values, is_kernel, rng):
    """Values away from the initial ones, the candidate kernels left as they are.

    Each element `a` becomes `a * exp(0.3 n1) + 0.3 s n2` (`n1`, `n2` standard
    normal, `s` = max(rms of the variable, 1) for 1-D variables and its rms
    otherwise): zero biases and betas move off 0, which breaks invariance that
    holds only by that accident, and BatchNorm gammas stay near their sign
    and size, so that few channels saturate a clipping activation for the
    whole batch (a channel constant over the batch makes the test degenerate).
    """
    out = []
    for v, kernel in zip(values, is_kernel, strict=True):
        a = keras.ops.convert_to_numpy(v)
        if kernel or "float" not in str(a.dtype):
            out.append(a)
            continue
        a = a.astype("float64")
        rms = float(np.sqrt(np.mean(np.square(a)))) if a.size else 0.0
        scale = max(rms, 1.0) if a.ndim <= 1 else (rms or 0.05)
        out.append(
            a * np.exp(0.3 * rng.standard_normal(a.shape))
            + 0.3 * scale * rng.standard_normal(a.shape)
        )
    return out


@dataclasses.dataclass(frozen=True)
class _Point:
    """Where a pass runs: trainable values, inputs, and the noise of stochastic layers
    (the seed-generator states passed in, and the global seed PyTorch's unseeded
    Dropout draws from). Two passes at one point draw the same masks."""

    values: list
    x: object
    non_trainable: list
    seed: int


class _Problem:
    """The model, its variables, the candidate kernels and the passes."""

    def __init__(self, model, candidates, x, seed):
        self.model = model
        self.trainable = list(model.trainable_variables)
        index = {id(v): i for i, v in enumerate(self.trainable)}
        self.slots = {i: index.get(id(s.variable)) for i, s in enumerate(candidates)}
        self.candidates = candidates
        # Every trainable kernel of the model: the population whose median
        # gradient size tells a filter's noise from its signal.
        self.population = [
            (index[id(v)], axes) for v, axes, _ in layer_kernels(model) if id(v) in index
        ]
        self.non_trainable = list(model.non_trainable_variables)
        self.x = x
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self._jax = None

    def point(self, p) -> _Point:
        """Test point `p`: perturbed values; from `p = 1` on, every filter moved
        along its ray, the float inputs rescaled and the noise drawn afresh."""
        kernels = {j for j in self.slots.values() if j is not None}
        values = _perturbed(
            [v.value for v in self.trainable],
            [i in kernels for i in range(len(self.trainable))],
            self.rng,
        )
        if p > 0:
            for i, s in enumerate(self.candidates):
                j = self.slots[i]
                if j is not None:
                    values[j] = values[j] * _filter_factors(
                        values[j].shape, s.channel_axes, self.rng, 0.25, 4.0
                    )
        x = (
            self.x
            if p == 0
            else keras.tree.map_structure(
                lambda a: a * 1.7 if "float" in str(np.asarray(a).dtype) else a, self.x
            )
        )
        non_trainable = [
            self._seed_state(v) if p > 0 and v.path.endswith("seed_generator_state") else v.value
            for v in self.non_trainable
        ]
        return _Point(self.tensors(values), x, non_trainable, self.seed + p)

    def _seed_state(self, v):
        fresh = self.rng.integers(0, 2**31 - 1, size=tuple(v.shape))
        return ops.convert_to_tensor(fresh, dtype=v.dtype)

    def tensors(self, arrays):
        return [
            ops.convert_to_tensor(np.asarray(a), dtype=v.dtype)
            for a, v in zip(arrays, self.trainable, strict=True)
        ]

    def _pass(self, values, non_trainable, x):
        """The float outputs (float32) of a training-mode pass: a pure function of its arguments."""
        y, _ = self.model.stateless_call(values, non_trainable, x, training=True)
        return [ops.cast(leaf, "float32") for leaf in _float_leaves(y)]

    def _loss(self, values, non_trainable, x, projections):
        """`L = sum_i <r_i, y_i> / sqrt(size)`, a random linear loss of the outputs."""
        terms = [
            ops.sum(y * r) / np.sqrt(max(int(np.prod(r.shape)), 1))
            for y, r in zip(self._pass(values, non_trainable, x), projections, strict=True)
        ]
        return sum(terms[1:], terms[0])

    def _compiled(self):
        """On JAX, the pass and the gradient compiled once each, else None.

        JAX runs an eager pass op by op and compiles every op it has not seen
        (MobileNetV3-Small: 1,261 compilations, 34 s for the whole check on a
        2-core CPU); one compiled function per shape does the same work. The
        noise of stochastic layers comes from the seed-generator states that
        `stateless_call` takes, so the compiled pass draws what the eager one
        draws. TensorFlow and PyTorch run eagerly (MobileNetV3's gradient
        took 17 s to trace on TensorFlow, 1-5 s to run).
        """
        if backend() != "jax":
            return None
        if self._jax is None:
            import jax

            self._jax = (jax.jit(self._pass), jax.jit(jax.grad(self._loss)))
        return self._jax

    def forward(self, point, values=None):
        """The float outputs (float32 tensors) at `point`, with `values` if given."""
        values = point.values if values is None else values
        compiled = self._compiled()
        if compiled is not None:
            return compiled[0](list(values), point.non_trainable, point.x)
        with seeded_global_rng(point.seed):
            return self._pass(values, point.non_trainable, point.x)

    def outputs(self, point, values=None):
        return [
            keras.ops.convert_to_numpy(y).astype("float64") for y in self.forward(point, values)
        ]

    def gradient(self, point, projections):
        """Gradient of `_loss` in the trainable values at `point`."""
        compiled = self._compiled()
        if compiled is not None:
            return compiled[1](list(point.values), point.non_trainable, point.x, projections)

        def loss(values):
            with seeded_global_rng(point.seed):
                return self._loss(values, point.non_trainable, point.x, projections)

        return gradient(loss, point.values)


def _filter_terms(w, g, channel_axes):
    """`(|cos(w_k, g_k)|, ||w_k|| ||g_k||)` per filter, flattened."""
    w = keras.ops.convert_to_numpy(w).astype("float64")
    g = keras.ops.convert_to_numpy(g).astype("float64")
    axes = wmath.reduction_axes(w.ndim, channel_axes)
    size = np.sqrt(np.sum(w * w, axis=axes) * np.sum(g * g, axis=axes)).ravel()
    dot = np.abs(np.sum(w * g, axis=axes)).ravel()
    return dot / np.where(size > 0, size, 1.0), size


def _radial_terms(problem, point, projections):
    """Per candidate: `_filter_terms` (None if not trainable); and the median
    filter size over every trainable kernel of the model."""
    grads = problem.gradient(point, projections)
    terms = [
        None
        if problem.slots[i] is None
        else _filter_terms(point.values[problem.slots[i]], grads[problem.slots[i]], s.channel_axes)
        for i, s in enumerate(problem.candidates)
    ]
    sizes = np.concatenate(
        [_filter_terms(point.values[j], grads[j], axes)[1] for j, axes in problem.population]
        or [np.zeros(0)]
    )
    return terms, float(np.median(sizes[sizes > 0])) if (sizes > 0).any() else 0.0


class _Radial:
    """What the radial test learned about each filter, over the test points.

    A filter is *informed* at a point when `||w_k|| ||g_k||` is above `WEAK`
    times the median over the filters of every trainable kernel; below that its gradient is float32
    noise and its cosine says nothing. It *varies* at a point when it is
    informed there and its cosine exceeds the tolerance. A kernel is refuted
    when one of its filters varies at every test point: a non-invariant
    filter does, while a filter whose gradient is mostly noise (a 3x3
    depthwise filter on 1x1 maps has no gradient but noise: its one effective
    direction is its own ray) may pass the informed bar at one point, rarely
    at every one. Kernels not refuted go to the finite test.
    """

    WEAK = 1e-3

    def __init__(self, n, cosine_tol):
        self.tol = cosine_tol
        self.points = 0
        self.worst = np.full(n, np.nan)  # largest cosine over informed filters and points
        self.strikes = [None] * n  # per filter: points at which it varied
        self.touched = [None] * n  # per filter: a gradient not exactly 0 at some point

    def add(self, terms, ref):
        self.points += 1
        for i, t in enumerate(terms):
            if t is None:
                continue
            cos, size = t
            informed = size > self.WEAK * ref
            varies = (informed & (cos > self.tol)).astype(int)
            self.strikes[i] = varies if self.strikes[i] is None else self.strikes[i] + varies
            self.touched[i] = (size > 0) | (False if self.touched[i] is None else self.touched[i])
            if informed.any():
                self.worst[i] = np.nanmax([self.worst[i], float(np.max(cos[informed]))])

    def refuted(self, i) -> bool:
        return self.strikes[i] is not None and bool((self.strikes[i] >= self.points).any())


def _radial(problem, points, first, base, cosine_tol):
    """The radial test at `points` test points (`first` is point 0, `base` its
    outputs). Returns the `_Radial` and the points used."""
    radial = _Radial(len(problem.candidates), cosine_tol)
    shapes = [a.shape for a in base]  # the outputs' shapes are the same at every point
    used = [first] + [problem.point(p) for p in range(1, points)]
    for point in used:
        projections = [
            ops.convert_to_tensor(problem.rng.standard_normal(shape), "float32") for shape in shapes
        ]
        radial.add(*_radial_terms(problem, point, projections))
    return radial, used


def _relative_change(out, base):
    ref = max(max((float(np.max(np.abs(b))) for b in base if b.size), default=0.0), 1e-12)
    diff = max(
        (float(np.max(np.abs(o - b))) for o, b in zip(out, base, strict=True) if o.size),
        default=0.0,
    )
    return diff / ref


def _confirm(problem, group, first, base, rtol, seed):
    """`{candidate: relative change}` of the finite test at point 0, bisecting failing groups."""
    rng = np.random.default_rng(seed)
    found, todo = {}, [list(group)]
    while todo:
        part = todo.pop()
        scaled = list(first.values)
        for i in part:
            j = problem.slots[i]
            f = _filter_factors(
                tuple(scaled[j].shape), problem.candidates[i].channel_axes, rng, 0.5, 2.0
            )
            # On the host: an eager multiply compiles once per kernel shape on JAX.
            w = keras.ops.convert_to_numpy(scaled[j])
            scaled[j] = ops.convert_to_tensor(w * f.astype(w.dtype), scaled[j].dtype)
        rel = _relative_change(problem.outputs(first, scaled), base)
        if rel <= rtol or len(part) == 1:
            found.update({i: rel for i in part})
        else:
            todo += [part[: len(part) // 2], part[len(part) // 2 :]]
    return found


def check_kernels(
    model,
    candidates,
    x=None,
    *,
    points: int = 2,
    cosine_tol: float = COSINE_TOL,
    rtol: float = RTOL,
    sharpen_batchnorm: bool = True,
    seed: int = 0,
):
    """Test each candidate kernel for per-filter scale invariance under `fit`.

    Args:
        model: a built Keras model.
        candidates: `Selection`s (variable and channel axes) to test.
        x: a batch of inputs, or None for random inputs (`sample_inputs`).
        points: weight settings at which the radial derivatives are taken.
        cosine_tol: largest |cos(w_k, dL/dw_k)| counted as zero.
        rtol: largest relative output change counted as unchanged.
        sharpen_batchnorm: set BatchNorm epsilon to 1e-20 during the test.
        seed: seed of every random draw.

    Returns:
        One `KernelCheck` per candidate, in order.
    """
    x = sample_inputs(model, seed=seed) if x is None else x
    candidates = list(candidates)
    with _sharp_batchnorm(model, sharpen_batchnorm), _float32_compute(model):
        changes, radial, verdicts = _eagerly(
            lambda: _run(_Problem(model, candidates, x, seed), points, cosine_tol, rtol, seed)
        )
    out = []
    for i, s in enumerate(candidates):
        rel = changes.get(i)
        verdict = verdicts[i] or ("invariant" if rel <= rtol else "changed")
        out.append(KernelCheck(s, verdict, float(radial.worst[i]), rel))
    return out


def _run(problem, points, cosine_tol, rtol, seed):
    """The radial test at every point, then the finite test at the first two."""
    first = problem.point(0)
    base = problem.outputs(first)
    radial, used = _radial(problem, points, first, base, cosine_tol)
    verdicts = [_verdict(problem.slots[i], radial, i) for i in range(len(problem.candidates))]
    passed = [i for i, v in enumerate(verdicts) if v is None]
    changes = {}
    for k, point in enumerate(used[:2]):
        if not passed:
            break
        found = _confirm(
            problem, passed, point, base if k == 0 else problem.outputs(point), rtol, seed + 1 + k
        )
        changes.update({i: max(changes.get(i, 0.0), rel) for i, rel in found.items()})
        passed = [i for i in passed if changes[i] <= rtol]
    return changes, radial, verdicts


def _verdict(slot, radial, i):
    """The verdict of the radial test, or None when the finite test decides."""
    if slot is None:
        return "not_trainable"
    if not radial.touched[i].any():
        return "no_gradient"
    if radial.refuted(i):
        return "varies"
    return None


def _eagerly(fn):
    """`fn()` where TensorFlow computes eagerly and records gradients.

    Keras may build the optimizer, and so resolve the selection, inside a
    traced train step; `tf.init_scope` leaves the trace but pauses every
    gradient tape of the thread. A fresh thread starts eager with recording on.
    """
    if backend() != "tensorflow":
        return fn()
    import tensorflow as tf

    if not tf.inside_function():
        return fn()
    result = {}

    def run():
        try:
            result["value"] = fn()
        except BaseException as e:  # re-raised in the caller's thread
            result["error"] = e

    worker = threading.Thread(target=run, name="keras-wrs-invariance")
    worker.start()
    worker.join()
    if "error" in result:
        raise result["error"]
    return result["value"]
