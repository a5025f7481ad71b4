"""The config checks the rescaling arguments with the library's own checks (`keras_wrs.checks`)."""

import dataclasses
import math

import pytest

from keras_wrs import checks
from keras_wrs.recipes import config as cfg

CASES = [
    ("target_norm", v)
    for v in (1.0, 2, 1e-3, "initial", 0, -1.0, math.inf, math.nan, True, "1.0", None, 1e30, 1e-30)
]
CASES += [("granularity", v) for v in ("filter", "layer", "kernel", "Filter")]
CASES += [("rescale_every", v) for v in (1, 3, 0, -2)]
LIBRARY = {
    "target_norm": checks.check_target_norm,
    "granularity": checks.check_granularity,
    "rescale_every": checks.check_rescale_every,
}


def _error(fn, *args):
    try:
        fn(*args)
    except ValueError as err:
        return str(err)
    return None


@pytest.mark.parametrize("field,value", CASES, ids=repr)
def test_config_answers_as_the_library(field, value):
    config = dataclasses.replace(cfg.Config(), **{field: value})
    assert _error(cfg.validate, config) == _error(LIBRARY[field], value)


def test_float32_overflow_of_the_norm_is_refused_before_any_work():
    with pytest.raises(ValueError, match=r"target_norm.*float32.*Received: target_norm=1e\+30"):
        cfg.validate(cfg.override(cfg.Config(), ["target_norm=1e30"]))
