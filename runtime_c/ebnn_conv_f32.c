/* ebnn_conv_f32.c - graph ops: full-precision convolution and depthwise convolution (float32).
 *
 * Semantics: keras_ebnn/ir/graph.py (ops "conv", "depthwise"), defined by keras_ebnn/ir/graph_reference.py.
 * Each output is acc = 0.0f; acc = acc + v * w over the taps in row-major (ky, kx, c) order, the
 * product and the sum each rounded to float32 (never one fused multiply-add: the product goes through
 * a volatile float, which also survives -ffp-contract=fast on FPU cores). Taps outside the input read
 * pad_value and are summed like the others, as the reference does. Self-contained (no ebnn_bits.c).
 * The _w8 entry points take int8 weights (export option float_weights="int8", keras_ebnn/passes/graph_int8.py):
 * each weight is converted to float (exactly) before the same multiply and add; the per-channel scale
 * is the separate affine op after the conv. */

#include "ebnn_internal.h"

/* Both kernels keep the accumulators of one output position in `out` (they are that position's
 * outputs) and stream the weights in storage order: for each tap, the tap's value v is read once and
 * added, times its weights, to every accumulator it feeds. Each accumulator still sums its own taps in
 * row-major order, so the result is the reference's. */

/* The value of channel c at input (y, x), or pad_value outside the input. */
static float conv_f32_tap(const ebnn_window_t *g, const float *in, int32_t y, int32_t x, uint32_t c, float pad_value)
{
    if (y < 0 || y >= (int32_t)g->in_h || x < 0 || x >= (int32_t)g->in_w)
        return pad_value;
    return in[((uint32_t)y * g->in_w + (uint32_t)x) * g->in_c + c];
}

/* The conv and depthwise kernels, weights wf (float) or w8 (int8, wf NULL). Each tap value v of input
 * channel c is multiplied by the next `per_c` weights (storage order (KH, KW, C, per_c)) into per_c
 * accumulators: all out_c outputs for a conv (per_c = out_c), outputs c * mult .. c * mult + mult - 1
 * for a depthwise conv (per_c = mult). */
static int window_f32(const ebnn_window_t *gp, const float *in, const float *wf, const int8_t *w8, uint16_t per_c,
                      int depthwise, float pad_value, float *out)
{
    ebnn_window_t g;
    uint32_t oy, ox, ky, kx, c, j, n_out, step;
    if (gp == NULL || in == NULL || (wf == NULL && w8 == NULL) || out == NULL)
        return EBNN_ERROR_ARGUMENT;
    EBNN_COPY_CONST(&g, gp, sizeof(g));
    step = depthwise ? per_c : 0u; /* channel c's accumulators start at acc + c * step */
    n_out = depthwise ? (uint32_t)g.in_c * per_c : per_c;
    for (oy = 0; oy < g.out_h; oy++) {
        for (ox = 0; ox < g.out_w; ox++) {
            float *acc = out + ((uint32_t)oy * g.out_w + ox) * n_out;
            uint32_t k = 0; /* weights consumed in storage order */
            for (j = 0; j < n_out; j++)
                acc[j] = 0.0f;
            for (ky = 0; ky < g.kh; ky++) {
                int32_t y = (int32_t)(oy * g.sh + ky) - (int32_t)g.pad_t;
                for (kx = 0; kx < g.kw; kx++) {
                    int32_t x = (int32_t)(ox * g.sw + kx) - (int32_t)g.pad_l;
                    for (c = 0; c < g.in_c; c++) {
                        float v = conv_f32_tap(&g, in, y, x, c, pad_value);
                        float *dst = acc + c * step;
                        for (j = 0; j < per_c; j++, k++) {
                            volatile float product = v * ebnn_read_weight_f32(wf, w8, k);
                            dst[j] = EBNN_F32(dst[j] + product);
                        }
                    }
                }
            }
        }
    }
    return EBNN_OK;
}

EBNN_API int ebnn_conv_f32(const ebnn_window_t *g, const float *in, const float *w, uint16_t out_c, float pad_value,
                           float *out)
{
    return w == NULL ? EBNN_ERROR_ARGUMENT : window_f32(g, in, w, NULL, out_c, 0, pad_value, out);
}

EBNN_API int ebnn_conv_w8(const ebnn_window_t *g, const float *in, const int8_t *w, uint16_t out_c, float pad_value,
                          float *out)
{
    return w == NULL ? EBNN_ERROR_ARGUMENT : window_f32(g, in, NULL, w, out_c, 0, pad_value, out);
}

EBNN_API int ebnn_depthwise_f32(const ebnn_window_t *g, const float *in, const float *w, uint16_t mult,
                                float pad_value, float *out)
{
    return w == NULL ? EBNN_ERROR_ARGUMENT : window_f32(g, in, w, NULL, mult, 1, pad_value, out);
}

EBNN_API int ebnn_depthwise_w8(const ebnn_window_t *g, const float *in, const int8_t *w, uint16_t mult,
                               float pad_value, float *out)
{
    return w == NULL ? EBNN_ERROR_ARGUMENT : window_f32(g, in, NULL, w, mult, 1, pad_value, out);
}
