"""Graph IR: any single-input, single-output Keras/Larq model as a list of ops over typed tensors.

This generalises the chain of fused blocks (`keras_ebnn.ir.blocks`) to directed acyclic graphs: residual
`Add`, `Concatenate` branches, full-precision layers anywhere, average and global pooling, 1-D inputs.
The fused blocks stay the core operation: wherever a binary conv / dense is followed by (max pool,)
monotone elementwise layers and a sign, it is ONE op that writes bits. `lower_graph(model)` builds a
`Graph`; `keras_ebnn.ir.graph_reference.run` executes it (the executable definition of what follows);
`plan_memory(graph)` places every tensor in one arena.

Tensors
-------
A `Tensor` has a name, a *shape* (Keras's shape without the batch axis: (N,), (L, C) or (H, W, C);
channels always last, row-major element order, as Keras's `Flatten` reads them) and a *dtype*:
  * "bits":    values +1/-1; bit 1 means +1 (sign(0) = +1, as in larq). Stored bit-packed: element i
               of the row-major order is bit (i & 31) of 32-bit word (i >> 5), unused bits 0.
  * "int":     exact integers in the inclusive range [lo, hi] (the raw uint8 model input, binary
               accumulators, window sums of integers). An int tensor may carry a `divisor`: a
               positive integer array broadcast over the channels (shape = shape[:-1] + (1,), or
               (1,) for one divisor) -- its real value is then value / divisor (an average pool's
               sum over the window's in-bounds taps). Stored as int8 / int16 / int32, the narrowest
               type holding [lo, hi].
  * "float32": IEEE binary32 values. Stored as 4 bytes.

A lowered graph is: one input tensor (dtype "int" with range [0, 255] when the input's only reader
is a `Rescaling` layer -- the caller passes raw uint8 values --, else "float32"), a topologically ordered list
of `Op`s each writing one new tensor, one output tensor (float32 logits; `softmax` says whether Keras
applies a softmax after it; the class is the first maximum of the logits).

Ops (`Op.kind`; inputs are tensor names; `params` as listed)
-------------------------------------------------------------
block      A fused block of `keras_ebnn.ir.blocks`, with exactly those semantics: params["block"] is an
           InputConvBlock (input: the model input, read as its InputSpec says), BinaryConvBlock,
           BinaryDenseBlock (bits in, bits out) or OutputDenseBlock (bits in, float32 out). A 1-D
           tensor (L, C) is the (1, L, C) image of the blocks; a dense block reads its input bits
           flattened (row-major). The output keeps the Keras shape of the layer it replaces.
bconv      Binary convolution without threshold: bits (H, W, C) in, int accumulators out
           (acc of `keras_ebnn.ir.blocks`: sum of +1/-1 products, pad taps worth geometry.pad_value
           0 or 1), params: weights bool (O, KH, KW, C), geometry (ConvGeometry, no pool).
bdense     Binary dense layer without threshold over the last axis: bits (..., N) in, int (..., O) out,
           x[o] = sum_n w[o, n] * a[n]; params: weights bool (O, N).
bdepthwise Binary depthwise convolution: bits in, int out; output channel c * M + m is the sum over
           the taps of channel c with weights[m, ky, kx, c] (bool (M, KH, KW, C)); params geometry.
to_float   int or bits -> float32: bits give +-1.0; an int v gives float32(v), or
           float32(v) / float32(divisor) (one correctly rounded division) when it has a divisor.
affine     float32 per-channel y = x * a[c] + b[c], two float32 operations in that order; params
           a, b float32 (C,) (or (1,) broadcast). It comes from BatchNormalization (a = gamma /
           sqrt(var + eps), b = beta - mean * a, computed in float64 and rounded), a bias (a = 1),
           a Rescaling (scalar a, b) or a magnitude-aware weight scale (b = 0); params["a64"],
           ["b64"] keep the float64 values the output block folds.
activation float32 elementwise, params["fn"]: "relu" max(x, 0); "relu6" min(max(x, 0), 6);
           "hard_tanh" min(max(x, -1), 1); "leaky_relu" x if x >= 0 else x * alpha (params alpha);
           "tanh", "sigmoid" (float32 tanh, 1 / (1 + exp(-x))). All are monotone non-decreasing.
conv       Full-precision convolution, float32 in/out: params weights float32 (KH, KW, C, O),
           geometry; pad taps read params["pad_value"] (0.0 or 1.0).
           acc = 0.0f; for (ky, kx, c) in row-major order: acc = acc + x * w  (float32 multiply,
           then float32 add, no fused multiply-add). A layer's bias is the affine op after it.
depthwise  Full-precision depthwise convolution, same summation rule per output channel c * M + m
           over the taps (ky, kx) of channel c; weights float32 (KH, KW, C, M).
dense      Full-precision dense layer over the last axis: acc = 0.0f; for n: acc = acc + x[n] *
           w[n, o]; weights float32 (N, O) (bias: the affine op after it).
add        float32 elementwise sum of 2+ float32 tensors, left to right ((a + b) + c).
div        float32 elementwise x / d[c], one correctly rounded float32 division; params d float32 (C,)
           or (1,) (from `x / c` in a functional model: a TFOpLambda of tf.math.truediv).
concat     Concatenation along the channel (last) axis: all inputs bits -> bits (free: the bits are
           copied), else all float32 -> float32.
max_pool   Max over each window's in-bounds taps (windows hanging off the edge skip those taps);
           bits (max = OR of the bits), int or float32 in, same dtype out. params geometry: pool
           (PH, PW), strides, pad (top, left), out_hw.
avg_pool   Window average over the in-bounds taps (as TF's AvgPool: padding is not counted). bits or
           int without divisor in: int out, value = the exact sum, divisor = the number of in-bounds
           taps of that output position (one divisor when every window lies inside the input).
           float32 in: s = 0.0f; s = s + x for the taps in row-major order; out = s / float32(count).
           (Ops other than avg_pool / global_avg / to_float never read an int with a divisor: the
           lowering converts it to float32 first.)
global_avg, global_max   The same over all spatial positions: (H, W, C) or (L, C) -> (C,) (with
           keepdims=True: (1, 1, C) or (1, C), the same values).
reshape    Same elements, new shape (Flatten, Reshape): free, the output shares the input's memory.
sign       float32 or int -> bits: bit = (x >= 0) (an int with a divisor: v >= 0). Also what an
           Activation layer with a larq sign quantizer (Activation(SteSign())) lowers to.
conv_pool  A full-precision conv (or dense) and the affine / activation / pool / sign or threshold ops
           after it, computed per pooled output without materialising the conv's map
           (keras_ebnn/passes/graph_fuse.py: its output equals its sub-ops' params["ops"] run one after the
           other, bit for bit; binary weights are stored as bits; it may read the raw uint8 input
           through an absorbed to_float / Rescaling affine). params["ring_rows"]: the output is streamed into its
           reader, only that many rows held at once (the same values).
threshold  float32 or int -> bits, per channel c: bit = (x >= t[c]) if not flip[c] else (-x >= t[c])
           (params threshold float32 / int64 (C,), flip bool (C,); +-inf or out-of-range values make
           a constant channel). An int input's value is compared before its divisor is applied.

Integer-only graphs (`export(..., quantize="int8")`, `keras_ebnn.passes.graph_quant`, which states their
arithmetic exactly) add the dtype "int8" (values -128..127, one byte each, with Tensor.scale and
Tensor.zero_point: real = scale * (q - zero_point)); int accumulators may carry a per-channel real
Tensor.scale; the output is an int tensor of int32 logits. Their ops: conv_s8, depthwise_s8, dense_s8
(int8 in, int32 accumulators out), requant (int32 / int8 / uint8 -> int8 or int32, TFLite's fixed-point
multiplier), lut (int8 -> int8 table), add_s8, concat_s8, bits_to_s8, avg_pool_s8, global_avg_s8;
max_pool / global_max, threshold and reshape also take int8.

Fusion and exactness
--------------------
`lower_graph` first translates each Keras layer into these ops (a Quant layer's sign input quantizer
becomes a `sign` op, shared by every layer reading the same tensor), then fuses every
  sign(post(max_pool(pre(bconv / bdense(bits)))))   and   sign(...(first-layer conv on the input))
whose intermediate tensors have no other reader into one `block` op (and, last, every full-precision
conv -> affine / activation -> pool -> sign chain into one `conv_pool` op: keras_ebnn/passes/graph_fuse.py). pre and post are chains of
affine / activation / to_float ops (and a Flatten between a conv and a dense); the thresholds come
from `keras_ebnn.passes.thresholds.chain_thresholds`, which evaluates the *Keras layers themselves* on
every reachable integer accumulator, so fused bits equal Keras's bits exactly (a float first layer
keeps the rare float-rounding differences documented in `keras_ebnn.ir.blocks`). A final binary dense
followed only by bias / BatchNormalization becomes an OutputDenseBlock. A remaining
sign(chain(x)) on a float32 (or int) tensor x that no binary op wrote -- e.g. BatchNormalization ->
sign in a DenseNet block -- becomes one `threshold` op, found the same way (bisection over the
ordered float32 values of x, or every integer of its range), so the chain's float tensor is never
stored. A sign of a Flatten/Reshape or Concatenate is moved before it, so concatenations of fused
outputs stay bits.
Scaled binary weights (magnitude_aware_sign, XNOR-Net's per-filter scale) become an exact binary
accumulator times the scale (an affine op, folded into the thresholds like a batch norm); Keras
instead convolves with +-scale weights in float32, so those bits agree with Keras up to float
near-ties, like a float first layer (the block op carries params["weight_scale"] = True).
Everything else runs as the float32 ops above: bits and integers exact, float parts in float32 with
a summation order that differs from TensorFlow's, so they agree with Keras to float32 rounding, not
bit for bit (tests/test_graph_dag.py states the tolerance it checks).

A (Quant)SeparableConv1D/2D is its two halves: the depthwise part (`bdepthwise` on bits with binary
depthwise weights, else `depthwise`) and then the pointwise 1x1 convolution as a `conv` op over the
depthwise output converted to float32 (no quantizer between them, as in larq); with +-1 pointwise
weights on integer accumulators every partial sum is an integer below 2^24, so that conv is exact (bit
for bit Keras's values), and a following sign becomes a `threshold` op. DepthwiseConv1D is the
depthwise op on the (1, L, C) image.

Python operators and tf.* calls in a functional model (TFOpLambda layers, e.g. `x = x + y` in Larq
Zoo's QuickNet) lower like the matching layers, from the explicit table TF_OPS (the safe loader admits
the same names from a file): x + y -> add; x - y -> add of y * -1 + -0.0 (an exact negation); a scalar
constant c: x + c, x - c, c - x, -x -> affine (a = +-1), x * c -> affine (a = c, b = -0.0: exactly
x * c), x / c -> div; tf.reshape -> reshape; tf.nn.relu / relu6, tf.tanh / sigmoid -> activation.
Anything else (x * y, a named TF function outside the table) is refused naming the layer.

Unsupported layers, multi-bit quantizers, several inputs or outputs and nested models raise
`UnsupportedModelError` naming the layer, followed by GRAPH_SUPPORTED (= keras_ebnn.errors.SUPPORTED).
This is the one lowering: `keras_ebnn.lower()` (keras_ebnn/frontend/lowering.py) is a view of its graph when
the graph is a chain of fused blocks (`LoweredModel`), `from_lowered` the way back; its C back end is
exporters/graph_c.py.
"""
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..passes import graph_int8, thresholds
from .._tf import import_larq
from .blocks import (BinaryConvBlock, BinaryDenseBlock, ConvGeometry, InputConvBlock, InputSpec, OutputDenseBlock,
                     integer_range, spatial)
from ..errors import SUPPORTED, UnsupportedModelError

DTYPES = ("bits", "int", "float32", "int8")  # int8: integer-only graphs (graph_quant)
SIGN_QUANTIZERS = {"ste_sign", "approx_sign", "swish_sign", "SteSign", "ApproxSign", "SwishSign"}
NOOP_LAYERS = {"Dropout", "GaussianNoise", "GaussianDropout", "AlphaDropout", "SpatialDropout1D",
               "SpatialDropout2D", "SpatialDropout3D", "ActivityRegularization"}
COMPUTE_LAYERS = ("QuantConv2D", "QuantConv1D", "QuantDense", "QuantDepthwiseConv2D", "QuantSeparableConv1D",
                  "QuantSeparableConv2D", "Conv2D", "Conv1D", "Dense", "DepthwiseConv1D", "DepthwiseConv2D",
                  "SeparableConv1D", "SeparableConv2D")
CHAIN_KINDS = ("affine", "activation", "to_float", "div")  # monotone per channel: fusable before a sign
# TFOpLambda layers (Python operators and tf.* calls in a functional model, e.g. `x = x + y`) by the
# TensorFlow function Keras records, and how they lower (`_translate_tfop`). keras_ebnn/frontend/safe_load.py
# TF_OP_FUNCTIONS admits exactly these names when loading a file (tests/test_graph_tfops.py checks).
TF_OPS = {"__operators__.add": "add", "math.add": "add", "math.subtract": "subtract",
          "math.multiply": "multiply", "math.truediv": "divide", "math.negative": "negative",
          "reshape": "reshape", "nn.relu": "relu", "nn.relu6": "relu6", "math.tanh": "tanh",
          "math.sigmoid": "sigmoid"}
GRAPH_SUPPORTED = SUPPORTED  # (keras_ebnn.errors: what this lowering takes, printed by every refusal)


@dataclass
class Tensor:
    name: str
    shape: Tuple[int, ...]
    dtype: str  # "bits" | "int" | "float32"
    lo: Optional[int] = None  # int: inclusive range
    hi: Optional[int] = None
    divisor: Optional[np.ndarray] = None  # int: real value = value / divisor (broadcast over channels)
    keras: Optional[str] = None  # name of the Keras layer whose output this is (sign of, for bits)
    scale: Optional[object] = None  # int8 / int of an integer-only graph: real = scale * (value - zero_point)
    zero_point: int = 0

    @property
    def size(self):
        return int(np.prod(self.shape))


@dataclass
class Op:
    kind: str
    inputs: List[str]
    output: str
    params: dict = field(default_factory=dict)
    layers: List[str] = field(default_factory=list)  # Keras layers this op computes (part of)


@dataclass
class Graph:
    name: str
    input: str
    output: str
    tensors: Dict[str, Tensor]
    ops: List[Op]
    softmax: bool = False
    quant: Optional[dict] = None  # integer-only graph (keras_ebnn.passes.graph_quant): input / output scales

    @property
    def input_tensor(self):
        return self.tensors[self.input]

    @property
    def num_classes(self):
        return self.tensors[self.output].shape[-1]

    def producer(self):
        return {op.output: op for op in self.ops}

    def consumers(self):
        out = {name: [] for name in self.tensors}
        for op in self.ops:
            for t in op.inputs:
                out[t].append(op)
        return out

    def describe(self):
        """One line per op: kind, input and output tensors with their shapes and dtypes."""
        def t(name):
            x = self.tensors[name]
            return f"{name}:{x.dtype}{list(x.shape)}"
        lines = [f"input {t(self.input)}"]
        for op in self.ops:
            kind = op.kind if op.kind != "block" else f"block/{op.params['block'].kind}"
            lines.append(f"{kind:22s} {', '.join(t(i) for i in op.inputs)} -> {t(op.output)}")
        lines.append(f"output {t(self.output)}" + (" (softmax)" if self.softmax else ""))
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Keras details


def _qname(q):
    if q is None:
        return None
    if isinstance(q, str):
        return q
    return getattr(q, "__name__", None) or type(q).__name__


def _act_name(act):
    return getattr(act, "__name__", str(act))


def _is_sign(act):
    """A larq sign quantizer used as an activation (function or instance): +1 for x >= 0, else -1."""
    return getattr(act, "__name__", type(act).__name__) in SIGN_QUANTIZERS


def _window(size, k, s, padding):
    if padding == "same":
        out = -(-size // s)
        return out, max((out - 1) * s + k - size, 0) // 2
    return (size - k) // s + 1, 0


def _pair(v, one_d):
    v = tuple(v) if isinstance(v, (list, tuple)) else (v,)
    return (1, v[0]) if one_d else (v[0], v[-1])


def _activation_op(fn_name, lay, i):
    """(params, keras function) of a supported activation, or raise naming the layer."""
    tf, lq = import_larq()
    if fn_name in ("relu", "relu6", "tanh", "sigmoid"):
        return {"fn": fn_name}, _tf_fn(getattr(tf.nn, fn_name))
    if fn_name == "hard_tanh":
        return {"fn": "hard_tanh"}, _tf_fn(lq.activations.hard_tanh)
    raise UnsupportedModelError(f"activation {fn_name!r} is not supported.", lay, i)


def _tf_fn(f):
    tf, _ = import_larq()
    return lambda x: np.asarray(f(tf.constant(np.asarray(x, dtype=np.float32))), dtype=np.float32)


def _layer_fn(lay):
    """Keras layer at inference as a function of a float32 (K, C) array, at the layer's own rank."""
    tf, _ = import_larq()
    rank = len(lay.input_shape)

    def fn(x):
        x = np.asarray(x, dtype=np.float32)
        shaped = x.reshape((1,) * (rank - 2) + x.shape)
        return np.asarray(lay(tf.constant(shaped), training=False), dtype=np.float32).reshape(x.shape)
    return fn


def _bn_affine(lay):
    """float64 (scale, shift) of a BatchNormalization layer at inference: y = x * scale + shift."""
    mean = lay.moving_mean.numpy().astype(np.float64)
    var = lay.moving_variance.numpy().astype(np.float64)
    gamma = lay.gamma.numpy().astype(np.float64) if lay.gamma is not None else np.ones_like(mean)
    beta = lay.beta.numpy().astype(np.float64) if lay.beta is not None else np.zeros_like(mean)
    scale = gamma / np.sqrt(var + lay.epsilon)
    return scale, beta - mean * scale


def _bias_fn(bias):
    b = np.asarray(bias, dtype=np.float32)
    return lambda x: (np.asarray(x, dtype=np.float32) + b).astype(np.float32)  # float32, as bias_add


# --------------------------------------------------------------------------------------------------
# Translation: one Keras layer -> ops


class _Builder:
    def __init__(self):
        self.tensors: Dict[str, Tensor] = {}
        self.ops: List[Op] = []
        self.sign_of: Dict[str, str] = {}
        self.float_of: Dict[str, str] = {}
        self.count = 0

    def tensor(self, shape, dtype, lo=None, hi=None, divisor=None, keras=None):
        name = f"t{self.count}"
        self.count += 1
        self.tensors[name] = Tensor(name, tuple(int(d) for d in shape), dtype, lo, hi, divisor, keras)
        return name

    def op(self, kind, inputs, shape, dtype, params=None, layers=(), **tensor_kw):
        out = self.tensor(shape, dtype, **tensor_kw)
        self.ops.append(Op(kind, list(inputs), out, dict(params or {}), list(layers)))
        return out

    def t(self, name):
        return self.tensors[name]

    def as_float(self, name):
        t = self.t(name)
        if t.dtype == "float32":
            return name
        if name not in self.float_of:
            self.float_of[name] = self.op("to_float", [name], t.shape, "float32",
                                          params={"fn": (lambda x: np.asarray(x, dtype=np.float32))})
        return self.float_of[name]

    def as_bits(self, name, layer_name):
        t = self.t(name)
        if t.dtype == "bits":
            return name
        if name not in self.sign_of:
            self.sign_of[name] = self.op("sign", [name], t.shape, "bits", layers=[layer_name], keras=t.keras)
        return self.sign_of[name]


def _kernel_values(lay, i, attr="kernel", quantizer_attr="kernel_quantizer"):
    """(kind, values, scale): kind "binary" (values bool, True = +1), "scaled" (bool + per-output
    channel float32 scale), or "float" (float32 values)."""
    tf, _ = import_larq()
    kernel = np.asarray(getattr(lay, attr).numpy(), dtype=np.float32)
    q = getattr(lay, quantizer_attr, None)
    name = _qname(q)
    if q is None:
        return "float", kernel, None
    values = np.asarray(q(tf.constant(kernel)), dtype=np.float32)
    if np.all(np.abs(values) == 1.0):
        return "binary", values > 0, None
    # scaled binary (magnitude_aware_sign, XNOR-Net's per-filter scale): +-s[o] in output channel o
    mag = np.abs(values)
    scale = mag.reshape(-1, mag.shape[-1])[0]
    if np.all(mag == scale) and np.all(scale > 0) and np.all(np.isfinite(scale)):
        return "scaled", values > 0, scale.astype(np.float32)
    raise UnsupportedModelError(
        f"{quantizer_attr} {name!r} gives weights that are neither +-1 nor +-scale per output channel "
        "(multi-bit weights are not supported).", lay, i,
        "Binary weights (ste_sign / approx_sign / swish_sign / magnitude_aware_sign) or float weights "
        "(quantizer None) are supported.")


def _input_quant(lay, i):
    name = _qname(getattr(lay, "input_quantizer", None))
    if name is None:
        return False
    if name in SIGN_QUANTIZERS:
        return True
    raise UnsupportedModelError(f"input_quantizer {name!r} is not supported (multi-bit activations).",
                                lay, i, "Use a sign input quantizer (ste_sign) or None.")


def _conv_geometry(lay, i, in_shape, one_d):
    h, w, c = spatial(in_shape)
    if getattr(lay, "data_format", "channels_last") != "channels_last":
        raise UnsupportedModelError("only data_format='channels_last' is supported.", lay, i)
    if any(d != 1 for d in np.atleast_1d(lay.dilation_rate)):
        raise UnsupportedModelError(f"dilation_rate {lay.dilation_rate} is not supported.", lay, i)
    if getattr(lay, "groups", 1) != 1:
        raise UnsupportedModelError(f"groups={lay.groups} is not supported.", lay, i)
    if lay.padding not in ("valid", "same"):
        raise UnsupportedModelError(f"padding {lay.padding!r} is not supported.", lay, i,
                                    "Use 'valid' or 'same'.")
    kh, kw = _pair(lay.kernel_size, one_d)
    sh, sw = _pair(lay.strides, one_d)
    ch, top = _window(h, kh, sh, lay.padding)
    cw, left = _window(w, kw, sw, lay.padding)
    if ch < 1 or cw < 1:
        raise UnsupportedModelError(f"kernel {kh}x{kw} does not fit the {h}x{w} input.", lay, i)
    pad_value = 0
    if lay.padding == "same" and hasattr(lay, "pad_values"):
        pad_value = float(np.asarray(lay.pad_values))
        if pad_value not in (0.0, 1.0):
            raise UnsupportedModelError(f"pad_values={pad_value} is not supported.", lay, i, "Use 0 or 1.")
    return ConvGeometry(in_shape=(h, w, c), kernel=(kh, kw), strides=(sh, sw), pad=(top, left),
                        conv_shape=(ch, cw), out_hw=(ch, cw), pad_value=int(pad_value))


def _pool_geometry(lay, i, in_shape, one_d):
    h, w, c = spatial(in_shape)
    if getattr(lay, "data_format", "channels_last") != "channels_last":
        raise UnsupportedModelError("only data_format='channels_last' is supported.", lay, i)
    ph, pw = _pair(lay.pool_size, one_d)
    sh, sw = _pair(lay.strides, one_d)
    oh, top = _window(h, ph, sh, lay.padding)
    ow, left = _window(w, pw, sw, lay.padding)
    if oh < 1 or ow < 1:
        raise UnsupportedModelError(f"pool {ph}x{pw} does not fit the {h}x{w} input.", lay, i)
    return {"pool": (ph, pw), "strides": (sh, sw), "pad": (top, left), "out_hw": (oh, ow),
            "in_shape": (h, w, c)}


def _keras_shape(hw, c, one_d):
    return (hw[1], c) if one_d else (hw[0], hw[1], c)


def _translate_compute(b, lay, i, inp, cls, skip_activation=False):
    """Quant/float Conv1D, Conv2D, DepthwiseConv2D, Dense -> ops; returns the output tensor."""
    t = b.t(inp)
    separable = "Separable" in cls  # depthwise (depthwise_kernel) then a pointwise 1x1 conv
    depthwise = "Depthwise" in cls or separable
    dense = cls.endswith("Dense")
    one_d = cls.endswith("Conv1D")
    if depthwise:
        wkind, w, scale = _kernel_values(lay, i, "depthwise_kernel", "depthwise_quantizer")
    else:
        wkind, w, scale = _kernel_values(lay, i)
    sign_in = _input_quant(lay, i)
    if not dense and len(t.shape) != (2 if one_d else 3):
        raise UnsupportedModelError(f"input shape {t.shape} does not fit a {cls}.", lay, i)
    bias = np.asarray(lay.bias.numpy(), dtype=np.float32) if getattr(lay, "use_bias", False) else None
    x = b.as_bits(inp, lay.name) if sign_in else inp
    binary = wkind in ("binary", "scaled") and b.t(x).dtype == "bits"
    name = lay.name
    if dense:
        n = t.shape[-1]
        out_shape = t.shape[:-1] + (w.shape[-1],)
        if binary:
            y = b.op("bdense", [x], out_shape, "int", {"weights": w.T.copy(), "keras_layer": lay},
                     [name], lo=-n, hi=n)
        else:
            wf = np.where(w, 1.0, -1.0).astype(np.float32) if wkind != "float" else w
            if scale is not None:
                wf = (wf * scale).astype(np.float32)
            y = b.op("dense", [b.as_float(x)], out_shape, "float32",
                     {"weights": wf, "binary_weights": wkind == "binary", "keras_layer": lay},
                     [name])
            scale = None
    else:
        geom = _conv_geometry(lay, i, t.shape, one_d)
        kh, kw = geom.kernel
        c = geom.in_shape[2]
        if depthwise:
            m = w.shape[-1]
            out_c = c * m
        else:
            out_c = w.shape[-1]
        out_shape = _keras_shape(geom.out_hw, out_c, one_d)
        if one_d:
            w = w[None]  # (k, C, O) -> (1, k, C, O)
        if binary:
            fan = kh * kw * (1 if depthwise else c)
            kind = "bdepthwise" if depthwise else "bconv"
            y = b.op(kind, [x], out_shape, "int", {"weights": w.transpose(3, 0, 1, 2).copy(),
                                                   "geometry": geom, "keras_layer": lay},
                     [name], lo=-fan, hi=fan)
        else:
            wf = np.where(w, 1.0, -1.0).astype(np.float32) if wkind != "float" else w
            if scale is not None:
                wf = (wf * scale).astype(np.float32)  # what Keras convolves with
            y = b.op("depthwise" if depthwise else "conv", [b.as_float(x)], out_shape, "float32",
                     {"weights": wf, "geometry": geom, "pad_value": float(geom.pad_value),
                      "binary_weights": wkind == "binary", "keras_layer": lay}, [name])
            scale = None
    y = _weight_scale(b, y, scale, c if depthwise else None, name)
    if separable:  # the pointwise 1x1 conv reads the depthwise output as it is (no quantizer between)
        return _translate_pointwise(b, lay, i, y, one_d, bias, skip_activation)
    return _compute_tail(b, lay, i, y, bias, skip_activation)


def _weight_scale(b, y, scale, depthwise_c, name):
    """y times a magnitude-aware sign's per-output-channel scale (an affine op), or y."""
    if scale is None:
        return y
    if depthwise_c is not None:
        scale = np.tile(scale, depthwise_c)  # output channel c * M + m has scale[m]
    return b.op("affine", [b.as_float(y)], b.t(y).shape, "float32",
                {"a": scale, "b": np.zeros_like(scale), "a64": scale.astype(np.float64),
                 "b64": np.zeros(len(scale)), "fn": _scale_fn(scale), "weight_scale": True}, [name])


def _translate_pointwise(b, lay, i, y, one_d, bias, skip_activation):
    """The pointwise half of a (Quant)SeparableConv1D/2D: a 1x1 conv over the depthwise output (int
    accumulators of a binary depthwise, or float32) with the pointwise_kernel (pointwise_quantizer:
    +-1, +-scale or float weights) -- a float32 `conv` op: with +-1 weights on integer values every
    partial sum is an integer below 2^24, so it is exact, as is Keras's."""
    wkind, w, scale = _kernel_values(lay, i, "pointwise_kernel", "pointwise_quantizer")
    if one_d:
        w = w[None]  # (1, C*M, O) -> (1, 1, C*M, O)
    t = b.t(y)
    h, w_, cm = spatial(t.shape)
    geom = ConvGeometry(in_shape=(h, w_, cm), kernel=(1, 1), strides=(1, 1), pad=(0, 0), conv_shape=(h, w_),
                        out_hw=(h, w_))
    wf = np.where(w, 1.0, -1.0).astype(np.float32) if wkind != "float" else w
    if scale is not None:
        wf = (wf * scale).astype(np.float32)  # what Keras convolves with
    out_shape = _keras_shape((h, w_), w.shape[-1], one_d)
    y = b.op("conv", [b.as_float(y)], out_shape, "float32",
             {"weights": wf.reshape(1, 1, cm, -1), "geometry": geom, "pad_value": 0.0,
              "binary_weights": wkind == "binary", "keras_layer": lay}, [lay.name])
    return _compute_tail(b, lay, i, y, bias, skip_activation)


def _compute_tail(b, lay, i, y, bias, skip_activation):
    """A compute layer's bias and activation after its product y; returns the output tensor."""
    name = lay.name
    if bias is not None:
        y = b.op("affine", [b.as_float(y)], b.t(y).shape, "float32",
                 {"a": np.ones_like(bias), "b": bias, "a64": np.ones(len(bias)),
                  "b64": bias.astype(np.float64), "fn": _bias_fn(bias)}, [name])
    act = "linear" if skip_activation else _act_name(getattr(lay, "activation", None))
    if act not in ("linear", "None"):
        params, fn = _activation_op(act, lay, i)
        y = b.op("activation", [b.as_float(y)], b.t(y).shape, "float32", dict(params, keras_fn=fn), [name])
    b.t(y).keras = name
    return y


def _scale_fn(scale):
    s = np.asarray(scale, dtype=np.float32)
    return lambda x: (np.asarray(x, dtype=np.float32) * s).astype(np.float32)


def _translate(b, lay, i, inputs, skip_activation=False):
    """Translate one Keras layer call; returns its output tensor name (or the input for no-ops)."""
    cls = type(lay).__name__
    tf, _ = import_larq()
    if isinstance(lay, tf.keras.Model):
        raise UnsupportedModelError("nested models are not supported.", lay, i,
                                    "Build one flat Sequential or functional model.")
    if cls in ("Add", "Concatenate"):
        if len(inputs) < 2:
            raise UnsupportedModelError(f"{cls} needs at least two inputs.", lay, i)
        shapes = {b.t(n).shape for n in inputs}
        if cls == "Add":
            if len(shapes) != 1:
                raise UnsupportedModelError(f"inputs of different shapes {sorted(shapes)} (broadcasting "
                                            "is not supported).", lay, i)
            y = b.op("add", [b.as_float(n) for n in inputs], b.t(inputs[0]).shape, "float32", {}, [lay.name])
        else:
            rank = len(b.t(inputs[0]).shape)
            if lay.axis not in (-1, rank):
                raise UnsupportedModelError(f"Concatenate axis={lay.axis} is not supported.", lay, i,
                                            "Concatenate along the channel (last) axis.")
            shape = b.t(inputs[0]).shape[:-1] + (sum(b.t(n).shape[-1] for n in inputs),)
            y = b.op("concat", [b.as_float(n) for n in inputs], shape, "float32", {}, [lay.name])
        b.t(y).keras = lay.name
        return y
    if len(inputs) != 1:
        raise UnsupportedModelError(f"{cls} with {len(inputs)} inputs is not supported.", lay, i)
    inp = inputs[0]
    if b.t(inp).divisor is not None and cls not in ("AveragePooling1D", "AveragePooling2D",
                                                    "GlobalAveragePooling1D", "GlobalAveragePooling2D"):
        inp = b.as_float(inp)  # an average's value is value / divisor: only float ops read it
    t = b.t(inp)
    if cls in NOOP_LAYERS or (cls == "Activation" and _act_name(lay.activation) == "linear"):
        return inp
    if cls in COMPUTE_LAYERS:
        return _translate_compute(b, lay, i, inp, cls, skip_activation)
    if cls == "Rescaling":
        scale = np.asarray(lay.scale, dtype=np.float32).reshape(-1)
        offset = np.asarray(lay.offset, dtype=np.float32).reshape(-1)
        if scale.size != 1 or offset.size != 1:
            raise UnsupportedModelError("only a scalar Rescaling scale and offset are supported.", lay, i)
        y = b.op("affine", [b.as_float(inp)], t.shape, "float32",
                 {"a": scale, "b": offset, "a64": scale.astype(np.float64), "b64": offset.astype(np.float64),
                  "fn": _layer_fn(lay), "keras_layer": lay}, [lay.name], keras=lay.name)
        return y
    if cls == "BatchNormalization":
        axis = lay.axis if isinstance(lay.axis, (list, tuple)) else [lay.axis]
        rank = len(lay.input_shape)
        if [a % rank for a in axis] != [rank - 1]:
            raise UnsupportedModelError(f"BatchNormalization over axis {lay.axis} is not supported.", lay, i,
                                        "Normalize the channel axis (axis=-1).")
        a64, b64 = _bn_affine(lay)
        return b.op("affine", [b.as_float(inp)], t.shape, "float32",
                    {"a": a64.astype(np.float32), "b": b64.astype(np.float32), "a64": a64, "b64": b64,
                     "fn": _layer_fn(lay)}, [lay.name], keras=lay.name)
    if cls == "Activation" and _is_sign(lay.activation):  # an explicit sign, e.g. Activation(SteSign())
        y = b.as_bits(inp, lay.name)
        b.t(y).keras = lay.name
        return y
    if cls in ("ReLU", "Activation", "LeakyReLU"):
        if cls == "Activation" and _act_name(lay.activation) == "softmax" or cls == "Softmax":
            raise UnsupportedModelError("softmax is only supported as the last layer.", lay, i)
        if cls == "ReLU":
            mv = None if lay.max_value is None else float(lay.max_value)
            if float(lay.negative_slope) != 0.0 or float(lay.threshold) != 0.0 or mv not in (None, 6.0):
                raise UnsupportedModelError("ReLU with negative_slope, threshold or a max_value other than 6 "
                                            "is not supported.", lay, i)
            params = {"fn": "relu" if mv is None else "relu6"}
        elif cls == "LeakyReLU":
            alpha = float(lay.alpha)
            if alpha < 0:
                raise UnsupportedModelError("LeakyReLU with a negative alpha is not supported.", lay, i)
            params = {"fn": "leaky_relu", "alpha": np.float32(alpha)}
        else:
            params, _ = _activation_op(_act_name(lay.activation), lay, i)
        return b.op("activation", [b.as_float(inp)], t.shape, "float32", dict(params, keras_fn=_layer_fn(lay)),
                    [lay.name], keras=lay.name)
    if cls in ("MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D"):
        one_d = cls.endswith("1D")
        if len(t.shape) != (2 if one_d else 3):
            raise UnsupportedModelError(f"input shape {t.shape} does not fit a {cls}.", lay, i)
        geom = _pool_geometry(lay, i, t.shape, one_d)
        shape = _keras_shape(geom["out_hw"], t.shape[-1], one_d)
        taps = geom["pool"][0] * geom["pool"][1]
        if cls.startswith("Max"):
            return b.op("max_pool", [inp], shape, t.dtype, {"geometry": geom}, [lay.name], lo=t.lo, hi=t.hi,
                        keras=lay.name)
        return _avg(b, "avg_pool", inp, shape, geom, taps, lay)
    if cls in ("GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalMaxPooling1D", "GlobalMaxPooling2D"):
        if getattr(lay, "data_format", "channels_last") != "channels_last":
            raise UnsupportedModelError("only data_format='channels_last' is supported.", lay, i)
        if len(t.shape) != (2 if cls.endswith("1D") else 3):
            raise UnsupportedModelError(f"input shape {t.shape} does not fit a {cls}.", lay, i)
        h, w, c = spatial(t.shape)
        geom = {"pool": (h, w), "strides": (1, 1), "pad": (0, 0), "out_hw": (1, 1), "in_shape": (h, w, c)}
        shape = (c,)
        if getattr(lay, "keepdims", False):  # same values, Keras shape (1, C) or (1, 1, C)
            shape = (1,) * (len(t.shape) - 1) + (c,)
        if "Max" in cls:
            return b.op("global_max", [inp], shape, t.dtype, {"geometry": geom}, [lay.name], lo=t.lo, hi=t.hi,
                        keras=lay.name)
        return _avg(b, "global_avg", inp, shape, geom, h * w, lay)
    if cls in ("Flatten", "Reshape"):
        shape = (t.size,) if cls == "Flatten" else tuple(int(d) for d in lay.output_shape[1:])
        if int(np.prod(shape)) != t.size:
            raise UnsupportedModelError(f"cannot reshape {t.shape} to {shape}.", lay, i)
        return b.op("reshape", [inp], shape, t.dtype, {}, [lay.name], lo=t.lo, hi=t.hi, keras=lay.name)
    raise UnsupportedModelError(f"{cls} is not supported by the graph lowering.", lay, i)


def _avg(b, kind, inp, shape, geom, taps, lay):
    t = b.t(inp)
    if t.dtype == "bits" or (t.dtype == "int" and t.divisor is None):
        lo, hi = (-1, 1) if t.dtype == "bits" else (t.lo, t.hi)
        divisor = _avg_divisor(geom)
        if np.all(divisor == divisor.flat[0]):
            divisor = divisor.reshape(-1)[:1]  # every window inside the input: one divisor
        return b.op(kind, [inp], shape, "int", {"geometry": geom}, [lay.name], lo=min(lo, lo * taps),
                    hi=max(hi, hi * taps), divisor=divisor,
                    keras=lay.name)
    return b.op(kind, [b.as_float(inp)], shape, "float32", {"geometry": geom}, [lay.name], keras=lay.name)


def _avg_divisor(geom):
    """In-bounds taps of every output position: int64 (OH, OW, 1)."""
    h, w, _ = geom["in_shape"]
    (ph, pw), (sh, sw), (top, left), (oh, ow) = geom["pool"], geom["strides"], geom["pad"], geom["out_hw"]
    ys = np.arange(oh)[:, None] * sh - top + np.arange(ph)[None, :]
    xs = np.arange(ow)[:, None] * sw - left + np.arange(pw)[None, :]
    ny = ((ys >= 0) & (ys < h)).sum(1)
    nx = ((xs >= 0) & (xs < w)).sum(1)
    return (ny[:, None] * nx[None, :])[..., None].astype(np.int64)


# --------------------------------------------------------------------------------------------------
# Python operators and tf.* calls (TFOpLambda layers)


def _tfop_args(lay, i, node, names):
    """The call's operands in signature order (`names`), positional or keyword; name= dropped."""
    args = list(node.call_args)
    while len(args) > len(names) and args[-1] is None:
        args.pop()  # e.g. a positional name=None
    kwargs = {k: v for k, v in node.call_kwargs.items() if k != "name"}
    for n in names[len(args):]:
        if n in kwargs:
            args.append(kwargs.pop(n))
    if len(args) != len(names) or kwargs:
        raise UnsupportedModelError(f"tf.{lay.symbol} called with arguments keras-ebnn does not take "
                                    f"({len(args)} operands, extra {sorted(kwargs)}).", lay, i, TFOP_HINT)
    return args


TFOP_HINT = ("Python operators and tf.* calls are lowered for: x + y, x - y, x + c, x - c, c - x, x * c, "
             "x / c, -x (c a scalar constant), tf.reshape keeping the batch axis, tf.nn.relu / relu6, "
             "tf.tanh / sigmoid; use the matching Keras layer for anything else.")


def _translate_tfop(b, lay, i, out_key, env):
    """A TFOpLambda (`x + y`, `x * 0.5`, tf.reshape, ...) as the ops of the matching layers: add;
    affine for a scalar constant (x + c: a = 1, b = c; x * c: a = c, b = -0.0, so the result is exactly
    x * c, signed zeros included; x - y: add of an exact negation); `div` for x / c (one rounded
    float32 division, as TensorFlow's); reshape; activation."""
    tf, _ = import_larq()
    fname = getattr(lay, "symbol", None) or lay.get_config().get("function")
    what = TF_OPS.get(fname)
    if what is None:
        raise UnsupportedModelError(f"tf.{fname} is not lowered.", lay, i, TFOP_HINT)
    node = next(n for n in lay._inbound_nodes if _key(tf.nest.flatten(n.outputs)[0]) == out_key)
    names = {"reshape": ("tensor", "shape")}.get(what, ("x",) if what in (
        "negative", "relu", "relu6", "tanh", "sigmoid") else ("x", "y"))
    args = _tfop_args(lay, i, node, names)
    is_t = [hasattr(a, "_keras_history") for a in args]
    name = lay.name

    def const(v):
        c = np.asarray(v.numpy() if hasattr(v, "numpy") else v, dtype=np.float32)
        if c.size != 1:
            raise UnsupportedModelError(f"tf.{fname} with a constant of shape {c.shape}: only scalar constants "
                                        "are lowered.", lay, i, TFOP_HINT)
        return c.reshape(1)

    def affine(x, a, bb, fn):
        x = b.as_float(x)
        return b.op("affine", [x], b.t(x).shape, "float32",
                    {"a": a, "b": bb, "a64": a.astype(np.float64), "b64": bb.astype(np.float64), "fn": fn},
                    [name], keras=name)
    f32 = (lambda f: lambda x: np.asarray(f(np.asarray(x, dtype=np.float32)), dtype=np.float32))
    one, neg_one, neg_zero = np.ones(1, np.float32), -np.ones(1, np.float32), np.full(1, -0.0, np.float32)
    if what == "reshape":
        x = env[_key(args[0])]
        shape = tuple(node.outputs.shape) if hasattr(node.outputs, "shape") else None
        if shape is None or shape[0] is not None or any(d is None for d in shape[1:]):
            raise UnsupportedModelError(f"tf.reshape to {shape}: the batch axis must stay first and the other "
                                        "dimensions fixed.", lay, i, TFOP_HINT)
        shape, t = tuple(int(d) for d in shape[1:]), b.t(x)
        if int(np.prod(shape)) != t.size:
            raise UnsupportedModelError(f"cannot reshape {t.shape} to {shape}.", lay, i)
        return b.op("reshape", [x], shape, t.dtype, {}, [name], lo=t.lo, hi=t.hi, keras=name)
    if what in ("relu", "relu6", "tanh", "sigmoid"):
        if not is_t[0]:
            raise UnsupportedModelError(f"tf.{fname} of a constant.", lay, i, TFOP_HINT)
        x = b.as_float(env[_key(args[0])])
        return b.op("activation", [x], b.t(x).shape, "float32",
                    {"fn": what, "keras_fn": _tf_fn(getattr(tf.nn, what))}, [name], keras=name)
    if what == "negative":
        return affine(env[_key(args[0])], neg_one, neg_zero, f32(lambda x: -x))
    x, y = args
    if is_t[0] and is_t[1]:
        tx, ty = env[_key(x)], env[_key(y)]
        if b.t(tx).shape != b.t(ty).shape:
            raise UnsupportedModelError(f"tf.{fname} of shapes {b.t(tx).shape} and {b.t(ty).shape} (broadcasting "
                                        "is not supported).", lay, i, TFOP_HINT)
        if what in ("multiply", "divide"):
            raise UnsupportedModelError(f"tf.{fname} of two tensors is not lowered (only by a constant).", lay, i,
                                        TFOP_HINT)
        if what == "subtract":  # x - y == x + (-y) exactly (IEEE); -y = y * -1 + -0.0 exactly
            ty = affine(ty, neg_one, neg_zero, f32(lambda v: -v))
        y = b.op("add", [b.as_float(tx), ty if what == "subtract" else b.as_float(ty)], b.t(tx).shape, "float32",
                 {}, [name], keras=name)
        return y
    if not (is_t[0] or is_t[1]):
        raise UnsupportedModelError(f"tf.{fname} of two constants.", lay, i, TFOP_HINT)
    t, c = (env[_key(x)], const(y)) if is_t[0] else (env[_key(y)], const(x))
    cv = np.float32(c[0])
    if what == "add":
        return affine(t, one, c, f32(lambda v: v + cv))
    if what == "subtract":
        if is_t[0]:  # x - c
            return affine(t, one, -c, f32(lambda v: v - cv))
        return affine(t, neg_one, c, f32(lambda v: cv - v))  # c - x == (-x) + c exactly
    if what == "multiply":
        return affine(t, c, neg_zero, f32(lambda v: v * cv))
    if not is_t[0]:
        raise UnsupportedModelError(f"tf.{fname} of a constant by a tensor is not lowered.", lay, i, TFOP_HINT)
    t = b.as_float(t)
    return b.op("div", [t], b.t(t).shape, "float32", {"d": c, "keras_fn": f32(lambda v: v / cv)}, [name], keras=name)


# --------------------------------------------------------------------------------------------------
# Walking the Keras graph


def _keras_calls(model):
    """[(layer, input keys, output key)] in a topological order; keys identify Keras tensors."""
    tf, _ = import_larq()
    if not getattr(model, "_is_graph_network", False):
        raise UnsupportedModelError("the model has no fixed input: build it with an Input / InputLayer.")
    check_keras_outputs(model)
    if len(model.inputs) != 1:
        raise UnsupportedModelError(f"the model has {len(model.inputs)} inputs; exactly one is supported.")
    calls = []
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            ins = [_key(t) for t in node.keras_inputs]
            outs = [_key(t) for t in tf.nest.flatten(node.outputs)]
            if len(outs) != 1:
                raise UnsupportedModelError("layers with several outputs are not supported.", node.layer)
            calls.append((node.layer, ins, outs[0]))
    return calls


def _output_name(t):
    return f"'{t._keras_history[0].name}' {tuple(t.shape[1:])}"


def check_keras_outputs(model):
    """Raise ModelOutputError unless the Keras model has one output that is a vector (K,) or (1, .., K) (README
    "Limits": NAME_predict fills one scores array; K == 1 is a binary classifier, see
    keras_ebnn.ir.blocks.class_threshold)."""
    from ..errors import ModelOutputError
    outs = list(getattr(model, "outputs", None) or [])
    if len(outs) > 1:
        raise ModelOutputError(
            f"the model has {len(outs)} outputs ({', '.join(_output_name(t) for t in outs)}): NAME_predict "
            "fills one scores array, so exactly one output is supported. Export each head as a model of "
            "its own, e.g. tf.keras.Model(model.input, model.get_layer('NAME').output).")
    if len(outs) == 1 and any(d != 1 for d in tuple(outs[0].shape)[1:-1]):  # (K,), (1, K), (1, 1, K)
        raise ModelOutputError(
            f"the model's output {_output_name(outs[0])} is not a vector of scores: NAME_predict returns "
            "one class from K scores (K,) (or one sigmoid / logit unit). A Dense layer acts on the last "
            "axis only, so on a sequence or image it gives scores per position: put Flatten or global "
            "pooling before the head.")


def check_output(g):
    """Raise ModelOutputError unless the graph's output is a vector (K,), and, for K == 1, a sigmoid
    probability or a linear logit without softmax (keras_ebnn.ir.blocks.class_threshold)."""
    from ..errors import ModelOutputError
    out = g.tensors[g.output]
    if not out.shape or any(d != 1 for d in out.shape[:-1]):
        raise ModelOutputError(f"the model's output has shape {out.shape}, not a vector of scores (K,).")
    if out.shape[0] != 1:
        return
    if g.softmax:
        raise ModelOutputError("the model ends in a softmax over one unit, which is always 1.0: a binary "
                               "classifier ends in Dense(1, activation='sigmoid') or a linear Dense(1) "
                               "logit (class 1 when p >= 0.5), or in a softmax over 2 units.")
    last = g.producer().get(g.output)
    if last is not None and last.kind == "activation" and last.params["fn"] != "sigmoid":
        raise ModelOutputError(
            f"the model's single output unit ends in a {last.params['fn']} activation: one unit is exported "
            "as a binary classifier, a sigmoid probability (class 1 when p >= 0.5) or a linear logit "
            "(class 1 when z >= 0); other activations have no such class rule.")


def _key(t):
    lay, node_index, tensor_index = t._keras_history
    return (lay.name, node_index, tensor_index)


def _translate_model(model):
    b = _Builder()
    calls = _keras_calls(model)
    in_key, out_key = _key(model.inputs[0]), _key(model.outputs[0])
    layers = [lay for lay, _, _ in calls if type(lay).__name__ != "InputLayer"]
    index = {id(lay): i for i, lay in enumerate(layers)}
    in_shape = tuple(model.input_shape[1:])
    if any(d is None for d in in_shape) or not 1 <= len(in_shape) <= 3:
        raise UnsupportedModelError(f"input shape {model.input_shape} is not supported; use a fixed "
                                    "(N,), (L, C) or (H, W, C) input.")
    first = [lay for lay, ins, _ in calls if in_key in ins]
    uint8 = len(first) == 1 and type(first[0]).__name__ == "Rescaling"
    inp = b.tensor(in_shape, "int" if uint8 else "float32", lo=0 if uint8 else None,
                   hi=255 if uint8 else None)
    env = {in_key: inp}
    softmax = False
    for lay, ins, out in calls:
        if type(lay).__name__ == "InputLayer":
            continue
        i = index[id(lay)]
        cls = type(lay).__name__
        is_softmax = cls == "Softmax" or (cls == "Activation" and _act_name(lay.activation) == "softmax")
        final_softmax = (cls in ("QuantDense", "Dense") and _act_name(lay.activation) == "softmax")
        if is_softmax or final_softmax:
            if out != out_key:
                raise UnsupportedModelError("softmax is only supported as the last layer.", lay, i)
            softmax = True
            if is_softmax:
                env[out] = env[ins[0]]
                continue
            env[out] = _translate(b, lay, i, [env[k] for k in ins], skip_activation=True)
            continue
        if cls == "TFOpLambda":
            env[out] = _translate_tfop(b, lay, i, out, env)
            continue
        env[out] = _translate(b, lay, i, [env[k] for k in ins])
    output = b.as_float(env[out_key])
    return b, inp, output, softmax


# --------------------------------------------------------------------------------------------------
# Fusion


def _rewrite_signs(g):
    """Move each sign before a Flatten/Reshape or Concatenate that only it reads (sign commutes with
    both), so fusable chains end right at the sign. Repeats until nothing moves."""
    changed = True
    while changed:
        changed = False
        prod, cons = g.producer(), g.consumers()
        for op in list(g.ops):
            if op.kind != "sign":
                continue
            src = prod.get(op.inputs[0])
            if src is None or src.kind not in ("reshape", "concat") or len(cons[src.output]) != 1:
                continue
            if src.kind == "concat" and any(g.tensors[t].dtype != "float32" for t in src.inputs):
                continue
            new_inputs = []
            pos = g.ops.index(src)
            for t in src.inputs:
                existing = [c for c in cons[t] if c.kind == "sign"]
                if existing:
                    new_inputs.append(existing[0].output)
                    continue
                bt = f"{op.output}_s{len(new_inputs)}"
                g.tensors[bt] = Tensor(bt, g.tensors[t].shape, "bits", keras=g.tensors[t].keras)
                g.ops.insert(pos, Op("sign", [t], bt, {}, list(op.layers)))
                pos += 1
                new_inputs.append(bt)
            g.ops.remove(op)
            src.inputs = new_inputs
            old_out = src.output
            src.output = op.output  # the sign's bits tensor now comes out of the reshape / concat
            t_out = g.tensors[op.output]
            t_out.shape = g.tensors[old_out].shape
            del g.tensors[old_out]
            changed = True
            break
    _toposort(g)


def _toposort(g):
    prod = g.producer()
    done, order = {g.input}, []

    def visit(op):
        for t in op.inputs:
            if t not in done:
                visit(prod[t])
        if op.output not in done:
            done.add(op.output)
            order.append(op)
    for op in list(g.ops):
        visit(op)
    g.ops[:] = order


def _chain_back(g, start, prod, cons, allow_pool):
    """Walk back from tensor `start` over single-reader monotone ops: (root op, pre, pool op, post)
    where post / pre are the chain ops after / before the (optional) max pool, in execution order;
    root is None when the chain starts at the model input. The chain's own tensors have no other
    reader; root's output may have (block fusion then refuses, a threshold op keeps it)."""
    post, pre, pool = [], [], None
    t = start
    if len(cons[t]) != 1:
        return None
    while True:
        op = prod.get(t)
        if op is None:  # reached the model input
            return None, pre[::-1], pool, post[::-1]
        if op.kind in CHAIN_KINDS:
            pre.append(op)  # collected backwards; becomes `post` if a max pool comes next
        elif op.kind == "max_pool" and allow_pool and pool is None:
            pool = op
            post, pre = pre, []
        else:
            return op, pre[::-1], pool, post[::-1]
        t = op.inputs[0]
        if len(cons[t]) != 1:  # the chain starts here: t is also read elsewhere
            return prod.get(t), pre[::-1], pool, post[::-1]


def _fn(g, op):
    """The Keras-exact float32 function of a chain op (for the threshold search)."""
    if op.kind == "to_float":
        divisor = g.tensors[op.inputs[0]].divisor
        if divisor is None:
            return lambda x: np.asarray(x, dtype=np.float32)
        d = np.float32(np.asarray(divisor).reshape(-1)[0])  # a single divisor (checked by the caller)
        return lambda x: (np.asarray(x, dtype=np.float32) / d).astype(np.float32)
    if op.kind == "affine":
        return op.params["fn"]
    return op.params["keras_fn"]


def _input_root(g, op, prod, cons):
    """For a compute op reading (maybe through sign / Flatten / Rescaling) the model input: the
    (Rescaling layer or None, sign?, ops in between) that an InputConvBlock absorbs, else None."""
    t = op.inputs[0]
    between, sign, flatten, rescaling = [], False, False, None
    while t != g.input:
        p = prod.get(t)
        if p is None or len(cons[t]) != 1:
            return None
        if p.kind == "sign" and not sign and rescaling is None:
            sign = True
        elif p.kind == "reshape" and not flatten and rescaling is None:
            flatten = True
        elif p.kind == "affine" and "keras_layer" in p.params and rescaling is None and \
                type(p.params["keras_layer"]).__name__ == "Rescaling":
            rescaling = p.params["keras_layer"]
        elif p.kind == "to_float" and p.inputs[0] == g.input:
            pass
        else:
            return None
        between.append(p)
        t = p.inputs[0]
    return rescaling, sign, between


MAX_INT_THRESHOLD_RANGE = 2 ** 20  # integer threshold search: every value of the range is evaluated


def _fuse_threshold(g, sign_op, prod, cons):
    """Replace sign(chain(x)) of a float32 or int tensor x (no binary op before it) by one
    `threshold` op when the chain is not empty; returns True if it did."""
    found = _chain_back(g, sign_op.inputs[0], prod, cons, allow_pool=True)
    if found is None:
        return False
    root, pre, pool, post = found
    chain = post if pool is not None else pre
    if not chain:
        return False
    src = chain[0].inputs[0]
    t = g.tensors[src]
    if t.dtype == "float32":
        acc_range = None
    elif t.dtype == "int" and (t.divisor is None or np.asarray(t.divisor).size == 1) and \
            t.hi - t.lo <= MAX_INT_THRESHOLD_RANGE:
        acc_range = (t.lo, t.hi)
    else:
        return False
    channels = t.shape[-1]
    thr, flip, _ = thresholds.chain_thresholds([_fn(g, o) for o in chain], [], False, channels, acc_range)
    names = list(dict.fromkeys(n for o in chain + [sign_op] for n in o.layers))
    new = Op("threshold", [src], sign_op.output, {"threshold": thr, "flip": flip}, names)
    g.ops[g.ops.index(sign_op)] = new
    for o in chain:
        g.ops.remove(o)
        del g.tensors[o.output]
    return True


def _input_spec(shape, rescaling, lay, is_conv):
    """The InputSpec of the first block (`_fuse_sign`): how the model input is read, from the first
    layer `lay`'s input quantizer and the Rescaling before it (None: none)."""
    sign_input = _qname(lay.input_quantizer) is not None
    if rescaling is None:
        mode = "sign_float" if sign_input else "float"
        return InputSpec(shape=shape, mode=mode)
    scale = np.asarray(rescaling.scale, dtype=np.float64)
    offset = np.asarray(rescaling.offset, dtype=np.float64)
    if scale.size != 1 or offset.size != 1:
        raise UnsupportedModelError("only a scalar Rescaling scale and offset are supported.", rescaling, 0)
    scale, offset = float(scale), float(offset)
    if scale <= 0:
        raise UnsupportedModelError(f"Rescaling scale {scale} must be positive.", rescaling, 0)
    if sign_input:
        tf, _ = import_larq()
        real = np.asarray(rescaling(tf.constant(np.arange(256, dtype=np.float32)[:, None])))[:, 0]
        nonneg = np.nonzero(real >= 0)[0]
        return InputSpec(shape=shape, mode="sign_uint8", sign_threshold=int(nonneg[0]) if nonneg.size else 256)
    # p * scale + offset == q_scale * (q_mul * p + q_add) with small integers q_mul, q_add
    ratio = Fraction(offset / scale).limit_denominator(256)
    if abs(float(ratio) - offset / scale) > 1e-6 * max(1.0, abs(offset / scale)):
        raise UnsupportedModelError(
            f"Rescaling offset/scale = {offset / scale} is not a simple fraction.", rescaling, 0,
            "Use e.g. Rescaling(1/255) or Rescaling(1/127.5, offset=-1).")
    q_mul, q_add = ratio.denominator, ratio.numerator
    q_scale = scale / q_mul
    pad_q = 0
    if is_conv and lay.padding == "same" and float(np.asarray(lay.pad_values)) == 1.0:
        pad_q = round(1.0 / q_scale)
        if abs(pad_q * q_scale - 1.0) > 1e-9:
            raise UnsupportedModelError(
                "pad_values=1 on the first layer needs 1.0 to be a whole number of input steps "
                f"(1/{q_scale} is not an integer).", lay, 0, "Use pad_values=0.")
    return InputSpec(shape=shape, mode="uint8", q_mul=q_mul, q_add=q_add, q_scale=q_scale, pad_q=pad_q)


def _fuse_sign(g, sign_op, prod, cons):
    """Replace sign(chain(root)) by one block op if the pattern fits; returns True if it did."""
    found = _chain_back(g, sign_op.inputs[0], prod, cons, allow_pool=True)
    if found is None or found[0] is None:
        return False
    root, pre, pool, post = found
    if len(cons[root.output]) != 1:
        return False
    removed = [root] + pre + ([pool] if pool is not None else []) + post
    spec, in_between = None, []
    lay = root.params.get("keras_layer")
    if root.kind in ("bconv", "bdense"):
        weights = root.params["weights"]
        dense = root.kind == "bdense"
        if dense and len(g.tensors[root.inputs[0]].shape) != 1:
            return False
        first = _input_root(g, root, prod, cons)
        if first is not None and first[1] and not (g.quant is not None and g.tensors[g.input].dtype == "float32"):
            spec_in = first  # sign input quantizer on the model input (not in an integer-only graph)
        else:
            spec_in = None
        acc_src = root.inputs[0]
    elif root.kind in ("conv", "dense") and root.params.get("binary_weights"):
        if g.quant is not None and g.tensors[g.input].dtype == "float32":
            return False  # graph_quant.lower_int8: no float input block in an integer-only graph
        spec_in = _input_root(g, root, prod, cons)
        if spec_in is None or spec_in[1]:
            return False
        w = root.params["weights"] > 0
        dense = root.kind == "dense"
        if dense and len(g.tensors[root.inputs[0]].shape) != 1:
            return False
        weights = w.T.copy() if dense else w.transpose(3, 0, 1, 2).copy()
        acc_src = None
    else:
        return False
    if pool is not None and root.kind not in ("bconv", "conv"):
        return False
    in_shape = spatial(g.tensors[g.input].shape) if spec_in is not None else None
    if spec_in is not None:
        rescaling, _, in_between = spec_in
        is_conv = not dense
        if rescaling is not None and g.tensors[g.input].dtype != "int":
            return False
        try:
            spec = _input_spec(in_shape, rescaling, lay, is_conv)
        except UnsupportedModelError:
            return False
        if dense:  # a dense layer on the flattened input: a convolution with an H x W kernel
            h, w_, c = in_shape
            geom = ConvGeometry(in_shape=in_shape, kernel=(h, w_), strides=(1, 1), pad=(0, 0),
                                conv_shape=(1, 1), out_hw=(1, 1))
            weights = weights.reshape((weights.shape[0],) + in_shape)
        else:
            geom = root.params["geometry"]
            if geom.in_shape != in_shape:
                return False
        acc_range = integer_range(int(np.prod(weights.shape[1:])), spec)
    else:
        geom = root.params.get("geometry")
        acc_range = integer_range(int(np.prod(weights.shape[1:])))
    if pool is not None:
        pg = pool.params["geometry"]
        geom = ConvGeometry(in_shape=geom.in_shape, kernel=geom.kernel, strides=geom.strides, pad=geom.pad,
                            conv_shape=geom.conv_shape, pool=pg["pool"], pool_strides=pg["strides"],
                            pool_pad=pg["pad"], out_hw=pg["out_hw"], pad_value=geom.pad_value)
    channels = weights.shape[0]
    pre_f = [_fn(g, o) for o in pre if not (o.kind == "to_float" and spec is not None)]
    thr, flip, pool_min = thresholds.chain_thresholds(pre_f, [_fn(g, o) for o in post], pool is not None,
                                                      channels, acc_range, spec)
    weights = np.where(flip.reshape((-1,) + (1,) * (weights.ndim - 1)), ~weights, weights)
    names = [n for o in removed + [sign_op] for n in o.layers]
    names = list(dict.fromkeys(n for n in names))
    if spec is not None:
        block = InputConvBlock(geometry=geom, input=spec, weights=weights, threshold=thr, pool_min=pool_min,
                               source_layers=names)
        inputs = [g.input]
        removed += in_between
    elif dense:
        block = BinaryDenseBlock(weights=weights, threshold=thr, source_layers=names)
        inputs = [acc_src]
    else:
        block = BinaryConvBlock(geometry=geom, weights=weights, threshold=thr, pool_min=pool_min,
                                source_layers=names)
        inputs = [acc_src]
    # scaled binary weights: Keras sums +-scale terms in float32, which can round differently from
    # float32(acc) * scale right at a threshold, so such bits match Keras up to float near-ties only
    scaled = any(o.params.get("weight_scale") for o in pre + post)
    new = Op("block", inputs, sign_op.output, {"block": block, "weight_scale": scaled}, names)
    g.ops[g.ops.index(sign_op)] = new
    for o in removed:
        g.ops.remove(o)
        if o.output in g.tensors and o.output != sign_op.output:
            del g.tensors[o.output]
    return True


def _fuse_output(g):
    """A final bdense -> (to_float, bias / BN affines) -> output becomes an OutputDenseBlock."""
    prod, cons = g.producer(), g.consumers()
    t, chain = g.output, []
    while True:
        op = prod.get(t)
        if op is None:
            return
        if op.kind in ("to_float", "affine"):
            if op.kind == "affine" and "a64" not in op.params:
                return
            chain.append(op)
        elif op.kind == "bdense" and len(g.tensors[op.inputs[0]].shape) == 1:
            break
        else:
            return
        t = op.inputs[0]
        if len(cons[t]) != 1:
            return
    root = op
    a = np.ones(root.params["weights"].shape[0])
    c = np.zeros_like(a)
    for o in chain[::-1]:
        if o.kind == "affine":
            a, c = a * o.params["a64"], c * o.params["a64"] + o.params["b64"]
    scale, offset = a.astype(np.float32), c.astype(np.float32)
    if not (np.all(np.isfinite(scale)) and np.all(np.isfinite(offset))):
        return
    names = list(dict.fromkeys(n for o in [root] + chain[::-1] for n in o.layers))
    block = OutputDenseBlock(weights=root.params["weights"], scale=scale, offset=offset, source_layers=names)
    new = Op("block", [root.inputs[0]], g.output, {"block": block}, names)
    last = prod[g.output]
    g.ops[g.ops.index(last)] = new
    for o in [root] + chain:
        if o is not last:
            g.ops.remove(o)
            del g.tensors[o.output]


def _prune(g):
    """Drop ops whose output nobody reads (and their tensors)."""
    while True:
        cons = g.consumers()
        dead = [op for op in g.ops if op.output != g.output and not cons[op.output]]
        if not dead:
            break
        for op in dead:
            g.ops.remove(op)
            del g.tensors[op.output]
    used = {g.input, g.output} | {t for op in g.ops for t in op.inputs} | {op.output for op in g.ops}
    for name in list(g.tensors):
        if name not in used:
            del g.tensors[name]


def fuse(g):
    """Fuse sign chains into blocks and the final binary dense into an output block (in place)."""
    _rewrite_signs(g)
    for fuse_one in (_fuse_sign, _fuse_threshold):  # blocks first: an input conv absorbs its sign
        progress = True
        while progress:
            progress = False
            prod, cons = g.producer(), g.consumers()
            for op in g.ops:
                if op.kind == "sign" and fuse_one(g, op, prod, cons):
                    progress = True
                    break
    _fuse_output(g)
    _prune(g)
    _toposort(g)
    return g


def int8_weights(g):
    """Rewrite every full-precision conv / depthwise / dense op of an UNFUSED graph `g` to int8 weights
    plus a per-channel scale (in place; returns the number of ops rewritten). Run it before
    `fuse` so the scale folds into thresholds like any other affine op. The quantization rule is
    keras_ebnn.passes.graph_int8's (which imports nothing from here: the rewrites of the IR live in this module)."""
    count = 0
    for op in list(g.ops):
        if not graph_int8.quantizable(op):
            continue
        q, s = graph_int8.quantize(op.params["weights"], op.kind)
        acc = Tensor(f"{op.output}_acc", g.tensors[op.output].shape, "float32")
        g.tensors[acc.name] = acc
        out = op.output
        op.output = acc.name
        op.params = dict(op.params, weights=q.astype(np.float32), weights_int8=q, weight_scale_int8=s)
        zero = np.zeros_like(s)
        scale = Op("affine", [acc.name], out,
                   {"a": s, "b": zero, "a64": s.astype(np.float64), "b64": zero.astype(np.float64),
                    "fn": _scale_fn(s)}, list(op.layers))
        g.ops.insert(g.ops.index(op) + 1, scale)
        count += 1
    return count


def lower_graph(model, name="model", fuse_blocks=True, float_weights="float32"):
    """Lower a Keras/Larq model (or a model file) into a `Graph` (see the module docstring).

    Raises `UnsupportedModelError` naming the first layer that cannot be lowered. fuse_blocks=False
    keeps the unfused ops (every sign, binary accumulator and float op on its own), for testing.
    float_weights="int8" stores the full-precision conv / depthwise / dense weights as int8 with a
    float32 scale per output channel (`keras_ebnn.passes.graph_int8`; the outputs then differ from Keras's
    by that rounding); "float32" (default) keeps Keras's weights.
    """
    if float_weights not in ("float32", "int8"):
        raise ValueError(f"float_weights must be 'float32' or 'int8', got {float_weights!r}")
    from ..frontend.model_loading import load_model
    tf, _ = import_larq()
    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        model = load_model(model)
    if not isinstance(model, tf.keras.Model):
        raise UnsupportedModelError(f"expected a tf.keras Model or a model file, got {type(model).__name__}")
    b, inp, output, softmax = _translate_model(model)
    g = Graph(name=name, input=inp, output=output, tensors=b.tensors, ops=b.ops, softmax=softmax)
    _prune(g)
    if float_weights == "int8":
        int8_weights(g)
    check_output(g)
    if fuse_blocks:
        fuse(g)
        from ..passes.graph_fuse import fuse_conv_pool
        fuse_conv_pool(g)  # conv -> affine / activation -> pool -> sign as one op (graph_fuse.py)
    check(g)
    return g


def check(g):
    """Structural invariants: topological order, every tensor written once, dtypes as documented."""
    written = {g.input}
    for op in g.ops:
        for t in op.inputs:
            assert t in written, f"{op.kind} reads {t} before it is written"
        assert op.output not in written, f"{op.output} written twice"
        written.add(op.output)
        assert g.tensors[op.output].dtype in DTYPES
    # the output: float32 logits, or int32 logits for an integer-only graph (keras_ebnn.passes.graph_quant)
    assert g.output in written and g.tensors[g.output].dtype == ("int" if g.quant else "float32")


def from_lowered(lowered):
    """The `Graph` of a chain of blocks (`keras_ebnn.ir.blocks.LoweredModel`): one `block` op per block,
    bits tensors between them (the same computation: graph_reference gives reference.run's logits)."""
    spec = lowered.input
    tensors = {"input": Tensor("input", tuple(spec.shape), "int" if spec.dtype == np.uint8 else "float32",
                               lo=0 if spec.dtype == np.uint8 else None, hi=255 if spec.dtype == np.uint8 else None)}
    ops, prev = [], "input"
    for i, block in enumerate(lowered.blocks):
        name = f"b{i}"
        last = i == len(lowered.blocks) - 1
        tensors[name] = Tensor(name, tuple(block.out_shape), "float32" if last else "bits")
        ops.append(Op("block", [prev], name, {"block": block}, list(block.source_layers)))
        prev = name
    g = Graph(name=lowered.name, input="input", output=prev, tensors=tensors, ops=ops, softmax=lowered.softmax)
    check(g)
    return g


def as_graph(model):
    """The `Graph` of a Graph, of an exporters/graph_c.py GraphModel (its .graph) or of a chain of blocks
    (a LoweredModel: `from_lowered`)."""
    if isinstance(model, Graph):
        return model
    graph = getattr(model, "graph", None)
    return graph if graph is not None else from_lowered(model)
