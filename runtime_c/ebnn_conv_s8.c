/* ebnn_conv_s8.c - integer-only graph ops: int8 convolution and depthwise convolution, with an
 * optional max pool and output stage fused in (per pooled output, never the full-resolution map).
 *
 * Semantics: keras_ebnn/graph_quant.py (ops "conv_s8", "depthwise_s8"), defined by its run_op. Per
 * conv output: acc = bias[o] + sum over the taps of (x - zp) * w, where a tap outside the input has the
 * value pad_q (0 for zero padding) instead of x - zp; weights int8, layout (KH, KW, C, per_c) as the
 * float conv. Exact integer arithmetic (the export bounds every accumulator within int32), so the
 * order of the sum does not matter: a tap worth 0 (e.g. a zero pixel, zero padding) is skipped.
 * pool (NULL: none): per pooled output and channel, the maximum of the accumulators of its in-bounds
 * conv outputs (the minimum for a channel whose requantization multiplier is negative: requantizing
 * is monotone, so this equals pooling after requantizing). Output stage `kind`:
 *   EBNN_QOUT_I32   int32 accumulators (out int32_t);
 *   EBNN_QOUT_S8    requantized: clamp(zp_out + offset[c] + mbqm(acc, m[c], shift[c]), lo, hi) (int8_t);
 *   EBNN_QOUT_BITS  bit = acc >= t[c] (-acc >= t[c] where flip bit c is set), packed (uint32_t words).
 * scratch: EBNN_CONV_S8_SCRATCH(n_out, pool) int32 values (n_out = out_c, or in_c * mult for a
 * depthwise conv); none for EBNN_QOUT_I32 without a pool. */

#include "ebnn_requant.h"

/* The accumulators of conv output (oy, ox) into acc[0 .. n_out). */
static void conv_s8_at(const ebnn_window_t *g, const int8_t *in, int32_t zp, int32_t pad_q, const int8_t *w,
                       const int32_t *bias, uint32_t per_c, uint32_t step, uint32_t n_out, uint32_t oy, uint32_t ox,
                       int32_t *acc)
{
    uint32_t ky, kx, c, j;
    const int8_t *wk = w; /* weights of the current tap, in storage order */
    for (j = 0; j < n_out; j++)
        acc[j] = EBNN_READ_I32(&bias[j]);
    for (ky = 0; ky < g->kh; ky++) {
        int32_t y = (int32_t)(oy * g->sh + ky) - (int32_t)g->pad_t;
        int y_in = y >= 0 && y < (int32_t)g->in_h;
        for (kx = 0; kx < g->kw; kx++) {
            int32_t x = (int32_t)(ox * g->sw + kx) - (int32_t)g->pad_l;
            const int8_t *px = (y_in && x >= 0 && x < (int32_t)g->in_w)
                                   ? in + ((uint32_t)y * g->in_w + (uint32_t)x) * g->in_c : NULL;
            for (c = 0; c < g->in_c; c++, wk += per_c) {
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

static int window_s8(const ebnn_window_t *gp, const ebnn_window_t *pp, const int8_t *in, int32_t zp, int32_t pad_q,
                     const int8_t *w, const int32_t *bias, uint16_t per_c, int depthwise, int kind,
                     const ebnn_qout_t *q, void *out, int32_t *scratch)
{
    ebnn_window_t g, p;
    ebnn_bit_writer_t bw;
    uint32_t py, px, j, n_out, step;
    int32_t *acc, *best;
    if (gp == NULL || in == NULL || w == NULL || bias == NULL || out == NULL ||
        ((pp != NULL || kind != EBNN_QOUT_I32) && scratch == NULL) || (kind != EBNN_QOUT_I32 && q == NULL))
        return EBNN_ERROR_ARGUMENT;
    EBNN_COPY_CONST(&g, gp, sizeof(g));
    if (pp != NULL) {
        EBNN_COPY_CONST(&p, pp, sizeof(p));
    } else { /* no pool: one conv output per "pooled" output */
        p.in_h = p.out_h = g.out_h;
        p.in_w = p.out_w = g.out_w;
        p.in_c = 0u;
        p.kh = p.kw = p.sh = p.sw = 1u;
        p.pad_t = p.pad_l = 0u;
    }
    step = depthwise ? per_c : 0u; /* channel c's accumulators start at acc + c * step */
    n_out = depthwise ? (uint32_t)g.in_c * per_c : per_c;
    acc = scratch;
    best = pp != NULL ? scratch + n_out : NULL;
    ebnn_bw_init(&bw, (uint32_t *)out); /* used for EBNN_QOUT_BITS only (writes nothing here) */
    for (py = 0; py < p.out_h; py++) {
        for (px = 0; px < p.out_w; px++) {
            uint32_t pos = py * p.out_w + px;
            int32_t y0 = (int32_t)(py * p.sh) - (int32_t)p.pad_t, x0 = (int32_t)(px * p.sw) - (int32_t)p.pad_l, y, x;
            int first = 1;
            int32_t *r;
            if (pp == NULL && kind == EBNN_QOUT_I32) { /* plain conv: accumulate in the output */
                conv_s8_at(&g, in, zp, pad_q, w, bias, per_c, step, n_out, py, px, (int32_t *)out + pos * n_out);
                continue;
            }
            for (y = y0 < 0 ? 0 : y0; y < y0 + (int32_t)p.kh && y < (int32_t)g.out_h; y++) {
                for (x = x0 < 0 ? 0 : x0; x < x0 + (int32_t)p.kw && x < (int32_t)g.out_w; x++) {
                    conv_s8_at(&g, in, zp, pad_q, w, bias, per_c, step, n_out, (uint32_t)y, (uint32_t)x, acc);
                    if (best == NULL)
                        continue;
                    for (j = 0; j < n_out; j++) {
                        int neg = kind == EBNN_QOUT_S8 && EBNN_READ_I32(&q->m[j]) < 0;
                        if (first || (neg ? acc[j] < best[j] : acc[j] > best[j]))
                            best[j] = acc[j];
                    }
                    first = 0;
                }
            }
            r = best != NULL ? best : acc;
            if (kind == EBNN_QOUT_I32) {
                for (j = 0; j < n_out; j++)
                    ((int32_t *)out)[pos * n_out + j] = r[j];
            } else if (kind == EBNN_QOUT_S8) {
                int8_t *o8 = (int8_t *)out + pos * n_out;
                for (j = 0; j < n_out; j++) {
                    int32_t v = ebnn_mbqm(r[j], EBNN_READ_I32(&q->m[j]), (int32_t)EBNN_READ_S8(&q->shift[j]));
                    o8[j] = (int8_t)ebnn_clamp64((int64_t)q->zp_out + EBNN_READ_I32(&q->offset[j]) + v, q->lo, q->hi);
                }
            } else {
                for (j = 0; j < n_out; j++) {
                    int32_t t = EBNN_READ_I32(&q->t[j]), v = r[j];
                    uint32_t bit;
                    if ((EBNN_READ_U32(&q->flip[j >> 5]) >> (j & 31u)) & 1u)
                        bit = t == INT32_MIN || v <= -t; /* -v >= t without negating v */
                    else
                        bit = v >= t;
                    ebnn_bw_put(&bw, bit, 1u);
                }
            }
        }
    }
    if (kind == EBNN_QOUT_BITS)
        ebnn_bw_flush(&bw);
    return EBNN_OK;
}

EBNN_API int ebnn_conv_s8(const ebnn_window_t *g, const ebnn_window_t *pool, const int8_t *in, int32_t zp,
                          int32_t pad_q, const int8_t *w, const int32_t *bias, uint16_t out_c, int kind,
                          const ebnn_qout_t *q, void *out, int32_t *scratch)
{
    return window_s8(g, pool, in, zp, pad_q, w, bias, out_c, 0, kind, q, out, scratch);
}

EBNN_API int ebnn_depthwise_s8(const ebnn_window_t *g, const ebnn_window_t *pool, const int8_t *in, int32_t zp,
                               int32_t pad_q, const int8_t *w, const int32_t *bias, uint16_t mult, int kind,
                               const ebnn_qout_t *q, void *out, int32_t *scratch)
{
    return window_s8(g, pool, in, zp, pad_q, w, bias, mult, 1, kind, q, out, scratch);
}
