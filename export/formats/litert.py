"""LiteRT (TFLite) flatbuffers: float32, full-integer int8 and dynamic-range, with metadata.

Both are converted from the SavedModel written from the float32 inference
copy with `tf.lite.TFLiteConverter.from_saved_model` (a live function with
variables converts to READ_VARIABLE ops that the interpreter cannot run).
The signature `serving_default` keeps the input and output names; the batch
dimension stays dynamic (`shape_signature` -1, resized by the interpreter at
run time) for both the float32 and the int8 file.

`tflite_int8` is full-integer post-training quantization: weights int8
per channel, activations int8 calibrated on a representative set, and int8
input and output (the form integer-only accelerators and microcontrollers
need). The converter silently keeps ops it cannot quantize in float32 between
QUANTIZE/DEQUANTIZE pairs; such a file is refused here, naming the layer and
op. The input and output scale and zero point are read back from the file
and recorded.

`tflite_dynamic` is dynamic-range quantization: int8 weights, float32
activations, input and output, and no calibration set. It is as small as the
int8 file and agreed with Keras on more test images in the benchmark
(`benchmarks/export_results.md`), but it is slower than float32 on CPU where
its kernels dequantize on the fly. TensorFlow 2.21 deprecates `tf.lite.Interpreter`: files are
run with the LiteRT interpreter (`ai-edge-litert`).

Metadata (the same JSON as the ONNX file's) is stored in the flatbuffer's
`metadata` table under the name `keras_wrs`; `read_tflite_metadata` reads it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from keras_wrs.export.errors import TfliteConversionError
from keras_wrs.export.formats._common import WriteJob, layer_classes, layer_of, quiet

__all__ = [
    "METADATA_NAME",
    "convert_tflite",
    "float_ops",
    "add_metadata",
    "read_tflite_metadata",
    "io_quantization",
    "quantize",
    "load_tflite_runner",
    "write",
]

METADATA_NAME = "keras_wrs"
_SIGNATURE = "serving_default"
_BOUNDARY = ("QUANTIZE", "DEQUANTIZE")
_PRECISION = {"tflite": "float32", "tflite_int8": "int8", "tflite_dynamic": "dynamic-range int8"}
_SCHEME = {
    "tflite_int8": "full-integer post-training quantization: weights int8 per channel, "
    "activations int8, int8 input and output",
    "tflite_dynamic": "dynamic-range quantization: weights int8, activations float32 "
    "(quantized on the fly where a kernel supports it), float32 input and "
    "output, no calibration",
}


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as err:
        raise ImportError(
            "Running LiteRT files needs 'ai-edge-litert' (TensorFlow 2.21 deprecates "
            "tf.lite.Interpreter). Install the export extra: `pip install 'keras-wrs[export]'`."
        ) from err
    return Interpreter


def convert_tflite(saved_model, model, calibration=None, dynamic_range: bool = False) -> bytes:
    """Converts a SavedModel to a float32, full-integer int8 or dynamic-range flatbuffer.

    Args:
        saved_model: the SavedModel directory written from `model`.
        model: the float32 Keras model (names layers in errors).
        calibration: `None` for float32, or a float32 array of
            representative model inputs for int8.
        dynamic_range: int8 weights and float32 activations, no calibration
            (`calibration` must be `None`).

    Returns:
        The flatbuffer's bytes.

    Raises:
        TfliteConversionError: the converter failed, or (int8) left ops in
            float32; the message names each layer and op.
    """
    import tensorflow as tf

    if dynamic_range and calibration is not None:
        raise ValueError("Dynamic-range quantization takes no calibration set.")
    fmt = "tflite_dynamic" if dynamic_range else "tflite" if calibration is None else "tflite_int8"
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model), [_SIGNATURE])
    if dynamic_range:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if calibration is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([x[None]] for x in calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    try:
        with quiet("tensorflow", level=logging.ERROR):
            content = converter.convert()
    except Exception as err:  # the converter raises ConverterError and others
        raise TfliteConversionError(
            f"The LiteRT converter (TensorFlow {tf.__version__}) failed on model "
            f"{model.name!r} for format {fmt!r} ({type(err).__name__}: {_first_lines(err)}). "
            "Export the other formats only.",
            unsupported=[],
            format=fmt,
        ) from err
    if calibration is not None:
        _raise_if_float(content, model)
    return content


def write(job: WriteJob, path: Path, fmt: str) -> dict:
    """Writes one LiteRT file, converted from `job.saved_model`, with its metadata.

    Args:
        job: what the export writes.
        path: the `.tflite` file to write.
        fmt: `tflite`, `tflite_int8` (calibrated on `job.calibration`) or
            `tflite_dynamic`.

    Returns:
        The file's facts for the manifest: precision, input and output
        quantization, whether the batch is dynamic, and the scheme.

    Raises:
        TfliteConversionError: see `convert_tflite`.
    """
    cal = job.calibration if fmt == "tflite_int8" else None
    content = convert_tflite(
        job.saved_model,
        job.model,
        None if cal is None else cal.inputs,
        dynamic_range=fmt == "tflite_dynamic",
    )
    path.write_bytes(content)
    io = io_quantization(path)
    dynamic = io["input"]["shape_signature"][0] == -1
    detail = {"precision": _PRECISION[fmt], "input_output": io, "dynamic_batch": dynamic}
    if fmt in _SCHEME:
        detail["quantization"] = {"scheme": _SCHEME[fmt]}
        if cal is not None:
            detail["quantization"]["calibration"] = cal.summary()
    path.write_bytes(add_metadata(content, {**job.metadata, "format": fmt, **detail}))
    return detail


def _first_lines(err, n: int = 6) -> str:
    return " | ".join(str(err).strip().splitlines()[:n])


def _model_object(content: bytes):
    from tensorflow.lite.tools import flatbuffer_utils

    return flatbuffer_utils.convert_bytearray_to_object(bytearray(content))


def _names(enum) -> dict:
    return {v: k for k, v in vars(enum).items() if not k.startswith("_")}


def float_ops(content: bytes) -> list[tuple[str, str]]:
    """Ops of a quantized flatbuffer that still compute in float32.

    Args:
        content: the flatbuffer.

    Returns:
        `(op, output tensor name)` pairs, QUANTIZE/DEQUANTIZE excluded.
    """
    from tensorflow.lite.python import schema_py_generated as schema

    model = _model_object(content)
    ops, types = _names(schema.BuiltinOperator), _names(schema.TensorType)
    found = []
    for graph in model.subgraphs:
        for op in graph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            name = ops.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")
            tensors = [graph.tensors[i] for i in list(op.inputs) + list(op.outputs) if i >= 0]
            if name not in _BOUNDARY and any(types[t.type] == "FLOAT32" for t in tensors):
                found.append((name, graph.tensors[op.outputs[0]].name.decode()))
    return found


def _raise_if_float(content: bytes, model) -> None:
    found = float_ops(content)
    if not found:
        return
    layers = layer_classes(model)
    rows = [(layer_of(name.split(";")[0], layers), op, name) for op, name in found]
    listed = "; ".join(
        f"op {op} in layer {layer!r} (class {layers.get(layer, '?')}, tensor {name!r})"
        for layer, op, name in rows
    )
    raise TfliteConversionError(
        f"The LiteRT converter cannot quantize {len(rows)} op(s) of model {model.name!r} to "
        f"int8 and left them in float32: {listed}. A full-integer model cannot contain them; "
        "rewrite that layer with ops that have int8 kernels, or use format 'tflite' (float32).",
        unsupported=[(layer, layers.get(layer, "?"), op, name) for layer, op, name in rows],
        format="tflite_int8",
    )


def add_metadata(content: bytes, metadata: dict) -> bytes:
    """Stores `metadata` as JSON in the flatbuffer's metadata table.

    Args:
        content: the flatbuffer.
        metadata: JSON-serializable values.

    Returns:
        The new flatbuffer's bytes.
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = _model_object(content)
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(metadata).encode(), dtype=np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata = list(model.metadata or []) + [entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def read_tflite_metadata(path) -> dict:
    """The metadata `add_metadata` stored.

    Args:
        path: a `.tflite` file written by keras-wrs.

    Returns:
        A dict, empty when the file carries no keras-wrs metadata.
    """
    model = _model_object(Path(path).read_bytes())
    for entry in model.metadata or []:
        name = entry.name.decode() if isinstance(entry.name, bytes) else entry.name
        if name == METADATA_NAME:
            return json.loads(bytes(model.buffers[entry.buffer].data).decode())
    return {}


def io_quantization(path) -> dict:
    """Input and output dtype, scale and zero point of a flatbuffer.

    Args:
        path: a `.tflite` file.

    Returns:
        `{"input": {...}, "output": {...}}`, each with `dtype`, `scale`,
        `zero_point` (scale 0 for float tensors) and `shape_signature`.
    """
    interpreter = _interpreter_class()(model_path=str(path))
    runner = interpreter.get_signature_runner(_SIGNATURE)

    def describe(details):
        (detail,) = details.values()
        scale, zero = detail["quantization"]
        return {
            "dtype": np.dtype(detail["dtype"]).name,
            "scale": float(scale),
            "zero_point": int(zero),
            "shape_signature": [int(d) for d in detail["shape_signature"]],
        }

    return {
        "input": describe(runner.get_input_details()),
        "output": describe(runner.get_output_details()),
    }


def quantize(x: np.ndarray, dtype, scale: float, zero: int) -> np.ndarray:
    """Float inputs to a LiteRT tensor's type: `clip(round(x / scale) + zero, min, max)`.

    Args:
        x: float32 values.
        dtype: the tensor's NumPy type.
        scale: its scale; 0 marks a float tensor (`x` is only cast).
        zero: its zero point.

    Returns:
        An array of `dtype`.
    """
    if scale == 0:
        return x.astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(dtype)


def load_tflite_runner(path, input_name: str, output_name: str, num_threads: int | None = None):
    """A LiteRT interpreter as a function from float32 inputs to float32 outputs.

    int8 inputs are quantized with the file's input scale and zero point and
    int8 outputs dequantized, as a deployment would.

    Args:
        path: the `.tflite` file.
        input_name: the signature's input name.
        output_name: the signature's output name.
        num_threads: interpreter threads (`None`: LiteRT's default).

    Returns:
        A function from a float32 array to the output array.
    """
    interpreter = _interpreter_class()(model_path=str(path), num_threads=num_threads)
    runner = interpreter.get_signature_runner(_SIGNATURE)
    (inp,) = runner.get_input_details().values()
    (out,) = runner.get_output_details().values()
    in_scale, in_zero = inp["quantization"]
    out_scale, out_zero = out["quantization"]

    def run(inputs: np.ndarray) -> np.ndarray:
        x = quantize(np.asarray(inputs, np.float32), inp["dtype"], in_scale, in_zero)
        y = runner(**{input_name: x})[output_name]
        if out_scale:
            return (y.astype(np.float32) - out_zero) * np.float32(out_scale)
        return np.asarray(y, np.float32)

    return run
