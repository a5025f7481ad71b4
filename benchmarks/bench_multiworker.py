"""Cost of several workers and of synchronized BatchNorm, on one small CPU machine.

Trains the digits recipe's network (`small_cnn`, width 32, 8x8x1 inputs,
random data) with keras-wrs SGD (momentum 0.9, WRS on every kernel feeding
BatchNormalization) at a fixed global batch, in fresh processes:

* `1 process`: no strategy;
* `MWMS, 1 worker` / `MWMS, 2 workers`: `MultiWorkerMirroredStrategy` from a
  `TF_CONFIG` on 127.0.0.1 (the 2 workers each take half the global batch
  and all-reduce gradients over gRPC);
* `mirrored, 2 CPUs` with plain or synchronized BatchNorm: `MirroredStrategy`
  over 2 logical CPU devices of one process.

Each configuration is timed over `--steps` steps after `--warmup` steps,
`--repeats` times (a fresh process each time); the table reports the median
and every repeat's images per second, and the ratio to `1 process` measured
in the same run. On 2 cores, two workers compete for the same cores: this
measures the machinery's cost, not a speed-up.

Usage:
    python benchmarks/bench_multiworker.py                        # prints the table
    python benchmarks/bench_multiworker.py --write benchmarks/multiworker_results.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIGS = (
    ("1 process", {"kind": "default", "workers": 1, "sync_bn": False}),
    ("MWMS, 1 worker", {"kind": "multi_worker", "workers": 1, "sync_bn": False}),
    ("MWMS, 2 workers", {"kind": "multi_worker", "workers": 2, "sync_bn": False}),
    ("MWMS, 2 workers, sync BN", {"kind": "multi_worker", "workers": 2, "sync_bn": True}),
    ("mirrored, 2 CPUs", {"kind": "mirrored", "workers": 1, "sync_bn": False}),
    ("mirrored, 2 CPUs, sync BN", {"kind": "mirrored", "workers": 1, "sync_bn": True}),
)


NOTES = """\
Reading: every row runs the same WRS step, and the rescale adds no
communication (it is local to each replica, after the all-reduced update).
Two workers on one 2-core machine share its cores and all-reduce every
gradient (about 66k float32 values) over gRPC on the loopback, for a network
whose whole step takes about 34 ms in one process (batch 64 at ~1,900
images/s): the table shows what the
machinery costs, not a speed-up, which needs separate machines and steps
with more compute. Synchronized BatchNorm adds an all-reduce of the batch
mean and variance in the forward pass of each BatchNormalization layer
(4 here), hence its larger cost between processes than between the devices
of one process. The load average shows other work on the machine: compare
ratios within one run.
"""


# ------------------------------------------------------------ one process


def _strategy(kind):
    import tensorflow as tf

    if kind == "multi_worker":
        from keras_wrs.recipes.training.cluster import multi_worker_strategy

        return multi_worker_strategy(connect_timeout=120)
    if kind == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2
        )
        return tf.distribute.MirroredStrategy(
            [d.name for d in tf.config.list_logical_devices("CPU")]
        )
    return tf.distribute.get_strategy()


def _dataset(batch, steps):
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch * 8, 8, 8, 1)).astype("float32")
    y = np.eye(10, dtype="float32")[rng.integers(0, 10, batch * 8)]
    ds = tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(batch, drop_remainder=True)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.take(steps).with_options(options)


def worker(args):
    """Train and print one JSON line: images per second over the timed steps."""
    strategy = _strategy(args.kind)  # first: collectives are set up at startup
    import keras

    from keras_wrs.optimizers import SGD
    from keras_wrs.recipes.models import build_model

    class Timer(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == args.warmup:
                self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.end = time.perf_counter()

    with strategy.scope():
        model = build_model("small_cnn", (8, 8, 1), 10, sync_bn=args.sync_bn)
        model.compile(
            optimizer=SGD(0.1, momentum=0.9, rescale=model),
            loss=keras.losses.CategoricalCrossentropy(from_logits=True),
        )
    timer = Timer()
    total = args.warmup + args.steps
    model.fit(
        _dataset(args.batch, total), epochs=1, steps_per_epoch=total, verbose=0, callbacks=[timer]
    )
    seconds = timer.end - timer.start
    print(
        json.dumps(
            {
                "images_per_second": args.steps * args.batch / seconds,
                "replicas": strategy.num_replicas_in_sync,
            }
        )
    )


# ------------------------------------------------------------ orchestration


def _ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _run(spec, args):
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        "--kind",
        spec["kind"],
        "--batch",
        str(args.batch),
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
    ] + (["--sync-bn"] if spec["sync_bn"] else [])
    base = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    envs = [base]
    if spec["kind"] == "multi_worker":
        addresses = [f"127.0.0.1:{p}" for p in _ports(spec["workers"])]
        envs = [
            {
                **base,
                "TF_CONFIG": json.dumps(
                    {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": i}}
                ),
            }
            for i in range(spec["workers"])
        ]
    procs = [
        subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for env in envs
    ]
    try:
        outs = [p.communicate(timeout=args.timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    if any(p.returncode for p in procs):
        raise RuntimeError("\n".join(err[-2000:] for _, err in outs))
    # Every worker runs in lock-step; the chief's (worker 0's) rate is the run's.
    return json.loads(outs[0][0].strip().splitlines()[-1])["images_per_second"]


def _table(results, args):
    base = statistics.median(results["1 process"])
    lines = [
        "| configuration | images/s (median) | every repeat | vs 1 process |",
        "|---|---|---|---|",
    ]
    for name, rates in results.items():
        median = statistics.median(rates)
        lines.append(
            f"| {name} | {median:.0f} | {', '.join(f'{r:.0f}' for r in rates)} "
            f"| {median / base:.2f} |"
        )
    return "\n".join(lines)


def _machine():
    import keras
    import tensorflow as tf

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, TensorFlow {tf.__version__}, Keras "
        f"{keras.__version__}; load average at the end {load}"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--kind", default="default", help=argparse.SUPPRESS)
    parser.add_argument("--sync-bn", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=64, help="global batch (default 64)")
    parser.add_argument("--steps", type=int, default=60, help="timed steps (default 60)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps (default 10)")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per row")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per process")
    parser.add_argument("--write", help="write the results as markdown to this file")
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    results = {name: [] for name, _ in CONFIGS}
    for _ in range(args.repeats):  # interleaved, so that load drifts hit every row
        for name, spec in CONFIGS:
            results[name].append(_run(spec, args))
            print(f"{name}: {results[name][-1]:.0f} images/s", flush=True)
    table = _table(results, args)
    print(table)
    if args.write:
        text = (
            f"# Several workers and synchronized BatchNorm: cost on one CPU machine\n\n"
            f"Command: `python benchmarks/bench_multiworker.py --batch {args.batch} "
            f"--steps {args.steps} --warmup {args.warmup} --repeats {args.repeats} "
            f"--write {args.write}`\n\nModel: `small_cnn` (width 32, 8x8x1 inputs, "
            f"65,834 parameters), keras-wrs SGD with WRS, global batch {args.batch}, "
            f"float32, no XLA.\n\nMachine: {_machine()}.\n\n{table}\n\n{NOTES}"
        )
        with open(args.write, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
