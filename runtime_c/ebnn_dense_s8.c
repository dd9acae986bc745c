/* ebnn_dense_s8.c - integer-only graph op: int8 dense layer over the last axis, int32 out.
 *
 * Semantics: keras_ebnn/passes/graph_quant.py (op "dense_s8"), defined by its run_op:
 * out[r][o] = bias[o] + sum_n (in[r][n] - zp) * w[n][o], weights int8 (n_in, n_out), exact integers
 * (the export bounds them within int32); inputs equal to zp are skipped. */

#include "ebnn_requant.h"

EBNN_API int ebnn_dense_s8(uint32_t rows, uint32_t n_in, uint32_t n_out, const int8_t *in, int32_t zp,
                           const int8_t *w, const int32_t *bias, int32_t *out)
{
    uint32_t r, n, o;
    if (in == NULL || w == NULL || bias == NULL || out == NULL)
        return EBNN_ERROR_ARGUMENT;
    for (r = 0; r < rows; r++, in += n_in, out += n_out) {
        const int8_t *wn = w;
        for (o = 0; o < n_out; o++)
            out[o] = EBNN_READ_I32(&bias[o]);
        for (n = 0; n < n_in; n++, wn += n_out) {
            int32_t v = (int32_t)in[n] - zp;
            if (v == 0)
                continue;
            for (o = 0; o < n_out; o++)
                out[o] += v * (int32_t)EBNN_READ_S8(&wn[o]);
        }
    }
    return EBNN_OK;
}
