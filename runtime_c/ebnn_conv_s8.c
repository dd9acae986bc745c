/* ebnn_conv_s8.c - integer-only graph ops: int8 convolution and depthwise convolution, int32 out.
 *
 * Semantics: keras_ebnn/graph_quant.py (ops "conv_s8", "depthwise_s8"), defined by its run_op. Per
 * output: acc = bias[o] + sum over the taps of (x - zp) * w, where a tap outside the input has the
 * value pad_q (0 for zero padding) instead of x - zp; weights int8, layout (KH, KW, C, per_c) as the
 * float conv. Exact integer arithmetic (the export bounds every accumulator within int32), so the
 * order of the sum does not matter: a tap worth 0 (e.g. a zero pixel, zero padding) is skipped. */

#include "ebnn_requant.h"

static int window_s8(const ebnn_window_t *gp, const int8_t *in, int32_t zp, int32_t pad_q, const int8_t *w,
                     const int32_t *bias, uint16_t per_c, int depthwise, int32_t *out)
{
    ebnn_window_t g;
    uint32_t oy, ox, ky, kx, c, j, n_out, step;
    if (gp == NULL || in == NULL || w == NULL || bias == NULL || out == NULL)
        return EBNN_ERROR_ARGUMENT;
    EBNN_COPY_CONST(&g, gp, sizeof(g));
    step = depthwise ? per_c : 0u; /* channel c's accumulators start at acc + c * step */
    n_out = depthwise ? (uint32_t)g.in_c * per_c : per_c;
    for (oy = 0; oy < g.out_h; oy++) {
        for (ox = 0; ox < g.out_w; ox++) {
            int32_t *acc = out + ((uint32_t)oy * g.out_w + ox) * n_out;
            const int8_t *wk = w; /* weights of the current tap, in storage order */
            for (j = 0; j < n_out; j++)
                acc[j] = EBNN_READ_I32(&bias[j]);
            for (ky = 0; ky < g.kh; ky++) {
                int32_t y = (int32_t)(oy * g.sh + ky) - (int32_t)g.pad_t;
                int y_in = y >= 0 && y < (int32_t)g.in_h;
                for (kx = 0; kx < g.kw; kx++) {
                    int32_t x = (int32_t)(ox * g.sw + kx) - (int32_t)g.pad_l;
                    const int8_t *px = (y_in && x >= 0 && x < (int32_t)g.in_w)
                                           ? in + ((uint32_t)y * g.in_w + (uint32_t)x) * g.in_c : NULL;
                    for (c = 0; c < g.in_c; c++, wk += per_c) {
                        int32_t v = px != NULL ? (int32_t)px[c] - zp : pad_q;
                        int32_t *dst = acc + c * step;
                        if (v == 0)
                            continue;
                        for (j = 0; j < per_c; j++)
                            dst[j] += v * (int32_t)EBNN_READ_S8(&wk[j]);
                    }
                }
            }
        }
    }
    return EBNN_OK;
}

EBNN_API int ebnn_conv_s8(const ebnn_window_t *g, const int8_t *in, int32_t zp, int32_t pad_q, const int8_t *w,
                          const int32_t *bias, uint16_t out_c, int32_t *out)
{
    return window_s8(g, in, zp, pad_q, w, bias, out_c, 0, out);
}

EBNN_API int ebnn_depthwise_s8(const ebnn_window_t *g, const int8_t *in, int32_t zp, int32_t pad_q,
                               const int8_t *w, const int32_t *bias, uint16_t mult, int32_t *out)
{
    return window_s8(g, in, zp, pad_q, w, bias, mult, 1, out);
}
