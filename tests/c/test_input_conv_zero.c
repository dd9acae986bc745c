/* The all-zero window shortcut of ebnn_input_conv_u8: mostly-zero inputs (isolated pixels, zero regions,
 * blobs, all zero) against naive loops, in the modes where the shortcut applies (q_add == 0, padded taps
 * worth 0) and where it must not (q_add != 0, pad_value 1 with pad_q != 0, sign mode). Built with
 * -DEBNN_TEST_COUNTERS: the kernel counts the windows it skipped (ebnn_test_zero_windows), and the count
 * must equal the all-zero windows that the kernel's loops visit (0 where the shortcut does not apply),
 * so the test fails if the shortcut is removed or taken for a window that is not all zero. */
#include "testlib.h"

#ifndef EBNN_TEST_COUNTERS
#error "build with -DEBNN_TEST_COUNTERS (the kernel's count of skipped windows)"
#endif
extern uint32_t ebnn_test_zero_windows;

#define MAXV 3000
#define MAXO 70
#define MAXW (MAXO * 7 * 7 * 3)

static uint8_t in_u8[MAXV], w[MAXW], pool_min[MAXO];
static uint32_t out[MAXV * MAXO / 32 + 4], wpk[MAXW / 32 + 2 * MAXO];
static int32_t thr[MAXO], thr_stored[MAXO];
static int16_t thr16[MAXO];
static uint32_t flip[3];

/* filters per pass of the kernel in use (the counter counts windows per pass) */
#if EBNN_BYTE_KERNELS
#define PASS_FILTERS 32
#else
#define PASS_FILTERS EBNN_CHUNK
#endif

static int32_t tap_value(const ebnn_conv_params_t *p, int inside, int idx)
{
    if (p->input_mode == EBNN_INPUT_SIGN_UINT8)
        return inside ? (in_u8[idx] >= p->sign_threshold_u8 ? 1 : -1) : 1;
    return inside ? p->q_mul * in_u8[idx] + p->q_add : p->pad_q;
}

static double naive_acc(const ebnn_conv_params_t *p, int o, int cy, int cx)
{
    int ky, kx, c, taps = p->kh * p->kw * p->in_c;
    int32_t acc = 0;
    for (ky = 0; ky < p->kh; ky++)
        for (kx = 0; kx < p->kw; kx++)
            for (c = 0; c < p->in_c; c++) {
                int iy = cy * p->sh - p->pad_t + ky, ix = cx * p->sw - p->pad_l + kx;
                int inside = iy >= 0 && iy < p->in_h && ix >= 0 && ix < p->in_w;
                int wv = w[o * taps + (ky * p->kw + kx) * p->in_c + c] ? 1 : -1;
                if (!inside && !p->pad_value)
                    continue;
                acc += wv * tap_value(p, inside, (iy * p->in_w + ix) * p->in_c + c);
            }
    return (double)acc;
}

/* the expected output bit: the naive pooled accumulator against the threshold */
static int naive_bit(const ebnn_conv_params_t *p, int o, int oy, int ox)
{
    return naive_pool(p, naive_acc, o, oy, ox, pool_min[o]) >= thr[o];
}

/* every pixel of conv position (cy, cx)'s window inside the input is 0 */
static int window_zero(const ebnn_conv_params_t *p, int cy, int cx)
{
    int ky, kx, c;
    for (ky = 0; ky < p->kh; ky++)
        for (kx = 0; kx < p->kw; kx++) {
            int iy = cy * p->sh - p->pad_t + ky, ix = cx * p->sw - p->pad_l + kx;
            if (iy < 0 || iy >= p->in_h || ix < 0 || ix >= p->in_w)
                continue;
            for (c = 0; c < p->in_c; c++)
                if (in_u8[(iy * p->in_w + ix) * p->in_c + c] != 0)
                    return 0;
        }
    return 1;
}

/* The windows the shortcut must skip: all-zero windows as the kernel visits them (each output pixel,
 * each pass of PASS_FILTERS filters, each conv position of its clipped pool window; the generic kernel
 * keeps the shared column of overlapping pool windows instead of revisiting it), 0 when it does not
 * apply. */
static uint32_t expected_skips(const ebnn_conv_params_t *p)
{
    uint32_t count = 0;
    int oy, ox, cy, cx, passes = (p->out_c + PASS_FILTERS - 1) / PASS_FILTERS;
    int reuse = !EBNN_BYTE_KERNELS && p->pool_w == p->pool_sw + 1 && p->out_c <= EBNN_CHUNK;
    if (p->input_mode != EBNN_INPUT_UINT8 || p->q_add != 0 || (p->pad_value && p->pad_q != 0))
        return 0;
    for (oy = 0; oy < p->out_h; oy++) {
        int cached_cx = -1;
        for (ox = 0; ox < p->out_w; ox++) {
            int cy0 = oy * p->pool_sh - p->pool_t, cx0 = ox * p->pool_sw - p->pool_l, last_cx = -1;
            for (cx = cx0; cx < cx0 + p->pool_w; cx++) {
                if (cx < 0 || cx >= p->conv_w)
                    continue;
                last_cx = cx;
                if (reuse && cx == cached_cx)
                    continue;
                for (cy = cy0; cy < cy0 + p->pool_h; cy++)
                    if (cy >= 0 && cy < p->conv_h && window_zero(p, cy, cx))
                        count += (uint32_t)passes;
            }
            if (reuse && last_cx >= 0)
                cached_cx = last_cx;
        }
    }
    return count;
}

/* Mostly-zero inputs. */
static void fill_input(const ebnn_conv_params_t *p, int pattern)
{
    int n = p->in_h * p->in_w * p->in_c, i, k, y, x, c;
    memset(in_u8, 0, (size_t)n);
    switch (pattern) {
    case 0: /* all zero */
        break;
    case 1: /* a few isolated pixels, often at the corners and edges */
        for (k = (int)rnd_below(4); k >= 0; k--) {
            y = rnd_below(3) == 0 ? (rnd_below(2) ? 0 : p->in_h - 1) : (int)rnd_below(p->in_h);
            x = rnd_below(3) == 0 ? (rnd_below(2) ? 0 : p->in_w - 1) : (int)rnd_below(p->in_w);
            c = (int)rnd_below(p->in_c);
            in_u8[(y * p->in_w + x) * p->in_c + c] = (uint8_t)(1 + rnd_below(255));
        }
        break;
    case 2: /* random pixels with a large zero rectangle */
        for (i = 0; i < n; i++)
            in_u8[i] = (uint8_t)rnd();
        {
            int y0 = (int)rnd_below(p->in_h), x0 = (int)rnd_below(p->in_w);
            int y1 = y0 + 1 + (int)rnd_below(p->in_h), x1 = x0 + 1 + (int)rnd_below(p->in_w);
            for (y = y0; y < y1 && y < p->in_h; y++)
                for (x = x0; x < x1 && x < p->in_w; x++)
                    for (c = 0; c < p->in_c; c++)
                        in_u8[(y * p->in_w + x) * p->in_c + c] = 0;
        }
        break;
    case 3: /* sparse: about one pixel in 12, small and large values */
        for (i = 0; i < n; i++)
            if (rnd_below(12) == 0)
                in_u8[i] = (uint8_t)(rnd_below(2) ? 1 + rnd_below(3) : 200 + rnd_below(56));
        break;
    default: /* a digit-like blob of non-zero pixels in a zero frame */
        {
            int y0 = (int)rnd_below(p->in_h), x0 = (int)rnd_below(p->in_w);
            int y1 = y0 + 1 + (int)rnd_below(p->in_h / 2 + 1), x1 = x0 + 1 + (int)rnd_below(p->in_w / 2 + 1);
            for (y = y0; y < y1 && y < p->in_h; y++)
                for (x = x0; x < x1 && x < p->in_w; x++)
                    for (c = 0; c < p->in_c; c++)
                        in_u8[(y * p->in_w + x) * p->in_c + c] = (uint8_t)(rnd_below(3) ? 128 + rnd_below(128) : 0);
        }
        break;
    }
}

/* Fixed geometries first (the shipped models' first layers and edge cases), then random ones. */
static int fixed_geometry(ebnn_conv_params_t *p, int which)
{
    /* in_h in_w in_c kh kw s same pool pool_s pool_same out_c */
    static const int g[][11] = {
        {28, 28, 1, 3, 3, 2, 0, 1, 1, 0, 16}, /* uno_mnist */
        {28, 28, 1, 3, 3, 1, 0, 2, 2, 0, 32}, /* m15_mnist */
        {12, 11, 1, 5, 5, 1, 1, 3, 2, 1, 40}, /* 5x5 (two passes on the byte path), pool off the edge */
        {13, 9, 2, 5, 5, 2, 1, 2, 2, 1, 33},  /* 5x5 stride 2, 2 channels, pool off the edge */
        {10, 10, 3, 7, 7, 2, 1, 3, 2, 1, 70}, /* 147 taps, 70 filters (> every pass) */
        {9, 7, 1, 3, 3, 1, 1, 3, 2, 0, 9},    /* overlapping pool windows (the generic kernel's column reuse) */
    };
    const int *r = g[which];
    memset(p, 0, sizeof(*p));
    p->in_h = (uint16_t)r[0];
    p->in_w = (uint16_t)r[1];
    p->in_c = (uint16_t)r[2];
    p->kh = (uint16_t)r[3];
    p->kw = (uint16_t)r[4];
    p->sh = p->sw = (uint16_t)r[5];
    window(p->in_h, p->kh, p->sh, r[6], &p->conv_h, &p->pad_t);
    window(p->in_w, p->kw, p->sw, r[6], &p->conv_w, &p->pad_l);
    p->pool_h = p->pool_w = (uint16_t)r[7];
    p->pool_sh = p->pool_sw = (uint16_t)r[8];
    window(p->conv_h, p->pool_h, p->pool_sh, r[9], &p->out_h, &p->pool_t);
    window(p->conv_w, p->pool_w, p->pool_sw, r[9], &p->out_w, &p->pool_l);
    p->out_c = (uint16_t)r[10];
    return 1;
}
#define N_FIXED 6

int main(void)
{
    int trial, done = 0, shortcut_trials = 0;
    uint32_t skipped_total = 0;
    for (trial = 0; trial < 600; trial++) {
        ebnn_conv_params_t p;
        int taps, o, i, n_in, status, mode = (trial / 5) % 6, maxabs;
        char what[64];
        uint32_t expect;
        if (trial < N_FIXED * 6 ? !fixed_geometry(&p, trial % N_FIXED) : !random_geometry(&p, 3, MAXO))
            continue;
        taps = p.kh * p.kw * p.in_c;
        n_in = p.in_h * p.in_w * p.in_c;
        if (n_in > MAXV || taps * p.out_c > MAXW)
            continue;
        /* modes: 0-1 and 4 take the shortcut, 2, 3 and 5 must not */
        p.input_mode = EBNN_INPUT_UINT8;
        p.q_mul = (int16_t)(mode == 1 ? 2 : 1);
        p.q_add = (int16_t)(mode == 2 ? (rnd_below(2) ? -128 : 3) : 0);
        p.pad_value = (uint8_t)(mode == 3 || mode == 4 ? 1 : p.pad_value);
        p.pad_q = (int16_t)(mode == 3 ? (rnd_below(2) ? 255 : -1) : 0);
        if (mode == 5) {
            p.input_mode = EBNN_INPUT_SIGN_UINT8;
            p.sign_threshold_u8 = (int16_t)rnd_below(3); /* 0: every pixel is +1, also the zeros */
            p.pad_q = 0;
        }
        fill_input(&p, trial % 5);
        for (i = 0; i < taps * p.out_c; i++)
            w[i] = (uint8_t)(rnd() & 1u);
        for (o = 0; o < p.out_c; o++) {
            pool_min[o] = (uint8_t)(rnd() & 1u);
            /* around 0 (the all-zero windows' accumulator) and beyond */
            thr[o] = rnd_below(2) ? (int32_t)rnd_below(5) - 2 : (int32_t)rnd_below(601) - 300;
        }
        store_conv(w, p.out_c, taps, pool_min, thr, wpk, thr_stored, flip);
        maxabs = p.input_mode == EBNN_INPUT_SIGN_UINT8 ? 1 : p.q_mul * 255 + (p.q_add > 0 ? p.q_add : 0);
        if (-p.q_add > maxabs)
            maxabs = -p.q_add;
        if (p.pad_value && (p.pad_q < 0 ? -p.pad_q : p.pad_q) > maxabs)
            maxabs = p.pad_q < 0 ? -p.pad_q : p.pad_q;
#if EBNN_BYTE_KERNELS /* the byte path requires acc16 */
        p.acc16 = (uint8_t)(taps * maxabs < 32767);
#else
        p.acc16 = (uint8_t)(taps * maxabs < 32767 && rnd_below(4) != 0);
#endif
        for (o = 0; o < p.out_c; o++)
            thr16[o] = (int16_t)thr_stored[o];
        memset(out, 0xA5, sizeof(out));
        ebnn_test_zero_windows = 0;
        status = ebnn_input_conv_u8(&p, in_u8, wpk, p.acc16 ? (const void *)thr16 : (const void *)thr_stored, flip, out);
#if EBNN_BYTE_KERNELS
        if (!p.acc16) {
            CHECK(status == EBNN_ERROR_UNSUPPORTED, "byte path without acc16 must refuse");
            continue;
        }
#endif
        CHECK(status == EBNN_OK, "status");
        snprintf(what, sizeof(what), "trial %d mode %d pattern %d", trial, mode, trial % 5);
        check_conv_bits(&p, out, naive_bit, what);
        expect = expected_skips(&p);
        CHECK(ebnn_test_zero_windows == expect, "trial %d mode %d pattern %d: %lu windows skipped, expected %lu", trial,
              mode, trial % 5, (unsigned long)ebnn_test_zero_windows, (unsigned long)expect);
        skipped_total += ebnn_test_zero_windows;
        shortcut_trials += expect != 0u;
        done++;
    }
    CHECK(done > 300, "too few geometries tried: %d", done);
    CHECK(shortcut_trials > 100 && skipped_total > 5000u, "the shortcut was taken in %d trials, %lu windows",
          shortcut_trials, (unsigned long)skipped_total);
    printf("%d trials, shortcut in %d, %lu windows skipped\n", done, shortcut_trials, (unsigned long)skipped_total);
    return report("test_input_conv_zero");
}
