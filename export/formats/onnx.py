"""ONNX through tf2onnx: pinned opset, stable names, a named batch axis, metadata.

The ONNX graph is converted from the SavedModel written from the same
float32 copy, not from a live `tf.function`: freezing a live function turns
tensors a layer computed eagerly (`Normalization`'s mean and variance) into
extra graph inputs, which ONNX Runtime then demands ("Required inputs ...
are missing"); the SavedModel stores them as constants.

Accepted opsets are 9 to 18: 18 is the newest tf2onnx 1.17 maps to an IR
version, and from 9 on tf2onnx writes the weights as initializers only
(at 7 and 8 they also appear as graph inputs, and below 7 ONNX Runtime has
no kernel for the ops Normalization needs); a test converts a model at each
of them. The default opset is 15: it is tf2onnx's own default and inside the
range tf2onnx 1.17 tests (14 to 18). The ops a folded BatchNorm CNN classifier
lowers to (Conv, MatMul/Gemm, pooling, Relu, Softmax, Reshape, Squeeze) do all
they need for float32 at opset 15; their later versions add data types and
attributes (bfloat16, AveragePool dilations) these models do not use. An
older opset is loaded by more runtimes (ONNX Runtime since 1.10, 2021, and
accelerators whose ONNX parsers lag the standard). The opset is written into
the model's `opset_import`, its metadata and the export manifest.
"""

from __future__ import annotations

import json
from pathlib import Path

from keras_wrs.export.errors import OnnxConversionError
from keras_wrs.export.formats._common import WriteJob, layer_classes, layer_of, quiet, require

__all__ = [
    "DEFAULT_OPSET",
    "SUPPORTED_OPSETS",
    "BATCH_DIM",
    "validate_opset",
    "convert_to_onnx",
    "check_graph_inputs",
    "unconverted_ops",
    "float16_copy",
    "save_onnx",
    "read_metadata",
    "load_onnx_runner",
    "write",
    "write_float16",
]

DEFAULT_OPSET = 15
SUPPORTED_OPSETS = tuple(range(9, 19))  # see the module docstring
BATCH_DIM = "batch"
_ONNX_DOMAINS = ("", "ai.onnx")


def _require(module: str):
    return require(module, "ONNX export")


def validate_opset(opset) -> int:
    """Checks an ONNX opset against the range tf2onnx supports.

    Args:
        opset: the requested opset.

    Returns:
        The opset as an int.

    Raises:
        ValueError: outside `SUPPORTED_OPSETS`.
    """
    if isinstance(opset, bool) or not isinstance(opset, int) or opset not in SUPPORTED_OPSETS:
        raise ValueError(
            f"`opset` must be an integer from {SUPPORTED_OPSETS[0]} to {SUPPORTED_OPSETS[-1]} "
            f"(the opsets tf2onnx converts to). Received: opset={opset!r}. The default, "
            f"{DEFAULT_OPSET}, suits CNN classifiers."
        )
    return opset


def convert_to_onnx(saved_model, model, opset: int, input_name: str, output_name: str):
    """Converts a float32 SavedModel with tf2onnx.

    Args:
        saved_model: the SavedModel directory written from `model`.
        model: the float32 Keras model it was written from (names layers in
            errors).
        opset: a validated ONNX opset.
        input_name: the ONNX input name (the signature's input).
        output_name: the ONNX output name (the signature's output key).

    Returns:
        An `onnx.ModelProto` with one input and one output, whose batch axis
        is named `BATCH_DIM`.

    Raises:
        OnnxConversionError: tf2onnx failed, left TensorFlow ops unconverted
            or left a tensor as an extra graph input; the message names each
            layer and op.
    """
    tf2onnx = _require("tf2onnx")
    from tf2onnx import tf_loader

    try:
        with quiet("tf2onnx", "tensorflow"):
            graph_def, inputs, outputs, renames = tf_loader.from_saved_model(
                str(saved_model),
                None,
                None,
                signatures=["serving_default"],
                return_tensors_to_rename=True,
            )
            proto, _ = tf2onnx.convert.from_graph_def(
                graph_def,
                name=model.name,
                input_names=inputs,
                output_names=outputs,
                opset=opset,
                tensors_to_rename=renames,
            )
    except Exception as err:  # tf2onnx raises whatever its handlers raise.
        raise OnnxConversionError(
            f"tf2onnx {tf2onnx.__version__} failed on model {model.name!r} at opset {opset} "
            f"({type(err).__name__}: {err}). Try another `opset` in "
            f"{SUPPORTED_OPSETS[0]}-{SUPPORTED_OPSETS[-1]} or export format 'saved_model' only.",
            unsupported=[],
        ) from err
    _raise_if_unconverted(proto, model, opset, tf2onnx.__version__)
    check_graph_inputs(proto, model, input_name)
    _name_batch_axis(proto)
    return proto


def check_graph_inputs(proto, model, input_name: str) -> None:
    """Refuses a graph that needs inputs besides the model's (captured tensors).

    Args:
        proto: the converted `onnx.ModelProto`.
        model: the Keras model that was converted (names layers in the error).
        input_name: the model's own input.

    Raises:
        OnnxConversionError: names each extra input and the layer it came from.
    """
    initializers = {init.name for init in proto.graph.initializer}
    extra = [
        v.name for v in proto.graph.input if v.name != input_name and v.name not in initializers
    ]
    if not extra:
        return
    layers = layer_classes(model)
    found = [(layer_of(name, layers), name) for name in extra]
    listed = "; ".join(
        f"layer {layer!r} (class {layers.get(layer, '?')}, tensor {name!r})"
        for layer, name in found
    )
    raise OnnxConversionError(
        f"The ONNX graph of model {model.name!r} needs inputs besides {input_name!r}: {listed}. "
        "The layer holds a tensor outside its variables that the converter could not freeze; "
        "export format 'saved_model' only, or keep that state in variables.",
        unsupported=[(layer, layers.get(layer, "?"), "graph input", name) for layer, name in found],
    )


def unconverted_ops(proto, model, opset: int) -> list[tuple[str, str, str, str]]:
    """TensorFlow ops tf2onnx left in the graph, with the layer each came from.

    Args:
        proto: the converted `onnx.ModelProto`.
        model: the Keras model that was converted.
        opset: the target opset.

    Returns:
        `(layer, layer_class, op_type, node_name)` tuples.
    """
    onnx = _require("onnx")
    layers = layer_classes(model)
    found = []
    for node in proto.graph.node:
        if node.domain in _ONNX_DOMAINS and not onnx.defs.has(node.op_type, opset, ""):
            layer = layer_of(node.name, layers)
            found.append((layer, layers.get(layer, "?"), node.op_type, node.name))
    return found


def _raise_if_unconverted(proto, model, opset: int, version: str) -> None:
    found = unconverted_ops(proto, model, opset)
    if not found:
        return
    listed = "; ".join(
        f"op {op!r} in layer {layer!r} (class {cls}, graph node {node!r})"
        for layer, cls, op, node in found
    )
    raise OnnxConversionError(
        f"tf2onnx {version} cannot convert {len(found)} TensorFlow op(s) of model "
        f"{model.name!r} to ONNX opset {opset}: {listed}. Rewrite that layer's `call` with "
        "ops ONNX has, or export format 'saved_model' only.",
        unsupported=found,
    )


def _name_batch_axis(proto) -> None:
    """Renames tf2onnx's `unk__N` batch dimension of inputs and outputs to `BATCH_DIM`."""
    graph = proto.graph
    ends = list(graph.input) + list(graph.output)
    unknown = {value.type.tensor_type.shape.dim[0].dim_param for value in ends} - {""}
    for value in ends + list(graph.value_info):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in unknown:
                dim.dim_param = BATCH_DIM


def float16_copy(proto):
    """A float16 copy of a float32 ONNX model with float32 inputs and outputs, for GPUs.

    Args:
        proto: a float32 `onnx.ModelProto`.

    Returns:
        A new `onnx.ModelProto`.

    Raises:
        OnnxConversionError: ONNX Runtime's converter failed.
    """
    ort = _require("onnxruntime")
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    onnx = _require("onnx")
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    try:
        half = OnnxModel(convert_float_to_float16(copy, keep_io_types=True))
        # The converter appends the input/output Casts at the end of the node list.
        half.topological_sort()
    except Exception as err:  # the converter raises whatever onnx raises
        raise OnnxConversionError(
            f"ONNX Runtime {ort.__version__} could not convert the model to float16 ({err}). "
            "Export without `float16`.",
            unsupported=[],
        ) from err
    return half.model


def _metadata(job: WriteJob, precision: str) -> dict:
    return {**job.metadata, "format": "onnx", "opset": job.opset, "precision": precision}


def write(job: WriteJob, path: Path) -> dict:
    """Writes the float32 ONNX file, converted from `job.saved_model`.

    Args:
        job: what the export writes.
        path: the `.onnx` file to write.

    Returns:
        The file's facts for the manifest.

    Raises:
        OnnxConversionError: see `convert_to_onnx` and `save_onnx`.
    """
    proto = convert_to_onnx(job.saved_model, job.model, job.opset, *job.names)
    save_onnx(proto, path, _metadata(job, "float32"))
    return {"precision": "float32", "opset": job.opset}


def write_float16(job: WriteJob, path: Path) -> dict:
    """As `write`, for the float16 file made from `job.float_onnx` (see `float16_copy`)."""
    proto = _require("onnx").load(str(job.float_onnx))
    save_onnx(float16_copy(proto), path, _metadata(job, "float16"))
    return {"precision": "float16 weights, float32 input and output"}


def save_onnx(proto, path, metadata: dict) -> Path:
    """Attaches metadata, validates the model and writes it.

    Args:
        proto: an `onnx.ModelProto`.
        path: the `.onnx` file to write.
        metadata: JSON-serializable values, stored as JSON text in
            `metadata_props` (read them back with `read_metadata`).

    Returns:
        The written path.

    Raises:
        OnnxConversionError: the ONNX checker rejects the model.
    """
    onnx = _require("onnx")
    onnx.helper.set_model_props(proto, {k: json.dumps(v) for k, v in metadata.items()})
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as err:
        raise OnnxConversionError(
            f"The converted ONNX model fails the ONNX checker ({err}). Export format "
            "'saved_model' only, or try another `opset`.",
            unsupported=[],
        ) from err
    onnx.save(proto, str(path))
    return Path(path)


def read_metadata(path) -> dict:
    """The metadata `save_onnx` stored, decoded from JSON.

    Args:
        path: an `.onnx` file written by keras-wrs.

    Returns:
        A dict of metadata values.
    """
    onnx = _require("onnx")
    proto = onnx.load(str(path), load_external_data=False)
    return {prop.key: json.loads(prop.value) for prop in proto.metadata_props}


def load_onnx_runner(path, input_name: str):
    """An ONNX Runtime CPU session as a function from inputs to the first output.

    Args:
        path: the `.onnx` file.
        input_name: its input name.

    Returns:
        A function from a float32 array to the output array.
    """
    ort = _require("onnxruntime")
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as err:  # ORT raises its own Fail/InvalidGraph types.
        raise OnnxConversionError(
            f"ONNX Runtime {ort.__version__} cannot load {str(path)!r} ({err}). Export "
            "format 'saved_model' only, or try another `opset`.",
            unsupported=[],
        ) from err

    def run(inputs):
        return session.run(None, {input_name: inputs})[0]

    return run
