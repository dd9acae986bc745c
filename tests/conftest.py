import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
ROOT = Path(__file__).resolve().parent.parent

from helpers import tiers  # noqa: E402


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


def small_mnist_model(tf, lq, pool_layer=None):
    """A small, fast eBNN-style model on uint8 28x28 input."""
    L = tf.keras.layers
    sign = dict(kernel_quantizer="ste_sign", kernel_constraint="weight_clip", use_bias=False)
    return tf.keras.Sequential([
        L.InputLayer((28, 28, 1)), L.Rescaling(1 / 255.0),
        lq.layers.QuantConv2D(8, 3, strides=2, **sign),
        pool_layer or L.MaxPooling2D(2),
        L.BatchNormalization(momentum=0.9),
        lq.layers.QuantConv2D(16, 3, input_quantizer="ste_sign", **sign),
        L.BatchNormalization(momentum=0.9),
        L.Flatten(),
        lq.layers.QuantDense(10, input_quantizer="ste_sign", **sign),
        L.BatchNormalization(momentum=0.9),
        L.Activation("softmax"),
    ])


def check_against_keras(model, lowered, x, logits, classes, tol=1e-4):
    """Compiled-C results (classes, logits) of `lowered` on inputs x against the Keras model: classes
    identical, logits (softmax probabilities when the model ends in softmax) within
    tol x (1 + max |Keras value|) (float parts sum in another order than TensorFlow). Returns the
    largest difference."""
    from keras_ebnn import import_larq
    tf, _ = import_larq()
    kout = np.asarray(model(tf.constant(np.asarray(x, dtype=np.float32)), training=False))
    got = logits
    if lowered.softmax:
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        got = e / e.sum(axis=1, keepdims=True)
    np.testing.assert_array_equal(classes, np.argmax(kout, axis=1))
    err = float(np.abs(got - kout).max())
    assert err <= tol * (1.0 + float(np.abs(kout).max())), f"C vs Keras: {err:.3g}"
    return err


def write_idx(path, array):
    """Write a uint8 array as a gzip-compressed IDX file (the format of the MNIST downloads)."""
    import gzip
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


def write_sample_idx(folder, n_train=700):
    """The shipped 1,000-image MNIST sample (examples/data) as the four IDX .gz files of a dataset
    folder: the first `n_train` images as the training split, the rest as the test split. Tests that
    need a dataset *folder* use this, so they run on any clone (no ../shared/ needed)."""
    from keras_ebnn.datasets import FILES
    data = np.load(ROOT / "examples" / "data" / "mnist_test_sample.npz")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    splits = {"train": (data["x"][:n_train], data["y"][:n_train]),
              "test": (data["x"][n_train:], data["y"][n_train:])}
    for split, (img_file, lab_file) in FILES.items():
        x, y = splits[split]
        write_idx(folder / img_file, x.reshape(-1, 28, 28))
        write_idx(folder / lab_file, y)
    return folder


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
    from keras_ebnn import datasets
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
