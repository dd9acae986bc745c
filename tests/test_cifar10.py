"""keras_ebnn.train.datasets.load_cifar10 (CIFAR-10 JPEG copy): a generated archive in the real layout, the
cache (atomic, rebuilt when corrupt), clean errors; the real archive when EBNN_DATA_DIR has it."""
import io
import os
import tarfile

import numpy as np
import pytest

from keras_ebnn.train import datasets

DATA = os.environ.get("EBNN_DATA_DIR")


def _has_real():
    try:
        return bool(DATA) and datasets._cifar10_archive(DATA) is not None
    except datasets.DatasetNotFoundError:
        return False


def _jpeg(img, quality=95):
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def write_archive(path, per_class=(2, 1), classes=datasets.CIFAR10_CLASSES, extra=(), seed=0):
    """A tar.gz in the real archive's layout: flat-colour 32x32 JPEGs (a colour per class and image,
    so decoding is checkable), `per_class` (train, test) images per class; returns the expected arrays."""
    rng = np.random.default_rng(seed)
    expect = {}
    with tarfile.open(path, "w:gz") as tar:
        def add(name, data):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for split, n in zip(("train", "test"), per_class):
            xs, ys = [], []
            for c, cls in enumerate(classes):
                for i in range(n):
                    img = np.broadcast_to(rng.integers(30, 220, 3).astype(np.uint8), (32, 32, 3)).copy()
                    add(f"{split}/{cls}/{i:04d}.jpg", _jpeg(img))
                    xs.append(img)
                    ys.append(c)
            expect[split] = (np.stack(xs), np.array(ys, np.uint8))
        for name, data in extra:
            add(name, data)
    return expect


@pytest.fixture
def archive(tmp_path, monkeypatch):
    monkeypatch.setenv("EBNN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("EBNN_DATA_DIR", raising=False)
    folder = tmp_path / "data" / "cifar10"
    folder.mkdir(parents=True)
    expect = write_archive(folder / datasets.CIFAR10_ARCHIVE)
    return tmp_path / "data", expect


def test_generated_archive_shapes_labels_and_pixels(archive, monkeypatch):
    root, expect = archive
    monkeypatch.setenv("EBNN_DATA_DIR", str(root))  # found through EBNN_DATA_DIR's cifar10/ folder
    (xtr, ytr), (xte, yte) = datasets.load_cifar10()
    assert xtr.shape == (20, 32, 32, 3) and xte.shape == (10, 32, 32, 3)
    assert xtr.dtype == np.uint8 and ytr.dtype == np.uint8
    assert ytr.tolist() == [c for c in range(10) for _ in range(2)] and yte.tolist() == list(range(10))
    for x, (want, y) in ((xtr, expect["train"]), (xte, expect["test"])):
        assert np.abs(x.astype(int) - want.astype(int)).max() <= 3  # JPEG of a flat colour
    x, y = datasets.load_cifar10(data_dir=root / "cifar10", split="test")  # explicit folder, one split
    assert np.array_equal(x, xte) and np.array_equal(y, yte)


def test_cache_is_written_read_and_rebuilt_when_corrupt(archive, monkeypatch):
    root, _ = archive
    first = datasets.load_cifar10(root)
    cache = list((root.parent / "cache").glob("cifar10-jpeg-*.npz"))
    assert len(cache) == 1 and not list(cache[0].parent.glob("*.tmp"))
    # a second load reads the cache, not the archive
    monkeypatch.setattr(datasets, "decode_cifar10_archive", lambda a: pytest.fail("decoded again"))
    second = datasets.load_cifar10(root)
    assert all(np.array_equal(a, b) for p, q in zip(first, second) for a, b in zip(p, q))
    monkeypatch.undo()
    monkeypatch.setenv("EBNN_CACHE_DIR", str(root.parent / "cache"))
    # a truncated cache file (an interrupted writer of another loader, a full disk) is decoded again
    data = cache[0].read_bytes()
    cache[0].write_bytes(data[: len(data) // 2])
    third = datasets.load_cifar10(root)
    assert all(np.array_equal(a, b) for p, q in zip(first, third) for a, b in zip(p, q))
    assert cache[0].stat().st_size == len(data)  # rewritten whole
    # cache=False neither reads nor writes it
    cache[0].unlink()
    datasets.load_cifar10(root, cache=False)
    assert not cache[0].exists()


def test_changed_archive_gets_a_new_cache(archive):
    root, _ = archive
    datasets.load_cifar10(root)
    path = root / "cifar10" / datasets.CIFAR10_ARCHIVE
    expect = write_archive(path, per_class=(1, 1), seed=1)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    x, y = datasets.load_cifar10(root, split="train")
    assert len(x) == 10 and np.array_equal(y, expect["train"][1])


def test_missing_archive_and_bad_members(tmp_path, monkeypatch):
    monkeypatch.delenv("EBNN_DATA_DIR", raising=False)
    monkeypatch.setenv("EBNN_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(datasets.DatasetNotFoundError, match="EBNN_DATA_DIR"):
        datasets.load_cifar10(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="split"):
        datasets.load_cifar10(tmp_path, split="val")
    bad = tmp_path / "bad"
    bad.mkdir()
    write_archive(bad / datasets.CIFAR10_ARCHIVE, per_class=(1, 1), extra=[("train/zebra/0000.jpg", _jpeg(np.zeros((32, 32, 3), np.uint8)))])
    with pytest.raises(ValueError, match="unknown class 'zebra'"):
        datasets.load_cifar10(bad)
    write_archive(bad / datasets.CIFAR10_ARCHIVE, per_class=(1, 1), extra=[("test/cat/9999.jpg", b"not a jpeg")])
    with pytest.raises(ValueError, match="9999.jpg: not a readable image"):
        datasets.load_cifar10(bad)
    write_archive(bad / datasets.CIFAR10_ARCHIVE, per_class=(1, 1), extra=[("test/cat/9998.jpg", _jpeg(np.zeros((16, 32, 3), np.uint8)))])
    with pytest.raises(ValueError, match="expected 32x32"):
        datasets.load_cifar10(bad)
    assert not list((tmp_path / "cache").glob("*.npz"))  # nothing cached from a bad archive


@pytest.mark.slow  # ~6 s from the cache, ~60 s decoding the 60,000 JPEGs
@pytest.mark.skipif(not _has_real(), reason="EBNN_DATA_DIR with cifar10/cifar10-jpeg.tar.gz is not set")
def test_real_cifar10_jpeg_copy():
    (xtr, ytr), (xte, yte) = datasets.load_cifar10()
    assert xtr.shape == (50000, 32, 32, 3) and xte.shape == (10000, 32, 32, 3)
    assert np.bincount(ytr).tolist() == [5000] * 10 and np.bincount(yte).tolist() == [1000] * 10
    # the README's channel means of the JPEG copy
    assert np.allclose(xtr.reshape(-1, 3).mean(0), (125.3, 122.9, 113.9), atol=0.1)


@pytest.mark.slow  # trains for one epoch and exports (~30 s)
def test_example_trains_and_exports_on_a_generated_archive(archive, tmp_path, monkeypatch, capsys):
    import importlib.util

    from helpers.common import ROOT
    root, _ = archive
    monkeypatch.setenv("EBNN_DATA_DIR", str(root))
    spec = importlib.util.spec_from_file_location("cifar10_example", ROOT / "examples" / "cifar10" / "train.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--out", str(tmp_path / "out"), "--epochs", "1"]) == 0
    text = capsys.readouterr().out
    assert "CIFAR-10 (JPEG copy), 10 test images" in text and "C = reference bit for bit: True" in text
    assert (tmp_path / "out" / "c" / "vgg_cifar10_t.c").is_file() and (tmp_path / "out" / "vgg_cifar10_t.keras").is_file()
