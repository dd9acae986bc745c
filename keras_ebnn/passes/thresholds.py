"""Exact thresholds: fold a monotone chain + (max pooling) + sign into one comparison per channel.

For one output channel, Keras computes  sign(post(maxpool(pre(acc))))  in float32, where `pre` and
`post` are chains of per-channel monotone elementwise functions before and after the pooling layer
(bias, BatchNormalization, ReLU / ReLU6, hard-tanh, tanh, sigmoid, leaky ReLU, a positive per-channel
scale, ...: the graph lowering, keras_ebnn.ir.graph, hands them over evaluated with Keras's own code).
Every step is a monotone function of its input, even in float32 arithmetic, so:
  * max-pooling commutes with `pre` when `pre` is non-decreasing, and becomes min-pooling of the
    accumulator when `pre` is decreasing (negative gamma before the pool);
  * the bit is a step function of the pooled accumulator: [agg >= T] or [agg <= T], or a constant.
We find the step *by evaluating the model's own Keras layers* in float32: on every reachable value of
an integer accumulator (so the result is exact by construction), or by bisection over the ordered
float32 values for a float accumulator. A decreasing step is turned into `>=` by negating the
channel's weights (`flip`), which also swaps max and min pooling.
"""
import numpy as np

FLOAT_EXTREME = np.float32(2.0 ** 100)  # far beyond any reachable float accumulator


def _to_float(acc, spec):
    """Accumulator values -> the float32 value Keras sees after the convolution."""
    if spec is not None and spec.mode == "uint8":
        return (np.asarray(acc, dtype=np.float64) * spec.q_scale).astype(np.float32)
    return np.asarray(acc).astype(np.float32)


def _broadcast(values, channels):
    values = np.asarray(values)
    return np.repeat(values[:, None], channels, axis=1) if values.ndim == 1 else values


def _integer_steps(chain, lo, hi, channels):
    """Threshold and flip per channel from every reachable integer accumulator value."""
    cands = np.arange(lo, hi + 1, dtype=np.int64)
    bits = chain.bits(_broadcast(cands, channels))
    thr = np.zeros(channels, dtype=np.int64)
    flip = np.zeros(channels, dtype=bool)
    for o in range(channels):
        b = bits[:, o]
        d = np.diff(b.astype(np.int8))
        if b.all():
            thr[o] = lo - 1
        elif not b.any():
            thr[o] = hi + 1
        elif (d >= 0).all():
            thr[o] = cands[np.argmax(b)]
        elif (d <= 0).all():
            flip[o] = True
            thr[o] = -cands[len(b) - 1 - np.argmax(b[::-1])]
        else:  # pragma: no cover - a monotone chain cannot do this
            raise RuntimeError(f"channel {o}: batch norm output is not monotone in the accumulator")
    return thr, flip


def _float_key(f):
    i = np.asarray(f, dtype=np.float32).view(np.int32).astype(np.int64)
    return np.where(i >= 0, i, -(i & 0x7FFFFFFF) - 1)


def _key_float(k):
    k = np.asarray(k, dtype=np.int64)
    i = np.where(k >= 0, k, (-(k + 1)) | 0x80000000)
    return i.astype(np.uint32).view(np.float32)


def _float_steps(chain, channels):
    """Threshold and flip per channel by bisection over ordered float32 accumulator values."""
    lo = np.full(channels, _float_key(-FLOAT_EXTREME))
    hi = np.full(channels, _float_key(FLOAT_EXTREME))
    b_lo = chain.bits(_key_float(lo)[None, :])[0]
    b_hi = chain.bits(_key_float(hi)[None, :])[0]
    thr = np.zeros(channels, dtype=np.float32)
    flip = b_lo & ~b_hi
    const = b_lo == b_hi
    # invariant: bit(lo) == b_lo, bit(hi) == b_hi; find the first key whose bit equals b_hi
    while True:
        open_ = ~const & (hi - lo > 1)
        if not open_.any():
            break
        mid = (lo + hi) // 2
        b_mid = chain.bits(_key_float(mid)[None, :])[0]
        go_hi = b_mid == b_hi
        hi = np.where(open_ & go_hi, mid, hi)
        lo = np.where(open_ & ~go_hi, mid, lo)
    for o in range(channels):
        if const[o]:
            thr[o] = -np.inf if b_hi[o] else np.inf
        elif flip[o]:
            thr[o] = -_key_float(lo[o])  # bit = acc <= value(lo)  <=>  -acc >= -value(lo)
        else:
            thr[o] = _key_float(hi[o])  # bit = acc >= value(hi)
    return thr, flip


class _FnChain:
    """g(acc) = post(pool(pre(to_float(acc)))) with pre/post lists of float32 functions (K, O) -> (K, O)."""

    def __init__(self, pre, post, spec):
        self.pre, self.post, self.spec = list(pre), list(post), spec

    @staticmethod
    def _run(fns, values):
        for fn in fns:
            values = np.asarray(fn(np.asarray(values, dtype=np.float32)), dtype=np.float32)
        return values

    def pre_values(self, acc):
        return self._run(self.pre, _to_float(acc, self.spec))

    def bits(self, acc):
        return self._run(self.post, self.pre_values(acc)) >= 0


def chain_thresholds(pre, post, pooled, channels, acc_range, spec=None):
    """(threshold, flip, pool_min) of  bit = sign(post(maxpool(pre(acc)))) >= 0  per channel.

    pre, post: lists of callables on float32 arrays (K, channels) -> (K, channels), each monotone in
    every channel (Keras's own layers or functions, so the step is exact). pooled: a max pool sits
    between pre and post (without one, put everything in pre). acc_range: inclusive integer range of
    the accumulator, or None for a float32 accumulator. spec: the InputSpec when the accumulator is
    an input convolution's (its uint8 scale), else None. Conventions:
    bit = acc' >= threshold where acc' is the accumulator of the (flip-negated) weights, and
    pool_min says which channels max-pool as a min of the original accumulator.
    """
    chain = _FnChain(pre, post, spec)
    pool_min = np.zeros(channels, dtype=bool)
    if pooled:
        # direction of `pre`: decreasing channels max-pool as min of the accumulator
        lo, hi = acc_range if acc_range is not None else (-FLOAT_EXTREME, FLOAT_EXTREME)
        ends = chain.pre_values(_broadcast(np.array([lo, hi]), channels))
        pool_min = ends[1] < ends[0]
    if acc_range is None:
        thr, flip = _float_steps(chain, channels)
    else:
        thr, flip = _integer_steps(chain, acc_range[0], acc_range[1], channels)
    return thr, flip, np.where(flip, ~pool_min, pool_min)
