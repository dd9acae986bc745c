"""NumPy reference executor of the graph IR (`keras_ebnn.ir.graph`): the executable definition of its
semantics, and of the fused blocks' (`keras_ebnn.ir.blocks`; a chain of blocks runs as the graph of one
`block` op per block, graph.from_lowered).

Tensors are held per batch as: bits -> bool arrays (True = +1), int -> int64, float32 -> float32,
each with shape (N,) + tensor.shape. Bits and integers are exact (integer accumulators are matrix
products on +1/-1/0 values, exact in the float mantissa); float ops follow the documented float32
operation order (sequential sums, no fused multiply-add), so a C kernel doing the same operations in
the same order gives the same bits.
"""
from types import SimpleNamespace

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .blocks import class_threshold, classes_of, spatial
from .fixed_point import ADD_LEFT_SHIFT, QMAX, QMIN, QUANT_KINDS, mbqm
from .graph import as_graph

BATCH = 256


def _windows(x, kernel, strides, pad, out_hw, fill):
    """(N, H, W, C) -> (N, OH, OW, KH, KW, C) windows; taps outside the input read `fill`."""
    n, h, w, c = x.shape
    (kh, kw), (sh, sw), (top, left), (oh, ow) = kernel, strides, pad, out_hw
    need_h, need_w = (oh - 1) * sh + kh, (ow - 1) * sw + kw
    padded = np.full((n, max(need_h, top + h), max(need_w, left + w), c), fill, dtype=x.dtype)
    padded[:, top:top + h, left:left + w, :] = x
    win = sliding_window_view(padded[:, :need_h, :need_w], (kh, kw), axis=(1, 2))  # (N, OH', OW', C, KH, KW)
    return win[:, ::sh, ::sw].transpose(0, 1, 2, 4, 5, 3)


def _in_bounds(geom):
    """bool (OH, OW, PH, PW): which taps of each pooling window lie inside the input."""
    h, w, _ = geom["in_shape"]
    (ph, pw), (sh, sw), (top, left), (oh, ow) = geom["pool"], geom["strides"], geom["pad"], geom["out_hw"]
    ys = np.arange(oh)[:, None] * sh - top + np.arange(ph)[None, :]
    xs = np.arange(ow)[:, None] * sw - left + np.arange(pw)[None, :]
    vy, vx = (ys >= 0) & (ys < h), (xs >= 0) & (xs < w)
    return vy[:, None, :, None] & vx[None, :, None, :]


def _float_conv(x, op):
    geom, w = op.params["geometry"], op.params["weights"]  # (KH, KW, C, O)
    win = _windows(x.reshape((x.shape[0],) + geom.in_shape), geom.kernel, geom.strides, geom.pad,
                   geom.conv_shape, np.float32(op.params["pad_value"]))
    n, oh, ow = win.shape[:3]
    cols = win.reshape(n, oh, ow, -1)  # (ky, kx, c) order
    wf = w.reshape(-1, w.shape[-1]).astype(np.float32)
    acc = np.zeros((n, oh, ow, wf.shape[1]), dtype=np.float32)
    for k in range(cols.shape[-1]):
        acc = acc + cols[..., k, None] * wf[k]  # float32 product, then float32 sum
    return acc


def _float_depthwise(x, op):
    geom, w = op.params["geometry"], op.params["weights"]  # (KH, KW, C, M)
    kh, kw, c, m = w.shape
    win = _windows(x.reshape((x.shape[0],) + geom.in_shape), geom.kernel, geom.strides, geom.pad,
                   geom.conv_shape, np.float32(op.params["pad_value"]))  # (N, OH, OW, KH, KW, C)
    acc = np.zeros(win.shape[:3] + (c, m), dtype=np.float32)
    for ky in range(kh):
        for kx in range(kw):
            acc = acc + win[:, :, :, ky, kx, :, None] * w[ky, kx].astype(np.float32)
    return acc.reshape(win.shape[:3] + (c * m,))


def _float_dense(x, op):
    w = op.params["weights"].astype(np.float32)  # (N_in, O)
    acc = np.zeros(x.shape[:-1] + (w.shape[1],), dtype=np.float32)
    for k in range(w.shape[0]):
        acc = acc + x[..., k, None] * w[k]
    return acc


def _int_conv_acc(values, w, geom, pad_fill):
    """Exact integer accumulators (N, OH, OW, O) of +1/-1 weights w (O, KH*KW*C) over the windows of
    integer `values` (N, H, W, C): a float matrix product, float32 while sums stay under 2**24."""
    cols = _windows(values, geom.kernel, geom.strides, geom.pad, geom.conv_shape, pad_fill)
    cols = cols.reshape(cols.shape[:3] + (-1,))  # (ky, kx, c) order
    bound = float(w.shape[1]) * float(max(np.abs(values).max(initial=0), abs(pad_fill)))
    ftype = np.float32 if bound < 2 ** 24 else np.float64
    return np.rint(cols.astype(ftype) @ w.T.astype(ftype)).astype(np.int64)


def _dense_acc(bits, weights):
    """Exact accumulators (N, O) of bits (N, ...) times +1/-1 weights (O, N_in)."""
    ftype = np.float32 if weights.shape[1] < 2 ** 24 else np.float64  # exact: |sum| <= n_in
    a = np.where(bits.reshape(bits.shape[0], -1), 1, -1).astype(ftype)
    return np.rint(a @ np.where(weights, 1, -1).astype(ftype).T).astype(np.int64)


def _binary_acc(x, op, depthwise=False):
    """Exact integer accumulators of bconv / bdepthwise (int64)."""
    geom = op.params["geometry"]
    w = np.where(op.params["weights"], 1, -1)  # (O, KH, KW, C) or (M, KH, KW, C)
    values = np.where(x, 1, -1).astype(np.int8).reshape((x.shape[0],) + geom.in_shape)
    if not depthwise:
        return _int_conv_acc(values, w.reshape(w.shape[0], -1), geom, np.int8(geom.pad_value))
    # (N, OH, OW, KH, KW, C) x (M, KH, KW, C) -> (N, OH, OW, C, M)
    win = _windows(values, geom.kernel, geom.strides, geom.pad, geom.conv_shape, np.int8(geom.pad_value))
    acc = np.einsum("nyxhwc,mhwc->nyxcm", win.astype(np.int64), w.astype(np.int64))
    return acc.reshape(win.shape[:3] + (-1,))


# --------------------------------------------------------------------------------------------------
# Fused blocks (keras_ebnn.ir.blocks)


def _input_values(spec, x):
    """Model input -> (values, integer?) as the first block's accumulator sees them."""
    if spec.mode == "float":
        return np.asarray(x, dtype=np.float32), False
    if spec.mode == "uint8":
        return spec.q_mul * np.asarray(x, dtype=np.int64) + spec.q_add, True
    if spec.mode == "sign_float":
        return np.where(np.asarray(x, dtype=np.float32) >= np.float32(spec.sign_threshold), 1, -1), True
    if spec.mode == "sign_uint8":
        return np.where(np.asarray(x, dtype=np.int64) >= spec.sign_threshold, 1, -1), True
    raise ValueError(f"unknown input mode {spec.mode!r}")


def _conv_acc(values, block, integer, pad_fill):
    """A conv block's accumulators (N, conv_h, conv_w, O): exact integers, or, for a float input,
    float32 sums over the taps one by one in the order the C kernel uses."""
    geom = block.geometry
    w = np.where(block.weights, 1, -1).reshape(block.weights.shape[0], -1)  # (O, K)
    if integer:
        return _int_conv_acc(values, w, geom, pad_fill)
    cols = _windows(values, geom.kernel, geom.strides, geom.pad, geom.conv_shape, np.float32(pad_fill))
    cols = cols.reshape(cols.shape[:3] + (-1,))
    wf = w.astype(np.float32)
    acc = np.zeros(cols.shape[:3] + (w.shape[0],), dtype=np.float32)
    for k in range(cols.shape[3]):
        acc = acc + cols[..., k, None] * wf[:, k]
    return acc


def _pool_threshold(acc, block):
    """Pooling (max or min per channel, block.pool_min) followed by `>= threshold`: (N, ch, cw, O) -> bits."""
    geom = block.geometry
    acc = acc.astype(np.float64)
    if geom.pool is not None:
        pooled = [reduce(_windows(acc, geom.pool, geom.pool_strides, geom.pool_pad, geom.out_hw, fill), axis=(3, 4))
                  for fill, reduce in ((-np.inf, np.max), (np.inf, np.min))]
        acc = np.where(block.pool_min, pooled[1], pooled[0])
    return acc >= block.threshold.astype(np.float64)


def run_block(block, inputs):
    """Run one block on one batch. `inputs`: model input (first block) or bool bits (N, H, W, C)."""
    if block.kind == "input_conv":
        values, integer = _input_values(block.input, inputs)
        if block.geometry.pad_value == 1:
            pad_fill = block.input.pad_q if block.input.mode == "uint8" else 1
        else:
            pad_fill = 0
        return _pool_threshold(_conv_acc(values, block, integer, pad_fill), block)
    if block.kind == "binary_conv":
        values = np.where(inputs, 1, -1).astype(np.int8)
        return _pool_threshold(_conv_acc(values, block, True, block.geometry.pad_value), block)
    if block.kind == "binary_dense":
        return (_dense_acc(inputs, block.weights) >= block.threshold)[:, None, None, :]
    if block.kind == "output_dense":
        acc = _dense_acc(inputs, block.weights).astype(np.float32)
        return acc * block.scale.astype(np.float32) + block.offset.astype(np.float32)
    raise ValueError(f"unknown block kind {block.kind!r}")


def _pool(x, geom, reduce, fill):
    xs = x.reshape((x.shape[0],) + tuple(geom["in_shape"]))
    win = _windows(xs, geom["pool"], geom["strides"], geom["pad"], geom["out_hw"], fill)
    return reduce(win)


def _max_pool(x, geom):
    if x.dtype == bool:
        return _pool(x, geom, lambda w: w.any(axis=(3, 4)), False)
    fill = -np.inf if x.dtype == np.float32 else np.iinfo(np.int64).min
    return _pool(x, geom, lambda w: w.max(axis=(3, 4)), np.array(fill, dtype=x.dtype))


def _avg_pool(x, geom, divisor):
    if x.dtype == np.float32:
        mask = _in_bounds(geom)
        win = _pool(x, geom, lambda w: w, np.float32(0))  # (N, OH, OW, PH, PW, C)
        n, oh, ow, ph, pw, c = win.shape
        acc = np.zeros((n, oh, ow, c), dtype=np.float32)
        for py in range(ph):
            for px in range(pw):
                valid = mask[:, :, py, px][None, :, :, None]
                acc = np.where(valid, acc + win[:, :, :, py, px, :], acc)  # in-bounds taps only
        count = mask.sum(axis=(2, 3)).astype(np.float32)[None, :, :, None]
        return acc / count
    values = np.where(x, 1, -1) if x.dtype == bool else x.astype(np.int64)
    return _pool(values, geom, lambda w: w.sum(axis=(3, 4)), np.int64(0))  # the divisor stays apart


def _activation(x, params):
    fn = params["fn"]
    if fn == "relu":
        return np.maximum(x, np.float32(0))
    if fn == "relu6":
        return np.minimum(np.maximum(x, np.float32(0)), np.float32(6))
    if fn == "hard_tanh":
        return np.minimum(np.maximum(x, np.float32(-1)), np.float32(1))
    if fn == "leaky_relu":
        return np.where(x >= 0, x, x * np.float32(params["alpha"])).astype(np.float32)
    if fn == "tanh":
        return np.tanh(x).astype(np.float32)
    if fn == "sigmoid":
        return (np.float32(1) / (np.float32(1) + np.exp(-x))).astype(np.float32)
    raise ValueError(f"unknown activation {fn!r}")


def _to_float(x, tensor):
    if x.dtype == bool:
        return np.where(x, np.float32(1), np.float32(-1))
    v = x.astype(np.float32)
    if tensor.divisor is not None:
        v = v / tensor.divisor.astype(np.float32)
    return v


def run_op(graph, op, args):
    """Output of one op (batch-first numpy array) given its input arrays."""
    p, kind = op.params, op.kind
    out_shape = graph.tensors[op.output].shape
    n = args[0].shape[0]
    if kind == "block":
        block = p["block"]
        if block.kind == "input_conv":
            x = args[0].reshape((n,) + tuple(block.input.shape))
        elif block.kind in ("binary_dense", "output_dense"):
            x = args[0].reshape(n, -1)
        else:
            x = args[0].reshape((n,) + tuple(block.geometry.in_shape))
        return run_block(block, x).reshape((n,) + out_shape)
    if kind == "bconv":
        return _binary_acc(args[0], op).reshape((n,) + out_shape)
    if kind == "bdepthwise":
        return _binary_acc(args[0], op, depthwise=True).reshape((n,) + out_shape)
    if kind == "bdense":
        lead = args[0].shape[:-1]
        return _dense_acc(args[0].reshape(-1, args[0].shape[-1]), p["weights"]).reshape(lead + (-1,))
    if kind == "to_float":
        return _to_float(args[0], graph.tensors[op.inputs[0]])
    if kind == "affine":
        return (args[0] * p["a"].astype(np.float32) + p["b"].astype(np.float32)).astype(np.float32)
    if kind == "activation":
        return _activation(args[0], p)
    if kind == "div":
        return (args[0] / p["d"].astype(np.float32)).astype(np.float32)
    if kind == "conv":
        return _float_conv(args[0], op).reshape((n,) + out_shape)
    if kind == "depthwise":
        return _float_depthwise(args[0], op).reshape((n,) + out_shape)
    if kind == "dense":
        return _float_dense(args[0], op)
    if kind == "add":
        acc = args[0]
        for a in args[1:]:
            acc = acc + a
        return acc
    if kind == "concat":
        return np.concatenate(args, axis=-1)
    if kind in ("max_pool", "global_max"):
        return _max_pool(args[0], p["geometry"]).reshape((n,) + out_shape)
    if kind in ("avg_pool", "global_avg"):
        return _avg_pool(args[0], p["geometry"], graph.tensors[op.output].divisor).reshape((n,) + out_shape)
    if kind == "reshape":
        return args[0].reshape((n,) + out_shape)
    if kind == "sign":
        return args[0] >= 0
    if kind in QUANT_KINDS:  # integer-only graphs (keras_ebnn.passes.graph_quant defines them)
        return run_quant_op(graph, op, args)
    if kind == "threshold":
        x = args[0]
        return np.where(p["flip"], -x, x) >= p["threshold"].astype(x.dtype if x.dtype == np.float32 else np.float64)
    if kind == "conv_pool":  # keras_ebnn/passes/graph_fuse.py: its sub-ops, one after the other
        return run_fused(graph, op, args[0])
    raise ValueError(f"unknown op kind {kind!r}")


def run_fused(graph, op, x):
    """The reference value of a conv_pool op: its sub-ops, one after the other."""
    view = SimpleNamespace(tensors={**graph.tensors, **op.params["tensors"]})
    for o in op.params["ops"]:
        x = run_op(view, o, [x])
    return x


def _check_dtype(value, tensor):
    want = {"bits": np.bool_, "int": np.int64, "float32": np.float32, "int8": np.int64}[tensor.dtype]
    assert value.dtype == want, f"{tensor.name}: {value.dtype} instead of {tensor.dtype}"
    if tensor.dtype == "int8" and value.size:
        assert -128 <= value.min() and value.max() <= 127, tensor.name
    if tensor.dtype == "int" and value.size:
        assert tensor.lo <= value.min() and value.max() <= tensor.hi, (tensor.name, tensor.lo, tensor.hi)


def run(model, x, keep=False, batch=BATCH, hook=None, keep_bits=False, progress=None):
    """Run `model` (a keras_ebnn.ir.graph Graph, an exporters/graph_c.py GraphModel, or a chain of blocks:
    keras_ebnn.ir.blocks.LoweredModel) on inputs x (N, *input shape). Returns {"logits", "classes"};
    with keep=True "tensors": every tensor's values (name -> array, batch first); with keep_bits=True
    "bits": the values of the bits tensors other than the output, in op order (a chain: one bool
    array (N, H, W, C) per hidden block).

    hook(tensor, values, start) -> values, if given, is called on every op output (the batch's rows
    start .. start + len - 1) and its result is used from there on: tests use it to compare each
    tensor with Keras and to continue from Keras's values (checking each op on the same inputs).
    progress(done, total), if given, is called after each batch."""
    graph = as_graph(model)
    x = np.asarray(x)
    inp = graph.input_tensor
    if x.ndim in (2, 3) and tuple(inp.shape) == spatial(x.shape[1:]):  # Keras's (n,) / (L, C) as (1, 1, n) / (1, L, C)
        x = x.reshape((len(x),) + tuple(inp.shape))
    if x.shape[1:] != inp.shape:
        raise ValueError(f"input shape {x.shape[1:]} does not match the model's {inp.shape}")
    bits = [op.output for op in graph.ops if graph.tensors[op.output].dtype == "bits" and op.output != graph.output]
    wanted = set(graph.tensors) if keep else set(bits) if keep_bits else set()
    logits, kept = [], {}
    for start in range(0, len(x), batch):
        part = x[start:start + batch]
        values = {graph.input: part.astype(np.int64) if inp.dtype in ("int", "int8") else part.astype(np.float32)}
        if graph.input in wanted:
            kept.setdefault(graph.input, []).append(values[graph.input])
        readers = {}
        for op in graph.ops:
            for t in op.inputs:
                readers[t] = readers.get(t, 0) + 1
        for op in graph.ops:
            out = run_op(graph, op, [values[t] for t in op.inputs])
            _check_dtype(out, graph.tensors[op.output])
            if hook is not None:
                out = hook(graph.tensors[op.output], out, start)
                _check_dtype(out, graph.tensors[op.output])
            values[op.output] = out
            if op.output in wanted:
                kept.setdefault(op.output, []).append(out)
            for t in op.inputs:  # free what nobody reads any more
                readers[t] -= 1
                if readers[t] == 0 and t != graph.output:
                    del values[t]
        logits.append(values[graph.output].reshape(len(part), -1))
        if progress is not None:
            progress(min(start + batch, len(x)), len(x))
    logits = np.concatenate(logits) if logits else np.zeros((0, graph.num_classes), np.float32)
    result = {"logits": logits, "classes": classes_of(logits, class_threshold(graph))}
    if keep:
        result["tensors"] = {k: np.concatenate(v) for k, v in kept.items()}
    if keep_bits:
        result["bits"] = [np.concatenate(kept[t]) if t in kept else np.zeros((0,) + graph.tensors[t].shape, bool)
                          for t in bits]
    return result


def predict(model, x):
    """Class indices for inputs `x`."""
    return run(model, x)["classes"]


# --------------------------------------------------------------------------------------------------
# Reference semantics of the integer-only ops (keras_ebnn.passes.graph_quant builds them; called by run_op)


def _quant_windows(x, geom, fill, kind="conv"):
    if kind == "conv":
        return _windows(x.reshape((x.shape[0],) + tuple(geom.in_shape)), geom.kernel, geom.strides, geom.pad,
                   geom.conv_shape, fill)
    return _windows(x.reshape((x.shape[0],) + tuple(geom["in_shape"])), geom["pool"], geom["strides"], geom["pad"],
               geom["out_hw"], fill)


def run_quant_op(graph, op, args):
    p, kind = op.params, op.kind
    n = args[0].shape[0]
    out_shape = graph.tensors[op.output].shape
    if kind in ("conv_s8", "depthwise_s8"):
        v = args[0].astype(np.int64) - p["zp"]
        win = _quant_windows(v, p["geometry"], np.int64(p["pad_q"]))  # (N, OH, OW, KH, KW, C)
        w = p["weights"].astype(np.int64)
        if kind == "conv_s8":
            cols = win.reshape(win.shape[:3] + (-1,))
            acc = cols @ w.reshape(-1, w.shape[-1])
        else:
            acc = np.einsum("nyxhwc,hwcm->nyxcm", win, w).reshape(win.shape[:3] + (-1,))
        acc = acc + p["bias"]
        stage = p.get("stage")
        if p.get("pool") is not None:
            sign = np.ones(acc.shape[-1], np.int64)
            if stage is not None and stage["kind"] == "requant":
                sign = np.where(np.asarray(stage["M"]) < 0, -1, 1)  # the minimum for negative multipliers
            acc = _max_pool(acc * sign, p["pool"]).reshape((n,) + tuple(p["pool"]["out_hw"]) + (-1,)) * sign
        if stage is None:
            return acc.reshape((n,) + out_shape)
        if stage["kind"] == "requant":
            r = mbqm(acc - stage["zp_in"], stage["M"], stage["shift"])
            return np.clip(stage["zp_out"] + stage["offset"] + r, stage["lo"], stage["hi"]).reshape((n,) + out_shape)
        return (np.where(stage["flip"], -acc, acc) >= stage["threshold"]).reshape((n,) + out_shape)
    if kind == "dense_s8":
        v = args[0].astype(np.int64) - p["zp"]
        return v @ p["weights"].astype(np.int64) + p["bias"]
    if kind == "requant":
        src = graph.tensors[op.inputs[0]]
        x = np.where(args[0], 1, -1) if src.dtype == "bits" else args[0].astype(np.int64)
        rows = x.reshape(n, -1, len(p["M"]))  # element i uses entry i % len(M)
        r = mbqm(rows - p["zp_in"], p["M"], p["shift"])
        y = np.clip(p["zp_out"] + p["offset"] + r, p["lo"], p["hi"]).astype(np.int64)
        return y.reshape((n,) + out_shape)
    if kind == "lut":
        return p["table"][args[0].astype(np.int64) - QMIN]
    if kind == "add_s8":
        total = 0
        for a, z, m, e in zip(args, p["zp_in"], p["M_in"], p["shift_in"]):
            total = total + mbqm((a.astype(np.int64) - z) << ADD_LEFT_SHIFT, m, e)
        return np.clip(p["zp_out"] + mbqm(total, p["M_out"], p["shift_out"]), QMIN, QMAX)
    if kind == "concat_s8":
        parts = []
        for a, z, m, e, c in zip(args, p["zp_in"], p["M_in"], p["shift_in"], p["copy"]):
            a = a.astype(np.int64)
            parts.append(a if c else np.clip(p["zp_out"] + mbqm(a - z, m, e), QMIN, QMAX))
        return np.concatenate(parts, axis=-1)
    if kind == "bits_to_s8":
        return np.where(args[0], 1, -1).astype(np.int64)
    if kind in ("avg_pool_s8", "global_avg_s8"):
        geom = p["geometry"]
        v = args[0].astype(np.int64) - p["zp"]
        s = _quant_windows(v, geom, np.int64(0), kind="pool").sum(axis=(3, 4))
        cnt = _in_bounds(geom).sum(axis=(2, 3))[None, :, :, None].astype(np.int64)
        half = cnt // 2
        num = np.where(s >= 0, s + half, s - half)
        q = np.where(num >= 0, num // cnt, -((-num) // cnt))  # C division, truncating
        return (p["zp"] + q).reshape((n,) + out_shape)
    raise ValueError(f"unknown op kind {kind!r}")
