/* mve/ebnn_dense_mve.c - hidden binary dense blocks for EBNN_MVE_KERNELS (Helium: Cortex-M55/M85);
 * the generic kernels are ebnn_dense.c. Same results. */

#include "ebnn_mve.h"

#if EBNN_MVE_KERNELS
/* Four rows at a time: acc = n_in - 2 * popcount(x ^ row) (ebnn_mve_xor_popcount4), compared with
 * four thresholds at once; their four bits are appended together. */
static int binary_dense_mve(uint32_t n_in, uint32_t n_out, const uint32_t *input, const uint32_t *weights,
                            const void *thresholds, uint_fast8_t thr16, uint32_t *output)
{
    uint32_t o, rwords = EBNN_WORDS(n_in);
    int32x4_t n = vdupq_n_s32((int32_t)n_in);
    ebnn_bit_writer_t bw;
    if (input == NULL || weights == NULL || thresholds == NULL || output == NULL)
        return EBNN_ERROR_ARGUMENT;
    ebnn_bw_init(&bw, output);
    for (o = 0; o < n_out; o += 4u, weights += 4u * rwords) {
        uint32_t k = n_out - o < 4u ? n_out - o : 4u;
        mve_pred16_t lanes = vctp32q(k);
        uint32x4_t count = ebnn_mve_xor_popcount4(input, NULL, weights, ebnn_mve_row_offsets(k, rwords), rwords, 0, 0);
        int32x4_t acc = vmlaq_n_s32(n, vreinterpretq_s32_u32(count), -2);
        int32x4_t t = ebnn_mve_thresholds_z(thresholds, o, thr16, lanes);
        ebnn_bw_put(&bw, ebnn_mve_pred_bits(vcmpgeq_m_s32(acc, t, lanes)), (uint_fast8_t)k);
    }
    ebnn_bw_flush(&bw);
    return EBNN_OK;
}

EBNN_API int ebnn_binary_dense(uint32_t n_in, uint32_t n_out, const uint32_t *input, const uint32_t *weights,
                               const int32_t *thresholds, uint32_t *output)
{
    return binary_dense_mve(n_in, n_out, input, weights, thresholds, 0u, output);
}

EBNN_API int ebnn_binary_dense16(uint32_t n_in, uint32_t n_out, const uint32_t *input, const uint32_t *weights,
                                 const int16_t *thresholds, uint32_t *output)
{
    return binary_dense_mve(n_in, n_out, input, weights, thresholds, 1u, output);
}
#endif /* EBNN_MVE_KERNELS */
