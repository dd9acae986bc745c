"""The graph memory plan, executed: every tensor stored at its planned offset in one byte arena.

`run_in_arena` runs a graph op by op reading each input from, and writing each output to, its bytes
in a single arena laid out as keras_ebnn.planning.graph_memory.plan_memory says (bits packed in 32-bit words,
ints as int32, floats as 4 bytes); kernel scratch is filled with garbage while its op runs. If
the plan let a tensor be overwritten before its last reader, the logits would differ from
keras_ebnn.ir.graph_reference.run's: they must be identical, with and without in-place elementwise ops.
"""
import numpy as np
import pytest

from keras_ebnn.ir import graph_reference
from keras_ebnn.ir.graph import lower_graph
from keras_ebnn.planning.graph_memory import check_plan, plan_memory, tensor_bytes, words
from helpers.graphgen import random_graph
from helpers.published_models import PUBLISHED, build
from helpers.tiers import sweep

def _encode(t, v):
    if t.dtype == "bits":
        packed = np.packbits(np.asarray(v, dtype=bool).reshape(-1), bitorder="little")
        out = np.zeros(4 * words(t.size), dtype=np.uint8)
        out[:packed.size] = packed
        return out
    if t.dtype == "int":
        return np.frombuffer(np.asarray(v).astype(np.int32).tobytes(), np.uint8)
    return np.frombuffer(np.asarray(v, dtype=np.float32).tobytes(), np.uint8)


def _decode(t, raw):
    if t.dtype == "bits":
        return np.unpackbits(raw, count=t.size, bitorder="little").astype(bool).reshape(t.shape)
    if t.dtype == "int":
        return np.frombuffer(raw.tobytes(), np.int32).astype(np.int64).reshape(t.shape)
    return np.frombuffer(raw.tobytes(), np.float32).reshape(t.shape).copy()


def run_in_arena(graph, plan, x, rng):
    """Logits (N, K) of the graph executed through its planned arena, one input at a time."""
    logits = []
    for sample in x:
        arena = rng.integers(0, 256, plan["arena_bytes"], dtype=np.uint8)  # garbage to start with
        outside = {graph.input: np.asarray(sample)[None]}

        def read(name):
            t, off = graph.tensors[name], plan["tensors"][name]["offset"]
            if off is None or name in outside:  # a streamed ring (graph_fuse.py) is kept apart here
                return outside[name]
            return _decode(t, arena[off:off + tensor_bytes(t)])[None]

        for i, op in enumerate(graph.ops):
            args = [read(n) for n in op.inputs]
            for b in plan["buffers"]:  # the op's kernel scratch holds anything while it runs
                if b["kind"] == "scratch" and b["first"] == i:
                    arena[b["offset"]:b["offset"] + b["bytes"]] = rng.integers(0, 256, b["bytes"])
            out = graph_reference.run_op(graph, op, args)
            t, off = graph.tensors[op.output], plan["tensors"][op.output]["offset"]
            if off is None or "ring_rows" in op.params:
                outside[op.output] = out
            else:
                arena[off:off + tensor_bytes(t)] = _encode(t, out[0])
        logits.append(read(graph.output).reshape(-1))
    return np.stack(logits)


def _check(graph, x):
    ref = graph_reference.run(graph, x)["logits"]
    arenas = []
    for inplace_ok in (False, True):
        plan = plan_memory(graph, inplace_ok=inplace_ok)
        check_plan(plan)
        got = run_in_arena(graph, plan, x, np.random.default_rng(0))
        np.testing.assert_array_equal(got, ref)
        arenas.append(plan["arena_bytes"])
    assert arenas[1] <= arenas[0]
    with_output = plan_memory(graph, output_in_arena=True)  # the C back end's plan: logits in the arena
    check_plan(with_output)
    assert with_output["tensors"][graph.output]["offset"] is not None
    np.testing.assert_array_equal(run_in_arena(graph, with_output, x, np.random.default_rng(1)), ref)
    return arenas


@pytest.mark.parametrize("name", sorted(n for n, (_, e) in PUBLISHED.items() if e == "lowers"))
def test_published_model_runs_in_its_arena(name):
    model, x = build(name, n=3)
    plain, inplace = _check(lower_graph(model), x)
    print(f"{name}: arena {plain} B, with in-place elementwise ops {inplace} B")


@pytest.mark.parametrize("seed", sweep(range(0, 100, 4), fast=6))
def test_random_graph_runs_in_its_arena(seed):
    model, x, desc = random_graph(seed, n_inputs=3)
    _check(lower_graph(model), x)


def test_summary_lists_every_op_and_the_peak():
    from keras_ebnn.planning.graph_memory import summary
    model, _ = build("birealnet", n=1)
    graph = lower_graph(model)
    text = summary(graph, print_fn=None)
    plan = plan_memory(graph)
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| #")]
    assert len(rows) == len(graph.ops)
    assert f"Peak of live tensors: {plan['peak_bytes']:,} B; arena: {plan['arena_bytes']:,} B" in text
    assert all(op.output in text for op in graph.ops)
    print(text)
