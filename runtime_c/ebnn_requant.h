/* ebnn_requant.h - the fixed-point arithmetic of the integer-only graph ops (not a public header).
 *
 * Semantics: keras_ebnn/passes/graph_quant.py (module docstring), the TFLite int8 scheme as gemmlowp and
 * CMSIS-NN round it: a real multiplier r = M * 2^(shift - 31) with M an int32, and
 *   ebnn_mbqm(x, M, shift) = rdbpot(srdhm(x * 2^max(shift, 0), M), max(-shift, 0))
 *   srdhm(a, b)  = (a * b + (a * b >= 0 ? 2^30 : 1 - 2^30)) / 2^31    (64-bit product, C division)
 *   rdbpot(x, e) = (x >> e) + ((x & (2^e - 1)) > ((2^e - 1) >> 1) + (x < 0)) (arithmetic shift)
 * The export checks that x * 2^shift fits int32. Right shifts of negative values are written as
 * floor divisions (portable C99); the only library routine this may call is the compiler's 64-bit
 * integer multiply (e.g. __aeabi_lmul on Cortex-M0+): no floating point. */
#ifndef EBNN_REQUANT_H
#define EBNN_REQUANT_H

#include "ebnn_internal.h"

#define EBNN_READ_S8(p) ((int8_t)EBNN_READ_U8(p))

/* floor(x / 2^e), e in 0..31 */
static EBNN_MAYBE_UNUSED int32_t ebnn_asr(int32_t x, uint32_t e)
{
    if (x >= 0)
        return (int32_t)((uint32_t)x >> e);
    return -1 - (int32_t)((uint32_t)(-1 - x) >> e);
}

static EBNN_MAYBE_UNUSED int32_t ebnn_srdhm(int32_t a, int32_t b)
{
    int64_t ab, num;
    if (a == INT32_MIN && b == INT32_MIN)
        return INT32_MAX;
    ab = (int64_t)a * (int64_t)b;
    num = ab + (ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30)));
    return (int32_t)(num / ((int64_t)1 << 31));
}

static EBNN_MAYBE_UNUSED int32_t ebnn_rdbpot(int32_t x, uint32_t e)
{
    uint32_t mask = (((uint32_t)1) << e) - 1u;
    uint32_t rem = (uint32_t)x & mask;
    uint32_t threshold = (mask >> 1) + (x < 0 ? 1u : 0u);
    return ebnn_asr(x, e) + (rem > threshold ? 1 : 0);
}

static EBNN_MAYBE_UNUSED int32_t ebnn_mbqm(int32_t x, int32_t m, int32_t shift)
{
    if (shift > 0)
        return ebnn_srdhm(x * ((int32_t)1 << shift), m);
    return ebnn_rdbpot(ebnn_srdhm(x, m), (uint32_t)-shift);
}

/* clamp(v, lo, hi) of a 64-bit sum */
static EBNN_MAYBE_UNUSED int32_t ebnn_clamp64(int64_t v, int32_t lo, int32_t hi)
{
    return v < lo ? lo : v > hi ? hi : (int32_t)v;
}

#endif /* EBNN_REQUANT_H */
