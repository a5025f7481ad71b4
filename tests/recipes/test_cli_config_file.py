"""`keras-wrs train --config FILE`: a run's config.json trains that run again."""

import json

import numpy as np
import pytest

from keras_wrs.recipes import cli
from keras_wrs.recipes.runs import rundir
from keras_wrs.recipes.sweeps import evidence

SMOKE = ["--smoke", "--regularization", "wrs", "--verbose", "0", "--set", "tensorboard=false"]


def _paragraph(err):
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_a_runs_config_json_reruns_it_to_the_same_history(tmp_path, capsys):
    first, again = tmp_path / "first", tmp_path / "again"
    assert cli.main(["train", *SMOKE, "--set", "epochs=3", "--out", str(first)]) == 0
    stored = first / "config.json"
    argv = ["train", "--config", str(stored), "--verbose", "0", "--out", str(again)]
    assert cli.main(argv) == 0
    assert "wrs / sgdm" in capsys.readouterr().out  # one run, the file's method
    a, b = (json.loads((d / "config.json").read_text()) for d in (first, again))
    assert a["config"] == b["config"] and a["config_hash"] == b["config_hash"]
    ha, hb = (rundir.read_history(d / "history.csv") for d in (first, again))
    assert len(ha["loss"]) == 3
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(hb[key], ha[key], rtol=1e-5, err_msg=key)
    # The evidence's rerun check measures the same thing, column by column.
    diff = evidence.rerun_differences(first, again)
    assert {"loss", "accuracy", "test_accuracy"} <= set(diff)
    assert not any("second" in k for k in diff)
    for key, value in diff.items():
        assert value <= 1e-5 * max(1.0, np.nanmax(np.abs(ha.get(key, [1.0])))), key
    # An edited history is caught, by the edit's size.
    edited = tmp_path / "edited"
    edited.mkdir()
    for name in ("config.json", "summary.json"):
        (edited / name).write_text((again / name).read_text())
    rows = (again / "history.csv").read_text().splitlines()
    header = rows[0].split(",")
    cells = rows[2].split(",")
    column = header.index("loss")
    cells[column] = repr(float(cells[column]) + 0.25)
    rows[2] = ",".join(cells)
    (edited / "history.csv").write_text("\n".join(rows) + "\n")
    assert evidence.rerun_differences(again, edited)["loss"] == pytest.approx(0.25)
    table = evidence.rerun_markdown(again, edited)
    assert "| loss | 0.25 |" in table and table.endswith("Not identical.")
    assert evidence.rerun_markdown(again, again).endswith("Identical, bit for bit.")
    # A rerun under other thread caps is told why it may differ.
    record = json.loads((edited / "config.json").read_text())
    record["resolved"]["thread_caps"] = {"OMP_NUM_THREADS": "7"}
    (edited / "config.json").write_text(json.dumps(record))
    assert "OMP_NUM_THREADS=7 for the rerun" in evidence.rerun_markdown(again, edited)
    # Flags apply on top of the file, as on top of a recipe.
    changed = tmp_path / "changed"
    argv = ["train", "--config", str(stored), "--verbose", "0", "--epochs", "1"]
    assert cli.main([*argv, "--out", str(changed)]) == 0
    assert json.loads((changed / "config.json").read_text())["config"]["epochs"] == 1
    with pytest.raises(ValueError, match=r"another configuration .*differs in epochs"):
        evidence.rerun_differences(first, changed)
    with pytest.raises(ValueError, match="holds no finished run"):
        evidence.rerun_differences(first, tmp_path / "never")


def test_an_object_of_fields_is_a_config(tmp_path):
    fields = tmp_path / "mine.json"
    fields.write_text(
        json.dumps({"epochs": 1, "warmup_epochs": 0, "steps_per_epoch": 2, "regularization": "wd"})
    )
    out = tmp_path / "run"
    assert cli.main(["train", "--config", str(fields), "--verbose", "0", "--out", str(out)]) == 0
    stored = json.loads((out / "config.json").read_text())["config"]
    assert (stored["epochs"], stored["regularization"]) == (1, "wd")


@pytest.mark.parametrize(
    "content,words",
    [
        (None, "--config '{path}': no such file"),
        ("[1, 2]", "holds a JSON list, not an object"),
        ("{not json", "not readable as JSON"),
        ('{"config": {"epochs": -3}}', "its config does not validate"),
        ('{"epochs": 0}', "--config '{path}': "),
        ('{"no_such_field": 1}', "no_such_field"),
    ],
)
def test_a_bad_config_file_is_refused_before_any_work(tmp_path, capsys, content, words):
    path = tmp_path / "config.json"
    if content is not None:
        path.write_text(content)
    out = tmp_path / "runs" / "new"
    status = cli.main(["train", "--config", str(path), "--out", str(out)])
    line = _paragraph(capsys.readouterr().err)
    assert status == 2 and words.format(path=path) in line, line
    assert not (tmp_path / "runs").exists()


def test_a_recipe_and_a_config_file_together_are_refused(tmp_path, capsys):
    path = tmp_path / "config.json"
    path.write_text("{}")
    assert cli.main(["train", "digits", "--config", str(path)]) == 2
    assert "pass one of them" in _paragraph(capsys.readouterr().err)
