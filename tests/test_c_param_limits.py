"""Kernel parameters against their C types (issue 22, item 3), each case re-created from the issue.

* Two binary 32x32x64 maps, flattened (65,536 values each) and concatenated, then a QuantDense: the C
  declared `const uint16_t channels[2] = {65536u, 65536u}` (wrapping to 0) and gave classes
  [1,1,1,1,1,1,1,1] against Keras's [2,0,1,1,1,2,8,2]. The concat kernels now take uint32_t channel
  counts: the compiled C's classes equal Keras's and its logits the reference's.
* Every other narrow parameter (ebnn_window_t / ebnn_conv_params_t fields, out_c and depth
  multipliers: uint16_t; the uint8 input encoding: int16_t; int tensor ranges: int32_t; the output
  block's input count: 2^24) is checked before anything is written (`exporters/graph_c.py
  c_limit_problems`); a model beyond them is refused with an UnsupportedModelError naming the op and
  its Keras layer, and the output folder is not created.
"""
import numpy as np
import pytest

from keras_ebnn import UnsupportedModelError, export, import_larq
from keras_ebnn.ir import graph_reference
from keras_ebnn.frontdoor import host
from keras_ebnn.exporters.c import export_c
from keras_ebnn.exporters.graph_c import GraphModel, c_limit_problems
from keras_ebnn.ir.graph import lower_graph
from keras_ebnn.frontend.lowering import lower
from helpers.graphgen import calibrate


def concat_of_flattened_maps():
    """Issue 22 item 3: conv -> two binary conv branches (32x32x64 each) -> Flatten -> Concatenate ->
    QuantDense(10)."""
    tf, lq = import_larq()
    L = tf.keras.layers
    q = dict(input_quantizer="ste_sign", kernel_quantizer="ste_sign", kernel_constraint="weight_clip", use_bias=False)
    inp = tf.keras.Input((32, 32, 3))
    x = lq.layers.QuantConv2D(16, 3, padding="same", kernel_quantizer="ste_sign", use_bias=False)(inp)
    x = L.BatchNormalization()(x)
    a = L.Flatten()(L.BatchNormalization()(lq.layers.QuantConv2D(64, 3, padding="same", **q)(x)))
    b = L.Flatten()(L.BatchNormalization()(lq.layers.QuantConv2D(64, 3, padding="same", **q)(x)))
    y = L.Concatenate()([a, b])
    y = lq.layers.QuantDense(10, **q)(y)
    y = L.BatchNormalization()(y)
    model = tf.keras.Model(inp, y)
    rng = np.random.default_rng(22)
    xs = rng.normal(0, 1, (8, 32, 32, 3)).astype(np.float32)
    calibrate(model, xs, rng)
    return model, xs


@pytest.mark.skipif(host.find_cc() is None, reason="no host C compiler")
def test_concat_of_65536_channels_matches_keras(tmp_path):
    tf, _ = import_larq()
    model, xs = concat_of_flattened_maps()
    gm = GraphModel(lower_graph(model, "cat"))
    concat = [op for op in gm.graph.ops if op.kind == "concat"]
    assert concat and [gm.graph.tensors[t].shape[-1] for t in concat[0].inputs] == [65536, 65536]
    assert c_limit_problems(gm) == []
    export_c(gm, tmp_path / "out", "cat")
    assert "const uint32_t channels[2] = {65536u, 65536u};" in (tmp_path / "out" / "cat.c").read_text()
    classes, logits = host.predict_c(gm, tmp_path / "out", "cat", xs, sanitize=True, opt="-O1")
    ref = graph_reference.run(gm.graph, xs)
    np.testing.assert_array_equal(logits, ref["logits"])
    keras = np.argmax(np.asarray(model(tf.constant(xs), training=False)), axis=1)
    np.testing.assert_array_equal(classes, keras)
    assert len(set(keras.tolist())) > 1  # the inputs tell classes apart (a wrapped concat gave one class)


def _refused(model, tmp_path, layer, what):
    with pytest.raises(UnsupportedModelError) as err:
        export(model, tmp_path / "out", name="big")
    msg = str(err.value)
    assert f"'{layer}'" in msg and what in msg, msg
    assert "does not fit the kernel's" in msg
    assert not (tmp_path / "out").exists()
    return msg


def test_graph_out_channels_beyond_uint16_refused(tmp_path):
    """A binary conv with 65,536 filters (out_c is uint16_t in ebnn_bconv_acc)."""
    tf, lq = import_larq()
    L = tf.keras.layers
    inp = tf.keras.Input((2, 2, 1))
    x = lq.layers.QuantConv2D(65536, 1, input_quantizer="ste_sign", kernel_quantizer="ste_sign", use_bias=False,
                              name="wide_conv")(inp)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dense(2)(x)
    _refused(tf.keras.Model(inp, x), tmp_path, "wide_conv", "out_c = 65,536")


def test_graph_window_channels_beyond_uint16_refused(tmp_path):
    """A 1-D float conv over 70,000 channels (ebnn_window_t.in_c is uint16_t)."""
    tf, _ = import_larq()
    L = tf.keras.layers
    inp = tf.keras.Input((2, 70000))
    x = L.Conv1D(2, 1, name="many_channels")(inp)
    x = L.Flatten()(x)
    _refused(tf.keras.Model(inp, x), tmp_path, "many_channels", "ebnn_window_t.in_c = 70,000")


def test_chain_conv_params_beyond_uint16_refused(tmp_path):
    """A chain whose first conv reads 70,000 channels (ebnn_conv_params_t.in_c is uint16_t): refused by
    export() naming the layer, before any file (it was a ValueError without the layer at C generation)."""
    tf, lq = import_larq()
    L = tf.keras.layers
    model = tf.keras.Sequential([
        tf.keras.Input((1, 1, 70000)),
        lq.layers.QuantConv2D(4, 1, kernel_quantizer="ste_sign", use_bias=False, name="first_conv"),
        L.BatchNormalization(),
        L.Flatten(),
        lq.layers.QuantDense(3, input_quantizer="ste_sign", kernel_quantizer="ste_sign", use_bias=False),
    ])
    assert lower(model, "big").blocks[0].kind == "input_conv"  # a chain
    _refused(model, tmp_path, "first_conv", "ebnn_conv_params_t.in_c = 70,000")
