"""`keras-wrs compare` over WD, WRS and the toolkit's methods (SGDP/AdamP, AdamH, SGDC/AdamC)."""

import json
import zipfile

import pytest

from keras_wrs.recipes import cli

SMOKE = ["--smoke", "--seeds", "0", "--verbose", "0", "--set", "tensorboard=false"]


def _compare(tmp_path, capsys, regularizations, *extra):
    out = tmp_path / "cmp"
    argv = ["compare", "--regularizations", regularizations, "--optimizers", "sgdm,adam"]
    assert cli.main([*argv, *SMOKE, *extra, "--out", str(out)]) == 0
    return out, capsys.readouterr().out


def _classes(out):
    """`{cell: registered optimizer class}` of each run's saved `model.keras`."""
    found = {}
    for path in sorted(out.glob("*/model.keras")):
        with zipfile.ZipFile(path) as archive:
            saved = json.loads(archive.read("config.json"))
        found[path.parent.name] = saved["compile_config"]["optimizer"]["registered_name"]
    return found


def test_compare_runs_every_new_class_then_report_labels_them(tmp_path, capsys):
    out, printed = _compare(tmp_path, capsys, "sgdp,adamh,cwd", "--set", "dynamics=false")
    assert "Skipped (the method does not exist for the optimizer): adamh / sgdm\n" in printed
    for row in (
        "| sgdm | sgdp | ",
        "| sgdm | cwd | ",
        "| adam | sgdp | ",
        "| adam | adamh | ",
        "| adam | cwd | ",
    ):
        assert row in printed
    assert "| sgdm | adamh | " not in printed
    assert sorted(p.name for p in out.iterdir() if (p / "summary.json").is_file()) == [
        "adamh-adam-s0",
        "cwd-adam-s0",
        "cwd-sgdm-s0",
        "sgdp-adam-s0",
        "sgdp-sgdm-s0",
    ]
    assert _classes(out) == {
        "adamh-adam-s0": "keras_wrs>AdamH",
        "cwd-adam-s0": "keras_wrs>AdamC",
        "cwd-sgdm-s0": "keras_wrs>SGDC",
        "sgdp-adam-s0": "keras_wrs>AdamP",
        "sgdp-sgdm-s0": "keras_wrs>SGDP",
    }
    assert cli.main(["report", str(out), "--out", str(tmp_path / "report")]) == 0
    text = capsys.readouterr().out
    assert "adamh / adam = keras_wrs.optimizers.AdamH" in text
    assert "sgdp / sgdm = keras_wrs.optimizers.SGDP" in text


@pytest.mark.slow
def test_compare_every_method_side_by_side(tmp_path, capsys):
    out, printed = _compare(tmp_path, capsys, "wd,wrs,sgdp,adamh,cwd")
    runs = sorted(p.name for p in out.iterdir() if (p / "summary.json").is_file())
    assert len(runs) == 9 and "adamh-sgdm-s0" not in runs
    assert (
        "Classes: wd / adam = keras.optimizers.Adam; wrs / adam = keras_wrs.optimizers.Adam; "
        "sgdp / adam = keras_wrs.optimizers.AdamP; adamh / adam = keras_wrs.optimizers.AdamH"
        in printed
    )
    for name in runs:
        summary = json.loads((out / name / "summary.json").read_text())
        assert summary["status"] == "finished" and summary["dynamics"], name


def _error(capsys, argv):
    assert cli.main(argv) == 2, argv
    return capsys.readouterr().err


def test_a_method_without_the_optimizer_is_a_usage_error_before_any_work(tmp_path, capsys):
    out = str(tmp_path / "run")
    err = _error(
        capsys, ["train", "--regularization", "adamh", "--optimizer", "sgdm", "--out", out]
    )
    assert "`regularization='adamh'` (AdamH, Adam on the hyperball) exists for Adam only" in err
    err = _error(
        capsys, ["compare", "--regularizations", "adamh,cwd", "--optimizers", "sgdm", "--out", out]
    )
    assert "use optimizer adam with it" in err
    assert not (tmp_path / "run").exists()
