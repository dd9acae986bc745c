/* mve/ebnn_binary_conv_mve.c - ebnn_binary_conv for EBNN_MVE_KERNELS (Helium: Cortex-M55/M85); the
 * generic kernel is ebnn_binary_conv.c, whose patch builder this one shares. Same results. */

#include "ebnn_mve.h"

#if EBNN_MVE_KERNELS
/* As the generic kernel: per output position and pass of up to EBNN_CHUNK filters, each window of the
 * pool is copied into the aligned patch once (ebnn_build_patch); then four filters at a time are
 * XOR-popcounted against it (ebnn_mve_xor_popcount4), acc = taps - 2 * count and the pool maximum are
 * vector operations, and the thresholds are compared four at a time. */
EBNN_API int ebnn_binary_conv(const ebnn_conv_params_t *params, const uint32_t *input, const uint32_t *weights,
                              const void *thresholds, const uint32_t *flip, uint32_t *output, uint32_t *scratch)
{
    ebnn_conv_params_t pl;
    const ebnn_conv_params_t *p = &pl; /* local copy: see ebnn_input_conv_int */
    int32_t best[EBNN_CHUNK];
    uint32_t fwords, *patch, *mask;
    uint_fast16_t oy, ox, o0;
    ebnn_bit_writer_t bw;
    if (params == NULL || input == NULL || weights == NULL || thresholds == NULL || flip == NULL ||
        output == NULL || scratch == NULL)
        return EBNN_ERROR_ARGUMENT;
    pl = *params;
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
                uint32_t n = p->out_c - o0 < EBNN_CHUNK ? p->out_c - o0 : EBNN_CHUNK, g, bits = 0;
                uint_fast16_t py, px;
                for (g = 0; g < n; g += 4u) /* EBNN_CHUNK is a multiple of 4 */
                    vst1q_s32(best + g, vdupq_n_s32(INT32_MIN));
                for (py = py0; py < py1; py++) {
                    for (px = px0; px < px1; px++) {
                        int masked;
                        int32_t iy0 = ebnn_conv_start((int32_t)oy * p->pool_sh + (int32_t)py - p->pool_t, p->sh, p->pad_t);
                        int32_t ix0 = ebnn_conv_start((int32_t)ox * p->pool_sw + (int32_t)px - p->pool_l, p->sw, p->pad_l);
                        int32x4_t taps = vdupq_n_s32((int32_t)ebnn_build_patch(p, input, iy0, ix0, patch, mask, &masked));
                        const uint32_t *w = weights + (uint32_t)o0 * fwords;
                        for (g = 0; g < n; g += 4u, w += 4u * fwords) {
                            uint32x4_t off = ebnn_mve_row_offsets(n - g < 4u ? n - g : 4u, fwords);
                            uint32x4_t count = masked ? ebnn_mve_xor_popcount4(patch, mask, w, off, fwords)
                                                      : ebnn_mve_xor_popcount4(patch, NULL, w, off, fwords);
                            int32x4_t acc = vmlaq_n_s32(taps, vreinterpretq_s32_u32(count), -2);
                            vst1q_s32(best + g, vmaxq_s32(vld1q_s32(best + g), acc));
                        }
                    }
                }
                for (g = 0; g < n; g += 4u) {
                    mve_pred16_t lanes = vctp32q(n - g);
                    int32x4_t t = ebnn_mve_thresholds(thresholds, o0 + g, p->acc16, lanes);
                    bits |= ebnn_mve_pred_bits(vcmpgeq_m_s32(vld1q_s32(best + g), t, lanes)) << g;
                }
                ebnn_bw_put(&bw, bits ^ ebnn_flip_bits(flip, o0, (uint_fast8_t)n), (uint_fast8_t)n);
            }
        }
    }
    ebnn_bw_flush(&bw);
    return EBNN_OK;
}
#endif /* EBNN_MVE_KERNELS */
