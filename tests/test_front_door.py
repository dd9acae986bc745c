"""The export front door on models as people publish them (issue 22, items 2, 4, 7, 8b): flat 1-D
inputs, one-unit binary classifiers, outputs that are not a vector or several, verification data
outside the model's input contract, preprocessing for --verify-data, custom model classes.

Each model is re-created here (small, random weights); the source it stands for is cited above it.
"""
import re

import numpy as np
import pytest

from helpers.common import small_mnist_model, write_sample_idx
from keras_ebnn import convert, export, import_larq
from keras_ebnn.errors import ModelOutputError
from keras_ebnn.frontdoor.host import find_cc
from keras_ebnn.frontdoor.verify import InputDataError

tf, lq = import_larq()
L = tf.keras.layers
KERNEL = dict(kernel_quantizer="ste_sign", kernel_constraint="weight_clip")
SIGN = dict(input_quantizer="ste_sign", **KERNEL)
needs_cc = pytest.mark.skipif(find_cc() is None, reason="no host C compiler")


@pytest.fixture(autouse=True)
def _seeded():
    tf.keras.utils.set_random_seed(0)  # the random weights of every model here: reproducible


# Flessent/BNN_V2 BNN_model.h5 (published-models/flessent_BNN_model.h5): a flat (18,) input, a
# QuantDense(18) with binary weights only, BatchNormalization(momentum=0.999, scale=False), a
# binary QuantDense(16, softmax); its class `BNN` subclasses Sequential. `head` replaces the last layer.
def flessent_bnn(head=None, cls=None):
    layers = [L.InputLayer((18,)), lq.layers.QuantDense(18, **KERNEL),
              L.BatchNormalization(momentum=0.999, scale=False),
              head or lq.layers.QuantDense(16, activation="softmax", **SIGN)]
    return (cls or tf.keras.Sequential)(layers, name="bnn")


def calibrated(model, x):
    """Batch-norm statistics from the model's own activations (balanced bits, varied classes)."""
    for lay in model.layers:
        if isinstance(lay, L.BatchNormalization):
            probe = tf.keras.Model(model.inputs, lay.input)
            v = np.asarray(probe(x)).reshape(-1, lay.input.shape[-1])
            lay.moving_mean.assign(v.mean(0))
            lay.moving_variance.assign(v.var(0) + 1e-3)
    return model


def flat_inputs(n=64, seed=0):
    return np.random.default_rng(seed).normal(0, 1, (n, 18)).astype(np.float32)


# --- item 2: 1-D inputs ---------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["c", "arduino", "zephyr"])
@needs_cc
def test_flat_input_verifies(target, tmp_path):
    """Before: ValueError "input shape (18,) does not match the model's (1, 1, 18)"."""
    x = flat_inputs()
    model = calibrated(flessent_bnn(), x)
    kcls = np.argmax(np.asarray(model(x)), axis=1)
    r = export(model, tmp_path / "o", name="bnn", target=target, verify_inputs=x, verify_labels=kcls)
    assert r.c_checked and r.c_matches_reference and type(r.lowered).__name__ == "LoweredModel"
    assert r.agreement.class_flips == 0 and r.accuracy == 1.0 and r.keras_accuracy == 1.0
    assert np.array_equal(r.classes, kcls) and len(set(kcls)) > 1
    assert "100.00%" in r.report_path.read_text()


@needs_cc
def test_flat_input_graph_path(tmp_path):
    """A flat model the chain refuses (float Dense head): the graph path verifies (N, 18) too."""
    x = flat_inputs()
    model = calibrated(flessent_bnn(L.Dense(5)), x)
    r = export(model, tmp_path / "o", name="bnn", verify_inputs=x)
    assert type(r.lowered).__name__ == "GraphModel" and r.c_matches_reference
    assert r.agreement.class_flips == 0


def test_callback_random_inputs_have_keras_shape():
    """EbnnExport without verification data draws random inputs: Keras's (18,), not the chain's (1, 1, 18)."""
    from keras_ebnn.frontdoor.callback import random_inputs
    assert random_inputs(flessent_bnn(), 4).shape == (4, 18)


@needs_cc
@pytest.mark.parametrize("with_data", [True, False])
def test_callback_flat_model(with_data, tmp_path):
    """EbnnExport on the flat model, with (x, y) verification data (y as Keras's (N, 1)) or without."""
    from keras_ebnn import EbnnExport
    x = flat_inputs(128)
    y = (x[:, :16].argmax(1))[:, None]
    model = flessent_bnn()
    model.compile("adam", "sparse_categorical_crossentropy")
    cb = EbnnExport(tmp_path / "out", name="bnn", verify_data=(x, y) if with_data else None, verbose=0)
    model.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[cb])
    r = cb.exports[0]
    assert r.c_checked and r.c_matches_reference and r.agreement.class_flips == 0
    if with_data:
        kcls = np.argmax(model.predict(x, verbose=0), 1)
        assert r.keras_accuracy == pytest.approx(np.mean(kcls == y[:, 0]))


@needs_cc
def test_cli_flat_mnist_model_with_verify_data(tmp_path, capsys):
    """A flat (784,) MNIST MLP (like marin_mnist_nn_quantized_zeroone_FC) with --verify-data: the
    28x28x1 IDX images are reshaped to the model's input, said so, and verified."""
    data = tmp_path / "data"
    data.mkdir()
    write_sample_idx(data)
    model = tf.keras.Sequential([L.InputLayer((784,)), L.Rescaling(1 / 255.0), lq.layers.QuantDense(32, **KERNEL),
                                 L.BatchNormalization(), lq.layers.QuantDense(10, **SIGN)])
    calibrated(model, np.random.default_rng(0).integers(0, 256, (200, 784)).astype(np.float32))
    model.save(tmp_path / "fc.keras")
    code = convert.main([str(tmp_path / "fc.keras"), "-o", str(tmp_path / "o"), "--verify-data", str(data), "-q"])
    assert code == 0, capsys.readouterr().err
    code = convert.main([str(tmp_path / "fc.keras"), "-o", str(tmp_path / "o"), "--verify-data", str(data)])
    out = capsys.readouterr().out
    assert code == 0 and "reshaped to the model's input 784" in out and "classes differ on 0 images" in out


@needs_cc
def test_cli_flat_model_with_npz_data(tmp_path, capsys):
    """The CLI verifies a 1-D model on a .npz of inputs (and labels): the Flessent model's own path."""
    x = flat_inputs()
    model = calibrated(flessent_bnn(), x)
    model.save(tmp_path / "bnn.keras")
    kcls = np.argmax(np.asarray(model(x)), axis=1)
    np.savez(tmp_path / "v.npz", x=x, y=kcls)
    np.savez(tmp_path / "nolabels.npz", x=x)
    np.savez(tmp_path / "bad.npz", inputs=x)
    argv = [str(tmp_path / "bnn.keras"), "-o", str(tmp_path / "o"), "--verify-data"]
    assert convert.main(argv + [str(tmp_path / "v.npz")]) == 0
    out = capsys.readouterr().out
    assert "accuracy on 64 inputs from v.npz: Keras 100.00%, exported 100.00% (reference executor, C)" in out
    assert convert.main(argv + [str(tmp_path / "nolabels.npz")]) == 0
    assert "64 inputs from nolabels.npz, no labels (reference executor, C); classes differ on 0 inputs" in \
        capsys.readouterr().out
    assert convert.main(argv + [str(tmp_path / "bad.npz")]) == 2
    assert "no array named x in it (it has inputs)" in capsys.readouterr().err


# --- item 4: output rules --------------------------------------------------------------------------

def _binary(head, x):
    return calibrated(flessent_bnn(head), x)


BINARY_HEADS = {  # the usual binary classifier heads; which lowering takes them
    "chain logit": (lambda: lq.layers.QuantDense(1, **SIGN), "LoweredModel", 0.0),
    "graph logit": (lambda: L.Dense(1), "GraphModel", 0.0),
    "graph sigmoid": (lambda: L.Dense(1, activation="sigmoid"), "GraphModel", 0.5),
    "binary sigmoid": (lambda: lq.layers.QuantDense(1, activation="sigmoid", **SIGN), "GraphModel", 0.5),
}


@pytest.mark.parametrize("case", sorted(BINARY_HEADS))
@needs_cc
def test_single_unit_is_a_binary_classifier(case, tmp_path):
    """Before: NAME_predict always returned 0 (argmax of one value), the report's accuracy was the
    share of label 0. Now class = p >= 0.5 (sigmoid) or z >= 0 (logit), in C, reference and Keras."""
    from keras_ebnn.frontdoor.host import predict_c
    head, kind, threshold = BINARY_HEADS[case]
    x = flat_inputs(200)
    model = _binary(head(), x)
    kout = np.asarray(model(x))[:, 0]
    kcls = (kout >= threshold).astype(int)
    assert 40 < kcls.sum() < 160  # both classes occur
    r = export(model, tmp_path / "o", name="bin", verify_inputs=x,
               verify_labels=kcls.astype(np.float32)[:, None])  # as Keras takes binary labels: (N, 1) floats
    assert type(r.lowered).__name__ == kind
    assert r.c_matches_reference and np.array_equal(r.classes, kcls)
    assert r.accuracy == 1.0 and r.keras_accuracy == 1.0 and r.agreement.class_flips == 0
    cls, scores = predict_c(r.lowered, tmp_path / "o", "bin", x)
    assert np.array_equal(cls, kcls) and scores.shape == (200, 1)
    assert ("p >= 0.5" if threshold == 0.5 else "z >= 0") in (tmp_path / "o" / "bin.h").read_text()
    assert "Classes: 2 (one score, a " in r.report_path.read_text() and "100.00%" in r.report_path.read_text()


@needs_cc
def test_single_unit_predict_without_scores(tmp_path):
    """NAME_predict(input, NULL) still classifies one unit (the score is not only in `scores`)."""
    from keras_ebnn.frontdoor.host import STRICT, SANITIZE, c_sources
    import subprocess
    x = flat_inputs(50)
    for i, head in enumerate((lq.layers.QuantDense(1, **SIGN), L.Dense(1, activation="sigmoid"))):
        model = _binary(head, x)
        out = tmp_path / f"o{i}"
        r = export(model, out, name="bin", verify_inputs=x)
        main = tmp_path / f"main_null{i}.c"
        rows = ",\n".join("{" + ", ".join(f"{v:.9g}f" for v in row) + "}" for row in x)
        main.write_text('#include <stdio.h>\n#include "bin.h"\nstatic const float xs[50][18] = {' + rows + '};\n'
                        'int main(void) { int i; for (i = 0; i < 50; i++) printf("%d\\n", bin_predict(xs[i], NULL));'
                        ' return 0; }\n')
        exe = tmp_path / f"null{i}"
        subprocess.run([find_cc(), *STRICT, *SANITIZE, "-I", str(out), *c_sources(out), str(main), "-o", str(exe), "-lm"],
                       check=True)
        got = [int(v) for v in subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()]
        assert got == r.classes.tolist()


# A 1-D event detector with a Dense head on the (6, C) sequence (no Flatten): output (6, 4).
# Re-created from the case (item 4) -- the shape a sequence model gets when the head is
# applied per step. Before: accepted, the C argmaxed the first 4 values, verification crashed with a
# NumPy broadcast error.
def sequence_head():
    return tf.keras.Sequential([L.InputLayer((6, 3)), lq.layers.QuantConv1D(8, 1, **KERNEL),
                                L.BatchNormalization(), L.Dense(4, name="per_step")])


@pytest.mark.parametrize("build, words", [
    (sequence_head, re.escape("output 'per_step' (6, 4) is not a vector of scores")),
    (lambda: flessent_bnn(lq.layers.QuantDense(1, activation="softmax", **SIGN)), "softmax over one unit"),
    (lambda: flessent_bnn(L.Dense(1, activation="relu")), "ends in a relu activation"),
])
def test_outputs_that_are_not_scores_are_refused_before_any_work(build, words, tmp_path, monkeypatch):
    from keras_ebnn.frontdoor import exporting
    monkeypatch.setattr(exporting, "_exporter", lambda target: pytest.fail("files written"))
    with pytest.raises(ModelOutputError, match=words):
        export(build(), tmp_path / "o", verify_inputs=np.zeros((4,) + build().input_shape[1:], np.float32))
    assert not any(tmp_path.iterdir())


# A 1-D event detector with a class head and a regression head (the item 8 example):
# Keras functional model with two outputs. Before: "exactly one of each is supported".
def two_heads():
    inp = L.Input((32, 3))
    h = L.Flatten()(L.BatchNormalization()(lq.layers.QuantConv1D(8, 3, **KERNEL)(inp)))
    return tf.keras.Model(inp, [lq.layers.QuantDense(4, name="event_class", **SIGN)(h), L.Dense(1, name="onset")(h)])


def test_several_outputs_refused_naming_them(tmp_path, capsys):
    with pytest.raises(ModelOutputError) as err:
        export(two_heads(), tmp_path / "o")
    msg = str(err.value)
    assert "2 outputs ('event_class' (4,), 'onset' (1,))" in msg and "model.get_layer('NAME').output" in msg
    two_heads().save(tmp_path / "two.keras")
    assert convert.main([str(tmp_path / "two.keras"), "-o", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "'event_class' (4,), 'onset' (1,)" in err and "Supported layers" not in err
    assert not (tmp_path / "o").exists()


# --- item 7: verification data and the model's input contract ------------------------------------

@needs_cc
def test_rescaling_model_refuses_signed_float_data(tmp_path):
    """A Rescaling-first model (its C reads uint8) verified with signed floats. Before: "compiled C
    differs from the reference executor: N classes differ"; now the data is said to be out of range."""
    model = small_mnist_model(tf, lq)
    x = np.random.default_rng(0).normal(0, 1, (16, 28, 28, 1)).astype(np.float32)
    with pytest.raises(InputDataError, match=r"out of range .* raw uint8 values \(integers 0\.\.255\).*"
                                             r"non-integer values from -"):
        export(model, tmp_path / "o", verify_inputs=x)
    assert not any(tmp_path.iterdir())
    with pytest.raises(InputDataError, match="shape"):
        export(model, tmp_path / "o", verify_inputs=np.zeros((3, 28, 28), np.uint8))
    with pytest.raises(InputDataError, match="labels"):
        export(model, tmp_path / "o", verify_inputs=np.zeros((3, 28, 28, 1), np.uint8), verify_labels=[1, 2])
    r = export(model, tmp_path / "o", verify_inputs=np.rint(np.abs(x) * 80).clip(0, 255))  # whole floats: fine
    assert r.c_matches_reference


@needs_cc
def test_cli_input_scale_offset(tmp_path, capsys):
    """--verify-data for a model that normalises outside the model (x/127.5 - 1): with --input-scale /
    --input-offset the accuracy is the model's own; the CLI feeds exactly pixel * s + o."""
    data = tmp_path / "data"
    data.mkdir()
    write_sample_idx(data)
    from keras_ebnn.train.datasets import load
    xs, ys = load("mnist", data, split="test")
    # the Larq intro MNIST CNN's shape (larq docs/larq/tutorials/mnist.ipynb), inputs normalised outside
    model = tf.keras.Sequential([
        L.InputLayer((28, 28, 1)), lq.layers.QuantConv2D(8, 3, strides=2, use_bias=False, **KERNEL),
        L.MaxPooling2D(2), L.BatchNormalization(), lq.layers.QuantConv2D(16, 3, use_bias=False, **SIGN),
        L.BatchNormalization(), L.Flatten(), lq.layers.QuantDense(10, use_bias=False, **SIGN), L.BatchNormalization()])
    fed = xs.astype(np.float32) * np.float32(1 / 127.5) + np.float32(-1)
    calibrated(model, fed[:200])
    model.save(tmp_path / "m.keras")
    argv = [str(tmp_path / "m.keras"), "-o", str(tmp_path / "o"), "--verify-data", str(data)]
    assert convert.main(argv + ["--input-scale", str(1 / 127.5), "--input-offset", "-1"]) == 0
    out = capsys.readouterr().out
    assert "as pixel * 0.00784314 + -1" in out
    kcls = np.argmax(np.asarray(model.predict(fed, verbose=0)), axis=1)
    acc = float(np.mean(kcls == ys)) * 100
    assert f"Keras {acc:.2f}%" in out  # the model's own accuracy: Keras ran on exactly pixel * s + o
    small_mnist_model(tf, lq).save(tmp_path / "rescaling.keras")  # reads raw pixels: scaling them is refused
    assert convert.main([str(tmp_path / "rescaling.keras")] + argv[1:] + ["--input-scale", "0.5", "-q"]) == 1
    err = capsys.readouterr().err
    assert "out of range for this model" in err and "--input-scale / --input-offset changed the data" in err
    with pytest.raises(SystemExit) as exit_:  # argparse: needs --verify-data
        convert.main(argv[:3] + ["--input-scale", "2"])
    assert exit_.value.code == 2


CUSTOM_MODULE = '''
import tensorflow as tf
try:
    import tf_keras as keras
except ImportError:
    keras = tf.keras


class BNN(keras.Sequential):
    """The Flessent/BNN_V2 model class: a Sequential subclass (notebook BNN_V2)."""
'''


@needs_cc
def test_cli_custom_objects_for_a_sequential_subclass(tmp_path, capsys):
    """A model whose class is a custom subclass of Sequential (Flessent/BNN_V2). Before: even with
    --trust-model, "Unknown layer: 'BNN'". --custom-objects module.py names it."""
    mod = tmp_path / "bnn_classes.py"
    mod.write_text(CUSTOM_MODULE)
    import importlib.util
    spec = importlib.util.spec_from_file_location("bnn_classes_test", mod)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    model = calibrated(flessent_bnn(cls=m.BNN), flat_inputs())
    model.save(tmp_path / "bnn.h5")
    path = str(tmp_path / "bnn.h5")
    assert convert.main([path, "-o", str(tmp_path / "o"), "--trust-model"]) == 1
    assert "Unknown layer: 'BNN'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:  # argparse: needs --trust-model
        convert.main([path, "-o", str(tmp_path / "o"), "--custom-objects", str(mod)])
    assert exit_.value.code == 2
    capsys.readouterr()
    # a fresh process, as users run it: the module imports tensorflow before keras_ebnn has set it up
    import subprocess
    import sys
    from helpers.common import ROOT
    proc = subprocess.run([sys.executable, "-m", "keras_ebnn.convert", path, "-o", str(tmp_path / "o"), "-q",
                           "--trust-model", "--custom-objects", str(mod)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "o" / "bnn.h").is_file()
    (tmp_path / "empty.py").write_text("X = 1\n")
    assert convert.main([path, "-o", str(tmp_path / "o2"), "--trust-model", "--custom-objects",
                         str(tmp_path / "empty.py")]) == 1
    assert "defines no class or function" in capsys.readouterr().err


def test_published_flessent_file(tmp_path, capsys):
    """The published file itself (EBNN_DATA_DIR/published-models/flessent_BNN_model.h5, from
    Flessent/BNN_V2; skipped without it): class BNN(Sequential) named by --custom-objects, verified on
    500 random flat inputs from a .npz: C = reference = Keras."""
    import os
    from pathlib import Path
    data = os.environ.get("EBNN_DATA_DIR")
    path = Path(data or "/nonexistent") / "published-models" / "flessent_BNN_model.h5"
    if not path.is_file():
        pytest.skip("published-models/flessent_BNN_model.h5 not in EBNN_DATA_DIR")
    mod = tmp_path / "bnn_classes.py"
    mod.write_text("import tf_keras\n\n\nclass BNN(tf_keras.Sequential):\n    pass\n")
    np.savez(tmp_path / "x.npz", x=flat_inputs(500, seed=3))
    code = convert.main([str(path), "-o", str(tmp_path / "o"), "--trust-model", "--custom-objects", str(mod),
                         "--verify-data", str(tmp_path / "x.npz")])
    out = capsys.readouterr().out
    assert code == 0 and "500 inputs from x.npz, no labels (reference executor, C); classes differ on 0" in out
    assert "compiled C vs reference: identical classes and logits" in out
