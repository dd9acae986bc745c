"""Plain arithmetic written as Python operators / tf.* calls in a functional model (issue 22, item 8a).

Keras records `x = x + y` as a TFOpLambda layer of `tf.__operators__.add` (Larq Zoo's QuickNet,
larq/zoo larq_zoo/sota/quicknet.py, writes its residual shortcuts this way, as the issue reports); such
models were refused, in Python and from a file (the safe loader refused every TFOpLambda). Re-created
here: a QuickNet-style residual network whose shortcuts are `x + residual`, with `x - y`, `x * c`,
`c * x`, `x / c`, `c - x`, `-x`, `tf.reshape`, `tf.nn.relu` in between. Checked: lowered to the ops of
the matching layers; the compiled C (ASan/UBSan) writes every tensor equal to the reference's and
logits bit-identical to it; classes equal Keras's, logits within float32 rounding; the same model
saved as .keras and .h5 loads through the safe loader (no --trust-model) and exports; a TF function
outside the allow-list (graph.TF_OPS = safe_load.TF_OP_FUNCTIONS) stays refused, from a file and in
Python, naming the layer.
"""
import numpy as np
import pytest

from keras_ebnn import UnsupportedModelError, export, import_larq
from keras_ebnn.ir import graph_reference
from keras_ebnn.frontdoor import host
from keras_ebnn.errors import UnsafeModelError
from keras_ebnn.exporters.c import export_c
from keras_ebnn.exporters.graph_c import GraphModel
from keras_ebnn.ir.graph import TF_OPS, lower_graph
from keras_ebnn.frontend.lowering import load_model
from keras_ebnn.frontend.safe_load import TF_OP_FUNCTIONS
from helpers.common import check_against_keras
from helpers.graphgen import calibrate
from test_graph_c import build_program, check_against_reference, run_program

needs_cc = pytest.mark.skipif(host.find_cc() is None, reason="no host C compiler")


def quicknet_like():
    tf, lq = import_larq()
    L = tf.keras.layers
    q = dict(input_quantizer="ste_sign", kernel_quantizer="ste_sign", kernel_constraint="weight_clip", use_bias=False)
    inp = tf.keras.Input((12, 12, 3))
    x = L.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(inp)
    x = L.BatchNormalization()(x)
    x = tf.nn.relu(x)
    for _ in range(2):  # QuickNet residual block: x + BN(relu(QuantConv(x)))
        residual = x
        y = lq.layers.QuantConv2D(8, 3, padding="same", **q)(x)
        y = L.BatchNormalization()(L.Activation("relu")(y))
        x = x + y  # TFOpLambda tf.__operators__.add
        x = residual - 0.25 * x  # math.multiply (constant first), math.subtract of two tensors
    x = x * 2.0 - 1.0  # math.multiply, math.subtract by a constant
    x = x / 3.0  # math.truediv
    x = 0.5 - x  # constant minus a tensor
    x = -x  # math.negative
    x = tf.math.add(x, x)
    x = tf.reshape(x, (-1, 6 * 6 * 8))
    x = lq.layers.QuantDense(16, **q)(x)
    x = L.BatchNormalization()(x)
    x = L.Dense(5)(x)
    model = tf.keras.Model(inp, x)
    rng = np.random.default_rng(8)
    xs = rng.normal(0, 1, (24, 12, 12, 3)).astype(np.float32)
    calibrate(model, xs, rng)
    return model, xs


def test_allow_lists_agree():
    assert TF_OP_FUNCTIONS == frozenset(TF_OPS)


@needs_cc
def test_operators_lowered_exact(tmp_path):
    model, xs = quicknet_like()
    assert sum(type(lay).__name__ == "TFOpLambda" for lay in model.layers) >= 10
    gm = GraphModel(lower_graph(model, "qn"))
    kinds = [op.kind for op in gm.graph.ops]
    assert {"add", "affine", "div", "reshape"} <= set(kinds), gm.graph.describe()
    export_c(gm, tmp_path / "qn", "qn")
    exe = build_program({"qn": tmp_path / "qn"}, tmp_path)
    classes, logits, dumps = run_program(exe, {"qn": (gm, xs)}, tmp_path)["qn"]
    assert check_against_reference(gm, xs, classes, logits, dumps) > 1000
    check_against_keras(model, gm, xs, logits, classes, 1e-4)


@needs_cc
@pytest.mark.parametrize("ext", [".keras", ".h5"])
def test_operators_from_a_file(ext, tmp_path):
    """Saved and loaded back through the safe loader (no trust_model), then exported and verified."""
    tf, _ = import_larq()
    model, xs = quicknet_like()
    path = tmp_path / f"qn{ext}"
    model.save(path)
    loaded = load_model(path)  # safe loader: TFOpLambdas of allow-listed functions pass
    res = export(loaded, tmp_path / "out", name="qn", verify_inputs=xs)
    assert res.c_checked and res.c_matches_reference
    keras = np.asarray(model(tf.constant(xs), training=False)).argmax(1)
    gm = res.lowered
    classes = graph_reference.run(gm.graph, xs)["classes"]
    np.testing.assert_array_equal(classes, keras)


def _square_model():
    tf, _ = import_larq()
    L = tf.keras.layers
    inp = tf.keras.Input((4,))
    x = L.Dense(3)(inp)
    x = tf.math.square(x)  # a TF function outside the allow-list
    return tf.keras.Model(inp, L.Dense(2)(x))


@pytest.mark.parametrize("ext", [".keras", ".h5"])
def test_other_tf_functions_stay_refused_from_a_file(ext, tmp_path):
    path = tmp_path / f"sq{ext}"
    _square_model().save(path)
    with pytest.raises(UnsafeModelError, match=r"tf\.math\.square.*TFOpLambda"):
        load_model(path)


def test_other_tf_functions_and_products_refused_in_python():
    tf, _ = import_larq()
    L = tf.keras.layers
    with pytest.raises(UnsupportedModelError, match=r"'tf\.math\.square\w*' \(TFOpLambda\): tf\.math\.square is not lowered"):
        lower_graph(_square_model())
    inp = tf.keras.Input((4,))
    a, b = L.Dense(3)(inp), L.Dense(3)(inp)
    with pytest.raises(UnsupportedModelError, match="of two tensors is not lowered"):
        lower_graph(tf.keras.Model(inp, L.Dense(2)(a * b)))
    with pytest.raises(UnsupportedModelError, match="only scalar constants"):
        lower_graph(tf.keras.Model(inp, L.Dense(2)(a + np.arange(3, dtype=np.float32))))
