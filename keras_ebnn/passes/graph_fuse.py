"""eBNN's reordering for full-precision convolutions: conv -> affine / activation -> pool -> ... -> sign
as ONE graph op that never materialises the convolution's full-resolution map.

The pass `fuse_conv_pool(g)` runs on a lowered, block-fused `keras_ebnn.ir.graph.Graph` (lower_graph calls
it last) and replaces every chain

    conv -> pre* -> [pool] -> post* -> [final]

whose intermediate tensors have no other reader by one op of kind "conv_pool", where
  * conv   is a full-precision `conv` op (float32 input; float32 weights, int8 weights from
           float_weights="int8", or binary weights: params["binary_weights"], stored as bits), or a
           `dense` op, run as the 1x1 conv over its input's rows (the same sums in the same order);
  * pre, post are `affine` / `activation` ops (batch-norm, bias, Rescaling-like scale, the int8
           weight scale, ReLU, ...);
  * pool   is one `max_pool`, `avg_pool`, `global_max` or `global_avg` op on float32;
  * final  is a `sign` or a float32 `threshold` op (the output is then bits), else the output is
           the last float32 tensor.
A chain of only a float / int8-weight conv or dense is left alone (ebnn_conv_f32 / _w8 already compute it);
a lone binary-weight conv is fused (its weights become bits).

When the conv reads the raw uint8 model input through a to_float (and a scalar affine: Rescaling) that
nothing else reads, those ops are absorbed too (params["input_steps"]; the op then reads the uint8
input and converts each tap as it reads it, never storing the input's float copy).

Semantics of "conv_pool" (exact): the output equals running its sub-ops, params["ops"] = [input steps...,
conv, pre..., pool, post..., final], one after the other with the graph reference (`keras_ebnn.ir.graph_reference`),
bit for bit. The C kernel (runtime_c/ebnn_conv_pool_f32.c) performs the same float32 operations in
the same order, only scheduled differently: for each pooled output position it visits the pool
window's in-bounds conv positions in row-major order, computes each one's accumulators exactly as the
conv op (acc = 0.0f; acc = acc + v * w over the taps in (ky, kx, c) order, each product rounded,
never a fused multiply-add; a binary weight w = +-1 gives acc + v or acc - v, the same float32
result as acc + v * (+-1.0f)), applies the pre ops to them, and folds them into the pool (max as
numpy.maximum in tap order; average: s = s + x in tap order, then s / count), then the post ops and
the sign / threshold. Without a pool the op is a 1x1 max pool, which returns its one value unchanged.
Every conv position is computed once per pool window containing it (once when windows do not
overlap, the usual case). params: "ops", "tensors" (the sub-ops' intermediate Tensors, no longer in
the graph), "conv", "pre", "pool", "post", "final" (the sub-ops by role), "geometry" (the conv's
ConvGeometry; a dense op's 1x1 conv).

Streaming (MCUNetV2's row idea, `plan_streams`): when a conv_pool op A writes a float32 map read only by
another conv_pool op B, the C computes A's output rows on demand while B produces its output rows,
keeping only a ring of params["ring_rows"] rows of A's output (row y in slot y % ring_rows): the
rows the widest window of B needs. A is moved right before B in the op order; the values are the
same (pure scheduling). `keras_ebnn.planning.graph_memory` sizes such a tensor as its ring and keeps A's inputs
and scratch live while B runs.
"""

import numpy as np

PRE_KINDS = ("affine", "activation")
POOL_KINDS = ("max_pool", "avg_pool", "global_max", "global_avg")
FINAL_KINDS = ("sign", "threshold")


def _single_reader(g, cons, name):
    return name != g.output and len(cons[name]) == 1


def _match(g, conv, cons):
    """(pre, pool, post, final) ops following a conv op, or None when there is nothing to fuse."""
    pre, pool, post, final = [], None, [], None
    t = conv.output
    while _single_reader(g, cons, t):
        nxt = cons[t][0]
        if nxt.kind in PRE_KINDS and g.tensors[nxt.output].dtype == "float32":
            (post if pool is not None else pre).append(nxt)
        elif nxt.kind in POOL_KINDS and pool is None and g.tensors[nxt.output].dtype == "float32":
            pool = nxt
        elif nxt.kind in FINAL_KINDS:
            final = nxt
            break
        else:
            break
        t = nxt.output
    if not (pre or pool or final or conv.params.get("binary_weights")):
        return None
    return pre, pool, post, final


def fusable_conv(g, op):
    """A full-precision conv, or a dense layer (a 1x1 conv over its rows), on a float32 tensor."""
    return op.kind in ("conv", "dense") and g.tensors[op.inputs[0]].dtype == "float32" and len(op.inputs) == 1


def conv_geometry(g_or_tensors, conv):
    """The ConvGeometry of a conv_pool op's conv: a conv op's own; a dense layer over the last axis of an
    (N,) or (L, N) tensor is the 1x1 conv over the (1, 1, N) or (1, L, N) map (same sums, same order)."""
    if conv.kind == "conv":
        return conv.params["geometry"]
    from ..ir.blocks import ConvGeometry, spatial
    tensors = getattr(g_or_tensors, "tensors", g_or_tensors)
    h, w, n = spatial(tensors[conv.inputs[0]].shape)
    return ConvGeometry(in_shape=(h, w, n), kernel=(1, 1), strides=(1, 1), pad=(0, 0), conv_shape=(h, w),
                        out_hw=(h, w), pad_value=0)


def _input_steps(g, conv, prod, cons):
    """The ops between the raw uint8 model input and a conv that the conv_pool op absorbs (read per tap
    in C, so the input's float copy is never stored): [to_float] or [to_float, affine] (a scalar
    affine: a Rescaling), each output read only by the next; else []."""
    t = conv.inputs[0]
    if g.tensors[g.input].dtype != "int" or not (0 <= g.tensors[g.input].lo and g.tensors[g.input].hi <= 255):
        return []
    steps = []
    while t != g.input and len(steps) < 2:
        op = prod.get(t)
        if op is None or len(cons[t]) != 1:
            return []
        if op.kind == "affine" and not steps and np.asarray(op.params["a"]).size == 1 and \
                np.asarray(op.params["b"]).size == 1:
            steps.insert(0, op)
        elif op.kind == "to_float" and op.inputs[0] == g.input:
            steps.insert(0, op)
        else:
            return []
        t = op.inputs[0]
    return steps if t == g.input and steps and steps[0].kind == "to_float" else []


def fuse_conv_pool(g, stream=True):
    """Fuse every conv -> pre -> pool -> post -> final chain into one conv_pool op (in place; see the
    module docstring), then (stream=True) plan the row streaming. Returns the number of fused ops."""
    count = 0
    while True:
        cons = g.consumers()
        for op in g.ops:
            if fusable_conv(g, op):
                found = _match(g, op, cons)
                if found is not None:
                    break
        else:
            break
        pre, pool, post, final = found
        inputs = _input_steps(g, op, g.producer(), cons)
        sub = inputs + [op] + pre + ([pool] if pool is not None else []) + post + ([final] if final is not None else [])
        out = sub[-1].output
        tensors = {o.output: g.tensors[o.output] for o in sub[:-1]}
        names = list(dict.fromkeys(n for o in sub for n in o.layers))
        new = type(op)("conv_pool", [sub[0].inputs[0]], out,
                       {"ops": sub, "tensors": tensors, "conv": op, "pre": pre, "pool": pool, "post": post,
                        "final": final, "geometry": conv_geometry(g, op), "input_steps": inputs}, names)
        g.ops[g.ops.index(sub[-1])] = new
        for o in sub[:-1]:
            g.ops.remove(o)
            del g.tensors[o.output]
        count += 1
    if stream:
        plan_streams(g)
    return count


def all_ops(graph):
    """The graph's ops and, right after each conv_pool op, its sub-ops (what the graph computes)."""
    for op in graph.ops:
        yield op
        if op.kind == "conv_pool":
            yield from op.params["ops"]


def all_tensors(graph):
    """The graph's tensors and the intermediate tensors of its conv_pool ops."""
    out = dict(graph.tensors)
    for op in graph.ops:
        if op.kind == "conv_pool":
            out.update(op.params["tensors"])
    return out


def unfuse(g):
    """A copy of g with every conv_pool op replaced by its sub-ops (for tests)."""
    import copy
    h = copy.copy(g)
    h.tensors, h.ops = dict(g.tensors), []
    for op in g.ops:
        if op.kind == "conv_pool":
            h.tensors.update(op.params["tensors"])
            h.ops.extend(op.params["ops"])
        else:
            h.ops.append(op)
    return h


# --------------------------------------------------------------------------------------------------
# Geometry


def pool_geometry(op):
    """The pool window (dict as graph.py's pool ops) over the conv positions: the pool op's, or a 1x1
    window with stride 1 (identity) when the chain has no pool."""
    conv_geom = op.params["geometry"]
    if op.params["pool"] is not None:
        return op.params["pool"].params["geometry"]
    ch, cw = conv_geom.conv_shape
    out_c = int(op.params["conv"].params["weights"].shape[-1])
    return {"pool": (1, 1), "strides": (1, 1), "pad": (0, 0), "out_hw": (ch, cw), "in_shape": (ch, cw, out_c)}


def input_rows(op):
    """[(lo, hi)] per output row of a conv_pool op: the input rows (inclusive, clipped to the input)
    that output row reads."""
    geom = op.params["geometry"]
    pg = pool_geometry(op)
    (kh, _), (sh, _), (pad_t, _) = geom.kernel, geom.strides, geom.pad
    ch = geom.conv_shape[0]
    in_h = geom.in_shape[0]
    (ph, _), (psh, _), (ptop, _), (oh, _) = pg["pool"], pg["strides"], pg["pad"], pg["out_hw"]
    rows = []
    for r in range(oh):
        c0, c1 = max(0, r * psh - ptop), min(ch - 1, r * psh - ptop + ph - 1)
        rows.append((max(0, c0 * sh - pad_t), min(in_h - 1, c1 * sh - pad_t + kh - 1)))
    return rows


def ring_rows(op):
    """Rows of its input a conv_pool op needs at once (the widest window), or None when the rows it
    reads do not advance monotonically."""
    rows = input_rows(op)
    if any(b[0] < a[0] or b[1] < a[1] for a, b in zip(rows, rows[1:])):
        return None
    return max(hi - lo + 1 for lo, hi in rows)


def plan_streams(g):
    """Mark every conv_pool op whose float32 output only another conv_pool op reads as streamed into it
    (params["ring_rows"], params["stream_to"]) when the ring is smaller than the map, and move it right
    before its reader. Returns the number of streamed ops."""
    count = 0
    cons = g.consumers()
    for op in list(g.ops):
        if op.kind != "conv_pool" or op.params.get("final") is not None or "ring_rows" in op.params:
            continue
        t = g.tensors[op.output]
        if not _single_reader(g, cons, op.output) or len(t.shape) not in (2, 3):
            continue
        reader = cons[op.output][0]
        if reader.kind != "conv_pool":
            continue
        rows = ring_rows(reader)
        height = t.shape[0] if len(t.shape) == 3 else 1
        if rows is None or rows >= height:
            continue
        op.params["ring_rows"] = int(rows)
        op.params["stream_to"] = reader.output
        g.ops.remove(op)
        g.ops.insert(g.ops.index(reader), op)
        count += 1
    # streamed ops run inside their reader: keep each stream group contiguous (a producer right
    # before its reader, recursively), which the moves above do in op order
    return count


def streamed_producer(g, op):
    """The conv_pool op streamed into op (its input's producer, when marked), or None."""
    if op.kind != "conv_pool":
        return None
    prod = g.producer().get(op.inputs[0])
    if prod is not None and prod.params.get("stream_to") == op.output:
        return prod
    return None


def op_times(g):
    """{op index: the op index whose time it runs at}: a streamed op runs while its reader runs (and
    so, transitively, at the time of the last op of its stream group)."""
    index = {op.output: i for i, op in enumerate(g.ops)}
    times = {}
    for i, op in enumerate(g.ops):
        j = i
        target = op.params.get("stream_to") if op.kind == "conv_pool" else None
        while target is not None:
            j = index[target]
            target = g.ops[j].params.get("stream_to") if g.ops[j].kind == "conv_pool" else None
        times[i] = j
    return times


def ring_bytes(g, op):
    """Bytes of a streamed op's output ring (float32 rows)."""
    t = g.tensors[op.output]
    width = t.size // (t.shape[0] if len(t.shape) == 3 else 1)
    return 4 * op.params["ring_rows"] * width


def scratch_bytes(op):
    """The conv_pool kernel's scratch (floats): one conv position's accumulators, the pooled values
    (out_c each) and one kernel row of taps (KW * C)."""
    geom = op.params["geometry"]
    return 4 * (2 * int(op.params["conv"].params["weights"].shape[-1]) + int(geom.kernel[1] * geom.in_shape[2]))


def weight_bytes8(op):
    """Binary weights of a conv_pool op as the kernel reads them: uint8 (taps * ceil(O / 8),): byte
    (tap t, block b) has bit i set when weight (t, 8b + i) is +1 (taps in (ky, kx, c) order)."""
    w = np.asarray(op.params["conv"].params["weights"], dtype=np.float32)
    o = w.shape[-1]
    bits = (w > 0).reshape(-1, o)
    nblk = (o + 7) // 8
    padded = np.zeros((bits.shape[0], nblk * 8), dtype=bool)
    padded[:, :o] = bits
    return np.packbits(padded.reshape(bits.shape[0], nblk, 8), axis=2, bitorder="little").reshape(-1)
