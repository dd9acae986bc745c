import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from helpers import tiers  # noqa: E402
from helpers.common import ROOT, small_mnist_model, write_sample_idx  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--full", action="store_true", default=False,
                     help="keras-ebnn: run the full tier (tests and sweep values marked slow; also EBNN_TESTS=full)")


def pytest_configure(config):
    if config.getoption("--full", default=False):
        tiers.FULL = True
        os.environ["EBNN_TESTS"] = "full"  # subprocesses (e.g. pytest run by a test) see the tier too


def pytest_collection_modifyitems(config, items):
    """The default tier deselects what is marked slow (unless -m names the slow marker itself)."""
    if tiers.FULL or "slow" in (getattr(config.option, "markexpr", "") or ""):
        return
    keep, drop = [], []
    for item in items:
        (drop if item.get_closest_marker("slow") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session")
def sample_data_dir(tmp_path_factory):
    """A data folder laid out like EBNN_DATA_DIR (mnist/ and fashion-mnist/ sub-folders) holding the
    shipped MNIST sample as IDX files (the same images in both: the loaders' layout logic is what is
    tested). 700 training and 300 test images."""
    root = tmp_path_factory.mktemp("data")
    write_sample_idx(root / "mnist")
    write_sample_idx(root / "fashion-mnist")
    return root


@pytest.fixture(scope="session")
def mnist_small():
    """(x_train, y_train, x_test, y_test): a few thousand real MNIST images, or the shipped sample."""
    from keras_ebnn.train import datasets
    if datasets.find_dir("mnist") is not None:
        (xtr, ytr), (xte, yte) = datasets.load("mnist")
        return xtr[:3000], ytr[:3000], xte[:500], yte[:500]
    data = np.load(ROOT / "examples" / "data" / "mnist_test_sample.npz")
    return data["x"][:700], data["y"][:700], data["x"][700:], data["y"][700:]


@pytest.fixture(scope="session")
def trained_model_file(tmp_path_factory, mnist_small):
    """A small model trained for one epoch and saved as .keras."""
    from keras_ebnn import import_larq
    tf, lq = import_larq()
    tf.keras.utils.set_random_seed(0)
    xtr, ytr, _, _ = mnist_small
    model = small_mnist_model(tf, lq)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(xtr, ytr, epochs=1, batch_size=64, verbose=0)
    path = tmp_path_factory.mktemp("model") / "small.keras"
    model.save(path)
    return path
