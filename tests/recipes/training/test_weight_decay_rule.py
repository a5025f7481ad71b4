"""`applies_weight_decay`: the one weight-decay rule, used by the optimizer and the report."""

import pytest

from keras_wrs.recipes import config as cfg
from keras_wrs.recipes.sweeps import report
from keras_wrs.recipes.training.optim import applies_weight_decay

# regularization, wrs_other_decay -> decoupled decay in the optimizer
TABLE = {
    ("none", True): False,
    ("none", False): False,
    ("wd", True): True,
    ("wd", False): True,
    ("l2", True): False,
    ("l2", False): False,
    ("wrs", True): True,
    ("wrs", False): False,
    ("sgdp", True): True,
    ("sgdp", False): True,
    ("adamh", True): True,
    ("adamh", False): False,
    ("cwd", True): True,
    ("cwd", False): True,
}


@pytest.mark.parametrize("reg,other", sorted(TABLE))
def test_rule_table(reg, other):
    assert applies_weight_decay(reg, other) is TABLE[(reg, other)]


def test_every_regularization_is_in_the_table():
    assert {reg for reg, _ in TABLE} == set(cfg.REGULARIZATIONS)


@pytest.mark.parametrize("reg,other", sorted(TABLE))
def test_report_shows_the_decay_the_optimizer_applied(reg, other):
    rows = report.aggregate(
        [
            {
                "regularization": reg,
                "optimizer": "sgdm",
                "seed": 0,
                "test_accuracy": 0.5,
                "wall_seconds": 1.0,
                "images_per_second": 1.0,
                "_config": {"regularization": reg, "wrs_other_decay": other, "lr": 0.1},
                "_resolved": {"learning_rate": 0.1, "weight_decay": 5e-4},
            }
        ]
    )
    expected = 5e-4 if TABLE[(reg, other)] or reg == "l2" else 0.0
    assert rows[0]["weight_decay"] == expected
