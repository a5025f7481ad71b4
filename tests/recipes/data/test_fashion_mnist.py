"""Fashion-MNIST: IDX parsing and checks on files the tests write, then the real files."""

import gzip
import hashlib

import numpy as np
import pytest

from keras_wrs.recipes import data
from keras_wrs.recipes.data import fashion_mnist as fm


def _idx_bytes(array):
    """The IDX encoding of a uint8 array, written independently of the reader."""
    magic = {1: 2049, 3: 2051}[array.ndim]
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _tiny(n_train=20, n_test=10, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": np.arange(n_train, dtype=np.uint8) % 10,
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": np.arange(n_test, dtype=np.uint8) % 10,
    }
    specs = {
        k: fm.IdxFile(fm.FILES[k].name, a.shape, hashlib.sha256(_idx_bytes(a)).hexdigest())
        for k, a in arrays.items()
    }
    return arrays, specs


def _write(directory, arrays, specs, gz=True):
    directory.mkdir(parents=True, exist_ok=True)
    for key, array in arrays.items():
        raw = _idx_bytes(array)
        name = specs[key].name
        if gz:
            (directory / (name + ".gz")).write_bytes(gzip.compress(raw))
        else:
            (directory / name).write_bytes(raw)


@pytest.mark.parametrize("gz", [True, False])
def test_reads_the_arrays_written(tmp_path, gz):
    arrays, specs = _tiny()
    _write(tmp_path, arrays, specs, gz=gz)
    x_tr, y_tr, x_te, y_te = fm.load_idx_splits(tmp_path, specs)
    np.testing.assert_array_equal(x_tr[..., 0], arrays["train_images"])
    np.testing.assert_array_equal(y_tr, arrays["train_labels"])
    np.testing.assert_array_equal(x_te[..., 0], arrays["test_images"])
    assert x_tr.shape == (20, 28, 28, 1) and x_tr.dtype == np.uint8
    assert y_te.dtype == np.int64


def _corrupt(path, mode):
    raw = bytearray(gzip.decompress(path.read_bytes()))
    if mode == "truncated":
        raw = raw[:-7]
    elif mode == "magic":
        raw[3] = 0x01
    elif mode == "dtype":
        raw[2] = 0x0D  # float32 element type
    elif mode == "shape":
        raw[7] += 1
    elif mode == "content":
        raw[-1] ^= 0xFF
    path.write_bytes(gzip.compress(bytes(raw)))


@pytest.mark.parametrize(
    "mode,words",
    [
        ("truncated", "truncated"),
        ("magic", "magic number"),
        ("dtype", "magic number"),
        ("shape", "shape"),
        ("content", "SHA-256"),
    ],
)
def test_bad_file_is_a_clear_error(tmp_path, mode, words):
    arrays, specs = _tiny()
    _write(tmp_path, arrays, specs)
    bad = tmp_path / (specs["train_images"].name + ".gz")
    _corrupt(bad, mode)
    with pytest.raises(fm.FashionMnistError, match=words) as err:
        fm.load_idx_splits(tmp_path, specs)
    message = str(err.value)
    assert "train-images-idx3-ubyte.gz" in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "--data-dir" in message and "--download" in message


def test_label_out_of_range(tmp_path):
    arrays, _ = _tiny()
    arrays["test_labels"][0] = 12
    specs = {
        k: fm.IdxFile(fm.FILES[k].name, a.shape, hashlib.sha256(_idx_bytes(a)).hexdigest())
        for k, a in arrays.items()
    }
    _write(tmp_path, arrays, specs)
    with pytest.raises(fm.FashionMnistError, match="label 12 outside 0..9"):
        fm.load_idx_splits(tmp_path, specs)


def test_not_gzip_and_empty_files(tmp_path):
    arrays, specs = _tiny()
    _write(tmp_path, arrays, specs)
    path = tmp_path / (specs["test_labels"].name + ".gz")
    path.write_bytes(b"not gzip at all")
    with pytest.raises(fm.FashionMnistError, match="cannot be read or decompressed"):
        fm.load_idx_splits(tmp_path, specs)
    path.write_bytes(gzip.compress(b""))
    with pytest.raises(fm.FashionMnistError, match="truncated: 0 bytes"):
        fm.load_idx_splits(tmp_path, specs)


def test_genuine_checksums_refuse_other_content(tmp_path):
    """With the recorded genuine sums, files of the right structure but other
    content fail: the shape check first (sizes differ), then the digest."""
    arrays, specs = _tiny()
    _write(tmp_path, arrays, specs)
    with pytest.raises(fm.FashionMnistError, match="shape"):
        fm.load_idx_splits(tmp_path)
    labels = np.zeros(10_000, np.uint8)
    raw = _idx_bytes(labels)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(raw))
    with pytest.raises(fm.FashionMnistError, match="SHA-256"):
        fm.read_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", fm.FILES["test_labels"])


def test_search_order_and_partial_directories(tmp_path, monkeypatch):
    arrays, specs = _tiny()
    first, second = tmp_path / "a", tmp_path / "b"
    _write(second, arrays, specs)
    monkeypatch.setenv(fm.ENV_VAR, str(second))
    assert fm.find_idx_dir(None, specs) == (second, fm.ENV_VAR)
    with pytest.raises(fm.FashionMnistError, match=r"\(from --data-dir\) does not exist"):
        fm.find_idx_dir(str(first), specs)  # a named place is the only one searched
    _write(first, arrays, specs)
    assert fm.find_idx_dir(str(first), specs) == (first, "--data-dir")
    (first / (specs["test_images"].name + ".gz")).unlink()
    with pytest.raises(
        fm.FashionMnistError, match="holds 3 of the 4 files; missing: t10k-images-idx3-ubyte"
    ):
        fm.find_idx_dir(str(first), specs)


def test_missing_everywhere_fails_without_fallback(tmp_path, monkeypatch):
    monkeypatch.setenv(fm.ENV_VAR, str(tmp_path / "nothing"))
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "no-debian")
    (tmp_path / "empty").mkdir()
    with pytest.raises(data.DatasetUnavailableError) as err:
        data.load_splits("fashion_mnist", data_dir=str(tmp_path / "empty"))
    message = str(err.value)
    for words in ("apt-get install dataset-fashion-mnist", "--data-dir", "--download", fm.ENV_VAR):
        assert words in message


@pytest.mark.parametrize("where", ["missing", "file"])
def test_a_named_data_dir_must_be_a_directory(tmp_path, where):
    path = tmp_path / "data"
    if where == "file":
        path.write_text("x")
    state = "is not a directory" if where == "file" else "does not exist"
    with pytest.raises(fm.FashionMnistError, match=rf"\(from --data-dir\) {state}"):
        data.load_splits("fashion_mnist", data_dir=str(path))


def test_a_named_place_without_the_files_never_falls_back(tmp_path, monkeypatch):
    """Even with a good copy elsewhere (the Debian directory), a named place is the one read."""
    arrays, specs = _tiny()
    _write(tmp_path / "debian", arrays, specs)
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "debian")
    monkeypatch.setattr(fm, "FILES", specs)
    assert data.load_splits("fashion_mnist").x_train.shape == (20, 28, 28, 1)
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv(fm.ENV_VAR, str(tmp_path / "empty"))
    with pytest.raises(data.DatasetUnavailableError, match=rf"\${fm.ENV_VAR}=.*holds none"):
        data.load_splits("fashion_mnist")
    monkeypatch.setenv(fm.ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(fm.FashionMnistError, match=rf"\(from {fm.ENV_VAR}\) does not exist"):
        data.load_splits("fashion_mnist")
    monkeypatch.delenv(fm.ENV_VAR)
    with pytest.raises(data.DatasetUnavailableError, match=r"not found in --data-dir"):
        data.load_splits("fashion_mnist", data_dir=str(tmp_path / "empty"))


@pytest.mark.parametrize("mode", ["truncated", "magic", "shape", "swapped", "empty"])
def test_a_bad_file_through_the_command_line_is_one_message(tmp_path, monkeypatch, capsys, mode):
    from keras_wrs.recipes import cli

    arrays, specs = _tiny()
    _write(tmp_path / "data", arrays, specs)
    monkeypatch.setattr(fm, "FILES", specs)
    bad = tmp_path / "data" / (specs["train_images"].name + ".gz")
    if mode == "swapped":
        test = tmp_path / "data" / (specs["test_images"].name + ".gz")
        bad_bytes, test_bytes = bad.read_bytes(), test.read_bytes()
        bad.write_bytes(test_bytes)
        test.write_bytes(bad_bytes)
    elif mode == "empty":
        bad.write_bytes(b"")
    else:
        _corrupt(bad, mode)
    out = tmp_path / "run"
    status = cli.main(
        [
            "train",
            "fashion_mnist_small",
            "--smoke",
            "--regularization",
            "wrs",
            "--data-dir",
            str(tmp_path / "data"),
            "--out",
            str(out),
        ]
    )
    err = capsys.readouterr().err
    assert status == 2 and "Fashion-MNIST file" in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if line.strip()]) == 1
    assert not out.exists()


def test_subset_is_balanced_and_channels_replicate(tmp_path, monkeypatch):
    arrays, specs = _tiny(n_train=40)
    _write(tmp_path, arrays, specs)
    monkeypatch.setattr(fm, "FILES", specs)
    splits = data.load_splits("fashion_mnist", data_dir=str(tmp_path))
    sub = data.subset_splits(splits, train_examples=20, channels=3)
    assert np.bincount(sub.y_train).tolist() == [2] * 10
    assert sub.x_train.shape == (20, 28, 28, 3) and sub.x_test.shape == (10, 28, 28, 3)
    np.testing.assert_array_equal(sub.x_train[..., 0], sub.x_train[..., 2])
    # The first two of each class in file order: labels cycle 0..9.
    np.testing.assert_array_equal(sub.x_train[:, ..., 0], splits.x_train[:20, ..., 0])
    with pytest.raises(ValueError, match="multiple of 10"):
        data.subset_splits(splits, train_examples=25)


_REAL = all(fm._locate(fm.DEBIAN_DIR, spec) for spec in fm.FILES.values())


@pytest.mark.skipif(
    not _REAL,
    reason="the Fashion-MNIST files are not installed (apt-get install dataset-fashion-mnist)",
)
def test_real_files():
    splits = data.load_splits("fashion_mnist")
    assert splits.x_train.shape == (60_000, 28, 28, 1)
    assert splits.x_test.shape == (10_000, 28, 28, 1)
    assert np.bincount(splits.y_train).tolist() == [6_000] * 10
    x = splits.x_train.astype(np.float64) / 255
    assert abs(x.mean() - 0.2860) < 5e-5 and abs(x.std() - 0.3530) < 5e-5
    assert splits.info.mean[0] == pytest.approx(0.2860, abs=5e-5)
    assert splits.info.class_names[9] == "Ankle boot"
