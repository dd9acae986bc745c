"""Helpers many tests share: the repository root, a small MNIST model, C-vs-Keras checks, IDX files."""
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent.parent


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
    from keras_ebnn.train.datasets import FILES
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
