"""One training entry point over `model.fit`.

`train(config, run_dir)` validates the config and checks the optional
packages it needs, prepares the run directory, loads the data, builds and
compiles the model under the configured precision policy and distribution
strategy, and fits it with Keras callbacks only: `TerminateOnNaN` (extended to
the validation loss), a throughput meter, the keras-wrs dynamics callbacks,
`CSVLogger`, `TensorBoard` and `keras_wrs.recipes.runs.backup.AtomicBackup` (a run
killed at any moment resumes from its last finished epoch, checked). It then
evaluates on the test split, saves `model.keras`, plots, and writes
`summary.json` from the whole `history.csv`, so a resumed run's summary
describes all its epochs. A run whose loss stops being finite is recorded as
diverged and raises `DivergedError`. See `keras_wrs.recipes.runs.rundir` for
the directory layout and `keras_wrs.recipes.runs.record` for its record.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import time
from pathlib import Path

import keras

from keras_wrs.recipes import data
from keras_wrs.recipes.config import check_extras, check_total_steps, to_dict, validate
from keras_wrs.recipes.hub_models import set_kernel_regularizer
from keras_wrs.recipes.models import build_model, synchronize_batchnorm
from keras_wrs.recipes.runs import backup, record, rundir
from keras_wrs.recipes.sweeps import figures
from keras_wrs.recipes.training import cluster, finetune, optim, system
from keras_wrs.recipes.training.callbacks import (
    CtrlC,
    ShortProgbar,
    StopOnNaN,
    Throughput,
    dynamics_callbacks,
)

__all__ = ["train", "ConfigMismatchError", "DivergedError", "RunSetupError"]

logger = logging.getLogger("keras_wrs")


class ConfigMismatchError(ValueError):
    """A resumed run's configuration differs from the one it started with."""


class RunSetupError(ValueError):
    """A setting the data cannot honour (found before training starts)."""


class DivergedError(RuntimeError):
    """The training loss became NaN or infinite; the run stopped.

    Attributes:
        summary: the run's `summary.json` (status `"diverged"`).
    """

    def __init__(self, message, summary):
        super().__init__(message)
        self.summary = summary


def _resumed_record(run_dir, config):
    """The checked record of the run being resumed in `run_dir`, or None if it has none."""
    if not (Path(run_dir) / rundir.FILES["config"]).is_file():
        return None
    stored = record.RunRecord.read(run_dir)
    if stored.config_hash != record.config_hash(config):
        theirs = stored.stored["config"]
        diff = sorted(k for k, v in to_dict(config).items() if theirs.get(k) != v)
        raise ConfigMismatchError(
            f"Cannot resume {str(run_dir)!r}: its config differs "
            f"in {', '.join(diff) or 'its hash'}. Resume with the same settings, "
            f"or pass --overwrite to start again."
        )
    return stored


def _finished(summary):
    """`summary`, or DivergedError if it records a diverged run."""
    where = summary.get("diverged")
    if summary.get("status") == "diverged" and where:
        raise DivergedError(
            f"Training diverged: {where.get('metric', 'loss')} became "
            f"{where['loss']} in epoch {where['epoch']}, so the run stopped; "
            f'summary.json records status "diverged". Lower the learning '
            f"rate (--lr) and start again with --overwrite.",
            summary,
        )
    return summary


def _files(run_dir):
    return {key: Path(run_dir) / name for key, name in rundir.FILES.items()}


def _model(config, hp, info):
    """The run's model: built from `model`, or loaded from `init_from` and frozen."""
    reg = optim.kernel_regularizer(config, hp)
    if config.init_from is None:
        return build_model(
            config.model,
            info.input_shape,
            info.num_classes,
            kernel_regularizer=reg,
            sync_bn=config.sync_bn,
            **config.model_kwargs,
        )
    model = finetune.load_initial_model(config.init_from, info.input_shape, info.num_classes)
    set_kernel_regularizer(model, reg)
    if config.sync_bn:
        synchronize_batchnorm(model)
    finetune.freeze_layers(model, config.freeze)
    return model


def _compile(config, hp, splits, schedule):
    model = _model(config, hp, splits.info)
    optimizer = optim.make_optimizer(config, hp, schedule, model)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=config.label_smoothing
        ),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        jit_compile=system.resolve_jit_compile(config.jit_compile),
    )
    return model


def _tensorboard_available():
    if importlib.util.find_spec("tensorflow") is None:
        # Keras's TensorBoard callback writes through tf.summary.
        logger.warning(
            "keras-wrs: TensorBoard logs skipped: Keras's TensorBoard "
            "callback needs TensorFlow, which is not installed."
        )
        return False
    if importlib.util.find_spec("tensorboard") is not None:
        return True
    logger.warning(
        "keras-wrs: TensorBoard logs skipped: the `tensorboard` "
        "package is not installed (`pip install tensorboard`)."
    )
    return False


def _callbacks(config, files, meter, dynamics, extra, verbose, saver):
    callbacks = [
        StopOnNaN(),
        meter,
        *dynamics,
        keras.callbacks.CSVLogger(str(files["history"]), append=True),
    ]
    if config.tensorboard and _tensorboard_available():
        callbacks.append(
            keras.callbacks.TensorBoard(
                str(files["tensorboard"]), write_graph=False, profile_batch=0
            )
        )
    # Last, so that a crash after it never leaves a backup ahead of the logs.
    callbacks.append(saver)
    if verbose != 0:
        held_out = "validation" if config.validation_examples else "test"
        callbacks.append(ShortProgbar(verbose, held_out=held_out))
    return callbacks + list(extra)


@dataclasses.dataclass
class _Run:
    """What `_build` prepares for `model.fit`."""

    model: keras.Model
    strategy: object
    splits: object
    eval_ds: object
    steps: int
    resolved: dict
    probe: object
    val_ds: object = None  # the validation split, or None: then the test set each epoch

    def train_stream(self, config, start_epoch):
        """The training batches from `start_epoch` on (`data.train_dataset`)."""
        stream, _ = data.train_dataset(
            self.splits,
            config.batch_size,
            config.seed,
            config.augment,
            config.pad,
            start_epoch,
            config.epochs,
            steps_per_epoch=config.steps_per_epoch,
        )
        return stream


def _setup_error(err):
    """A ValueError found while preparing a run, as a `RunSetupError`."""
    return err if isinstance(err, RunSetupError) else RunSetupError(str(err))


def _check_noise_kernels(config, model):
    """SpanNoise can measure the kernels it will watch (before any work).

    The kernels named in `noise_kernels` exist and sit in the model's graph:
    SpanNoise reads a layer's input from there, which a layer inside a
    subclassed block (KerasHub's MobileNetV3 and EfficientNet blocks) does
    not have. By default such kernels are skipped (SpanNoise logs each), as
    long as one watched kernel is left.
    """
    if not config.dynamics:
        return
    from keras_wrs.dynamics.kernels import outside_graph, tracked_kernels

    try:
        watched = tracked_kernels(model, list(config.noise_kernels))
    except ValueError:
        if config.noise_kernels:
            raise
        return  # nothing to watch by default: SpanNoise says so itself
    outside = outside_graph(model, watched)
    if outside and (config.noise_kernels or len(outside) == len(watched)):
        s = outside[0]
        raise ValueError(
            f"dynamics=true measures the weight noise of {s.path!r} from its layer's "
            f"input in the model's graph, but layer {s.layer.name!r} sits inside a "
            f"subclassed layer or a nested model of model {model.name!r} and has none"
            + (
                ". Name kernels of the model's own layers in noise_kernels, or pass "
                if config.noise_kernels
                else ", as every kernel it would watch does. Pass "
            )
            + "--set dynamics=false for this model."
        )


def _rescaling(config, model):
    """`optim.coverage` of the run; a rescaling run with nothing to rescale is refused."""
    rescaling = optim.coverage(model, optim.rescales(config.regularization))
    if rescaling["applied"] and not rescaling["kernels"]:
        frozen = f" once freeze={config.freeze!r} is applied" if config.freeze != "none" else ""
        raise RunSetupError(
            f"regularization={config.regularization!r} rescales the kernels that feed "
            f"BatchNormalization scale-invariantly, but model {model.name!r} has no "
            f"scale-invariant kernel{frozen} (a BatchNormalization with trainable=False "
            f"normalizes with its moving statistics, so the kernel before it is not). "
            f"Use weight decay: --set regularization=wd."
        )
    return rescaling


def _build(config, policy):
    """Data, compiled model and resolved config of a run; every check before training."""
    strategy = system.make_strategy(config.strategy, config.jit_compile)
    keras.utils.set_random_seed(config.seed)
    try:
        splits = data.splits_for(config)
        steps = data.train_steps(splits, config.batch_size, config.steps_per_epoch)
        check_total_steps(steps, config.epochs)
        hp = optim.resolve_hyperparameters(config, steps)
        with strategy.scope():
            model = _compile(config, hp, splits, optim.learning_rate_schedule(config, hp))
        _check_noise_kernels(config, model)
    except ValueError as err:  # e.g. a batch larger than the training set
        raise _setup_error(err) from err
    resolved = record.resolved_config(
        config,
        hp,
        splits,
        policy,
        strategy,
        cluster.describe(strategy, config),
        _rescaling(config, model),
    )
    # The span probe: the first `probe_examples` training images, normalized.
    probe = data.probe_batch(splits, config.probe_examples)
    eval_ds = data.eval_dataset(splits, config.batch_size)
    val_ds = None
    if splits.x_val is not None:
        val_ds = data.eval_dataset(splits, config.batch_size, "validation")
    return _Run(model, strategy, splits, eval_ds, steps, resolved, probe, val_ds)


def _fit(config, run, files, extra, verbose, saver):
    """`model.fit` from the restored epoch; returns (StopOnNaN, dynamics)."""
    meter = Throughput(config.batch_size)
    dynamics = dynamics_callbacks(
        config, run.probe, every=max(1, run.steps // 2), initial=files["initial_kernels"]
    )
    callbacks = _callbacks(config, files, meter, dynamics, extra, verbose, saver)
    start = saver.restored.epoch if saver.restored else 0
    if start >= config.epochs:  # killed after the last epoch's backup
        return callbacks[0], dynamics
    run.model.fit(
        run.train_stream(config, start),
        epochs=config.epochs,
        initial_epoch=start,
        steps_per_epoch=run.steps,
        validation_data=run.val_ds or run.eval_ds,
        verbose=0,
        shuffle=False,
        callbacks=callbacks,
    )
    return callbacks[0], dynamics


def _write_plots(config, files, dynamics):
    if not config.plots:
        return
    files["plots"].mkdir(exist_ok=True)
    figures.plot_history(files["history"], files["plots"] / "history.png")
    if dynamics:
        figures.write_dynamics_plots(str(files["history"]), files["plots"])


def train(
    config, run_dir, *, resume=False, overwrite=False, callbacks=(), verbose="auto", recipe=None
):
    """Train one configuration into `run_dir` and return its summary.

    Args:
        config: a `Config` (validated here, before any work).
        run_dir: the run directory (see `keras_wrs.recipes.runs.rundir`).
        resume: continue an unfinished run in `run_dir` (a finished one is
            returned as it is); the config must equal the stored one.
        overwrite: delete `run_dir` first.
        callbacks: extra Keras callbacks, appended last.
        verbose: progress output (`"auto"`/1 progress bar, 2 one line per
            epoch, 0 silent).
        recipe: recipe name recorded in the summary.

    Returns:
        The summary dict also written to `summary.json`.

    Raises:
        DivergedError: the loss stopped being finite (`summary.json` says
            `"status": "diverged"`); also when resuming such a run.
        keras_wrs.recipes.runs.backup.BackupError: `resume` of a run whose
            finished epochs have no usable backup.
        keras_wrs.recipes.config.MissingExtraError: a package the run needs
            is not installed (before any work).
        RunSetupError: the data cannot honour the config (a batch larger
            than the training set).

    Example:
        >>> from keras_wrs.recipes import get_recipe, train
        >>> summary = train(get_recipe("digits"), "runs/digits-wrs")
        >>> summary["test_accuracy"]
    """
    validate(config)
    data.check_dataset_name(config.dataset)
    check_extras(config)
    t0 = time.perf_counter()
    # Only the chief writes run_dir; another worker writes its own place.
    where = cluster.worker_run_dir(run_dir, config)
    with rundir.claim_run_dir(where, resume=resume, overwrite=overwrite) as claim:
        return _train_claimed(config, claim, t0, callbacks, verbose, recipe)


def _train_claimed(config, claim, t0, callbacks, verbose, recipe):
    """`train` in a claimed run directory."""
    files = _files(claim.path)
    previous = _resumed_record(claim.path, config)
    if previous is not None and previous.summary is not None:
        backup.remove_backup(files["backup"])  # killed just before removing it
        return _finished(previous.summary)
    point = rows = None
    if previous is not None:
        rows = rundir.history_rows(files["history"])
        point = backup.find_restore_point(files["backup"], rows)
    with system.precision_policy(config.precision) as policy:
        run = _build(config, policy)
        epoch = cluster.agreed_epoch(run.strategy, point.epoch if point else 0)
        if point is not None and epoch < point.epoch:  # a peer backed up one epoch less
            point = backup.find_restore_point(files["backup"], rows, at_most=epoch)
        if point is not None:  # before fit: callbacks begin on the restored state
            with run.strategy.scope():
                backup.restore(run.model, point)
        before = point.elapsed_seconds if point else 0.0
        saver = backup.AtomicBackup(
            files["backup"], point, elapsed=lambda: before + time.perf_counter() - t0
        )
        record.write_config(claim.path, run.resolved)
        rundir.write_environment(claim.path)
        rundir.truncate_history(files["history"], point.epoch if point else 0)
        claim.keep = True  # training starts: keep what a --resume needs
        ctrl_c = CtrlC()
        with ctrl_c.installed():
            guard, dynamics = _fit(config, run, files, [ctrl_c, *callbacks], verbose, saver)
            evaluation = None
            if guard.diverged is None:
                evaluation = run.model.evaluate(
                    run.eval_ds, return_dict=True, verbose=0, callbacks=[ctrl_c]
                )
                run.model.save(files["model"])
    if guard.diverged is None:
        _write_plots(config, files, dynamics)
    summary = record.run_summary(
        config,
        run.model,
        evaluation,
        rundir.read_history(files["history"]),
        saver.elapsed(),
        run.resolved,
        recipe,
        guard.diverged,
    )
    record.write_summary(claim.path, summary)
    backup.remove_backup(files["backup"])
    cluster.finish_worker_dir(claim.path, config)
    return _finished(summary)
