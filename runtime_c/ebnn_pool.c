/* ebnn_pool.c - graph ops: max, sum and average pooling over bits, int32 and float32 (also global pooling).
 *
 * Semantics: keras_ebnn/graph.py (ops "max_pool", "avg_pool", "global_max", "global_avg"), defined by
 * keras_ebnn/graph_reference.py. A window covers only its in-bounds taps (a window hanging off the
 * edge skips the others, as TF's pooling does), visited in row-major (ky, kx) order:
 *   max over bits = OR; max over int32 exact; max over float32 as numpy.maximum (a NaN propagates);
 *   sum over bits = sum of the +-1 values, over int32 the exact sum (an average pool of bits / ints:
 *   the divisor is applied later, by ebnn_i32_to_f32);
 *   average over float32: s = 0.0f; s = s + x per tap; out = s / (float)count.
 * Outputs are (OH, OW, C). A window without any in-bounds tap (Keras never builds one) is
 * EBNN_ERROR_ARGUMENT, checked before anything is written. Uses ebnn_bits.c (bit reads and writer,
 * window clipping). */

#include "ebnn_internal.h"

/* 1 if every window of g has at least one in-bounds tap (rows and columns clip independently). */
static int pool_windows_valid(const ebnn_window_t *g)
{
    uint32_t i;
    uint_fast16_t lo, hi;
    for (i = 0; i < g->out_h; i++) {
        ebnn_clip_window((int32_t)(i * g->sh) - (int32_t)g->pad_t, g->kh, g->in_h, &lo, &hi);
        if (lo >= hi)
            return 0;
    }
    for (i = 0; i < g->out_w; i++) {
        ebnn_clip_window((int32_t)(i * g->sw) - (int32_t)g->pad_l, g->kw, g->in_w, &lo, &hi);
        if (lo >= hi)
            return 0;
    }
    return 1;
}

/* The in-bounds input rows [*y0, *y1) and columns [*x0, *x1) of the window of output (oy, ox). */
static void pool_window(const ebnn_window_t *g, uint32_t oy, uint32_t ox, uint32_t *y0, uint32_t *y1, uint32_t *x0,
                        uint32_t *x1)
{
    int32_t sy = (int32_t)(oy * g->sh) - (int32_t)g->pad_t, sx = (int32_t)(ox * g->sw) - (int32_t)g->pad_l;
    uint_fast16_t lo, hi;
    ebnn_clip_window(sy, g->kh, g->in_h, &lo, &hi);
    *y0 = (uint32_t)(sy + (int32_t)lo);
    *y1 = (uint32_t)(sy + (int32_t)hi);
    ebnn_clip_window(sx, g->kw, g->in_w, &lo, &hi);
    *x0 = (uint32_t)(sx + (int32_t)lo);
    *x1 = (uint32_t)(sx + (int32_t)hi);
}

/* Every kernel below walks, for each output position (oy, ox), the in-bounds taps (y, x) of its
 * window in row-major order; the tap's C channels start at element (y * in_w + x) * C. */

EBNN_API int ebnn_max_pool_bits(const ebnn_window_t *gp, const uint32_t *in, uint32_t *out)
{
    ebnn_window_t g;
    uint32_t oy, ox, y, x, y0, y1, x0, x1, c0;
    ebnn_bit_writer_t bw;
    if (gp == NULL || in == NULL || out == NULL)
        return EBNN_ERROR_ARGUMENT;
    EBNN_COPY_CONST(&g, gp, sizeof(g));
    if (!pool_windows_valid(&g))
        return EBNN_ERROR_ARGUMENT;
    ebnn_bw_init(&bw, out);
    for (oy = 0; oy < g.out_h; oy++)
        for (ox = 0; ox < g.out_w; ox++) {
            pool_window(&g, oy, ox, &y0, &y1, &x0, &x1);
            for (c0 = 0; c0 < g.in_c; c0 += 32u) { /* 32 channels at a time: the OR of their bit runs */
                uint_fast8_t n = (uint_fast8_t)(g.in_c - c0 < 32u ? g.in_c - c0 : 32u);
                uint32_t bits = 0;
                for (y = y0; y < y1; y++)
                    for (x = x0; x < x1; x++)
                        bits |= ebnn_read_bits(in, (y * g.in_w + x) * g.in_c + c0, n);
                ebnn_bw_put(&bw, bits, n);
            }
        }
    ebnn_bw_flush(&bw);
    return EBNN_OK;
}

EBNN_API int ebnn_sum_pool_bits(const ebnn_window_t *gp, const uint32_t *in, int32_t *out)
{
    ebnn_window_t g;
    uint32_t oy, ox, y, x, y0, y1, x0, x1, c;
    if (gp == NULL || in == NULL || out == NULL)
        return EBNN_ERROR_ARGUMENT;
    EBNN_COPY_CONST(&g, gp, sizeof(g));
    if (!pool_windows_valid(&g))
        return EBNN_ERROR_ARGUMENT;
    for (oy = 0; oy < g.out_h; oy++)
        for (ox = 0; ox < g.out_w; ox++, out += g.in_c) {
            pool_window(&g, oy, ox, &y0, &y1, &x0, &x1);
            for (c = 0; c < g.in_c; c++)
                out[c] = 0;
            for (y = y0; y < y1; y++)
                for (x = x0; x < x1; x++) {
                    uint32_t base = (y * g.in_w + x) * g.in_c;
                    for (c = 0; c < g.in_c; c++)
                        out[c] += ebnn_read_bits(in, base + c, 1u) != 0u ? 1 : -1;
                }
        }
    return EBNN_OK;
}

EBNN_API int ebnn_max_pool_i32(const ebnn_window_t *gp, const int32_t *in, int32_t *out)
{
    ebnn_window_t g;
    uint32_t oy, ox, y, x, y0, y1, x0, x1, c;
    if (gp == NULL || in == NULL || out == NULL)
        return EBNN_ERROR_ARGUMENT;
    EBNN_COPY_CONST(&g, gp, sizeof(g));
    if (!pool_windows_valid(&g))
        return EBNN_ERROR_ARGUMENT;
    for (oy = 0; oy < g.out_h; oy++)
        for (ox = 0; ox < g.out_w; ox++, out += g.in_c) {
            pool_window(&g, oy, ox, &y0, &y1, &x0, &x1);
            for (y = y0; y < y1; y++)
                for (x = x0; x < x1; x++) {
                    const int32_t *tap = in + (y * g.in_w + x) * g.in_c;
                    int first = y == y0 && x == x0;
                    for (c = 0; c < g.in_c; c++)
                        if (first || tap[c] > out[c])
                            out[c] = tap[c];
                }
        }
    return EBNN_OK;
}

EBNN_API int ebnn_sum_pool_i32(const ebnn_window_t *gp, const int32_t *in, int32_t *out)
{
    ebnn_window_t g;
    uint32_t oy, ox, y, x, y0, y1, x0, x1, c;
    if (gp == NULL || in == NULL || out == NULL)
        return EBNN_ERROR_ARGUMENT;
    EBNN_COPY_CONST(&g, gp, sizeof(g));
    if (!pool_windows_valid(&g))
        return EBNN_ERROR_ARGUMENT;
    for (oy = 0; oy < g.out_h; oy++)
        for (ox = 0; ox < g.out_w; ox++, out += g.in_c) {
            pool_window(&g, oy, ox, &y0, &y1, &x0, &x1);
            for (c = 0; c < g.in_c; c++)
                out[c] = 0;
            for (y = y0; y < y1; y++)
                for (x = x0; x < x1; x++) {
                    const int32_t *tap = in + (y * g.in_w + x) * g.in_c;
                    for (c = 0; c < g.in_c; c++)
                        out[c] += tap[c];
                }
        }
    return EBNN_OK;
}

EBNN_API int ebnn_max_pool_f32(const ebnn_window_t *gp, const float *in, float *out)
{
    ebnn_window_t g;
    uint32_t oy, ox, y, x, y0, y1, x0, x1, c;
    if (gp == NULL || in == NULL || out == NULL)
        return EBNN_ERROR_ARGUMENT;
    EBNN_COPY_CONST(&g, gp, sizeof(g));
    if (!pool_windows_valid(&g))
        return EBNN_ERROR_ARGUMENT;
    for (oy = 0; oy < g.out_h; oy++)
        for (ox = 0; ox < g.out_w; ox++, out += g.in_c) {
            pool_window(&g, oy, ox, &y0, &y1, &x0, &x1);
            for (y = y0; y < y1; y++)
                for (x = x0; x < x1; x++) {
                    const float *tap = in + (y * g.in_w + x) * g.in_c;
                    int first = y == y0 && x == x0;
                    for (c = 0; c < g.in_c; c++) {
                        float m = out[c], v = tap[c];
                        /* numpy.maximum(m, v): m if m > v or m is NaN, else v (a NaN tap propagates) */
                        if (first || !(m > v || m != m))
                            out[c] = v;
                    }
                }
        }
    return EBNN_OK;
}

EBNN_API int ebnn_avg_pool_f32(const ebnn_window_t *gp, const float *in, float *out)
{
    ebnn_window_t g;
    uint32_t oy, ox, y, x, y0, y1, x0, x1, c;
    if (gp == NULL || in == NULL || out == NULL)
        return EBNN_ERROR_ARGUMENT;
    EBNN_COPY_CONST(&g, gp, sizeof(g));
    if (!pool_windows_valid(&g))
        return EBNN_ERROR_ARGUMENT;
    for (oy = 0; oy < g.out_h; oy++)
        for (ox = 0; ox < g.out_w; ox++, out += g.in_c) {
            float count;
            pool_window(&g, oy, ox, &y0, &y1, &x0, &x1);
            count = (float)((y1 - y0) * (x1 - x0)); /* in-bounds taps: exact in float below 2^24 */
            for (c = 0; c < g.in_c; c++)
                out[c] = 0.0f;
            for (y = y0; y < y1; y++)
                for (x = x0; x < x1; x++) {
                    const float *tap = in + (y * g.in_w + x) * g.in_c;
                    for (c = 0; c < g.in_c; c++)
                        out[c] = out[c] + tap[c];
                }
            for (c = 0; c < g.in_c; c++)
                out[c] = out[c] / count;
        }
    return EBNN_OK;
}
