"""Two `keras-wrs train` on one run directory at once: one trains, the other is refused."""

import csv
import subprocess
import sys
from pathlib import Path

import pytest

COMMAND = Path(sys.executable).with_name("keras-wrs")


@pytest.mark.slow
def test_two_trains_started_together_leave_one_clean_run(tmp_path):
    out = tmp_path / "dup"
    argv = [
        str(COMMAND),
        "train",
        "--smoke",
        "--regularization",
        "wrs",
        "--verbose",
        "0",
        "--set",
        "tensorboard=false",
        "--set",
        "epochs=3",
        "--out",
        str(out),
    ]
    procs = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    refused = [err for code, err in results if code != 0]
    assert codes == [0, 2], results
    assert "is in use by process" in refused[0] or "already exists" in refused[0], refused
    assert "Traceback" not in refused[0]
    with (out / "history.csv").open() as f:
        rows = list(csv.reader(f))
    assert rows[0][0] == "epoch" and [r[0] for r in rows[1:]] == ["0", "1", "2"]
    assert (out / "summary.json").is_file() and not (out / ".keras-wrs.lock").exists()
