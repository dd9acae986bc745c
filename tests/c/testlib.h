/* Shared helpers for the kernel unit tests: a small RNG, naive bit access, TF-style geometry and the
 * weight packers of ebnn.h's layouts. The naive reference loops live in each test file. */
#ifndef TESTLIB_H
#define TESTLIB_H
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "ebnn.h"

#if defined(__GNUC__)
#define TESTLIB_FN static __attribute__((unused))
#else
#define TESTLIB_FN static
#endif

TESTLIB_FN uint32_t rng_state = 12345u;
TESTLIB_FN uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}
TESTLIB_FN uint32_t rnd_below(uint32_t n) { return rnd() % n; }

TESTLIB_FN int get_bit(const uint32_t *p, uint32_t i) { return (int)((p[i >> 5] >> (i & 31u)) & 1u); }
TESTLIB_FN void set_bit(uint32_t *p, uint32_t i, int v)
{
    if (v)
        p[i >> 5] |= 1u << (i & 31u);
    else
        p[i >> 5] &= ~(1u << (i & 31u));
}

/* TF padding: output size and leading pad along one axis. */
TESTLIB_FN void window(int size, int k, int s, int same, uint16_t *out, uint16_t *pad)
{
    if (same) {
        int o = (size + s - 1) / s;
        int total = (o - 1) * s + k - size;
        *out = (uint16_t)o;
        *pad = (uint16_t)(total > 0 ? total / 2 : 0);
    } else {
        *out = (uint16_t)((size - k) / s + 1);
        *pad = 0;
    }
}

/* Random geometry: returns 0 if it does not fit. */
TESTLIB_FN int random_geometry(ebnn_conv_params_t *p, int max_c, int max_o)
{
    static const int kernels[] = {1, 2, 3, 5, 7};
    int same = (int)rnd_below(2), pool = (int)rnd_below(3);
    memset(p, 0, sizeof(*p));
    p->in_h = (uint16_t)(3 + rnd_below(12));
    p->in_w = (uint16_t)(3 + rnd_below(12));
    p->in_c = (uint16_t)(1 + rnd_below((uint32_t)max_c));
    p->kh = (uint16_t)kernels[rnd_below(5)];
    p->kw = rnd_below(4) ? p->kh : (uint16_t)kernels[rnd_below(5)];
    p->sh = (uint16_t)(1 + rnd_below(2));
    p->sw = p->sh;
    if (!same && (p->kh > p->in_h || p->kw > p->in_w))
        same = 1;
    window(p->in_h, p->kh, p->sh, same, &p->conv_h, &p->pad_t);
    window(p->in_w, p->kw, p->sw, same, &p->conv_w, &p->pad_l);
    p->pad_value = (uint8_t)(same ? rnd_below(2) : 0);
    if (pool == 0) {
        p->pool_h = p->pool_w = p->pool_sh = p->pool_sw = 1;
        p->out_h = p->conv_h;
        p->out_w = p->conv_w;
    } else {
        int psame = (int)rnd_below(2);
        p->pool_h = p->pool_w = (uint16_t)(2 + rnd_below(2));
        p->pool_sh = p->pool_sw = (uint16_t)(1 + rnd_below(3));
        if (!psame && (p->pool_h > p->conv_h || p->pool_w > p->conv_w))
            psame = 1;
        window(p->conv_h, p->pool_h, p->pool_sh, psame, &p->out_h, &p->pool_t);
        window(p->conv_w, p->pool_w, p->pool_sw, psame, &p->out_w, &p->pool_l);
    }
    p->out_c = (uint16_t)(1 + rnd_below((uint32_t)max_o));
    return p->out_h > 0 && p->out_w > 0;
}

/* The generator's storage of a conv block (see ebnn.h): min-pooled channels get inverted weights,
 * threshold 1 - t (integer) and a flip bit. Filter-major rows of row_words words. */
TESTLIB_FN void store_conv(const uint8_t *w, int n_o, int taps, const uint8_t *pool_min, const int32_t *thr,
                           uint32_t *wpk, int32_t *thr_out, uint32_t *flip)
{
    uint32_t row_words = ((uint32_t)taps + 31u) / 32u;
    int o, t;
    memset(wpk, 0, sizeof(uint32_t) * (size_t)n_o * row_words);
    memset(flip, 0, sizeof(uint32_t) * (size_t)((n_o + 31) / 32));
    for (o = 0; o < n_o; o++) {
        for (t = 0; t < taps; t++)
            if ((w[o * taps + t] != 0) != (pool_min[o] != 0))
                wpk[(uint32_t)o * row_words + (uint32_t)t / 32u] |= (uint32_t)1 << (t % 32);
        if (pool_min[o])
            flip[o / 32] |= (uint32_t)1 << (o % 32);
        if (thr != NULL)
            thr_out[o] = pool_min[o] ? 1 - thr[o] : thr[o];
    }
}

/* Row packing (binary conv filters, dense rows): row o from word o * row_words. */
TESTLIB_FN void pack_rows(const uint8_t *w, int rows, int n, uint32_t row_words, uint32_t *out)
{
    int r, i;
    memset(out, 0, sizeof(uint32_t) * (size_t)(rows * (int)row_words));
    for (r = 0; r < rows; r++)
        for (i = 0; i < n; i++)
            set_bit(out + r * (int)row_words, (uint32_t)i, w[r * n + i]);
}

TESTLIB_FN int failures = 0, checks = 0;
#define CHECK(cond, ...)                                                                            \
    do {                                                                                            \
        checks++;                                                                                   \
        if (!(cond)) {                                                                              \
            failures++;                                                                             \
            if (failures < 10) {                                                                    \
                printf("FAIL %s:%d: ", __FILE__, __LINE__);                                         \
                printf(__VA_ARGS__);                                                                \
                printf("\n");                                                                       \
            }                                                                                       \
        }                                                                                           \
    } while (0)

TESTLIB_FN int report(const char *name)
{
    printf("%s: %d passed, %d failed\n", name, checks - failures, failures);
    return failures != 0;
}

/* Every output bit of a conv kernel (HWC bit order) against want(p, o, oy, ox); the first mismatches
 * are printed with `what` (e.g. the trial) and the geometry. */
TESTLIB_FN void check_conv_bits(const ebnn_conv_params_t *p, const uint32_t *out,
                                int (*want)(const ebnn_conv_params_t *, int, int, int), const char *what)
{
    int oy, ox, o;
    for (oy = 0; oy < p->out_h; oy++)
        for (ox = 0; ox < p->out_w; ox++)
            for (o = 0; o < p->out_c; o++) {
                uint32_t bit = (uint32_t)((oy * p->out_w + ox) * p->out_c + o);
                CHECK(get_bit(out, bit) == want(p, o, oy, ox),
                      "%s k%dx%d s%d pad%d/%d/%d c%d o%d pool%d/%d at (%d,%d,%d)", what, p->kh, p->kw, p->sh,
                      p->pad_t, p->pad_value, p->pad_q, p->in_c, p->out_c, p->pool_h, p->pool_sh, oy, ox, o);
            }
}

/* The naive pooled accumulator of filter o at pooled position (oy, ox): the max (or, with use_min, the
 * min) of acc(p, o, cy, cx) over the pool window's convolution positions inside the map. */
TESTLIB_FN double naive_pool(const ebnn_conv_params_t *p, double (*acc)(const ebnn_conv_params_t *, int, int, int),
                             int o, int oy, int ox, int use_min)
{
    int py, px, first = 1;
    double agg = 0;
    for (py = 0; py < p->pool_h; py++)
        for (px = 0; px < p->pool_w; px++) {
            int cy = oy * p->pool_sh - p->pool_t + py, cx = ox * p->pool_sw - p->pool_l + px;
            double a;
            if (cy < 0 || cy >= p->conv_h || cx < 0 || cx >= p->conv_w)
                continue;
            a = acc(p, o, cy, cx);
            if (first || (use_min ? a < agg : a > agg))
                agg = a;
            first = 0;
        }
    return agg;
}

#endif
