"""Several workers: the `TF_CONFIG` cluster, the chief, per-worker directories.

`tf.distribute.MultiWorkerMirroredStrategy` reads its cluster from the
`TF_CONFIG` environment variable, one JSON object per process::

    {"cluster": {"worker": ["host1:12345", "host2:12345"]},
     "task": {"type": "worker", "index": 0}}

This module checks that variable before any work (`preflight`), says
which process is the chief (the `chief` task, else worker 0), gives every
other worker a directory of its own next to the run directory
(`worker_run_dir`), and creates the strategy with bounded waits
(`multi_worker_strategy`):

* connecting to the peers: `connect_timeout` seconds (default
  `CONNECT_TIMEOUT_S`, or the `KERAS_WRS_CONNECT_TIMEOUT` environment
  variable), after which a small watcher process prints a message naming
  `TF_CONFIG` and stops the worker (SIGTERM, then SIGKILL 3 s later):
  TensorFlow waits for its peers in C++ holding the GIL, out of reach of
  Python threads and exceptions, and holds SIGTERM back;
* each collective operation: `collective_timeout` seconds (default
  `COLLECTIVE_TIMEOUT_S`); TensorFlow's own health check also aborts the
  collectives of the survivors when a peer stops answering.

Only the chief writes the run directory. Another worker writes what a resume
needs (`BackupAndRestore`'s backup, `config.json`, `summary.json`, the CSV
log) into `<parent>/.<run name>.worker<id>`, which `finish_worker_dir`
trims to `config.json`, `summary.json` and `history.csv` when the run ends:
they tell a resumed grid which runs are finished, as the chief's files tell
the chief.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from keras_wrs.recipes.training import watchdog

__all__ = [
    "TF_CONFIG",
    "CONNECT_TIMEOUT_S",
    "COLLECTIVE_TIMEOUT_S",
    "Cluster",
    "parse_tf_config",
    "cluster_from_env",
    "check_batch_size",
    "is_chief",
    "preflight",
    "worker_run_dir",
    "finish_worker_dir",
    "multi_worker_strategy",
    "agreed_epoch",
    "describe",
]

TF_CONFIG = "TF_CONFIG"
CONNECT_TIMEOUT_S = 120.0
COLLECTIVE_TIMEOUT_S = 600.0
_JOBS = ("chief", "worker")
_EXAMPLE = (
    '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
    '"task": {"type": "worker", "index": 0}}'
)
_ADDRESS = re.compile(r"^\S+:(\d{1,5})$")
_KEPT = ("config.json", "summary.json", "history.csv")


@dataclasses.dataclass(frozen=True)
class Cluster:
    """The parsed `TF_CONFIG` of one process.

    Attributes:
        jobs: `{"chief": (address,), "worker": (address, ...)}`; `chief` may
            be absent.
        task_type: this process's job, `"chief"` or `"worker"`.
        task_index: its index in that job.
    """

    jobs: dict
    task_type: str
    task_index: int

    @property
    def num_workers(self):
        """Processes that train: the chief (if any) and every worker."""
        return sum(len(self.jobs.get(job, ())) for job in _JOBS)

    @property
    def worker_id(self):
        """0 for the chief, then the workers in order."""
        offset = len(self.jobs.get("chief", ())) if self.task_type == "worker" else 0
        return offset + self.task_index

    @property
    def is_chief(self):
        """The `chief` task, or worker 0 of a cluster without one."""
        return self.worker_id == 0


def _bad(problem, fix):
    return ValueError(
        f"{TF_CONFIG} {problem}. {fix} Each worker needs its own "
        f"{TF_CONFIG}, e.g. {TF_CONFIG}='{_EXAMPLE}'."
    )


def _parse_jobs(cluster):
    if not isinstance(cluster, dict) or not cluster:
        raise _bad(
            f'has no "cluster" object (received {cluster!r})',
            'Give "cluster": {"worker": ["host:port", ...]}.',
        )
    jobs = {}
    for job, addresses in cluster.items():
        if job not in _JOBS:
            raise _bad(
                f"names job {job!r}",
                'MultiWorkerMirroredStrategy uses only the jobs "chief" and "worker".',
            )
        if not isinstance(addresses, list) or not addresses:
            raise _bad(
                f"job {job!r} is {addresses!r}",
                'Each job is a non-empty list of "host:port" strings.',
            )
        for address in addresses:
            match = _ADDRESS.match(address) if isinstance(address, str) else None
            if match is None or not 0 < int(match.group(1)) < 65536:
                raise _bad(
                    f"has the address {address!r} in job {job!r}",
                    'Addresses are "host:port", port 1-65535.',
                )
        jobs[job] = tuple(addresses)
    if len(jobs.get("chief", ())) > 1:
        raise _bad(f"lists {len(jobs['chief'])} chiefs", "A cluster has at most one.")
    return jobs


def _parse_task(task, jobs):
    if not isinstance(task, dict):
        raise _bad(
            f'has no "task" object (received {task!r})',
            'Give "task": {"type": "worker", "index": N} for this process.',
        )
    kind, index = task.get("type"), task.get("index", 0)
    if kind not in jobs:
        raise _bad(
            f"has task type {kind!r}, which is not a job of its cluster ({', '.join(jobs)})",
            'Set "task": {"type": ...} to one of them.',
        )
    if not isinstance(index, int) or isinstance(index, bool) or not (0 <= index < len(jobs[kind])):
        raise _bad(
            f"has task index {index!r}, out of range for job {kind!r} with "
            f"{len(jobs[kind])} address(es)",
            f"Use an index from 0 to {len(jobs[kind]) - 1}.",
        )
    return kind, index


def parse_tf_config(text):
    """Parse and check the text of a `TF_CONFIG`.

    Args:
        text: the JSON text.

    Returns:
        A `Cluster`.

    Raises:
        ValueError: bad JSON, no `cluster` or `task`, a job other than
            `chief`/`worker`, an address that is not `host:port`, or a task
            index out of range; the message names `TF_CONFIG` and the fix.
    """
    try:
        value = json.loads(text)
    except (TypeError, json.JSONDecodeError) as err:
        raise _bad(
            f"is not valid JSON ({err}; received {text!r})", "Quote it as one JSON object."
        ) from None
    if not isinstance(value, dict):
        raise _bad(
            f"is not a JSON object (received {text!r})", 'Give {"cluster": ..., "task": ...}.'
        )
    jobs = _parse_jobs(value.get("cluster"))
    return Cluster(jobs, *_parse_task(value.get("task"), jobs))


def cluster_from_env(environ=None):
    """The `Cluster` of the `TF_CONFIG` environment variable.

    Args:
        environ: a mapping (defaults to `os.environ`).

    Raises:
        ValueError: `TF_CONFIG` is unset or malformed.
    """
    environ = os.environ if environ is None else environ
    text = environ.get(TF_CONFIG)
    if not text:
        raise _bad(
            "is not set, and strategy 'multi_worker' reads the cluster from it",
            "Set it in every worker's environment, or use --strategy mirrored on one machine.",
        )
    return parse_tf_config(text)


def check_batch_size(batch_size, cluster):
    """Refuse a global batch that the workers cannot split evenly."""
    if batch_size % cluster.num_workers:
        raise ValueError(
            f"`batch_size` is the global batch and must be a multiple of the "
            f"{cluster.num_workers} workers of {TF_CONFIG}. Received: "
            f"batch_size={batch_size}; use e.g. "
            f"{max(1, batch_size // cluster.num_workers) * cluster.num_workers}."
        )
    return batch_size // cluster.num_workers


def is_chief(strategy_name="multi_worker", environ=None):
    """Whether this process writes the run directory (always, unless multi-worker)."""
    if strategy_name != "multi_worker":
        return True
    return cluster_from_env(environ).is_chief


def preflight(config, environ=None):
    """Check `TF_CONFIG` and the batch of a multi-worker `config`, before any work.

    Returns:
        The `Cluster`, or None for the other strategies.

    Raises:
        ValueError: `TF_CONFIG` unset or malformed, a global batch that the
            workers cannot split evenly, or a bad `KERAS_WRS_CONNECT_TIMEOUT`.
    """
    if config.strategy != "multi_worker":
        return None
    cluster = cluster_from_env(environ)
    check_batch_size(config.batch_size, cluster)
    _connect_timeout(None, environ)
    return cluster


def _marker(worker_id):
    return f".worker{worker_id}"


def worker_run_dir(run_dir, config, environ=None):
    """The directory this process writes instead of `run_dir` (after `preflight`).

    The chief (and any process without the multi-worker strategy) writes
    `run_dir` itself. Worker `k > 0` writes `<parent>/.<name>.worker<k>`, a
    fixed place so that a restarted worker finds its backup again; a path
    already inside such a directory (a grid's run) is returned as it is.
    """
    run_dir = Path(run_dir)
    cluster = preflight(config, environ)
    if cluster is None or cluster.is_chief:
        return run_dir
    marker = _marker(cluster.worker_id)
    if any(p.name.startswith(".") and p.name.endswith(marker) for p in (run_dir, *run_dir.parents)):
        return run_dir
    return run_dir.parent / f".{run_dir.name}{marker}"


def finish_worker_dir(run_dir, config, environ=None):
    """After a finished run, keep only `config.json`, `summary.json` and
    `history.csv` of a non-chief worker's directory; leave the chief's alone."""
    if is_chief(config.strategy, environ):
        return
    for path in Path(run_dir).iterdir():
        if path.name in _KEPT:
            continue
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def _connect_timeout(connect_timeout, environ=None):
    name = "connect_timeout"
    if connect_timeout is None:
        name = "KERAS_WRS_CONNECT_TIMEOUT"
        connect_timeout = (os.environ if environ is None else environ).get(name, CONNECT_TIMEOUT_S)
    try:
        seconds = float(connect_timeout)
    except (TypeError, ValueError):
        seconds = float("nan")
    if not 0 < seconds < float("inf"):
        raise ValueError(
            f"{name} must be a number of seconds > 0. Received: {name}={connect_timeout!r}"
        )
    return seconds


def _no_peers_message(timeout, cluster):
    peers = ", ".join(a for job in _JOBS for a in cluster.jobs.get(job, ()))
    return (
        f"keras-wrs: error: worker {cluster.worker_id} ({cluster.task_type}:"
        f"{cluster.task_index}) could not reach its peers in {TF_CONFIG} "
        f"({peers}) within {timeout:g} s, and is stopped. Start every "
        f"worker of {TF_CONFIG}, check the addresses and ports, or raise "
        f"KERAS_WRS_CONNECT_TIMEOUT.\n"
    )


@contextlib.contextmanager
def _watchdog(timeout, cluster):
    """Stop this process with a message if the block lasts over `timeout` s."""
    # A separate process: while TensorFlow waits for its peers it holds the
    # GIL in C++, so no Python thread of this process runs until it returns.
    # Run as a file, not with -m: importing the keras_wrs package would load Keras.
    watch = subprocess.Popen(
        [
            sys.executable,
            watchdog.__file__,
            str(os.getpid()),
            str(timeout),
            _no_peers_message(timeout, cluster),
        ],
        stdin=subprocess.PIPE,
    )
    try:
        yield
    finally:
        watch.stdin.close()  # end of input: the watcher exits quietly
        watch.wait()


_STRATEGY = []


def _strategy_class():
    import tensorflow as tf

    class MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
        """TensorFlow's strategy, with a `reduce` that Keras 3's `fit` can call.

        Under this strategy Keras 3.15 calls `reduce` in two ways that
        TensorFlow's `reduce` rejects (keras-team/keras#20585): on a nested
        input batch, to build the model symbolically, and with `axis=0` on
        the scalar loss and metrics of every step. This reduces each value
        of a nest on its own, and a scalar across replicas only (`axis=None`,
        the one reduction a scalar has). Every other call is TensorFlow's.
        """

        def reduce(self, reduce_op, value, axis):
            if tf.nest.is_nested(value):
                return tf.nest.map_structure(lambda v: self.reduce(reduce_op, v, axis), value)
            local = self.experimental_local_results(value)[0]
            if (
                axis is not None
                and getattr(local, "shape", None) is not None
                and local.shape.rank == 0
            ):
                axis = None
            return super().reduce(reduce_op, value, axis)

    return MultiWorkerMirroredStrategy


def multi_worker_strategy(connect_timeout=None, collective_timeout=COLLECTIVE_TIMEOUT_S):
    """The process's `MultiWorkerMirroredStrategy`, created once.

    Call it before TensorFlow runs any operation ("Collective ops must be
    configured at program startup"); listing physical devices is fine,
    listing logical ones is not.

    Args:
        connect_timeout: seconds to wait for every peer of `TF_CONFIG`
            (None: `KERAS_WRS_CONNECT_TIMEOUT` or `CONNECT_TIMEOUT_S`).
        collective_timeout: seconds any one collective may take.

    Returns:
        The strategy.

    Raises:
        ValueError: a malformed `TF_CONFIG` or timeout.
    """
    if _STRATEGY:
        return _STRATEGY[0]
    import tensorflow as tf

    cluster = cluster_from_env()
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=collective_timeout)
    with _watchdog(_connect_timeout(connect_timeout), cluster):
        try:
            _STRATEGY.append(_strategy_class()(communication_options=options))
        except tf.errors.OpError as err:
            raise RuntimeError(
                f"Worker {cluster.worker_id} could not join the cluster of "
                f"{TF_CONFIG}: {type(err).__name__}: {err.message}"
            ) from err
    return _STRATEGY[0]


def agreed_epoch(strategy, epoch):
    """The epoch every worker can resume from: the smallest `epoch` of them all.

    Each worker keeps its own backups, and a kill can land after one worker
    backed up an epoch and before another did (they step together, so they
    differ by at most one epoch). Restoring different epochs makes the
    workers' collectives disagree (a broadcast against an all-reduce), and
    both abort. Every worker must call this at the same point; outside a
    multi-worker strategy (`multi_worker_strategy`) it returns `epoch`.
    """
    if not _STRATEGY or strategy is not _STRATEGY[0]:
        return epoch
    import tensorflow as tf

    values = strategy.run(lambda: tf.constant([epoch], tf.int64))
    return int(min(strategy.gather(values, axis=0).numpy()))


def describe(strategy, config):
    """Cluster size and batch sizes, as recorded in `config.json`.

    Args:
        strategy: the run's `tf.distribute.Strategy`.
        config: the run's `Config`; `batch_size` is the global batch, the
            one the learning-rate scaling uses.
    """
    replicas = strategy.num_replicas_in_sync
    cluster = preflight(config)
    workers = cluster.num_workers if cluster else 1
    batch = config.batch_size
    return {
        "workers": workers,
        "replicas": replicas,
        "task": f"{cluster.task_type}:{cluster.task_index}" if cluster else None,
        "global_batch_size": batch,
        "per_worker_batch_size": batch // workers,
        "per_replica_batch_size": batch // replicas,
    }
