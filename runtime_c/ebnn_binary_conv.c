/* ebnn_binary_conv.c - binary convolution over bits (generic C; the byte kernels' version is
 * avr/ebnn_binary_conv8.c, the Helium one mve/ebnn_binary_conv_mve.c). Layouts: ebnn.h; semantics:
 * keras_ebnn/ir/blocks.py. */

#include "ebnn_internal.h"

/* The generic word path; EBNN_BYTE_KERNELS: avr/ebnn_binary_conv8.c, which falls back on this code for
 * the blocks it cannot run when EBNN_BINARY_CONV_FALLBACK is 1 (a generated NAME.c sets it for such a
 * model only: the other models do not carry this code on AVR). */
#if !EBNN_BYTE_KERNELS || EBNN_BINARY_CONV_FALLBACK
/* ==== binary convolution ======================================================================
 * For each convolution position the window's kh x kw x in_c input bits are copied once into an
 * aligned patch (same (ky, kx, c) order as a filter); every filter is then a word-wise XOR-popcount
 * against its bits: acc = taps - 2 * popcount(patch ^ w). Taps outside the input read +1 (pad 1:
 * the patch bit is 1) or are masked out (pad 0: mask bit 0, and only the valid taps count). */


/* Appends n copies of one bit value (fill = 0 or 0xffffffff). */
static void bw_put_run(ebnn_bit_writer_t *bw, uint32_t fill, uint32_t n)
{
    for (; n >= 32u; n -= 32u)
        ebnn_bw_put(bw, fill, 32u);
    if (n != 0u)
        ebnn_bw_put(bw, fill & LOW_BITS(n), (uint_fast8_t)n);
}

/* Appends bits [bit, bit + n) of a RAM bit stream. */
static void bw_copy(ebnn_bit_writer_t *bw, const uint32_t *src, uint32_t bit, uint32_t n)
{
    for (; n >= 32u; n -= 32u, bit += 32u)
        ebnn_bw_put(bw, ebnn_read_bits(src, bit, 32u), 32u);
    if (n != 0u)
        ebnn_bw_put(bw, ebnn_read_bits(src, bit, (uint_fast8_t)n), (uint_fast8_t)n);
}

/* Fills patch (and, when the window is clipped and pad_value is 0, mask). Returns the number of
 * taps that count; *masked says whether the mask must be applied. Also used by the Helium kernel
 * (mve/ebnn_binary_conv_mve.c). */
EBNN_INTERNAL uint32_t ebnn_build_patch(const ebnn_conv_params_t *p, const uint32_t *in, int32_t iy0, int32_t ix0,
                                        uint32_t *patch, uint32_t *mask, int *masked)
{
    uint_fast16_t ky, ky0, ky1, kx0, kx1;
    uint32_t row = (uint32_t)p->kw * p->in_c;
    uint32_t pad = p->pad_value != 0u ? 0xffffffffu : 0u;
    ebnn_bit_writer_t pw, mw;
    ebnn_clip_window(iy0, p->kh, p->in_h, &ky0, &ky1);
    ebnn_clip_window(ix0, p->kw, p->in_w, &kx0, &kx1);
    ebnn_bw_init(&pw, patch);
    if (ky0 == 0u && ky1 == p->kh && kx0 == 0u && kx1 == p->kw) { /* interior: plain copy */
        uint32_t bit = ((uint32_t)iy0 * p->in_w + (uint32_t)ix0) * p->in_c;
        uint32_t stride = (uint32_t)p->in_w * p->in_c;
        for (ky = 0; ky < p->kh; ky++, bit += stride)
            bw_copy(&pw, in, bit, row);
        ebnn_bw_flush(&pw);
        *masked = 0;
        return row * p->kh;
    }
    *masked = pad == 0u;
    ebnn_bw_init(&mw, mask);
    {
        uint32_t left = (uint32_t)kx0 * p->in_c, mid = (uint32_t)(kx1 - kx0) * p->in_c;
        uint32_t right = row - left - mid;
        for (ky = 0; ky < p->kh; ky++) {
            if (ky < ky0 || ky >= ky1 || mid == 0u) {
                bw_put_run(&pw, pad, row);
                if (*masked)
                    bw_put_run(&mw, 0u, row);
                continue;
            }
            bw_put_run(&pw, pad, left);
            bw_copy(&pw, in, ((uint32_t)(iy0 + (int32_t)ky) * p->in_w + (uint32_t)(ix0 + (int32_t)kx0)) * p->in_c,
                    mid);
            bw_put_run(&pw, pad, right);
            if (*masked) {
                bw_put_run(&mw, 0u, left);
                bw_put_run(&mw, 0xffffffffu, mid);
                bw_put_run(&mw, 0u, right);
            }
        }
        ebnn_bw_flush(&pw);
        if (*masked) {
            ebnn_bw_flush(&mw);
            return (uint32_t)(ky1 - ky0) * mid;
        }
    }
    return row * p->kh;
}

EBNN_INTERNAL void ebnn_binary_conv32(const ebnn_conv_params_t *pp, const uint32_t *input, const uint32_t *weights,
                             const void *thresholds, const uint32_t *flip, uint32_t *output, uint32_t *scratch)
{
    ebnn_conv_params_t pl = *pp; /* local copy: see ebnn_input_conv_int */
    const ebnn_conv_params_t *p = &pl;
    int32_t best[EBNN_CHUNK];
    uint32_t fwords, *patch, *mask;
    uint_fast16_t oy, ox, o0;
    ebnn_bit_writer_t bw;
    fwords = EBNN_WORDS((uint32_t)p->kh * p->kw * p->in_c);
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
                uint_fast8_t n = (uint_fast8_t)(p->out_c - o0 < EBNN_CHUNK ? p->out_c - o0 : EBNN_CHUNK), o;
                uint_fast16_t py, px;
                uint32_t bits = 0;
                for (o = 0; o < n; o++)
                    best[o] = INT32_MIN;
                for (py = py0; py < py1; py++) {
                    for (px = px0; px < px1; px++) {
                        int masked;
                        int32_t iy0 = ebnn_conv_start((int32_t)oy * p->pool_sh + (int32_t)py - p->pool_t, p->sh, p->pad_t);
                        int32_t ix0 = ebnn_conv_start((int32_t)ox * p->pool_sw + (int32_t)px - p->pool_l, p->sw, p->pad_l);
                        int32_t taps = (int32_t)ebnn_build_patch(p, input, iy0, ix0, patch, mask, &masked);
                        const uint32_t *w = weights + (uint32_t)o0 * fwords;
                        for (o = 0; o < n; o++, w += fwords) {
                            uint32_t pc = masked ? ebnn_xor_popcount_masked(patch, w, mask, fwords)
                                                 : ebnn_xor_popcount(patch, w, fwords);
                            int32_t acc = taps - 2 * (int32_t)pc;
                            if (acc > best[o])
                                best[o] = acc;
                        }
                    }
                }
                for (o = 0; o < n; o++)
                    bits |= (uint32_t)(best[o] >= ebnn_read_threshold(thresholds, (uint32_t)(o0 + o), p->acc16)) << o;
                ebnn_bw_put(&bw, bits ^ ebnn_flip_bits(flip, o0, n), n);
            }
        }
    }
    ebnn_bw_flush(&bw);
}

#endif /* !EBNN_BYTE_KERNELS || EBNN_BINARY_CONV_FALLBACK */

#if !EBNN_BYTE_KERNELS && !EBNN_MVE_KERNELS /* else avr/ or mve/ define it */
EBNN_API int ebnn_binary_conv(const ebnn_conv_params_t *params, const uint32_t *input, const uint32_t *weights,
                     const void *thresholds, const uint32_t *flip, uint32_t *output, uint32_t *scratch)
{
    if (params == NULL || input == NULL || weights == NULL || thresholds == NULL || flip == NULL ||
        output == NULL || scratch == NULL)
        return EBNN_ERROR_ARGUMENT;
    {
        PARAMS_IN_RAM(p, params);
        ebnn_binary_conv32(p, input, weights, thresholds, flip, output, scratch);
    }
    return EBNN_OK;
}
#endif /* !EBNN_BYTE_KERNELS && !EBNN_MVE_KERNELS */
