/* ebnn_binary_acc.c - graph ops: unfused binary conv / dense / depthwise, bits in, int32 accumulators out.
 *
 * Semantics: keras_ebnn/ir/graph.py (ops "bconv", "bdense", "bdepthwise"), defined by
 * keras_ebnn/ir/graph_reference.py. An accumulator is the exact sum of the +-1 products a * w over the
 * in-bounds taps (a == w gives +1, else -1); a tap outside the input adds 0 when pad_value is 0, and
 * its weight (+1 or -1: it reads +1) when pad_value is 1. These are the ops a graph uses when no
 * threshold follows (e.g. a binary conv feeding a residual Add); the fused blocks (ebnn_binary_conv.c,
 * ebnn_dense.c) stay the fast path. Uses ebnn_bits.c (popcounts, bit reads, window clipping). */

#include "ebnn_internal.h"

/* n bits (1..32) of a constant (flash) bit stream from bit `bit`; never reads past the word holding
 * the last of them. */
static uint32_t bacc_const_bits(const uint32_t *p, uint32_t bit, uint_fast8_t n)
{
    const uint32_t *q = p + (bit >> 5);
    uint_fast8_t s = (uint_fast8_t)(bit & 31u);
    uint32_t v = EBNN_READ_U32(q) >> s;
    if (s + n > 32u)
        v |= EBNN_READ_U32(q + 1) << (32u - s);
    return v & LOW_BITS(n);
}

/* popcount(a ^ w) over n bits of the RAM stream a from bit abit and the constant stream w from bit
 * wbit (any alignment; word-aligned runs use the word XOR-popcount of ebnn_bits.c). */
static uint32_t bacc_xor_popcount(const uint32_t *a, uint32_t abit, const uint32_t *w, uint32_t wbit, uint32_t n)
{
    uint32_t count = 0;
    if (((abit | wbit) & 31u) == 0u && n >= 32u) {
        uint32_t words = n >> 5;
        count = ebnn_xor_popcount(a + (abit >> 5), w + (wbit >> 5), words);
        abit += words << 5;
        wbit += words << 5;
        n &= 31u;
    }
    for (; n >= 32u; n -= 32u, abit += 32u, wbit += 32u)
        count += ebnn_popcount32(ebnn_read_bits(a, abit, 32u) ^ bacc_const_bits(w, wbit, 32u));
    if (n != 0u)
        count += ebnn_popcount32(ebnn_read_bits(a, abit, (uint_fast8_t)n) ^ bacc_const_bits(w, wbit, (uint_fast8_t)n));
    return count;
}

/* Sum of n weights (+-1) of the constant stream w from bit wbit: what n padded taps reading +1 add. */
static int32_t bacc_weight_sum(const uint32_t *w, uint32_t wbit, uint32_t n)
{
    uint32_t ones = 0, left = n;
    for (; left >= 32u; left -= 32u, wbit += 32u)
        ones += ebnn_popcount32(bacc_const_bits(w, wbit, 32u));
    if (left != 0u)
        ones += ebnn_popcount32(bacc_const_bits(w, wbit, (uint_fast8_t)left));
    return 2 * (int32_t)ones - (int32_t)n;
}

EBNN_API int ebnn_bconv_acc(const ebnn_window_t *gp, const uint32_t *in, const uint32_t *w, uint16_t out_c,
                            uint8_t pad_value, int32_t *out)
{
    ebnn_window_t g;
    uint32_t oy, ox, o, ky, row, fwords;
    if (gp == NULL || in == NULL || w == NULL || out == NULL)
        return EBNN_ERROR_ARGUMENT;
    EBNN_COPY_CONST(&g, gp, sizeof(g));
    row = (uint32_t)g.kw * g.in_c;        /* bits of one kernel row, in the input and in a filter */
    fwords = EBNN_WORDS(row * g.kh);      /* words per filter */
    for (oy = 0; oy < g.out_h; oy++) {
        int32_t y0 = (int32_t)(oy * g.sh) - (int32_t)g.pad_t;
        uint_fast16_t ky0, ky1;
        ebnn_clip_window(y0, g.kh, g.in_h, &ky0, &ky1);
        for (ox = 0; ox < g.out_w; ox++) {
            int32_t x0 = (int32_t)(ox * g.sw) - (int32_t)g.pad_l;
            uint_fast16_t kx0, kx1;
            uint32_t left, mid, right; /* bits of a kernel row before, inside and after the input */
            ebnn_clip_window(x0, g.kw, g.in_w, &kx0, &kx1);
            left = (uint32_t)kx0 * g.in_c;
            mid = (uint32_t)(kx1 - kx0) * g.in_c;
            right = row - left - mid;
            for (o = 0; o < out_c; o++) {
                const uint32_t *wo = w + o * fwords;
                int32_t acc = 0;
                for (ky = 0; ky < g.kh; ky++) {
                    uint32_t wrow = ky * row; /* first bit of kernel row ky in the filter */
                    if (ky >= ky0 && ky < ky1 && mid != 0u) {
                        /* the in-bounds taps of the row are contiguous bits, in the input as in the filter */
                        uint32_t abit = ((uint32_t)(y0 + (int32_t)ky) * g.in_w + (uint32_t)(x0 + (int32_t)kx0)) * g.in_c;
                        acc += (int32_t)mid - 2 * (int32_t)bacc_xor_popcount(in, abit, wo, wrow + left, mid);
                        if (pad_value != 0u) {
                            if (left != 0u)
                                acc += bacc_weight_sum(wo, wrow, left);
                            if (right != 0u)
                                acc += bacc_weight_sum(wo, wrow + left + mid, right);
                        }
                    } else if (pad_value != 0u && row != 0u) {
                        acc += bacc_weight_sum(wo, wrow, row);
                    }
                }
                *out++ = acc;
            }
        }
    }
    return EBNN_OK;
}

EBNN_API int ebnn_bdense_acc(uint32_t rows, uint32_t n_in, uint32_t n_out, const uint32_t *in, const uint32_t *w,
                             int32_t *out)
{
    uint32_t r, o, rwords = EBNN_WORDS(n_in);
    if (in == NULL || w == NULL || out == NULL)
        return EBNN_ERROR_ARGUMENT;
    for (r = 0; r < rows; r++) /* row r's bits start at bit r * n_in: word-aligned only if n_in is */
        for (o = 0; o < n_out; o++)
            *out++ = (int32_t)n_in - 2 * (int32_t)bacc_xor_popcount(in, r * n_in, w + o * rwords, 0u, n_in);
    return EBNN_OK;
}

EBNN_API int ebnn_bdepthwise_acc(const ebnn_window_t *gp, const uint32_t *in, const uint32_t *w, uint16_t mult,
                                 uint8_t pad_value, int32_t *out)
{
    ebnn_window_t g;
    uint32_t oy, ox, c, m, ky, kx, fwords;
    if (gp == NULL || in == NULL || w == NULL || out == NULL)
        return EBNN_ERROR_ARGUMENT;
    EBNN_COPY_CONST(&g, gp, sizeof(g));
    fwords = EBNN_WORDS((uint32_t)g.kh * g.kw); /* words per output channel's filter */
    for (oy = 0; oy < g.out_h; oy++) {
        int32_t y0 = (int32_t)(oy * g.sh) - (int32_t)g.pad_t;
        for (ox = 0; ox < g.out_w; ox++) {
            int32_t x0 = (int32_t)(ox * g.sw) - (int32_t)g.pad_l;
            for (c = 0; c < g.in_c; c++) {
                for (m = 0; m < mult; m++) {
                    const uint32_t *wj = w + (c * mult + m) * fwords;
                    int32_t acc = 0;
                    uint32_t tap = 0; /* ky * kw + kx: the weight bit */
                    for (ky = 0; ky < g.kh; ky++) {
                        int32_t y = y0 + (int32_t)ky;
                        for (kx = 0; kx < g.kw; kx++, tap++) {
                            int32_t x = x0 + (int32_t)kx;
                            uint32_t wb = bacc_const_bits(wj, tap, 1u);
                            if (y >= 0 && y < (int32_t)g.in_h && x >= 0 && x < (int32_t)g.in_w) {
                                uint32_t a = ebnn_read_bits(in, ((uint32_t)y * g.in_w + (uint32_t)x) * g.in_c + c, 1u);
                                acc += a == wb ? 1 : -1;
                            } else if (pad_value != 0u) {
                                acc += wb != 0u ? 1 : -1;
                            }
                        }
                    }
                    *out++ = acc;
                }
            }
        }
    }
    return EBNN_OK;
}
