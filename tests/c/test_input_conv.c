/* ebnn_input_conv_u8 / ebnn_input_conv_f32 against naive loops, all four input modes. */
#include "testlib.h"

#define MAXV 6000
#define MAXW 20000

static uint8_t in_u8[MAXV], w[MAXW], pool_min[70];
static float in_f[MAXV];
static uint32_t out[MAXV * 70 / 32 + 4], wpk[MAXW / 32 * 2 + 64];
static int32_t thr[70], thr_stored[70];
static int16_t thr16[70];
static float thr_f_stored[70];
static uint32_t flip[3];
static float thr_f[70];

/* accumulator as double: exact for the integer modes; float mode is summed in float below */
static double naive_acc(const ebnn_conv_params_t *p, int o, int cy, int cx)
{
    int ky, kx, c, taps = p->kh * p->kw * p->in_c;
    double acc = 0.0;
    float facc = 0.0f;
    for (ky = 0; ky < p->kh; ky++)
        for (kx = 0; kx < p->kw; kx++)
            for (c = 0; c < p->in_c; c++) {
                int iy = cy * p->sh - p->pad_t + ky, ix = cx * p->sw - p->pad_l + kx;
                int inside = iy >= 0 && iy < p->in_h && ix >= 0 && ix < p->in_w;
                int idx = (iy * p->in_w + ix) * p->in_c + c;
                int wv = w[o * taps + (ky * p->kw + kx) * p->in_c + c] ? 1 : -1;
                double v;
                if (!inside && !p->pad_value)
                    continue;
                switch (p->input_mode) {
                case EBNN_INPUT_UINT8: v = inside ? p->q_mul * in_u8[idx] + p->q_add : p->pad_q; break;
                case EBNN_INPUT_SIGN_UINT8: v = inside ? (in_u8[idx] >= p->sign_threshold_u8 ? 1 : -1) : 1; break;
                case EBNN_INPUT_SIGN_FLOAT: v = inside ? (in_f[idx] >= p->sign_threshold_f ? 1 : -1) : 1; break;
                default: v = inside ? in_f[idx] : 1.0; facc = facc + (wv > 0 ? (float)v : -(float)v); continue;
                }
                acc += wv * v;
            }
    return p->input_mode == EBNN_INPUT_FLOAT ? (double)facc : acc;
}

static int naive_bit(const ebnn_conv_params_t *p, int o, int oy, int ox)
{
    double agg = naive_pool(p, naive_acc, o, oy, ox, pool_min[o]);
    if (p->input_mode == EBNN_INPUT_FLOAT)
        return agg >= thr_f[o];
    return agg >= thr[o];
}

int main(void)
{
    int trial, done = 0;
    for (trial = 0; trial < 400; trial++) {
        ebnn_conv_params_t p;
        int taps, o, i, n_in, mode = trial % 4, status;
        char what[64];
        const void *int_thr;
        if (!random_geometry(&p, 4, 70))
            continue;
        taps = p.kh * p.kw * p.in_c;
        n_in = p.in_h * p.in_w * p.in_c;
        if (n_in > MAXV || taps * p.out_c > MAXW)
            continue;
        p.input_mode = (uint8_t)mode;
        p.q_mul = (int16_t)(1 + rnd_below(2));
        p.q_add = (int16_t)(p.q_mul == 2 ? -255 : 0);
        p.pad_q = 255;
        p.sign_threshold_u8 = (int16_t)rnd_below(257);
        p.sign_threshold_f = 0.25f;
        for (i = 0; i < n_in; i++) {
            in_u8[i] = (uint8_t)rnd();
            in_f[i] = (float)((int32_t)rnd_below(2001) - 1000) / 337.0f;
        }
        if (mode == EBNN_INPUT_SIGN_FLOAT) { /* the kernel compares float bits as integers: edge values */
            static const float thresholds_f[] = {0.25f, 0.0f, -0.0f, -1.5f, 1e-45f};
            float special[8];
            special[0] = 0.0f; special[1] = -0.0f; special[2] = EBNN_INFINITY; special[3] = -EBNN_INFINITY;
            special[4] = EBNN_INFINITY - EBNN_INFINITY; /* NaN: never >= the threshold */
            special[5] = 1e-45f; special[6] = -1e-45f;
            p.sign_threshold_f = thresholds_f[rnd_below(5)];
            special[7] = p.sign_threshold_f;
            for (i = 0; i < n_in; i++)
                if (rnd_below(3) == 0u)
                    in_f[i] = special[rnd_below(8)];
        }
        for (i = 0; i < taps * p.out_c; i++)
            w[i] = (uint8_t)(rnd() & 1u);
        for (o = 0; o < p.out_c; o++) {
            int32_t span = mode == EBNN_INPUT_UINT8 ? taps * 255 : taps;
            pool_min[o] = (uint8_t)(rnd() & 1u);
            thr[o] = (int32_t)rnd_below((uint32_t)span / 2u + 3u) - span / 4 - 1;
            thr_f[o] = (float)((int32_t)rnd_below(2001) - 1000) / 500.0f;
        }
        store_conv(w, p.out_c, taps, pool_min, thr, wpk, thr_stored, flip);
        for (o = 0; o < p.out_c; o++)
            thr_f_stored[o] = thr_f[o]; /* float thresholds are stored unchanged */
        /* every value is within +-255 here: acc16 holds iff taps * 255 < 32767 (allows the byte path) */
#if EBNN_BYTE_KERNELS /* the byte path is the only uint8 path there: it requires acc16 */
        p.acc16 = (uint8_t)(taps * 255 < 32767);
#else
        p.acc16 = (uint8_t)(taps * 255 < 32767 && rnd_below(4) != 0); /* then int16 thresholds */
#endif
        for (o = 0; o < p.out_c; o++)
            thr16[o] = (int16_t)thr_stored[o];
        memset(out, 0xA5, sizeof(out));
        int_thr = p.acc16 ? (const void *)thr16 : (const void *)thr_stored;
        if (mode == EBNN_INPUT_UINT8 || mode == EBNN_INPUT_SIGN_UINT8)
            status = ebnn_input_conv_u8(&p, in_u8, wpk, int_thr, flip, out);
        else
            status = ebnn_input_conv_f32(&p, in_f, wpk, mode == EBNN_INPUT_FLOAT ? (const void *)thr_f_stored : int_thr,
                                         flip, out);
#if EBNN_BYTE_KERNELS
        if (!p.acc16 && mode != EBNN_INPUT_FLOAT && mode != EBNN_INPUT_SIGN_FLOAT) {
            CHECK(status == EBNN_ERROR_UNSUPPORTED, "byte path without acc16 must refuse");
            continue;
        }
#endif
        CHECK(status == EBNN_OK, "status");
        snprintf(what, sizeof(what), "trial %d mode %d", trial, mode);
        check_conv_bits(&p, out, naive_bit, what);
        done++;
    }
    CHECK(done > 150, "too few geometries tried: %d", done);
    CHECK(ebnn_input_conv_u8(NULL, in_u8, wpk, thr, flip, out) == EBNN_ERROR_ARGUMENT, "NULL params");
    return report("test_input_conv");
}
