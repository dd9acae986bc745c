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
 * scratch: EBNN_CONV_S8_SCRATCH(n_out, pool, k4) int32 values (n_out = out_c, or in_c * mult for a
 * depthwise conv; k4: the conv's kh * kw * in_c rounded up to a multiple of 4, 0 for a depthwise conv).
 * The conv's weights: rows of k4 int8 per output channel in uint32 words (see conv_s8_patch). */

#include "ebnn_requant.h"

#if defined(__ARM_FEATURE_SIMD32) && __ARM_FEATURE_SIMD32 && !defined(EBNN_NO_SIMD32)
#include <arm_acle.h> /* __sxtb16, __smlad: ARMv7E-M / ARMv8-M DSP (Cortex-M4, M7, M33, M55) */
#define EBNN_CONV_S8_SIMD32 1
#else
#define EBNN_CONV_S8_SIMD32 0
#endif

/* The conv (not depthwise) reads each position's window once into a patch of int16 values v = x - zp
 * (pad_q outside the input), zero-padded to k4 = a multiple of 4 taps; its weights are rows of k4 int8
 * per output channel, packed in 32-bit words (little-endian) with each group of four taps stored in
 * the order (0, 2, 1, 3). Each accumulator is then bias + the dot product of the patch with its row
 * (with SIMD32, __smlad: two 16x16-bit products per instruction, the taps (0, 1) of a group from the
 * even bytes of its weight word, (2, 3) from the odd ones). Returns 0 when every patch value is 0
 * (every accumulator is then its bias: e.g. a blank region of an image). */
static int conv_s8_patch(const ebnn_window_t *g, const int8_t *in, int32_t zp, int32_t pad_q, uint32_t oy,
                         uint32_t ox, int16_t *patch, uint32_t k4)
{
    uint32_t ky, kx, c, row = (uint32_t)g->kw * g->in_c;
    int16_t *p = patch;
    int32_t any = 0;
    for (ky = 0; ky < g->kh; ky++) {
        int32_t y = (int32_t)(oy * g->sh + ky) - (int32_t)g->pad_t;
        int32_t x0 = (int32_t)(ox * g->sw) - (int32_t)g->pad_l;
        if (y < 0 || y >= (int32_t)g->in_h) {
            for (c = 0; c < row; c++)
                *p++ = (int16_t)pad_q;
            any |= pad_q;
            continue;
        }
        if (x0 >= 0 && x0 + (int32_t)g->kw <= (int32_t)g->in_w) { /* the whole kernel row is inside */
            const int8_t *px = in + ((uint32_t)y * g->in_w + (uint32_t)x0) * g->in_c;
            for (c = 0; c < row; c++) {
                int32_t v = (int32_t)px[c] - zp;
                *p++ = (int16_t)v;
                any |= v;
            }
            continue;
        }
        for (kx = 0; kx < g->kw; kx++) {
            int32_t x = x0 + (int32_t)kx;
            if (x < 0 || x >= (int32_t)g->in_w) {
                for (c = 0; c < g->in_c; c++)
                    *p++ = (int16_t)pad_q;
                any |= pad_q;
            } else {
                const int8_t *px = in + ((uint32_t)y * g->in_w + (uint32_t)x) * g->in_c;
                for (c = 0; c < g->in_c; c++) {
                    int32_t v = (int32_t)px[c] - zp;
                    *p++ = (int16_t)v;
                    any |= v;
                }
            }
        }
    }
    while (p < patch + k4)
        *p++ = 0;
    return any != 0;
}

#if EBNN_CONV_S8_SIMD32
/* the odd bytes of w, sign-extended to two halfwords (SXTB16 with a rotation) */
static inline uint32_t sxtb16_odd(uint32_t w)
{
    uint32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(w));
    return r;
}

/* a + x01 . (the even bytes of v) + x23 . (the odd bytes of v): two SMLADs; x01 / x23 hold two int16 each */
static inline int32_t mac4_s8(uint32_t x01, uint32_t x23, uint32_t v, int32_t a)
{
    int16x2_t even = __sxtb16((int8x4_t)v), odd = (int16x2_t)sxtb16_odd(v);
    return __smlad((int16x2_t)x23, odd, __smlad((int16x2_t)x01, even, a));
}
#endif

/* acc[j] += row j . patch for j in [0, n): four rows at a time sharing the patch reads */
static void conv_s8_dots(const int16_t *patch, const uint32_t *w, uint32_t k4, uint32_t n, int32_t *acc)
{
    uint32_t j = 0, i;
#if EBNN_CONV_S8_SIMD32
    uint32_t words = k4 / 4u;
    const uint32_t *xp = (const uint32_t *)(const void *)patch; /* the patch is in word-aligned scratch */
    for (; j + 4u <= n; j += 4u) {
        const uint32_t *w0 = w + j * words;
        int32_t a0 = acc[j], a1 = acc[j + 1u], a2 = acc[j + 2u], a3 = acc[j + 3u];
        for (i = 0; i < words; i++) {
            uint32_t x01 = xp[2u * i], x23 = xp[2u * i + 1u], v;
            v = EBNN_READ_U32(&w0[i]);
            a0 = mac4_s8(x01, x23, v, a0);
            v = EBNN_READ_U32(&w0[i + words]);
            a1 = mac4_s8(x01, x23, v, a1);
            v = EBNN_READ_U32(&w0[i + 2u * words]);
            a2 = mac4_s8(x01, x23, v, a2);
            v = EBNN_READ_U32(&w0[i + 3u * words]);
            a3 = mac4_s8(x01, x23, v, a3);
        }
        acc[j] = a0;
        acc[j + 1u] = a1;
        acc[j + 2u] = a2;
        acc[j + 3u] = a3;
    }
    for (; j < n; j++) {
        const uint32_t *wj = w + j * words;
        int32_t a = acc[j];
        for (i = 0; i < words; i++) {
            uint32_t v = EBNN_READ_U32(&wj[i]);
            a = mac4_s8(xp[2u * i], xp[2u * i + 1u], v, a);
        }
        acc[j] = a;
    }
#else
    const int8_t *wb = (const int8_t *)(const void *)w;
    for (; j + 2u <= n; j += 2u) { /* two rows at a time */
        const int8_t *r0 = wb + j * k4, *r1 = r0 + k4;
        const int16_t *x = patch;
        int32_t a0 = acc[j], a1 = acc[j + 1u];
        for (i = 0; i < k4; i += 4u, x += 4) { /* bytes (0, 2, 1, 3) of a group are taps 0, 1, 2, 3 */
            int32_t t0 = x[0], t1 = x[1], t2 = x[2], t3 = x[3];
            a0 += t0 * EBNN_READ_S8(&r0[i]) + t1 * EBNN_READ_S8(&r0[i + 2u]) + t2 * EBNN_READ_S8(&r0[i + 1u]) +
                  t3 * EBNN_READ_S8(&r0[i + 3u]);
            a1 += t0 * EBNN_READ_S8(&r1[i]) + t1 * EBNN_READ_S8(&r1[i + 2u]) + t2 * EBNN_READ_S8(&r1[i + 1u]) +
                  t3 * EBNN_READ_S8(&r1[i + 3u]);
        }
        acc[j] = a0;
        acc[j + 1u] = a1;
    }
    for (; j < n; j++) {
        const int8_t *r0 = wb + j * k4;
        const int16_t *x = patch;
        int32_t a0 = acc[j];
        for (i = 0; i < k4; i += 4u, x += 4)
            a0 += x[0] * EBNN_READ_S8(&r0[i]) + x[1] * EBNN_READ_S8(&r0[i + 2u]) + x[2] * EBNN_READ_S8(&r0[i + 1u]) +
                  x[3] * EBNN_READ_S8(&r0[i + 3u]);
        acc[j] = a0;
    }
#endif
}

/* The accumulators of conv output (oy, ox) into acc[0 .. n_out): conv (w32 rows, patch scratch) or
 * depthwise (w8 in (KH, KW, C, per_c) order, tap by tap). */
static void conv_s8_at(const ebnn_window_t *g, const int8_t *in, int32_t zp, int32_t pad_q, const int8_t *w,
                       const uint32_t *w32, const int32_t *bias, uint32_t per_c, uint32_t n_out, uint32_t oy,
                       uint32_t ox, int32_t *acc, int16_t *patch)
{
    uint32_t ky, kx, c, j;
    const int8_t *wk = w; /* weights of the current tap, in storage order */
    if (w32 != NULL) {
        uint32_t k4 = ((uint32_t)g->kh * g->kw * g->in_c + 3u) & ~3u;
        for (j = 0; j < n_out; j++)
            acc[j] = EBNN_READ_I32(&bias[j]);
        if (conv_s8_patch(g, in, zp, pad_q, oy, ox, patch, k4))
            conv_s8_dots(patch, w32, k4, n_out, acc);
        return;
    }
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
                int32_t *dst = acc + c * per_c;
                if (v == 0)
                    continue;
                for (j = 0; j < per_c; j++)
                    dst[j] += v * (int32_t)EBNN_READ_S8(&wk[j]);
            }
        }
    }
}

/* The output stage of pooled output `pos` from its accumulators r[0 .. n_out) (own function: keeps the
 * caller's frame small on register-poor cores) */
static EBNN_NOT_INLINED void conv_s8_out(int kind, const ebnn_qout_t *q, const int32_t *r, uint32_t n_out, uint32_t pos,
                                         void *out, ebnn_bit_writer_t *bw)
{
    uint32_t j;
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
            ebnn_bw_put(bw, bit, 1u);
        }
    }
}

static int window_s8(const ebnn_window_t *gp, const ebnn_window_t *pp, const int8_t *in, int32_t zp, int32_t pad_q,
                     const int8_t *w, const uint32_t *w32, const int32_t *bias, uint16_t per_c, int kind,
                     const ebnn_qout_t *q, void *out, int32_t *scratch)
{
    ebnn_window_t g, p;
    ebnn_bit_writer_t bw;
    uint32_t py, px, j, n_out;
    int32_t *acc, *best;
    int16_t *patch;
    int any_neg = 0;
    if (gp == NULL || in == NULL || (w == NULL && w32 == NULL) || bias == NULL || out == NULL ||
        (scratch == NULL && (pp != NULL || kind != EBNN_QOUT_I32 || w32 != NULL)) || (kind != EBNN_QOUT_I32 && q == NULL))
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
    n_out = w32 == NULL ? (uint32_t)g.in_c * per_c : per_c; /* depthwise: channel c * per_c + m */
    acc = scratch;
    best = pp != NULL ? scratch + n_out : NULL;
    patch = scratch == NULL ? NULL : (int16_t *)(void *)(scratch + n_out * (pp != NULL ? 2u : 1u)); /* conv only */
    ebnn_bw_init(&bw, (uint32_t *)out); /* used for EBNN_QOUT_BITS only (writes nothing here) */
    if (kind == EBNN_QOUT_S8 && pp != NULL) /* a negative multiplier pools the minimum */
        for (j = 0; j < n_out; j++)
            any_neg |= EBNN_READ_I32(&q->m[j]) < 0;
    for (py = 0; py < p.out_h; py++) {
        for (px = 0; px < p.out_w; px++) {
            uint32_t pos = py * p.out_w + px;
            int32_t y0 = (int32_t)(py * p.sh) - (int32_t)p.pad_t, x0 = (int32_t)(px * p.sw) - (int32_t)p.pad_l, y, x;
            int first = 1;
            if (pp == NULL && kind == EBNN_QOUT_I32) { /* plain conv: accumulate in the output */
                conv_s8_at(&g, in, zp, pad_q, w, w32, bias, per_c, n_out, py, px, (int32_t *)out + pos * n_out, patch);
                continue;
            }
            for (y = y0 < 0 ? 0 : y0; y < y0 + (int32_t)p.kh && y < (int32_t)g.out_h; y++) {
                for (x = x0 < 0 ? 0 : x0; x < x0 + (int32_t)p.kw && x < (int32_t)g.out_w; x++) {
                    /* the first conv output of a pool window goes straight into best */
                    conv_s8_at(&g, in, zp, pad_q, w, w32, bias, per_c, n_out, (uint32_t)y, (uint32_t)x,
                               (best != NULL && first) ? best : acc, patch);
                    if (best != NULL && !first) {
                        if (!any_neg) {
                            for (j = 0; j < n_out; j++)
                                best[j] = acc[j] > best[j] ? acc[j] : best[j];
                        } else {
                            for (j = 0; j < n_out; j++) {
                                int neg = EBNN_READ_I32(&q->m[j]) < 0;
                                if (neg ? acc[j] < best[j] : acc[j] > best[j])
                                    best[j] = acc[j];
                            }
                        }
                    }
                    first = 0;
                }
            }
            conv_s8_out(kind, q, best != NULL ? best : acc, n_out, pos, out, &bw);
        }
    }
    if (kind == EBNN_QOUT_BITS)
        ebnn_bw_flush(&bw);
    return EBNN_OK;
}

EBNN_API int ebnn_conv_s8(const ebnn_window_t *g, const ebnn_window_t *pool, const int8_t *in, int32_t zp,
                          int32_t pad_q, const uint32_t *w, const int32_t *bias, uint16_t out_c, int kind,
                          const ebnn_qout_t *q, void *out, int32_t *scratch)
{
    return w == NULL ? EBNN_ERROR_ARGUMENT : window_s8(g, pool, in, zp, pad_q, NULL, w, bias, out_c, kind, q, out, scratch);
}

EBNN_API int ebnn_depthwise_s8(const ebnn_window_t *g, const ebnn_window_t *pool, const int8_t *in, int32_t zp,
                               int32_t pad_q, const int8_t *w, const int32_t *bias, uint16_t mult, int kind,
                               const ebnn_qout_t *q, void *out, int32_t *scratch)
{
    return w == NULL ? EBNN_ERROR_ARGUMENT : window_s8(g, pool, in, zp, pad_q, w, NULL, bias, mult, kind, q, out, scratch);
}
