"""What an exported model says about itself: names, shapes, classes, provenance."""

from __future__ import annotations

import importlib.metadata

from keras_wrs.export.inference import all_layers, input_shape
from keras_wrs.export.source import ExportSource, config_hash, find_config_value

__all__ = ["build_metadata", "library_versions"]

# Inference-time preprocessing layers worth telling a deployer about.
_PREPROCESSING = ("Rescaling", "Normalization", "Resizing", "CenterCrop")


def _dataset_name(config) -> str | None:
    dataset = find_config_value(config, "dataset")
    if isinstance(dataset, dict):
        dataset = dataset.get("name")
    return dataset if isinstance(dataset, str) else None


def _class_names(config, num_outputs: int | None) -> list[str] | None:
    names = find_config_value(config, "class_names")
    if names is None:
        return None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(
            f"`class_names` in the run configuration must be a list of strings. Received: "
            f"class_names={names!r}. Fix config.json."
        )
    if num_outputs is not None and len(names) != num_outputs:
        raise ValueError(
            f"`class_names` in the run configuration lists {len(names)} classes but the "
            f"model has {num_outputs} outputs. Fix config.json or export the matching model."
        )
    return names


def _inside_preprocessing(model) -> list[dict]:
    return [
        {"layer": layer.name, "class": type(layer).__name__}
        for layer in all_layers(model)
        if type(layer).__name__ in _PREPROCESSING
    ]


def _output_activation(model) -> str | None:
    activation = getattr(model.layers[-1], "activation", None)
    return getattr(activation, "__name__", None)


def build_metadata(source: ExportSource, model, input_name: str, output_name: str) -> dict:
    """Metadata stored in the ONNX file and the export manifest.

    Args:
        source: where the model came from (supplies the run configuration).
        model: the float32 inference copy.
        input_name: the exported input name.
        output_name: the exported output name.

    Returns:
        A JSON-ready dict: `model_name`, `input_name`, `input_shape` (batch
        as `null`), `input_dtype`, `output_name`, `output_shape`,
        `output_activation`, `class_names`, `dataset`, `preprocessing`
        (`outside_model` from the run configuration, `inside_model` layers),
        `keras_wrs_version` and `config_hash`; unknown values are `None`.
    """
    from keras_wrs import __version__

    out_shape = list(model.outputs[0].shape[1:])
    classes = out_shape[0] if len(out_shape) == 1 else None
    config = source.config
    return {
        "model_name": model.name,
        "input_name": input_name,
        "input_shape": [None, *input_shape(model)],
        "input_dtype": "float32",
        "output_name": output_name,
        "output_shape": [None, *out_shape],
        "output_activation": _output_activation(model),
        "class_names": _class_names(config, classes),
        "dataset": _dataset_name(config),
        "preprocessing": {
            "outside_model": find_config_value(config, "preprocessing"),
            "inside_model": _inside_preprocessing(model),
        },
        "keras_wrs_version": __version__,
        "config_hash": config_hash(config),
    }


def library_versions() -> dict[str, str | None]:
    """Versions of the libraries an export depends on (`None` if missing)."""
    versions = {}
    dists = ("keras-wrs", "keras", "tensorflow", "tensorflow-cpu", "tf2onnx", "onnx", "onnxruntime")
    for dist in dists:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    return versions
