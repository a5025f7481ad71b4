"""One process of the multi-worker test: a Conv-BN model trained with keras-wrs SGD.

Run by tests/test_multiworker.py, twice with a `TF_CONFIG` each (two workers
of `MultiWorkerMirroredStrategy`) and once without (one process, no
strategy, the same global batches). Each run trains two copies, one with
synchronized BatchNormalization and one without, from the same initial
weights, and saves every weight after every step to an .npz file.

Input: one `tf.data` pipeline of global batches with the auto-shard policy
set to DATA (stated, not left to AUTO's fallback). `tf.distribute` splits
each global batch of 16 into two per-worker batches of 8 and gives worker
`k` the `k`-th, so the two workers of step `b` together see exactly global
batch `b` of the single-process run. (Keras 3.15's `fit` cannot take the
per-worker pipelines of `distribute_datasets_from_function` under this
strategy: its symbolic build reduces a batch of `PerReplica` values with a
collective, which fails.)

Usage: python mw_worker.py OUT.npz [--steps N]
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import keras
import numpy as np
import tensorflow as tf
from support import nets

from keras_wrs.optimizers import SGD

GLOBAL_BATCH = 16
LR = 0.1


def _strategy():
    if os.environ.get("TF_CONFIG"):
        from keras_wrs.recipes.training.cluster import multi_worker_strategy

        return multi_worker_strategy(connect_timeout=60, collective_timeout=60)
    return tf.distribute.get_strategy()


def _data(steps):
    x, y = nets.data(GLOBAL_BATCH * steps, seed=1)
    return x, y.astype("int64")


def _dataset(x, y):
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def _initial(model):
    rng = np.random.default_rng(0)
    return [
        rng.normal(scale=0.5, size=w.shape).astype("float32")
        if w.path.endswith("kernel")
        else w.numpy()
        for w in model.weights
    ]


class _Record(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.steps = []

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append([np.array(w.numpy()) for w in self.model.weights])


def _train(strategy, synchronized, x, y):
    with strategy.scope():
        model = nets.conv_bn(synchronized=synchronized, name="sync" if synchronized else "plain")
        model.set_weights(_initial(model))
        opt = SGD(learning_rate=LR, momentum=0.9, rescale=model)
        model.compile(optimizer=opt, loss=nets.loss())
    record = _Record()
    model.fit(
        _dataset(x, y),
        epochs=1,
        steps_per_epoch=len(x) // GLOBAL_BATCH,
        verbose=0,
        callbacks=[record],
        shuffle=False,
    )
    selected = sorted(opt.rescale_selection, key=lambda s: s.path)
    return model, record.steps, [s.path for s in selected]


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args(argv)
    strategy = _strategy()
    x, y = _data(args.steps)
    arrays = {}
    for synchronized in (True, False):
        model, steps, selected = _train(strategy, synchronized, x, y)
        tag = "sync" if synchronized else "plain"
        arrays[f"{tag}_names"] = np.array([w.path for w in model.weights])
        arrays[f"{tag}_selected"] = np.array(selected)
        for s, weights in enumerate(steps):
            for i, w in enumerate(weights):
                arrays[f"{tag}_{s}_{i}"] = w
    arrays["replicas"] = np.array(strategy.num_replicas_in_sync)
    np.savez(args.out + ".tmp.npz", **arrays)
    os.replace(args.out + ".tmp.npz", args.out)


if __name__ == "__main__":
    main()
