"""The diagnostics half of keras-wrs: Keras callbacks that measure training dynamics.

`WeightDynamics` (filter norms, effective learning rate, angular updates),
`SpanNoise` (the weight noise outside the input span) and `Sharpness` (the top
Hessian eigenvalue against 2/lr) add their values to the epoch logs under the
keys of `logkeys`; `plot_dynamics` draws them. They run on TensorFlow, JAX and
PyTorch and work with any optimizer, keras-wrs's or Keras's own.
"""

from keras_wrs.dynamics import logkeys
from keras_wrs.dynamics.callback import DynamicsCallback, step_schedule
from keras_wrs.dynamics.kernels import kernel_keys, tracked_kernels
from keras_wrs.dynamics.plots import load_history, plot_dynamics, run_styles, style_axis
from keras_wrs.dynamics.sharpness import Sharpness
from keras_wrs.dynamics.span_noise import SpanNoise
from keras_wrs.dynamics.weight_dynamics import WeightDynamics

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
