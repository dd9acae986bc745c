"""larq's separable / depthwise quantized layers through the graph lowering (issue 22, item 6), and
refusals that print only the supported-layers list that applies.

The case: the published EmbedIA CIFAR-10 model (Embed-ML/EmbedIA, examples/models/
CIFAR10_QuantSeparableConv2D_50acc.h5; a copy in $EBNN_DATA_DIR/published-models) was refused at its
first QuantSeparableConv2D, and the refusal listed the graph's supported layers followed by the chain's
"The model must be a single chain ... ending in a QuantDense". Here its architecture is re-created
with random weights (Conv2D 16 -> MaxPool -> BN -> tanh -> 3 x [QuantSeparableConv2D (ste_sign input,
depthwise and pointwise quantizers) -> (MaxPool / AvgPool) -> BN -> tanh] -> Flatten -> Dense(10) ->
softmax), plus 1-D, depth-multiplier, 'same' / pad_values=1, magnitude_aware_sign and full-precision
(SeparableConv1D/2D, DepthwiseConv1D) variants. Checked: the compiled C (ASan/UBSan) writes every bits
and int tensor equal to the reference's, its classes equal Keras's and the reference's, its logits equal
the reference's bit for bit (within the libm tolerance where a tanh is not fused), and the reference
matches Keras; the published file itself when it is there.
"""
import os
from pathlib import Path

import numpy as np
import pytest

from keras_ebnn import UnsupportedModelError, export, import_larq
from keras_ebnn.ir import graph_reference
from keras_ebnn.frontdoor import host
from keras_ebnn.exporters.c import export_c
from keras_ebnn.exporters.graph_c import GraphModel, debug_tensors, uses_libm
from keras_ebnn.ir.graph import lower_graph
from keras_ebnn.frontdoor.verify import C_LOGIT_TOL
from helpers.graphgen import calibrate
from test_graph_c import _words, build_program, run_program

SIGN3 = dict(input_quantizer="ste_sign", depthwise_quantizer="ste_sign", pointwise_quantizer="ste_sign")
needs_cc = pytest.mark.skipif(host.find_cc() is None, reason="no host C compiler")


def embedia_cifar10_like():
    """The EmbedIA CIFAR-10 architecture (layer for layer, as the published file's summary shows)."""
    tf, lq = import_larq()
    L = tf.keras.layers
    model = tf.keras.Sequential([
        tf.keras.Input((32, 32, 3)),
        L.Conv2D(16, 3), L.MaxPooling2D(2), L.BatchNormalization(), L.Activation("tanh"),
        lq.layers.QuantSeparableConv2D(64, 3, **SIGN3), L.BatchNormalization(), L.Activation("tanh"),
        lq.layers.QuantSeparableConv2D(96, 3, **SIGN3), L.MaxPooling2D(2), L.BatchNormalization(),
        L.Activation("tanh"),
        lq.layers.QuantSeparableConv2D(512, 3, **SIGN3), L.AveragePooling2D(3), L.BatchNormalization(),
        L.Activation("tanh"), L.Flatten(), L.Dropout(0.2), L.Dense(10), L.Activation("softmax"),
    ])
    return model, (32, 32, 3)


def separable_1d():
    """QuantSeparableConv1D with depth multiplier 2, stride 2, 'same' padding with pad_values=1, then a
    magnitude-aware one, a full-precision DepthwiseConv1D, ending in a binary QuantDense."""
    tf, lq = import_larq()
    L = tf.keras.layers
    model = tf.keras.Sequential([
        tf.keras.Input((24, 5)),
        L.Conv1D(8, 3), L.BatchNormalization(),
        lq.layers.QuantSeparableConv1D(12, 3, strides=2, padding="same", pad_values=1.0, depth_multiplier=2, **SIGN3),
        L.BatchNormalization(),
        lq.layers.QuantSeparableConv1D(10, 3, input_quantizer="ste_sign", depthwise_quantizer="magnitude_aware_sign",
                                       pointwise_quantizer="ste_sign", use_bias=False),
        L.BatchNormalization(), L.DepthwiseConv1D(3, depth_multiplier=2), L.ReLU(), L.Flatten(),
        lq.layers.QuantDense(6, input_quantizer="ste_sign", kernel_quantizer="ste_sign"), L.BatchNormalization(),
    ])
    return model, (24, 5)


def separable_float_2d():
    """Full-precision SeparableConv2D and a QuantSeparableConv2D with float pointwise weights, a
    residual Add, ending in a QuantDense output block."""
    tf, lq = import_larq()
    L = tf.keras.layers
    inp = tf.keras.Input((10, 10, 4))
    x = L.SeparableConv2D(8, 3, padding="same", depth_multiplier=2)(inp)
    x = L.BatchNormalization()(x)
    y = lq.layers.QuantSeparableConv2D(8, 3, padding="same", input_quantizer="ste_sign",
                                       depthwise_quantizer="ste_sign")(x)
    x = L.Add()([x, L.BatchNormalization()(y)])
    x = L.GlobalAveragePooling2D()(x)
    x = lq.layers.QuantDense(5, input_quantizer="ste_sign", kernel_quantizer="ste_sign")(x)
    return tf.keras.Model(inp, x), (10, 10, 4)


CASES = {"embedia_cifar10": embedia_cifar10_like, "separable_1d": separable_1d, "float_2d": separable_float_2d}


def _check_c(model, gm, xs, tmp_path):
    """Compiled C against the reference (bits / int tensors exact; floats and logits exact without
    libm, else within tolerance) and its classes against Keras."""
    tf, _ = import_larq()
    name = gm.name
    export_c(gm, tmp_path / name, name)
    exe = build_program({name: tmp_path / name}, tmp_path)
    classes, logits, dumps = run_program(exe, {name: (gm, xs)}, tmp_path)[name]
    g = gm.graph
    ref = graph_reference.run(g, xs, keep=True)
    exact = not uses_libm(g)
    compared = 0
    for op, tname, _ in debug_tensors(gm):
        t = g.tensors[tname]
        if tname not in ref["tensors"] or (t.dtype == "float32" and not exact):
            continue
        for i in range(len(xs)):
            assert np.array_equal(dumps[op][i], _words(t, ref["tensors"][tname][i])), f"op {op} {g.ops[op].kind}"
        compared += 1
    assert compared >= 3
    np.testing.assert_array_equal(classes, ref["classes"])
    if exact:
        np.testing.assert_array_equal(logits, ref["logits"])
    else:
        assert np.abs(logits - ref["logits"]).max() <= C_LOGIT_TOL * (1 + np.abs(ref["logits"]).max())
    keras = np.asarray(model(tf.constant(xs), training=False))
    np.testing.assert_array_equal(classes, keras.argmax(1))
    return keras


@needs_cc
@pytest.mark.parametrize("case", sorted(CASES))
def test_separable_lowered_exact(case, tmp_path):
    tf, _ = import_larq()
    tf.keras.utils.set_random_seed(7)
    model, shape = CASES[case]()
    rng = np.random.default_rng(11)
    xs = rng.normal(0, 1, (24,) + shape).astype(np.float32)
    calibrate(model, xs, rng)
    gm = GraphModel(lower_graph(model, case))
    from keras_ebnn.passes.graph_fuse import all_ops
    kinds = [op.kind for op in all_ops(gm.graph)]  # the pointwise conv may sit inside a fused conv_pool op
    assert "conv" in kinds and ("bdepthwise" in kinds or "depthwise" in kinds), gm.graph.describe()
    if case != "float_2d":
        assert "bdepthwise" in kinds  # binary depthwise half: exact integer accumulators
    keras = _check_c(model, gm, xs, tmp_path)
    ref = graph_reference.run(gm.graph, xs)
    want = keras if not gm.graph.softmax else np.log(keras)
    got = ref["logits"] if not gm.graph.softmax else ref["logits"] - np.log(np.exp(
        ref["logits"] - ref["logits"].max(1, keepdims=True)).sum(1, keepdims=True)) - ref["logits"].max(1, keepdims=True)
    assert np.abs(got - want).max() <= 1e-3 * (1 + np.abs(want).max())


def _published(name):
    root = os.environ.get("EBNN_DATA_DIR")
    path = Path(root or ".") / "published-models" / name
    if not root or not path.exists():
        pytest.skip(f"EBNN_DATA_DIR/published-models/{name} not available")
    return path


@needs_cc
def test_published_embedia_cifar10_file(tmp_path):
    """The published file itself: exported (it was refused), C classes = Keras classes on inputs in its
    range (EmbedIA feeds x / 255: 0..1)."""
    tf, _ = import_larq()
    from keras_ebnn.frontend.lowering import load_model
    model = load_model(_published("embedia_CIFAR10_QuantSeparableConv2D_50acc.h5"))
    xs = np.random.default_rng(5).uniform(0, 1, (32, 32, 32, 3)).astype(np.float32)
    res = export(model, tmp_path / "out", name="cifar", verify_inputs=xs)
    assert res.lowered.kind == "graph" and res.c_checked and res.c_matches_reference
    gm = res.lowered
    _check_c(model, gm, xs, tmp_path)


def test_graph_refusal_lists_only_the_graph_layers(tmp_path):
    """A layer neither lowering takes: the message names it and lists the graph lowering's layers once,
    without the chain's "must be a single chain ... ending in a QuantDense"."""
    tf, lq = import_larq()
    L = tf.keras.layers
    model = tf.keras.Sequential([tf.keras.Input((8, 8, 2)), lq.layers.QuantConv2D(4, 3, kernel_quantizer="ste_sign"),
                                 L.ZeroPadding2D(1, name="zpad"), L.Flatten(), L.Dense(3)])
    with pytest.raises(UnsupportedModelError) as err:
        export(model, tmp_path / "out", name="zp")
    msg = str(err.value)
    assert "'zpad' (ZeroPadding2D)" in msg and "QuantSeparableConv2D" in msg
    assert "single chain" not in msg and msg.count("Supported layers") == 1
    assert err.value.hint.startswith("Supported layers: (graph lowering")
    assert not (tmp_path / "out").exists()
