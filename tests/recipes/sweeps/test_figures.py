"""Figures of recipe runs: the comparison plot and one run's history."""

import pytest

pytest.importorskip("matplotlib")

import matplotlib

from keras_wrs.recipes.sweeps import figures


def test_comparison_plot_says_which_split_and_keeps_identical_groups_apart(tmp_path):
    matplotlib.use("Agg")
    path = tmp_path / "h.csv"
    path.write_text("epoch,accuracy,val_accuracy\n0,0.5,0.4\n1,0.7,0.6\n")
    assert figures.metric_label("val_accuracy") == "test accuracy"
    assert figures.metric_label("loss") == "train loss"
    shown = []
    real_close = matplotlib.pyplot.close
    matplotlib.pyplot.close = shown.append  # keep the figure to inspect it
    try:
        out = figures.plot_comparison({f"g{i}": [path] for i in range(6)}, tmp_path / "acc.png")
    finally:
        matplotlib.pyplot.close = real_close
    (fig,) = shown
    ax = fig.axes[0]
    assert out == tmp_path / "acc.png" and (tmp_path / "acc.png").stat().st_size > 0
    assert ax.get_ylabel() == "test accuracy" and ax.get_title().startswith("test accuracy")
    assert (
        len({(ln.get_color(), ln.get_linestyle(), ln.get_marker()) for ln in ax.get_lines()}) == 6
    )
    assert ax.get_legend() is None and len(fig.legends) == 1


def test_history_plot_draws_train_and_test_per_epoch(tmp_path):
    matplotlib.use("Agg")
    path = tmp_path / "h.csv"
    path.write_text(
        "epoch,accuracy,loss,val_accuracy,val_loss\n"
        "0,0.5,2.0,0.4,2.2\n1,0.7,1.0,0.6,1.3\n2,0.8,0.5,0.7,0.9\n"
    )
    shown = []
    real_close = matplotlib.pyplot.close
    matplotlib.pyplot.close = shown.append
    try:
        assert figures.plot_history(path, tmp_path / "h.png") == tmp_path / "h.png"
    finally:
        matplotlib.pyplot.close = real_close
    (fig,) = shown
    loss_ax, acc_ax = fig.axes
    (train, test) = loss_ax.get_lines()
    assert list(train.get_xdata()) == [1, 2, 3] and list(test.get_ydata()) == [2.2, 1.3, 0.9]
    assert [ln.get_label() for ln in acc_ax.get_lines()] == ["train accuracy", "test accuracy"]
    assert figures.plot_history(tmp_path / "none.csv", tmp_path / "n.png") is None
