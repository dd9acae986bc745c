"""Fixed-point arithmetic of the integer-only graphs (quantize="int8"): the int8 / int32 limits, the op
kinds, gemmlowp's rounding multiplies and shifts. keras_ebnn/passes/graph_quant.py (which builds those graphs and
re-exports these names; its docstring describes the scheme) and keras_ebnn/ir/graph_reference.py (which runs
them) both use it."""
import numpy as np

QMIN, QMAX = -128, 127
INT32_MIN, INT32_MAX = -(2 ** 31), 2 ** 31 - 1
ADD_LEFT_SHIFT = 20
QUANT_KINDS = ("conv_s8", "depthwise_s8", "dense_s8", "requant", "lut", "add_s8", "concat_s8", "bits_to_s8",
               "avg_pool_s8", "global_avg_s8")


def srdhm(a, b):
    """gemmlowp's SaturatingRoundingDoublingHighMul on int64 arrays holding int32 values."""
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    ab = a * b
    num = ab + np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    res = np.where(num >= 0, num >> 31, -((-num) >> 31))  # division by 2^31 truncating toward zero
    return np.where((a == INT32_MIN) & (b == INT32_MIN), INT32_MAX, res)


def rdbpot(x, e):
    """Rounding arithmetic right shift (gemmlowp's RoundingDivideByPOT), e >= 0 (array or int)."""
    x, e = np.asarray(x, dtype=np.int64), np.asarray(e, dtype=np.int64)
    mask = (np.int64(1) << e) - 1
    rem = x & mask
    thr = (mask >> 1) + (x < 0)
    return (x >> e) + (rem > thr)


def mbqm(x, m, shift):
    """MultiplyByQuantizedMultiplier(x, M, shift), broadcasting over arrays."""
    shift = np.asarray(shift, dtype=np.int64)
    left, right = np.maximum(shift, 0), np.maximum(-shift, 0)
    return rdbpot(srdhm(np.asarray(x, dtype=np.int64) << left, m), right)
