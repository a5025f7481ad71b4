"""Command line: `keras-wrs export RUN_DIR_OR_MODEL [--format ...] [--opset N] [--check]`.

`add_export_arguments(parser)` adds the arguments to any argparse parser (the
`keras-wrs` command's `export` sub-command uses it) and `run_export(args)`
runs them and returns the exit status: 0 exported and verified, 1 parity
failure or a format impossible (other formats may have been written, as
printed), 2 bad arguments or unreadable inputs (nothing written), 130 after
Ctrl-C and 143 after SIGTERM (nothing written, no staging directory left).
"""

from __future__ import annotations

import argparse
import sys

from keras_wrs.export.api import FORMATS, export_model
from keras_wrs.export.atomic import ExportInterrupted
from keras_wrs.export.errors import ConversionError, ParityError
from keras_wrs.export.formats.onnx import DEFAULT_OPSET, SUPPORTED_OPSETS
from keras_wrs.export.inputs import DEFAULT_CALIBRATION_SIZE, load_batch
from keras_wrs.export.parity import FLOAT16, FLOAT32, INT8, Tolerance
from keras_wrs.export.source import load_source

__all__ = ["add_export_arguments", "run_export", "main"]


def add_export_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Adds the export arguments to `parser`.

    Args:
        parser: an `argparse.ArgumentParser` (or a sub-command parser).

    Returns:
        The same parser.
    """
    add = parser.add_argument
    add(
        "source",
        metavar="RUN_DIR_OR_MODEL",
        help="a run directory from `keras-wrs train` (holding model.keras) or a .keras file",
    )
    add(
        "--format",
        dest="formats",
        default="saved_model,onnx",
        help=f"comma-separated formats from {', '.join(FORMATS)} (default: saved_model,onnx)",
    )
    add(
        "--opset",
        type=int,
        default=DEFAULT_OPSET,
        help=f"ONNX opset, {SUPPORTED_OPSETS[0]}-{SUPPORTED_OPSETS[-1]} (default {DEFAULT_OPSET})",
    )
    add(
        "--check",
        action="store_true",
        help="verify only: export to a temporary directory, run the parity check, write nothing",
    )
    add(
        "--output",
        "-o",
        default=None,
        help="export directory to create (default RUN_DIR/export, or <model>_export)",
    )
    add(
        "--overwrite",
        action="store_true",
        help="replace an existing keras-wrs export directory (nothing else is ever deleted)",
    )
    add("--float16", action="store_true", help="also write model.float16.onnx (for GPUs)")
    add(
        "--batch",
        default=None,
        help="parity inputs as .npy or .npz (default: the run's own test data, else seeded "
        "random inputs, reported as such)",
    )
    add("--batch-key", default=None, help="array name inside an .npz batch")
    add(
        "--batch-size",
        type=int,
        default=None,
        help="parity examples of the run's test data (default 256) or random (default 8)",
    )
    add(
        "--seed",
        type=int,
        default=0,
        help="seed of the random parity inputs and the calibration draw (default 0)",
    )
    add(
        "--calibration",
        default=None,
        help="int8 calibration inputs as .npz or .npy (default: drawn from the run's training "
        "data)",
    )
    add("--calibration-key", default=None, help="array name inside an .npz calibration file")
    add(
        "--calibration-size",
        type=int,
        default=DEFAULT_CALIBRATION_SIZE,
        help=f"training examples drawn for calibration (default {DEFAULT_CALIBRATION_SIZE})",
    )
    add(
        "--atol", type=float, default=FLOAT32.atol, help="float32 absolute tolerance (default 1e-5)"
    )
    add(
        "--rtol",
        type=float,
        default=FLOAT32.rtol,
        help="float32 tolerance relative to the output's largest magnitude (default 1e-4)",
    )
    add(
        "--min-top1",
        type=float,
        default=FLOAT32.min_top1,
        help="smallest float32 top-1 agreement (default 1.0)",
    )
    add(
        "--atol-float16",
        type=float,
        default=FLOAT16.atol,
        help="float16 absolute tolerance (default 1e-2)",
    )
    add(
        "--rtol-float16",
        type=float,
        default=FLOAT16.rtol,
        help="float16 tolerance relative to the output's largest magnitude (default 5e-2)",
    )
    add(
        "--rtol-int8",
        type=float,
        default=INT8.rtol,
        help=f"int8 error bound relative to the output's largest magnitude (default {INT8.rtol})",
    )
    add(
        "--min-top1-int8",
        type=float,
        default=INT8.min_top1,
        help=f"smallest int8 top-1 agreement (default {INT8.min_top1})",
    )
    add("--input-name", default="images", help="input name in both formats (default images)")
    add("--output-name", default="scores", help="output name in both formats (default scores)")
    return parser


def _batch(args, source, batch_provider):
    if args.batch is not None:
        return load_batch(args.batch, batch_key=args.batch_key)
    if batch_provider is not None:
        return batch_provider(source)
    return None


def _export(args, batch_provider):
    source = load_source(args.source)
    return export_model(
        source,
        args.output,
        formats=args.formats,
        opset=args.opset,
        float16=args.float16,
        batch=_batch(args, source, batch_provider),
        batch_size=args.batch_size,
        seed=args.seed,
        calibration=args.calibration,
        calibration_key=args.calibration_key,
        calibration_size=args.calibration_size,
        tolerance=Tolerance(args.atol, args.rtol, args.min_top1),
        tolerance_float16=Tolerance(args.atol_float16, args.rtol_float16, None),
        tolerance_int8=Tolerance(INT8.atol, args.rtol_int8, args.min_top1_int8),
        overwrite=args.overwrite,
        check_only=args.check,
        input_name=args.input_name,
        output_name=args.output_name,
    )


def run_export(args: argparse.Namespace, batch_provider=None, out=None, err=None) -> int:
    """Runs an export from parsed arguments and prints paths, sizes and parity.

    Args:
        args: the namespace from a parser set up by `add_export_arguments`.
        batch_provider: optional `ExportSource -> ParityBatch | None`, used
            when `--batch` is not given (e.g. real examples of the run's
            dataset); `None` from it falls back to the run's own test data,
            then to random inputs.
        out: stream for results (default `sys.stdout`).
        err: stream for errors (default `sys.stderr`).

    Returns:
        The exit status: 0, 1 (parity failure or a format impossible), 2 (bad
        input), 130 (Ctrl-C) or 143 (SIGTERM).
    """
    out, err = out or sys.stdout, err or sys.stderr
    try:
        result = _export(args, batch_provider)
    except ExportInterrupted as error:
        print(
            f"keras-wrs export: interrupted by {error.signal_name}; nothing was written and "
            "the staging directory was removed.",
            file=err,
        )
        return 143 if error.signal_name == "SIGTERM" else 130
    except KeyboardInterrupt:  # before the export began, or just after it was complete
        print("keras-wrs export: interrupted by SIGINT.", file=err)
        return 130
    except ParityError as error:
        print(f"keras-wrs export: parity FAILED\n{error}", file=err)
        return 1
    except ConversionError as error:
        if error.result is not None:
            print(error.result.summary(), file=out)
        label = "ONNX" if error.format == "onnx" else error.format
        print(f"keras-wrs export: {label} export FAILED: {error}", file=err)
        return 1
    except (ValueError, TypeError, OSError) as error:
        print(f"keras-wrs export: error: {error}", file=err)
        return 2
    print(result.summary(), file=out)
    return 0


def main(argv=None) -> int:
    """Entry point of `python -m keras_wrs.export`.

    Args:
        argv: arguments without the program name (default `sys.argv[1:]`).

    Returns:
        The exit status.
    """
    parser = argparse.ArgumentParser(
        prog="keras-wrs export",
        description="Export a trained model to SavedModel, ONNX and LiteRT (float32 and int8), "
        "verified against Keras.",
    )
    return run_export(add_export_arguments(parser).parse_args(argv))
