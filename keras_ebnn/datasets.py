"""MNIST and Fashion-MNIST loaders that work offline.

Where the IDX .gz files are looked for, in order:
  1. the `data_dir` argument (the directory holding `train-images-idx3-ubyte.gz` etc.; a parent
     directory with an `mnist/` or `fashion-mnist/` sub-directory also works);
  2. the directory in the `EBNN_DATA_DIR` environment variable (same layout);
  3. Keras's own cache / download (`tf.keras.datasets.<name>.load_data()`), on a machine with internet.
Images are returned as uint8 arrays of shape (N, 28, 28, 1), labels as uint8 (N,).
"""
import gzip
import os
from pathlib import Path

import numpy as np

FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
SUBDIRS = {"mnist": "mnist", "fashion_mnist": "fashion-mnist"}


class DatasetNotFoundError(FileNotFoundError):
    """The IDX files were not found in any of the places searched."""


def read_idx(path):
    """Read one IDX file (gzip-compressed or not) into a NumPy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 8:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {dims} but holds {body.size} bytes")
    return body.reshape(dims)


def _candidate_dirs(name, data_dir, use_env=True):
    roots = []
    if data_dir is not None:
        roots.append(Path(data_dir))
    env = os.environ.get("EBNN_DATA_DIR")
    if env and use_env:
        roots.append(Path(env))
    dirs = []
    for root in roots:
        dirs += [root, root / SUBDIRS[name]]
    return dirs


def find_dir(name="mnist", data_dir=None, use_env=True):
    """The first directory holding all four IDX files of `name`, or None."""
    for d in _candidate_dirs(name, data_dir, use_env):
        if all((d / f).is_file() for pair in FILES.values() for f in pair):
            return d
    return None


def _keras_load(name):
    """Keras's loader: its cache (~/.keras/datasets), else a download."""
    from ._tf import import_tf

    return getattr(import_tf().keras.datasets, name).load_data()


def load(name="mnist", data_dir=None, split=None):
    """Load `name` ("mnist" or "fashion_mnist").

    Returns ((x_train, y_train), (x_test, y_test)), or one (x, y) pair when split is "train"/"test".
    """
    name = name.replace("-", "_")
    if name not in SUBDIRS:
        raise ValueError(f"unknown dataset {name!r}; choose 'mnist' or 'fashion_mnist'")
    if split not in (None, "train", "test"):
        raise ValueError("split must be None, 'train' or 'test'")
    d = find_dir(name, data_dir)
    if d is not None:
        parts = {}
        for key, (img, lab) in FILES.items():
            if split in (None, key):
                x = read_idx(d / img)
                y = read_idx(d / lab)
                parts[key] = (x.reshape(-1, 28, 28, 1), y)
        return parts[split] if split else (parts["train"], parts["test"])
    searched = [str(p) for p in _candidate_dirs(name, data_dir)]
    try:
        (xtr, ytr), (xte, yte) = _keras_load(name)
    except Exception as exc:
        raise DatasetNotFoundError(
            f"{name}: the IDX files ({', '.join(FILES['train'] + FILES['test'])}) were not found in "
            f"{searched or 'any directory (no data_dir given, EBNN_DATA_DIR unset)'}, and Keras could "
            f"not load or download them ({type(exc).__name__}: {exc}). Pass data_dir=... or set "
            "EBNN_DATA_DIR to the directory holding them."
        ) from exc
    train = (xtr.reshape(-1, 28, 28, 1), ytr)
    test = (xte.reshape(-1, 28, 28, 1), yte)
    return {"train": train, "test": test}[split] if split else (train, test)


def load_mnist(data_dir=None, split=None):
    return load("mnist", data_dir, split)


def load_fashion_mnist(data_dir=None, split=None):
    return load("fashion_mnist", data_dir, split)


# ---- Free Spoken Digit Dataset (FSDD): raw 8 kHz audio clips
FSDD_ARCHIVE = "fsdd-recordings.tar.gz"  # recordings/{digit}_{speaker}_{index}.wav
FSDD_TEST_INDICES = range(5)  # the dataset's official split: index 0-4 test, 5-49 train


def _fsdd_source(data_dir=None):
    roots = [Path(data_dir)] if data_dir is not None else []
    if os.environ.get("EBNN_DATA_DIR"):
        roots.append(Path(os.environ["EBNN_DATA_DIR"]))
    for root in roots:
        for d in (root, root / "fsdd"):
            if (d / FSDD_ARCHIVE).is_file():
                return d / FSDD_ARCHIVE
            if (d / "recordings").is_dir():
                return d / "recordings"
    raise DatasetNotFoundError(
        f"FSDD: {FSDD_ARCHIVE} (or a recordings/ folder) not found in "
        f"{[str(r) for r in roots] or 'any directory (no data_dir given, EBNN_DATA_DIR unset)'} or their fsdd/ "
        "sub-folders. Pass data_dir=... or set EBNN_DATA_DIR (the Free Spoken Digit Dataset, "
        "github.com/Jakobovski/free-spoken-digit-dataset).")


def read_wav_int16(f, name="clip", sample_rate=None):
    """(samples int16 (n,), rate) of a mono 16-bit PCM WAV file (path or file object), with the
    standard library's `wave`; ValueError naming the file for anything else."""
    import wave
    try:
        with wave.open(f, "rb") as w:
            ch, width, rate, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            raw = w.readframes(n)
    except (wave.Error, EOFError) as exc:
        raise ValueError(f"{name}: not a readable WAV file ({exc})") from None
    if ch != 1 or width != 2:
        raise ValueError(f"{name}: {ch} channel(s) of {8 * width}-bit samples; only mono 16-bit PCM is supported")
    if sample_rate is not None and rate != sample_rate:
        raise ValueError(f"{name}: {rate} Hz, expected {sample_rate} Hz")
    return np.frombuffer(raw, "<i2").astype(np.int16), rate


def load_fsdd(data_dir=None, split=None, sample_rate=8000, with_speakers=False):
    """The Free Spoken Digit Dataset with its official split (recordings with index 0-4: test).

    Reads `fsdd-recordings.tar.gz` (or a `recordings/` folder of `{digit}_{speaker}_{index}.wav`) from
    data_dir, else EBNN_DATA_DIR (each also as a parent of an `fsdd/` folder). Returns
    ((clips_train, y_train), (clips_test, y_test)), or one pair when split is "train"/"test": clips a
    list of int16 arrays (variable length, `sample_rate` Hz mono), labels int64 digits; ordered by
    file name. with_speakers=True adds a third element per pair: the speaker names."""
    import tarfile
    if split not in (None, "train", "test"):
        raise ValueError("split must be None, 'train' or 'test'")
    src = _fsdd_source(data_dir)
    items = []

    def add(fname, opener):
        stem = Path(fname).name[:-4]
        parts = stem.split("_")
        if len(parts) != 3 or not parts[0].isdigit() or not parts[2].isdigit():
            raise ValueError(f"{fname}: FSDD names are {{digit}}_{{speaker}}_{{index}}.wav")
        x, _ = read_wav_int16(opener(), fname, sample_rate)
        items.append((Path(fname).name, int(parts[0]), parts[1], int(parts[2]), x))

    if src.is_dir():
        for p in sorted(src.glob("*.wav")):
            add(str(p), lambda p=p: str(p))
    else:
        with tarfile.open(src, "r:*") as tar:
            for m in sorted((m for m in tar.getmembers() if m.isfile() and m.name.endswith(".wav")),
                            key=lambda m: m.name):
                add(m.name, lambda m=m: tar.extractfile(m))
    if not items:
        raise DatasetNotFoundError(f"FSDD: no .wav recordings in {src}")
    items.sort(key=lambda t: t[0])
    parts = {}
    for key, test in (("train", False), ("test", True)):
        sel = [t for t in items if (t[3] in FSDD_TEST_INDICES) == test]
        pair = ([t[4] for t in sel], np.array([t[1] for t in sel], np.int64))
        parts[key] = pair + ([t[2] for t in sel],) if with_speakers else pair
    return parts[split] if split else (parts["train"], parts["test"])
