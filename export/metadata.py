"""What an export says about itself: the model's facts and provenance, and the manifest."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from keras_wrs.export import atomic
from keras_wrs.export.formats import onnx as ox
from keras_wrs.export.formats import saved_model as sm
from keras_wrs.export.inference import input_shape
from keras_wrs.export.source import ExportSource, run_facts
from keras_wrs.selection import iter_layers

__all__ = ["artifact_size", "build_manifest", "build_metadata", "library_versions"]

# Inference-time preprocessing layers worth telling a deployer about.
_PREPROCESSING = ("Rescaling", "Normalization", "Resizing", "CenterCrop")


def _class_names(names, num_outputs: int | None) -> list[str] | None:
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
        for layer in iter_layers(model)
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
    facts = run_facts(source)
    return {
        "model_name": model.name,
        "input_name": input_name,
        "input_shape": [None, *input_shape(model)],
        "input_dtype": "float32",
        "output_name": output_name,
        "output_shape": [None, *out_shape],
        "output_activation": _output_activation(model),
        "class_names": _class_names(facts["class_names"], classes),
        "dataset": facts["dataset"],
        "preprocessing": {
            "outside_model": facts["preprocessing"],
            "inside_model": _inside_preprocessing(model),
        },
        "keras_wrs_version": __version__,
        "config_hash": facts["config_hash"],
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


def artifact_size(path: Path) -> int:
    """Bytes of a file, or of every file under a directory (a SavedModel)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _artifacts(files, staging, sizes, details, report, labels) -> dict:
    rows = {}
    for row in report.rows:
        rows.setdefault(labels.get(row.runtime), []).append(row.as_dict())
    return {
        name: {
            "path": str(path.relative_to(staging)),
            "size": sizes[name],
            **details.get(name, {}),
            "parity": rows.get(name, []),
        }
        for name, path in files.items()
    }


def build_manifest(source, written, staging, sizes, metadata, opset, report, labels, cal) -> dict:
    """The content of `export.json`: every file with its size, facts and parity rows.

    Args:
        source: the `ExportSource`.
        written: `keras_wrs.export.formats.Written`.
        staging: the staging directory (paths are written relative to it).
        sizes: artifact name to size in bytes.
        metadata: `build_metadata`'s dict.
        opset: the ONNX opset, or `None`.
        report: the `ParityReport`.
        labels: runtime label to the artifact it checks.
        cal: the `CalibrationSet`, or `None`.

    Returns:
        A JSON-ready dict.
    """
    files = written.files
    return {
        "kind": atomic.MANIFEST_KIND,
        "source": source.label,
        "files": {name: str(path.relative_to(staging)) for name, path in files.items()},
        "sizes": sizes,
        "artifacts": _artifacts(files, staging, sizes, written.details, report, labels),
        "serving": {
            "signature": "serving_default",
            "endpoint": sm.ENDPOINT,
            "onnx_batch_dim": ox.BATCH_DIM,
        },
        "opset": opset,
        "metadata": metadata,
        "calibration": None if cal is None else cal.summary(),
        "parity": report.as_dict(),
        "errors": {fmt: str(err) for fmt, err in written.errors.items()},
        "versions": library_versions(),
    }
