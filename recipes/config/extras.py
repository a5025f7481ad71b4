"""Optional packages a run needs, checked before any work.

A run that trains for an hour and then fails at plotting loses its summary;
here every package the configuration will need is looked up first (without
importing it), and a missing one is reported with the `pip` command and the
setting that makes it unnecessary. This module imports nothing heavy, so the
command line can call it before TensorFlow loads.
"""

from __future__ import annotations

import importlib.util

__all__ = ["MissingExtraError", "installed", "required_extras", "check_extras"]

# Built-in data sets that need a package of their own. TFDS sets need
# tensorflow-datasets: `data.check_dataset_name` says so before any work.
_DATASET_PACKAGES = {"digits": ("sklearn", "scikit-learn")}


class MissingExtraError(ImportError):
    """A package the run needs is not installed."""


def installed(module):
    """Whether `module` can be imported (found without importing it)."""
    return importlib.util.find_spec(module) is not None


def required_extras(config, report=False):
    """`[(module, pip name, why)]` the run of `config` imports.

    Args:
        config: a recipe `Config` (its `plots`, `tensorboard`, `dataset`).
        report: the command also writes a report (tables and plots), as
            `keras-wrs compare` and a multi-run `keras-wrs train` do.
    """
    needed = []
    if config.plots or report:
        needed.append(("matplotlib", "matplotlib", "plots (--set plots=false)"))
    # Keras's TensorBoard callback writes through tf.summary: without
    # TensorFlow the trainer skips it (with a warning) instead.
    if config.tensorboard and installed("tensorflow"):
        needed.append(("tensorboard", "tensorboard", "TensorBoard logs (--set tensorboard=false)"))
    if config.dataset in _DATASET_PACKAGES:
        module, pip = _DATASET_PACKAGES[config.dataset]
        needed.append((module, pip, f"the {config.dataset} data set"))
    return needed


def check_extras(config, report=False):
    """Raise MissingExtraError naming every missing package and its pip command.

    Args:
        config: a recipe `Config`.
        report: see `required_extras`.

    Raises:
        MissingExtraError: at least one package is missing.
    """
    missing = [
        (pip, why) for module, pip, why in required_extras(config, report) if not installed(module)
    ]
    if missing:
        names = " ".join(pip for pip, _ in missing)
        needs = "; ".join(f"{pip} for {why}" for pip, why in missing)
        raise MissingExtraError(
            f"Missing package(s) for this run: {needs}. Install them with "
            f"`pip install {names}` (or all of them: `pip install "
            f"'keras-wrs[recipes]'`)."
        )
