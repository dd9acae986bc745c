"""Multivariate time series of the UEA/UCR archive, read from the copy the `aeon` package ships.

aeon (https://www.aeon-toolkit.org, `pip install aeon`) bundles a few archive datasets as `.ts` files
in `aeon/datasets/data/<Name>/<Name>_TRAIN.ts` / `_TEST.ts` -- among them JapaneseVowels and
BasicMotions, with the archive's own train/test splits. This module only *reads those files*: it
never imports aeon (aeon 1.x needs numpy >= 2, pandas, scikit-learn and numba, which larq's
numpy < 2 pin excludes), so installing aeon without its dependencies is enough:

    pip install --no-deps aeon        # or: pip install 'keras-ebnn[sensor]' in a numpy-2 environment

aeon is an optional dependency: `aeon_data_dir()` returns None without it, and `load()` raises
`DatasetNotFoundError` saying how to install it.

Data source: A. Bagnall, H. A. Dau, J. Lines, M. Flynn, J. Large, A. Bostrom, P. Southam, E. Keogh,
"The UEA multivariate time series classification archive, 2018", arXiv:1811.00075
(www.timeseriesclassification.com); JapaneseVowels originally from M. Kudo, J. Toyama, M. Shimbo,
"Multidimensional curve classification using passing-through regions", Pattern Recognition Letters
20(11-13), 1999 (UCI Machine Learning Repository).

Layout returned: x float32 (N, L, C) -- time steps first, channels last, as Keras's Conv1D reads
them; y int64 class indices 0..K-1 in the order of the file's `@classLabel` line. Series shorter
than the longest one of the dataset (JapaneseVowels: 7 to 29 steps) are padded at the end by
repeating their last value ("edge" padding; see `load`).
"""
import importlib.util
from pathlib import Path

import numpy as np

from .datasets import DatasetNotFoundError

INSTALL_HINT = "install it with `pip install --no-deps aeon` (only its bundled data files are read)"


def aeon_data_dir():
    """aeon's bundled dataset folder (`.../aeon/datasets/data`), or None when aeon is not installed.
    Found without importing aeon."""
    spec = importlib.util.find_spec("aeon")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        d = Path(root) / "datasets" / "data"
        if d.is_dir():
            return d
    return None


def read_ts(path):
    """Parse one `.ts` file (the sktime/aeon text format). Returns (series, labels, class_names):
    series a list of float64 arrays (C, L_i) (one per case, lengths may differ), labels the raw label
    strings, class_names the `@classLabel` list. Raises ValueError naming the file and line on
    anything it does not understand (timestamps, missing values '?', a wrong channel count)."""
    path = Path(path)
    header, series, labels, in_data = {}, [], [], False
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if not in_data:
                if not line.startswith("@"):
                    raise ValueError(f"{path}:{lineno}: expected a @header line, got {line[:40]!r}")
                key, _, value = line[1:].partition(" ")
                key = key.lower()
                if key == "data":
                    in_data = True
                else:
                    header[key] = value.strip()
                continue
            if header.get("timestamps", "false").lower() == "true":
                raise ValueError(f"{path}: time-stamped .ts files are not supported")
            *dims, label = line.split(":")
            if "?" in line:
                raise ValueError(f"{path}:{lineno}: missing values ('?') are not supported")
            try:
                case = [np.array([float(v) for v in d.split(",")], dtype=np.float64) for d in dims]
            except ValueError as exc:
                raise ValueError(f"{path}:{lineno}: {exc}") from None
            if len({len(c) for c in case}) != 1:
                raise ValueError(f"{path}:{lineno}: the channels of one case have different lengths")
            if "dimensions" in header and len(case) != int(header["dimensions"]):
                raise ValueError(f"{path}:{lineno}: {len(case)} channels, header says {header['dimensions']}")
            series.append(np.stack(case))
            labels.append(label.strip())
    words = header.get("classlabel", "").split()
    if not words or words[0].lower() != "true":
        raise ValueError(f"{path}: no '@classLabel true ...' header (not a classification file)")
    if not series:
        raise ValueError(f"{path}: no data")
    return series, labels, words[1:]


def _pad(series, length):
    """(N, L, C) float32: each (C, L_i) case transposed and padded at the end with its last value."""
    out = np.empty((len(series), length, series[0].shape[0]), dtype=np.float32)
    for i, s in enumerate(series):
        if s.shape[1] > length:
            raise ValueError(f"case {i} has {s.shape[1]} steps, more than the padded length {length}")
        out[i, :s.shape[1]] = s.T
        out[i, s.shape[1]:] = s[:, -1]
    return out


def load(name, split=None, data_dir=None):
    """Load the archive dataset `name` (e.g. "JapaneseVowels", "BasicMotions") from aeon's copy, or
    from `data_dir` (a folder holding <name>/<name>_TRAIN.ts or <name>_TRAIN.ts directly).

    Returns ((x_train, y_train), (x_test, y_test)), or one (x, y) pair for split="train"/"test"
    (layout in the module docstring; both splits are padded to the longest case of either split).
    """
    if split not in (None, "train", "test"):
        raise ValueError("split must be None, 'train' or 'test'")
    roots = [Path(data_dir)] if data_dir is not None else [d for d in [aeon_data_dir()] if d is not None]
    files = None
    for root in roots:
        for folder in (root / name, root):
            cand = {s: folder / f"{name}_{s.upper()}.ts" for s in ("train", "test")}
            if all(p.is_file() for p in cand.values()):
                files = cand
                break
        if files:
            break
    if files is None:
        where = f"in {roots[0]}" if roots else f"(aeon is not installed; {INSTALL_HINT})"
        raise DatasetNotFoundError(f"{name}: {name}_TRAIN.ts / {name}_TEST.ts not found {where}")
    parsed = {s: read_ts(p) for s, p in files.items()}
    classes = parsed["train"][2]
    if parsed["test"][2] != classes:
        raise ValueError(f"{name}: the train and test files list different classes")
    length = max(s.shape[1] for part in parsed.values() for s in part[0])
    out = {}
    for s, (series, labels, _) in parsed.items():
        unknown = sorted(set(labels) - set(classes))
        if unknown:
            raise ValueError(f"{files[s]}: labels {unknown} are not in @classLabel {classes}")
        out[s] = (_pad(series, length), np.array([classes.index(v) for v in labels], dtype=np.int64))
    return out[split] if split else (out["train"], out["test"])


def uint8_scaling(x_train):
    """Per-channel (lo, hi) float32 arrays of shape (C,): the training split's minimum and maximum
    over all cases and time steps, the range `to_uint8` maps onto 0..255."""
    x = np.asarray(x_train, dtype=np.float32)
    lo, hi = x.min(axis=(0, 1)), x.max(axis=(0, 1))
    return lo, np.where(hi > lo, hi, lo + 1).astype(np.float32)


def to_uint8(x, lo, hi):
    """Quantize float series (N, L, C) to uint8 per channel: round(255 * (x - lo) / (hi - lo)),
    clipped to 0..255 (test values outside the training range saturate). What a sensor front end
    (an ADC with a fixed gain and offset per channel) would deliver to the model."""
    x = np.asarray(x, dtype=np.float64)
    q = np.rint(255.0 * (x - lo) / (np.asarray(hi, np.float64) - lo))
    return np.clip(q, 0, 255).astype(np.uint8)
