"""keras-wrs: weight rescaling instead of weight decay for Keras 3 BatchNorm networks."""

import os as _os
import sys as _sys

from keras_wrs._lazy import lazy_getattr

__version__ = "0.1.0"

# The `keras-wrs` command imports Keras (whose import loads the backend,
# TensorFlow by default) only once a command needs it, so that `--help` and
# argument errors answer at once; its commands import what they use. Anywhere
# else, `import keras_wrs` registers the optimizers with Keras's saving
# registry at once, so that `keras.saving.load_model` finds them.
if _os.path.basename(getattr(_sys, "argv", [""])[0] or "") not in ("keras-wrs", "keras-wrs.exe"):
    from keras_wrs import math, optimizers  # noqa: F401
    from keras_wrs.describe import describe_rescaling  # noqa: F401
    from keras_wrs.optimizers import WRSMixin, wrs  # noqa: F401
    from keras_wrs.selection import Selection, select_scale_invariant  # noqa: F401
    from keras_wrs.verify import InvarianceReport, verify_scale_invariance  # noqa: F401

# Everything here runs on TensorFlow, JAX and PyTorch. The callbacks and plots
# load on first use: `import keras_wrs` stays light (no matplotlib).
_LAZY = {
    "math": None,
    "optimizers": None,
    "describe_rescaling": "describe",
    "WRSMixin": "optimizers",
    "wrs": "optimizers",
    "Selection": "selection",
    "select_scale_invariant": "selection",
    "InvarianceReport": "verify",
    "verify_scale_invariance": "verify",
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
