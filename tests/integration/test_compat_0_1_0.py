"""Files written by keras-wrs 0.1.0 (the flat module layout) load and train on.

`tests/support/fixtures/` holds a `.keras` model compiled with
`keras_wrs.optimizers.SGD(0.1, momentum=0.9, rescale=model, target_norm="initial")`
after two steps, and a pickle of that optimizer, both written by 0.1.0.
"""

import pickle

import keras
import numpy as np
from support import WORKERS
from support.nets import data

import keras_wrs

FIXTURES = WORKERS.parent / "fixtures"


def filter_norms(w):
    return np.sqrt(np.sum(np.square(np.asarray(w, dtype=np.float64)), axis=(0, 1, 2)))


def test_a_0_1_0_keras_file_loads_with_its_optimizer_state_and_trains_on():
    model = keras.saving.load_model(FIXTURES / "tiny_sgd_wrs_0.1.0.keras")
    opt = model.optimizer
    assert type(opt) is keras_wrs.optimizers.SGD
    assert int(opt.iterations) == 2
    paths = sorted(s.path for s in opt.rescale_selection)
    assert paths == sorted([model.get_layer("c1").kernel.path, model.get_layer("c2").kernel.path])
    momenta = [v for v in opt.variables if "momentum" in v.path]
    assert momenta and all(
        np.abs(np.asarray(v)).max() > 0 for v in momenta
    )  # restored, not fresh zeros
    targets = {s.path: np.asarray(t).reshape(-1) for s, t in opt.rescale_targets}
    x, y = data(16)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    assert int(opt.iterations) == 4
    for name in ("c1", "c2"):
        kernel = model.get_layer(name).kernel
        np.testing.assert_allclose(filter_norms(kernel), targets[kernel.path], rtol=1e-5)


def test_a_0_1_0_pickled_optimizer_loads_as_the_same_class():
    with open(FIXTURES / "sgd_wrs_0.1.0.pkl", "rb") as f:
        opt = pickle.load(f)
    assert type(opt) is keras_wrs.optimizers.SGD
    config = opt.get_config()
    assert config["target_norm"] == "initial" and config["momentum"] == 0.9
    assert config["rescale"] == {"c1/kernel": [-1], "c2/kernel": [-1]}
