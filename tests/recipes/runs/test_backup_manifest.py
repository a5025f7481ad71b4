"""The backup manifest is read back checked: a hand-edited number or path is named."""

import json

import pytest

from keras_wrs.recipes.runs import backup


def _manifest(tmp_path, **changes):
    entry = {
        "epoch": 2,
        "file": "epoch-0002.weights.h5",
        "iterations": 6,
        "elapsed_seconds": 3.5,
        "sha256": "0" * 64,
        "bytes": 10,
    }
    entry.update(changes)
    (tmp_path / backup.MANIFEST).write_text(
        json.dumps({"format": 1, "epoch": 2, "latest": entry, "previous": None})
    )
    return tmp_path


@pytest.mark.parametrize(
    "changes,words",
    [
        ({"epoch": -1}, r"epoch=-1 is not an integer >= 0"),
        ({"epoch": 1e300}, r"epoch=1e\+300 is not an integer"),
        ({"iterations": "6"}, r"iterations='6' is not an integer"),
        ({"bytes": True}, r"bytes=True is not an integer"),
        ({"elapsed_seconds": -3.0}, r"elapsed_seconds=-3.0 is not a finite number"),
        ({"elapsed_seconds": float("nan")}, r"elapsed_seconds=nan"),
        ({"file": "../../model.keras"}, r"file='../../model.keras' is not a backup file name"),
        ({"file": "/etc/passwd"}, r"is not a backup file name"),
    ],
)
def test_a_bad_manifest_entry_is_a_backup_error(tmp_path, changes, words):
    _manifest(tmp_path, **changes)
    with pytest.raises(backup.BackupError, match=rf"manifest .* is unreadable .*{words}"):
        backup.find_restore_point(tmp_path, 2)


def test_a_good_entry_reads_back(tmp_path):
    _manifest(tmp_path)
    with pytest.raises(backup.BackupError, match=r"epoch-0002.weights.h5'?: missing"):
        backup.find_restore_point(tmp_path, 2)  # the file is not there: named
