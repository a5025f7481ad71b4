"""plot_dynamics: figures hold exactly the logged data, runs overlaid, files are PNGs."""

import csv
import math
import os

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from keras_wrs.plots import dynamics_figure, load_history, plot_dynamics  # noqa: E402

NAN = float("nan")
WD = {
    "loss": [2.0, 1.0, 0.5],
    "norm_mean/c1": [0.8, 0.7, 0.6], "norm_min/c1": [0.7, 0.6, 0.5], "norm_max/c1": [0.9, 0.8, 0.7],
    "eff_lr/c1": [0.15, 0.2, 0.28],
    "angular_update/c1": [0.01, 0.02, 0.03],
    "noise_ratio_mean/c1": [0.7, NAN, 0.6],
    "sharpness": [5.0, 10.0, 19.0], "edge_of_stability": [20.0, 20.0, 20.0],
}
WRS = {
    "norm_mean/c1": [1.0, 1.0, 1.0], "norm_min/c1": [1.0, 1.0, 1.0], "norm_max/c1": [1.0, 1.0, 1.0],
    "eff_lr/c1": [0.1, 0.1, 0.1], "angular_update/c1": [0.02, 0.02, 0.02],
    "noise_ratio_mean/c1": [0.7, 0.5, 0.3],
}


def lines(fig):
    return {(ax.get_title(), line.get_label()): list(line.get_ydata()) for ax in fig.axes for line in ax.get_lines()}


def test_runs_are_overlaid_with_their_values():
    fig = dynamics_figure({"WD": WD, "WRS": WRS}, "eff_lr")
    assert lines(fig) == {("c1", "WD"): WD["eff_lr/c1"], ("c1", "WRS"): WRS["eff_lr/c1"]}
    assert fig.axes[0].get_yscale() == "log"


def test_nan_epochs_are_skipped_not_plotted():
    fig = dynamics_figure({"WD": WD}, "noise_ratio")
    (line,) = fig.axes[0].get_lines()
    assert list(line.get_xdata()) == [0, 2] and list(line.get_ydata()) == [0.7, 0.6]


def test_sharpness_is_drawn_against_edge_of_stability():
    fig = dynamics_figure({"WD": WD, "WRS": WRS}, "sharpness")
    got = {line.get_label(): list(line.get_ydata()) for line in fig.axes[0].get_lines()}
    assert got == {"WD": WD["sharpness"], "WD: 2/lr": WD["edge_of_stability"], "WRS": [], "WRS: 2/lr": []}


def test_many_layers_are_subsampled_evenly():
    run = {f"angular_update/l{i}": [0.1 * i] for i in range(20)}
    fig = dynamics_figure(run, "angular_update", max_layers=4)
    assert [ax.get_title() for ax in fig.axes] == ["l0", "l6", "l13", "l19"]


def test_plot_dynamics_writes_pngs_from_history_and_csv(tmp_path):
    path = tmp_path / "wd.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, ["epoch", *WD])
        writer.writeheader()
        for e in range(3):
            writer.writerow({"epoch": e, **{k: ("NA" if math.isnan(v[e]) else v[e]) for k, v in WD.items()}})
    assert math.isnan(load_history(str(path))["noise_ratio_mean/c1"][1])  # "NA" from CSVLogger
    np.testing.assert_allclose(load_history(str(path))["sharpness"], WD["sharpness"])
    written = plot_dynamics({"WD": str(path), "WRS": WRS}, str(tmp_path / "figs"))
    names = sorted(os.path.basename(p) for p in written)
    assert names == ["angular_update.png", "eff_lr.png", "noise_ratio.png", "norms.png", "sharpness.png"]
    for p in written:
        with open(p, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    only = plot_dynamics(WRS, str(tmp_path / "one"))  # a single run, no sharpness logged
    assert len(only) == 4


def test_no_dynamics_metric_is_an_error(tmp_path):
    with pytest.raises(ValueError, match=r"No dynamics metric in these runs"):
        plot_dynamics({"loss": [1.0, 0.5]}, str(tmp_path))
    with pytest.raises(ValueError, match=r"A run must be a keras History, a dict of epoch logs or a CSVLogger file path\. Received: int"):
        load_history(3)
