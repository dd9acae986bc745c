/* avr/ebnn_input_conv8.c - ebnn_input_conv_u8 for EBNN_BYTE_KERNELS (the AVR default): the generic
 * kernel is ebnn_input_conv.c. Same results; see README.md for the method. */

#include "ebnn_bytes.h"

#if EBNN_BYTE_KERNELS
/* Input conv, byte path (uint8 input modes, acc16, at most 255 taps, input shorter than 32 K values so
 * that 16-bit coordinates suffice). Per window, each group g of 4 taps gets the table T_g[s] = sum of
 * v_i over its taps i in s - sum over the others (16-bit), and a filter's accumulator is the sum of the
 * entries its weight nibbles select: one lookup per group, up to 4 groups (16 taps, 2 weight bytes) per
 * pass (missing groups' tables stay 0; more taps: several passes, window_passes8). Pooling and output as
 * in binary_conv8. Small helpers keep the AVR stack frames short.
 * All-zero windows: when every tap of a window is worth 0 (mode EBNN_INPUT_UINT8 with add == 0, all its
 * pixels inside the input 0, padded taps 0), every filter's accumulator is exactly 0: no values, tables
 * or weights, the window only ORs in the bits (0 >= threshold) of its pass (zero_bits8, computed once
 * per pass). An output pixel whose pool window spans only zero pixels is written from those bits at
 * once, for every pass, before any per-window work; the per-window check remains only for pool
 * windows of several conv windows. On MNIST about two thirds of the 3x3 windows are all zero. */

typedef struct {
    const ebnn_conv_params_t *p;
    const uint8_t *in;
    uint16_t stride;      /* input values per row */
    int16_t pad, mul, add; /* value of a tap outside the input; value = mul * pixel + add */
    int16_t thr_u8;       /* EBNN_INPUT_SIGN_UINT8: value = pixel >= thr_u8 ? 1 : -1 */
    uint8_t sign, taps, groups;
    uint8_t plain;        /* mul == 1 and add == 0: value = pixel */
    uint8_t zero;         /* add == 0 and padded taps 0: an all-zero window has acc 0 for every filter */
} input8_t;

/* 1 when every pixel inside the input of the h x w region at (iy0, ix0) is 0 (padded taps are not
 * read). With ic->zero (uint8 values, add == 0, padded taps 0) every tap of every window within it is
 * then worth 0, so every filter's accumulator is exactly 0. Clipped here in 16 bits (ebnn_clip_window's
 * 32-bit arithmetic costs more than the scan); a row that is not all zero ends the scan. */
NOINLINE static uint8_t region_zero8(const input8_t *ic, int16_t iy0, int16_t ix0, int16_t h, int16_t w)
{
    const ebnn_conv_params_t *p = ic->p;
    int16_t iy1 = (int16_t)(iy0 + h), ix1 = (int16_t)(ix0 + w); /* ends, exclusive */
    const uint8_t *src;
    uint8_t any = 0;
    uint16_t rows, n, j, skip;
    if (iy0 < 0)
        iy0 = 0;
    if (ix0 < 0)
        ix0 = 0;
    if (iy1 > (int16_t)p->in_h)
        iy1 = (int16_t)p->in_h;
    if (ix1 > (int16_t)p->in_w)
        ix1 = (int16_t)p->in_w;
    if (iy1 <= iy0 || ix1 <= ix0 || p->in_c == 0u)
        return 1u; /* padding only (or no taps) */
    rows = (uint16_t)(iy1 - iy0);
    n = (uint16_t)((uint16_t)(ix1 - ix0) * p->in_c); /* bytes per row */
    skip = (uint16_t)(ic->stride - n);
    src = ic->in + (uint16_t)iy0 * ic->stride + (uint16_t)ix0 * p->in_c;
    do {
        j = n;
        do
            any |= *src++;
        while (--j != 0u);
        if (any != 0u)
            return 0u;
        src += skip;
    } while (--rows != 0u);
    return 1u;
}

/* The BYTE_CHUNK / 8 bytes bits[] of an all-zero window (acc 0) for the n filters from thr: bit o =
 * (0 >= threshold o); the bits from n on are 0. */
NOINLINE static void zero_bits8(const int16_t *thr, uint8_t n, uint8_t *bits)
{
    uint8_t b;
    for (b = 0; b < BYTE_CHUNK / 8u; b++, bits++) {
        uint8_t cur = 0, m;
        for (m = 1u; m != 0u && n != 0u; m = (uint8_t)(m << 1), n--, thr++)
            if (EBNN_READ_I16(thr) <= 0)
                cur |= m;
        *bits = cur;
    }
}

/* zbits = zero_bits8 of the pass of n filters from o0, unless *cached says it holds them already
 * (once per call when out_c <= BYTE_CHUNK). */
static void zero_pass8(const int16_t *thresholds, uint_fast16_t o0, uint8_t n, uint8_t *zbits, uint_fast16_t *cached)
{
    if (*cached != o0) {
        zero_bits8(thresholds + o0, n, zbits);
        *cached = o0;
    }
}

/* The values of taps t0 .. t0 + cnt - 1 of the window at (iy0, ix0) ((ky, kx, c) order; any window,
 * any mode), then zeros up to the end of the last group. */
NOINLINE static void window_values8(const input8_t *ic, int16_t iy0, int16_t ix0, uint8_t t0, uint8_t cnt, int16_t *v)
{
    const ebnn_conv_params_t *p = ic->p;
    uint8_t row = (uint8_t)(p->kw * p->in_c), ky = (uint8_t)(t0 / row), kx = (uint8_t)(t0 % row / p->in_c);
    uint8_t c = (uint8_t)(t0 % p->in_c), i;
    for (i = 0; i < cnt; i++) {
        int16_t iy = (int16_t)(iy0 + ky), ix = (int16_t)(ix0 + kx);
        if (iy < 0 || iy >= (int16_t)p->in_h || ix < 0 || ix >= (int16_t)p->in_w) {
            *v++ = ic->pad;
        } else {
            int16_t x = ic->in[(uint16_t)iy * ic->stride + (uint16_t)ix * p->in_c + c];
            *v++ = ic->sign ? (x >= ic->thr_u8 ? 1 : -1) : (int16_t)(ic->mul * x + ic->add);
        }
        if (++c == p->in_c) {
            c = 0;
            if (++kx == p->kw) {
                kx = 0;
                ky++;
            }
        }
    }
    for (; (i & 3u) != 0u; i++)
        *v++ = 0; /* missing taps of the last group: weight bits 0, value 0 */
}

/* The entries of one group's table from its values (straight-line: they stay in registers); a
 * group of n < 4 taps needs only its first 2^n entries (the weight bits of missing taps are 0). */
static void group_table8(int16_t v0, int16_t v1, int16_t v2, int16_t v3, uint8_t n, int16_t *tb)
{
    int16_t d2 = (int16_t)(2 * v2), d3 = (int16_t)(2 * v3);
    int16_t t0 = (int16_t)(-v0 - v1 - v2 - v3), t1 = (int16_t)(t0 + 2 * v0);
    int16_t t2 = (int16_t)(t0 + 2 * v1), t3 = (int16_t)(t1 + 2 * v1);
    int16_t t4 = (int16_t)(t0 + d2), t5 = (int16_t)(t1 + d2), t6 = (int16_t)(t2 + d2), t7 = (int16_t)(t3 + d2);
    *tb++ = t0;
    *tb++ = t1;
    if (n < 2u)
        return;
    *tb++ = t2;
    *tb++ = t3;
    if (n < 3u)
        return;
    *tb++ = t4;
    *tb++ = t5;
    *tb++ = t6;
    *tb++ = t7;
    if (n < 4u)
        return;
    *tb++ = (int16_t)(t0 + d3);
    *tb++ = (int16_t)(t1 + d3);
    *tb++ = (int16_t)(t2 + d3);
    *tb++ = (int16_t)(t3 + d3);
    *tb++ = (int16_t)(t4 + d3);
    *tb++ = (int16_t)(t5 + d3);
    *tb++ = (int16_t)(t6 + d3);
    *tb = (int16_t)(t7 + d3);
}

/* table[16 * g + s] for every group g (see above) from the window's values. */
NOINLINE static void build_tables8(const int16_t *v, uint8_t taps, int16_t *tb)
{
    for (; taps != 0u; taps = (uint8_t)(taps > 4u ? taps - 4u : 0u), v += 4, tb += 16)
        group_table8(v[0], v[1], v[2], v[3], taps, tb);
}

/* The values of a window inside the input (mode EBNN_INPUT_UINT8, at most 16 taps) whose first value
 * is src: kh runs of kw * in_c consecutive pixels; then zeros up to the end of the last group. */
NOINLINE static void interior_values8(const input8_t *ic, const uint8_t *src, int16_t *v)
{
    const ebnn_conv_params_t *p = ic->p;
    uint8_t row = (uint8_t)(p->kw * p->in_c), skip = (uint8_t)(ic->stride - row), ky, j, t;
    for (ky = (uint8_t)p->kh; ky != 0u; ky--, src += skip) {
        if (ic->plain) /* value = pixel */
            for (j = row; j != 0u; j--)
                *v++ = *src++;
        else
            for (j = row; j != 0u; j--)
                *v++ = (int16_t)(ic->mul * *src++ + ic->add);
    }
    for (t = ic->taps; (t & 3u) != 0u; t++)
        *v++ = 0;
}

/* Entry of a 16-bit table at byte offset `off` (= 2 * index, computed in 8 bits). */
#define TAB8(tab, off) (*(const int16_t *)(const void *)((const uint8_t *)(tab) + (off)))

/* A filter's accumulator: the sum over its groups (up to 4) of the entry its weight nibble selects. */
ALWAYS_INLINE static int16_t filter_acc8(const int16_t *tab, const uint8_t *w, uint8_t groups)
{
    uint8_t b = EBNN_READ_U8(w);
    int16_t acc = (int16_t)(TAB8(tab, (uint8_t)(b << 1) & 0x1eu) + TAB8(tab + 16, (b >> 3) & 0x1eu));
    if (groups > 2u) {
        b = EBNN_READ_U8(w + 1);
        acc = (int16_t)(acc + TAB8(tab + 32, (uint8_t)(b << 1) & 0x1eu));
        if (groups > 3u)
            acc = (int16_t)(acc + TAB8(tab + 48, (b >> 3) & 0x1eu));
    }
    return acc;
}

/* For n filters from w (rows row_bytes apart), thresholds thr: set bit o of bits[] when filter o's
 * accumulator reaches its threshold; filters whose bit is already set are skipped. */
NOINLINE static void input_filters8(const int16_t *tab, const uint8_t *w, uint16_t row_bytes, const int16_t *thr, uint8_t n,
                                    uint8_t groups, uint8_t *bits)
{
    for (; n != 0u; bits++) {
        uint8_t cur = *bits, m;
        for (m = 1u; m != 0u && n != 0u; m = (uint8_t)(m << 1), n--, w += row_bytes, thr++)
            if ((cur & m) == 0u && filter_acc8(tab, w, groups) >= EBNN_READ_I16(thr))
                cur |= m;
        *bits = cur;
    }
}

/* The same for one pass of a window of more than 16 taps: add the pass's sums to part[] (first pass:
 * set them), and on the last pass compare. A separate loop: the one-pass case stays lean. */
#define PASS_ADD 1u  /* add the partial sums of the previous passes */
#define PASS_LAST 2u /* compare with the thresholds (else store the partial sums) */
NOINLINE static void input_filters_pass8(const int16_t *tab, const uint8_t *w, uint16_t row_bytes, const int16_t *thr,
                                         uint8_t n, uint8_t groups, uint8_t *bits, int16_t *part, uint8_t pass)
{
    uint8_t o = 0;
    for (; n != 0u; bits++) {
        uint8_t cur = *bits, m;
        for (m = 1u; m != 0u && n != 0u; m = (uint8_t)(m << 1), n--, w += row_bytes, thr++, o++) {
            int16_t acc;
            if ((cur & m) != 0u)
                continue;
            acc = filter_acc8(tab, w, groups);
            if ((pass & PASS_ADD) != 0u)
                acc = (int16_t)(acc + part[o]);
            if ((pass & PASS_LAST) == 0u)
                part[o] = acc;
            else if (acc >= EBNN_READ_I16(thr))
                cur |= m;
        }
        *bits = cur;
    }
}

/* A window of more than 16 taps: passes of 16 taps (2 weight bytes), partial sums in part[]. Its
 * own frame, so the usual case (one pass) does not carry part[] on the stack. */
NOINLINE static void window_passes8(const input8_t *ic, int16_t iy0, int16_t ix0, int16_t *table, int16_t *vals,
                                    const uint8_t *w, uint16_t row_bytes, const int16_t *thr, uint8_t n, uint8_t *bits)
{
    int16_t part[BYTE_CHUNK];
    uint8_t t0;
    for (t0 = 0; t0 < ic->taps; t0 = (uint8_t)(t0 + 16u)) {
        uint8_t cnt = (uint8_t)(ic->taps - t0 < 16 ? ic->taps - t0 : 16);
        uint8_t g;
        window_values8(ic, iy0, ix0, t0, cnt, vals);
        build_tables8(vals, cnt, table);
        for (g = (uint8_t)((cnt + 3u) >> 2); g < 4u; g++)
            table[16u * g] = 0; /* groups missing from this pass: their (zero) nibbles read entry 0 */
        input_filters_pass8(table, w + (t0 >> 3), row_bytes, thr, n, (uint8_t)((cnt + 3u) >> 2), bits, part,
                       (uint8_t)((t0 != 0u ? PASS_ADD : 0u) | (t0 + cnt == ic->taps ? PASS_LAST : 0u)));
    }
}

/* 1 when every conv window of the clipped pool window [py0, py1) x [px0, px1) at (cy0, cx0) is all
 * zero (region_zero8 over the input rectangle they span; with a stride above the kernel size the
 * rectangle also covers the gaps between them, and a non-zero gap only sends the pixel to the
 * per-window check). */
static uint8_t pool_zero8(const input8_t *ic, int16_t cy0, int16_t cx0, uint_fast16_t py0, uint_fast16_t py1,
                          uint_fast16_t px0, uint_fast16_t px1)
{
    const ebnn_conv_params_t *p = ic->p;
    return region_zero8(ic, ebnn_start16((int16_t)(cy0 + (int16_t)py0), p->sh, p->pad_t),
                        ebnn_start16((int16_t)(cx0 + (int16_t)px0), p->sw, p->pad_l),
                        (int16_t)((int16_t)(py1 - py0 - 1u) * (int16_t)p->sh + (int16_t)p->kh),
                        (int16_t)((int16_t)(px1 - px0 - 1u) * (int16_t)p->sw + (int16_t)p->kw));
}

/* The loops of input_conv8. The tables stay in the caller's frame: with them in this one, the loop
 * variables that the AVR must spill lie beyond its 63-byte frame displacement and every access to
 * them costs a pointer adjustment (uno_mnist's input conv took 13% more cycles, and 0.7 KB more
 * flash, that way). */
NOINLINE static void input_conv8_loops(const ebnn_conv_params_t *p, const uint8_t *in, const uint32_t *weights,
                                       const int16_t *thresholds, const uint32_t *flip, uint32_t *output,
                                       int16_t *table)
{
    int16_t *vals = table + 48;
    uint16_t row_bytes = (uint16_t)(4u * EBNN_WORDS((uint32_t)p->kh * p->kw * p->in_c));
    uint_fast16_t oy, ox, o0, zero_o0 = 0xffffu; /* the pass of filters whose zero_bits8 are in zbits */
    uint8_t zbits[BYTE_CHUNK / 8u] = {0};
    input8_t ic;
    ebnn_bw8_t bw;
    ic.p = p;
    ic.in = in;
    ic.stride = (uint16_t)(p->in_w * p->in_c);
    ic.sign = p->input_mode == EBNN_INPUT_SIGN_UINT8;
    ic.pad = p->pad_value == 0u ? 0 : (ic.sign ? 1 : p->pad_q);
    ic.mul = p->q_mul;
    ic.add = p->q_add;
    ic.thr_u8 = p->sign_threshold_u8;
    ic.taps = (uint8_t)(p->kh * p->kw * p->in_c);
    ic.groups = (uint8_t)((ic.taps + 3u) >> 2);
    ic.plain = ic.mul == 1 && ic.add == 0;
    ic.zero = !ic.sign && ic.add == 0 && ic.pad == 0;
    ebnn_bw8_init(&bw, (uint8_t *)output, 1u);
    for (oy = 0; oy < p->out_h; oy++) {
        uint_fast16_t py0, py1;
        int16_t cy0 = ebnn_start16((int16_t)oy, p->pool_sh, p->pool_t);
        ebnn_clip_window(cy0, p->pool_h, p->conv_h, &py0, &py1);
        for (ox = 0; ox < p->out_w; ox++) {
            uint_fast16_t px0, px1;
            int16_t cx0 = ebnn_start16((int16_t)ox, p->pool_sw, p->pool_l);
            uint8_t multi; /* the pool window has several conv windows: some may be all zero */
            ebnn_clip_window(cx0, p->pool_w, p->conv_w, &px0, &px1);
            multi = py1 - py0 > 1u || px1 - px0 > 1u;
            if (ic.zero && pool_zero8(&ic, cy0, cx0, py0, py1, px0, px1)) {
                /* every window of the pixel is all zero: every accumulator is 0, for every pass */
                for (o0 = 0; o0 < p->out_c; o0 = (uint_fast16_t)(o0 + BYTE_CHUNK)) {
                    uint8_t n = (uint8_t)(p->out_c - o0 < BYTE_CHUNK ? p->out_c - o0 : BYTE_CHUNK);
                    zero_pass8(thresholds, o0, n, zbits, &zero_o0);
                    ebnn_put_pixel_bits8(&bw, zbits, flip, o0, n);
                    COUNT_ZERO_WINDOWS((py1 - py0) * (px1 - px0));
                }
                continue;
            }
            for (o0 = 0; o0 < p->out_c; o0 = (uint_fast16_t)(o0 + BYTE_CHUNK)) {
                uint8_t n = (uint8_t)(p->out_c - o0 < BYTE_CHUNK ? p->out_c - o0 : BYTE_CHUNK);
                uint8_t bits[BYTE_CHUNK / 8u] = {0};
                uint_fast16_t py, px;
                const uint8_t *w = (const uint8_t *)weights + (uint32_t)o0 * row_bytes;
                for (py = py0; py < py1; py++) {
                    int16_t iy0 = ebnn_start16((int16_t)(cy0 + (int16_t)py), p->sh, p->pad_t);
                    for (px = px0; px < px1; px++) {
                        int16_t ix0 = ebnn_start16((int16_t)(cx0 + (int16_t)px), p->sw, p->pad_l);
                        if (multi && ic.zero && region_zero8(&ic, iy0, ix0, (int16_t)p->kh, (int16_t)p->kw)) {
                            uint8_t i; /* every acc is 0: no tables */
                            zero_pass8(thresholds, o0, n, zbits, &zero_o0);
                            for (i = 0; i < BYTE_CHUNK / 8u; i++)
                                bits[i] |= zbits[i];
                            COUNT_ZERO_WINDOWS(1);
                            continue;
                        }
                        if (ic.taps > 16u) {
                            window_passes8(&ic, iy0, ix0, table, vals, w, row_bytes, thresholds + o0, n, bits);
                            continue;
                        }
                        if (!ic.sign && iy0 >= 0 && ix0 >= 0 && iy0 + (int16_t)p->kh <= (int16_t)p->in_h &&
                            ix0 + (int16_t)p->kw <= (int16_t)p->in_w)
                            interior_values8(&ic, ic.in + (uint16_t)iy0 * ic.stride + (uint16_t)ix0 * p->in_c, vals);
                        else
                            window_values8(&ic, iy0, ix0, 0u, ic.taps, vals);
                        build_tables8(vals, ic.taps, table);
                        input_filters8(table, w, row_bytes, thresholds + o0, n, ic.groups, bits);
                    }
                }
                ebnn_put_pixel_bits8(&bw, bits, flip, o0, n);
            }
        }
    }
    ebnn_finish_output8(&bw, output, (uint32_t)p->out_h * p->out_w * p->out_c);
}

NOINLINE static void input_conv8(const ebnn_conv_params_t *p, const uint8_t *in, const uint32_t *weights,
                        const int16_t *thresholds, const uint32_t *flip, uint32_t *output)
{
    /* The tables of missing groups 1 and 2 stay 0 (group 3 is read only when it exists). The window's
     * values (16 at most) live in group 3's table: build_tables8 reads a group's 4 values before
     * writing its entries, and group 3's values are the last read (2 KB of SRAM on AVR: every byte of
     * stack counts). */
    int16_t table[64] = {0};
    input_conv8_loops(p, in, weights, thresholds, flip, output, table);
}

EBNN_API int ebnn_input_conv_u8(const ebnn_conv_params_t *params, const uint8_t *input, const uint32_t *weights,
                       const void *thresholds, const uint32_t *flip, uint32_t *output)
{
    if (params == NULL || input == NULL || weights == NULL || thresholds == NULL || flip == NULL || output == NULL)
        return EBNN_ERROR_ARGUMENT;
    {
        PARAMS_IN_RAM(p, params);
        /* the only path: the generic one is not linked for uint8 inputs */
        if (!p->acc16 || (uint32_t)p->kh * p->kw * p->in_c > 255u || (uint32_t)p->in_h * p->in_w * p->in_c >= 32768u)
            return EBNN_ERROR_UNSUPPORTED; /* int16 accumulators, 8-bit tap counts, 16-bit coordinates */
        input_conv8(p, input, weights, (const int16_t *)thresholds, flip, output);
        return EBNN_OK;
    }
}
#endif /* EBNN_BYTE_KERNELS */
