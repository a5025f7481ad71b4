"""`SpanNoise`: the weight-noise callback (see `keras_wrs.span` for the math)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from keras_wrs import math as wmath
from keras_wrs._backend import float64_scope, jit
from keras_wrs.checks import positive_int
from keras_wrs.dynamics import logkeys
from keras_wrs.dynamics import span as wspan
from keras_wrs.dynamics.callback import DynamicsCallback
from keras_wrs.dynamics.kernels import kernel_keys, outside_graph, tracked_kernels
from keras_wrs.dynamics.logkeys import NOISE_METRICS
from keras_wrs.dynamics.probe import (
    as_tensor_batch,
    check_probe_inputs,
    probe_batches,
    take_examples,
)

__all__ = ["SpanNoise"]

logger = logging.getLogger("keras_wrs")

_METHODS = ("eigh", "randomized")


class SpanNoise(DynamicsCallback):
    """Logs the weight noise of Dense/Conv kernels: the part outside their input span.

    For each watched kernel `K` (Dense, Conv1D/2D/3D with groups=1) it
    estimates the span `S` of the layer's inputs on `probe` (Dense: the
    input vectors; Conv: the im2col patches with the layer's own kernel
    size, strides, padding and dilation) and adds to the epoch's `logs`:
    `noise_ratio_mean/K` and `noise_ratio_max/K` (over filters, of
    `||w_perp_k|| / ||w_k||`), `noise_norm/K` (`||w_perp||`), `span_norm/K`
    (`||w_par||`) and `span_rank/K` (dimension of `S`). Measured before
    the first step (logged as `noise_ratio_mean_initial/K`, ... in the
    first epoch's logs, NaN in later ones), at the end of every
    `every_n_epochs`-th epoch (other epochs log NaN) and at train end (in
    `series`).

    Cost per measurement, `d = prod(kernel_size) * c_in` (4608 for a 3x3
    conv on 512 channels), `N` probe vectors (examples times output
    positions): `method="eigh"` accumulates the Gram matrix, `O(N d^2)`
    (in float64 by default: on CPU several times a float32 step of the
    same size), plus a `O(d^3)` eigendecomposition, `d^2` floats of memory
    per layer.
    `method="randomized"` never forms it: `2 + power_iterations` passes
    over the probe at `O(N d k)` each, `k = sketch_size`, then `O(d k^2)`;
    exact when the span's rank is at most `k - 10`, otherwise directions
    beyond the k-th count as noise (an over-estimate; see
    `span.randomized_spans`). It only pays when `d` is well above
    `(2 + power_iterations) * k`; layers with `d <= 2 k` get the exact span.
    Im2col itself is `O(N d)` (strided slices of the padded input). Keep
    `N` a few times `d` at most: 64-256 examples are usually enough. A
    layer fed directly by a model input has a fixed span, computed once.
    Under JAX, float64 runs in a `jax.enable_x64` scope. Layers' inputs are read in inference mode by
    default (`training=False`), without side effects either way.

    Args:
        probe: inputs `x`, `(x, y)` or an iterable of batches (a
            `tf.data.Dataset`, a PyTorch `DataLoader`); 64-256 training
            examples.
        kernels: layers to measure, by layer name or kernel variable path
            (with `default=False`: only these).
        default: watch the rescaled (or scale-invariant) kernels too;
            unsupported ones (depthwise, transposed) and those of layers
            inside a subclassed layer or a nested model (their inputs are
            not in the model's graph) are skipped, with a log line each.
            Named in `kernels`, they raise a ValueError.
        every_n_epochs: measurement period in epochs.
        rel_threshold: eigenvalues above `rel_threshold * max` span `S`.
        method: `"eigh"` (exact) or `"randomized"`.
        sketch_size: `k` for `"randomized"`.
        power_iterations: extra passes for `"randomized"`.
        dtype: `"float64"` (default; eigenvalue rounding near `1e-16 *
            max`) or `"float32"` (rounding near `1e-7 * d * max`: use
            `rel_threshold >= 1e-4`).
        training: BatchNorm mode when reading layer inputs.
        batch_size: probe rows per forward pass for arrays.
        max_batches: use at most this many probe batches.
        probe_size: use at most this many probe examples (the first ones).
        log_dir: optional directory for TensorBoard step series.

    Example:
        >>> noise = SpanNoise(x_train[:512], every_n_epochs=5)
        >>> model.fit(x, y, epochs=20, callbacks=[noise])
    """

    def __init__(
        self,
        probe,
        kernels: Sequence[str] = (),
        default: bool = True,
        every_n_epochs: int = 1,
        rel_threshold: float = 1e-6,
        method: str = "eigh",
        sketch_size: int = 256,
        power_iterations: int = 1,
        dtype: str = "float64",
        training: bool = False,
        batch_size: int = 256,
        max_batches: int | None = None,
        probe_size: int | None = None,
        log_dir: str | None = None,
    ):
        super().__init__(log_dir)
        self.every_n_epochs = positive_int(every_n_epochs, "every_n_epochs")
        if not (isinstance(rel_threshold, (int, float)) and 0 <= rel_threshold < 1):
            raise ValueError(
                f"`rel_threshold` must be a number in [0, 1). Received: rel_threshold={rel_threshold!r}"
            )
        if method not in _METHODS:
            raise ValueError(f"`method` must be one of {_METHODS}. Received: method={method!r}")
        if dtype not in ("float32", "float64"):
            raise ValueError(f'`dtype` must be "float32" or "float64". Received: dtype={dtype!r}')
        positive_int(sketch_size, "sketch_size")
        if (
            isinstance(power_iterations, bool)
            or not isinstance(power_iterations, int)
            or power_iterations < 0
        ):
            raise ValueError(
                f"`power_iterations` must be an integer >= 0. Received: power_iterations={power_iterations!r}"
            )
        self.kernels = [kernels] if isinstance(kernels, str) else list(kernels)
        self.default = default
        self.rel_threshold, self.method, self.dtype = float(rel_threshold), method, dtype
        self.sketch_size, self.power_iterations, self.training = (
            sketch_size,
            power_iterations,
            training,
        )
        self.probe_size = positive_int(probe_size, "probe_size", none_ok=True)
        batches = probe_batches(
            probe,
            "probe",
            False,
            positive_int(batch_size, "batch_size"),
            positive_int(max_batches, "max_batches", none_ok=True),
        )
        self._batches = [as_tensor_batch(x) for x, _ in take_examples(batches, self.probe_size)]
        self.spans: dict = {}

    def setup(self):
        check_probe_inputs(self.model, self._batches[0], "probe")
        chosen = []
        tracked = tracked_kernels(self.model, self.kernels, self.default)
        outside = {id(s) for s in outside_graph(self.model, tracked)}
        for s in tracked:
            reason = wspan.span_unsupported_reason(s.layer)
            if reason is None and id(s) in outside:
                # Its input is not a tensor of this model's graph: the layer is
                # called inside a subclassed layer or a nested model.
                reason = (
                    f"layer {s.layer.name!r} sits inside a subclassed layer or a nested "
                    f"model, so its input is not in model {self.model.name!r}'s graph"
                )
            if reason is None:
                chosen.append(s)
            elif s.reason.startswith("named"):
                raise ValueError(
                    f"`kernels` names {s.path!r}, whose weight noise cannot be measured: {reason}."
                )
            else:
                logger.info("keras-wrs SpanNoise: skipping %s: %s", s.path, reason)
        if not chosen:
            raise ValueError(
                "SpanNoise has no Dense or Conv kernel to measure (depthwise, separable "
                "and transposed convolutions are not supported). Name one with `kernels=`."
            )
        self.selections, self.keys = chosen, kernel_keys(chosen)
        self._features = self._feature_model(chosen)
        inputs = [id(t) for t in keras.tree.flatten(self.model.inputs)]
        self._fixed = [id(s.layer.input) in inputs for s in chosen]
        self._cache = {}
        # A resumed fit starts at step > 0: its first state is not the initial one.
        self._initial = (
            self.guard("span_noise", self._measure, self.step) if self.step == 0 else None
        )

    def _feature_model(self, chosen):
        try:
            fm = keras.Model(self.model.inputs, [s.layer.input for s in chosen])
        except Exception as e:
            raise ValueError(
                "SpanNoise reads each layer's input from the model's graph, which needs a "
                "functional or Sequential model whose measured layers are called once and "
                f"not inside a nested model ({type(e).__name__}: {e})."
            ) from None
        self._feature_vars = fm.variables

        def features(values, x):
            with keras.StatelessScope(state_mapping=list(zip(fm.variables, values, strict=True))):
                out = fm(x, training=self.training)
            return out if isinstance(out, (list, tuple)) else [out]

        return jit(features)

    # Measurement ---------------------------------------------------------
    def _patches(self, x, todo):
        feats = self._features(self.current(self._feature_vars), x)
        return {i: wspan.layer_patches(self.selections[i].layer, feats[i]) for i in todo}

    def _dim(self, i):
        return int(np.prod(self.selections[i].variable.shape[:-1]))

    def _compute_spans(self, todo):
        # The randomized path only pays where d is well above the sketch:
        # smaller layers get the exact span (cheaper there, and exact).
        small = [i for i in todo if self.method == "eigh" or self._dim(i) <= 2 * self.sketch_size]
        out = (
            self._randomized([i for i in todo if i not in small]) if len(small) < len(todo) else {}
        )
        if not small:
            return out
        grams = dict.fromkeys(small)
        for x in self._batches:
            for i, p in self._patches(x, small).items():
                grams[i] = wspan.accumulate_gram(grams[i], p, self.dtype)
        out.update({i: wspan.exact_span(g, self.rel_threshold) for i, g in grams.items()})
        return out

    def _randomized(self, todo):
        def apply_grams(ms):
            out = [None] * len(todo)
            for x in self._batches:
                patches = self._patches(x, todo)
                for j, i in enumerate(todo):
                    p = ops.cast(patches[i], self.dtype)
                    term = ops.transpose(p) @ (p @ ms[j])  # `@`: float64 (see keras_wrs.math)
                    out[j] = term if out[j] is None else out[j] + term
            return out

        dims = [self._dim(i) for i in todo]
        spans = wspan.randomized_spans(
            apply_grams,
            dims,
            self.rel_threshold,
            self.sketch_size,
            self.power_iterations,
            dtype=self.dtype,
        )
        return dict(zip(todo, spans, strict=True))

    def _measure(self, step, keys=None):
        with float64_scope(self.dtype):  # JAX computes float64 only in x64 mode
            values = self._noise_values()
        keys = keys or logkeys.keys(NOISE_METRICS, self.keys)
        self.record(step, keys, values)
        return values

    def _noise_values(self):
        todo = [i for i in range(len(self.selections)) if not (self._fixed[i] and i in self._cache)]
        self._cache.update(self._compute_spans(todo))
        kernels = self.current([s.variable for s in self.selections])
        rows = []
        for i, (s, w) in enumerate(zip(self.selections, kernels, strict=True)):
            span, comp, rank = self._cache[i]
            stats = wspan.noise_stats(wmath.kernel_matrix(w, s.channel_axes), span, comp)
            rows.append(ops.concatenate([stats, ops.cast(ops.reshape(rank, (1,)), stats.dtype)]))
            self.spans[self.keys[i]] = (span, comp, rank)
        return ops.stack(rows)

    # Schedule ------------------------------------------------------------
    def epoch_values(self, epoch):
        names = logkeys.keys(NOISE_METRICS, self.keys)
        out = self._initial_values(names)
        values = None
        if epoch % self.every_n_epochs == 0:
            values = self.guard("span_noise", self._measure, self.step)
        out.update(
            dict.fromkeys(names, float("nan"))
            if values is None
            else zip(names, ops.convert_to_numpy(values).reshape(-1), strict=True)
        )
        return out

    def _initial_values(self, names):
        """The measurement before the first step, in the first epoch's logs (NaN after)."""
        initial = [logkeys.initial(n) for n in names]
        values, self._initial = self._initial, None
        if values is None:
            return dict.fromkeys(initial, float("nan"))
        return dict(zip(initial, ops.convert_to_numpy(values).reshape(-1), strict=True))

    def on_train_end(self, logs=None):
        last = (
            self.series.get(f"noise_norm/{self.keys[0]}") if getattr(self, "keys", None) else None
        )
        if last is not None and last[-1][0] != self.step:
            self.guard("span_noise", self._measure, self.step)
        super().on_train_end(logs)
