"""Fused blocks: the intermediate representation between Keras and C.

A lowered model is an input description plus a short list of blocks. Every block reads the previous
block's output *bits* (or the raw model input, for the first block) and writes bits, except the last,
which writes float logits. The semantics below are the contract: `keras_ebnn.ir.graph_reference` implements them
in NumPy, `runtime_c/` implements them in C, and both must agree bit for bit.

Conventions
-----------
* A binary value is +1 or -1; **bit 1 means +1**, bit 0 means -1 (sign(0) = +1, as in larq).
* Feature maps are (H, W, C) in Keras's NHWC order; flattening is row-major over (H, W, C), so a dense
  block's input index is ``(y * W + x) * C + c`` (what Keras's ``Flatten`` gives).
* Weights are stored as booleans (True = +1) with shape (O, KH, KW, C) for convolutions and (O, N) for
  dense blocks. Lowering has already *negated* the weights of channels whose batch norm has a negative
  scale, so every comparison below is ``>=``.

Accumulator of one convolution output (output channel o at conv position (cy, cx))
    acc = sum over taps (ky, kx, c) of  w[o, ky, kx, c] * a(iy, ix, c),
    iy = cy * stride_h - pad_top + ky,  ix = cx * stride_w - pad_left + kx,
where w is +1/-1 and a is the input value at that tap:
  * binary input: the bit as +1/-1;
  * taps outside the input take the *pad value*: 0 for ``pad_value == 0`` (the tap adds nothing) or +1
    for ``pad_value == 1`` (for a uint8 input: ``InputSpec.pad_q``; for a float input: 1.0).
For an `InputConvBlock` the input value depends on `InputSpec.mode` (see there). For "float" mode the
accumulator is float32, summed *sequentially* in (ky, kx, c) order starting from 0.0f; every other
accumulator is an exact integer.

Pooling and threshold (one output bit, channel o at pooled position (oy, ox))
    taps: cy = oy * pool_stride_h - pool_pad_top + py, for py in range(pool_h) (likewise cx), keeping
          only 0 <= cy < conv_h and 0 <= cx < conv_w (windows hanging off the edge skip those taps);
    agg = min(acc over taps) if pool_min[o] else max(acc over taps)   (no pooling: agg = acc)
    bit = 1 if agg >= threshold[o] else 0.
Channels whose output is constant get a threshold outside the reachable range (see `threshold_limit`).

Output dense block
    x[k] = sum_n w[k, n] * a[n]                 (exact integer; a = +1/-1 from the input bits)
    logit[k] = float32(x[k]) * scale[k] + offset[k]   (two float32 operations, in that order)
    class = argmax(logit) (first maximum wins).
"""
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np

@dataclass
class InputSpec:
    """How the first block reads the model input (NHWC, `shape` = (H, W, C)).

    mode "float":      value = the float32 input itself; float32 accumulator.
    mode "uint8":      the input is raw uint8 p (the model starts with Rescaling(scale, offset));
                       value q = q_mul * p + q_add (a small integer) with real value q * q_scale, i.e.
                       Rescaling's p * scale + offset == q * q_scale exactly; integer accumulator.
    mode "sign_float": value = +1 if input >= sign_threshold else -1 (first layer has a sign
                       input quantizer on a float input); integer accumulator.
    mode "sign_uint8": value = +1 if p >= sign_threshold else -1 (sign quantizer after Rescaling;
                       sign_threshold is an integer in 0..256); integer accumulator.
    """

    shape: Tuple[int, int, int]
    mode: str = "float"
    q_mul: int = 1
    q_add: int = 0
    q_scale: float = 1.0
    pad_q: int = 0  # value of a pad-1 tap in "uint8" mode (1.0 / q_scale, checked to be an integer)
    sign_threshold: float = 0.0

    @property
    def dtype(self):
        return np.uint8 if self.mode in ("uint8", "sign_uint8") else np.float32

    @property
    def length(self):
        h, w, c = self.shape
        return h * w * c

    def value_range(self):
        """Smallest and largest input value as seen by the accumulator (None for float)."""
        if self.mode == "uint8":
            vals = (self.q_add, self.q_mul * 255 + self.q_add, self.pad_q, 0)
            return min(vals), max(vals)
        if self.mode in ("sign_float", "sign_uint8"):
            return -1, 1
        return None


@dataclass
class ConvGeometry:
    """Convolution and pooling geometry (all padding already resolved to explicit offsets)."""

    in_shape: Tuple[int, int, int]  # (H, W, C) of the block input
    kernel: Tuple[int, int]
    strides: Tuple[int, int]
    pad: Tuple[int, int]  # (top, left) padding of the convolution
    conv_shape: Tuple[int, int]  # (conv_h, conv_w): convolution output before pooling
    pool: Optional[Tuple[int, int]] = None  # (pool_h, pool_w) or None
    pool_strides: Tuple[int, int] = (1, 1)
    pool_pad: Tuple[int, int] = (0, 0)  # (top, left) of the pooling window
    out_hw: Tuple[int, int] = (0, 0)  # pooled output (H, W)
    pad_value: int = 0  # 0 or 1


@dataclass
class InputConvBlock:
    """First layer: convolution over the model input (float, uint8 or sign), binary weights, bits out."""

    geometry: ConvGeometry
    input: InputSpec
    weights: np.ndarray  # bool (O, KH, KW, C); True = +1
    threshold: np.ndarray  # int64 (O,) or float32 (O,) for "float" mode
    pool_min: np.ndarray  # bool (O,)
    source_layers: List[str] = field(default_factory=list)
    kind = "input_conv"

    @property
    def out_shape(self):
        return self.geometry.out_hw + (self.weights.shape[0],)


@dataclass
class BinaryConvBlock:
    """Binary convolution over bits, (+ max pooling), integer threshold: bits in, bits out."""

    geometry: ConvGeometry
    weights: np.ndarray  # bool (O, KH, KW, C)
    threshold: np.ndarray  # int64 (O,)
    pool_min: np.ndarray  # bool (O,)
    source_layers: List[str] = field(default_factory=list)
    kind = "binary_conv"

    @property
    def out_shape(self):
        return self.geometry.out_hw + (self.weights.shape[0],)


@dataclass
class BinaryDenseBlock:
    """Binary fully connected layer with integer threshold: N bits in, O bits out."""

    weights: np.ndarray  # bool (O, N)
    threshold: np.ndarray  # int64 (O,)
    source_layers: List[str] = field(default_factory=list)
    kind = "binary_dense"

    @property
    def out_shape(self):
        return (1, 1, self.weights.shape[0])


@dataclass
class OutputDenseBlock:
    """Final binary fully connected layer: N bits in, integer scores, per-class affine -> float logits."""

    weights: np.ndarray  # bool (K, N)
    scale: np.ndarray  # float32 (K,)
    offset: np.ndarray  # float32 (K,)
    source_layers: List[str] = field(default_factory=list)
    kind = "output_dense"

    @property
    def out_shape(self):
        return (self.weights.shape[0],)


@dataclass
class LoweredModel:
    name: str
    input: InputSpec
    blocks: list
    softmax: bool = False  # Keras applies a softmax after the logits (the C API returns pre-softmax)

    @property
    def num_classes(self):
        return self.blocks[-1].weights.shape[0]


def fan_in(block):
    """Number of input values in one accumulator (taps x channels)."""
    if block.kind in ("input_conv", "binary_conv"):
        kh, kw = block.geometry.kernel
        return kh * kw * block.geometry.in_shape[2]
    return block.weights.shape[1]


def integer_range(n, spec=None):
    """Inclusive (lo, hi) range of an accumulator over `n` inputs read as `spec` describes (binary
    inputs when spec is None); None for a float accumulator."""
    if spec is None:
        return -n, n
    vr = spec.value_range()
    if vr is None:
        return None
    m = max(abs(vr[0]), abs(vr[1]))
    return -n * m, n * m


def accumulator_range(block):
    """Inclusive (lo, hi) range of a block's accumulator; None for a float accumulator."""
    return integer_range(fan_in(block), block.input if block.kind == "input_conv" else None)


def threshold_limit(block):
    """A threshold that no accumulator reaches: `>= -limit` is always true, `>= limit` never."""
    r = accumulator_range(block)
    return None if r is None else r[1] + 1


# Output rule (README "Limits"): a model's output is a vector of K scores. K >= 2: the class is the
# first maximum (argmax). K == 1, a binary classifier: the class is 1 when the single score is >= a
# threshold: 0.5 when the score is a sigmoid probability p (p >= 0.5), 0.0 when it is a logit z
# (z >= 0, i.e. sigmoid(z) >= 0.5), else 0. NaN gives class 0 (NumPy's and C's `>=` agree).
def class_threshold(model):
    """None (argmax) for several scores; for one score the threshold of `classes_of`: 0.5 when a
    graph (keras_ebnn.ir.graph Graph, or a GraphModel) ends in a sigmoid, else 0.0 (a logit)."""
    if model.num_classes != 1:
        return None
    graph = getattr(model, "graph", model)
    ops = getattr(graph, "ops", None)
    if ops:
        last = {op.output: op for op in ops}.get(graph.output)
        if last is not None and last.kind == "conv_pool":  # fused (keras_ebnn/passes/graph_fuse.py): its last step
            last = last.params["ops"][-1]
        if last is not None and last.kind == "activation" and last.params.get("fn") == "sigmoid":
            return 0.5
    return 0.0


def classes_of(scores, threshold=None):
    """Classes of a batch of scores (N, K): argmax (threshold None), else (scores[:, 0] >= threshold)."""
    scores = np.asarray(scores)
    if threshold is None:
        return np.argmax(scores, axis=1)
    return (scores.reshape(len(scores), -1)[:, 0] >= np.float32(threshold)).astype(np.int64)


def spatial(shape):
    """(H, W, C) view of a Keras shape: (L, C) -> (1, L, C); (N,) -> (1, 1, N) (the graph IR's, keras_ebnn/ir/graph.py)."""
    if len(shape) == 3:
        return tuple(shape)
    if len(shape) == 2:
        return (1,) + tuple(shape)
    return (1, 1) + tuple(shape)
