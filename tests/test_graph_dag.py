"""Keras <-> graph reference on random branching Larq models (tests/helpers/graphgen.py).

Each generated model is lowered with keras_ebnn.ir.graph and executed with keras_ebnn.ir.graph_reference:
  * every bits tensor that stands for the sign of a Keras tensor is compared with Keras's signs,
    op by op: the run continues from Keras's bits (graph_reference.run's hook), so each op is checked
    on the inputs Keras had. Bits written by a block with an integer accumulator (binary conv / dense,
    sign input conv, unscaled binary weights) must be identical; bits of a sign of a float tensor (or
    of a float first layer, or of scaled binary weights: see keras_ebnn.ir.graph) may differ only where
    Keras's value is a float32 near-tie: |value| <= TIE * (1 + max |value|);
  * logits (or softmax probabilities) agree within LOGIT_TOL * (1 + max |Keras logit|): the float
    parts sum in a different order than TensorFlow (documented in keras_ebnn.ir.graph), nothing more;
  * classes are identical, on the free-running graph (no Keras bits injected) too;
  * the unfused graph (lower_graph(fuse_blocks=False)) gives the same classes and logits within the
    same tolerance: fusion preserves the computation.
"""
import numpy as np
import pytest

from keras_ebnn.ir import graph_reference
from keras_ebnn import import_larq
from keras_ebnn.passes.graph_fuse import all_tensors
from keras_ebnn.ir.graph import lower_graph
from keras_ebnn.planning.graph_memory import check_plan, plan_memory
from helpers.graphgen import random_graph
from helpers.tiers import sweep

N_GRAPHS = 100
TIE = 1e-5
LOGIT_TOL = 1e-4
EXACT_BLOCKS = ("binary_conv", "binary_dense")


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _exact_bits(graph):
    """Bits tensors whose op is exact given exact input bits (integer accumulators only)."""
    exact = set()
    for op in graph.ops:
        if op.kind == "block" and not op.params.get("weight_scale"):
            b = op.params["block"]
            if b.kind in EXACT_BLOCKS or (b.kind == "input_conv" and b.input.mode.startswith("sign")):
                exact.add(op.output)
        elif op.kind in ("reshape", "concat", "max_pool", "global_max") and \
                graph.tensors[op.output].dtype == "bits" and all(t in exact for t in op.inputs):
            exact.add(op.output)
    return exact


def check_graph_against_keras(model, x, graph=None):
    """Run the checks of the module docstring; returns (graph, stats dict)."""
    tf, _ = import_larq()
    graph = lower_graph(model) if graph is None else graph
    names = sorted({t.keras for t in graph.tensors.values() if t.dtype == "bits" and t.keras})
    xf = tf.constant(np.asarray(x, dtype=np.float32))
    probe = tf.keras.Model(model.inputs, [model.get_layer(n).output for n in names] + [model.outputs[0]])
    outs = probe(xf, training=False)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    kv = {n: np.asarray(v) for n, v in zip(names, outs[:-1])}
    kout = np.asarray(outs[-1])
    exact = _exact_bits(graph)
    stats = {"bits": 0, "exact_bits": 0, "tie_flips": 0}

    def hook(t, v, start):
        if t.dtype != "bits" or not t.keras:
            return v
        k = kv[t.keras][start:start + len(v)].reshape(v.shape)
        kb = k >= 0
        diff = kb != v
        stats["bits"] += v.size
        if t.name in exact:
            stats["exact_bits"] += v.size
            assert not diff.any(), f"{t.name} ({t.keras}): {int(diff.sum())} bits differ from Keras"
        elif diff.any():
            scale = 1.0 + float(np.abs(k).max())
            worst = float(np.abs(k[diff]).max())
            assert worst <= TIE * scale, f"{t.name} ({t.keras}): bit differs at Keras value {worst:.3g}"
            stats["tie_flips"] += int(diff.sum())
        return kb

    forced = graph_reference.run(graph, x, hook=hook)
    free = graph_reference.run(graph, x)
    for out in (forced, free):
        got = _softmax(out["logits"]) if graph.softmax else out["logits"]
        err = float(np.abs(got - kout).max())
        assert err <= LOGIT_TOL * (1.0 + float(np.abs(kout).max())), f"logit error {err:.3g}"
        np.testing.assert_array_equal(out["classes"], np.argmax(kout, axis=1))
    stats["logit_err"] = float(np.abs((_softmax(free["logits"]) if graph.softmax else free["logits"]) - kout).max())
    return graph, stats


_GRAPHS = {}  # seed -> lowered graph, reused by the coverage test


def check_fusion_preserves(model, graph, x):
    """The fused graph computes what the unfused one (every sign, accumulator and float op on its
    own) computes: same classes, logits within tolerance, fewer or as many ops."""
    plain = lower_graph(model, fuse_blocks=False)
    assert len(graph.ops) <= len(plain.ops)
    a, b = graph_reference.run(graph, x), graph_reference.run(plain, x)
    np.testing.assert_array_equal(a["classes"], b["classes"])
    err = float(np.abs(a["logits"] - b["logits"]).max())
    assert err <= LOGIT_TOL * (1.0 + float(np.abs(b["logits"]).max())), err
    return len(plain.ops)


@pytest.mark.parametrize("seed", sweep(range(N_GRAPHS), fast=12))
def test_random_graph_matches_keras(seed):
    model, x, desc = random_graph(seed)
    graph, stats = check_graph_against_keras(model, x)
    check_plan(plan_memory(graph))
    stats["ops"] = f"{len(graph.ops)} fused / {check_fusion_preserves(model, graph, x)} unfused"
    _GRAPHS[seed] = graph
    print(f"graph {seed}: {desc} | {stats}")


@pytest.mark.slow
def test_generator_covers_the_ops():
    """The generated graphs really contain every op kind and fused block kind the tests claim (about the
    full sweep, so in the full tier)."""
    seen = set()
    for seed in range(N_GRAPHS):
        graph = _GRAPHS.get(seed) or lower_graph(random_graph(seed, n_inputs=1)[0])
        fused = [sub for op in graph.ops if op.kind == "conv_pool" for sub in op.params["ops"]]  # graph_fuse.py
        tensors = all_tensors(graph)
        for op in graph.ops:
            if op.kind == "conv_pool":
                seen.add("conv_pool_" + ("bits" if op.params["final"] is not None else "float32"))
                seen |= {"conv_pool_binary_weights"} if op.params["conv"].params.get("binary_weights") else set()
                seen |= {"conv_pool_streamed"} if "ring_rows" in op.params else set()
        for op in graph.ops + fused:
            seen.add(op.kind if op.kind != "block" else op.params["block"].kind)
            if op.kind == "block" and op.params["block"].kind == "input_conv":
                seen.add("input_" + op.params["block"].input.mode)
            if op.kind == "concat" and tensors[op.output].dtype == "bits":
                seen.add("bits_concat")
            if op.kind in ("avg_pool", "global_avg", "threshold"):
                seen.add(f"{op.kind}_{tensors[op.inputs[0]].dtype}")
        seen.add("1d" if len(graph.input_tensor.shape) == 2 else "2d")
    need = {"input_conv", "binary_conv", "binary_dense", "output_dense", "bconv", "bdense", "bdepthwise",
            "conv", "depthwise", "dense", "affine", "activation", "add", "concat", "bits_concat", "max_pool",
            "avg_pool", "global_avg", "global_max", "reshape", "sign", "threshold", "to_float", "1d", "2d",
            "avg_pool_int", "global_avg_int", "avg_pool_float32", "global_avg_float32", "threshold_int",
            "input_float", "input_uint8", "input_sign_float", "input_sign_uint8", "conv_pool", "conv_pool_bits",
            "conv_pool_float32", "conv_pool_binary_weights", "conv_pool_streamed"}
    assert need <= seen, need - seen


def test_explicit_sign_activation_and_bit_pooling():
    """Activation(SteSign()) is a sign op; max pooling its +-1 output is an OR over bits; a sign of a
    sign is the same bits. Checked against Keras like the random graphs."""
    from helpers.modelgen import import_larq as _imp
    tf, lq = _imp()
    L = tf.keras.layers
    inp = tf.keras.Input((9, 9, 2))
    x = lq.layers.QuantConv2D(6, 3, padding="same", kernel_quantizer="ste_sign", use_bias=False)(inp)
    x = L.BatchNormalization()(x)
    x = L.Activation(lq.quantizers.SteSign(), name="explicit_sign")(x)
    x = L.MaxPooling2D(2, padding="same")(x)
    x = L.Flatten()(x)
    x = lq.layers.QuantDense(4, input_quantizer="ste_sign", kernel_quantizer="ste_sign")(x)
    model = tf.keras.Model(inp, x)
    rng = np.random.default_rng(5)
    xs = rng.normal(0, 1, (16, 9, 9, 2)).astype(np.float32)
    from helpers.graphgen import calibrate
    calibrate(model, xs, rng)
    graph, stats = check_graph_against_keras(model, xs)
    kinds = [op.kind if op.kind != "block" else op.params["block"].kind for op in graph.ops]
    assert "max_pool" in kinds and "input_conv" in kinds and "sign" not in kinds, kinds
    pooled = [op for op in graph.ops if op.kind == "max_pool"][0]
    assert graph.tensors[pooled.output].dtype == "bits"
    assert stats["bits"] > 0
