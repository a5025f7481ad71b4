"""The report's aggregation over seeds."""

import numpy as np
import pytest


def test_aggregate_means_and_sample_std_over_seeds():
    from keras_wrs.recipes.sweeps import report

    def run(reg, seed, acc, noise):
        return {
            "regularization": reg,
            "optimizer": "sgdm",
            "seed": seed,
            "test_accuracy": acc,
            "noise_ratio": noise,
            "wall_seconds": 10.0,
            "images_per_second": 100.0,
            "synthetic": False,
        }

    rows = report.aggregate(
        [
            run("wrs", 0, 0.90, None),
            run("wd", 1, 0.80, 0.2),
            run("wd", 0, 0.70, 0.4),
            run("wrs", 1, 0.94, None),
        ]
    )
    assert [(r["regularization"], r["seeds"]) for r in rows] == [("wd", [0, 1]), ("wrs", [0, 1])]
    mean, std = rows[0]["test_accuracy"]
    assert mean == pytest.approx(0.75) and std == pytest.approx(np.std([0.7, 0.8], ddof=1))
    assert rows[1]["noise_ratio"] == (None, None)
    table = report.markdown_table(rows)
    assert "| sgdm | wd | 2 | 75.00 ± 7.07 | 0.300 ± 0.141 |" in table
    assert "| sgdm | wrs | 2 | 92.00 ± 2.83 | n/a |" in table
