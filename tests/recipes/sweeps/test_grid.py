"""The sweep runner and the report's grouping, tables and sensitivity."""

import dataclasses
import json

import numpy as np
import pytest

from keras_wrs.recipes import config as cfg
from keras_wrs.recipes.sweeps import grid as sweep
from keras_wrs.recipes.sweeps import report

TINY = dataclasses.replace(cfg.smoke(cfg.get_recipe("digits")), tensorboard=False, dynamics=False)


def test_sweep_cells_are_the_product_per_group_and_validated():
    cells = sweep.sweep_configs(
        TINY,
        [
            "regularization=wrs lr=0.03,0.3 wrs_other_decay=true,false",
            "regularization=wd lr=0.1 weight_decay=5e-5,5e-3",
        ],
        seeds=(0, 1),
    )
    names = [n for n, _ in cells]
    assert len(cells) == (4 + 2) * 2 and len(set(names)) == len(names)
    assert "regularization-wrs_lr-0.3_wrs_other_decay-false_s1" in names
    by_name = dict(cells)
    c = by_name["regularization-wd_lr-0.1_weight_decay-5e-3_s0"]
    assert (c.regularization, c.lr, c.weight_decay, c.seed) == ("wd", 0.1, 5e-3, 0)
    assert by_name["regularization-wrs_lr-0.03_wrs_other_decay-false_s0"].wrs_other_decay is False


@pytest.mark.parametrize(
    "group,words",
    [
        ("lr=0.1,fast", "`lr` must be a number"),
        ("learning_rate=0.1", "Unknown config field 'learning_rate'"),
        ("lr", "A sweep axis is FIELD=V1,V2"),
        ("lr=0.1 lr=0.2", "names 'lr' twice"),
        ("regularization=wrs,decay", "Unknown regularization 'decay'"),
    ],
)
def test_bad_sweeps_fail_before_any_run(group, words):
    with pytest.raises(ValueError, match=words):
        sweep.sweep_configs(TINY, [group], seeds=(0,))


def test_repeated_grid_points_are_refused():
    with pytest.raises(ValueError, match="same run"):
        sweep.sweep_configs(TINY, ["lr=0.1", "lr=0.1,0.2"], seeds=(0,))
    with pytest.raises(ValueError, match="at least one seed"):
        sweep.sweep_configs(TINY, ["lr=0.1"], seeds=())


def _summary(reg, lr, seed, acc, wd=None, other=True, noise=None):
    config = cfg.to_dict(
        dataclasses.replace(
            TINY, regularization=reg, lr=lr, seed=seed, weight_decay=wd, wrs_other_decay=other
        )
    )
    dyn = {}
    for layer, (mean, peak) in (noise or {}).items():
        dyn[f"noise_ratio_mean/{layer}"], dyn[f"noise_ratio_max/{layer}"] = mean, peak
    return {
        "regularization": reg,
        "optimizer": "sgdm",
        "seed": seed,
        "test_accuracy": acc,
        "noise_ratio": None,
        "wall_seconds": 1.0,
        "images_per_second": 10.0,
        "synthetic": False,
        "dynamics": dyn,
        "_config": config,
        "_resolved": {
            "learning_rate": lr,
            "weight_decay": 5e-4 if wd is None else wd,
            "rescaling": {"param_fraction": 0.42},
        },
    }


def test_rows_never_average_different_hyperparameters():
    runs = [
        _summary("wrs", 0.1, 0, 0.90),
        _summary("wrs", 0.1, 1, 0.92),
        _summary("wrs", 0.3, 0, 0.50),
        _summary("wrs", 0.1, 0, 0.70, other=False),
        _summary("wd", 0.1, 0, 0.80, wd=5e-4),
        _summary("wd", 0.1, 0, 0.60, wd=5e-3),
    ]
    rows = report.aggregate(runs)
    assert report.varying_fields(runs) == ["lr", "weight_decay", "wrs_other_decay"]
    assert len(rows) == 5 and sum(r["runs"] for r in rows) == 6
    pooled = [r for r in rows if r["runs"] == 2]
    assert len(pooled) == 1 and pooled[0]["learning_rate"] == 0.1
    assert pooled[0]["test_accuracy"][0] == pytest.approx(0.91)
    assert pooled[0]["test_accuracy"][1] == pytest.approx(np.std([0.9, 0.92], ddof=1))
    table = report.markdown_table(rows)
    assert table.splitlines()[0].startswith(
        "| optimizer | regularization | wrs_other_decay | lr | wd | runs |"
    )
    assert "| sgdm | wrs | False | 0.1 | 0 | 1 | 70.00 ± 0.00 |" in table
    assert "| sgdm | wd | - | 0.1 | 0.005 | 1 | 60.00 ± 0.00 |" in table
    assert "42%" in table  # WRS coverage next to every WRS row


def test_noise_is_per_layer_and_the_table_shows_the_top_layer():
    runs = [
        _summary("wrs", 0.1, s, 0.9, noise={"c1": (0.6 + s / 10, 0.9), "c2": (0.1, 0.2)})
        for s in (0, 1)
    ]
    rows = report.aggregate(runs)
    assert rows[0]["noise_ratio"][0] == pytest.approx(0.65)  # c1, not the layer average
    assert rows[0]["noise_layer"] == "c1"
    noise = report.noise_table(rows)
    assert "| c1 | n/a | 0.650 ± 0.071 | 0.900 ± 0.000 |" in noise
    assert "| c2 | n/a | 0.100 ± 0.000 | 0.200 ± 0.000 |" in noise
    runs[0]["dynamics"]["noise_ratio_mean_initial/c1"] = 0.79
    noise = report.noise_table(report.aggregate(runs))
    assert "| c1 | 0.790 ± 0.000 | 0.650 ± 0.071 |" in noise


def test_sensitivity_spread_and_near_best_fraction():
    runs = [
        _summary("wrs", lr, 0, acc)
        for lr, acc in ((0.03, 0.900), (0.1, 0.903), (0.3, 0.899), (1.0, 0.850))
    ]
    runs += [_summary("wd", 0.1, 0, acc, wd=wd) for wd, acc in ((5e-5, 0.88), (5e-3, 0.80))]
    methods = {m["method"]: m for m in report.sensitivity(report.aggregate(runs))}
    wrs, wd = methods["wrs (+wd others) / sgdm"], methods["wd / sgdm"]
    assert wrs["points"] == 4 and wrs["spread"] == pytest.approx(0.053)
    assert wrs["near_best"] == pytest.approx(3 / 4)  # 0.900 and 0.899 within 0.5 pp of 0.903
    assert wd["spread"] == pytest.approx(0.08) and wd["near_best"] == pytest.approx(1 / 2)


def test_sweep_end_to_end_resumes_and_reports(tmp_path):
    groups = ["regularization=wrs lr=0.05,0.5", "regularization=wd weight_decay=5e-5,5e-3"]
    text = sweep.run_sweep(TINY, groups, (0,), tmp_path, verbose=0)
    for name in (
        "results.md",
        "results.csv",
        "accuracy.png",
        "lr_accuracy.png",
        "wd_heatmap.png",
        "sensitivity.png",
    ):
        assert (tmp_path / name).is_file(), name
    assert "Sensitivity to the grid" in text and text.count("| sgdm |") == 4
    stored = json.loads(
        (tmp_path / "regularization-wd_weight_decay-5e-3_s0" / "config.json").read_text()
    )
    assert stored["config"]["weight_decay"] == 5e-3
    from keras_wrs.recipes.models import build_model

    model = build_model(TINY.model, (8, 8, 1), 10, **TINY.model_kwargs)
    bns = [layer for layer in model.layers if "BatchNormalization" in type(layer).__name__]
    # small_cnn: every kernel but the head's feeds its own BatchNormalization.
    assert stored["rescaling"]["kernels"] == len(bns) > 0
    assert stored["rescaling"]["applied"] is False
    before = (tmp_path / "results.md").stat().st_mtime_ns
    assert sweep.run_sweep(TINY, groups, (0,), tmp_path, resume=True, verbose=0) == text
    assert (tmp_path / "results.md").stat().st_mtime_ns >= before


def test_default_hyperparameters_group_with_the_same_numbers_set_explicitly(tmp_path):
    for name, lr in (("default", None), ("explicit", 0.1)):
        run = tmp_path / name
        run.mkdir()
        config = cfg.to_dict(dataclasses.replace(TINY, lr=lr, seed=int(lr is None)))
        (run / "config.json").write_text(
            json.dumps(
                {
                    "config": config,
                    "resolved": {"learning_rate": 0.1, "lr_scale": 1.0, "weight_decay": 5e-4},
                }
            )
        )
        (run / "summary.json").write_text(
            json.dumps(
                {
                    "regularization": "wrs",
                    "optimizer": "sgdm",
                    "seed": int(lr is None),
                    "test_accuracy": 0.9,
                    "wall_seconds": 1.0,
                }
            )
        )
    rows = report.aggregate([s for _, s in report.load_summaries(report.find_runs([tmp_path]))])
    assert len(rows) == 1 and rows[0]["runs"] == 2 and rows[0]["seeds"] == [0, 1]


def test_a_comparison_without_a_grid_gets_no_sensitivity(tmp_path):
    """Runs that differ only in the optimizer (and so its default lr) are not a sweep."""
    for opt, lr in (("sgdm", 0.1), ("adam", 0.001)):
        run = tmp_path / opt
        run.mkdir()
        (run / "config.json").write_text(
            json.dumps(
                {
                    "config": cfg.to_dict(dataclasses.replace(TINY, optimizer=opt)),
                    "resolved": {"learning_rate": lr, "lr_scale": 1.0, "weight_decay": 5e-4},
                }
            )
        )
        (run / "summary.json").write_text(
            json.dumps(
                {
                    "regularization": "wrs",
                    "optimizer": opt,
                    "seed": 0,
                    "test_accuracy": 0.9,
                    "wall_seconds": 1.0,
                }
            )
        )
    text = report.write_report([tmp_path], tmp_path)
    assert "Sensitivity" not in text and not (tmp_path / "sensitivity.png").exists()
