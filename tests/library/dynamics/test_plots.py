"""plot_dynamics: figures hold exactly the logged data, runs overlaid and readable, files are PNGs."""

import csv
import math
import os

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from keras_wrs.dynamics.plots import dynamics_figure, load_history, plot_dynamics

NAN = float("nan")
WD = {
    "loss": [2.0, 1.0, 0.5],
    "norm_mean/c1": [0.8, 0.7, 0.6],
    "norm_min/c1": [0.7, 0.6, 0.5],
    "norm_max/c1": [0.9, 0.8, 0.7],
    "eff_lr/c1": [0.15, 0.2, 0.28],
    "angular_update/c1": [0.01, 0.02, 0.03],
    "noise_ratio_mean/c1": [0.7, NAN, 0.6],
    "sharpness": [5.0, 10.0, 19.0],
    "edge_of_stability": [20.0, 20.0, 20.0],
}
WRS = {
    "norm_mean/c1": [1.0, 1.0, 1.0],
    "norm_min/c1": [1.0, 1.0, 1.0],
    "norm_max/c1": [1.0, 1.0, 1.0],
    "eff_lr/c1": [0.1, 0.1, 0.1],
    "angular_update/c1": [0.02, 0.02, 0.02],
    "noise_ratio_mean/c1": [0.7, 0.5, 0.3],
}


def lines(fig):
    return {
        (ax.get_title(), line.get_label()): list(line.get_ydata())
        for ax in fig.axes
        for line in ax.get_lines()
    }


def test_runs_are_overlaid_with_their_values():
    fig = dynamics_figure({"WD": WD, "WRS": WRS}, "eff_lr")
    assert lines(fig) == {("c1", "WD"): WD["eff_lr/c1"], ("c1", "WRS"): WRS["eff_lr/c1"]}
    assert fig.axes[0].get_yscale() == "log"
    (wd, wrs) = fig.axes[0].get_lines()
    assert list(wd.get_xdata()) == [1, 2, 3]  # epochs completed
    # Identical curves stay distinguishable.
    assert (wd.get_color(), wd.get_linestyle(), wd.get_marker()) != (
        wrs.get_color(),
        wrs.get_linestyle(),
        wrs.get_marker(),
    )
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "WD",
        "WRS",
    ]  # one legend, outside the panels
    assert not any(ax.get_legend() for ax in fig.axes)


def test_six_runs_get_six_distinct_styles_and_one_legend():
    runs = {f"run{i}": WRS for i in range(6)}  # six identical curves
    fig = dynamics_figure(runs, "norms")
    styles = {
        (ln.get_color(), ln.get_linestyle(), ln.get_marker()) for ln in fig.axes[0].get_lines()
    }
    assert len(styles) == 6 and len(fig.legends) == 1
    assert all(0 < c.get_alpha() <= 0.1 for c in fig.axes[0].collections)  # thin bands


def test_a_final_zero_stays_on_a_log_plot():
    run = {"eff_lr/c1": [0.1, 0.01, 0.0], "angular_update/c1": [0.02, 0.002, 0.0]}
    for name, decade in (("eff_lr", 1e-2), ("angular_update", 1e-3)):
        ax = dynamics_figure(run, name).axes[0]
        assert ax.get_yscale() == "symlog" and ax.get_ylim()[0] <= 0  # the last point is drawn
        assert (
            ax.yaxis.get_transform().linthresh == decade
        )  # linear below the smallest positive value's decade
    assert not dynamics_figure(run, "eff_lr").legends  # one run: no legend


def test_a_flat_norm_has_no_offset_and_sensible_limits():
    flat = {
        "norm_mean/c1": [1.0, 1.0 + 1e-7, 1.0 - 1e-7],
        "norm_min/c1": [1.0] * 3,
        "norm_max/c1": [1.0] * 3,
    }
    fig = dynamics_figure(flat, "norms")
    fig.canvas.draw()
    ax = fig.axes[0]
    assert ax.yaxis.get_major_formatter().get_offset() == ""
    np.testing.assert_allclose(ax.get_ylim(), (0.95, 1.05), rtol=1e-6)


def test_measurement_before_training_is_at_epoch_zero():
    run = {
        "noise_ratio_mean/c1": [0.6, NAN],
        "noise_ratio_mean_initial/c1": [0.79, NAN],
        "noise_norm/c1": [0.5, 0.4],
        "noise_norm_initial/c1": [0.7, NAN],
        "span_norm/c1": [0.9, 1.0],
        "span_norm_initial/c1": [0.8, NAN],
    }
    ax = dynamics_figure(run, "noise_ratio").axes[0]
    (line,) = ax.get_lines()
    assert list(line.get_xdata()) == [0, 1] and list(line.get_ydata()) == [0.79, 0.6]
    assert ax.get_xlabel() == "epoch (0: before training)"
    noise, span = dynamics_figure(run, "noise_norm").axes[0].get_lines()
    assert list(noise.get_ydata()) == [0.7, 0.5, 0.4] and list(span.get_ydata()) == [0.8, 0.9, 1.0]
    assert (noise.get_linestyle(), span.get_linestyle()) == ("-", "--")


def test_nan_epochs_are_skipped_not_plotted():
    fig = dynamics_figure({"WD": WD}, "noise_ratio")
    (line,) = fig.axes[0].get_lines()
    assert list(line.get_xdata()) == [1, 3] and list(line.get_ydata()) == [0.7, 0.6]


def test_sharpness_is_drawn_against_edge_of_stability():
    fig = dynamics_figure({"WD": WD, "WRS": WRS}, "sharpness")
    got = {line.get_label(): list(line.get_ydata()) for line in fig.axes[0].get_lines()}
    assert got == {
        "WD": WD["sharpness"],
        "WD: 2/lr": WD["edge_of_stability"],
        "WRS": [],
        "WRS: 2/lr": [],
    }
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["WD", "WRS"]


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
            writer.writerow(
                {"epoch": e, **{k: ("NA" if math.isnan(v[e]) else v[e]) for k, v in WD.items()}}
            )
    assert math.isnan(load_history(str(path))["noise_ratio_mean/c1"][1])  # "NA" from CSVLogger
    np.testing.assert_allclose(load_history(str(path))["sharpness"], WD["sharpness"])
    written = plot_dynamics({"WD": str(path), "WRS": WRS}, str(tmp_path / "figs"))
    names = sorted(os.path.basename(p) for p in written)
    assert names == [
        "angular_update.png",
        "eff_lr.png",
        "noise_ratio.png",
        "norms.png",
        "sharpness.png",
    ]  # no noise_norm logged
    for p in written:
        with open(p, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    only = plot_dynamics(WRS, str(tmp_path / "one"))  # a single run, no sharpness logged
    assert len(only) == 4


def test_no_dynamics_metric_is_an_error(tmp_path):
    with pytest.raises(ValueError, match=r"No dynamics metric in these runs"):
        plot_dynamics({"loss": [1.0, 0.5]}, str(tmp_path))
    with pytest.raises(
        ValueError,
        match=r"A run must be a keras History, a dict of epoch logs or a CSVLogger file path\. Received: int",
    ):
        load_history(3)
