/* ebnn_kernels.c - fused eBNN kernels (see ebnn.h for layouts and keras_ebnn/blocks.py for the exact
 * semantics, which keras_ebnn/reference.py implements in NumPy: these kernels match it bit for bit). */
#include <string.h>

#include "ebnn.h"

#define GROUP 32 /* filters per weight word in the input convolution's tap-major layout */
/* Filters accumulated at once by the input convolution (a divisor of 32): its stack holds two
 * arrays of this many accumulators. Small on AVR, where RAM is 2 KB. */
#ifndef EBNN_INPUT_CONV_BATCH
#if defined(__AVR__)
#define EBNN_INPUT_CONV_BATCH 8
#else
#define EBNN_INPUT_CONV_BATCH 32
#endif
#endif

/* ---- bits ------------------------------------------------------------------------------------ */
#if EBNN_POPCOUNT == EBNN_POPCOUNT_TABLE
static const uint8_t popcount_table[256] EBNN_CONST = {
#define B2(n) n, n + 1, n + 1, n + 2
#define B4(n) B2(n), B2(n + 1), B2(n + 1), B2(n + 2)
#define B6(n) B4(n), B4(n + 1), B4(n + 1), B4(n + 2)
    B6(0), B6(1), B6(1), B6(2)
#undef B2
#undef B4
#undef B6
};
#endif

uint32_t ebnn_popcount32(uint32_t x)
{
#if EBNN_POPCOUNT == EBNN_POPCOUNT_BUILTIN
    return (uint32_t)__builtin_popcountl((unsigned long)x);
#elif EBNN_POPCOUNT == EBNN_POPCOUNT_TABLE
    return (uint32_t)EBNN_READ_U8(&popcount_table[x & 0xffu]) + EBNN_READ_U8(&popcount_table[(x >> 8) & 0xffu]) +
           EBNN_READ_U8(&popcount_table[(x >> 16) & 0xffu]) + EBNN_READ_U8(&popcount_table[x >> 24]);
#else
    x = x - ((x >> 1) & 0x55555555u);
    x = (x & 0x33333333u) + ((x >> 2) & 0x33333333u);
    x = (x + (x >> 4)) & 0x0f0f0f0fu;
    return (x * 0x01010101u) >> 24;
#endif
}

/* 32 bits starting at bit `bit` of a RAM bitstream (reads one word ahead: buffers have a guard word). */
static uint32_t get32(const uint32_t *p, uint32_t bit)
{
    uint32_t w = bit >> 5, s = bit & 31u;
    uint32_t v = p[w] >> s;
    if (s != 0u)
        v |= p[w + 1u] << (32u - s);
    return v;
}

/* Same for a constant (flash) bitstream. */
static uint32_t get32_const(const uint32_t *p, uint32_t bit)
{
    uint32_t w = bit >> 5, s = bit & 31u;
    uint32_t v = EBNN_READ_U32(&p[w]) >> s;
    if (s != 0u)
        v |= EBNN_READ_U32(&p[w + 1u]) << (32u - s);
    return v;
}

uint32_t ebnn_xor_popcount(const uint32_t *a, uint32_t abit, const uint32_t *w, uint32_t wbit, uint32_t n)
{
    uint32_t count = 0;
    if (((abit | wbit) & 31u) == 0u) { /* both word-aligned: whole words */
        const uint32_t *pa = a + (abit >> 5), *pw = w + (wbit >> 5);
        for (; n >= 32u; n -= 32u)
            count += ebnn_popcount32(*pa++ ^ EBNN_READ_U32(pw++));
        if (n != 0u)
            count += ebnn_popcount32((*pa ^ EBNN_READ_U32(pw)) & ((1uL << n) - 1u));
        return count;
    }
    for (; n >= 32u; n -= 32u, abit += 32u, wbit += 32u)
        count += ebnn_popcount32(get32(a, abit) ^ get32_const(w, wbit));
    if (n != 0u)
        count += ebnn_popcount32((get32(a, abit) ^ get32_const(w, wbit)) & ((1uL << n) - 1u));
    return count;
}

uint32_t ebnn_const_popcount(const uint32_t *w, uint32_t wbit, uint32_t n)
{
    uint32_t count = 0;
    for (; n >= 32u; n -= 32u, wbit += 32u)
        count += ebnn_popcount32(get32_const(w, wbit));
    if (n != 0u)
        count += ebnn_popcount32(get32_const(w, wbit) & ((1uL << n) - 1u));
    return count;
}

/* Writes output bits one after the other (bit index increasing by one each time). */
typedef struct {
    uint32_t *out;
    uint32_t word;
    uint8_t fill;
} bit_writer_t;

static void put_bit(bit_writer_t *bw, uint32_t bit)
{
    bw->word |= bit << bw->fill;
    if (++bw->fill == 32u) {
        *bw->out++ = bw->word;
        bw->word = 0;
        bw->fill = 0;
    }
}

static void flush_bits(bit_writer_t *bw)
{
    *bw->out++ = bw->word; /* last partial word, then the zeroed guard word */
    if (bw->fill != 0u)
        *bw->out = 0;
}

static void load_params(ebnn_conv_params_t *dst, const ebnn_conv_params_t *src)
{
    EBNN_COPY_CONST(dst, src, sizeof(*dst));
}

/* Valid range [lo, hi) of kernel taps along one axis for output position `pos`. */
static void tap_range(int32_t start, uint16_t k, uint16_t size, uint16_t *lo, uint16_t *hi)
{
    int32_t a = start < 0 ? -start : 0;
    int32_t b = (int32_t)size - start;
    *lo = (uint16_t)a;
    *hi = (uint16_t)(b < (int32_t)k ? (b < a ? a : b) : (int32_t)k);
}

/* ---- input convolution, integer accumulator ------------------------------------------------- */
/* Input value at tap (iy, ix, c), as the accumulator sees it. */
static int32_t input_value_u8(const ebnn_conv_params_t *p, uint8_t v)
{
    if (p->input_mode == EBNN_INPUT_SIGN_UINT8)
        return (int16_t)v >= p->sign_threshold_u8 ? 1 : -1;
    return (int32_t)p->q_mul * v + p->q_add;
}

static int32_t input_value_f32(const ebnn_conv_params_t *p, float v)
{
    return v >= p->sign_threshold_f ? 1 : -1;
}

/* acc[o] for one convolution position, all filters of one group, integer inputs. */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static void conv_position_int(const ebnn_conv_params_t *p, const uint8_t *in_u8, const float *in_f32,
                              const uint32_t *weights, uint32_t groups, uint32_t g, uint8_t shift,
                              uint16_t n_o, int32_t cy, int32_t cx, int32_t *acc)
{
    int32_t pad = p->input_mode == EBNN_INPUT_UINT8 ? p->pad_q : 1;
    uint16_t ky, kx, c, o;
    for (o = 0; o < n_o; o++)
        acc[o] = 0;
    for (ky = 0; ky < p->kh; ky++) {
        int32_t iy = cy * p->sh - p->pad_t + ky;
        for (kx = 0; kx < p->kw; kx++) {
            int32_t ix = cx * p->sw - p->pad_l + kx;
            int inside = iy >= 0 && iy < p->in_h && ix >= 0 && ix < p->in_w;
            uint32_t base = inside ? ((uint32_t)iy * p->in_w + (uint32_t)ix) * p->in_c : 0u;
            uint32_t tap = ((uint32_t)ky * p->kw + kx) * p->in_c;
            if (!inside && p->pad_value == 0u)
                continue; /* zero padding: the tap adds nothing */
            for (c = 0; c < p->in_c; c++) {
                int32_t v;
                uint32_t mask = EBNN_READ_U32(&weights[(tap + c) * groups + g]) >> shift;
                if (!inside)
                    v = pad;
                else if (in_u8 != NULL)
                    v = input_value_u8(p, in_u8[base + c]);
                else
                    v = input_value_f32(p, in_f32[base + c]);
                for (o = 0; o < n_o; o++, mask >>= 1)
                    acc[o] += (mask & 1u) ? v : -v;
            }
        }
    }
}

/* Integer input convolution, filter-major weights: the window's values are gathered once per
 * convolution position and shared by all filters; each filter then sums the values where its
 * weight is +1 (P), and acc = 2 * P - (sum of the window). */
typedef int16_t ebnn_win_t; /* the generator uses this path only when input values fit int16 */

static int32_t window_sum(const ebnn_win_t *win, const uint32_t *w, uint16_t taps)
{
    int32_t sum = 0;
    uint16_t t0;
    for (t0 = 0; t0 < taps; t0 = (uint16_t)(t0 + 32u)) {
        uint32_t m = EBNN_READ_U32(w++);
        const ebnn_win_t *v = win + t0;
        if ((uint16_t)(taps - t0) < 32u)
            m &= (1uL << (uint16_t)(taps - t0)) - 1u;
#if defined(__GNUC__) && (defined(__ARM_FEATURE_CLZ) || defined(__x86_64__) || defined(__aarch64__))
        while (m != 0u) { /* one step per +1 weight: count trailing zeros is one or two instructions */
            sum += v[__builtin_ctzl((unsigned long)m)];
            m &= m - 1u;
        }
#else
        for (; m != 0u; m >>= 1, v++)
            if (m & 1u)
                sum += *v;
#endif
    }
    return sum;
}

static int input_conv_window(const ebnn_conv_params_t *params, const uint8_t *in_u8, const float *in_f32,
                             const uint32_t *weights, const int32_t *thresholds, const uint8_t *pool_min,
                             uint32_t *output)
{
    ebnn_conv_params_t params_copy;
    const ebnn_conv_params_t *p = &params_copy;
    ebnn_win_t win[EBNN_MAX_WINDOW];
    int32_t best[EBNN_INPUT_CONV_BATCH];
    uint16_t taps, oy, ox, o, o0;
    uint32_t row_words;
    int32_t pad;
    bit_writer_t bw;
    if (params == NULL || weights == NULL || thresholds == NULL || pool_min == NULL || output == NULL ||
        (in_u8 == NULL && in_f32 == NULL))
        return EBNN_ERROR_ARGUMENT;
    load_params(&params_copy, params);
    taps = (uint16_t)(p->kh * p->kw * p->in_c);
    row_words = ((uint32_t)taps + 31u) / 32u;
    pad = p->input_mode == EBNN_INPUT_UINT8 ? p->pad_q : 1;
    if (taps > EBNN_MAX_WINDOW || p->input_mode == EBNN_INPUT_FLOAT)
        return EBNN_ERROR_ARGUMENT;
    bw.out = output;
    bw.word = 0;
    bw.fill = 0;
    for (oy = 0; oy < p->out_h; oy++) {
        uint16_t py0, py1;
        tap_range((int32_t)oy * p->pool_sh - p->pool_t, p->pool_h, p->conv_h, &py0, &py1);
        for (ox = 0; ox < p->out_w; ox++) {
            uint16_t px0, px1;
            tap_range((int32_t)ox * p->pool_sw - p->pool_l, p->pool_w, p->conv_w, &px0, &px1);
            for (o0 = 0; o0 < p->out_c; o0 = (uint16_t)(o0 + EBNN_INPUT_CONV_BATCH)) {
                uint16_t n_o = (uint16_t)(p->out_c - o0 < EBNN_INPUT_CONV_BATCH ? p->out_c - o0 : EBNN_INPUT_CONV_BATCH);
                uint16_t py, px;
                for (o = 0; o < n_o; o++)
                    best[o] = INT32_MIN;
                for (py = py0; py < py1; py++) {
                    for (px = px0; px < px1; px++) {
                        int32_t cy = (int32_t)oy * p->pool_sh - p->pool_t + py;
                        int32_t cx = (int32_t)ox * p->pool_sw - p->pool_l + px;
                        int32_t total = 0;
                        uint16_t ky, kx, c, t = 0;
                        for (ky = 0; ky < p->kh; ky++) { /* gather the window once */
                            int32_t iy = cy * p->sh - p->pad_t + ky;
                            for (kx = 0; kx < p->kw; kx++) {
                                int32_t ix = cx * p->sw - p->pad_l + kx;
                                int inside = iy >= 0 && iy < p->in_h && ix >= 0 && ix < p->in_w;
                                uint32_t base = inside ? ((uint32_t)iy * p->in_w + (uint32_t)ix) * p->in_c : 0u;
                                for (c = 0; c < p->in_c; c++, t++) {
                                    int32_t v;
                                    if (!inside)
                                        v = p->pad_value ? pad : 0;
                                    else if (in_u8 != NULL)
                                        v = input_value_u8(p, in_u8[base + c]);
                                    else
                                        v = input_value_f32(p, in_f32[base + c]);
                                    win[t] = (ebnn_win_t)v;
                                    total += v;
                                }
                            }
                        }
                        for (o = 0; o < n_o; o++) {
                            int32_t acc = 2 * window_sum(win, weights + (uint32_t)(o0 + o) * row_words, taps) - total;
                            if (EBNN_READ_U8(&pool_min[o0 + o]))
                                acc = -acc;
                            if (acc > best[o])
                                best[o] = acc;
                        }
                    }
                }
                for (o = 0; o < n_o; o++) {
                    int32_t agg = EBNN_READ_U8(&pool_min[o0 + o]) ? -best[o] : best[o];
                    put_bit(&bw, agg >= EBNN_READ_I32(&thresholds[o0 + o]) ? 1u : 0u);
                }
            }
        }
    }
    flush_bits(&bw);
    return EBNN_OK;
}

int ebnn_input_conv_window_u8(const ebnn_conv_params_t *params, const uint8_t *input, const uint32_t *weights,
                              const int32_t *thresholds, const uint8_t *pool_min, uint32_t *output)
{
    if (input == NULL)
        return EBNN_ERROR_ARGUMENT;
    return input_conv_window(params, input, NULL, weights, thresholds, pool_min, output);
}

int ebnn_input_conv_window_f32(const ebnn_conv_params_t *params, const float *input, const uint32_t *weights,
                               const int32_t *thresholds, const uint8_t *pool_min, uint32_t *output)
{
    if (input == NULL)
        return EBNN_ERROR_ARGUMENT;
    return input_conv_window(params, NULL, input, weights, thresholds, pool_min, output);
}

static int input_conv_int(const ebnn_conv_params_t *params, const uint8_t *in_u8, const float *in_f32,
                          const uint32_t *weights, const int32_t *thresholds, const uint8_t *pool_min,
                          uint32_t *output)
{
    ebnn_conv_params_t p;
    int32_t acc[EBNN_INPUT_CONV_BATCH], best[EBNN_INPUT_CONV_BATCH];
    uint32_t groups;
    uint16_t oy, ox, o, o0;
    bit_writer_t bw;
    if (params == NULL || weights == NULL || thresholds == NULL || pool_min == NULL || output == NULL)
        return EBNN_ERROR_ARGUMENT;
    load_params(&p, params);
    groups = ((uint32_t)p.out_c + GROUP - 1u) / GROUP;
    bw.out = output;
    bw.word = 0;
    bw.fill = 0;
    for (oy = 0; oy < p.out_h; oy++) {
        uint16_t py0, py1;
        tap_range((int32_t)oy * p.pool_sh - p.pool_t, p.pool_h, p.conv_h, &py0, &py1);
        for (ox = 0; ox < p.out_w; ox++) {
            uint16_t px0, px1, py, px;
            tap_range((int32_t)ox * p.pool_sw - p.pool_l, p.pool_w, p.conv_w, &px0, &px1);
            for (o0 = 0; o0 < p.out_c; o0 = (uint16_t)(o0 + EBNN_INPUT_CONV_BATCH)) {
                uint16_t n_o = (uint16_t)(p.out_c - o0 < EBNN_INPUT_CONV_BATCH ? p.out_c - o0 : EBNN_INPUT_CONV_BATCH);
                uint32_t g = o0 / GROUP;
                uint8_t shift = (uint8_t)(o0 % GROUP);
                for (o = 0; o < n_o; o++)
                    best[o] = INT32_MIN;
                for (py = py0; py < py1; py++) {
                    for (px = px0; px < px1; px++) {
                        int32_t cy = (int32_t)oy * p.pool_sh - p.pool_t + py;
                        int32_t cx = (int32_t)ox * p.pool_sw - p.pool_l + px;
                        conv_position_int(&p, in_u8, in_f32, weights, groups, g, shift, n_o, cy, cx, acc);
                        for (o = 0; o < n_o; o++) { /* pool as max of acc, or of -acc (min) */
                            int32_t v = EBNN_READ_U8(&pool_min[o0 + o]) ? -acc[o] : acc[o];
                            if (v > best[o])
                                best[o] = v;
                        }
                    }
                }
                for (o = 0; o < n_o; o++) {
                    int32_t agg = EBNN_READ_U8(&pool_min[o0 + o]) ? -best[o] : best[o];
                    put_bit(&bw, agg >= EBNN_READ_I32(&thresholds[o0 + o]) ? 1u : 0u);
                }
            }
        }
    }
    flush_bits(&bw);
    return EBNN_OK;
}

int ebnn_input_conv_u8(const ebnn_conv_params_t *params, const uint8_t *input, const uint32_t *weights,
                       const int32_t *thresholds, const uint8_t *pool_min, uint32_t *output)
{
    if (input == NULL)
        return EBNN_ERROR_ARGUMENT;
    return input_conv_int(params, input, NULL, weights, thresholds, pool_min, output);
}

/* ---- input convolution, float accumulator ---------------------------------------------------- */
/* acc[o] for one convolution position: a float32 sum in (ky, kx, c) order, starting from 0. */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static void conv_position_f32(const ebnn_conv_params_t *p, const float *in, const uint32_t *weights,
                              uint32_t groups, uint32_t g, uint8_t shift, uint16_t n_o, int32_t cy, int32_t cx,
                              float *acc)
{
    uint16_t ky, kx, c, o;
    for (o = 0; o < n_o; o++)
        acc[o] = 0.0f;
    for (ky = 0; ky < p->kh; ky++) {
        int32_t iy = cy * p->sh - p->pad_t + ky;
        for (kx = 0; kx < p->kw; kx++) {
            int32_t ix = cx * p->sw - p->pad_l + kx;
            int inside = iy >= 0 && iy < p->in_h && ix >= 0 && ix < p->in_w;
            uint32_t base = inside ? ((uint32_t)iy * p->in_w + (uint32_t)ix) * p->in_c : 0u;
            uint32_t tap = ((uint32_t)ky * p->kw + kx) * p->in_c;
            if (!inside && p->pad_value == 0u)
                continue;
            for (c = 0; c < p->in_c; c++) {
                float v = inside ? in[base + c] : 1.0f;
                uint32_t mask = EBNN_READ_U32(&weights[(tap + c) * groups + g]) >> shift;
                for (o = 0; o < n_o; o++, mask >>= 1)
                    acc[o] = acc[o] + ((mask & 1u) ? v : -v);
            }
        }
    }
}

int ebnn_input_conv_f32(const ebnn_conv_params_t *params, const float *input, const uint32_t *weights,
                        const void *thresholds, const uint8_t *pool_min, uint32_t *output)
{
    ebnn_conv_params_t p;
    float acc[EBNN_INPUT_CONV_BATCH], best[EBNN_INPUT_CONV_BATCH];
    const float *thr = (const float *)thresholds;
    uint32_t groups;
    uint16_t oy, ox, o, o0;
    bit_writer_t bw;
    if (params == NULL || input == NULL || weights == NULL || thresholds == NULL || pool_min == NULL ||
        output == NULL)
        return EBNN_ERROR_ARGUMENT;
    load_params(&p, params);
    if (p.input_mode == EBNN_INPUT_SIGN_FLOAT)
        return input_conv_int(params, NULL, input, weights, (const int32_t *)thresholds, pool_min, output);
    groups = ((uint32_t)p.out_c + GROUP - 1u) / GROUP;
    bw.out = output;
    bw.word = 0;
    bw.fill = 0;
    for (oy = 0; oy < p.out_h; oy++) {
        uint16_t py0, py1;
        tap_range((int32_t)oy * p.pool_sh - p.pool_t, p.pool_h, p.conv_h, &py0, &py1);
        for (ox = 0; ox < p.out_w; ox++) {
            uint16_t px0, px1, py, px;
            tap_range((int32_t)ox * p.pool_sw - p.pool_l, p.pool_w, p.conv_w, &px0, &px1);
            for (o0 = 0; o0 < p.out_c; o0 = (uint16_t)(o0 + EBNN_INPUT_CONV_BATCH)) {
                uint16_t n_o = (uint16_t)(p.out_c - o0 < EBNN_INPUT_CONV_BATCH ? p.out_c - o0 : EBNN_INPUT_CONV_BATCH);
                uint32_t g = o0 / GROUP;
                uint8_t shift = (uint8_t)(o0 % GROUP);
                int first = 1;
                for (py = py0; py < py1; py++) {
                    for (px = px0; px < px1; px++) {
                        int32_t cy = (int32_t)oy * p.pool_sh - p.pool_t + py;
                        int32_t cx = (int32_t)ox * p.pool_sw - p.pool_l + px;
                        conv_position_f32(&p, input, weights, groups, g, shift, n_o, cy, cx, acc);
                        for (o = 0; o < n_o; o++) {
                            float v = EBNN_READ_U8(&pool_min[o0 + o]) ? -acc[o] : acc[o];
                            if (first || v > best[o])
                                best[o] = v;
                        }
                        first = 0;
                    }
                }
                for (o = 0; o < n_o; o++) {
                    float agg = EBNN_READ_U8(&pool_min[o0 + o]) ? -best[o] : best[o];
                    put_bit(&bw, agg >= EBNN_READ_F32(&thr[o0 + o]) ? 1u : 0u);
                }
            }
        }
    }
    flush_bits(&bw);
    return EBNN_OK;
}

/* ---- binary convolution -------------------------------------------------------------------- */
/* Accumulator of filter `o` at convolution position (cy, cx): sum of w * a over the taps. */
static int32_t binary_conv_position(const ebnn_conv_params_t *p, const uint32_t *in, const uint32_t *weights,
                                    uint32_t filter_words, uint16_t o, int32_t cy, int32_t cx)
{
    uint32_t row_bits = (uint32_t)p->kw * p->in_c;
    uint32_t wbase = (uint32_t)o * filter_words * 32u;
    int32_t iy0 = cy * p->sh - p->pad_t, ix0 = cx * p->sw - p->pad_l;
    uint16_t ky, kx0, kx1, ky0, ky1;
    int32_t acc = 0;
    tap_range(iy0, p->kh, p->in_h, &ky0, &ky1);
    tap_range(ix0, p->kw, p->in_w, &kx0, &kx1);
    for (ky = ky0; ky < ky1; ky++) {
        uint32_t n = (uint32_t)(kx1 - kx0) * p->in_c;
        uint32_t abit = ((uint32_t)(iy0 + ky) * p->in_w + (uint32_t)(ix0 + kx0)) * p->in_c;
        uint32_t wbit = wbase + (uint32_t)ky * row_bits + (uint32_t)kx0 * p->in_c;
        acc += (int32_t)n - 2 * (int32_t)ebnn_xor_popcount(in, abit, weights, wbit, n);
    }
    if (p->pad_value != 0u && (ky1 - ky0 != p->kh || kx1 - kx0 != p->kw)) {
        /* one-padding: every padded tap is +1 and adds its weight: 2 * popcount(w) - count */
        uint32_t n_pad = 0, ones = 0;
        for (ky = 0; ky < p->kh; ky++) {
            uint32_t wrow = wbase + (uint32_t)ky * row_bits;
            if (ky < ky0 || ky >= ky1) {
                ones += ebnn_const_popcount(weights, wrow, row_bits);
                n_pad += row_bits;
                continue;
            }
            ones += ebnn_const_popcount(weights, wrow, (uint32_t)kx0 * p->in_c);
            ones += ebnn_const_popcount(weights, wrow + (uint32_t)kx1 * p->in_c, (uint32_t)(p->kw - kx1) * p->in_c);
            n_pad += (uint32_t)(p->kw - (kx1 - kx0)) * p->in_c;
        }
        acc += 2 * (int32_t)ones - (int32_t)n_pad;
    }
    return acc;
}

int ebnn_binary_conv(const ebnn_conv_params_t *params, const uint32_t *input, const uint32_t *weights,
                     uint32_t filter_words, const int32_t *thresholds, const uint8_t *pool_min,
                     uint32_t *output)
{
    ebnn_conv_params_t p;
    uint16_t oy, ox, o;
    bit_writer_t bw;
    if (params == NULL || input == NULL || weights == NULL || thresholds == NULL || pool_min == NULL ||
        output == NULL)
        return EBNN_ERROR_ARGUMENT;
    load_params(&p, params);
    bw.out = output;
    bw.word = 0;
    bw.fill = 0;
    for (oy = 0; oy < p.out_h; oy++) {
        uint16_t py0, py1;
        tap_range((int32_t)oy * p.pool_sh - p.pool_t, p.pool_h, p.conv_h, &py0, &py1);
        for (ox = 0; ox < p.out_w; ox++) {
            uint16_t px0, px1;
            tap_range((int32_t)ox * p.pool_sw - p.pool_l, p.pool_w, p.conv_w, &px0, &px1);
            for (o = 0; o < p.out_c; o++) {
                int negate = EBNN_READ_U8(&pool_min[o]) != 0u;
                int32_t best = INT32_MIN;
                uint16_t py, px;
                for (py = py0; py < py1; py++) {
                    for (px = px0; px < px1; px++) {
                        int32_t acc = binary_conv_position(&p, input, weights, filter_words, o,
                                                           (int32_t)oy * p.pool_sh - p.pool_t + py,
                                                           (int32_t)ox * p.pool_sw - p.pool_l + px);
                        if (negate)
                            acc = -acc;
                        if (acc > best)
                            best = acc;
                    }
                }
                if (negate)
                    best = -best;
                put_bit(&bw, best >= EBNN_READ_I32(&thresholds[o]) ? 1u : 0u);
            }
        }
    }
    flush_bits(&bw);
    return EBNN_OK;
}

/* ---- dense blocks ------------------------------------------------------------------------------ */
int ebnn_binary_dense(uint32_t n_in, uint32_t n_out, const uint32_t *input, const uint32_t *weights,
                      uint32_t row_words, const int32_t *thresholds, uint32_t *output)
{
    uint32_t o;
    bit_writer_t bw;
    if (input == NULL || weights == NULL || thresholds == NULL || output == NULL)
        return EBNN_ERROR_ARGUMENT;
    bw.out = output;
    bw.word = 0;
    bw.fill = 0;
    for (o = 0; o < n_out; o++) {
        int32_t acc = (int32_t)n_in - 2 * (int32_t)ebnn_xor_popcount(input, 0, weights + o * row_words, 0, n_in);
        put_bit(&bw, acc >= EBNN_READ_I32(&thresholds[o]) ? 1u : 0u);
    }
    flush_bits(&bw);
    return EBNN_OK;
}

int ebnn_output_dense(uint32_t n_in, uint32_t n_out, const uint32_t *input, const uint32_t *weights,
                      uint32_t row_words, const float *scale, const float *offset, float *logits)
{
    uint32_t k;
    int best_k = 0;
    float best = 0.0f;
    if (input == NULL || weights == NULL || scale == NULL || offset == NULL || n_out == 0u)
        return EBNN_ERROR_ARGUMENT;
    for (k = 0; k < n_out; k++) {
        int32_t x = (int32_t)n_in - 2 * (int32_t)ebnn_xor_popcount(input, 0, weights + k * row_words, 0, n_in);
        float y = (float)x * EBNN_READ_F32(&scale[k]); /* two float32 operations, in this order */
        y = y + EBNN_READ_F32(&offset[k]);
        if (logits != NULL)
            logits[k] = y;
        if (k == 0u || y > best) {
            best = y;
            best_k = (int)k;
        }
    }
    return best_k;
}
