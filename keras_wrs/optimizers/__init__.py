"""The weight-rescaling half of keras-wrs: Keras optimizers that rescale BN-fed kernels.

`WRSMixin` (the algorithm, `wrs_mixin.py`) adds weight rescaling to any Keras
optimizer through its public hooks; `wrs(cls)` applies it to a class, yours
included. `SGD`, `Adam`, `AdamW`, `RMSprop`, `Nadam`, `Lion`, `Lamb`,
`Adagrad`, `Adadelta`, `Adamax`, `Adafactor` and `Muon` are the Keras
optimizers of the same name with the mixin applied, registered for `.keras`
saving as `keras_wrs>SGD`, ... `describe_rescaling` shows what one rescales.

The other answers to weight decay on scale-invariant kernels, each matched
against its reference: `SGDP` and `AdamP` (`sgdp.py`), `AdamH` (`adamh.py`,
built on `WRSMixin`), `SGDC` and `AdamC` (`corrected_decay.py`).
"""

from keras_wrs.optimizers.adamh import AdamH
from keras_wrs.optimizers.corrected_decay import SGDC, AdamC
from keras_wrs.optimizers.describe import describe_rescaling, parameter_coverage
from keras_wrs.optimizers.factory import base_optimizer, wrs
from keras_wrs.optimizers.keras_twins import (
    SGD,
    Adadelta,
    Adafactor,
    Adagrad,
    Adam,
    Adamax,
    AdamW,
    Lamb,
    Lion,
    Muon,
    Nadam,
    RMSprop,
)
from keras_wrs.optimizers.sgdp import SGDP, AdamP
from keras_wrs.optimizers.wrs_mixin import WRSMixin

__all__ = [
    "WRSMixin",
    "wrs",
    "base_optimizer",
    "describe_rescaling",
    "parameter_coverage",
    "SGD",
    "Adam",
    "AdamW",
    "RMSprop",
    "Nadam",
    "Lion",
    "Lamb",
    "Adagrad",
    "Adadelta",
    "Adamax",
    "Adafactor",
    "Muon",
    "SGDP",
    "AdamP",
    "AdamH",
    "SGDC",
    "AdamC",
]
