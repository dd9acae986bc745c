"""Integer-only graphs: `export(..., quantize="int8", representative_data=x)`.

`quantize_graph(model_or_graph, x)` turns a lowered float graph (`keras_ebnn.ir.graph`) into one whose
full-precision parts run in the TFLite int8 scheme, so the C it becomes has no floating-point
arithmetic at all (no soft-float routine on an FPU-less core). The default export stays the exact
float32 graph; this mode trades exactness against Keras for integer arithmetic (the export report and
`bench/int8_mode.py` state the agreement).

Arithmetic contract (the NumPy reference, `run_op` below, defines it; the C kernels equal it bit for bit)
-------------------------------------------------------------------------------------------------------
Tensors. The bits and integer tensors of the float graph (binary accumulators, fused blocks) are kept
as they are. Every float32 tensor becomes either
  * "int8": q in [-128, 127] with a per-tensor scale s > 0 and zero point zp (real = s * (q - zp)),
    calibrated TFLite-style from the representative data: [lo, hi] = [min(min x, 0), max(max x, 0)]
    of the float graph's tensor, s = (hi - lo) / 255 (1 when hi == lo), zp = clamp(round(-128 - lo / s));
  * or, where nothing needs it materialised, an int32 accumulator with a per-channel real scale
    (Tensor.scale; real = scale[c] * v): a conv / dense output feeding a max pool and a threshold
    never becomes int8 -- the threshold is compared to the accumulator itself.
The model input: raw uint8 when the model starts with Rescaling (as in the exact mode), else int8
with the input tensor's (scale, zero point) (`input_quantization`); the user quantizes a float input
as q = clamp(round(x / scale) + zero_point, -128, 127) (`quantize_input`). The output: int32 logits
with one scale (`Graph.quant["output_scale"]`), the class is their first maximum.

Fixed-point multiplier (TFLite's QuantizeMultiplier / MultiplyByQuantizedMultiplier, as gemmlowp and
CMSIS-NN round): a real multiplier r != 0 is r = q * 2^shift with 0.5 <= |q| < 1,
M = round_half_away(q * 2^31) (M = 2^30, shift + 1 when it reaches 2^31); |r| < 2^-31 gives M = 0.
mbqm(x, M, shift) = rdbpot(srdhm(x * 2^max(shift, 0), M), max(-shift, 0)) with
  srdhm(a, b) = (a * b + (a * b >= 0 ? 2^30 : 1 - 2^30)) / 2^31   (64-bit product, division truncating)
  rdbpot(x, e) = (x >> e) + ((x & (2^e - 1)) > ((2^e - 1) >> 1) + (x < 0 ? 1 : 0))  (arithmetic shift)
M may be negative here (a batch norm with a negative gamma); the formula is the same. Every left
shift is checked at export against the input's integer range (no int32 overflow).

Ops added to the graph IR (keras_ebnn/ir/graph.py; int8 values are held as int64 by the reference):
conv_s8 / depthwise_s8 / dense_s8   int8 x (zero point zp) -> int32 acc: acc = bias[o] + sum over the
        in-bounds taps of (x - zp) * w[tap, o] (w int8 per output channel, symmetric: s_w[o] =
        max|w| / 127, q = round_half_even(w / s_w)); out-of-bounds taps add (pad_q) * w with
        pad_q = round(pad_value / s_x) (0 for zero padding). Output real scale s_x * s_w[o].
        Weight layout as the float ops: conv (KH, KW, C, O), depthwise (KH, KW, C, M), dense (N, O).
        Fused into a conv (`fuse_convs`: the accumulators have no other reader): params["pool"], a
        max pool over the conv outputs (per channel the minimum where the fused requantization's
        multiplier is negative: the same as pooling after requantizing, requantization being monotone),
        and params["stage"], a requant (int8 out) or threshold (bits out) with the ops' own parameters;
        computed per pooled output, the full-resolution accumulators are never stored. A conv ->
        requant (int8) -> max_pool is first rewritten conv -> max_pool -> requant (`pool_before_requant`)
        where every channel's multiplier is >= 0; `fuse_convs` fuses the remaining conv -> requant ->
        max_pool (some multiplier negative) directly: the maximum of the requantized values is the
        requantization of the minimum for those channels, which the fused form computes.
requant  int32 / int8 / raw uint8 x -> int8 or int32 y, per channel c:
        y = clamp(zp_out + offset[c] + mbqm(x - zp_in, M[c], shift[c]), lo, hi)  (sum in 64 bits)
        -- an affine (bias, batch norm, Rescaling) and a relu / relu6 / hard_tanh fold into M, offset
        and [lo, hi]; offset[c] = round_half_away(b[c] / s_out).
lut      int8 -> int8 through a 256-entry table t[q + 128] (any activation, e.g. tanh, sigmoid:
        t[q] = quantize(f(dequantize(q))) computed in float64 at export).
add_s8   TFLite's int8 add: v_i = mbqm((x_i - zp_i) * 2^20, M_i, shift_i) with r_i = s_i / (2 max s);
        y = clamp(zp_out + mbqm(sum v_i, M_out, shift_out), -128, 127), r_out = 2 max s / (2^20 s_out).
concat_s8  channel concatenation; input i: y = clamp(zp_out + mbqm(x - zp_i, M_i, shift_i), -128, 127)
        (a plain copy when its scale and zero point are the output's).
bits_to_s8  bits -> int8 +1 / -1 (scale 1, zero point 0).
avg_pool_s8 (and global)  sum s of (x - zp) over the in-bounds taps, n of them: y = zp + (s >= 0 ?
        (s + n / 2) / n : (s - n / 2) / n) (C division, truncating): TFLite's rounding; same scale.
max_pool / global_max on int8 (same scale) or on an int32 accumulator (its scale), threshold on int8
or int32 (integer thresholds: bit = (flip ? -x : x) >= t), reshape: the existing ops.
Batch norms and biases after a conv fold into the accumulator's real scale and offset (the per-channel
weight quantization makes that the same as folding them into the weights first).
"""
import math

import numpy as np

from ..errors import UnsupportedModelError
from ..ir.fixed_point import (ADD_LEFT_SHIFT, INT32_MAX, INT32_MIN, QMAX, QMIN, QUANT_KINDS,  # noqa: F401
                          mbqm, rdbpot, srdhm)
from ..ir.graph import Graph, Op, Tensor

LOGIT_BITS = 20  # the int32 logits use about +-2^20 for the calibrated logit range
SUPPORTED = ("quantize='int8' supports the graph ops conv / depthwise / dense (float or binary weights), "
             "affine (bias, batch norm, Rescaling), relu / relu6 / hard_tanh / leaky_relu / tanh / sigmoid, "
             "add, concatenate, max / average / global pooling, flatten / reshape, sign and thresholds, "
             "and every binary block.")


# --------------------------------------------------------------------------------------------------
# Fixed-point arithmetic (see the module docstring)


def _round_away(x):
    x = np.asarray(x, dtype=np.float64)
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def quantize_multiplier(real):
    """(M, shift) of a real multiplier (TFLite's QuantizeMultiplier, signed)."""
    real = float(real)
    if real == 0.0 or not math.isfinite(real):
        if not math.isfinite(real):
            raise ValueError(f"multiplier {real} is not finite")
        return 0, 0
    q, e = math.frexp(real)
    m = int(_round_away(q * 2.0 ** 31))
    if abs(m) == 2 ** 31:
        m //= 2
        e += 1
    if e < -31:
        return 0, 0
    if e > 30:
        raise ValueError(f"multiplier {real:g} is too large for the fixed-point scheme")
    return m, e


def _multipliers(real):
    """int32 M (C,), int8 shift (C,) of per-channel real multipliers."""
    pairs = [quantize_multiplier(r) for r in np.asarray(real, dtype=np.float64).reshape(-1)]
    return np.array([p[0] for p in pairs], dtype=np.int64), np.array([p[1] for p in pairs], dtype=np.int64)


def _check_left_shift(vmax, shift, what):
    left = int(np.max(np.maximum(shift, 0), initial=0))
    if vmax * (2 ** left) >= 2 ** 31:
        raise UnsupportedModelError(f"quantize='int8': the requantization of {what} would overflow int32 "
                                    f"(values up to {vmax} times 2^{left}); its calibrated range is too narrow")


def qparams(lo, hi):
    """(scale, zero point) of a calibrated range (see the module docstring)."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    s = (hi - lo) / 255.0 if hi > lo else 1.0
    zp = int(np.clip(_round_away(-128.0 - lo / s), QMIN, QMAX))
    return s, zp


# --------------------------------------------------------------------------------------------------
# The pass


class _Lin:
    """How a float tensor of the source graph is represented: real = scale[c] * (v - zp) + offset[c]
    over the integer tensor `name` (int8, int32 or raw uint8), or bits (real = scale * (+-1) + offset).
    scale and offset are flat arrays of 1 value, one per channel, or one per element (row-major: an
    average pool's sum with a divisor per position)."""

    def __init__(self, name, zp=0, scale=1.0, offset=0.0):
        self.name, self.zp = name, int(zp)
        self.scale = np.asarray(scale, dtype=np.float64).reshape(-1)
        self.offset = np.asarray(offset, dtype=np.float64).reshape(-1)

    def per_tensor(self):
        return self.scale.size == 1 and self.offset.size == 1

    def is_q8(self, g):
        t = g.tensors[self.name]
        return t.dtype == "int8" and self.per_tensor() and self.offset[0] == 0.0 and self.scale[0] > 0


class _Quantizer:
    def __init__(self, src, calib):
        self.src, self.calib = src, calib
        self.tensors, self.ops, self.lin, self.count = {}, [], {}, 0

    # tensors ----------------------------------------------------------------------------------
    def new(self, shape, dtype, lo=None, hi=None, scale=None, zero_point=0, divisor=None):
        name = f"q{self.count}"
        self.count += 1
        self.tensors[name] = Tensor(name, tuple(shape), dtype, lo=lo, hi=hi, divisor=divisor)
        self.tensors[name].scale = scale
        self.tensors[name].zero_point = zero_point
        return name

    def copy_tensor(self, name):
        t = self.src.tensors[name]
        self.tensors[name] = Tensor(name, t.shape, t.dtype, lo=t.lo, hi=t.hi, divisor=t.divisor, keras=t.keras)
        return name

    def emit(self, kind, inputs, output, params, layers):
        self.ops.append(Op(kind, list(inputs), output, params, list(layers)))
        return output

    def vrange(self, lin):
        """Inclusive range of v - zp of a representation's integer tensor."""
        t = self.tensors[lin.name]
        if t.dtype == "int8":
            return QMIN - lin.zp, QMAX - lin.zp
        if t.dtype == "bits":
            return -1, 1
        return t.lo - lin.zp, t.hi - lin.zp

    def qp(self, float_name):
        lo, hi = self.calib[float_name]
        return qparams(lo, hi)

    # materialisation ------------------------------------------------------------------------
    def as_q8(self, float_name, layers, params=None, clamp=None):
        """An int8 tensor holding float tensor `float_name` (params: its (scale, zp), default the
        calibrated ones); clamp: (lo, hi) real bounds of a fused relu / relu6 / hard_tanh."""
        lin = self.lin[float_name]
        if params is None and clamp is None and lin.is_q8(self):
            return lin.name, float(lin.scale[0]), lin.zp
        s, zp = params if params is not None else self.qp(float_name)
        if params is None and clamp is None and lin.is_q8(self) and (float(lin.scale[0]), lin.zp) == (s, zp):
            return lin.name, s, zp
        shape = self.src.tensors[float_name].shape
        if self.tensors[lin.name].dtype == "bits":
            src = self.new(shape, "int8", scale=1.0, zero_point=0)
            self.emit("bits_to_s8", [lin.name], src, {}, layers)
            lin = _Lin(src, 0, lin.scale, lin.offset)
        lo, hi = QMIN, QMAX
        if clamp is not None:
            if clamp[0] is not None:
                lo = max(lo, int(zp + _round_away(clamp[0] / s)))
            if clamp[1] is not None:
                hi = min(hi, int(zp + _round_away(clamp[1] / s)))
        out = self.new(shape, "int8", scale=s, zero_point=zp)
        self._requant(lin, out, s, zp, lo, hi, layers)
        return out, s, zp

    def _requant(self, lin, out, s_out, zp_out, lo, hi, layers):
        real = lin.scale / s_out
        m, shift = _multipliers(real)
        vlo, vhi = self.vrange(lin)
        _check_left_shift(max(abs(vlo), abs(vhi)), shift, f"tensor {out} ({', '.join(layers) or '-'})")
        offset = np.clip(_round_away(lin.offset / s_out), -2 ** 30, 2 ** 30).astype(np.int64)
        c = max(m.size, offset.size)  # the requant's "channels": 1, the channels, or every element
        m, shift, offset = (np.resize(v, c) for v in (m, shift, offset))  # sizes 1, C or N: row-major tiling
        self.emit("requant", [lin.name], out, {"M": m, "shift": shift, "offset": offset, "zp_in": lin.zp,
                                               "zp_out": int(zp_out), "lo": int(lo), "hi": int(hi)}, layers)

    # ops ------------------------------------------------------------------------------------
    def run(self):
        src = self.src
        inp = src.input_tensor
        if inp.dtype == "int":  # raw uint8 (the model starts with Rescaling)
            self.copy_tensor(src.input)
            self.tensors[src.input].scale, self.tensors[src.input].zero_point = None, 0
            self.input_q = None
        else:
            s, zp = self.qp(src.input)
            self.tensors[src.input] = Tensor(src.input, inp.shape, "int8")
            self.tensors[src.input].scale, self.tensors[src.input].zero_point = s, zp
            self.lin[src.input] = _Lin(src.input, zp, s)
            self.input_q = (s, zp)
        for op in src.ops:
            self.op(op)
        out_name = self.logits(src.output)
        return out_name

    def op(self, op):
        src, kind, p = self.src, op.kind, op.params
        t_out = src.tensors[op.output]
        fin = [n for n in op.inputs if src.tensors[n].dtype == "float32"]
        if t_out.dtype != "float32" and not fin and kind not in ("to_float",):
            if kind == "block" and p["block"].kind == "output_dense":
                return self.output_block(op)
            for n in op.inputs:
                if n not in self.tensors:
                    self.copy_tensor(n)
            self.copy_tensor(op.output)
            return self.emit(kind, op.inputs, op.output, dict(p), op.layers)
        if kind == "block":
            b = p["block"]
            if b.kind == "output_dense":
                return self.output_block(op)
            raise UnsupportedModelError(f"quantize='int8': a fused {b.kind} block on a float input "
                                        f"({', '.join(op.layers)}) has no integer form; pass the Keras model "
                                        "(or a graph from keras_ebnn.passes.graph_quant.lower_int8), which keeps that "
                                        "layer a conv", None, None, SUPPORTED)
        if kind == "to_float":
            x = src.tensors[op.inputs[0]]
            if op.inputs[0] not in self.tensors:
                self.copy_tensor(op.inputs[0])
            if x.dtype == "bits":
                self.lin[op.output] = _Lin(op.inputs[0])
                return
            scale = 1.0
            if x.divisor is not None:  # one divisor, or one per position (broadcast over the channels)
                d = np.asarray(x.divisor, dtype=np.float64).reshape(-1)
                d = np.repeat(d, x.shape[-1]) if d.size * x.shape[-1] == x.size else d
                scale = 1.0 / d if np.ptp(d) else 1.0 / float(d[0])
            self.lin[op.output] = _Lin(op.inputs[0], 0, scale)
            return
        if kind == "affine":
            lin = self.lin[op.inputs[0]]
            a = np.asarray(p.get("a64", p["a"]), dtype=np.float64).reshape(-1)
            b = np.asarray(p.get("b64", p["b"]), dtype=np.float64).reshape(-1)
            c = t_out.shape[-1]
            if max(lin.scale.size, lin.offset.size) > max(c, a.size, b.size):  # per element: per row of channels
                def per(v):
                    return np.resize(v, t_out.size).reshape(-1, c)  # 1, C or N values, row-major
                scale, offset = per(lin.scale) * a, per(lin.offset) * a + b
                self.lin[op.output] = _Lin(lin.name, lin.zp, scale.reshape(-1), offset.reshape(-1))
                return
            self.lin[op.output] = _Lin(lin.name, lin.zp, lin.scale * a, lin.offset * a + b)
            return
        if kind == "activation":
            return self.activation(op)
        if kind in ("conv", "depthwise", "dense"):
            return self.compute(op)
        if kind == "add":
            if len(op.inputs) > 8:  # each rescaled input is below 2^27: eight of them sum within int32
                raise UnsupportedModelError(f"quantize='int8': an add of {len(op.inputs)} tensors "
                                            f"({', '.join(op.layers)}); at most 8", None, None, SUPPORTED)
            ins = [self.as_q8(n, op.layers) for n in op.inputs]
            s, zp = self.qp(op.output)
            twice = 2.0 * max(si for _, si, _ in ins)
            mi = [quantize_multiplier(si / twice) for _, si, _ in ins]
            mo, so = quantize_multiplier(twice / (2 ** ADD_LEFT_SHIFT * s))
            _check_left_shift(len(ins) * 2 ** (ADD_LEFT_SHIFT + 8), [so], f"the add {op.output}")
            out = self.new(t_out.shape, "int8", scale=s, zero_point=zp)
            self.emit("add_s8", [n for n, _, _ in ins], out,
                      {"zp_in": np.array([z for _, _, z in ins]), "M_in": np.array([m for m, _ in mi]),
                       "shift_in": np.array([e for _, e in mi]), "M_out": mo, "shift_out": so, "zp_out": zp},
                      op.layers)
            self.lin[op.output] = _Lin(out, zp, s)
            return
        if kind == "concat":
            ins = [self.as_q8(n, op.layers) for n in op.inputs]
            s, zp = self.qp(op.output)
            mults = [quantize_multiplier(si / s) for _, si, _ in ins]
            copy = [si == s and zi == zp for _, si, zi in ins]
            out = self.new(t_out.shape, "int8", scale=s, zero_point=zp)
            self.emit("concat_s8", [n for n, _, _ in ins], out,
                      {"zp_in": np.array([z for _, _, z in ins]), "M_in": np.array([m for m, _ in mults]),
                       "shift_in": np.array([e for _, e in mults]), "copy": np.array(copy), "zp_out": zp},
                      op.layers)
            self.lin[op.output] = _Lin(out, zp, s)
            return
        if kind in ("max_pool", "global_max"):
            lin = self.lin[op.inputs[0]]
            dt = self.tensors[lin.name].dtype
            channels = src.tensors[op.inputs[0]].shape[-1]
            if not (dt in ("int8", "int") and np.all(lin.scale > 0) and (lin.per_tensor() or dt == "int")
                    and max(lin.scale.size, lin.offset.size) in (1, channels)):
                name, s, zp = self.as_q8(op.inputs[0], op.layers)
                lin = _Lin(name, zp, s)
            t = self.tensors[lin.name]
            out = self.new(t_out.shape, t.dtype, lo=t.lo, hi=t.hi, scale=t.scale, zero_point=t.zero_point)
            self.emit(kind, [lin.name], out, dict(p), op.layers)
            self.lin[op.output] = _Lin(out, lin.zp, lin.scale, lin.offset)
            return
        if kind in ("avg_pool", "global_avg"):
            name, s, zp = self.as_q8(op.inputs[0], op.layers)
            out = self.new(t_out.shape, "int8", scale=s, zero_point=zp)
            self.emit(kind + "_s8" if kind == "global_avg" else "avg_pool_s8", [name], out,
                      {"geometry": p["geometry"], "zp": zp}, op.layers)
            self.lin[op.output] = _Lin(out, zp, s)
            return
        if kind == "reshape":
            lin = self.lin[op.inputs[0]]
            if not lin.per_tensor():
                name, s, zp = self.as_q8(op.inputs[0], op.layers)
                lin = _Lin(name, zp, s)
            t = self.tensors[lin.name]
            out = self.new(t_out.shape, t.dtype, lo=t.lo, hi=t.hi, scale=t.scale, zero_point=t.zero_point)
            self.emit("reshape", [lin.name], out, {}, op.layers)
            self.lin[op.output] = _Lin(out, lin.zp, lin.scale, lin.offset)
            return
        if kind in ("sign", "threshold"):
            c = src.tensors[op.inputs[0]].shape[-1]
            thr = np.zeros(c) if kind == "sign" else np.asarray(p["threshold"], dtype=np.float64).reshape(-1)
            flip = np.zeros(c, bool) if kind == "sign" else np.asarray(p["flip"], dtype=bool).reshape(-1)
            return self.threshold(op, np.broadcast_to(thr, (c,)), np.broadcast_to(flip, (c,)))
        raise UnsupportedModelError(f"quantize='int8': op {kind!r} ({', '.join(op.layers) or op.output}) has no "
                                    "integer form", None, None, SUPPORTED)

    def activation(self, op):
        fn = op.params["fn"]
        clamps = {"relu": (0.0, None), "relu6": (0.0, 6.0), "hard_tanh": (-1.0, 1.0)}
        lin = self.lin[op.inputs[0]]
        if fn in clamps and not lin.is_q8(self):  # fold into the requantization
            name, s, zp = self.as_q8(op.inputs[0], op.layers, params=self.qp(op.output), clamp=clamps[fn])
            self.lin[op.output] = _Lin(name, zp, s)
            return
        name, s_in, zp_in = self.as_q8(op.inputs[0], op.layers)
        s, zp = self.qp(op.output)
        q = np.arange(QMIN, QMAX + 1)
        x = s_in * (q - zp_in)
        if fn == "relu":
            y = np.maximum(x, 0)
        elif fn == "relu6":
            y = np.clip(x, 0, 6)
        elif fn == "hard_tanh":
            y = np.clip(x, -1, 1)
        elif fn == "leaky_relu":
            y = np.where(x >= 0, x, x * float(op.params["alpha"]))
        elif fn == "tanh":
            y = np.tanh(x)
        elif fn == "sigmoid":
            y = 1.0 / (1.0 + np.exp(-x))
        else:
            raise UnsupportedModelError(f"quantize='int8': activation {fn!r} ({', '.join(op.layers)})", None, None,
                                        SUPPORTED)
        table = np.clip(_round_away(y / s) + zp, QMIN, QMAX).astype(np.int64)
        out = self.new(self.src.tensors[op.output].shape, "int8", scale=s, zero_point=zp)
        self.emit("lut", [name], out, {"table": table}, op.layers)
        self.lin[op.output] = _Lin(out, zp, s)

    def compute(self, op):
        src, p, kind = self.src, op.params, op.kind
        name, s_x, zp_x = self.as_q8(op.inputs[0], op.layers)
        w = np.asarray(p["weights"], dtype=np.float64)
        if kind == "depthwise":
            kh, kw, c, m = w.shape
            flat = w.reshape(kh * kw, c * m)
        else:
            flat = w.reshape(-1, w.shape[-1])
        peak = np.abs(flat).max(axis=0)
        s_w = np.where(peak > 0, peak / 127.0, 1.0)
        q = np.clip(np.rint(flat / s_w), -127, 127).astype(np.int64)
        pad_q = 0
        if kind != "dense" and float(p.get("pad_value", 0.0)) != 0.0:
            pad_q = int(_round_away(float(p["pad_value"]) / s_x))
        vmax = max(QMAX - zp_x, zp_x - QMIN, abs(pad_q))
        bound = int(np.abs(q).sum(axis=0).max(initial=0)) * vmax
        if bound >= 2 ** 31:
            raise UnsupportedModelError(f"quantize='int8': the accumulators of {', '.join(op.layers)} could "
                                        "exceed int32", None, None, SUPPORTED)
        t_out = src.tensors[op.output]
        out = self.new(t_out.shape, "int", lo=-bound, hi=bound, scale=s_x * s_w, zero_point=0)
        params = {"weights": q.reshape(w.shape), "zp": zp_x, "pad_q": pad_q, "bias": np.zeros(q.shape[1], np.int64)}
        if kind != "dense":
            params["geometry"] = p["geometry"]
        self.emit(kind + "_s8", [name], out, params, op.layers)
        self.lin[op.output] = _Lin(out, 0, s_x * s_w)

    def threshold(self, op, t, flip):
        lin = self.lin[op.inputs[0]]
        if self.tensors[lin.name].dtype == "bits" or max(lin.scale.size, lin.offset.size) not in (1, len(t)):
            name, s, zp = self.as_q8(op.inputs[0], op.layers)
            lin = _Lin(name, zp, s)
        c = len(t)
        scale = np.broadcast_to(lin.scale, (c,))
        offset = np.broadcast_to(lin.offset, (c,))
        vlo, vhi = self.vrange(lin)
        lo, hi = vlo + lin.zp, vhi + lin.zp
        big = 2 ** 40
        new_t, new_flip = np.zeros(c, np.int64), np.zeros(c, bool)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            for i in range(c):
                # bit = (flip ? -r : r) >= t with r = scale * (v - zp) + offset
                sgn = -1.0 if flip[i] else 1.0
                a, rhs = sgn * scale[i], float(t[i]) - sgn * offset[i]  # bit = a * (v - zp) >= rhs
                if a == 0.0:
                    new_t[i] = -big if 0.0 >= rhs else big
                elif a > 0:
                    b = lin.zp + rhs / a  # v >= b
                    new_t[i] = -big if b == -np.inf else big if b == np.inf else int(np.ceil(b))
                else:
                    b = lin.zp + rhs / a  # v <= b  <=>  -v >= -b
                    new_flip[i] = True
                    new_t[i] = big if b == -np.inf else -big if b == np.inf else int(np.ceil(-b))
        d_lo = np.where(new_flip, -hi, lo)
        d_hi = np.where(new_flip, -lo, hi)
        new_t = np.clip(new_t, d_lo, d_hi + 1)
        self.copy_tensor(op.output)
        self.emit("threshold", [lin.name], op.output, {"threshold": new_t, "flip": new_flip}, op.layers)

    def output_block(self, op):
        b = op.params["block"]
        if op.inputs[0] not in self.tensors:
            self.copy_tensor(op.inputs[0])
        n = b.weights.shape[1]
        acc = self.new(self.src.tensors[op.output].shape, "int", lo=-n, hi=n, scale=None)
        self.emit("bdense", op.inputs, acc, {"weights": np.asarray(b.weights, dtype=bool)}, op.layers)
        self.lin[op.output] = _Lin(acc, 0, np.asarray(b.scale, np.float64), np.asarray(b.offset, np.float64))

    def logits(self, float_name):
        """The int32 logits tensor (the graph output) of the float output tensor."""
        lin = self.lin[float_name]
        lo, hi = self.calib[float_name]
        peak = max(abs(lo), abs(hi), 1e-30)
        s_out = peak / 2 ** LOGIT_BITS
        vlo, vhi = self.vrange(lin)
        if self.tensors[lin.name].dtype == "bits":
            vlo, vhi = -1, 1
        vmax = max(abs(vlo), abs(vhi), 1)
        while True:  # coarser output scale until no left shift can overflow
            _, shift = _multipliers(np.abs(lin.scale) / s_out)
            if vmax * 2 ** int(np.max(np.maximum(shift, 0), initial=0)) < 2 ** 31:
                break
            s_out *= 2
        if self.tensors[lin.name].dtype == "bits":
            name, s, zp = self.as_q8(float_name, [])
            lin = _Lin(name, zp, s)
        shape = self.src.tensors[float_name].shape
        out = self.new(shape, "int", lo=INT32_MIN + 1, hi=INT32_MAX - 1, scale=s_out, zero_point=0)
        self._requant(lin, out, s_out, 0, INT32_MIN + 1, INT32_MAX - 1, list(self.src.producer()[float_name].layers))
        self.tensors[out].lo, self.tensors[out].hi = INT32_MIN + 1, INT32_MAX - 1
        return out, s_out


def calibrate(graph, x, batch=64):
    """{float32 tensor name: (min, max)} of the float graph's tensors over the representative data."""
    from ..ir import graph_reference
    ranges = {}

    def hook(t, values, start):
        if t.dtype == "float32" and values.size:
            lo, hi = float(values.min()), float(values.max())
            old = ranges.get(t.name)
            ranges[t.name] = (lo, hi) if old is None else (min(old[0], lo), max(old[1], hi))
        return values
    x = np.asarray(x)
    if graph.input_tensor.dtype == "float32" and x.size:
        ranges[graph.input] = (float(x.min()), float(x.max()))
    graph_reference.run(graph, x, batch=batch, hook=hook)
    for name, t in graph.tensors.items():
        if t.dtype == "float32" and name not in ranges:
            ranges[name] = (0.0, 0.0)
    return ranges


def lower_int8(model, name="model"):
    """The float graph the int8 mode quantizes: `lower_graph`, except that a binary-weight conv on a
    float model input stays a conv op (an input block on a float input computes in float)."""
    from ..ir.graph import _prune, check, fuse, lower_graph
    g = lower_graph(model, name, fuse_blocks=False)
    g.quant = {"lowering": True}  # keras_ebnn.ir.graph._fuse_sign: no input block on a float input
    _prune(g)
    fuse(g)
    g.quant = None
    check(g)
    return g


def representative(x, graph):
    """The representative data as the float graph's input (raw uint8 kept as numbers)."""
    x = np.asarray(x)
    if x.ndim == len(graph.input_tensor.shape):
        x = x[None]
    if x.shape[1:] != graph.input_tensor.shape:
        raise ValueError(f"representative_data has shape {x.shape[1:]} per input; the model takes "
                         f"{graph.input_tensor.shape}")
    if len(x) == 0:
        raise ValueError("representative_data is empty")
    return x


def quantize_graph(model, representative_data, name="model"):
    """The integer-only graph of a Keras model (or a float Graph from `lower_int8`); see the module
    docstring. `graph.quant` holds: input (scale, zero_point) or None (raw uint8 input), output_scale,
    float_graph (the float graph it was calibrated on)."""
    from ..ir.graph import _prune
    src = model if isinstance(model, Graph) else lower_int8(model, name)
    x = representative(representative_data, src)
    calib = calibrate(src, x)
    qz = _Quantizer(src, calib)
    out, s_out = qz.run()
    g = Graph(name=src.name, input=src.input, output=out, tensors=qz.tensors, ops=qz.ops, softmax=src.softmax)
    g.quant = {"input": qz.input_q, "output_scale": float(s_out), "float_graph": src}
    _prune(g)
    pool_before_requant(g)
    fuse_convs(g)
    check_q(g)
    return g


def pool_before_requant(g):
    """conv_s8 / depthwise_s8 -> requant (int8) -> max_pool becomes conv -> max_pool (on the int32
    accumulators) -> requant, in place, where the intermediate tensors have no other reader, the
    requant's parameters are per tensor or per channel and every channel's multiplier M >= 0. Bit for
    bit the same: the requantization is then monotone non-decreasing in the accumulator (srdhm, rdbpot,
    the offset and the clamp all are), and a max pool commutes with such a map (a window's maximum maps
    to the maximum of the mapped window). A negative M would make it a minimum: left as it is. The
    result is the conv -> max_pool -> requant chain `fuse_convs` computes per pooled output."""
    changed = True
    while changed:
        cons, changed = g.consumers(), False
        for op in g.ops:
            if op.kind not in ("conv_s8", "depthwise_s8") or "stage" in op.params or "pool" in op.params:
                continue
            acc = g.tensors[op.output]
            c = acc.shape[-1]
            if len(cons[op.output]) != 1 or op.output == g.output:
                continue
            rq = cons[op.output][0]
            if rq.kind != "requant" or g.tensors[rq.output].dtype != "int8" or rq.output == g.output:
                continue
            if len(cons[rq.output]) != 1 or cons[rq.output][0].kind != "max_pool":
                continue
            mp = cons[rq.output][0]
            p = rq.params
            if any(np.size(p[k]) not in (1, c) for k in ("M", "shift", "offset")):
                continue
            if np.any(np.asarray(p["M"]) < 0):
                continue
            pooled = f"{rq.output}_pooled"
            assert pooled not in g.tensors
            g.tensors[pooled] = Tensor(pooled, g.tensors[mp.output].shape, acc.dtype, lo=acc.lo, hi=acc.hi,
                                       scale=acc.scale, zero_point=acc.zero_point)
            del g.tensors[rq.output]  # the full-resolution int8 map; the pool's output becomes the requant's
            out = mp.output
            mp.inputs, mp.output = [op.output], pooled
            rq.inputs, rq.output = [pooled], out
            i, j = g.ops.index(mp), g.ops.index(rq)  # the pool now runs first
            g.ops[i], g.ops[j] = rq, mp
            changed = True
            break
    return g


def fuse_convs(g):
    """Fuse conv_s8 / depthwise_s8 -> (max_pool ->) requant (int8) or threshold, and conv -> max_pool,
    where the intermediate tensors have no other reader (in place; see the module docstring)."""
    while True:
        cons, changed = g.consumers(), False
        for op in g.ops:
            if op.kind not in ("conv_s8", "depthwise_s8") or "stage" in op.params:
                continue
            chain = []
            t = op.output
            while len(cons[t]) == 1 and t != g.output:
                nxt = cons[t][0]
                if nxt.kind == "max_pool" and not chain and "pool" not in op.params:
                    chain.append(nxt)
                elif (nxt.kind == "requant" and g.tensors[nxt.output].dtype == "int8") or nxt.kind == "threshold":
                    chain.append(nxt)
                    # requant -> max_pool (left by pool_before_requant: some multiplier is negative): the
                    # fused form pools the minimum for those channels, the maximum of the requantized values
                    c = g.tensors[op.output].shape[-1]
                    after = cons[nxt.output]
                    if (nxt.kind == "requant" and "pool" not in op.params and nxt.output != g.output
                            and len(after) == 1 and after[0].kind == "max_pool"
                            and all(np.size(nxt.params[k]) in (1, c) for k in ("M", "shift", "offset"))):
                        chain.append(after[0])
                    break
                else:
                    break
                t = nxt.output
            if not chain:
                continue
            c = g.tensors[op.output].shape[-1]
            for nxt in chain:
                if nxt.kind == "max_pool":
                    op.params["pool"] = nxt.params["geometry"]
                elif nxt.kind == "requant":
                    op.params["stage"] = dict(nxt.params, kind="requant", M=np.resize(nxt.params["M"], c),
                                              shift=np.resize(nxt.params["shift"], c),
                                              offset=np.resize(nxt.params["offset"], c))
                else:
                    acc = g.tensors[op.output]  # the accumulators' bounds (the C clamps the thresholds to them)
                    op.params["stage"] = dict(nxt.params, kind="threshold", acc_lo=acc.lo, acc_hi=acc.hi)
                op.layers = list(dict.fromkeys(op.layers + nxt.layers))
                g.ops.remove(nxt)
                del g.tensors[op.output]
                op.output = nxt.output
            changed = True
            break
        if not changed:
            return g


def check_q(g):
    """An integer-only graph: keras_ebnn.ir.graph.check's invariants (int32 logits out), no float32 tensor."""
    from ..ir.graph import check
    check(g)
    bad = [t.name for t in g.tensors.values() if t.dtype == "float32"]
    assert not bad, f"float32 tensors left in an int8 graph: {bad}"


def quantize_input(graph, x):
    """The graph's input from float (or raw uint8) inputs: q = clamp(round(x / s) + zp, -128, 127)
    (round half away from zero), or the raw uint8 values unchanged."""
    x = np.asarray(x)
    qin = graph.quant["input"]
    if qin is None:
        return x.astype(np.uint8) if x.dtype != np.uint8 else x
    s, zp = qin
    return np.clip(_round_away(x.astype(np.float64) / s) + zp, QMIN, QMAX).astype(np.int8)


def run(graph, x_float, **kw):
    """graph_reference.run on float inputs (quantized first); adds "real_logits" (dequantized)."""
    from ..ir import graph_reference
    out = graph_reference.run(graph, quantize_input(graph, x_float), **kw)
    out["real_logits"] = out["logits"].astype(np.float64) * graph.quant["output_scale"]
    return out
