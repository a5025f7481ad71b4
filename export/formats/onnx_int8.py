"""Static int8 ONNX (QDQ) through `onnxruntime.quantization`.

The float32 ONNX file is first run through ONNX Runtime's `quant_pre_process`
(shape inference and graph optimizations; it needs `sympy`), then
`quantize_static` inserts QuantizeLinear/DequantizeLinear pairs: weights int8
per output channel (symmetric), activations int8 (asymmetric) with ranges
from min/max over the calibration set. Inputs and outputs stay float32.

Weights use 7 of the 8 bits (`reduce_range=True`). ONNX Runtime's x86 int8
kernels on CPUs without VNNI (AVX2, most of this project's machines) add
pairs of u8*s8 products into int16 and saturate; with full-range weights the
digits model measured a mean score error of 0.48 (0.046 with graph
optimizations off, i.e. without those kernels), with 7-bit weights 0.063 and
no top-1 change on the 360 test images. Ops
ONNX Runtime cannot quantize stay float between QDQ pairs, which ONNX
Runtime runs as such; they are listed in the manifest. Per-channel weights
need opset 13 or later.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from keras_wrs.export.errors import OnnxConversionError
from keras_wrs.export.formats._common import WriteJob
from keras_wrs.export.formats.onnx import save_onnx

__all__ = ["MIN_OPSET", "quantize_onnx", "quantization_summary", "write"]

MIN_OPSET = 13
_CALIBRATION_BATCH = 16


def _reader(inputs: np.ndarray, input_name: str):
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._batches = iter(range(0, len(inputs), _CALIBRATION_BATCH))

        def get_next(self):
            start = next(self._batches, None)
            if start is None:
                return None
            return {input_name: inputs[start : start + _CALIBRATION_BATCH]}

    return Reader()


def quantize_onnx(float_path, out_path, calibration: np.ndarray, input_name: str):
    """Writes a static QDQ int8 copy of a float32 ONNX file.

    Args:
        float_path: the float32 `.onnx` file.
        out_path: the int8 `.onnx` file to write.
        calibration: float32 model inputs (checked already).
        input_name: the model's input name.

    Returns:
        The quantized `onnx.ModelProto` (also written to `out_path`).

    Raises:
        OnnxConversionError: ONNX Runtime's quantizer failed.
    """
    import onnx
    import onnxruntime
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        with tempfile.TemporaryDirectory(prefix="keras-wrs-quant.") as scratch:
            pre = Path(scratch) / "pre.onnx"
            quant_pre_process(str(float_path), str(pre))
            quantize_static(
                str(pre),
                str(out_path),
                _reader(calibration, input_name),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                reduce_range=True,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
            )
    except Exception as err:  # the quantizer raises whatever onnx and numpy raise
        Path(out_path).unlink(missing_ok=True)
        raise OnnxConversionError(
            f"ONNX Runtime {onnxruntime.__version__} could not quantize the model to int8 "
            f"({type(err).__name__}: {err}). Export the other formats only.",
            unsupported=[],
            format="onnx_int8",
        ) from err
    return onnx.load(str(out_path))


def quantization_summary(proto) -> dict:
    """What was quantized: scheme, QDQ pair count and the op types left in float.

    Args:
        proto: the quantized `onnx.ModelProto`.

    Returns:
        A JSON-ready dict.
    """
    nodes = list(proto.graph.node)
    quantized_inputs = {n.output[0] for n in nodes if n.op_type == "DequantizeLinear"}
    compute = [n for n in nodes if n.op_type not in ("QuantizeLinear", "DequantizeLinear")]
    float_ops = sorted(
        {n.op_type for n in compute if not any(i in quantized_inputs for i in n.input)}
    )
    return {
        "scheme": "static QDQ: weights int8 per channel (symmetric, 7-bit range), "
        "activations int8 (asymmetric, min/max calibration); input and output float32",
        "qdq_pairs": sum(n.op_type == "QuantizeLinear" for n in nodes),
        "ops_left_in_float": float_ops,
    }


def write(job: WriteJob, path: Path) -> dict:
    """Writes `model.int8.onnx`, quantized from `job.float_onnx` on `job.calibration`.

    Args:
        job: what the export writes.
        path: the `.onnx` file to write.

    Returns:
        The file's facts for the manifest: precision, scheme, QDQ pairs, ops
        left in float and the calibration set.

    Raises:
        OnnxConversionError: the quantizer or the ONNX checker failed.
    """
    proto = quantize_onnx(job.float_onnx, path, job.calibration.inputs, job.names[0])
    summary = {**quantization_summary(proto), "calibration": job.calibration.summary()}
    meta = {
        **job.metadata,
        "format": "onnx_int8",
        "opset": job.opset,
        "precision": "int8",
        "quantization": summary,
    }
    save_onnx(proto, path, meta)
    return {"precision": "int8", "quantization": summary}
