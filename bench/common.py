"""Shared pieces of the benchmark commands: the shipped models, exporting, and BENCHMARKS.md sections."""
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BENCHMARKS = ROOT / "BENCHMARKS.md"

# shipped models: name -> (file, dataset)
MODELS = {
    "paper_mnist": ("examples/models/paper_mnist.keras", "mnist"),
    "tiny_mnist": ("examples/models/tiny_mnist.keras", "mnist"),
    "uno_mnist": ("examples/models/uno_mnist.keras", "mnist"),
    "m15_mnist": ("examples/models/m15_mnist.keras", "mnist"),
    "m15_fashion": ("examples/models/m15_fashion.keras", "fashion_mnist"),
}


def available_models(names=None):
    out = {}
    for name, (path, dataset) in MODELS.items():
        if (names is None or name in names) and (ROOT / path).is_file():
            out[name] = (ROOT / path, dataset)
    return out


def load_export(name, path, out_root):
    """(keras model, lowered model, C export folder) of a shipped model."""
    from keras_ebnn.exporters.c import export_c
    from keras_ebnn.lowering import load_model, lower
    model = load_model(path)
    lowered = lower(model, name)
    out = Path(out_root) / name
    export_c(lowered, out, name)
    return model, lowered, out


def test_set(dataset):
    from keras_ebnn import datasets
    return datasets.load(dataset, split="test")


def sample_images(dataset, n=100):
    """The first n test images of `dataset` when EBNN_DATA_DIR is set, else of the shipped MNIST sample
    (examples/data/mnist_test_sample.npz: a stand-in input for cost measurements, whatever the dataset)."""
    import os
    if os.environ.get("EBNN_DATA_DIR"):
        return test_set(dataset)[0][:n]
    return np.load(ROOT / "examples" / "data" / "mnist_test_sample.npz")["x"][:n]


def model_args(doc, default_models, argv=None):
    """Parse a benchmark command's --models (comma-separated shipped models, default `default_models`)
    and --no-write (do not update BENCHMARKS.md); the help is doc's first line. Prints doc."""
    import argparse
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--models", default=default_models)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    print(doc)
    return args


def write_section(key, text, command):
    """Replace (or append) the section `key` of BENCHMARKS.md."""
    body = f"<!-- bench:{key} -->\n{text.rstrip()}\n\nProduced by: `{command}`\n<!-- /bench:{key} -->"
    doc = BENCHMARKS.read_text() if BENCHMARKS.exists() else "# keras-ebnn benchmarks\n"
    pattern = re.compile(rf"<!-- bench:{key} -->.*?<!-- /bench:{key} -->", re.S)
    doc = pattern.sub(lambda m: body, doc) if pattern.search(doc) else doc.rstrip() + "\n\n" + body + "\n"
    BENCHMARKS.write_text(doc)


def md_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def median_us(fn, repeat):
    import time
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1e6)
