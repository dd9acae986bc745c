/* ebnn_conv_s8.c - integer-only graph ops: int8 convolution and depthwise convolution, with an
 * optional max pool and output stage fused in (per pooled output, never the full-resolution map).
 *
 * Semantics: keras_ebnn/passes/graph_quant.py (ops "conv_s8", "depthwise_s8"), defined by its run_op. Per
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
 * depthwise conv; k4: the conv's kh * kw * in_c rounded up to a multiple of 4, 0 for a depthwise conv),
 * + EBNN_CONV_S8_CACHE for a conv with a row cache (rows != 0), + 4 * k4 for binary weights.
 * The conv's weights: rows of k4 int8 per output channel in uint32 words (see conv_s8_patch), or, for
 * ebnn_conv_s8_bits (binary weights +-mag[o]), sign nibbles (see conv_s8_bits_two).
 *
 * How the conv (not depthwise) runs: per pooled output, its conv positions two at a time (conv_s8_two):
 * each position's window as an int16 patch (read from the input, or copied from the row cache of
 * int16 input rows, conv_s8_row), then for both patches at once either the int8 dot products
 * (conv_s8_dots2: with the DSP extension, __smlad, each weight word read and unpacked once for two
 * positions and two output channels) or, for binary weights, subset-sum tables (conv_s8_bits_two);
 * the pool's maximum, then the output stage. The depthwise conv keeps the plain tap-by-tap loop. */

#include "ebnn_requant.h"

#include <string.h> /* memcpy: unaligned 4-byte reads */

#if defined(__ARM_FEATURE_SIMD32) && __ARM_FEATURE_SIMD32 && !defined(EBNN_NO_SIMD32)
#include <arm_acle.h> /* __sxtb16, __smlad: ARMv7E-M / ARMv8-M DSP (Cortex-M4, M7, M33, M55) */
#define EBNN_CONV_S8_SIMD32 1
#else
#define EBNN_CONV_S8_SIMD32 0
#endif

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
    /* the geometry in locals: the patch stores could otherwise alias g's fields and force reloads */
    const uint32_t kh = g->kh, kw = g->kw, in_c = g->in_c, in_h = g->in_h, in_w = g->in_w, row = kw * in_c;
    const int32_t x0 = (int32_t)(ox * g->sw) - (int32_t)g->pad_l, y0 = (int32_t)(oy * g->sh) - (int32_t)g->pad_t;
    uint32_t ky, kx, c;
    int16_t *p = patch;
    int32_t any = 0;
    const int inside_x = x0 >= 0 && x0 + (int32_t)kw <= (int32_t)in_w;
    for (ky = 0; ky < kh; ky++) {
        int32_t y = y0 + (int32_t)ky;
        if (y < 0 || y >= (int32_t)in_h) {
            for (c = 0; c < row; c++)
                *p++ = (int16_t)pad_q;
            any |= pad_q;
            continue;
        }
        if (inside_x) { /* the whole kernel row is inside */
            const int8_t *px = in + ((uint32_t)y * in_w + (uint32_t)x0) * in_c, *end = px + row;
#if EBNN_CONV_S8_SIMD32
            if ((row & 3u) == 0u && (((uintptr_t)p) & 3u) == 0u) { /* four taps per word read */
                uint32_t zz = ((uint32_t)zp & 0xFFFFu) * 0x10001u, acc_any = 0;
                uint32_t *pw = (uint32_t *)(void *)p;
                for (; px < end; px += 4, pw += 2) {
                    uint32_t b, e, o, lo, hi;
                    memcpy(&b, px, 4);
                    e = (uint32_t)__sxtb16((int8x4_t)b); /* taps 0, 2 */
                    o = sxtb16_odd(b);                  /* taps 1, 3 */
                    lo = (uint32_t)__ssub16((int16x2_t)((e & 0xFFFFu) | (o << 16)), (int16x2_t)zz);
                    hi = (uint32_t)__ssub16((int16x2_t)((o & 0xFFFF0000u) | (e >> 16)), (int16x2_t)zz);
                    pw[0] = lo;
                    pw[1] = hi;
                    acc_any |= lo | hi;
                }
                p = (int16_t *)(void *)pw;
                any |= (int32_t)acc_any;
                continue;
            }
#endif
            while (px + 1 < end) {
                int32_t v0 = (int32_t)px[0] - zp, v1 = (int32_t)px[1] - zp;
                p[0] = (int16_t)v0;
                p[1] = (int16_t)v1;
                any |= v0 | v1;
                px += 2;
                p += 2;
            }
            if (px < end) {
                int32_t v = (int32_t)*px - zp;
                *p++ = (int16_t)v;
                any |= v;
            }
            continue;
        }
        for (kx = 0; kx < kw; kx++) {
            int32_t x = x0 + (int32_t)kx;
            if (x < 0 || x >= (int32_t)in_w) {
                for (c = 0; c < in_c; c++)
                    *p++ = (int16_t)pad_q;
                any |= pad_q;
            } else {
                const int8_t *px = in + ((uint32_t)y * in_w + (uint32_t)x) * in_c;
                for (c = 0; c < in_c; c++) {
                    int32_t v = (int32_t)px[c] - zp;
                    *p++ = (int16_t)v;
                    any |= v;
                }
            }
        }
    }
    switch (k4 - kh * row) { /* at most 3 taps of zero padding (no memset call) */
    case 3u:
        p[2] = 0;
        /* fall through */
    case 2u:
        p[1] = 0;
        /* fall through */
    case 1u:
        p[0] = 0;
        break;
    default:
        break;
    }
    return any != 0;
}


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

/* conv_s8_dots for two patches (two conv positions) at once: acca[j] += row j . pa, accb[j] += row j . pb;
 * with SIMD32 each weight word is read and unpacked once for both positions, two rows at a time. */
static void conv_s8_dots2(const int16_t *pa, const int16_t *pb, const uint32_t *w, uint32_t k4, uint32_t n,
                          int32_t *acca, int32_t *accb)
{
#if EBNN_CONV_S8_SIMD32
    uint32_t words = k4 / 4u, j = 0, i;
    const uint32_t *xa = (const uint32_t *)(const void *)pa, *xb = (const uint32_t *)(const void *)pb;
    for (; j + 2u <= n; j += 2u) {
        const uint32_t *w0 = w + j * words, *w1 = w0 + words;
        int32_t a0 = acca[j], a1 = acca[j + 1u], b0 = accb[j], b1 = accb[j + 1u];
        for (i = 0; i < words; i++) {
            int16x2_t a01 = (int16x2_t)xa[2u * i], a23 = (int16x2_t)xa[2u * i + 1u];
            int16x2_t b01 = (int16x2_t)xb[2u * i], b23 = (int16x2_t)xb[2u * i + 1u];
            uint32_t v = EBNN_READ_U32(&w0[i]);
            int16x2_t e = __sxtb16((int8x4_t)v), o = (int16x2_t)sxtb16_odd(v);
            a0 = __smlad(a23, o, __smlad(a01, e, a0));
            b0 = __smlad(b23, o, __smlad(b01, e, b0));
            v = EBNN_READ_U32(&w1[i]);
            e = __sxtb16((int8x4_t)v);
            o = (int16x2_t)sxtb16_odd(v);
            a1 = __smlad(a23, o, __smlad(a01, e, a1));
            b1 = __smlad(b23, o, __smlad(b01, e, b1));
        }
        acca[j] = a0;
        acca[j + 1u] = a1;
        accb[j] = b0;
        accb[j + 1u] = b1;
    }
    if (j < n) {
        conv_s8_dots(pa, w + j * words, k4, n - j, acca + j);
        conv_s8_dots(pb, w + j * words, k4, n - j, accb + j);
    }
#else
    conv_s8_dots(pa, w, k4, n, acca);
    conv_s8_dots(pb, w, k4, n, accb);
#endif
}

/* What a conv (not depthwise) computes per position: int8 weight rows (w) or binary weights (wn, mag) */
typedef struct {
    const ebnn_window_t *g;
    const int8_t *in;
    int32_t zp, pad_q;
    const uint32_t *w;  /* int8 rows of k4 taps (see conv_s8_patch), or NULL: */
    const uint8_t *wn;  /* binary weights: per output channel, (k4 / 4 + 1) / 2 bytes of sign nibbles */
    const int32_t *mag; /* and the weights' magnitude per output channel */
    const int32_t *bias;
    uint32_t n, k4;
    int16_t *pa, *pb;   /* the two positions' patches */
    uint32_t *tab;      /* binary weights: 16 subset sums per group of four taps */
    uint32_t rows, cols; /* row cache (rows != 0): `rows` input rows of `cols` columns (see conv_s8_row) */
    int32_t *row_of;    /* the input row each cache slot holds */
    int16_t *cache;
} conv_s8_job_t;

/* Row cache: the input rows a conv reads as int16 values v = x - zp (pad_q outside the input), each
 * row `cols` = (out_w - 1) * sw + kw columns from x = -pad_l, in a ring of `rows` slots (input row y in
 * slot y mod rows: the rows one pooled output reads are consecutive and fit). Each input value is then
 * converted once per pooled row instead of once per conv position reading it; a patch is row copies. */
static const int16_t *conv_s8_row(const conv_s8_job_t *jb, int32_t y)
{
    const ebnn_window_t *g = jb->g;
    const int32_t nr = (int32_t)jb->rows;
    const uint32_t slot = (uint32_t)(((y % nr) + nr) % nr), in_c = g->in_c, len = jb->cols * in_c;
    int16_t *r = jb->cache + slot * len;
    if (jb->row_of[slot] != y) {
        uint32_t i = 0, lead = g->pad_l < jb->cols ? g->pad_l : jb->cols, end = 0;
        if (y >= 0 && y < (int32_t)g->in_h) { /* columns [lead, end) are inside the input */
            const int8_t *src = jb->in + (uint32_t)y * g->in_w * in_c;
            end = jb->cols - lead < g->in_w ? jb->cols : lead + g->in_w;
            for (i = lead * in_c; i < end * in_c; i++)
                r[i] = (int16_t)((int32_t)src[i - lead * in_c] - jb->zp);
        }
        for (i = 0; i < lead * in_c && end > 0u; i++) /* padding columns (all of a padding row) */
            r[i] = (int16_t)jb->pad_q;
        for (i = end > 0u ? end * in_c : 0u; i < len; i++)
            r[i] = (int16_t)jb->pad_q;
        jb->row_of[slot] = y;
    }
    return r;
}

/* n int16 values from src to dst */
static void conv_s8_copy16(int16_t *dst, const int16_t *src, uint32_t n)
{
    uint32_t i = 0;
#if EBNN_CONV_S8_SIMD32 /* unaligned 32-bit copies (ARMv7E-M / ARMv8-M Mainline read and write them) */
    for (; i + 2u <= n; i += 2u) {
        uint32_t u;
        memcpy(&u, src + i, 4);
        memcpy(dst + i, &u, 4);
    }
#endif
    for (; i < n; i++)
        dst[i] = src[i];
}

/* The patches of conv positions (oy, ox) into pa and, when `two`, (yx[2], yx[3]) into pb from the row
 * cache (as conv_s8_patch; no all-zero test); two positions on the same conv row share the row reads. */
static void conv_s8_cached_patches(const conv_s8_job_t *jb, const uint32_t *yx, int two)
{
    const ebnn_window_t *g = jb->g;
    const uint32_t row = (uint32_t)g->kw * g->in_c, kh = g->kh, step = (uint32_t)g->sw * g->in_c;
    const uint32_t offa = yx[1] * step, offb = yx[3] * step;
    const int32_t ya = (int32_t)(yx[0] * g->sh) - (int32_t)g->pad_t, yb = (int32_t)(yx[2] * g->sh) - (int32_t)g->pad_t;
    const int same = two && ya == yb;
    uint32_t ky, i;
    for (ky = 0; ky < kh; ky++) {
        const int16_t *ra = conv_s8_row(jb, ya + (int32_t)ky);
        conv_s8_copy16(jb->pa + ky * row, ra + offa, row);
        if (two)
            conv_s8_copy16(jb->pb + ky * row, (same ? ra : conv_s8_row(jb, yb + (int32_t)ky)) + offb, row);
    }
    for (i = kh * row; i < jb->k4; i++) { /* at most 3 taps of zero padding */
        jb->pa[i] = 0;
        jb->pb[i] = 0;
    }
}

/* the 16-bit two's complement value in the low half of x */
static int32_t sext16(uint32_t x)
{
    return (int32_t)((x & 0xFFFFu) ^ 0x8000u) - 0x8000;
}

/* Binary weights: acc = bias[o] + mag[o] * S with S = the sum of the patch values, each with the sign of
 * its weight (bit 1: +). Both positions at once, exactly, in one 32-bit integer u = vA + vB * 2^16 (mod 2^32,
 * the export checks |S| <= 32767 for each): per group of four taps the 16 subset sums P[m] of its
 * values (m: the taps taken), then per output channel the sum of P[its sign nibble] over the groups
 * = the sum of the + values, S = 2 * that - the sum of all values; each position's S is then the
 * 16-bit value in its half. Integer adds and table reads only (no multiply), on every core. */
static void conv_s8_bits_two(const conv_s8_job_t *jb, int two, int32_t *acca, int32_t *accb)
{
    const uint32_t groups = jb->k4 / 4u, bytes = (groups + 1u) / 2u;
    const int16_t *pa = jb->pa, *pb = jb->pb;
    uint32_t gi, o, total = 0, *t = jb->tab;
    for (gi = 0; gi < groups; gi++, t += 16, pa += 4, pb += 4) {
        uint32_t a = (uint32_t)(int32_t)pa[0], b = (uint32_t)(int32_t)pa[1], c = (uint32_t)(int32_t)pa[2],
                 d = (uint32_t)(int32_t)pa[3];
        if (two) {
            a += (uint32_t)(int32_t)pb[0] << 16;
            b += (uint32_t)(int32_t)pb[1] << 16;
            c += (uint32_t)(int32_t)pb[2] << 16;
            d += (uint32_t)(int32_t)pb[3] << 16;
        }
        t[0] = 0u;
        t[1] = a;
        t[2] = b;
        t[3] = a + b;
        t[4] = c;
        t[5] = c + a;
        t[6] = c + b;
        t[7] = c + t[3];
        t[8] = d;
        t[9] = d + a;
        t[10] = d + b;
        t[11] = d + t[3];
        t[12] = d + c;
        t[13] = d + t[5];
        t[14] = d + t[6];
        t[15] = d + t[7];
        total += t[15];
    }
    for (o = 0; o < jb->n; o += 2u) { /* two output channels per pass over the tables */
        const int pair = o + 1u < jb->n;
        const uint8_t *w0 = jb->wn + o * bytes, *w1 = pair ? w0 + bytes : w0;
        const uint32_t *tt = jb->tab;
        uint32_t r0 = 0, r1 = 0, i, k;
        for (i = 0; i + 2u <= groups; i += 2u, tt += 32) {
            uint32_t n0 = EBNN_READ_U8(w0++), n1 = EBNN_READ_U8(w1++);
            r0 += tt[n0 & 15u] + tt[16u + (n0 >> 4)];
            r1 += tt[n1 & 15u] + tt[16u + (n1 >> 4)];
        }
        if (i < groups) {
            r0 += tt[EBNN_READ_U8(w0) & 15u];
            r1 += tt[EBNN_READ_U8(w1) & 15u];
        }
        for (k = 0; k < (pair ? 2u : 1u); k++) {
            uint32_t r = 2u * (k == 0u ? r0 : r1) - total;
            uint32_t m = (uint32_t)EBNN_READ_I32(&jb->mag[o + k]), bias = (uint32_t)EBNN_READ_I32(&jb->bias[o + k]);
            int32_t sa = sext16(r);
            /* bias + mag * S is an accumulator of the reference (within int32): wrapping unsigned arithmetic */
            acca[o + k] = (int32_t)(bias + m * (uint32_t)sa);
            if (two)
                accb[o + k] = (int32_t)(bias + m * (uint32_t)sext16((r - (uint32_t)sa) >> 16));
        }
    }
}

/* The accumulators of conv output A = (ya, xa) into acca and, when `two`, of B = (yb, xb) into accb
 * (patches pa, pb): bias + the dot products (or binary weights' signed sums), skipped for all-zero patches. */
static void conv_s8_two(const conv_s8_job_t *jb, const uint32_t *yx, int two, int32_t *acca, int32_t *accb)
{
    const ebnn_window_t *g = jb->g;
    const int8_t *in = jb->in;
    const int32_t zp = jb->zp, pad_q = jb->pad_q, *bias = jb->bias;
    const uint32_t *w = jb->w, n = jb->n, k4 = jb->k4;
    int16_t *pa = jb->pa, *pb = jb->pb;
    uint32_t j;
    int nza, nzb = 0;
    const uint32_t kh = g->kh, row = (uint32_t)g->kw * g->in_c;
    const int32_t ya = (int32_t)(yx[0] * g->sh) - (int32_t)g->pad_t, xa = (int32_t)(yx[1] * g->sw) - (int32_t)g->pad_l;
    const int32_t yb = (int32_t)(yx[2] * g->sh) - (int32_t)g->pad_t, xb = (int32_t)(yx[3] * g->sw) - (int32_t)g->pad_l;
    for (j = 0; j < n; j++)
        acca[j] = EBNN_READ_I32(&bias[j]);
    if (two)
        for (j = 0; j < n; j++)
            accb[j] = EBNN_READ_I32(&bias[j]);
    if (two && jb->rows == 0u && (!EBNN_CONV_S8_SIMD32 || (row & 3u) != 0u) && ya >= 0 && yb >= 0 && xa >= 0 && xb >= 0 &&
        ya + (int32_t)kh <= (int32_t)g->in_h && yb + (int32_t)kh <= (int32_t)g->in_h &&
        xa + (int32_t)g->kw <= (int32_t)g->in_w && xb + (int32_t)g->kw <= (int32_t)g->in_w) {
        /* both windows inside the input: both patches in one pass, row by row */
        const uint32_t stride = (uint32_t)g->in_w * g->in_c;
        const int8_t *ra = in + (uint32_t)ya * stride + (uint32_t)xa * g->in_c;
        const int8_t *rb = in + (uint32_t)yb * stride + (uint32_t)xb * g->in_c;
        int16_t *qa = pa, *qb = pb;
        int32_t anya = 0, anyb = 0;
        uint32_t ky, c;
        for (ky = 0; ky < kh; ky++, ra += stride, rb += stride) {
            for (c = 0; c < row; c++) {
                int32_t va = (int32_t)ra[c] - zp, vb = (int32_t)rb[c] - zp;
                qa[c] = (int16_t)va;
                qb[c] = (int16_t)vb;
                anya |= va;
                anyb |= vb;
            }
            qa += row;
            qb += row;
        }
        for (c = kh * row; c < k4; c++) { /* at most 3 taps of zero padding */
            pa[c] = 0;
            pb[c] = 0;
        }
        nza = anya != 0;
        nzb = anyb != 0;
    } else if (jb->rows != 0u) {
        conv_s8_cached_patches(jb, yx, two);
        nza = 1;
        nzb = two;
    } else {
        nza = conv_s8_patch(g, in, zp, pad_q, yx[0], yx[1], pa, k4);
        if (two)
            nzb = conv_s8_patch(g, in, zp, pad_q, yx[2], yx[3], pb, k4);
    }
    if (w == NULL) { /* binary weights */
        if (nza || nzb)
            conv_s8_bits_two(jb, two, acca, accb);
    } else if (nza && nzb) {
        conv_s8_dots2(pa, pb, w, k4, n, acca, accb);
    } else if (nza) {
        conv_s8_dots(pa, w, k4, n, acca);
    } else if (nzb) {
        conv_s8_dots(pb, w, k4, n, accb);
    }
}

/* The accumulators of depthwise conv output (oy, ox) into acc[0 .. n_out) (w in (KH, KW, C, per_c)
 * order, tap by tap). */
static void conv_s8_at(const ebnn_window_t *g, const int8_t *in, int32_t zp, int32_t pad_q, const int8_t *w,
                       const int32_t *bias, uint32_t per_c, uint32_t n_out, uint32_t oy, uint32_t ox, int32_t *acc)
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
        /* the stage in locals: the int8 stores could otherwise alias q's fields and force reloads */
        int8_t *o8 = (int8_t *)out + pos * n_out;
        const int32_t *m = q->m, *offset = q->offset, zp_out = q->zp_out, lo = q->lo, hi = q->hi;
        const int8_t *shift = q->shift;
        for (j = 0; j < n_out; j++) {
            int32_t v = ebnn_mbqm(r[j], EBNN_READ_I32(&m[j]), (int32_t)EBNN_READ_S8(&shift[j]));
            o8[j] = (int8_t)ebnn_clamp64((int64_t)zp_out + EBNN_READ_I32(&offset[j]) + v, lo, hi);
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

/* best[j] = the pool of best[j] and a[j]: the maximum, or the minimum where channel j's requantization
 * multiplier is negative (any_neg: some is) */
static void pool_merge_s8(int32_t *best, const int32_t *a, uint32_t n, const ebnn_qout_t *q, int any_neg)
{
    uint32_t j;
    if (!any_neg) {
        for (j = 0; j < n; j++)
            best[j] = a[j] > best[j] ? a[j] : best[j];
        return;
    }
    for (j = 0; j < n; j++) {
        int neg = EBNN_READ_I32(&q->m[j]) < 0;
        if (neg ? a[j] < best[j] : a[j] > best[j])
            best[j] = a[j];
    }
}

/* w: depthwise weights; w32: conv weights as int8 rows; wn, mag: conv weights as bits (binary weights) */
static int window_s8(const ebnn_window_t *gp, const ebnn_window_t *pp, const int8_t *in, int32_t zp, int32_t pad_q,
                     const int8_t *w, const uint32_t *w32, const uint8_t *wn, const int32_t *mag,
                     const int32_t *bias, uint16_t per_c, int kind, const ebnn_qout_t *q, void *out, uint16_t rows,
                     int32_t *scratch)
{
    ebnn_window_t g, p;
    ebnn_bit_writer_t bw;
    conv_s8_job_t jb;
    uint32_t py, px, j, n_out;
    int32_t *acc, *acc2, *best;
    int any_neg = 0, conv = w32 != NULL || wn != NULL;
    if (gp == NULL || in == NULL || (w == NULL && !conv) || (wn != NULL && mag == NULL) || bias == NULL ||
        out == NULL || (scratch == NULL && (pp != NULL || kind != EBNN_QOUT_I32 || conv)) ||
        (kind != EBNN_QOUT_I32 && q == NULL))
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
    n_out = conv ? per_c : (uint32_t)g.in_c * per_c; /* depthwise: channel c * per_c + m */
    /* scratch: acc, acc2 (the second position of a pair), best (with a pool), the conv's two patches,
     * binary weights' subset sums */
    acc = scratch;
    acc2 = scratch == NULL ? NULL : scratch + n_out;
    best = pp != NULL ? scratch + 2u * n_out : NULL;
    jb.g = &g;
    jb.in = in;
    jb.zp = zp;
    jb.pad_q = pad_q;
    jb.w = w32;
    jb.wn = wn;
    jb.mag = mag;
    jb.bias = bias;
    jb.n = n_out;
    jb.k4 = conv ? ((uint32_t)g.kh * g.kw * g.in_c + 3u) & ~3u : 0u;
    jb.pa = jb.pb = NULL;
    jb.tab = NULL;
    jb.rows = jb.cols = 0u;
    jb.row_of = NULL;
    jb.cache = NULL;
    if (conv) {
        jb.pa = (int16_t *)(void *)(scratch + n_out * (pp != NULL ? 3u : 2u));
        jb.pb = jb.pa + jb.k4;
        jb.tab = (uint32_t *)(void *)(jb.pb + jb.k4);
        jb.rows = rows;
        jb.cols = (uint32_t)(g.out_w - 1u) * g.sw + g.kw;
        jb.row_of = (int32_t *)(void *)(jb.tab + (wn != NULL ? 4u * jb.k4 : 0u));
        jb.cache = (int16_t *)(void *)(jb.row_of + rows);
        for (j = 0; j < rows; j++)
            jb.row_of[j] = INT32_MIN; /* empty */
    }
    ebnn_bw_init(&bw, (uint32_t *)out); /* used for EBNN_QOUT_BITS only (writes nothing here) */
    if (kind == EBNN_QOUT_S8 && pp != NULL) /* a negative multiplier pools the minimum */
        for (j = 0; j < n_out; j++)
            any_neg |= EBNN_READ_I32(&q->m[j]) < 0;
    if (conv && pp == NULL) { /* conv, no pool: output positions two at a time */
        uint32_t pos, n_pos = (uint32_t)g.out_h * g.out_w, yx[4];
        for (pos = 0; pos < n_pos; pos += 2u) {
            int two = pos + 1u < n_pos;
            int32_t *a = kind == EBNN_QOUT_I32 ? (int32_t *)out + pos * n_out : acc;
            int32_t *b = kind == EBNN_QOUT_I32 ? a + n_out : acc2;
            yx[0] = pos / g.out_w;
            yx[1] = pos % g.out_w;
            yx[2] = (pos + 1u) / g.out_w;
            yx[3] = (pos + 1u) % g.out_w;
            conv_s8_two(&jb, yx, two, a, b);
            if (kind != EBNN_QOUT_I32) {
                conv_s8_out(kind, q, a, n_out, pos, out, &bw);
                if (two)
                    conv_s8_out(kind, q, b, n_out, pos + 1u, out, &bw);
            }
        }
        if (kind == EBNN_QOUT_BITS)
            ebnn_bw_flush(&bw);
        return EBNN_OK;
    }
    for (py = 0; py < p.out_h; py++) {
        for (px = 0; px < p.out_w; px++) {
            uint32_t pos = py * p.out_w + px, yx[4];
            int32_t y0 = (int32_t)(py * p.sh) - (int32_t)p.pad_t, x0 = (int32_t)(px * p.sw) - (int32_t)p.pad_l, y, x;
            int first = 1, have = 0;
            if (pp == NULL && kind == EBNN_QOUT_I32) { /* plain depthwise conv: accumulate in the output */
                conv_s8_at(&g, in, zp, pad_q, w, bias, per_c, n_out, py, px, (int32_t *)out + pos * n_out);
                continue;
            }
            for (y = y0 < 0 ? 0 : y0; y < y0 + (int32_t)p.kh && y < (int32_t)g.out_h; y++) {
                for (x = x0 < 0 ? 0 : x0; x < x0 + (int32_t)p.kw && x < (int32_t)g.out_w; x++) {
                    if (conv) { /* conv: the pool window's positions two at a time */
                        yx[2u * (uint32_t)have] = (uint32_t)y;
                        yx[2u * (uint32_t)have + 1u] = (uint32_t)x;
                        if (!have) {
                            have = 1;
                            continue;
                        }
                        conv_s8_two(&jb, yx, 1, first ? best : acc, acc2);
                        if (!first)
                            pool_merge_s8(best, acc, n_out, q, any_neg);
                        pool_merge_s8(best, acc2, n_out, q, any_neg);
                        first = have = 0;
                        continue;
                    }
                    /* the first conv output of a pool window goes straight into best */
                    conv_s8_at(&g, in, zp, pad_q, w, bias, per_c, n_out, (uint32_t)y, (uint32_t)x,
                               (best != NULL && first) ? best : acc);
                    if (best != NULL && !first)
                        pool_merge_s8(best, acc, n_out, q, any_neg);
                    first = 0;
                }
            }
            if (have) { /* the last position of an odd count */
                conv_s8_two(&jb, yx, 0, first ? best : acc, acc2);
                if (!first)
                    pool_merge_s8(best, acc, n_out, q, any_neg);
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
                          const ebnn_qout_t *q, void *out, uint16_t rows, int32_t *scratch)
{
    return w == NULL ? EBNN_ERROR_ARGUMENT
                     : window_s8(g, pool, in, zp, pad_q, NULL, w, NULL, NULL, bias, out_c, kind, q, out, rows, scratch);
}

EBNN_API int ebnn_depthwise_s8(const ebnn_window_t *g, const ebnn_window_t *pool, const int8_t *in, int32_t zp,
                               int32_t pad_q, const int8_t *w, const int32_t *bias, uint16_t mult, int kind,
                               const ebnn_qout_t *q, void *out, int32_t *scratch)
{
    return w == NULL ? EBNN_ERROR_ARGUMENT
                     : window_s8(g, pool, in, zp, pad_q, w, NULL, NULL, NULL, bias, mult, kind, q, out, 0u, scratch);
}

EBNN_API int ebnn_conv_s8_bits(const ebnn_window_t *g, const ebnn_window_t *pool, const int8_t *in, int32_t zp,
                               int32_t pad_q, const uint8_t *w, const int32_t *mag, const int32_t *bias, uint16_t out_c,
                               int kind, const ebnn_qout_t *q, void *out, uint16_t rows, int32_t *scratch)
{
    return w == NULL ? EBNN_ERROR_ARGUMENT
                     : window_s8(g, pool, in, zp, pad_q, NULL, NULL, w, mag, bias, out_c, kind, q, out, rows, scratch);
}
