"""One training entry point over `model.fit`.

`train(config, run_dir)` validates the config, prepares the run directory,
loads the data, builds and compiles the model under the configured precision
policy and distribution strategy, and fits it with Keras callbacks only:
`BackupAndRestore` (a killed run resumes where it stopped), the keras-wrs
dynamics callbacks, `CSVLogger`, `TensorBoard` and a throughput meter. It then
evaluates on the test split, saves `model.keras`, plots, and writes
`summary.json`. See `keras_wrs.recipes.rundir` for the directory layout.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import logging
import time
from pathlib import Path

import keras

from keras_wrs.recipes import config as cfg
from keras_wrs.recipes import data, instruments, optim, plotting, rundir, system
from keras_wrs.recipes.meters import ShortProgbar, Throughput
from keras_wrs.recipes.models import build_model

__all__ = ["train", "ConfigMismatchError"]

logger = logging.getLogger("keras_wrs")


class ConfigMismatchError(ValueError):
    """A resumed run's configuration differs from the one it started with."""


def _config_hash(config):
    text = json.dumps(cfg.to_dict(config), sort_keys=True, default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _check_resumable(files, config):
    stored = rundir.read_json(files["config"])
    if stored is None:
        return
    if stored.get("config_hash") != _config_hash(config):
        theirs = stored.get("config", {})
        diff = sorted(k for k, v in cfg.to_dict(config).items() if theirs.get(k) != v)
        raise ConfigMismatchError(
            f"Cannot resume {str(files['config'].parent)!r}: its config differs "
            f"in {', '.join(diff) or 'its hash'}. Resume with the same settings, "
            f"or pass --overwrite to start again.")


def _files(run_dir):
    return {key: Path(run_dir) / name for key, name in rundir.FILES.items()}


def _compile(config, hp, splits, schedule):
    reg = optim.kernel_regularizer(config, hp)
    model = build_model(config.model, splits.info.input_shape,
                        splits.info.num_classes, kernel_regularizer=reg,
                        **config.model_kwargs)
    optimizer = optim.make_optimizer(config, hp, schedule, model)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=config.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        jit_compile=config.jit_compile)
    return model


def _resolved(config, hp, splits, policy, strategy):
    info = splits.info
    return {
        "config_hash": _config_hash(config),
        "config": cfg.to_dict(config),
        "dataset": {"name": info.name, "num_classes": info.num_classes,
                    "class_names": list(info.class_names),
                    "input_shape": list(info.input_shape),
                    "num_train": info.num_train, "num_test": info.num_test,
                    "synthetic": info.synthetic, "source": info.source},
        "preprocessing": {"rescale": info.rescale, "mean": list(info.mean),
                          "std": list(info.std),
                          "formula": "(x * rescale - mean) / std"},
        "resolved": {"learning_rate": hp.learning_rate,
                     "weight_decay": hp.weight_decay, "lr_scale": hp.lr_scale,
                     "steps_per_epoch": hp.steps_per_epoch,
                     "total_steps": hp.total_steps, "dtype_policy": policy,
                     "strategy": type(strategy).__name__,
                     "replicas": strategy.num_replicas_in_sync},
    }


def _truncate_history(path, epochs):
    """Keep the header and the first `epochs` rows of a resumed run's CSV."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:epochs + 1]) if epochs else "")


def _tensorboard_available():
    if importlib.util.find_spec("tensorboard") is not None:
        return True
    logger.warning("keras-wrs: TensorBoard logs skipped: the `tensorboard` "
                   "package is not installed (`pip install tensorboard`).")
    return False


def _callbacks(config, files, meter, dynamics, extra, verbose):
    callbacks = [meter, *dynamics,
                 keras.callbacks.CSVLogger(str(files["history"]), append=True)]
    if config.tensorboard and _tensorboard_available():
        callbacks.append(keras.callbacks.TensorBoard(
            str(files["tensorboard"]), write_graph=False, profile_batch=0))
    # Last, so that a crash after it never leaves a backup ahead of the logs.
    callbacks.append(keras.callbacks.BackupAndRestore(str(files["backup"])))
    if verbose != 0:
        callbacks.append(ShortProgbar(verbose))
    return callbacks + list(extra)


def _probe(splits, config):
    """The first `probe_examples` training images, normalized: the span probe."""
    return data.probe_batch(splits, config.probe_examples)


def _summary(config, model, history, evaluation, meter, t0, resolved, recipe):
    final = {k: float(v[-1]) for k, v in history.history.items() if v}
    dyn = instruments.final_dynamics(history.history)
    return {
        "recipe": recipe,
        "dataset": config.dataset,
        "synthetic": resolved["dataset"]["synthetic"],
        "model": config.model,
        "optimizer": config.optimizer,
        "regularization": config.regularization,
        "seed": config.seed,
        "epochs": config.epochs,
        "test_accuracy": float(evaluation["accuracy"]),
        "test_loss": float(evaluation["loss"]),
        "train_accuracy": final.get("accuracy"),
        "train_loss": final.get("loss"),
        "noise_ratio": dyn["noise_ratio"],
        "images_per_second": meter.images_per_second,
        "wall_seconds": time.perf_counter() - t0,
        "trainable_params": sum(int(v.numpy().size) for v in model.trainable_variables),
        "dtype_policy": resolved["resolved"]["dtype_policy"],
        "jit_compile": config.jit_compile,
        "strategy": resolved["resolved"]["strategy"],
        "replicas": resolved["resolved"]["replicas"],
        "dynamics": dyn["per_kernel"],
    }


@dataclasses.dataclass
class _Run:
    """What `_build` prepares for `model.fit`."""

    model: keras.Model
    train_ds: object
    eval_ds: object
    steps: int
    resolved: dict
    probe: object


def _build(config, policy, start):
    """Data, model and resolved config of a run starting at epoch `start`."""
    strategy = system.make_strategy(config.strategy, config.jit_compile)
    keras.utils.set_random_seed(config.seed)
    splits = data.load_splits(
        config.dataset, config.data_dir, config.download, config.image_size,
        (config.synthetic_train, config.synthetic_test))
    train_ds, steps = data.train_dataset(
        splits, config.batch_size, config.seed, config.augment, config.pad,
        start, config.epochs, steps_per_epoch=config.steps_per_epoch)
    hp = optim.resolve_hyperparameters(config, steps)
    with strategy.scope():
        model = _compile(config, hp, splits, optim.learning_rate_schedule(config, hp))
    return _Run(model, train_ds, data.eval_dataset(splits, config.batch_size), steps,
                _resolved(config, hp, splits, policy, strategy), _probe(splits, config))


def _fit(config, run, files, extra, verbose):
    """`model.fit` with the run's callbacks; returns history, meter, dynamics."""
    meter = Throughput(config.batch_size)
    dynamics = instruments.dynamics_callbacks(config, run.probe,
                                              every=max(1, run.steps // 2))
    history = run.model.fit(
        run.train_ds, epochs=config.epochs, steps_per_epoch=run.steps,
        validation_data=run.eval_ds, verbose=0, shuffle=False,
        callbacks=_callbacks(config, files, meter, dynamics, extra, verbose))
    return history, meter, dynamics


def _write_plots(config, files, dynamics):
    if not config.plots:
        return
    files["plots"].mkdir(exist_ok=True)
    plotting.plot_history(files["history"], files["plots"] / "history.png")
    if dynamics:
        instruments.write_dynamics_plots(str(files["history"]), files["plots"])


def train(config, run_dir, *, resume=False, overwrite=False, callbacks=(),
          verbose="auto", recipe=None):
    """Train one configuration into `run_dir` and return its summary.

    Args:
        config: a `Config` (validated here, before any work).
        run_dir: the run directory (see `keras_wrs.recipes.rundir`).
        resume: continue an unfinished run in `run_dir` (a finished one is
            returned as it is); the config must equal the stored one.
        overwrite: delete `run_dir` first.
        callbacks: extra Keras callbacks, appended last.
        verbose: progress output (`"auto"`/1 progress bar, 2 one line per
            epoch, 0 silent).
        recipe: recipe name recorded in the summary.

    Returns:
        The summary dict also written to `summary.json`.

    Example:
        >>> from keras_wrs.recipes import get_recipe, train
        >>> summary = train(get_recipe("digits"), "runs/digits-wrs")
        >>> summary["test_accuracy"]
    """
    cfg.validate(config)
    data.check_dataset_name(config.dataset)
    t0 = time.perf_counter()
    files = _files(rundir.prepare_run_dir(run_dir, resume=resume, overwrite=overwrite))
    if resume:
        _check_resumable(files, config)
        done = rundir.read_json(files["summary"])
        if done is not None:
            return done
    start = rundir.backup_epoch(files["backup"].parent) if resume else 0
    with system.precision_policy(config.precision) as policy:
        run = _build(config, policy, start)
        rundir.write_json(files["config"], run.resolved)
        rundir.write_json(files["environment"], rundir.environment())
        _truncate_history(files["history"], start)
        history, meter, dynamics = _fit(config, run, files, callbacks, verbose)
        evaluation = run.model.evaluate(run.eval_ds, return_dict=True, verbose=0)
        run.model.save(files["model"])
    _write_plots(config, files, dynamics)
    summary = _summary(config, run.model, history, evaluation, meter, t0,
                       run.resolved, recipe)
    rundir.write_json(files["summary"], summary)
    return summary
