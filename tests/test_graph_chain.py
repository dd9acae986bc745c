"""The graph IR on chain models: the same computation and no more memory than the chain of blocks.

For every shipped model (examples/models) and generated chain models (tests/helpers/modelgen.py), the graph
lowering (keras_ebnn.ir.graph) must fuse the blocks of the chain view (keras_ebnn.frontend.lowering.lower, which since
issue 20 is a view of that graph: its blocks, Keras layer names and input spec), the reference executor
(keras_ebnn.ir.graph_reference) must give the lowered graph (with its reshape ops) the logits of the chain's
graph of blocks (graph.from_lowered) bit for bit, and the memory planner (keras_ebnn.planning.graph_memory) must
need no more arena for the lowered graph than exporters/c.py memory_plan for the chain.
"""
from pathlib import Path

import numpy as np
import pytest

from keras_ebnn.ir import graph_reference
from keras_ebnn import lower
from keras_ebnn.exporters.c import memory_plan
from keras_ebnn.ir.graph import from_lowered, lower_graph
from keras_ebnn.planning.graph_memory import check_plan, plan_memory
from helpers.modelgen import random_model
from helpers.randblocks import random_lowered
from helpers.tiers import sweep

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted((ROOT / "examples" / "models").glob("*.keras"))
N_GENERATED = 30


def _blocks(graph):
    return [op.params["block"] for op in graph.ops if op.kind == "block"]


def _same_blocks(chain, graph):
    """The graph's block ops are the chain's blocks: same kinds, weights, thresholds, affine."""
    blocks = _blocks(graph)
    assert [b.kind for b in blocks] == [b.kind for b in chain.blocks]
    assert {op.kind for op in graph.ops} <= {"block", "reshape"}
    for a, b in zip(chain.blocks, blocks):
        np.testing.assert_array_equal(a.weights, b.weights)
        for attr in ("threshold", "pool_min", "scale", "offset"):
            if hasattr(a, attr):
                np.testing.assert_array_equal(getattr(a, attr), getattr(b, attr))
        if hasattr(a, "geometry"):
            assert a.geometry == b.geometry
        if hasattr(a, "input"):
            assert a.input == b.input


def _check(model, x):
    chain = lower(model)
    graph = lower_graph(model)
    _same_blocks(chain, graph)
    ref = graph_reference.run(chain, x)
    out = graph_reference.run(graph, x)
    np.testing.assert_array_equal(out["logits"], ref["logits"])  # bit for bit
    np.testing.assert_array_equal(out["classes"], ref["classes"])
    plan = plan_memory(graph)
    check_plan(plan)
    old = memory_plan(chain)["arena_bytes"]
    assert plan["arena_bytes"] <= old
    return plan["arena_bytes"], old


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_model_graph_equals_chain(path):
    from keras_ebnn.frontend.lowering import load_model
    model = load_model(path)
    x = np.load(ROOT / "examples" / "data" / "mnist_test_sample.npz")["x"][:300]
    new, old = _check(model, x)
    print(f"{path.stem}: graph arena {new} B, chain arena {old} B")


@pytest.mark.parametrize("seed", sweep(range(N_GENERATED), fast=6))
def test_generated_chain_graph_equals_chain(seed):
    model, x, desc = random_model(seed, n_inputs=32)
    _check(model, x)


def test_planner_lays_out_chains_ping_pong():
    """On 300 random chains of blocks (every block kind, kernel scratch), the planner reaches the peak
    of live bytes (no plan can use less) with the chain's ping-pong layout: hidden block i's output at
    the bottom of the arena for even i, at the top for odd i, kernel scratch in the gap between."""
    for seed in range(300):
        lowered, _ = random_lowered(seed)
        plan = plan_memory(from_lowered(lowered))
        check_plan(plan)
        assert plan["arena_bytes"] == plan["peak_bytes"] and plan["order"] == "two-ended", seed
        arena, tensors = plan["arena_bytes"], [b for b in plan["buffers"] if b["kind"] == "tensor"]
        for i, b in enumerate(sorted(tensors, key=lambda b: b["first"])):
            assert b["offset"] == (0 if i % 2 == 0 else arena - b["bytes"]), (seed, i)
