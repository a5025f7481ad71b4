"""keras-wrs: weight rescaling instead of weight decay for Keras 3 BatchNorm networks."""

from keras_wrs._backend import require_tensorflow as _require_tensorflow

_require_tensorflow()

from keras_wrs import math  # noqa: E402

__version__ = "0.1.0"

__all__ = ["math"]
