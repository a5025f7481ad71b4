"""The `keras-wrs` command: train, compare, sweep, report, export, list.

`keras-wrs train` with no arguments is the main job: weight decay vs weight
rescaling on scikit-learn's digits (offline), a few minutes on a laptop CPU,
ending with the results table. A bare `keras-wrs` prints the help.

Parsing imports neither Keras nor TensorFlow: `--help` and argument errors
answer at once, and TensorFlow loads only when a command needs it, with its
C++ and absl log lines off unless `--verbose 3` (or TF_CPP_MIN_LOG_LEVEL set
by the caller).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from keras_wrs.recipes import console
from keras_wrs.recipes.console import UsageError

__all__ = ["main", "build_parser"]

_DEFAULT_RECIPE = "digits"
_DEFAULT_REGULARIZATIONS = ("wd", "wrs")


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _names(text):
    return tuple(s.strip() for s in text.split(",") if s.strip())


def _seeds(text):
    try:
        seeds = tuple(int(s) for s in _names(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 0,1,2, got {text!r}") from None
    if not seeds or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"expected integers >= 0, got {text!r}")
    return seeds


def _add_run_arguments(parser):
    add = parser.add_argument
    add(
        "recipe",
        nargs="?",
        default=None,
        help=f"recipe name (default {_DEFAULT_RECIPE}; `keras-wrs list` shows all)",
    )
    add("--epochs", type=_positive_int, help="training epochs")
    add("--batch-size", type=_positive_int, help="global batch size")
    add("--lr", type=_positive_float, help="base learning rate")
    add(
        "--precision",
        help="float32 | mixed (float16 on GPU, bfloat16 on CPU) | mixed_float16 | mixed_bfloat16",
    )
    add("--xla", action="store_true", help="compile with XLA (jit_compile=True)")
    add(
        "--strategy",
        help="default | one_device | mirrored | multi_worker "
        "(multi_worker: the cluster from TF_CONFIG; run the same command on every worker)",
    )
    add(
        "--sync-bn",
        action="store_true",
        help="synchronized BatchNormalization: batch statistics over all replicas",
    )
    add("--data-dir", help="TensorFlow Datasets data directory")
    add(
        "--download",
        action="store_true",
        help="let TensorFlow Datasets download a missing data set (needs a network)",
    )
    add(
        "--set",
        dest="assignments",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config field, e.g. --set warmup_epochs=0 "
        "--set model_kwargs.width=8 (repeatable). A field is set once: a --set that "
        "disagrees with a flag (--xla and --set jit_compile=false) or names a field the "
        "grid varies is an error",
    )
    add(
        "--smoke",
        action="store_true",
        help="tiny widths, 2 epochs of 2 steps; TFDS data replaced by synthetic shapes",
    )
    add("--out", help="output directory (default runs/<recipe>-<time>)")
    add("--resume", action="store_true", help="continue the unfinished run(s) in --out")
    add("--overwrite", action="store_true", help="delete --out first")
    add(
        "--verbose",
        type=int,
        choices=(0, 1, 2, 3),
        default=None,
        help="Keras progress output: 0 silent, 1 progress bar, 2 one line per "
        "epoch, 3 as 2 plus TensorFlow's own log messages",
    )


def _add_large_grid_flag(parser):
    parser.add_argument(
        "--allow-large-grid",
        action="store_true",
        help="train a grid of more than 100 runs (refused without this flag)",
    )


def _max_runs(args):
    from keras_wrs.recipes.sweeps import runner

    return None if args.allow_large_grid else runner.MAX_RUNS


def build_parser():
    """The argparse parser of `keras-wrs` with its sub-commands."""
    parser = argparse.ArgumentParser(
        prog="keras-wrs",
        description="Weight rescaling (WRS) vs weight decay for Keras BatchNorm networks.",
        epilog="Start with `keras-wrs train`: weight decay vs weight rescaling on "
        "the digits data set, offline, about a minute on a CPU. "
        "`keras-wrs COMMAND --help` describes each command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    train = sub.add_parser(
        "train",
        help="train a recipe (default: digits, WD vs WRS)",
        description="Train a recipe. With several --regularization values "
        "(default wd,wrs) it trains one run each and prints a comparison table.",
    )
    _add_run_arguments(train)
    train.add_argument(
        "--regularization",
        type=_names,
        default=None,
        help="none | wd | l2 | wrs | sgdp | adamh | cwd, comma-separated (default wd,wrs, "
        "or the one --set regularization=... names)",
    )
    train.add_argument(
        "--optimizer",
        help="one of `keras-wrs list`'s optimizers: sgd, sgdm, adam, adamw, rmsprop, nadam, "
        "lion, lamb, adagrad, adadelta, adamax, adafactor, muon (default: the recipe's)",
    )
    train.add_argument("--seed", type=int, default=None, help="random seed")
    train.add_argument(
        "--config",
        metavar="FILE",
        help="train the configuration in FILE instead of a recipe's: a run's config.json "
        "(a committed cell's reruns it) or a JSON object of config fields; flags and --set "
        "apply on top",
    )
    compare = sub.add_parser(
        "compare",
        help="grid of regularization x optimizer x seeds, results table",
        description="Train every regularization x optimizer x seed cell and write "
        "results.md, results.csv and plots to --out. Regularizations: none, wd, l2, wrs, "
        "sgdp (SGDP/AdamP), adamh (AdamH, Adam only), cwd (SGDC/AdamC, corrected weight "
        "decay); a method skips the optimizers it does not exist for.",
    )
    _add_run_arguments(compare)
    compare.add_argument(
        "--regularizations",
        type=_names,
        default=("none", "wd", "wrs"),
        help="comma-separated (default none,wd,wrs)",
    )
    compare.add_argument(
        "--optimizers",
        type=_names,
        default=("sgdm", "adam"),
        help="comma-separated (default sgdm,adam)",
    )
    compare.add_argument(
        "--seeds", type=_seeds, default=(0, 1, 2), help="comma-separated (default 0,1,2)"
    )
    _add_large_grid_flag(compare)
    sweep = sub.add_parser(
        "sweep",
        help="grid over any config fields, per group; results and sensitivity",
        description="Train the cartesian product of each --grid group (any config "
        "fields) for every seed, then write results.md (rows grouped by every "
        "field that differs), per-layer noise, sensitivity, and plots to --out. "
        'Example: --grid "regularization=wrs lr=0.03,0.1,0.3,1" --grid '
        '"regularization=wd lr=0.03,0.3 weight_decay=5e-5,5e-4,5e-3".',
    )
    _add_run_arguments(sweep)
    sweep.add_argument(
        "--grid",
        dest="groups",
        action="append",
        required=True,
        metavar="'FIELD=V1,V2 ...'",
        help="one group of axes (repeatable); groups are trained one "
        "after the other, each as its cartesian product",
    )
    sweep.add_argument("--seeds", type=_seeds, default=(0,), help="comma-separated (default 0)")
    _add_large_grid_flag(sweep)
    sweep.add_argument(
        "--jobs",
        type=_positive_int,
        default=1,
        metavar="N",
        help="cells trained at once, each in its own process with cores/N threads (default 1)",
    )
    sweep.add_argument(
        "--results",
        metavar="DIR",
        help="copy each finished cell's config.json, summary.json and history.csv to "
        "DIR/<cell>/ as it finishes, and skip the cells already there (a sweep resumes "
        "from DIR alone)",
    )
    sweep.add_argument(
        "--estimate",
        action="store_true",
        help="print the cell counts and the time estimate, train nothing",
    )
    report = sub.add_parser(
        "report",
        help="tables and plots from run directories",
        description="Rebuild results tables and plots from run or comparison directories.",
    )
    report.add_argument("dirs", nargs="+", metavar="DIR", help="run or comparison directories")
    report.add_argument(
        "--out",
        help="where to write results.md/csv and plots (default: the first DIR if it is a "
        "grid of runs; for a single run directory nothing is written: a report never "
        "writes into a run)",
    )
    _add_export_parser(sub)
    sub.add_parser("list", help="recipes, models, data sets, optimizers, regularizations")
    return parser


_EXPORT_DESCRIPTION = (
    "Export a run directory's model.keras to SavedModel and ONNX "
    "and check that they agree with Keras."
)


def _add_export_parser(sub):
    # The export arguments live in keras_wrs.export, which imports TensorFlow:
    # they are parsed by `_export_parser` once `export` is the command.
    sub.add_parser(
        "export",
        add_help=False,
        prefix_chars="\0",
        help="export a run's model to SavedModel and ONNX, with a parity check "
        "(needs keras-wrs[export])",
        description=_EXPORT_DESCRIPTION,
    ).add_argument("export_args", nargs=argparse.REMAINDER)


def _export_parser():
    try:
        from keras_wrs.export.cli import add_export_arguments
    except ImportError as err:
        raise UsageError(
            f"export is unavailable ({err}); `pip install 'keras-wrs[export]'`"
        ) from err
    parser = argparse.ArgumentParser(prog="keras-wrs export", description=_EXPORT_DESCRIPTION)
    return add_export_arguments(parser)


def _preflight(fn, *args):
    """Run a check before any work; its ValueError becomes a usage error."""
    try:
        return fn(*args)
    except ValueError as err:
        raise UsageError(str(err)) from err


def _config_from_args(args):
    """The validated config of the command line (names, numbers, data set)."""
    return _preflight(_build_config, args)


def _flags(args):
    """`{field: (flag, value)}` of the config flags given on the command line."""
    given = {
        "epochs": ("--epochs", args.epochs),
        "batch_size": ("--batch-size", args.batch_size),
        "lr": ("--lr", args.lr),
        "precision": ("--precision", args.precision),
        "strategy": ("--strategy", args.strategy),
        "data_dir": ("--data-dir", args.data_dir),
        "jit_compile": ("--xla", True if args.xla else None),
        "sync_bn": ("--sync-bn", True if args.sync_bn else None),
        "download": ("--download", True if args.download else None),
        "optimizer": ("--optimizer", getattr(args, "optimizer", None)),
        "seed": ("--seed", getattr(args, "seed", None)),
    }
    regularization = getattr(args, "regularization", None)
    if regularization is not None and len(regularization) == 1:
        given["regularization"] = ("--regularization", regularization[0])
    return {field: pair for field, pair in given.items() if pair[1] is not None}


def _axes(args):
    """`{field: flag}` of the fields the command's grid varies."""
    if args.command == "compare":
        return {
            "regularization": "--regularizations",
            "optimizer": "--optimizers",
            "seed": "--seeds",
        }
    if args.command == "sweep":
        from keras_wrs.recipes.sweeps.grid import parse_group

        fields = {key.partition(".")[0] for text in args.groups for key, _ in parse_group(text)}
        return {"seed": "--seeds", **{field: "--grid" for field in fields}}
    regularization = getattr(args, "regularization", None)
    if regularization is not None and len(regularization) > 1:
        return {"regularization": "--regularization"}
    return {}


def _build_config(args):
    from keras_wrs.recipes import config as cfg
    from keras_wrs.recipes.training import cluster

    if getattr(args, "config", None) is not None:
        config = _config_file(args)
    else:
        args.recipe = args.recipe or _DEFAULT_RECIPE
        config = cfg.get_recipe(args.recipe)
    if args.smoke:  # first, so that flags and --set still apply on top
        config = cfg.smoke(config, offline=True)
    base = config
    config = cfg.apply_settings(config, _flags(args), args.assignments, _axes(args))
    cfg.validate(config)
    _check_recipe_lr(args, base, config)
    if config.dataset not in cfg.BUILTIN_DATASETS:  # TFDS or registered: loads data
        from keras_wrs.recipes.data import check_dataset_name

        check_dataset_name(config.dataset)
    cluster.preflight(config)  # TF_CONFIG, before any work
    return config


def _check_recipe_lr(args, base, config):
    """`cfg.check_recipe_lr` for each optimizer the command's runs use (per --grid group)."""
    from keras_wrs.recipes import config as cfg

    named = set(_flags(args)) | cfg.assigned_fields(args.assignments)
    path = getattr(args, "config", None)
    source = f"--config {path!r}" if path is not None else f"recipe {args.recipe!r}"
    if args.command == "sweep":
        from keras_wrs.recipes.sweeps.grid import parse_group

        for text in args.groups:
            axes = {key.partition(".")[0]: values for key, values in parse_group(text)}
            optimizers = axes.get("optimizer", [config.optimizer])
            cfg.check_recipe_lr(base, optimizers, named | set(axes), source)
    else:
        optimizers = getattr(args, "optimizers", None) or [config.optimizer]
        cfg.check_recipe_lr(base, optimizers, named, source)


def _config_file(args):
    """The `Config` of `--config FILE` (a run's config.json, or an object of fields)."""
    from keras_wrs.recipes.config import from_dict, validate
    from keras_wrs.recipes.runs import validation

    if args.recipe is not None:
        raise UsageError(
            f"--config {args.config!r} and the recipe {args.recipe!r} both name a "
            f"configuration: pass one of them."
        )
    stored = validation.load_json(args.config)
    if stored is None:
        raise UsageError(
            f"--config {args.config!r}: no such file. Pass a run's config.json, e.g. "
            f"recipes/results/fmnist_full/cells/<cell>/config.json."
        )
    if "config" in stored:  # a run's record
        return validation.check_config_record(stored, args.config)
    try:
        return validate(from_dict(stored))
    except (TypeError, ValueError) as err:
        raise UsageError(f"--config {args.config!r}: {err}") from None


def _out_dir(args, kind):
    from keras_wrs.recipes.runs import rundir

    if args.out and args.resume and not rundir.holds_files(args.out):
        raise UsageError(
            f"--resume: there is no run to continue in {args.out!r} "
            f"(it does not exist or is empty). Drop --resume to start "
            f"a new run there, or check the --out path."
        )
    if args.out:
        return args.out
    if args.resume:
        raise UsageError("--resume needs --out: the directory to continue.")
    name = args.recipe or Path(args.config).parent.name or "config"
    return f"runs/{name}-{kind}{time.strftime('%Y%m%d-%H%M%S')}"


def _verbose(args):
    if args.verbose is not None:
        return min(args.verbose, 2)
    return 1 if sys.stdout.isatty() else 2


def _start(args, out, extras_config=None, report=False):
    """Check the extras, print the run directory, remember it for Ctrl-C."""
    if extras_config is not None:
        from keras_wrs.recipes.config import check_extras

        check_extras(extras_config, report=report)
    args.run_dir = out
    print(f"keras-wrs {args.command}: run directory {out}", flush=True)


def _run_train(args):
    config = _config_from_args(args)  # first: a usage error loads no backend
    console.import_backend()
    from keras_wrs.recipes import config as cfg
    from keras_wrs.recipes.sweeps import grid as grids
    from keras_wrs.recipes.training.train import train

    regularizations = args.regularization
    if regularizations is None:  # the default pair, unless --set names one
        named = args.config is not None or "regularization" in cfg.assigned_fields(args.assignments)
        regularizations = (config.regularization,) if named else _DEFAULT_REGULARIZATIONS
    if len(regularizations) != 1:
        grid = grids.Grid(regularizations, (config.optimizer,), (config.seed,))
        return _run_grid(args, config, grid, _out_dir(args, ""))
    config = dataclasses.replace(config, regularization=regularizations[0])
    _preflight(cfg.validate, config)
    out = _out_dir(args, f"{config.regularization}-")
    _start(args, out, config)
    summary = train(
        config,
        out,
        resume=args.resume,
        overwrite=args.overwrite,
        verbose=_verbose(args),
        recipe=args.recipe,
    )
    print(
        f"\n{config.regularization} / {config.optimizer}: test accuracy "
        f"{summary['test_accuracy']:.4f}, {summary['wall_seconds']:.0f} s. Run: {out}"
    )
    return 0


def _run_grid(args, config, grid, out):
    from keras_wrs.recipes.sweeps import grid as grids
    from keras_wrs.recipes.sweeps import runner
    from keras_wrs.recipes.training import cluster

    cells = _preflight(grids.grid_configs, config, grid)
    max_runs = _max_runs(args) if hasattr(args, "allow_large_grid") else None
    _preflight(runner.check_size, len(cells), max_runs)
    _start(args, out, config, report=True)
    skipped = grids.skipped_pairs(grid)
    if skipped:
        print(
            "Skipped (the method does not exist for the optimizer): "
            + ", ".join(f"{reg} / {opt}" for reg, opt in skipped),
            flush=True,
        )
    table = grids.run_grid(
        config,
        grid,
        cluster.worker_run_dir(out, config),
        resume=args.resume,
        overwrite=args.overwrite,
        verbose=_verbose(args),
        recipe=args.recipe,
        max_runs=max_runs,
    )
    print(
        f"\nRecipe {args.recipe} ({config.dataset}, {config.model}, "
        f"{config.epochs} epochs), results in {out}:\n\n{table}"
    )
    return 0


def _run_compare(args):
    config = _config_from_args(args)  # first: a usage error loads no backend
    console.import_backend()
    from keras_wrs.recipes.sweeps import grid as grids

    grid = grids.Grid(args.regularizations, args.optimizers, args.seeds)
    return _run_grid(args, config, grid, _out_dir(args, "compare-"))


def _run_sweep(args):
    from keras_wrs.recipes.sweeps import grid as grids
    from keras_wrs.recipes.sweeps import runner

    config = _config_from_args(args)
    cells = _preflight(grids.sweep_configs, config, args.groups, args.seeds)  # no backend yet
    console.import_backend()
    if args.estimate:
        plan = _preflight(runner.plan_cells, cells, args.out or "", args.results)
        print(f"keras-wrs sweep --estimate: {runner.estimate_text(plan, args.jobs)}")
        return 0
    _preflight(runner.check_size, len(cells), _max_runs(args))
    out = _out_dir(args, "sweep-")
    _preflight(runner.plan_cells, cells, out, args.results)  # a stale cell: before work
    _start(args, out, config, report=True)
    text = grids.run_sweep(
        config,
        args.groups,
        args.seeds,
        out,
        resume=args.resume,
        overwrite=args.overwrite,
        verbose=_verbose(args),
        recipe=args.recipe,
        jobs=args.jobs,
        results_dir=args.results,
        max_runs=_max_runs(args),
    )
    print(f"\nSweep of {len(cells)} runs on {args.recipe}, results in {out}:\n\n{text}")
    return 0


def _run_report(args):
    from keras_wrs.recipes.config import extras
    from keras_wrs.recipes.sweeps import evidence, report

    if not extras.installed("matplotlib"):
        raise extras.MissingExtraError(
            "report draws plots with matplotlib, which is not installed: `pip install matplotlib`."
        )

    out = _report_out(args)
    print(report.write_report(args.dirs, out))
    text = evidence.write_evidence(args.dirs, out)  # cells with a validation split
    if text:
        print(f"\n{text}")
    return 0


def _report_out(args):
    """Where `report` writes: --out, else the first DIR if it is a grid, else nowhere."""
    from keras_wrs.recipes.runs import rundir

    if args.out:
        return args.out
    first = Path(args.dirs[0])
    if (first / rundir.FILES["config"]).is_file():
        print(
            f"keras-wrs report: {first} is a run directory, which a report does not "
            f"write into: the table follows; pass --out DIR to write results.md, "
            f"results.csv and plots.",
            file=sys.stderr,
        )
        return None
    return first


def _run_list(args):
    from keras_wrs.recipes import config as cfg
    from keras_wrs.recipes import models
    from keras_wrs.recipes.training import optim

    rows = [
        ("recipes", cfg.RECIPES),
        ("models", models.MODELS),
        ("datasets", list(cfg.BUILTIN_DATASETS) + ["<any TFDS image classification set>"]),
        ("optimizers", optim.OPTIMIZERS),
        ("regularizations", cfg.REGULARIZATIONS),
        ("schedules", cfg.SCHEDULES),
        ("precisions", cfg.PRECISIONS),
        ("strategies", cfg.STRATEGIES),
    ]
    for title, names in rows:
        print(f"{title}: {', '.join(names)}")
    return 0


def _run_export(args):
    import keras_wrs.optimizers  # noqa: F401  (registers them for load_model)
    from keras_wrs.export.cli import run_export

    return run_export(args)


_COMMANDS = {
    "train": _run_train,
    "compare": _run_compare,
    "sweep": _run_sweep,
    "report": _run_report,
    "list": _run_list,
    "export": _run_export,
}


def main(argv=None):
    """Run the `keras-wrs` command line; returns the exit status.

    Args:
        argv: arguments without the program name (`sys.argv[1:]` when None).

    Returns:
        0 on success (a bare `keras-wrs` prints the help), 1 for a run that
        diverged or could not go on (a full disk: the message says how to
        resume), 2 for bad input (the message says what is wrong), 130
        after Ctrl-C, the export status for `export`.
    """
    from_console = argv is None  # the `keras-wrs` command, not a call from Python
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    console.quiet_tensorflow(verbose=getattr(args, "verbose", None) == 3)
    try:
        if args.command in ("export", "report"):
            console.import_backend()
        if args.command == "export":
            args = _export_parser().parse_args(args.export_args)
            args.command = "export"
        return _COMMANDS[args.command](args)
    except KeyboardInterrupt:
        status = console.interrupted(args.command, argv, getattr(args, "run_dir", None))
        if from_console:
            console.exit_at_once(status)  # teardown can deadlock in tf.data after Ctrl-C
        return status
    except Exception as err:
        return console.failed(args.command, err, argv, getattr(args, "run_dir", None))


if __name__ == "__main__":
    sys.exit(main())
