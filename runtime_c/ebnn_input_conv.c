/* ebnn_input_conv.c - the first block on an integer input: ebnn_input_conv_u8 (generic C; the byte
 * kernels' version is avr/ebnn_input_conv8.c) and the integer accumulator that ebnn_input_conv_f32
 * also uses for sign_float inputs. Layouts: ebnn.h; semantics: keras_ebnn/ir/blocks.py. */

#include "ebnn_internal.h"

/* ==== input convolution, integer accumulator ==================================================
 * acc = sum_t s_t * v_t (s = +1/-1 weight, v = input value) = 2 * P - S with P = sum of v_t over
 * the taps whose weight is +1 and S = sum of all v_t. Taps are taken four at a time: the 16 subset
 * sums of their values are tabulated once per position and every filter adds the entry that its 4
 * weight bits (a nibble of its filter-major row) select: one lookup per 4 taps and filter. Taps are
 * processed in passes of PASS_TAPS (the tables live on the stack). A position whose taps are all worth
 * 0 (uint8 pixels 0 with q_add == 0, padded taps 0) has acc 0 for every filter and is not computed
 * (window_is_zero). */
#define PASS_TAPS 16 /* taps per pass: 4 groups, the nibbles of one half weight word */
/* Tap values and their partial-sum tables: 16-bit on AVR (2 KB of SRAM: halves the stack), where the
 * kernel requires params->acc16 (every accumulator, hence every partial sum, fits int16). */
#if defined(__AVR__)
typedef int16_t ebnn_tab_t;
typedef int16_t ebnn_acc_t; /* per-filter maxima of the integer input convolution */
#define EBNN_ACC_MIN INT16_MIN
#else
typedef int32_t ebnn_tab_t;
typedef int32_t ebnn_acc_t;
#define EBNN_ACC_MIN INT32_MIN
#endif

#ifndef EBNN_LOW_STACK
#if defined(__AVR__)
#define EBNN_LOW_STACK 1 /* 2 KB of SRAM: tap by tap, no tables (about 200 B less stack, slower) */
#else
#define EBNN_LOW_STACK 0
#endif
#endif

/* Walks the taps of one convolution position in (ky, kx, c) order, yielding input values. */
typedef struct {
    const ebnn_conv_params_t *p;
    const uint8_t *in_u8;
    const float *in_f32;
    int32_t iy0, ix0;        /* top-left tap of the window in input coordinates */
    uint_fast16_t ky, kx, c; /* next tap */
    int32_t pad;             /* value of a tap outside the input */
    int interior;            /* the whole window is inside the input */
} tap_walker_t;

/* Input value of element `i` of the input (integer modes). */
static int32_t input_value(const tap_walker_t *tw, uint32_t i)
{
    const ebnn_conv_params_t *p = tw->p;
    if (tw->in_f32 != NULL) /* x >= threshold (false for NaN), without a soft-float compare */
        return !ebnn_float_is_nan(tw->in_f32[i]) && ebnn_float_key(tw->in_f32[i]) >= ebnn_float_key(p->sign_threshold_f) ? 1 : -1;
    if (p->input_mode == EBNN_INPUT_SIGN_UINT8)
        return (int16_t)tw->in_u8[i] >= p->sign_threshold_u8 ? 1 : -1;
    return (int32_t)p->q_mul * tw->in_u8[i] + p->q_add;
}

/* Writes the values of the next `count` taps to vals. */
static void gather_taps(tap_walker_t *tw, ebnn_tab_t *vals, uint_fast16_t count)
{
    const ebnn_conv_params_t *p = tw->p;
    while (count != 0u) {
        int32_t iy = tw->iy0 + (int32_t)tw->ky, ix = tw->ix0 + (int32_t)tw->kx;
        uint_fast16_t m = (uint_fast16_t)(p->in_c - tw->c), i;
        if (m > count)
            m = count;
        count = (uint_fast16_t)(count - m);
        if (iy >= 0 && iy < (int32_t)p->in_h && ix >= 0 && ix < (int32_t)p->in_w) {
            uint32_t base = ((uint32_t)iy * p->in_w + (uint32_t)ix) * p->in_c + (uint32_t)tw->c;
            for (i = 0; i < m; i++)
                *vals++ = (ebnn_tab_t)input_value(tw, base + (uint32_t)i);
        } else {
            for (i = 0; i < m; i++)
                *vals++ = (ebnn_tab_t)tw->pad;
        }
        tw->c = (uint_fast16_t)(tw->c + m);
        if (tw->c == p->in_c) {
            tw->c = 0;
            if (++tw->kx == p->kw) {
                tw->kx = 0;
                tw->ky++;
            }
        }
    }
}

#if !EBNN_LOW_STACK
/* Same for a window that lies entirely inside the input and a pass holding all its taps. */
static void gather_interior(const tap_walker_t *tw, ebnn_tab_t *vals)
{
    const ebnn_conv_params_t *p = tw->p;
    uint_fast16_t row = (uint_fast16_t)(p->kw * p->in_c), kh = p->kh, i;
    uint32_t stride = (uint32_t)p->in_w * p->in_c;
    uint32_t base = ((uint32_t)tw->iy0 * p->in_w + (uint32_t)tw->ix0) * p->in_c;
    if (tw->in_u8 != NULL && p->input_mode == EBNN_INPUT_UINT8) {
        const uint8_t *src = tw->in_u8 + base;
        int32_t mul = p->q_mul, add = p->q_add;
        for (; kh != 0u; kh--, src += stride)
            for (i = 0; i < row; i++)
                *vals++ = (ebnn_tab_t)(mul * src[i] + add);
    } else {
        for (; kh != 0u; kh--, base += stride)
            for (i = 0; i < row; i++)
                *vals++ = (ebnn_tab_t)input_value(tw, base + (uint32_t)i);
    }
}
#endif

#if !EBNN_LOW_STACK
/* table[16 * g + s] = sum of the values of group g's taps selected by the bits of s (entry 0 of
 * every group is 0 and never written). Returns the sum of all values. */
static int32_t build_tables(const ebnn_tab_t *vals, uint_fast8_t groups, ebnn_tab_t *table)
{
    int32_t sum = 0;
    for (; groups != 0u; groups--, vals += 4, table += 16) {
        int32_t v0 = vals[0], v1 = vals[1], v2 = vals[2], v3 = vals[3], v01 = v0 + v1;
        table[1] = (ebnn_tab_t)(v0);
        table[2] = (ebnn_tab_t)(v1);
        table[3] = (ebnn_tab_t)(v01);
        table[4] = (ebnn_tab_t)(v2);
        table[5] = (ebnn_tab_t)(v0 + v2);
        table[6] = (ebnn_tab_t)(v1 + v2);
        table[7] = (ebnn_tab_t)(v01 + v2);
        table[8] = (ebnn_tab_t)(v3);
        table[9] = (ebnn_tab_t)(v0 + v3);
        table[10] = (ebnn_tab_t)(v1 + v3);
        table[11] = (ebnn_tab_t)(v01 + v3);
        table[12] = (ebnn_tab_t)(v2 + v3);
        table[13] = (ebnn_tab_t)(table[5] + v3);
        table[14] = (ebnn_tab_t)(table[6] + v3);
        table[15] = (ebnn_tab_t)(table[7] + v3);
        sum += table[15];
    }
    return sum;
}
#endif

/* 1 when every pixel of the window at (tw->iy0, tw->ix0) that lies inside the uint8 input is 0
 * (padded taps are not read). In mode EBNN_INPUT_UINT8 with q_add == 0 and padded taps worth 0, every
 * tap's value is then 0 and so is every filter's accumulator. A row that is not all zero ends the scan. */
static int window_is_zero(const tap_walker_t *tw)
{
    const ebnn_conv_params_t *p = tw->p;
    int32_t y0 = tw->iy0 > 0 ? tw->iy0 : 0, x0 = tw->ix0 > 0 ? tw->ix0 : 0; /* the part inside the input */
    int32_t y1 = tw->iy0 + (int32_t)p->kh, x1 = tw->ix0 + (int32_t)p->kw;  /* (ends exclusive) */
    uint32_t stride = (uint32_t)p->in_w * p->in_c, n, i;
    const uint8_t *src;
    unsigned any = 0;
    if (y1 > (int32_t)p->in_h)
        y1 = (int32_t)p->in_h;
    if (x1 > (int32_t)p->in_w)
        x1 = (int32_t)p->in_w;
    if (y1 <= y0 || x1 <= x0)
        return 1; /* padding only */
    n = (uint32_t)(x1 - x0) * p->in_c;
    src = tw->in_u8 + (uint32_t)y0 * stride + (uint32_t)x0 * p->in_c;
    for (; y0 < y1; y0++, src += stride) {
        for (i = 0; i < n; i++)
            any |= src[i];
        if (any != 0u)
            return 0;
    }
    return 1;
}

#if EBNN_LOW_STACK
/* colmax[o] = max(colmax[o], acc of filter o0 + o) for the convolution position whose window
 * starts at (tw->iy0, tw->ix0): one tap at a time, each filter adding +v or -v. */
static void input_position_int(const ebnn_conv_params_t *p, tap_walker_t *tw, const uint32_t *weights,
                               uint_fast16_t o0, uint_fast8_t n, ebnn_acc_t *colmax)
{
    ebnn_acc_t acc[EBNN_CHUNK];
    uint32_t taps = (uint32_t)p->kh * p->kw * p->in_c, fwords = EBNN_WORDS(taps), t;
    uint_fast8_t o;
    for (o = 0; o < n; o++)
        acc[o] = 0;
    tw->ky = tw->kx = tw->c = 0;
    for (t = 0; t < taps; t++) {
        ebnn_tab_t v;
        const uint32_t *row = weights + (uint32_t)o0 * fwords + (t >> 5);
        gather_taps(tw, &v, 1u);
        for (o = 0; o < n; o++, row += fwords)
            acc[o] = (ebnn_acc_t)(acc[o] + (((EBNN_READ_U32(row) >> (t & 31u)) & 1u) ? v : -v));
    }
    for (o = 0; o < n; o++)
        if (acc[o] > colmax[o])
            colmax[o] = acc[o];
}
#else
/* colmax[o] = max(colmax[o], acc of filter o0 + o) for the convolution position whose window
 * starts at (tw->iy0, tw->ix0).*/
static void input_position_int(const ebnn_conv_params_t *p, tap_walker_t *tw, const uint32_t *weights,
                               uint_fast16_t o0, uint_fast8_t n, ebnn_acc_t *colmax)
{
    ebnn_acc_t part[EBNN_CHUNK];
    ebnn_tab_t vals[PASS_TAPS + 3], table[64];
    const ebnn_tab_t *t0_ = table, *t1_ = table + 16, *t2_ = table + 32, *t3_ = table + 48;
    uint32_t taps = (uint32_t)p->kh * p->kw * p->in_c, fwords = EBNN_WORDS(taps), t0;
    int32_t sum = 0;
    table[0] = table[16] = table[32] = table[48] = 0; /* never written by build_tables */
    tw->ky = tw->kx = tw->c = 0;
    for (t0 = 0; t0 < taps; t0 += PASS_TAPS) {
        uint_fast8_t cnt = (uint_fast8_t)(taps - t0 < PASS_TAPS ? taps - t0 : PASS_TAPS), o;
        const uint32_t *row = weights + (uint32_t)o0 * fwords + (t0 >> 5);
        uint_fast8_t shift = (uint_fast8_t)(t0 & 31u);
        if (cnt == taps && tw->interior)
            gather_interior(tw, vals);
        else
            gather_taps(tw, vals, cnt);
        vals[cnt] = vals[cnt + 1u] = vals[cnt + 2u] = 0; /* missing taps of the last group (weight bits 0) */
        sum += build_tables(vals, (uint_fast8_t)((cnt + 3u) / 4u), table);
        /* 4 lookups even for fewer groups: the weight bits of missing taps are 0 and entry 0 of
         * every table is 0 */
        if (cnt == taps) { /* one pass (up to 16 taps) */
            for (o = 0; o < n; o++, row += fwords) {
                uint32_t w = EBNN_READ_U32(row);
                int32_t acc = t0_[w & 15u] + t1_[(w >> 4) & 15u] + t2_[(w >> 8) & 15u] + t3_[(w >> 12) & 15u];
                acc = 2 * acc - sum;
                if (acc > colmax[o])
                    colmax[o] = (ebnn_acc_t)acc;
            }
        } else if (t0 + cnt < taps) {
            for (o = 0; o < n; o++, row += fwords) {
                uint32_t w = EBNN_READ_U32(row) >> shift;
                part[o] = (ebnn_acc_t)((t0 != 0u ? part[o] : 0) + t0_[w & 15u] + t1_[(w >> 4) & 15u] + t2_[(w >> 8) & 15u] +
                          t3_[(w >> 12) & 15u]);
            }
        } else {
            for (o = 0; o < n; o++, row += fwords) {
                uint32_t w = EBNN_READ_U32(row) >> shift;
                int32_t acc = t0_[w & 15u] + t1_[(w >> 4) & 15u] + t2_[(w >> 8) & 15u] + t3_[(w >> 12) & 15u];
                if (t0 != 0u)
                    acc += part[o];
                acc = 2 * acc - sum;
                if (acc > colmax[o])
                    colmax[o] = (ebnn_acc_t)acc;
            }
        }
    }
}
#endif /* EBNN_LOW_STACK */

EBNN_HELPER int ebnn_input_conv_int(const ebnn_conv_params_t *pp, const uint8_t *in_u8, const float *in_f32,
                          const uint32_t *weights, const void *thresholds, const uint32_t *flip,
                          uint32_t *output)
{
    ebnn_conv_params_t pl = *pp; /* a local copy: read through a pointer that output writes might */
    const ebnn_conv_params_t *p = &pl; /* alias, the fields are reloaded in every loop (+4% on M3) */
    ebnn_acc_t best[EBNN_CHUNK], cols[2][EBNN_CHUNK];
    int32_t iy_max, ix_max;
    uint_fast16_t oy, ox, o0;
    int reuse, zero_ok;
    ebnn_bit_writer_t bw;
    tap_walker_t tw;
#if defined(__AVR__)
    if (!p->acc16)
        return EBNN_ERROR_UNSUPPORTED; /* 16-bit tables on AVR: see ebnn_tab_t */
#endif
    tw.p = p;
    tw.in_u8 = in_u8;
    tw.in_f32 = in_f32;
    tw.pad = p->pad_value == 0u ? 0 : (p->input_mode == EBNN_INPUT_UINT8 ? p->pad_q : 1);
    /* All-zero windows (acc 0 for every filter) are skipped: only where every tap of such a window
     * is worth 0, i.e. uint8 values q_mul * pixel + 0 and padded taps worth 0. */
    zero_ok = in_u8 != NULL && p->input_mode == EBNN_INPUT_UINT8 && p->q_add == 0 && tw.pad == 0;
    /* Overlapping pool windows (pool_w = pool_sw + 1, e.g. 3x3 stride 2): the last conv column of
     * a window is the first of the next one; its column max is kept instead of recomputed. */
    reuse = p->pool_w == p->pool_sw + 1u && p->out_c <= EBNN_CHUNK;
    iy_max = (int32_t)p->in_h - (int32_t)p->kh; /* last window start inside the input */
    ix_max = (int32_t)p->in_w - (int32_t)p->kw;
    ebnn_bw_init(&bw, output);
    for (oy = 0; oy < p->out_h; oy++) {
        uint_fast16_t py0, py1;
        int32_t cached_cx = -1;
        uint_fast8_t cached = 0;
        ebnn_clip_window((int32_t)oy * p->pool_sh - p->pool_t, p->pool_h, p->conv_h, &py0, &py1);
        for (ox = 0; ox < p->out_w; ox++) {
            uint_fast16_t px0, px1;
            ebnn_clip_window((int32_t)ox * p->pool_sw - p->pool_l, p->pool_w, p->conv_w, &px0, &px1);
            for (o0 = 0; o0 < p->out_c; o0 = (uint_fast16_t)(o0 + EBNN_CHUNK)) {
                uint_fast8_t n = (uint_fast8_t)(p->out_c - o0 < EBNN_CHUNK ? p->out_c - o0 : EBNN_CHUNK), o;
                uint_fast16_t py, px;
                uint32_t bits = 0;
                for (o = 0; o < n; o++)
                    best[o] = EBNN_ACC_MIN;
                for (px = px0; px < px1; px++) {
                    int32_t cx = (int32_t)ox * p->pool_sw + (int32_t)px - p->pool_l;
                    ebnn_acc_t *col = cols[cached ^ 1u];
                    if (reuse && cx == cached_cx) {
                        col = cols[cached];
                    } else {
                        int zero = 0; /* an all-zero window of this column was skipped */
                        for (o = 0; o < n; o++)
                            col[o] = EBNN_ACC_MIN;
                        tw.ix0 = ebnn_conv_start(cx, p->sw, p->pad_l);
                        for (py = py0; py < py1; py++) {
                            tw.iy0 = ebnn_conv_start((int32_t)oy * p->pool_sh + (int32_t)py - p->pool_t, p->sh, p->pad_t);
                            tw.interior = tw.iy0 >= 0 && tw.ix0 >= 0 && tw.iy0 <= iy_max && tw.ix0 <= ix_max;
                            if (zero_ok && window_is_zero(&tw)) {
                                zero = 1;
                                COUNT_ZERO_WINDOWS(1);
                                continue;
                            }
                            input_position_int(p, &tw, weights, o0, n, col);
                        }
                        if (zero) /* its accumulators: 0 for every filter */
                            for (o = 0; o < n; o++)
                                if (col[o] < 0)
                                    col[o] = 0;
                        if (reuse && px + 1u == px1) {
                            cached = (uint_fast8_t)(cached ^ 1u);
                            cached_cx = cx;
                        }
                    }
                    for (o = 0; o < n; o++)
                        if (col[o] > best[o])
                            best[o] = col[o];
                }
                for (o = 0; o < n; o++)
                    bits |= (uint32_t)(best[o] >= ebnn_read_threshold(thresholds, (uint32_t)(o0 + o), p->acc16)) << o;
                ebnn_bw_put(&bw, bits ^ ebnn_flip_bits(flip, o0, n), n);
            }
        }
    }
    ebnn_bw_flush(&bw);
    return EBNN_OK;
}


#if !EBNN_BYTE_KERNELS /* avr/ebnn_input_conv8.c otherwise */
EBNN_API int ebnn_input_conv_u8(const ebnn_conv_params_t *params, const uint8_t *input, const uint32_t *weights,
                       const void *thresholds, const uint32_t *flip, uint32_t *output)
{
    if (params == NULL || input == NULL || weights == NULL || thresholds == NULL || flip == NULL || output == NULL)
        return EBNN_ERROR_ARGUMENT;
    {
        PARAMS_IN_RAM(p, params);
        return ebnn_input_conv_int(p, input, NULL, weights, thresholds, flip, output);
    }
}
#endif
