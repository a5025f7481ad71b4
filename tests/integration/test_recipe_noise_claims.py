"""The paper's weight-noise claims on real data, through the recipes.

`fashion_mnist_rgb` feeds grayscale images replicated to 3 channels into the
network, so the first convolution's 3x3x3 patches span 9 of 27 dimensions
and its weight noise (the part outside the span) is real. Measured from the
run's own `history.csv`:

* plain SGD-momentum leaves the noise norm unchanged (float32 steps on a
  float64 projection: relative change ~1e-7 at most; bound 1e-5);
* weight decay multiplies it by exactly prod_t (1 - lr_t * wd) over the
  schedule (bound 1e-5 relative, the same float error);
* WRS ends with the lowest noise ratio of the three.
"""

import csv
import dataclasses

import numpy as np
import pytest

from keras_wrs.recipes import config as cfg
from keras_wrs.recipes import train
from keras_wrs.recipes.data import fashion_mnist as fm
from keras_wrs.recipes.training import optim

_REAL = all(fm._locate(fm.DEBIAN_DIR, spec) for spec in fm.FILES.values())
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not _REAL,
        reason="the Fashion-MNIST files are not installed (apt-get install dataset-fashion-mnist)",
    ),
]

KEY = "stem_conv"


def _small(regularization):
    base = cfg.get_recipe("fashion_mnist_rgb")
    return dataclasses.replace(
        base,
        regularization=regularization,
        train_examples=500,
        epochs=2,
        batch_size=50,
        warmup_epochs=0.5,
        jit_compile=False,
        plots=False,
        tensorboard=False,
        probe_examples=64,
    )


def _noise(run_dir, name):
    with (run_dir / "history.csv").open() as f:
        rows = list(csv.DictReader(f))
    first = float(rows[0][name.replace("/", "_initial/", 1)])
    return first, float(rows[-1][name])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("rgb")
    return {
        reg: (train(_small(reg), out / reg, verbose=0), out / reg) for reg in ("none", "wd", "wrs")
    }


def test_sgd_leaves_the_noise_norm_unchanged(runs):
    before, after = _noise(runs["none"][1], f"noise_norm/{KEY}")
    assert before > 0.5  # there is noise to keep: 18 of 27 dimensions
    assert abs(after - before) / before < 1e-5


def test_weight_decay_shrinks_it_by_the_product_of_its_steps(runs):
    config = _small("wd")
    hp = optim.resolve_hyperparameters(config, 500 // 50)
    schedule = optim.learning_rate_schedule(config, hp)
    lrs = np.array([float(schedule(i)) for i in range(hp.total_steps)])
    factor = np.prod(1 - lrs * hp.weight_decay)
    before, after = _noise(runs["wd"][1], f"noise_norm/{KEY}")
    assert factor < 1 - 1e-4  # the shrink is larger than the tolerance
    assert abs(after - before * factor) / (before * factor) < 1e-5


def test_wrs_ends_with_the_lowest_noise_ratio(runs):
    ratios = {reg: _noise(d, f"noise_ratio_mean/{KEY}")[1] for reg, (_, d) in runs.items()}
    initial = _noise(runs["none"][1], f"noise_ratio_mean/{KEY}")[0]
    assert 0.6 < initial < 0.95  # 9 of 27 dimensions spanned
    assert ratios["wrs"] < ratios["wd"] and ratios["wrs"] < ratios["none"]
