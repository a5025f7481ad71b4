"""Numbers the training code cannot hold are refused by `validate`, before any work."""

import dataclasses

import pytest

from keras_wrs.recipes import config as cfg

BASE = cfg.Config()


@pytest.mark.parametrize(
    "assignment,words",
    [
        ("epochs=99999999999999999999999", r"`epochs` must be at most 2147483647"),
        ("batch_size=4294967296", r"`batch_size` must be at most 2147483647"),
        ("probe_examples=3000000000", r"`probe_examples` must be at most 2147483647"),
        ("seed=99999999999999999999", r"`seed` must be at most 4294967295"),
        ("lr=1e39", r"`lr` must be 0 or between .* float32"),
        ("lr=1e-300", r"`lr` must be 0 or between .* float32"),
        ("weight_decay=1e60", r"`weight_decay` must be 0 or between"),
        ("steps_per_epoch=10000000", r"10000000000 training steps, more than 2147483647"),
        ("target_norm=1e30", r"`target_norm` must be a positive finite number from .*float32"),
        ("target_norm=1e-20", r"`target_norm` must be a positive finite number from"),
    ],
)
def test_numbers_beyond_what_training_holds(assignment, words):
    config = cfg.override(dataclasses.replace(BASE, epochs=1000, warmup_epochs=0.0), [assignment])
    with pytest.raises(ValueError, match=words):
        cfg.validate(config)


def test_the_largest_values_that_fit_pass():
    cfg.validate(dataclasses.replace(BASE, seed=2**32 - 1, lr=3e38, steps_per_epoch=1000))


def test_synthetic_data_must_fit_in_memory():
    config = dataclasses.replace(cfg.get_recipe("shapes_resnet20"), synthetic_train=10**9)
    with pytest.raises(ValueError, match=r"1000002000 images of 32x32x3 bytes do not fit"):
        cfg.validate(config)


@pytest.mark.parametrize("dataset", ["digits", "synthetic_shapes"])
def test_a_data_dir_for_a_set_that_reads_none_is_refused(dataset):
    config = dataclasses.replace(BASE, dataset=dataset, data_dir="/data")
    with pytest.raises(ValueError, match=rf"{dataset!r} .* reads no directory: drop --data-dir"):
        cfg.validate(config)
