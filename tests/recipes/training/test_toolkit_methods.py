"""The recipes' `sgdp`, `adamh` and `cwd` regularizations: classes, decay, errors, grids, report."""

import dataclasses

import keras
import numpy as np
import pytest

from keras_wrs import optimizers as wo
from keras_wrs import select_scale_invariant
from keras_wrs.recipes import config as cfg
from keras_wrs.recipes.models import small_cnn
from keras_wrs.recipes.sweeps import grid as grids
from keras_wrs.recipes.sweeps import report
from keras_wrs.recipes.training import optim

# (regularization, optimizer) -> the class a run builds
CLASSES = {
    ("sgdp", "sgd"): wo.SGDP,
    ("sgdp", "sgdm"): wo.SGDP,
    ("sgdp", "adam"): wo.AdamP,
    ("sgdp", "adamw"): wo.AdamP,
    ("adamh", "adam"): wo.AdamH,
    ("cwd", "sgd"): wo.SGDC,
    ("cwd", "sgdm"): wo.SGDC,
    ("cwd", "adam"): wo.AdamC,
    ("cwd", "adamw"): wo.AdamC,
}


def _build(reg, opt, model=None, learning_rate=None, **changes):
    config = cfg.validate(cfg.Config(regularization=reg, optimizer=opt, **changes))
    hp = optim.resolve_hyperparameters(config, 10)
    lr = optim.learning_rate_schedule(config, hp) if learning_rate is None else learning_rate
    return optim.make_optimizer(config, hp, lr, model or small_cnn(width=4)), hp


@pytest.mark.parametrize("reg,opt", sorted(CLASSES))
def test_each_method_builds_its_class(reg, opt):
    built, _ = _build(reg, opt, weight_decay=1e-3)
    assert type(built) is CLASSES[(reg, opt)]
    assert optim.optimizer_class_name(reg, opt) == f"keras_wrs.optimizers.{type(built).__name__}"


def test_sgdp_is_the_reference_test_with_the_wd_runs_decay():
    sgdp, _ = _build("sgdp", "sgdm", weight_decay=1e-3)
    adamp, _ = _build("sgdp", "adam", weight_decay=1e-3)
    assert sgdp.projection == adamp.projection == "cosine"
    assert sgdp.momentum == 0.9 and (sgdp.delta, sgdp.wd_ratio) == (0.1, 0.1)
    # SGDP divides its decay by 1 - momentum: the recipe hands it wd * (1 - momentum).
    assert sgdp.weight_decay == pytest.approx(1e-3 * 0.1)
    assert adamp.weight_decay == pytest.approx(1e-3)


def _one_step(optimizer, start):
    """One step of `optimizer` on a rank-1 variable (never projected) with a zero gradient."""
    var = keras.Variable(np.array(start, "float32"))
    optimizer.apply([keras.ops.convert_to_tensor(np.zeros(len(start), "float32"))], [var])
    return keras.ops.convert_to_numpy(var)


@pytest.mark.parametrize("opt", ["sgd", "sgdm"])
def test_sgdp_shrinks_per_step_as_the_wd_run(opt):
    start = [1.0, -2.0, 0.5]
    changes = dict(weight_decay=1e-2, lr=0.1, schedule="constant", warmup_epochs=0.0)
    sgdp, _ = _build("sgdp", opt, **changes)
    keras_sgd, _ = _build("wd", opt, **changes)
    expected = np.array(start) * (1 - 0.1 * 1e-2)  # lr * wd of the variable per step
    np.testing.assert_allclose(_one_step(sgdp, start), expected, rtol=1e-6)
    np.testing.assert_allclose(_one_step(keras_sgd, start), expected, rtol=1e-6)


@pytest.mark.parametrize("opt", ["sgdm", "adamw"])
def test_cwd_decays_by_lr_squared_over_the_schedules_peak(opt):
    start = [1.0, -2.0, 0.5]
    # lr_scaling linear at twice the base batch: the peak is 2 * lr.
    changes = dict(weight_decay=1e-2, lr=0.1, batch_size=256, lr_scaling="linear")
    built, hp = _build("cwd", opt, learning_rate=0.05, **changes)
    assert built.corrected_weight_decay and built.max_learning_rate == pytest.approx(0.2)
    assert hp.learning_rate == pytest.approx(0.2)
    expected = np.array(start) * (1 - 0.05**2 / 0.2 * 1e-2)
    np.testing.assert_allclose(_one_step(built, start), expected, rtol=1e-6)


def test_adamh_holds_the_batchnorm_fed_kernels_as_published():
    model = small_cnn(width=4)
    built, _ = _build("adamh", "adam", model=model)
    built.build(model.trainable_variables)
    assert (built.granularity, built.target_norm) == ("layer", "initial")
    chosen = sorted(s.path for s in built.rescale_selection)
    assert chosen and chosen == sorted(s.path for s in select_scale_invariant(model))


def test_optimizer_kwargs_reach_the_class_the_run_builds():
    sgdp, _ = _build(
        "sgdp", "sgdm", optimizer_kwargs={"delta": 0.2, "wd_ratio": 0.5, "nesterov": True}
    )
    assert (sgdp.delta, sgdp.wd_ratio, sgdp.nesterov) == (0.2, 0.5, True)
    adamh, _ = _build("adamh", "adam", optimizer_kwargs={"granularity": "filter"})
    assert adamh.granularity == "filter"


@pytest.mark.parametrize(
    "reg,opt,words",
    [
        (
            "adamh",
            "sgdm",
            r"`regularization='adamh'` \(AdamH.*exists for Adam only: use "
            r"optimizer adam.*Received: optimizer='sgdm' \(keras.optimizers.SGD\)",
        ),
        ("adamh", "adamw", r"use optimizer adam with it.*optimizer='adamw'"),
        (
            "sgdp",
            "lion",
            r"exists for Adam, AdamW, SGD only: use optimizer sgd, sgdm, adam or "
            r"adamw.*optimizer='lion'",
        ),
        ("cwd", "rmsprop", r"`regularization='cwd'` \(SGDC/AdamC.*optimizer='rmsprop'"),
    ],
)
def test_a_method_without_a_class_for_the_optimizer_is_refused(reg, opt, words):
    with pytest.raises(ValueError, match=words):
        cfg.validate(cfg.Config(regularization=reg, optimizer=opt))


@pytest.mark.parametrize(
    "reg,opt,kwargs,words",
    [
        (
            "sgdp",
            "adamw",
            {"amsgrad": True},
            r"`optimizer_kwargs.amsgrad` is not an argument of keras_wrs.optimizers.AdamP",
        ),
        (
            "adamh",
            "adam",
            {"rescale": "conv"},
            r"`optimizer_kwargs.rescale` is not an argument of keras_wrs.optimizers.AdamH",
        ),
        (
            "cwd",
            "sgdm",
            {"max_learning_rate": 1.0},
            r"`optimizer_kwargs.max_learning_rate` is not an argument of keras_wrs.optimizers.SGDC",
        ),
        (  # WRS's own arguments are config fields: the Keras class's are the valid ones
            "wrs",
            "sgdm",
            {"target_norm": 2.0},
            r"`optimizer_kwargs.target_norm` is not an argument of keras.optimizers.SGD ",
        ),
    ],
)
def test_optimizer_kwargs_the_class_does_not_take_are_refused(reg, opt, kwargs, words):
    with pytest.raises(ValueError, match=words):
        cfg.validate(cfg.Config(regularization=reg, optimizer=opt, optimizer_kwargs=kwargs))


def test_a_comparison_skips_the_pairs_a_method_does_not_exist_for():
    grid = grids.Grid(("wd", "wrs", "sgdp", "adamh", "cwd"), ("sgdm", "adam"), (0,))
    assert grids.skipped_pairs(grid) == [("adamh", "sgdm")]
    base = cfg.smoke(cfg.get_recipe("digits"))
    names = [grids.compare_cell_name(c) for c in grids.grid_configs(base, grid)]
    assert len(names) == 9 and "adamh-adam-s0" in names and "adamh-sgdm-s0" not in names


@pytest.mark.parametrize(
    "regs,opts,words",
    [
        (("adamh",), ("sgdm",), r"`regularization='adamh'`.*optimizer='sgdm'"),
        (("wd", "adamh"), ("sgdm", "sgd"), r"`regularization='adamh'`.*optimizer='sgdm'"),
        (("sgdp", "cwd"), ("sgdm", "lion"), r"`regularization='sgdp'`.*optimizer='lion'"),
    ],
)
def test_a_comparison_where_a_name_would_have_no_cell_is_refused(regs, opts, words):
    with pytest.raises(ValueError, match=words):
        grids.grid_configs(cfg.smoke(cfg.get_recipe("digits")), grids.Grid(regs, opts, (0,)))


def _summary(reg, opt, acc):
    config = cfg.to_dict(
        dataclasses.replace(cfg.smoke(cfg.get_recipe("digits")), regularization=reg, optimizer=opt)
    )
    return {
        "regularization": reg,
        "optimizer": opt,
        "seed": 0,
        "test_accuracy": acc,
        "wall_seconds": 1.0,
        "images_per_second": 10.0,
        "_config": config,
        "_resolved": {
            "learning_rate": 0.1,
            "weight_decay": 5e-4,
            "rescaling": {"param_fraction": 0.42},
        },
    }


def test_report_orders_labels_and_covers_the_methods():
    runs = [
        _summary(reg, opt, 0.5)
        for reg, opt in [
            ("cwd", "adam"),
            ("adamh", "adam"),
            ("sgdp", "adam"),
            ("wrs", "adam"),
            ("wd", "adam"),
            ("sgdp", "sgdm"),
        ]
    ]
    rows = report.aggregate(runs)
    assert [(r["regularization"], r["optimizer"]) for r in rows] == [
        ("wd", "adam"),
        ("wrs", "adam"),
        ("sgdp", "adam"),
        ("adamh", "adam"),
        ("cwd", "adam"),
        ("sgdp", "sgdm"),
    ]
    assert [r["method"] for r in rows] == [
        "keras.optimizers.Adam",
        "keras_wrs.optimizers.Adam",
        "keras_wrs.optimizers.AdamP",
        "keras_wrs.optimizers.AdamH",
        "keras_wrs.optimizers.AdamC",
        "keras_wrs.optimizers.SGDP",
    ]
    table = report.markdown_table(rows)
    assert "| adam | adamh | 0.1 | 0.0005 | 1 | 50.00 ± 0.00 | n/a | 42% |" in table
    assert "| adam | sgdp | 0.1 | 0.0005 | 1 | 50.00 ± 0.00 | n/a | - |" in table
    assert "sgdp / adam = keras_wrs.optimizers.AdamP" in table
    assert "sgdp / sgdm = keras_wrs.optimizers.SGDP" in table
    assert "cwd / adam = keras_wrs.optimizers.AdamC" in table
    methods = {m["method"] for m in report.sensitivity(rows)}
    assert "adamh (+wd others) / adam" in methods and "sgdp / sgdm" in methods
