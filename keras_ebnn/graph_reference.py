"""NumPy executor of the graph IR (`keras_ebnn.graph`): the executable definition of its semantics.

Tensors are held per batch as: bits -> bool arrays (True = +1), int -> int64, float32 -> float32,
each with shape (N,) + tensor.shape. Bits and integers are exact; float ops follow the documented
float32 operation order (sequential sums, no fused multiply-add), so a C kernel doing the same
operations in the same order gives the same bits. `block` ops run `keras_ebnn.reference.run_block`,
so a chain of blocks gives the reference executor's results bit for bit.
"""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from . import graph_quant, reference
from .graph_quant import QUANT_KINDS

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


def _binary_acc(x, op, depthwise=False):
    """Exact integer accumulators of bconv / bdepthwise (int64)."""
    geom = op.params["geometry"]
    w = np.where(op.params["weights"], 1, -1)  # (O, KH, KW, C) or (M, KH, KW, C)
    values = np.where(x, 1, -1).astype(np.int8).reshape((x.shape[0],) + geom.in_shape)
    win = _windows(values, geom.kernel, geom.strides, geom.pad, geom.conv_shape, np.int8(geom.pad_value))
    n, oh, ow = win.shape[:3]
    if depthwise:  # (N, OH, OW, KH, KW, C) x (M, KH, KW, C) -> (N, OH, OW, C, M)
        acc = np.einsum("nyxhwc,mhwc->nyxcm", win.astype(np.int64), w.astype(np.int64))
        return acc.reshape(n, oh, ow, -1)
    cols = win.reshape(n, oh, ow, -1).astype(np.float64)
    return np.rint(cols @ w.reshape(w.shape[0], -1).T.astype(np.float64)).astype(np.int64)


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
        return reference.run_block(block, x).reshape((n,) + out_shape)
    if kind == "bconv":
        return _binary_acc(args[0], op).reshape((n,) + out_shape)
    if kind == "bdepthwise":
        return _binary_acc(args[0], op, depthwise=True).reshape((n,) + out_shape)
    if kind == "bdense":
        a = np.where(args[0], 1.0, -1.0)
        w = np.where(p["weights"], 1.0, -1.0)  # (O, N)
        return np.rint(a @ w.T).astype(np.int64)
    if kind == "to_float":
        return _to_float(args[0], graph.tensors[op.inputs[0]])
    if kind == "affine":
        return (args[0] * p["a"].astype(np.float32) + p["b"].astype(np.float32)).astype(np.float32)
    if kind == "activation":
        return _activation(args[0], p)
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
    if kind in QUANT_KINDS:  # integer-only graphs (keras_ebnn.graph_quant defines them)
        return graph_quant.run_op(graph, op, args)
    if kind == "threshold":
        x = args[0]
        return np.where(p["flip"], -x, x) >= p["threshold"].astype(x.dtype if x.dtype == np.float32 else np.float64)
    raise ValueError(f"unknown op kind {kind!r}")


def _check_dtype(value, tensor):
    want = {"bits": np.bool_, "int": np.int64, "float32": np.float32, "int8": np.int64}[tensor.dtype]
    assert value.dtype == want, f"{tensor.name}: {value.dtype} instead of {tensor.dtype}"
    if tensor.dtype == "int8" and value.size:
        assert -128 <= value.min() and value.max() <= 127, tensor.name
    if tensor.dtype == "int" and value.size:
        assert tensor.lo <= value.min() and value.max() <= tensor.hi, (tensor.name, tensor.lo, tensor.hi)


def run(graph, x, keep=False, batch=BATCH, hook=None):
    """Run `graph` on inputs x (N, *input shape). Returns {"logits", "classes"} and, with keep=True,
    "tensors": every tensor's values (name -> array, batch first).

    hook(tensor, values, start) -> values, if given, is called on every op output (the batch's rows
    start .. start + len - 1) and its result is used from there on: tests use it to compare each
    tensor with Keras and to continue from Keras's values (checking each op on the same inputs)."""
    x = np.asarray(x)
    inp = graph.input_tensor
    if x.shape[1:] != inp.shape:
        raise ValueError(f"input shape {x.shape[1:]} does not match the graph's {inp.shape}")
    logits, kept = [], {}
    for start in range(0, len(x), batch):
        part = x[start:start + batch]
        values = {graph.input: part.astype(np.int64) if inp.dtype in ("int", "int8") else part.astype(np.float32)}
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
            if not keep:  # free what nobody reads any more
                for t in op.inputs:
                    readers[t] -= 1
                    if readers[t] == 0 and t != graph.output:
                        del values[t]
        logits.append(values[graph.output].reshape(len(part), -1))
        if keep:
            for name, v in values.items():
                kept.setdefault(name, []).append(v)
    logits = np.concatenate(logits) if logits else np.zeros((0, graph.num_classes), np.float32)
    result = {"logits": logits, "classes": np.argmax(logits, axis=1)}
    if keep:
        result["tensors"] = {k: np.concatenate(v) for k, v in kept.items()}
    return result

