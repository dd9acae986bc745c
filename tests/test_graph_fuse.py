"""The conv_pool fusion and row streaming (keras_ebnn/passes/graph_fuse.py) on the published MCU BNNs.

For the full-size re-creations of Binary Samy, EmbedIA person detection and a float-stem MNIST BNN
(tests/helpers/published_models.py, sources cited there): the fused graph's reference equals the unfused
graph's bit for bit, no full-precision conv map is stored before its pool, binary conv weights are
stored as bits, and the compiled C (-fsanitize=address,undefined) equals the reference bit for bit
(every arena tensor and the logits) and Keras's classes.
"""
import numpy as np
import pytest

from keras_ebnn.ir import graph_reference
from keras_ebnn.frontdoor import host
from keras_ebnn.exporters.c import export_c
from keras_ebnn.exporters.graph_c import GraphModel, memory_plan, op_data
from keras_ebnn.ir.graph import lower_graph
from keras_ebnn.passes.graph_fuse import fuse_conv_pool, unfuse
from keras_ebnn.planning.graph_memory import check_plan, plan_memory
from helpers.published_models import build, build_mcu
from test_graph_c import build_program, check_against_reference, run_program

MODELS = ["samy_bnn", "embedia_person", "float_stem_mnist"]
_CACHE = {}


def _lowered(name):
    if name not in _CACHE:
        model, x = build_mcu(name, n=6)
        _CACHE[name] = (model, x, lower_graph(model, name))
    return _CACHE[name]


def _conv_maps(graph):
    """Float tensors written by a full-precision conv op (not fused)."""
    return [op.output for op in graph.ops if op.kind in ("conv", "depthwise")]


@pytest.mark.parametrize("name", MODELS)
def test_fused_equals_unfused_reference(name):
    model, x, g = _lowered(name)
    kinds = [op.kind for op in g.ops]
    assert "conv_pool" in kinds and not _conv_maps(g), g.describe()
    ref = graph_reference.run(g, x)
    flat = graph_reference.run(unfuse(g), x)
    np.testing.assert_array_equal(ref["logits"], flat["logits"])
    keras = np.asarray(model(x.astype(np.float32), training=False))
    np.testing.assert_array_equal(ref["classes"], keras.argmax(1))


def test_samy_binary_weights_are_bits_and_streamed():
    _, _, g = _lowered("samy_bnn")
    cps = [op for op in g.ops if op.kind == "conv_pool"]
    assert [op.params["conv"].kind for op in cps] == ["conv", "conv", "dense"]  # the head: dense + bias
    first, second = cps[:2]
    assert second.params["conv"].params["binary_weights"]
    ctype, w = op_data(g, second)[0]["w"]
    assert ctype == "uint8_t" and w.size == 3 * 3 * 8 * 2  # 1,152 weights in 144 bytes
    assert first.params.get("stream_to") == second.output and first.params["ring_rows"] == 4
    plan = plan_memory(g, output_in_arena=True)
    check_plan(plan)
    assert plan["tensors"][first.output]["bytes"] == 4 * 4 * 40 * 8  # a ring of 4 rows, not 40
    mp = memory_plan(GraphModel(g))
    assert mp["totals"]["ram_bytes"] - 0 <= 20000, mp["totals"]


def test_streaming_off_gives_the_full_map():
    _, _, g = _lowered("samy_bnn")
    h = unfuse(g)  # the same sub-ops, fused again without streaming
    for op in h.ops:
        op.params.pop("ring_rows", None)
        op.params.pop("stream_to", None)
    assert fuse_conv_pool(h, stream=False) == 3
    plan = plan_memory(h)
    first = [op for op in h.ops if op.kind == "conv_pool"][0]
    assert plan["tensors"][first.output]["bytes"] == 40 * 40 * 8 * 4
    assert plan["arena_bytes"] > plan_memory(g)["arena_bytes"] + 40000


def dense_mlp():
    """(model, inputs): a binary-weight QuantDense (no input quantizer) on a float hidden layer + BN + ReLU."""
    from keras_ebnn import import_larq
    from helpers.graphgen import calibrate
    tf, lq = import_larq()
    L = tf.keras.layers
    tf.keras.utils.set_random_seed(5)
    model = tf.keras.Sequential([
        L.InputLayer((20,)), L.Dense(12, activation="relu"),
        lq.layers.QuantDense(16, kernel_quantizer="ste_sign", kernel_constraint="weight_clip", use_bias=False),
        L.BatchNormalization(), L.ReLU(), L.Dense(3)])
    rng = np.random.default_rng(5)
    x = rng.normal(0, 1, (6, 20)).astype(np.float32)
    calibrate(model, x, rng)
    return model, x


def test_binary_weight_dense_on_float_input_stores_bits():
    model, x = dense_mlp()
    g = lower_graph(model, "mlp")
    cps = [op for op in g.ops if op.kind == "conv_pool"]
    binary = [op for op in cps if op.params["conv"].params.get("binary_weights")]
    assert len(binary) == 1 and binary[0].params["conv"].kind == "dense", g.describe()
    ctype, w = op_data(g, binary[0])[0]["w"]
    assert ctype == "uint8_t" and w.size == 12 * 16 // 8  # 192 weights in 24 bytes
    np.testing.assert_array_equal(graph_reference.run(g, x)["logits"], graph_reference.run(unfuse(g), x)["logits"])
    _CACHE["dense_mlp"] = (model, x, g)


def uint8_stem():
    """(model, uint8 inputs): Rescaling -> float Conv2D + BN + ReLU + max pool -> Flatten -> Dense."""
    from keras_ebnn import import_larq
    from helpers.graphgen import calibrate
    tf, _ = import_larq()
    L = tf.keras.layers
    tf.keras.utils.set_random_seed(7)
    model = tf.keras.Sequential([L.InputLayer((12, 12, 2)), L.Rescaling(1 / 255.0, offset=-0.5),
                                 L.Conv2D(4, 3, padding="same"), L.BatchNormalization(), L.ReLU(),
                                 L.MaxPooling2D(2), L.Flatten(), L.Dense(3)])
    rng = np.random.default_rng(7)
    x = rng.integers(0, 256, (6, 12, 12, 2)).astype(np.uint8)
    calibrate(model, x, rng)
    return model, x


def test_uint8_input_read_directly():
    # the Rescaling's float copy of the uint8 input is never stored: the conv_pool op reads the input
    model, x = uint8_stem()
    g = lower_graph(model, "u8")
    first = g.ops[0]
    assert first.kind == "conv_pool" and first.inputs == [g.input]
    assert [o.kind for o in first.params["input_steps"]] == ["to_float", "affine"]
    assert all(t.shape != (12, 12, 2) for n, t in g.tensors.items() if n != g.input)
    np.testing.assert_array_equal(graph_reference.run(g, x)["logits"], graph_reference.run(unfuse(g), x)["logits"])


PUBLISHED_WITH_FUSION = ["lce_guide_custom", "binary_resnet_e", "birealnet"]


@pytest.mark.skipif(host.find_cc() is None, reason="no host C compiler")
def test_mcu_models_compiled_c_bit_exact(tmp_path):
    models, exports = {}, {}
    for name in PUBLISHED_WITH_FUSION:
        model, x = build(name, n=6)
        _CACHE[name] = (model, x, lower_graph(model, name))
        assert any(op.kind == "conv_pool" for op in _CACHE[name][2].ops), name
    _CACHE["dense_mlp"] = dense_mlp() + (None,)
    _CACHE["dense_mlp"] = _CACHE["dense_mlp"][:2] + (lower_graph(_CACHE["dense_mlp"][0], "dense_mlp"),)
    model, x = uint8_stem()
    _CACHE["uint8_stem"] = (model, x, lower_graph(model, "uint8_stem"))
    for name in MODELS + PUBLISHED_WITH_FUSION + ["dense_mlp", "uint8_stem"]:
        _, x, g = _lowered(name)
        gm = GraphModel(g)
        export_c(gm, tmp_path / "exports" / name, name)
        models[name], exports[name] = (gm, x), tmp_path / "exports" / name
    exe = build_program(exports, tmp_path)
    results = run_program(exe, models, tmp_path)
    for name, (gm, x) in models.items():
        classes, logits, dumps = results[name]
        assert check_against_reference(gm, x, classes, logits, dumps) > 0
