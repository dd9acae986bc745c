"""keras_ebnn.train.datasets: offline IDX loaders."""
import os

import numpy as np
import pytest

from keras_ebnn.train import datasets

DATA = os.environ.get("EBNN_DATA_DIR")
needs_data = pytest.mark.skipif(not DATA or datasets.find_dir("mnist", DATA) is None,
                                reason="EBNN_DATA_DIR with the MNIST IDX files is not set")


@needs_data
def test_mnist_from_env():
    (xtr, ytr), (xte, yte) = datasets.load("mnist")
    assert xtr.shape == (60000, 28, 28, 1) and xte.shape == (10000, 28, 28, 1)
    assert xtr.dtype == np.uint8 and ytr.dtype == np.uint8
    assert list(ytr[:10]) == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert list(yte[:10]) == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(yte).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@needs_data
def test_fashion_mnist_split_and_explicit_dir(monkeypatch):
    monkeypatch.delenv("EBNN_DATA_DIR")
    x, y = datasets.load_fashion_mnist(data_dir=os.path.join(DATA, "fashion-mnist"), split="test")
    assert x.shape == (10000, 28, 28, 1) and set(np.unique(y)) == set(range(10))


def test_sample_idx_from_env_and_explicit_dir(sample_data_dir, monkeypatch):
    """The loaders on IDX files written from the shipped sample (runs on any clone): found through
    EBNN_DATA_DIR's mnist/ sub-folder, through an explicit folder, and equal to the sample itself."""
    from helpers.common import ROOT
    sample = np.load(ROOT / "examples" / "data" / "mnist_test_sample.npz")
    monkeypatch.setenv("EBNN_DATA_DIR", str(sample_data_dir))
    (xtr, ytr), (xte, yte) = datasets.load("mnist")
    assert xtr.shape == (700, 28, 28, 1) and xte.shape == (300, 28, 28, 1) and xtr.dtype == np.uint8
    assert np.array_equal(np.concatenate([xtr, xte]), sample["x"])
    assert np.array_equal(np.concatenate([ytr, yte]), sample["y"])
    monkeypatch.delenv("EBNN_DATA_DIR")
    x, y = datasets.load_fashion_mnist(data_dir=sample_data_dir / "fashion-mnist", split="test")
    assert np.array_equal(x, sample["x"][700:]) and np.array_equal(y, sample["y"][700:])
    assert datasets.find_dir("fashion_mnist", sample_data_dir) == sample_data_dir / "fashion-mnist"


def test_missing_directory_gives_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("EBNN_DATA_DIR", str(tmp_path / "nowhere"))
    # Keras's own cache/download cannot work here either: point its cache at an empty folder
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(datasets, "_keras_load", lambda name: (_ for _ in ()).throw(OSError("offline")))
    with pytest.raises(datasets.DatasetNotFoundError) as info:
        datasets.load("mnist", data_dir=tmp_path / "missing")
    msg = str(info.value)
    assert "missing" in msg and "EBNN_DATA_DIR" in msg and "t10k-images-idx3-ubyte.gz" in msg


def test_read_idx_rejects_garbage(tmp_path):
    bad = tmp_path / "x.idx"
    bad.write_bytes(b"\x00\x00\x0d\x01\x00\x00\x00\x02ab")
    with pytest.raises(ValueError, match="unsigned-byte IDX"):
        datasets.read_idx(bad)
