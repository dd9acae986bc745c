/* ebnn_binary_conv against a naive loop: random geometries (1x1..7x7 kernels, strides 1-2, valid and
 * same padding with pad values 0 and 1, channels not multiples of 8/32, pool windows off the edge). */
#include "testlib.h"

#define MAXBITS 20000

static uint32_t in[MAXBITS / 32 + 2], out[MAXBITS / 32 + 2], wpk[MAXBITS / 32 + 64 * 2];
static uint8_t w[MAXBITS], pool_min[64];
static int32_t thr[64], thr_stored[64];
static int16_t thr16[64];
static uint32_t flip[2], scratch[2 * (MAXBITS / 32 + 1)];

static int32_t naive_acc(const ebnn_conv_params_t *p, int o, int cy, int cx)
{
    int ky, kx, c;
    int32_t acc = 0;
    int taps = p->kh * p->kw * p->in_c;
    for (ky = 0; ky < p->kh; ky++)
        for (kx = 0; kx < p->kw; kx++)
            for (c = 0; c < p->in_c; c++) {
                int iy = cy * p->sh - p->pad_t + ky, ix = cx * p->sw - p->pad_l + kx;
                int wv = w[o * taps + (ky * p->kw + kx) * p->in_c + c] ? 1 : -1;
                int a;
                if (iy < 0 || iy >= p->in_h || ix < 0 || ix >= p->in_w)
                    a = p->pad_value ? 1 : 0;
                else
                    a = get_bit(in, (uint32_t)((iy * p->in_w + ix) * p->in_c + c)) ? 1 : -1;
                acc += wv * a;
            }
    return acc;
}

static double naive_acc_d(const ebnn_conv_params_t *p, int o, int cy, int cx)
{
    return (double)naive_acc(p, o, cy, cx);
}

static int naive_bit(const ebnn_conv_params_t *p, int o, int oy, int ox)
{
    return naive_pool(p, naive_acc_d, o, oy, ox, pool_min[o]) >= thr[o];
}

int main(void)
{
    int trial, done = 0;
    for (trial = 0; trial < 400; trial++) {
        ebnn_conv_params_t p;
        int taps, o, i;
        char what[64];
        uint32_t in_bits, out_bits;
        if (!random_geometry(&p, 40, 40))
            continue;
        taps = p.kh * p.kw * p.in_c;
        in_bits = (uint32_t)(p.in_h * p.in_w * p.in_c);
        out_bits = (uint32_t)(p.out_h * p.out_w * p.out_c);
        if ((uint32_t)(taps * p.out_c) > MAXBITS || in_bits > MAXBITS || out_bits > MAXBITS)
            continue;
        for (i = 0; i < (int)(in_bits / 32 + 2); i++)
            in[i] = rnd();
        for (i = 0; i < taps * p.out_c; i++)
            w[i] = (uint8_t)(rnd() & 1u);
        for (o = 0; o < p.out_c; o++) {
            pool_min[o] = (uint8_t)(rnd() & 1u);
            thr[o] = (int32_t)rnd_below((uint32_t)(taps / 2 + 3)) - (taps / 4 + 1);
            if (rnd_below(20) == 0)
                thr[o] = (rnd() & 1u) ? taps + 1 : -taps - 1; /* constant channels */
        }
        store_conv(w, p.out_c, taps, pool_min, thr, wpk, thr_stored, flip);
        /* acc16 is true here (taps < 32767): int16 thresholds. The byte path requires it; the generic
         * one also takes int32 thresholds (acc16 = 0). */
#if EBNN_BYTE_KERNELS
        p.acc16 = 1;
#else
        p.acc16 = (uint8_t)(rnd_below(2) != 0);
#endif
        for (o = 0; o < p.out_c; o++)
            thr16[o] = (int16_t)thr_stored[o];
        memset(out, 0xA5, sizeof(out));
        CHECK(ebnn_binary_conv(&p, in, wpk, p.acc16 ? (const void *)thr16 : (const void *)thr_stored, flip, out,
                               scratch) == EBNN_OK,
              "status");
        snprintf(what, sizeof(what), "trial %d", trial);
        check_conv_bits(&p, out, naive_bit, what);
        for (i = (int)out_bits; i < (int)((out_bits + 31u) / 32u * 32u); i++)
            CHECK(get_bit(out, (uint32_t)i) == 0, "unused bits of the last word must be 0 (trial %d)", trial);
        CHECK(out[(out_bits + 31u) / 32u] == 0xA5A5A5A5u, "wrote past the exact buffer (trial %d)", trial);
        done++;
    }
    CHECK(done > 200, "too few geometries tried: %d", done);
    CHECK(ebnn_binary_conv(NULL, in, wpk, thr, flip, out, scratch) == EBNN_ERROR_ARGUMENT, "NULL params");
    return report("test_binary_conv");
}
