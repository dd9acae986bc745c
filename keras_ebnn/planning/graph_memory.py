"""Memory planner for the graph IR: every tensor gets an offset in one static arena.

Like TensorFlow Lite Micro's greedy memory planner: a buffer lives from the op that writes it to the
last op that reads it (inclusive: an op's inputs, output and scratch are all live while it runs, so
an op never writes over its own inputs); buffers are placed one by one, each at the lowest offset
where it overlaps no already placed buffer whose lifetime overlaps its own. Arena = the highest end.
The placement is tried in three orders (largest first, as TFLite Micro; by first use; largest first
with kernel scratch last) and the smallest arena is kept; when none reaches the peak, a two-ended
placement (tensors in order of first use alternately at the bottom and the top of a peak-sized
arena, scratch in the gaps: exporters/c.py's ping-pong for a chain) is tried too. Largest-first
alone can leave a scratch gap that costs a few bytes over the ping-pong layout of a chain.
The lower bound of any plan is the peak over ops of the bytes live during that op (`peak_bytes`);
for a chain of blocks the plan reaches it, which is what `exporters/c.py` memory_plan's ping-pong
layout gives (tests/test_graph_chain.py compares both on the shipped and generated models).

Sizes (bytes):
  bits     4 * ceil(n / 32): packed 32-bit words, as between the blocks today;
  int      4 * n: int32 (the C kernels' one integer type; every size is then a multiple of 4, so every
           offset stays 4-aligned);
  int8     4 * ceil(n / 4): one byte each (integer-only graphs, keras_ebnn.passes.graph_quant), whole words;
  float32  4 * n.
Not in the arena: the model input (the caller's array) and, by default, the output logits (the
caller's scores array), and any `reshape` of them. output_in_arena=True gives the output a buffer too
(the C back end does, unless an output block writes the caller's scores itself: the logits must not
reach the caller's array before the last op succeeded, and scores may be NULL). A `reshape` output shares its input's buffer (same bytes, same
order), so the buffer lives until the last reader of either. With inplace_ok=True (off by default:
the C kernels must then accept out == in), an elementwise op (affine, activation, add, to_float of an int tensor: out[i]
depends on in[i] only) writes over an input whose buffer no later op reads and that has the output's
size; otherwise no op shares memory with its inputs. Kernel scratch (a binary conv block's
patch and mask, `exporters/c.py` _scratch_bytes; a conv_pool op's accumulators and taps) is a buffer
live only during its op.
Row streaming (keras_ebnn/passes/graph_fuse.py plan_streams): a conv_pool op whose output is streamed into its
reader runs while that reader runs, so its inputs, scratch and output stay live during the reader's
op (every lifetime uses the op index it runs at), and that output is only its ring of rows
(ring_rows x W x C float32).
"""
import numpy as np


def words(nbits):
    """uint32 words holding n bits (EBNN_WORDS): bits buffers are exactly this long."""
    return (int(nbits) + 31) // 32


def tensor_bytes(t):
    """Bytes of a tensor in the arena: bits packed in 32-bit words, int as int32, float32."""
    if t.dtype == "bits":
        return 4 * words(t.size)
    if t.dtype == "int8":  # integer-only graphs: one byte each, rounded up to whole words
        return 4 * ((t.size + 3) // 4)
    return 4 * t.size


def scratch_bytes(op):
    """Kernel scratch of an op (the binary conv kernel's patch + mask words, as in exporters/c.py)."""
    if op.kind == "block" and op.params["block"].kind == "binary_conv":
        g = op.params["block"].geometry
        return 2 * words(g.kernel[0] * g.kernel[1] * g.in_shape[2]) * 4
    if op.kind == "conv_pool":  # keras_ebnn/passes/graph_fuse.py: one conv position's accumulators + the pool's
        from ..passes.graph_fuse import scratch_bytes as conv_pool_scratch
        return conv_pool_scratch(op)
    if op.kind == "conv_s8" and conv_s8_bits(op) is not None:  # runtime_c EBNN_CONV_S8_BITS_SCRATCH
        k4 = -(-int(np.prod(op.params["weights"].shape[:3])) // 4) * 4
        return 4 * (op.params["weights"].shape[-1] * (3 if op.params.get("pool") is not None else 2) + 5 * k4
                    + conv_s8_cache(op)[1])
    if op.kind in ("conv_s8", "depthwise_s8"):  # integer-only graphs: runtime_c EBNN_CONV_S8_SCRATCH
        w = op.params["weights"]  # the accumulators of two positions (+ the pool's) + the conv's two patches
        fused = op.params.get("pool") is not None or bool(op.params.get("stage"))
        n_out = w.shape[-1] * (w.shape[2] if op.kind == "depthwise_s8" else 1)
        k4 = 0 if op.kind == "depthwise_s8" else -(-int(np.prod(w.shape[:3])) // 4) * 4
        if op.kind == "depthwise_s8" and not fused:
            return 0
        return 4 * (n_out * (3 if op.params.get("pool") is not None else 2) + k4 + conv_s8_cache(op)[1])
    return 0


CONV_S8_CACHE_MAX = 4096  # bytes: the largest row cache an int8 conv takes (else its windows are read per position)


def conv_s8_cache(op):
    """(rows, int32 words) of an int8 conv's row cache (runtime_c ebnn_conv_s8 `rows`, EBNN_CONV_S8_CACHE:
    the input rows one pooled output reads, converted once to int16), (0, 0) without one: when the
    windows do not overlap (nothing to reuse) or the cache would exceed CONV_S8_CACHE_MAX bytes."""
    if op.kind != "conv_s8":
        return 0, 0
    geom, pool = op.params["geometry"], op.params.get("pool")
    (kh, kw), (sh, sw) = geom.kernel, geom.strides
    if kh <= sh and kw <= sw:
        return 0, 0
    rows = ((pool["pool"][0] if pool is not None else 2) - 1) * sh + kh
    cols = (geom.conv_shape[1] - 1) * sw + kw
    n = rows + (rows * cols * geom.in_shape[2] + 1) // 2
    return (rows, n) if 4 * n <= CONV_S8_CACHE_MAX else (0, 0)


def conv_s8_bits(op):
    """(sign nibbles, magnitudes) of an int8 conv (keras_ebnn/passes/graph_quant.py "conv_s8") whose weights are
    binary (each output channel's weights +-m, m > 0: a binary-weight conv on an int8 map), for
    runtime_c's ebnn_conv_s8_bits: uint8 (out_c, (k4 / 4 + 1) // 2), per output channel the sign nibble of
    each group of four taps (bit i = tap 4g + i is +m; (KH, KW, C) tap order; low half of the byte for
    an even group), and int64 m (out_c,). None when the weights are not binary or the kernel's 16-bit
    sums could overflow (taps * max |x - zp| > 32767): the export then keeps int8 weights."""
    if op.kind != "conv_s8":
        return None
    w = np.asarray(op.params["weights"], dtype=np.int64)
    rows = w.reshape(-1, w.shape[-1])
    mag = np.abs(rows).max(axis=0)
    if rows.size == 0 or np.any(mag == 0) or not np.all(np.abs(rows) == mag):
        return None
    zp, pad_q = int(op.params["zp"]), int(op.params.get("pad_q", 0))
    if rows.shape[0] * max(127 - zp, zp + 128, abs(pad_q)) > 32767:
        return None
    k4 = -(-rows.shape[0] // 4) * 4
    groups = k4 // 4
    signs = np.zeros((rows.shape[1], k4 + (4 if groups % 2 else 0)), np.int64)
    signs[:, :rows.shape[0]] = (rows > 0).T
    nib = (signs.reshape(rows.shape[1], -1, 4) << np.arange(4)).sum(axis=2)
    return (nib[:, 0::2] | (nib[:, 1::2] << 4)).astype(np.uint8), mag


def _stream_layout(graph):
    """(times, ring) of the row streaming (keras_ebnn/passes/graph_fuse.py plan_streams): times[i] = the op index
    op i runs at (a streamed op runs inside its reader), ring = {tensor: bytes} of the streamed outputs."""
    from ..passes.graph_fuse import op_times, ring_bytes
    ring = {op.output: ring_bytes(graph, op) for op in graph.ops if op.kind == "conv_pool" and "ring_rows" in op.params}
    return op_times(graph), ring


ORDERS = {
    "largest first": lambda b: (-b["bytes"], b["first"]),  # TFLite Micro's order
    "first use": lambda b: (b["first"], b["kind"] == "scratch", -b["bytes"]),
    "largest first, scratch last": lambda b: (b["kind"] == "scratch", -b["bytes"], b["first"]),
}


def _greedy(buffers, key):
    """Place buffers (dicts with bytes, first, last) in `key` order, each at the lowest offset where
    it overlaps no placed buffer that is live at the same time; returns the arena size."""
    order = sorted(range(len(buffers)), key=lambda i: (key(buffers[i]), i))
    placed = []
    for i in order:
        b = buffers[i]
        busy = sorted((p["offset"], p["offset"] + p["bytes"]) for p in placed
                      if p["first"] <= b["last"] and b["first"] <= p["last"])
        offset = 0
        for start, end in busy:
            if start - offset >= b["bytes"]:
                break
            offset = max(offset, end)
        b["offset"] = offset
        placed.append(b)
    return max((b["offset"] + b["bytes"] for b in buffers), default=0)


def _free_offsets(b, placed, bound):
    """(lowest, highest) offset in [0, bound - size] where b overlaps no placed buffer live at the same
    time (None where there is none)."""
    busy = sorted((p["offset"], p["offset"] + p["bytes"]) for p in placed
                  if p["first"] <= b["last"] and b["first"] <= p["last"])
    gaps, prev = [], 0
    for start, end in busy + [(bound, bound)]:
        if start - prev >= b["bytes"]:
            gaps.append((prev, start))
        prev = max(prev, end)
    if not gaps:
        return None, None
    return gaps[0][0], gaps[-1][1] - b["bytes"]


def _two_ended(buffers, bound):
    """Tensors in order of first use, alternately at the bottom and the top of an arena of `bound`
    bytes (the ping-pong layout of exporters/c.py for a chain), then scratch in the lowest gap.
    Returns the arena size, or None if something does not fit in `bound`."""
    tensors = sorted((b for b in buffers if b["kind"] == "tensor"), key=lambda b: (b["first"], -b["bytes"]))
    scratch = sorted((b for b in buffers if b["kind"] != "tensor"), key=lambda b: -b["bytes"])
    placed, top = [], False
    for b in tensors + scratch:
        low, high = _free_offsets(b, placed, bound)
        if low is None:
            return None
        b["offset"] = high if (top and b["kind"] == "tensor") else low
        if b["kind"] == "tensor":
            top = not top
        placed.append(b)
    return max((b["offset"] + b["bytes"] for b in buffers), default=0)


INPLACE_KINDS = ("affine", "activation", "add", "to_float")  # elementwise: out[i] depends on in[i] only


def plan_memory(graph, inplace_ok=False, output_in_arena=False):
    """The arena plan of a graph; see _plan for the keys. inplace_ok=True allows in-place elementwise
    ops: both plans (with and without) are made and the smaller arena kept (the greedy placement can
    do worse with fewer, larger buffers), the in-place one on a tie."""
    plan = _plan(graph, inplace_ok, output_in_arena)
    if inplace_ok and plan["inplace"]:
        plain = _plan(graph, False, output_in_arena)
        if plain["arena_bytes"] < plan["arena_bytes"]:
            return plain
    return plan


def _plan(graph, inplace_ok, output_in_arena):
    """The arena plan of a graph (output_in_arena: see the module docstring): a dict with
      buffers: [{tensors, bytes, first, last, offset, kind}] (kind "tensor" or "scratch"; first/last
               are op indices; tensors lists the tensor names sharing the buffer),
      ops: [{index, kind, output, live_bytes, live}] per op: the bytes (and buffers) live while it runs,
      arena_bytes: the arena size (the highest offset + size),
      peak_bytes: max over ops of live_bytes (no plan can use less),
      tensors: {name: {dtype, shape, bytes, offset or None (not in the arena)}},
      inplace: the outputs written over one of their op's inputs (inplace_ok=True, see the module
               docstring).
    """
    ops = graph.ops
    times, ring = _stream_layout(graph)
    prod = {op.output: times[i] for i, op in enumerate(ops)}
    reads = {}  # tensor -> index of its last reader
    for i, op in enumerate(ops):
        for t in op.inputs:
            reads[t] = max(reads.get(t, -1), times[i])
    root = {graph.input: graph.input}
    groups = {graph.input: [graph.input]}
    inplace = []
    for i, op in enumerate(ops):  # alias groups: tensors sharing one buffer
        target = None
        if op.kind == "reshape":
            target = root[op.inputs[0]]
        elif inplace_ok and op.kind in INPLACE_KINDS and op.output != graph.output:
            for t in op.inputs:  # an input whose buffer nobody reads after this op, of the same size
                r = root[t]
                if r != root[graph.input] and r not in ring and max(reads.get(m, -1) for m in groups[r]) == i and \
                        tensor_bytes(graph.tensors[r]) == tensor_bytes(graph.tensors[op.output]):
                    target = r
                    inplace.append(op.output)
                    break
        root[op.output] = target if target is not None else op.output
        groups.setdefault(root[op.output], []).append(op.output)
    outside = {root[graph.input]} | (set() if output_in_arena else {root[graph.output]})
    last_read = {}
    for r, names in groups.items():
        last_read[r] = max((reads.get(m, -1) for m in names), default=-1)
    buffers = []
    for r, names in groups.items():
        if r in outside:
            continue
        first = prod[r]
        if r == root[graph.output]:
            last_read[r] = len(ops) - 1  # read after the last op (copied to the caller's scores)
        buffers.append({"kind": "tensor", "tensors": names, "bytes": ring.get(r, tensor_bytes(graph.tensors[r])),
                        "first": first, "last": max(first, last_read.get(r, first)), "offset": 0})
    for i, op in enumerate(ops):
        s = scratch_bytes(op)
        if s:
            buffers.append({"kind": "scratch", "tensors": [], "bytes": s, "first": times[i], "last": times[i], "offset": 0,
                            "op": i})
    buffers = [b for b in buffers if b["bytes"] > 0]
    peak = max((sum(b["bytes"] for b in buffers if b["first"] <= i <= b["last"]) for i in range(len(ops))),
               default=0)
    best = None
    for order_name, key in ORDERS.items():  # a few greedy orders; keep the smallest arena
        arena = _greedy(buffers, key)
        if best is None or arena < best[0]:
            best = (arena, order_name, [b["offset"] for b in buffers])
    arena = _two_ended(buffers, peak)  # the ping-pong layout, kept when no greedy order is smaller
    if arena is not None and arena <= best[0]:
        best = (arena, "two-ended", [b["offset"] for b in buffers])
    arena, order_name, offsets = best
    for b, off in zip(buffers, offsets):
        b["offset"] = off
    per_op = []
    for i, op in enumerate(ops):
        live = [b for b in buffers if b["first"] <= times[i] <= b["last"]]  # a streamed op: its reader's time
        per_op.append({"index": i, "kind": op.kind if op.kind != "block" else op.params["block"].kind,
                       "output": op.output, "live_bytes": sum(b["bytes"] for b in live),
                       "live": [b["tensors"][0] if b["tensors"] else f"scratch{i}" for b in live]})
    where = {n: b["offset"] for b in buffers for n in b["tensors"]}
    tensors = {n: {"dtype": t.dtype, "shape": t.shape, "bytes": ring.get(n, tensor_bytes(t)), "offset": where.get(n)}
               for n, t in graph.tensors.items()}
    peak = max((p["live_bytes"] for p in per_op), default=0)
    return {"buffers": buffers, "ops": per_op, "arena_bytes": int(arena), "peak_bytes": int(peak),
            "tensors": tensors, "order": order_name, "inplace": inplace}


def check_plan(plan):
    """No two buffers with overlapping lifetimes overlap in memory; all inside the arena."""
    bufs = plan["buffers"]
    for i, a in enumerate(bufs):
        assert 0 <= a["offset"] and a["offset"] + a["bytes"] <= plan["arena_bytes"]
        for b in bufs[i + 1:]:
            if a["first"] <= b["last"] and b["first"] <= a["last"]:
                assert a["offset"] + a["bytes"] <= b["offset"] or b["offset"] + b["bytes"] <= a["offset"], \
                    (a, b)
    return True


def table(graph, plan):
    """Per-op markdown table: the op's Keras layers, its output tensor (dtype, shape, bytes, arena
    offset), the tensors live while it runs and their bytes; then the peak and the arena."""
    lines = ["| # | op | Keras layers | output | dtype | shape | bytes | offset | live tensors | live B |",
             "|---|---|---|---|---|---|---:|---:|---|---:|"]
    for p, op in zip(plan["ops"], graph.ops):
        t = plan["tensors"][p["output"]]
        where = "caller" if t["offset"] is None else f"{t['offset']:,}"
        lines.append(f"| {p['index']} | {p['kind']} | {', '.join(op.layers) or '-'} | {p['output']} | "
                     f"{t['dtype']} | {'x'.join(map(str, t['shape']))} | {t['bytes']:,} | {where} | "
                     f"{', '.join(p['live'])} | {p['live_bytes']:,} |")
    lines.append(f"\nPeak of live tensors: {plan['peak_bytes']:,} B; arena: {plan['arena_bytes']:,} B "
                 f"(model input: {input_bytes(graph):,} B in the caller's array, not counted).")
    return "\n".join(lines)


def summary(model, print_fn=print, inplace_ok=False):
    """The per-op tensor table of a Keras model (or a Graph) lowered with keras_ebnn.ir.graph, with
    the peak and the arena; returns the text."""
    from ..ir.graph import Graph, lower_graph
    graph = model if isinstance(model, Graph) else lower_graph(model)
    text = table(graph, plan_memory(graph, inplace_ok=inplace_ok))
    if print_fn is not None:
        print_fn(text)
    return text


def input_bytes(graph):
    t = graph.input_tensor
    return t.size * (1 if t.dtype in ("int", "int8") else 4)

