"""keras-wrs: weight rescaling instead of weight decay for Keras 3 BatchNorm networks."""

from keras_wrs._lazy import lazy_getattr

from keras_wrs._backend import require_tensorflow as _require_tensorflow

_require_tensorflow()

from keras_wrs import math  # noqa: E402
from keras_wrs import optimizers  # noqa: E402
from keras_wrs.describe import describe_rescaling  # noqa: E402
from keras_wrs.optimizers import WRSMixin, wrs  # noqa: E402
from keras_wrs.selection import Selection, select_scale_invariant  # noqa: E402
from keras_wrs.verify import InvarianceReport, verify_scale_invariance  # noqa: E402

__version__ = "0.1.0"

# The callbacks use TensorFlow directly (gradient tapes, tf.distribute); they
# load on first use, so the optimizers import under any Keras backend.
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
