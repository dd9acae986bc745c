/* mve/ebnn_binary_conv_mve.c - ebnn_binary_conv for EBNN_MVE_KERNELS (Helium: Cortex-M55/M85); the
 * generic kernel is ebnn_binary_conv.c, whose patch builder this one uses for clipped windows. Same
 * results. */

#include "ebnn_mve.h"

#if EBNN_MVE_KERNELS
/* The patch of a window that lies inside the input: its kh rows of `row` bits, `stride` bits apart from
 * bit `bit`, one after the other (the last word completed with zeros, as ebnn_build_patch does):
 * whole words when in_c is a multiple of 32, halfwords when it is a multiple of 16 (little-endian:
 * bit i is bit i & 15 of halfword i >> 4), else shifted 32-bit pieces. Reads no word past the one
 * holding a row's last bit. */
static void copy_rows(uint32_t *patch, const uint32_t *in, uint32_t bit, uint32_t stride, uint32_t row,
                      uint_fast16_t kh)
{
    uint32_t word = 0, fill = 0; /* the patch word being filled and its bits, 0..31 */
    if (((bit | stride | row) & 31u) == 0u) { /* rows of whole words (in_c a multiple of 32) */
        uint32_t words = row >> 5, j;
        for (; kh != 0u; kh--, bit += stride)
            for (j = 0; j < words; j++)
                *patch++ = in[(bit >> 5) + j];
        return;
    }
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (((bit | stride | row) & 15u) == 0u) { /* rows of whole 16-bit units (in_c a multiple of 16) */
        unsigned char *d = (unsigned char *)patch; /* bit i: bit i & 15 of halfword i >> 4 */
        uint32_t half = row >> 4, j, odd = (half * kh) & 1u;
        for (; kh != 0u; kh--, bit += stride) {
            const unsigned char *q = (const unsigned char *)in + (bit >> 3);
            for (j = 0; j < half; j++, q += 2, d += 2)
                memcpy(d, q, 2);
        }
        if (odd) /* the last word's upper half */
            memset(d, 0, 2);
        return;
    }
#endif
    for (; kh != 0u; kh--, bit += stride) {
        const uint32_t *q = in + (bit >> 5);
        uint32_t s = bit & 31u, left = row;
        for (; left >= 32u; left -= 32u, q++) { /* 32 bits: the row goes on into q[1] when s > 0 */
            uint32_t v = s != 0u ? (q[0] >> s) | (q[1] << (32u - s)) : q[0];
            *patch++ = word | (v << fill);
            word = fill != 0u ? v >> (32u - fill) : 0u;
        }
        if (left != 0u) { /* the row's last 1..31 bits */
            uint32_t v = q[0] >> s;
            if (s + left > 32u)
                v |= q[1] << (32u - s);
            v &= (ONE32 << left) - 1u;
            word |= v << fill;
            fill += left;
            if (fill >= 32u) {
                *patch++ = word;
                fill -= 32u;
                word = fill != 0u ? v >> (left - fill) : 0u;
            }
        }
    }
    if (fill != 0u)
        *patch = word;
}

/* best[o] = max(best[o], taps - 2 * popcount(patch ^ filter o)) for the n filters from w (fwords words
 * each), four at a time; masked: the popcount of (patch ^ filter) & mask. `fixed`: fwords is a small
 * constant (1 .. 6, see ebnn_binary_conv), the word loops unrolled. Inlined with `masked` and `fixed`
 * constants. */
EBNN_MVE_INLINE void pool_counts(int32_t *best, const uint32_t *patch, const uint32_t *mask, const uint32_t *w,
                                 uint32_t fwords, uint32_t n, int32_t taps, int masked, int fixed)
{
    uint32x4_t off = ebnn_mve_row_offsets(4u, fwords);
    uint32_t g;
    for (g = 0; g < n; g += 4u, w += 4u * fwords, best += 4) {
        uint32x4_t count;
        const uint32_t *x = patch;
#if defined(__GNUC__)
        if (fixed) /* x "changes" here: the patch words are read in the loop, not hoisted out of it (and spilled) */
            __asm__("" : "+r"(x));
#endif
        if (n - g < 4u) /* the last filters, fewer than 4 */
            off = ebnn_mve_row_offsets(n - g, fwords);
        count = ebnn_mve_xor_popcount4(x, mask, w, off, fwords, masked, fixed);
        /* taps - 2 * count as a multiply and a scalar add: no vector to keep for taps */
        vst1q_s32(best, vmaxq_s32(vld1q_s32(best), vaddq_n_s32(vmulq_n_s32(vreinterpretq_s32_u32(count), -2), taps)));
    }
}

/* As the generic kernel: per output position and pass of up to EBNN_CHUNK filters, each window of the
 * pool is copied into the aligned patch once; then four filters at a time are XOR-popcounted against
 * it (ebnn_mve_xor_popcount4), and acc = taps - 2 * count, the pool maximum and the threshold
 * comparisons are vector operations on four filters. `fixed`: filters of 1 .. 6 words, whose interior
 * windows are counted with the word count a constant. Inlined with `fixed` a constant: two functions
 * (binary_conv_fixed, binary_conv_any), so the fixed sizes' code does not change the register
 * allocation of the general one. */
EBNN_MVE_INLINE int binary_conv(const ebnn_conv_params_t *params, const uint32_t *input, const uint32_t *weights,
                                const void *thresholds, const uint32_t *flip, uint32_t *output, uint32_t *scratch,
                                int fixed)
{
    ebnn_conv_params_t pl;
    const ebnn_conv_params_t *p = &pl; /* local copy: see ebnn_input_conv_int */
    int32_t best[EBNN_CHUNK];
    uint32_t fwords, row, *patch, *mask;
    uint_fast16_t oy, ox, o0;
    ebnn_bit_writer_t bw;
    pl = *params;
    row = (uint32_t)p->kw * p->in_c;
    fwords = EBNN_WORDS(row * p->kh);
    patch = scratch;
    mask = scratch + fwords;
    ebnn_bw_init(&bw, output);
    for (oy = 0; oy < p->out_h; oy++) {
        uint_fast16_t py0, py1;
        ebnn_clip_window((int32_t)oy * p->pool_sh - p->pool_t, p->pool_h, p->conv_h, &py0, &py1);
        for (ox = 0; ox < p->out_w; ox++) {
            uint_fast16_t px0, px1;
            ebnn_clip_window((int32_t)ox * p->pool_sw - p->pool_l, p->pool_w, p->conv_w, &px0, &px1);
            for (o0 = 0; o0 < p->out_c; o0 = (uint_fast16_t)(o0 + EBNN_CHUNK)) {
                uint32_t n = p->out_c - o0 < EBNN_CHUNK ? p->out_c - o0 : EBNN_CHUNK, g, bits = 0;
                const uint32_t *w0 = weights + (uint32_t)o0 * fwords;
                uint_fast16_t py, px;
                for (g = 0; g < n; g += 4u) /* EBNN_CHUNK is a multiple of 4 */
                    vst1q_s32(best + g, vdupq_n_s32(INT32_MIN));
                for (py = py0; py < py1; py++) {
                    for (px = px0; px < px1; px++) {
                        int masked = 0;
                        int32_t iy0 = ebnn_conv_start((int32_t)oy * p->pool_sh + (int32_t)py - p->pool_t, p->sh, p->pad_t);
                        int32_t ix0 = ebnn_conv_start((int32_t)ox * p->pool_sw + (int32_t)px - p->pool_l, p->sw, p->pad_l);
                        int32_t taps;
                        if (iy0 >= 0 && ix0 >= 0 && iy0 + p->kh <= p->in_h && ix0 + p->kw <= p->in_w) {
                            copy_rows(patch, input, ((uint32_t)iy0 * p->in_w + (uint32_t)ix0) * p->in_c,
                                      (uint32_t)p->in_w * p->in_c, row, p->kh);
                            taps = (int32_t)(row * p->kh);
                        } else { /* clipped: the generic builder (padding, mask) */
                            taps = (int32_t)ebnn_build_patch(p, input, iy0, ix0, patch, mask, &masked);
                        }
                        if (masked)
                            pool_counts(best, patch, mask, w0, fwords, n, taps, 1, 0);
                        else if (!fixed)
                            pool_counts(best, patch, NULL, w0, fwords, n, taps, 0, 0);
                        else
                            switch (fwords) { /* filters of 1 .. 6 words: the word count a constant */
                            case 1u: pool_counts(best, patch, NULL, w0, 1u, n, taps, 0, 1); break;
                            case 2u: pool_counts(best, patch, NULL, w0, 2u, n, taps, 0, 1); break;
                            case 3u: pool_counts(best, patch, NULL, w0, 3u, n, taps, 0, 1); break;
                            case 4u: pool_counts(best, patch, NULL, w0, 4u, n, taps, 0, 1); break;
                            case 5u: pool_counts(best, patch, NULL, w0, 5u, n, taps, 0, 1); break;
                            case 6u: pool_counts(best, patch, NULL, w0, 6u, n, taps, 0, 1); break;
                            default: break; /* not called (fwords <= 6) */
                            }
                    }
                }
                for (g = 0; g + 4u <= n; g += 4u) /* four filters */
                    bits |= ebnn_mve_pred_bits(vcmpgeq_s32(vld1q_s32(best + g),
                                                           ebnn_mve_thresholds(thresholds, o0 + g, p->acc16))) << g;
                if (g < n) { /* the last filters, fewer than 4 */
                    mve_pred16_t lanes = vctp32q(n - g);
                    int32x4_t t = ebnn_mve_thresholds_z(thresholds, o0 + g, p->acc16, lanes);
                    bits |= ebnn_mve_pred_bits(vcmpgeq_m_s32(vld1q_s32(best + g), t, lanes)) << g;
                }
                ebnn_bw_put(&bw, bits ^ ebnn_flip_bits(flip, o0, (uint_fast8_t)n), (uint_fast8_t)n);
            }
        }
    }
    ebnn_bw_flush(&bw);
    return EBNN_OK;
}

#if defined(__GNUC__)
#define EBNN_MVE_NOINLINE __attribute__((noinline))
#else
#define EBNN_MVE_NOINLINE
#endif

EBNN_MVE_NOINLINE static int binary_conv_fixed(const ebnn_conv_params_t *params, const uint32_t *input,
                                               const uint32_t *weights, const void *thresholds,
                                               const uint32_t *flip, uint32_t *output, uint32_t *scratch)
{
    return binary_conv(params, input, weights, thresholds, flip, output, scratch, 1);
}

EBNN_MVE_NOINLINE static int binary_conv_any(const ebnn_conv_params_t *params, const uint32_t *input,
                                             const uint32_t *weights, const void *thresholds,
                                             const uint32_t *flip, uint32_t *output, uint32_t *scratch)
{
    return binary_conv(params, input, weights, thresholds, flip, output, scratch, 0);
}

EBNN_API int ebnn_binary_conv(const ebnn_conv_params_t *params, const uint32_t *input, const uint32_t *weights,
                              const void *thresholds, const uint32_t *flip, uint32_t *output, uint32_t *scratch)
{
    if (params == NULL || input == NULL || weights == NULL || thresholds == NULL || flip == NULL ||
        output == NULL || scratch == NULL)
        return EBNN_ERROR_ARGUMENT;
    return EBNN_WORDS((uint32_t)params->kw * params->in_c * params->kh) - 1u < 6u /* 1 .. 6 words */
               ? binary_conv_fixed(params, input, weights, thresholds, flip, output, scratch)
               : binary_conv_any(params, input, weights, thresholds, flip, output, scratch);
}
#endif /* EBNN_MVE_KERNELS */
