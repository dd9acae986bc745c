/* ebnn_input_conv_f32.c - the first block on a float input: float accumulator (EBNN_INPUT_FLOAT), or
 * the integer one of ebnn_input_conv.c on the input's signs (EBNN_INPUT_SIGN_FLOAT). */

#include "ebnn_internal.h"

/* ==== input convolution, float accumulator ====================================================
 * acc = float32 sum over the taps in (ky, kx, c) order starting from 0.0f, as the reference does;
 * a tap outside the input adds nothing (pad 0) or +-1.0f (pad 1). */
static float conv_position_f32(const ebnn_conv_params_t *p, const float *in, const uint32_t *w, int32_t iy0,
                               int32_t ix0)
{
    float acc = 0.0f;
    uint32_t wbits = 0;
    uint_fast8_t left = 0; /* weight bits left in wbits */
    uint_fast16_t ky, kx, c;
    for (ky = 0; ky < p->kh; ky++) {
        int32_t iy = iy0 + (int32_t)ky;
        for (kx = 0; kx < p->kw; kx++) {
            int32_t ix = ix0 + (int32_t)kx;
            int inside = iy >= 0 && iy < (int32_t)p->in_h && ix >= 0 && ix < (int32_t)p->in_w;
            const float *px = inside ? in + ((uint32_t)iy * p->in_w + (uint32_t)ix) * p->in_c : NULL;
            for (c = 0; c < p->in_c; c++) {
                uint32_t bit;
                if (left == 0u) {
                    wbits = EBNN_READ_U32(w++);
                    left = 32;
                }
                bit = wbits & 1u;
                wbits >>= 1;
                left--;
                if (px != NULL)
                    acc = EBNN_F32(bit ? acc + px[c] : acc - px[c]);
                else if (p->pad_value != 0u)
                    acc = EBNN_F32(bit ? acc + 1.0f : acc - 1.0f);
            }
        }
    }
    return acc;
}

static void input_conv_f32(const ebnn_conv_params_t *p, const float *input, const uint32_t *weights,
                           const float *thr, const uint32_t *flip, uint32_t *output)
{
    uint32_t fwords;
    uint_fast16_t oy, ox, o;
    ebnn_bit_writer_t bw;
    fwords = EBNN_WORDS((uint32_t)p->kh * p->kw * p->in_c);
    ebnn_bw_init(&bw, output);
    for (oy = 0; oy < p->out_h; oy++) {
        uint_fast16_t py0, py1;
        ebnn_clip_window((int32_t)oy * p->pool_sh - p->pool_t, p->pool_h, p->conv_h, &py0, &py1);
        for (ox = 0; ox < p->out_w; ox++) {
            uint_fast16_t px0, px1;
            ebnn_clip_window((int32_t)ox * p->pool_sw - p->pool_l, p->pool_w, p->conv_w, &px0, &px1);
            for (o = 0; o < p->out_c; o++) {
                float best = -EBNN_INFINITY;
                uint_fast16_t py, px;
                for (py = py0; py < py1; py++) {
                    for (px = px0; px < px1; px++) {
                        int32_t iy0 = ebnn_conv_start((int32_t)oy * p->pool_sh + (int32_t)py - p->pool_t, p->sh, p->pad_t);
                        int32_t ix0 = ebnn_conv_start((int32_t)ox * p->pool_sw + (int32_t)px - p->pool_l, p->sw, p->pad_l);
                        float acc = conv_position_f32(p, input, weights + (uint32_t)o * fwords, iy0, ix0);
                        if (acc > best)
                            best = acc;
                    }
                }
                if (ebnn_flip_bits(flip, o, 1u))
                    best = -best; /* min(acc) = -max(-acc): the weights of this channel are negated */
                ebnn_bw_put(&bw, best >= EBNN_READ_F32(&thr[o]) ? 1u : 0u, 1u);
            }
        }
    }
    ebnn_bw_flush(&bw);
}

EBNN_API int ebnn_input_conv_f32(const ebnn_conv_params_t *params, const float *input, const uint32_t *weights,
                        const void *thresholds, const uint32_t *flip, uint32_t *output)
{
    if (params == NULL || input == NULL || weights == NULL || thresholds == NULL || flip == NULL || output == NULL)
        return EBNN_ERROR_ARGUMENT;
    {
        PARAMS_IN_RAM(p, params);
        if (p->input_mode == EBNN_INPUT_SIGN_FLOAT)
            return ebnn_input_conv_int(p, NULL, input, weights, thresholds, flip, output);
        input_conv_f32(p, input, weights, (const float *)thresholds, flip, output);
    }
    return EBNN_OK;
}
