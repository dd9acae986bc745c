"""int8 weights for full-precision layers (keras_ebnn.passes.graph_int8, lower_graph(float_weights="int8")).

The rewrite must compute exactly "the graph op on float32(q), then * s": checked against Keras run
with the dequantized weights float32(q) * s put into the layers (the only difference left is the
float32 rounding order, the same tolerance as tests/test_graph_dag.py), on random branching graphs
(tests/helpers/graphgen.py) that have full-precision layers.
"""
import numpy as np
import pytest

from keras_ebnn.ir import graph_reference
from keras_ebnn import import_larq
from keras_ebnn.ir.graph import lower_graph
from keras_ebnn.passes.graph_int8 import QUANTIZED_KINDS, quantize, weight_bytes
from helpers.graphgen import random_graph

LOGIT_TOL = 1e-4
FLOAT_LAYERS = ("Conv1D", "Conv2D", "DepthwiseConv2D", "Dense")


@pytest.mark.parametrize("kind,shape", [("conv", (3, 3, 4, 5)), ("dense", (37, 10)), ("depthwise", (3, 1, 4, 2))])
def test_quantize_per_channel(kind, shape):
    rng = np.random.default_rng(0)
    w = rng.normal(0, 1, shape).astype(np.float32)
    w[..., 0] = 0.0  # an all-zero channel (scale 1, q 0)
    q, s = quantize(w, kind)
    assert q.dtype == np.int8 and q.shape == w.shape and np.abs(q.astype(int)).max() == 127
    flat_w = w.reshape(-1, w.shape[-1] if kind != "depthwise" else shape[2] * shape[3])
    flat_q = q.reshape(flat_w.shape).astype(np.float64)
    assert s.shape == (flat_w.shape[1],) and s.dtype == np.float32
    assert np.all(np.abs(flat_q * s - flat_w) <= s / 2 + 1e-7)  # rounding error at most half a step
    assert np.all(flat_q[:, 0] == 0) and s[0] == 1.0


def _dequantized_keras(model, graph):
    """A clone of `model` whose float conv/dense weights are float32(q) * s, from the int8 graph."""
    tf, _ = import_larq()
    clone = tf.keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    layers = {lay.name: lay for lay in clone.layers}
    n = 0
    for op in graph.ops:
        if "weights_int8" not in op.params:
            continue
        lay = layers[op.params["keras_layer"].name]
        q, s = op.params["weights_int8"].astype(np.float32), op.params["weight_scale_int8"]
        if op.kind == "depthwise":
            kh, kw, c, m = q.shape
            w = (q.reshape(kh, kw, c * m) * s).reshape(q.shape)
            var = lay.depthwise_kernel
        else:
            w = q * s
            var = lay.kernel
        var.assign(w.astype(np.float32).reshape(var.shape))
        n += 1
    return clone, n


def test_int8_graphs_match_keras_with_dequantized_weights():
    tf, _ = import_larq()
    checked, seed = 0, 0
    while checked < 6 and seed < 60:
        model, x, desc = random_graph(seed)
        seed += 1
        if not any(type(lay).__name__ in FLOAT_LAYERS for lay in model.layers):
            continue
        g32 = lower_graph(model)
        g8 = lower_graph(model, float_weights="int8")
        clone, n = _dequantized_keras(model, lower_graph(model, fuse_blocks=False, float_weights="int8"))
        assert n >= 1, desc
        want = np.asarray(clone(tf.constant(np.asarray(x, np.float32)), training=False))
        got = graph_reference.run(g8, x)["logits"]
        if g8.softmax:
            got = np.exp(got - got.max(1, keepdims=True))
            got = got / got.sum(1, keepdims=True)
        scale = 1 + np.abs(want).max()
        assert np.abs(got - want).max() <= LOGIT_TOL * scale, desc
        assert np.array_equal(got.argmax(1), want.argmax(1)), desc
        b32, b8 = weight_bytes(g32), weight_bytes(g8)
        assert b8["float32"] == 0 and 0 < b8["int8"] < b32["float32"], (desc, b32, b8)
        checked += 1
    assert checked == 6, f"only {checked} generated graphs had full-precision layers"


def test_binary_weights_stay_binary_and_bad_option():
    model, x, desc = random_graph(3)
    g = lower_graph(model, fuse_blocks=False, float_weights="int8")
    for op in g.ops:
        if op.kind in QUANTIZED_KINDS and op.params.get("binary_weights"):
            assert "weights_int8" not in op.params
    with pytest.raises(ValueError, match="float_weights"):
        lower_graph(model, float_weights="int4")


def test_export_int8_weights_c_equals_reference(tmp_path):
    """export(float_weights="int8") end to end: the compiled C equals the int8 graph's reference bit
    for bit (export raises otherwise), its classes equal Keras's with the dequantized weights, the
    report says what changed, and the float weights' flash drops; the CLI takes --float-weights."""
    from keras_ebnn.frontdoor.exporting import export
    from keras_ebnn.frontdoor.host import find_cc
    if find_cc() is None:
        pytest.skip("no host C compiler")
    tf, _ = import_larq()
    for seed in range(60):
        model, x, desc = random_graph(seed)
        if any("weights_int8" in op.params for op in lower_graph(model, float_weights="int8").ops):
            break
    r32 = export(model, tmp_path / "f32", name="m", verify_inputs=x)
    r8 = export(model, tmp_path / "i8", name="m", verify_inputs=x, float_weights="int8")
    assert r8.c_checked and r8.c_matches_reference, desc
    clone, _ = _dequantized_keras(model, lower_graph(model, fuse_blocks=False, float_weights="int8"))
    want = np.asarray(clone(tf.constant(np.asarray(x, np.float32)), training=False)).argmax(1)
    assert np.array_equal(r8.classes, want), desc
    assert "ebnn_" in (tmp_path / "i8" / "m.c").read_text() and "_w8(" in (tmp_path / "i8" / "m.c").read_text()
    assert "_w8(" not in (tmp_path / "f32" / "m.c").read_text()
    report = r8.report_path.read_text()
    assert "float_weights=int8" in report and "int8 weights" in report
    assert r8.plan["totals"]["flash_data_bytes"] < r32.plan["totals"]["flash_data_bytes"]
    with pytest.raises(ValueError, match="float_weights"):
        export(model, tmp_path / "bad", name="m", float_weights="fp16")
    assert not (tmp_path / "bad").exists()
    # the CLI: --float-weights int8 gives the same C as export(float_weights="int8")
    from keras_ebnn import convert
    path = tmp_path / "model.keras"
    model.save(path)
    assert convert.main([str(path), "-o", str(tmp_path / "cli"), "--name", "m", "--float-weights", "int8",
                         "-q"]) == 0
    assert (tmp_path / "cli" / "m.c").read_text() == (tmp_path / "i8" / "m.c").read_text()
