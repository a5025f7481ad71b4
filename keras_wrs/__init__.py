"""keras-wrs: weight rescaling instead of weight decay for Keras 3 BatchNorm networks.

Two halves: `keras_wrs.optimizers` (the optimizers that rescale BN-fed kernels
after each step) and `keras_wrs.dynamics` (callbacks that measure what
training does to the weights), over `selection` (which kernels are
scale-invariant), `verify` (its numerical check) and `math` (every formula).
"""

from keras_wrs._lazy import is_cli_start, lazy_getattr

__version__ = "0.1.0"

# Public name -> the submodule that defines it (None: the name is a submodule).
# Everything here runs on TensorFlow, JAX and PyTorch.
_PUBLIC = {
    "math": None,
    "optimizers": None,
    "dynamics": None,
    "describe_rescaling": "optimizers",
    "WRSMixin": "optimizers",
    "wrs": "optimizers",
    "Selection": "selection",
    "select_scale_invariant": "selection",
    "InvarianceReport": "verify",
    "verify_scale_invariance": "verify",
    "load_model": "saving",
    "WeightDynamics": "dynamics",
    "SpanNoise": "dynamics",
    "Sharpness": "dynamics",
    "plot_dynamics": "dynamics",
}
# Imported at once (outside the `keras-wrs` command): importing the optimizers
# registers them with Keras's saving registry, so that `keras.saving.load_model`
# finds them. The callbacks load on first use (their plots need matplotlib).
_EAGER = ("math", "optimizers", "selection", "verify")

__getattr__ = lazy_getattr(__name__, _PUBLIC)

if not is_cli_start():
    import importlib as _importlib

    for _name in _EAGER:
        _importlib.import_module(f"{__name__}.{_name}")
    del _name, _importlib

__all__ = sorted(n for n in _PUBLIC if n != "dynamics")
