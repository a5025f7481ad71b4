"""Names the recipes accept, in a module that imports nothing heavy.

`keras-wrs list`, `--help` and config checks read these without loading
Keras or a backend.
"""

__all__ = ["BUILTIN_DATASETS", "AUGMENTATIONS"]

BUILTIN_DATASETS = ("digits", "fashion_mnist", "synthetic_shapes")
AUGMENTATIONS = ("none", "crop", "crop_flip")
