"""keras-wrs: weight rescaling instead of weight decay for Keras 3 BatchNorm networks."""

from keras_wrs import math
from keras_wrs import optimizers
from keras_wrs._lazy import lazy_getattr
from keras_wrs.describe import describe_rescaling
from keras_wrs.optimizers import WRSMixin, wrs
from keras_wrs.selection import Selection, select_scale_invariant
from keras_wrs.verify import InvarianceReport, verify_scale_invariance

__version__ = "0.1.0"

# Everything here runs on TensorFlow, JAX and PyTorch. The callbacks and plots
# load on first use: `import keras_wrs` stays light (no matplotlib).
_LAZY = {
    "WeightDynamics": "dynamics",
    "SpanNoise": "noise",
    "Sharpness": "sharpness",
    "plot_dynamics": "plots",
}

__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = [
    "InvarianceReport",
    "Selection",
    "Sharpness",
    "SpanNoise",
    "WRSMixin",
    "WeightDynamics",
    "describe_rescaling",
    "math",
    "optimizers",
    "plot_dynamics",
    "select_scale_invariant",
    "verify_scale_invariance",
    "wrs",
]
