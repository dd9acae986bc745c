/* ebnn_dense_f32.c - graph ops: full-precision dense layer over the last axis (float32).
 *
 * Semantics: keras_ebnn/graph.py (op "dense"), defined by keras_ebnn/graph_reference.py: for every
 * row r and output o, acc = 0.0f; for n = 0 .. n_in-1: acc = acc + in[r][n] * w[n][o], the product
 * and the sum each rounded to float32 (the product goes through a volatile float: never an FMA).
 * The bias is a separate affine op. Self-contained (no ebnn_bits.c). */

#include "ebnn_internal.h"

EBNN_API int ebnn_dense_f32(uint32_t rows, uint32_t n_in, uint32_t n_out, const float *in, const float *w, float *out)
{
    uint32_t r, o, n;
    if (in == NULL || w == NULL || out == NULL)
        return EBNN_ERROR_ARGUMENT;
    for (r = 0; r < rows; r++, in += n_in, out += n_out) {
        for (o = 0; o < n_out; o++) {
            const float *wp = w + o; /* column o of w (N, O) */
            float acc = 0.0f;
            for (n = 0; n < n_in; n++, wp += n_out) {
                volatile float product = in[n] * EBNN_READ_F32(wp);
                acc = acc + product;
            }
            out[o] = acc;
        }
    }
    return EBNN_OK;
}
