/* ebnn_conv_pool_f32.c - graph op "conv_pool": full-precision conv -> affine / activation -> pool ->
 * affine / activation -> (sign | threshold), computed per pooled output (eBNN's reordering).
 *
 * Semantics: keras_ebnn/passes/graph_fuse.py, defined by keras_ebnn/ir/graph_reference.py (the fused op's
 * sub-ops run one after the other). For each pooled output position, the pool window's in-bounds
 * conv positions are visited in row-major order; each conv position's out_c accumulators are computed
 * as ebnn_conv_f32 does (acc = 0.0f; acc = acc + v * w over the taps in (ky, kx, c) order, padded taps
 * read pad_value, each product rounded to float32 before the add, never a fused multiply-add), the
 * "pre" steps are applied to them (affine as ebnn_affine_f32, ebnn_activation_f32), and they are
 * folded into the pool (max: numpy.maximum in tap order, a NaN propagates; average: s = s + x in tap
 * order, then s / (float)count); then the "post" steps and the output: float32, or bits (x >= 0, or
 * the threshold op's (flip ? -x : x) >= t[c]). So the results are the unfused ops' bit for bit, and
 * the conv's full-resolution map is never stored.
 *
 * Weights: float32 or int8 (float_weights="int8", converted exactly) in storage order (KH, KW, C,
 * out_c); or binary (+-1: acc + v or acc - v, the float32 result of acc + v * (+-1.0f)) as bytes:
 * byte (tap t, block b) = the bits of outputs 8b .. 8b + 7 (bit i set: +1), ceil(out_c / 8) bytes
 * per tap. Scratch: out_c accumulators, out_c pooled values and one kernel row of taps (KW * C floats).
 *
 * Input: float32 (in_ring: see below), or the raw uint8 model input read through its absorbed to_float
 * (and scalar affine: a Rescaling) ops, converted per tap read (EBNN_CP_IN_U8 / EBNN_CP_IN_U8_AFFINE):
 * the float copy of the input is never stored.
 * Rows: the call computes output rows [row0, row1). in_ring > 0: the input is a ring of in_ring rows
 * (input row y in slot y % in_ring, the rows of a streamed producer); out_ring > 0 (float32 output
 * only): output row y is written to slot y % out_ring. Bit outputs are cleared when row0 == 0 (the
 * whole output, unused bits of the last word included) and their bits set row by row.
 * ebnn_conv_pool_need(p, row) is the number of input rows (0 .. row_max) that output row `row` reads:
 * a streamed producer must have computed that many rows first.
 * Steps (steps[n_pre + n_post], data in sd, consumed in order): EBNN_CP_AFFINE (a[out_c], b[out_c]),
 * EBNN_CP_AFFINE1 (a, b), EBNN_ACT_* (EBNN_ACT_LEAKY_RELU: alpha). Uses ebnn_elementwise.c. */

#include "ebnn_internal.h"

/* The product of a tap value and a weight, rounded to float32 before it is added: GCC is told not to
 * contract (optimize attribute: it overrides -ffp-contract=fast); other compilers (clang ignores its
 * fp contract pragma under -ffp-contract=fast) get a volatile product. */
#include <float.h>
#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD != 0
/* float expressions evaluated in a wider format (x87): every product and sum goes through a volatile
 * float, which rounds it to float32 as the reference does */
#define CP_PRODUCT volatile float
#define CP_NO_CONTRACT
#define CP_STORE(a, expr)                                                                              \
    do {                                                                                               \
        volatile float rounded_ = (expr);                                                              \
        (a) = rounded_;                                                                                \
    } while (0)
#elif defined(__GNUC__) && !defined(__clang__)
#define CP_PRODUCT float
#define CP_NO_CONTRACT __attribute__((optimize("fp-contract=off")))
#else
#define CP_PRODUCT volatile float
#define CP_NO_CONTRACT
#endif
#ifndef CP_STORE
#define CP_STORE(a, expr) ((a) = (expr))
#endif

/* Weight (tap t, output j) of float / int8 weights as a float (storage order (taps, out_c)). */
static float cp_weight(const void *w, uint8_t kind, uint32_t k)
{
    return kind == EBNN_CP_W_F32 ? EBNN_READ_F32((const float *)w + k)
                                 : (float)(int8_t)EBNN_READ_U8((const uint8_t *)w + k);
}

/* One accumulator step: a = a + v * w, the product rounded first. */
#define CP_MAC(a, v, w)                                                                                 \
    do {                                                                                               \
        CP_PRODUCT product_ = (v) * (w);                                                               \
        CP_STORE(a, (a) + product_);                                                                   \
    } while (0)
/* Binary weight: a + v for bit set (+1), a - v otherwise (= a + v * -1.0f). */
#define CP_ADD_SUB(a, v, bit) CP_STORE(a, (bit) ? (a) + (v) : (a) - (v))

/* Accumulators acc[0 .. 7] (held in registers) over `taps` consecutive taps: float32 weights. */
static CP_NO_CONTRACT void cp_block8_f32(const float *patch, uint32_t taps, const float *w, uint32_t out_c,
                                         float *acc)
{
    float a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3], a4 = acc[4], a5 = acc[5], a6 = acc[6], a7 = acc[7];
    uint32_t t;
    for (t = 0; t < taps; t++, w += out_c) {
        float v = patch[t];
        CP_MAC(a0, v, EBNN_READ_F32(&w[0]));
        CP_MAC(a1, v, EBNN_READ_F32(&w[1]));
        CP_MAC(a2, v, EBNN_READ_F32(&w[2]));
        CP_MAC(a3, v, EBNN_READ_F32(&w[3]));
        CP_MAC(a4, v, EBNN_READ_F32(&w[4]));
        CP_MAC(a5, v, EBNN_READ_F32(&w[5]));
        CP_MAC(a6, v, EBNN_READ_F32(&w[6]));
        CP_MAC(a7, v, EBNN_READ_F32(&w[7]));
    }
    acc[0] = a0, acc[1] = a1, acc[2] = a2, acc[3] = a3, acc[4] = a4, acc[5] = a5, acc[6] = a6, acc[7] = a7;
}

/* The same for binary weights: one byte per tap (bit i: output j0 + i is +1), nblk bytes apart. */
static void cp_block8_bits(const float *patch, uint32_t taps, const uint8_t *w, uint32_t nblk, float *acc)
{
    float a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3], a4 = acc[4], a5 = acc[5], a6 = acc[6], a7 = acc[7];
    uint32_t t;
    for (t = 0; t < taps; t++, w += nblk) {
        float v = patch[t];
        uint32_t b = EBNN_READ_U8(w);
        CP_ADD_SUB(a0, v, b & 1u);
        CP_ADD_SUB(a1, v, b & 2u);
        CP_ADD_SUB(a2, v, b & 4u);
        CP_ADD_SUB(a3, v, b & 8u);
        CP_ADD_SUB(a4, v, b & 16u);
        CP_ADD_SUB(a5, v, b & 32u);
        CP_ADD_SUB(a6, v, b & 64u);
        CP_ADD_SUB(a7, v, b & 128u);
    }
    acc[0] = a0, acc[1] = a1, acc[2] = a2, acc[3] = a3, acc[4] = a4, acc[5] = a5, acc[6] = a6, acc[7] = a7;
}

/* Adds `taps` consecutive taps v[0 .. taps - 1] (tap index t0 onwards) to the out_c accumulators:
 * outputs in blocks of 8 held in registers, a last partial block (out_c % 8) one output at a time.
 * Each accumulator sums its own taps in order either way, so the blocking changes no result. */
static CP_NO_CONTRACT void cp_taps(const ebnn_conv_pool_t *p, const float *v, uint32_t taps, uint32_t t0,
                                   const void *w, float *acc)
{
    uint32_t j0, j, t, out_c = p->out_c, nblk = (out_c + 7u) >> 3;
    for (j0 = 0; j0 + 8u <= out_c; j0 += 8u) {
        if (p->weights == EBNN_CP_W_BITS)
            cp_block8_bits(v, taps, (const uint8_t *)w + t0 * nblk + (j0 >> 3), nblk, acc + j0);
        else if (p->weights == EBNN_CP_W_F32)
            cp_block8_f32(v, taps, (const float *)w + t0 * out_c + j0, out_c, acc + j0);
        else
            for (j = j0; j < j0 + 8u; j++) /* int8 weights: one output at a time */
                for (t = 0; t < taps; t++)
                    CP_MAC(acc[j], v[t], cp_weight(w, p->weights, (t0 + t) * out_c + j));
    }
    for (j = j0; j < out_c; j++) {
        for (t = 0; t < taps; t++) {
            if (p->weights == EBNN_CP_W_BITS) {
                uint32_t b = EBNN_READ_U8((const uint8_t *)w + (t0 + t) * nblk + (j >> 3));
                CP_ADD_SUB(acc[j], v[t], (b >> (j & 7u)) & 1u);
            } else {
                CP_MAC(acc[j], v[t], cp_weight(w, p->weights, (t0 + t) * out_c + j));
            }
        }
    }
}

/* Input value i of a uint8 input (p->input != EBNN_CP_IN_F32): float32(v), then v * in_a + in_b
 * (two rounded operations) for EBNN_CP_IN_U8_AFFINE, as the absorbed to_float and affine ops. */
static CP_NO_CONTRACT float cp_u8(const ebnn_conv_pool_t *p, const uint8_t *in, uint32_t i)
{
    float v = (float)in[i];
    if (p->input == EBNN_CP_IN_U8_AFFINE) {
        CP_PRODUCT product = v * p->in_a;
        CP_STORE(v, product + p->in_b);
    }
    return v;
}

/* The out_c accumulators of conv position (cy, cx) into acc, one kernel row (KW * C consecutive taps)
 * at a time: read in place when the row lies inside a float input, else gathered into `patch` (padded
 * taps worth pad_value; a uint8 input's values converted). */
static void cp_conv_at(const ebnn_conv_pool_t *p, const void *in_any, const void *w, uint32_t cy, uint32_t cx,
                       uint16_t in_ring, float *patch, float *acc)
{
    const float *in = (const float *)in_any;
    const ebnn_window_t *g = &p->conv;
    uint32_t ky, kx, c, j, run = (uint32_t)g->kw * g->in_c;
    int32_t x0 = (int32_t)(cx * g->sw) - (int32_t)g->pad_l;
    int inside_x = x0 >= 0 && x0 + (int32_t)g->kw <= (int32_t)g->in_w;
    for (j = 0; j < p->out_c; j++)
        acc[j] = 0.0f;
    for (ky = 0; ky < g->kh; ky++) {
        int32_t y = (int32_t)(cy * g->sh + ky) - (int32_t)g->pad_t;
        int row_in = y >= 0 && y < (int32_t)g->in_h;
        const float *row = row_in ? in + (uint32_t)(in_ring ? (uint32_t)y % in_ring : (uint32_t)y) * g->in_w * g->in_c
                                  : in;
        const float *v = patch;
        if (p->input != EBNN_CP_IN_F32) {
            uint32_t at = (uint32_t)(row_in ? y : 0) * g->in_w * g->in_c;
            float *dst = patch;
            for (kx = 0; kx < g->kw; kx++) {
                int32_t x = x0 + (int32_t)kx;
                int in_x = row_in && x >= 0 && x < (int32_t)g->in_w;
                for (c = 0; c < g->in_c; c++)
                    *dst++ = in_x ? cp_u8(p, (const uint8_t *)in_any, at + (uint32_t)x * g->in_c + c) : p->pad_value;
            }
        } else if (row_in && inside_x) {
            v = row + (uint32_t)x0 * g->in_c;
        } else {
            float *dst = patch;
            for (kx = 0; kx < g->kw; kx++) {
                int32_t x = x0 + (int32_t)kx;
                int in_x = row_in && x >= 0 && x < (int32_t)g->in_w;
                for (c = 0; c < g->in_c; c++)
                    *dst++ = in_x ? row[(uint32_t)x * g->in_c + c] : p->pad_value;
            }
        }
        cp_taps(p, v, run, ky * run, w, acc);
    }
}

/* Applies n steps to x[out_c] in place; *sd advances over their data. An affine step is
 * x = x * a + b, the product rounded first (as ebnn_affine_f32); activations call ebnn_activation_f32. */
static CP_NO_CONTRACT int cp_steps(const uint8_t *steps, uint32_t n, const float **sd, uint16_t out_c, float *x)
{
    uint32_t i, j;
    int status = EBNN_OK;
    for (i = 0; i < n && status == EBNN_OK; i++) {
        uint8_t s = EBNN_READ_U8(&steps[i]);
        if (s == EBNN_CP_AFFINE || s == EBNN_CP_AFFINE1) {
            const float *a = *sd, *b = *sd + (s == EBNN_CP_AFFINE ? out_c : 1u);
            uint32_t step = s == EBNN_CP_AFFINE ? 1u : 0u;
            for (j = 0; j < out_c; j++) {
                CP_PRODUCT product = x[j] * EBNN_READ_F32(&a[j * step]);
                x[j] = product + EBNN_READ_F32(&b[j * step]);
            }
            *sd += s == EBNN_CP_AFFINE ? 2u * out_c : 2u;
        } else {
            float alpha = 0.0f;
            if (s == EBNN_ACT_LEAKY_RELU)
                alpha = EBNN_READ_F32((*sd)++);
            status = ebnn_activation_f32(out_c, s, alpha, x, x);
        }
    }
    return status;
}

/* Data floats the first n steps consume. */
static uint32_t cp_steps_data(const uint8_t *steps, uint32_t n, uint16_t out_c)
{
    uint32_t i, m = 0;
    for (i = 0; i < n; i++) {
        uint8_t s = EBNN_READ_U8(&steps[i]);
        m += s == EBNN_CP_AFFINE ? 2u * out_c : s == EBNN_CP_AFFINE1 ? 2u : s == EBNN_ACT_LEAKY_RELU ? 1u : 0u;
    }
    return m;
}

/* [lo, hi) of the conv positions window i of the pool covers (clipped to the conv output). */
static void cp_clip(uint32_t i, uint16_t stride, uint16_t pad, uint16_t k, uint16_t size, uint32_t *lo, uint32_t *hi)
{
    int32_t s = (int32_t)(i * stride) - (int32_t)pad, e = s + (int32_t)k;
    *lo = s < 0 ? 0u : (uint32_t)s;
    *hi = e > (int32_t)size ? size : (e < 0 ? 0u : (uint32_t)e);
}

EBNN_API int ebnn_conv_pool_f32(const ebnn_conv_pool_t *pp, const void *in, const void *w, const uint8_t *steps,
                                const float *sd, const float *t, const uint32_t *flip, void *out, uint16_t row0,
                                uint16_t row1, uint16_t in_ring, uint16_t out_ring, float *scratch)
{
    ebnn_conv_pool_t p;
    const ebnn_window_t *q;
    float *acc, *pv, *patch;
    uint32_t py, px, i, lo, hi, post_data;
    int status;
    if (pp == NULL || in == NULL || w == NULL || out == NULL || scratch == NULL || (steps == NULL && sd != NULL))
        return EBNN_ERROR_ARGUMENT;
    EBNN_COPY_CONST(&p, pp, sizeof(p));
    q = &p.pool;
    if (row0 > row1 || row1 > q->out_h || p.weights > EBNN_CP_W_BITS || p.pool_kind > EBNN_CP_AVG ||
        p.input > EBNN_CP_IN_U8_AFFINE || (in_ring != 0u && p.input != EBNN_CP_IN_F32) ||
        p.output > EBNN_CP_OUT_THRESHOLD || (out_ring != 0u && p.output != EBNN_CP_OUT_F32) ||
        (p.n_pre + p.n_post != 0u && steps == NULL) ||
        (p.output == EBNN_CP_OUT_THRESHOLD && (t == NULL || flip == NULL)))
        return EBNN_ERROR_ARGUMENT;
    for (i = 0; i < q->out_h; i++) { /* every pool window has an in-bounds conv position */
        cp_clip(i, q->sh, q->pad_t, q->kh, q->in_h, &lo, &hi);
        if (lo >= hi)
            return EBNN_ERROR_ARGUMENT;
    }
    for (i = 0; i < q->out_w; i++) {
        cp_clip(i, q->sw, q->pad_l, q->kw, q->in_w, &lo, &hi);
        if (lo >= hi)
            return EBNN_ERROR_ARGUMENT;
    }
    post_data = p.n_pre != 0u ? cp_steps_data(steps, p.n_pre, p.out_c) : 0u;
    acc = scratch;
    pv = scratch + p.out_c;
    patch = scratch + 2u * p.out_c; /* one kernel row of taps (KW * C) */
    if (p.output != EBNN_CP_OUT_F32 && row0 == 0u) {
        uint32_t n = EBNN_WORDS((uint32_t)q->out_h * q->out_w * p.out_c);
        for (i = 0; i < n; i++)
            ((uint32_t *)out)[i] = 0u;
    }
    for (py = row0; py < row1; py++) {
        uint32_t y0, y1;
        cp_clip(py, q->sh, q->pad_t, q->kh, q->in_h, &y0, &y1);
        for (px = 0; px < q->out_w; px++) {
            uint32_t x0, x1, cy, cx, j, first = 1u;
            const float *data;
            cp_clip(px, q->sw, q->pad_l, q->kw, q->in_w, &x0, &x1);
            for (cy = y0; cy < y1; cy++)
                for (cx = x0; cx < x1; cx++, first = 0u) {
                    cp_conv_at(&p, in, w, cy, cx, in_ring, patch, acc);
                    data = sd;
                    status = cp_steps(steps, p.n_pre, &data, p.out_c, acc);
                    if (status != EBNN_OK)
                        return status;
                    for (j = 0; j < p.out_c; j++) {
                        float m = pv[j], v = acc[j];
                        if (p.pool_kind == EBNN_CP_AVG)
                            pv[j] = (first ? 0.0f : m) + v;
                        else if (first || !(m > v || m != m)) /* numpy.maximum(m, v) */
                            pv[j] = v;
                    }
                }
            if (p.pool_kind == EBNN_CP_AVG) {
                float count = (float)((y1 - y0) * (x1 - x0)); /* exact below 2^24 */
                for (j = 0; j < p.out_c; j++)
                    pv[j] = pv[j] / count;
            }
            data = sd + post_data;
            status = cp_steps(steps + p.n_pre, p.n_post, &data, p.out_c, pv);
            if (status != EBNN_OK)
                return status;
            if (p.output == EBNN_CP_OUT_F32) {
                uint32_t row = out_ring != 0u ? py % out_ring : py;
                float *dst = (float *)out + ((uint32_t)row * q->out_w + px) * p.out_c;
                for (j = 0; j < p.out_c; j++)
                    dst[j] = pv[j];
            } else {
                uint32_t *bits = (uint32_t *)out;
                uint32_t at = (py * q->out_w + px) * p.out_c;
                for (j = 0; j < p.out_c; j++, at++) {
                    float x = pv[j];
                    uint32_t bit;
                    if (p.output == EBNN_CP_OUT_SIGN) {
                        bit = x >= 0.0f;
                    } else {
                        if ((EBNN_READ_U32(&flip[j >> 5]) >> (j & 31u)) & 1u)
                            x = -x;
                        bit = x >= EBNN_READ_F32(&t[j]);
                    }
                    bits[at >> 5] |= bit << (at & 31u);
                }
            }
        }
    }
    return EBNN_OK;
}

EBNN_API uint32_t ebnn_conv_pool_need(const ebnn_conv_pool_t *pp, uint32_t row)
{
    ebnn_conv_pool_t p;
    uint32_t lo, hi;
    int32_t last;
    EBNN_COPY_CONST(&p, pp, sizeof(p));
    cp_clip(row, p.pool.sh, p.pool.pad_t, p.pool.kh, p.pool.in_h, &lo, &hi);
    if (lo >= hi)
        return 0u;
    last = (int32_t)((hi - 1u) * p.conv.sh + p.conv.kh) - (int32_t)p.conv.pad_t; /* rows below `last` */
    if (last < 0)
        return 0u;
    return (uint32_t)last > p.conv.in_h ? p.conv.in_h : (uint32_t)last;
}
