/* ebnn_dense_f32.c - graph ops: full-precision dense layer over the last axis (float32).
 *
 * Semantics: keras_ebnn/ir/graph.py (op "dense"), defined by keras_ebnn/ir/graph_reference.py: for every
 * row r and output o, acc = 0.0f; for n = 0 .. n_in-1: acc = acc + in[r][n] * w[n][o], the product
 * and the sum each rounded to float32 (the product goes through a volatile float: never an FMA).
 * The bias is a separate affine op. Self-contained (no ebnn_bits.c). ebnn_dense_w8 takes int8
 * weights (export option float_weights="int8"): each is converted to float (exactly) before the same
 * multiply and add; the per-channel scale is the separate affine op after it. */

#include "ebnn_internal.h"

/* Weights wf (float) or w8 (int8, wf NULL). */
static int dense_f32(uint32_t rows, uint32_t n_in, uint32_t n_out, const float *in, const float *wf, const int8_t *w8,
                     float *out)
{
    uint32_t r, o, n;
    if (in == NULL || (wf == NULL && w8 == NULL) || out == NULL)
        return EBNN_ERROR_ARGUMENT;
    for (r = 0; r < rows; r++, in += n_in, out += n_out) {
        for (o = 0; o < n_out; o++) {
            uint32_t k = o; /* column o of w (N, O) */
            float acc = 0.0f;
            for (n = 0; n < n_in; n++, k += n_out) {
                volatile float product = in[n] * ebnn_read_weight_f32(wf, w8, k);
                acc = EBNN_F32(acc + product);
            }
            out[o] = acc;
        }
    }
    return EBNN_OK;
}

EBNN_API int ebnn_dense_f32(uint32_t rows, uint32_t n_in, uint32_t n_out, const float *in, const float *w, float *out)
{
    return w == NULL ? EBNN_ERROR_ARGUMENT : dense_f32(rows, n_in, n_out, in, w, NULL, out);
}

EBNN_API int ebnn_dense_w8(uint32_t rows, uint32_t n_in, uint32_t n_out, const float *in, const int8_t *w, float *out)
{
    return w == NULL ? EBNN_ERROR_ARGUMENT : dense_f32(rows, n_in, n_out, in, NULL, w, out);
}
