"""Export trained models to SavedModel and ONNX, verified against Keras."""

from keras_wrs.export.api import FORMATS, ExportResult, export_model, parse_formats
from keras_wrs.export.batch import ParityBatch, load_batch, random_batch
from keras_wrs.export.cli import add_export_arguments, run_export
from keras_wrs.export.errors import OnnxConversionError, ParityError
from keras_wrs.export.inference import inference_copy
from keras_wrs.export.onnx_export import DEFAULT_OPSET, SUPPORTED_OPSETS, read_metadata
from keras_wrs.export.parity import FLOAT16, FLOAT32, ParityReport, ParityRow, Tolerance
from keras_wrs.export.source import ExportSource, load_source

__all__ = [
    "DEFAULT_OPSET",
    "FLOAT16",
    "FLOAT32",
    "FORMATS",
    "SUPPORTED_OPSETS",
    "ExportResult",
    "ExportSource",
    "OnnxConversionError",
    "ParityBatch",
    "ParityError",
    "ParityReport",
    "ParityRow",
    "Tolerance",
    "add_export_arguments",
    "export_model",
    "inference_copy",
    "load_batch",
    "load_source",
    "parse_formats",
    "random_batch",
    "read_metadata",
    "run_export",
]
