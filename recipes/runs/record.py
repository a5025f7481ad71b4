"""The run record: what a run's `config.json` and `summary.json` hold, written and read here.

`config.json` is written when a run starts: the config and its hash, the
data set's facts, the preprocessing (`(x * rescale - mean) / std`, applied
outside the model), the resolved hyperparameters, the cluster and how much of
the model WRS rescales. `summary.json` is written when it ends: status, test
metrics, the last dynamics values, speed and wall time over all segments of a
resumed run. `RunRecord.read` is how the recipes' reports and the exporter
read them back.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import statistics
from pathlib import Path

import numpy as np

from keras_wrs._files import atomic_write_json
from keras_wrs.dynamics import logkeys
from keras_wrs.recipes.config.overrides import to_dict
from keras_wrs.recipes.runs.rundir import FILES, thread_caps
from keras_wrs.recipes.runs.validation import (
    RunRecordError,
    check_config_record,
    check_summary,
    load_json,
)

__all__ = [
    "RunRecord",
    "RunRecordError",
    "Preprocessing",
    "config_hash",
    "resolved_config",
    "run_summary",
    "final_dynamics",
    "median_rate",
    "write_config",
    "write_summary",
]

# SpanNoise's per-kernel mean noise ratio (the first of its metrics).
_NOISE_MEAN = logkeys.NOISE_METRICS[0]


# Fields added to `Config` after runs were recorded: at these (their default)
# values they are left out of the hash, so that runs started before the field
# existed still resume and report under the same hash.
_ADDED_FIELDS = {"init_from": None, "freeze": "none"}


def config_hash(config):
    """`"sha256:<hex>"` of a `Config`'s fields as canonical JSON.

    Fields of `_ADDED_FIELDS` at their default value are left out.
    """
    fields = {
        k: v
        for k, v in to_dict(config).items()
        if not (k in _ADDED_FIELDS and v == _ADDED_FIELDS[k])
    }
    text = json.dumps(fields, sort_keys=True, default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def resolved_config(config, hp, splits, policy, strategy, cluster, rescaling):
    """The content of `config.json`.

    Args:
        config: the run's `Config`.
        hp: its resolved `Hyperparameters`.
        splits: the `Splits` it trains on.
        policy: the dtype policy's name.
        strategy: the distribution strategy.
        cluster: `training.cluster.describe` of the run.
        rescaling: `training.optim.coverage` of the model.
    """
    info = splits.info
    return {
        "config_hash": config_hash(config),
        "config": to_dict(config),
        "dataset": {
            "name": info.name,
            "num_classes": info.num_classes,
            "class_names": list(info.class_names),
            "input_shape": list(info.input_shape),
            "num_train": info.num_train,
            "num_test": info.num_test,
            "num_validation": 0 if splits.y_val is None else len(splits.y_val),
            "epoch_metrics_on": "test" if splits.y_val is None else "validation",
            "synthetic": info.synthetic,
            "source": info.source,
        },
        "preprocessing": {
            "rescale": info.rescale,
            "mean": list(info.mean),
            "std": list(info.std),
            "formula": "(x * rescale - mean) / std",
        },
        "resolved": {
            "learning_rate": hp.learning_rate,
            "weight_decay": hp.weight_decay,
            "lr_scale": hp.lr_scale,
            "steps_per_epoch": hp.steps_per_epoch,
            "total_steps": hp.total_steps,
            "dtype_policy": policy,
            "strategy": type(strategy).__name__,
            "replicas": strategy.num_replicas_in_sync,
            # With the machine: what a rerun must match to repeat the run bit for bit.
            "cpu_count": os.cpu_count(),
            "thread_caps": thread_caps(),
        },
        "cluster": cluster,
        "rescaling": rescaling,
    }


def _last_finite(values):
    for value in reversed(list(values)):
        if value is not None and math.isfinite(value):
            return float(value)
    return None


def final_dynamics(history):
    """Summary numbers from a run's epoch logs.

    Metrics measured every few epochs log NaN in between, so each value is
    the last finite one.

    Args:
        history: `{key: [value per epoch]}` (`History.history`).

    Returns:
        `{"noise_ratio": mean over kernels or None, "per_kernel": {key: value}}`
        for every `metric/kernel` key.
    """
    per_kernel = {k: _last_finite(v) for k, v in history.items() if logkeys.parse(k)[1]}
    noise = [
        v for k, v in per_kernel.items() if logkeys.parse(k)[0] == _NOISE_MEAN and v is not None
    ]
    return {"noise_ratio": float(np.mean(noise)) if noise else None, "per_kernel": per_kernel}


def median_rate(history):
    """The median of the epochs' finite `images_per_second`, or None."""
    rates = [r for r in history.get("images_per_second", ()) if math.isfinite(r)]
    return statistics.median(rates) if rates else None


def _cpu_seconds(history):
    """Process CPU seconds of the run's epochs (`Throughput`), or None."""
    values = [v for v in history.get("epoch_cpu_seconds", ()) if math.isfinite(v)]
    return float(sum(values)) if values else None


def _float(value):
    return None if value is None else float(value)


def run_summary(config, model, evaluation, history, elapsed, resolved, recipe, diverged=None):
    """The content of `summary.json`, from the run's whole `history.csv` (all segments).

    Args:
        config: the run's `Config`.
        model: the trained model.
        evaluation: `model.evaluate` dict, or None for a diverged run.
        history: the run's epoch logs, `{key: [value per epoch]}`.
        elapsed: wall seconds of the run over all its segments.
        resolved: the run's `config.json` content (`resolved_config`).
        recipe: the recipe's name, or None.
        diverged: `StopOnNaN.diverged` of a run that diverged.
    """
    final = {k: v[-1] for k, v in history.items() if v}
    dyn = final_dynamics(history)
    evaluation = evaluation or {}
    return {
        "status": "diverged" if diverged else "finished",
        "diverged": diverged,
        "recipe": recipe,
        "dataset": config.dataset,
        "synthetic": resolved["dataset"]["synthetic"],
        # A fine-tuning run's network is the file it started from, not `config.model`.
        "model": config.model if config.init_from is None else _started_from(config.init_from),
        "optimizer": config.optimizer,
        "regularization": config.regularization,
        "seed": config.seed,
        "epochs": config.epochs,
        "test_accuracy": _float(evaluation.get("accuracy")),
        "test_loss": _float(evaluation.get("loss")),
        # The last epoch's `val_*` logs are the final weights on the split.
        "validation_accuracy": final.get("val_accuracy") if config.validation_examples else None,
        "cpu_seconds": _cpu_seconds(history),
        "train_accuracy": final.get("accuracy"),
        "train_loss": final.get("loss"),
        "noise_ratio": dyn["noise_ratio"],
        "images_per_second": median_rate(history),
        "wall_seconds": elapsed,
        "trainable_params": sum(int(np.prod(v.shape)) for v in model.trainable_variables),
        "dtype_policy": resolved["resolved"]["dtype_policy"],
        "jit_compile": bool(model.jit_compile),
        "strategy": resolved["resolved"]["strategy"],
        "replicas": resolved["resolved"]["replicas"],
        "dynamics": dyn["per_kernel"],
    }


def _started_from(path):
    """The `model` of a run that starts from a saved model: the file's name."""
    return f"{Path(path).name} (init_from)"


def write_config(run_dir, value):
    """Write `config.json` of `run_dir` (crash-safe)."""
    return atomic_write_json(Path(run_dir) / FILES["config"], value)


def write_summary(run_dir, value):
    """Write `summary.json` of `run_dir` (crash-safe)."""
    return atomic_write_json(Path(run_dir) / FILES["summary"], value)


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How raw images became model inputs: `(x * rescale - mean) / std`."""

    rescale: float
    mean: tuple
    std: tuple

    def apply(self, images):
        """The model inputs of raw `images` (`keras_wrs.recipes.data.preprocess`)."""
        from keras_wrs.recipes.data.pipeline import preprocess

        return preprocess(images, self.rescale, self.mean, self.std)


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """A run directory's `config.json` and `summary.json`, as read back.

    Attributes:
        run_dir: the run directory.
        stored: the parsed `config.json` (`resolved_config`'s layout).
        summary: the parsed `summary.json`, or None for an unfinished run.
    """

    run_dir: Path
    stored: dict
    summary: dict | None
    config: object

    @classmethod
    def read(cls, run_dir):
        """Read and check the record of `run_dir` (`keras_wrs.recipes.runs.validation`).

        Raises:
            FileNotFoundError: `run_dir` has no `config.json`.
            RunRecordError: a file that is cut, edited or out of range.
        """
        run_dir = Path(run_dir)
        path = run_dir / FILES["config"]
        stored = load_json(path)
        if stored is None:
            raise FileNotFoundError(
                f"{str(run_dir)!r} holds no {FILES['config']}: it is not a keras-wrs run directory."
            )
        config = check_config_record(stored, path)
        summary = load_json(run_dir / FILES["summary"])
        if summary is not None:
            check_summary(summary, run_dir / FILES["summary"])
        return cls(run_dir, stored, summary, config)

    @property
    def config_hash(self):
        """The hash written when the run started."""
        return self.stored.get("config_hash")

    @property
    def dataset(self):
        """The data set's facts: name, classes, input shape, sizes, source."""
        return self.stored.get("dataset") or {}

    @property
    def resolved(self):
        """Learning rate, weight decay, steps, dtype policy, strategy, replicas."""
        return self.stored.get("resolved") or {}

    @property
    def rescaling(self):
        """`training.optim.coverage` of the model, or None in older records."""
        return self.stored.get("rescaling")

    @property
    def preprocessing(self):
        """The run's `Preprocessing`.

        Raises:
            RunRecordError: the record does not say how inputs were made.
        """
        prep = self.stored.get("preprocessing")
        if prep is None:
            raise RunRecordError(
                f"{str(self.run_dir / FILES['config'])!r} does not record the run's "
                f"preprocessing (no 'preprocessing' section): it was not written by a "
                f"keras-wrs run."
            )
        return Preprocessing(float(prep["rescale"]), tuple(prep["mean"]), tuple(prep["std"]))

    def splits(self):
        """The data the run trained and tested on (`data.splits_for`; nothing downloaded)."""
        from keras_wrs.recipes.data import splits_for

        return splits_for(dataclasses.replace(self.config, download=False))
