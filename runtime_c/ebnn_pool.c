/* ebnn_pool.c - graph ops: max, sum and average pooling over bits, int32 and float32 (also global pooling).
 *
 * Semantics: keras_ebnn/ir/graph.py (ops "max_pool", "avg_pool", "global_max", "global_avg"), defined by
 * keras_ebnn/ir/graph_reference.py. A window covers only its in-bounds taps (a window hanging off the
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

/* The in-bounds taps of one output position's window, visited in row-major (y, x) order. */
typedef struct {
    uint32_t y0, y1, x0, x1; /* in-bounds input rows [y0, y1) and columns [x0, x1) */
    uint32_t y, x;           /* the next tap */
    uint32_t in_w, in_c;
} pool_taps_t;

/* Starts t on the window of output position pos (row-major over (out_h, out_w)). */
static void pool_taps_start(pool_taps_t *t, const ebnn_window_t *g, uint32_t pos)
{
    int32_t sy = (int32_t)((pos / g->out_w) * g->sh) - (int32_t)g->pad_t;
    int32_t sx = (int32_t)((pos % g->out_w) * g->sw) - (int32_t)g->pad_l;
    uint_fast16_t lo, hi;
    ebnn_clip_window(sy, g->kh, g->in_h, &lo, &hi);
    t->y0 = (uint32_t)(sy + (int32_t)lo);
    t->y1 = (uint32_t)(sy + (int32_t)hi);
    ebnn_clip_window(sx, g->kw, g->in_w, &lo, &hi);
    t->x0 = (uint32_t)(sx + (int32_t)lo);
    t->x1 = (uint32_t)(sx + (int32_t)hi);
    t->y = t->y0;
    t->x = t->x0;
    t->in_w = g->in_w;
    t->in_c = g->in_c;
}

/* Number of taps in t's window (at least 1 once pool_begin accepted the geometry). */
static uint32_t pool_taps_count(const pool_taps_t *t)
{
    return (t->y1 - t->y0) * (t->x1 - t->x0);
}

/* 1 and *at = the element index of the next tap's first channel ((y * in_w + x) * C), or 0 at the end. */
static int pool_taps_next(pool_taps_t *t, uint32_t *at)
{
    if (t->y >= t->y1)
        return 0;
    *at = (t->y * t->in_w + t->x) * t->in_c;
    if (++t->x == t->x1) {
        t->x = t->x0;
        t->y++;
    }
    return 1;
}

/* The common prologue: arguments present, *g = a copy of *gp, every window non-empty. */
static int pool_begin(const ebnn_window_t *gp, const void *in, const void *out, ebnn_window_t *g)
{
    if (gp == NULL || in == NULL || out == NULL)
        return EBNN_ERROR_ARGUMENT;
    EBNN_COPY_CONST(g, gp, sizeof(*g));
    return pool_windows_valid(g) ? EBNN_OK : EBNN_ERROR_ARGUMENT;
}

/* Every kernel below walks the output positions pos in row-major order (out advancing C elements
 * each), and for each the in-bounds taps of its window. */

EBNN_API int ebnn_max_pool_bits(const ebnn_window_t *gp, const uint32_t *in, uint32_t *out)
{
    ebnn_window_t g;
    pool_taps_t t;
    uint32_t pos, at, c0;
    ebnn_bit_writer_t bw;
    int status = pool_begin(gp, in, out, &g);
    if (status != EBNN_OK)
        return status;
    ebnn_bw_init(&bw, out);
    for (pos = 0; pos < g.out_h * g.out_w; pos++)
        for (c0 = 0; c0 < g.in_c; c0 += 32u) { /* 32 channels at a time: the OR of their bit runs */
            uint_fast8_t n = (uint_fast8_t)(g.in_c - c0 < 32u ? g.in_c - c0 : 32u);
            uint32_t bits = 0;
            for (pool_taps_start(&t, &g, pos); pool_taps_next(&t, &at);)
                bits |= ebnn_read_bits(in, at + c0, n);
            ebnn_bw_put(&bw, bits, n);
        }
    ebnn_bw_flush(&bw);
    return EBNN_OK;
}

EBNN_API int ebnn_sum_pool_bits(const ebnn_window_t *gp, const uint32_t *in, int32_t *out)
{
    ebnn_window_t g;
    pool_taps_t t;
    uint32_t pos, at, c;
    int status = pool_begin(gp, in, out, &g);
    if (status != EBNN_OK)
        return status;
    for (pos = 0; pos < g.out_h * g.out_w; pos++, out += g.in_c) {
        for (c = 0; c < g.in_c; c++)
            out[c] = 0;
        for (pool_taps_start(&t, &g, pos); pool_taps_next(&t, &at);)
            for (c = 0; c < g.in_c; c++)
                out[c] += ebnn_read_bits(in, at + c, 1u) != 0u ? 1 : -1;
    }
    return EBNN_OK;
}

EBNN_API int ebnn_max_pool_i32(const ebnn_window_t *gp, const int32_t *in, int32_t *out)
{
    ebnn_window_t g;
    pool_taps_t t;
    uint32_t pos, at, c;
    int status = pool_begin(gp, in, out, &g);
    if (status != EBNN_OK)
        return status;
    for (pos = 0; pos < g.out_h * g.out_w; pos++, out += g.in_c) {
        int first = 1;
        for (pool_taps_start(&t, &g, pos); pool_taps_next(&t, &at); first = 0)
            for (c = 0; c < g.in_c; c++)
                if (first || in[at + c] > out[c])
                    out[c] = in[at + c];
    }
    return EBNN_OK;
}

EBNN_API int ebnn_sum_pool_i32(const ebnn_window_t *gp, const int32_t *in, int32_t *out)
{
    ebnn_window_t g;
    pool_taps_t t;
    uint32_t pos, at, c;
    int status = pool_begin(gp, in, out, &g);
    if (status != EBNN_OK)
        return status;
    for (pos = 0; pos < g.out_h * g.out_w; pos++, out += g.in_c) {
        for (c = 0; c < g.in_c; c++)
            out[c] = 0;
        for (pool_taps_start(&t, &g, pos); pool_taps_next(&t, &at);)
            for (c = 0; c < g.in_c; c++)
                out[c] += in[at + c];
    }
    return EBNN_OK;
}

EBNN_API int ebnn_max_pool_f32(const ebnn_window_t *gp, const float *in, float *out)
{
    ebnn_window_t g;
    pool_taps_t t;
    uint32_t pos, at, c;
    int status = pool_begin(gp, in, out, &g);
    if (status != EBNN_OK)
        return status;
    for (pos = 0; pos < g.out_h * g.out_w; pos++, out += g.in_c) {
        int first = 1;
        for (pool_taps_start(&t, &g, pos); pool_taps_next(&t, &at); first = 0)
            for (c = 0; c < g.in_c; c++) {
                float m = out[c], v = in[at + c];
                /* numpy.maximum(m, v): m if m > v or m is NaN, else v (a NaN tap propagates) */
                if (first || !(m > v || m != m))
                    out[c] = v;
            }
    }
    return EBNN_OK;
}

EBNN_API int ebnn_avg_pool_f32(const ebnn_window_t *gp, const float *in, float *out)
{
    ebnn_window_t g;
    pool_taps_t t;
    uint32_t pos, at, c;
    int status = pool_begin(gp, in, out, &g);
    if (status != EBNN_OK)
        return status;
    for (pos = 0; pos < g.out_h * g.out_w; pos++, out += g.in_c) {
        float count;
        for (c = 0; c < g.in_c; c++)
            out[c] = 0.0f;
        for (pool_taps_start(&t, &g, pos); pool_taps_next(&t, &at);)
            for (c = 0; c < g.in_c; c++)
                out[c] = EBNN_F32(out[c] + in[at + c]);
        count = (float)pool_taps_count(&t); /* in-bounds taps: exact in float below 2^24 */
        for (c = 0; c < g.in_c; c++)
            out[c] = EBNN_F32(out[c] / count);
    }
    return EBNN_OK;
}
