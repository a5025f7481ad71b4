"""Keras's own optimizers with weight rescaling, under their Keras names."""

import keras

from keras_wrs.optimizers.factory import own_class

__all__ = [
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
]

SGD = own_class(keras.optimizers.SGD)
Adam = own_class(keras.optimizers.Adam)
AdamW = own_class(keras.optimizers.AdamW)
RMSprop = own_class(keras.optimizers.RMSprop)
Nadam = own_class(keras.optimizers.Nadam)
Lion = own_class(keras.optimizers.Lion)
Lamb = own_class(keras.optimizers.Lamb)
Adagrad = own_class(keras.optimizers.Adagrad)
Adadelta = own_class(keras.optimizers.Adadelta)
Adamax = own_class(keras.optimizers.Adamax)
Adafactor = own_class(keras.optimizers.Adafactor)
Muon = own_class(keras.optimizers.Muon)
