"""Optional int8 weights for the full-precision layers of a graph (`export(..., float_weights="int8")`).

A full-precision `conv`, `depthwise` or `dense` op of `keras_ebnn.ir.graph` keeps float32 weights by
default (4 bytes each, the Keras values). With int8 weights, each output channel o gets one float32
scale and int8 weights, symmetric, per channel (as TFLite's per-channel weight quantization):

    s[o] = float32(max_k |w[k, o]| / 127)     (1.0 when the channel is all zeros)
    q[k, o] = clip(round_half_even(w[k, o] / s[o]), -127, 127)      (int8; computed in float64)

and the op computes, in float32, exactly the graph op on the weights float32(q) (small integers:
exact), followed by a new `affine` op y = acc * s[o] + 0 -- the rewrite (keras_ebnn.ir.graph.int8_weights)
is a graph transformation, so the reference executor, the fusion (the scale folds into a following threshold like any affine), the
memory planner and the C generator all see ordinary ops. The op keeps the int8 values in
params["weights_int8"] (same layout as "weights") and params["weight_scale_int8"] = s; the C kernels
read int8 from flash and convert each to float before the multiply, the same float32 operations
as the reference. Layers whose weights are binary (`binary_weights`: +-1, or scaled +-s of
magnitude_aware_sign) are left alone: they are already exact in one bit.

What it changes: the model's float weights are rounded to 8 bits, so its outputs differ from Keras's
by the quantization error (not by float rounding): `compare(graph_f32, graph_int8, x)` measures it,
and the export's report says the weights are int8. Flash for those weights drops ~4x.
"""
import numpy as np

QUANTIZED_KINDS = ("conv", "depthwise", "dense")


def _per_channel(w, kind):
    """(weights as (K, O) float64, reshape back) with O the op's output channels in output order."""
    w = np.asarray(w, dtype=np.float64)
    if kind == "depthwise":  # (KH, KW, C, M): output channel c * M + m
        kh, kw, c, m = w.shape
        return w.reshape(kh * kw, c * m), w.shape
    return w.reshape(-1, w.shape[-1]), w.shape  # conv (KH, KW, C, O), dense (N, O)


def quantize(w, kind):
    """(q int8 with w's shape, s float32 (O,)) for a float op's weights (see the module docstring)."""
    flat, shape = _per_channel(w, kind)
    peak = np.abs(flat).max(axis=0)
    s = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(flat / s.astype(np.float64)), -127, 127).astype(np.int8)
    return q.reshape(shape), s


def quantizable(op):
    return op.kind in QUANTIZED_KINDS and not op.params.get("binary_weights") and "weights_int8" not in op.params


def weight_bytes(g):
    """{"float32": bytes, "int8": bytes} of the full-precision ops' weights (+ their scales)."""
    from .graph_fuse import all_ops
    out = {"float32": 0, "int8": 0}
    for op in all_ops(g):  # conv_pool ops (graph_fuse.py) hold their conv / dense op
        if op.kind in QUANTIZED_KINDS and not op.params.get("binary_weights"):
            if "weights_int8" in op.params:
                out["int8"] += op.params["weights_int8"].size + 4 * op.params["weight_scale_int8"].size
            else:
                out["float32"] += 4 * np.asarray(op.params["weights"]).size
    return out
