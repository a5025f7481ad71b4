"""One training run: `train.train` over `model.fit`, with its optimizer, callbacks and devices.

`train` (the function) is `keras_wrs.recipes.train`. Modules: `train` (the
entry point), `optim` (optimizers, schedules, the weight-decay rule),
`callbacks` (StopOnNaN, throughput, the short progress bar, the dynamics
callbacks), `system` (devices, precision, XLA, strategies), `cluster`
(`TF_CONFIG` and several workers) and `watchdog` (stops a worker that cannot
reach its peers).
"""

__all__ = []
