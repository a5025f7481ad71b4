"""The diagnostics half of keras-wrs: Keras callbacks that measure training dynamics.

`WeightDynamics` (filter norms, effective learning rate, angular updates),
`SpanNoise` (the weight noise outside the input span) and `Sharpness` (the top
Hessian eigenvalue against 2/lr) add their values to the epoch logs under the
keys of `logkeys`; `plot_dynamics` draws them. They run on TensorFlow, JAX and
PyTorch and work with any optimizer, keras-wrs's or Keras's own.
"""

from keras_wrs._lazy import lazy_getattr

# Public name -> the submodule that defines it (None: the name is a submodule),
# imported on first use: the log keys (`logkeys`) load without Keras, so that
# reading a run's files does not start a backend.
_PUBLIC = {
    "logkeys": None,
    "DynamicsCallback": "callback",
    "step_schedule": "callback",
    "kernel_keys": "kernels",
    "tracked_kernels": "kernels",
    "load_history": "plots",
    "plot_dynamics": "plots",
    "run_styles": "plots",
    "style_axis": "plots",
    "Sharpness": "sharpness",
    "SpanNoise": "span_noise",
    "WeightDynamics": "weight_dynamics",
}
__getattr__ = lazy_getattr(__name__, _PUBLIC)

__all__ = [
    "DynamicsCallback",
    "Sharpness",
    "SpanNoise",
    "WeightDynamics",
    "kernel_keys",
    "load_history",
    "logkeys",
    "plot_dynamics",
    "run_styles",
    "step_schedule",
    "style_axis",
    "tracked_kernels",
]
