/* ebnn_dense.c - hidden binary dense blocks: n_in bits -> n_out bits (generic C; the Helium version is
 * mve/ebnn_dense_mve.c). */

#include "ebnn_internal.h"

#if !EBNN_MVE_KERNELS

/* ==== dense blocks ============================================================================ */
static int binary_dense(uint32_t n_in, uint32_t n_out, const uint32_t *input, const uint32_t *weights,
                        const void *thresholds, uint_fast8_t thr16, uint32_t *output)
{
    uint32_t o, rwords = EBNN_WORDS(n_in);
    ebnn_bit_writer_t bw;
    if (input == NULL || weights == NULL || thresholds == NULL || output == NULL)
        return EBNN_ERROR_ARGUMENT;
    ebnn_bw_init(&bw, output);
    for (o = 0; o < n_out; o++, weights += rwords) {
        int32_t acc = (int32_t)n_in - 2 * (int32_t)ebnn_row_popcount(input, weights, n_in);
        ebnn_bw_put(&bw, acc >= ebnn_read_threshold(thresholds, o, thr16) ? 1u : 0u, 1u);
    }
    ebnn_bw_flush(&bw);
    return EBNN_OK;
}

EBNN_API int ebnn_binary_dense(uint32_t n_in, uint32_t n_out, const uint32_t *input, const uint32_t *weights,
                      const int32_t *thresholds, uint32_t *output)
{
    return binary_dense(n_in, n_out, input, weights, thresholds, 0u, output);
}

EBNN_API int ebnn_binary_dense16(uint32_t n_in, uint32_t n_out, const uint32_t *input, const uint32_t *weights,
                        const int16_t *thresholds, uint32_t *output)
{
    return binary_dense(n_in, n_out, input, weights, thresholds, 1u, output);
}
#endif /* !EBNN_MVE_KERNELS */
