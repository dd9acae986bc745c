/* ebnn_elementwise.c - graph ops: type conversions, affine, activations, add, sign / threshold to bits,
 * concatenation, argmax.
 *
 * Semantics: keras_ebnn/ir/graph.py (ops "to_float", "affine", "activation", "add", "sign", "threshold",
 * "concat", "div"), defined by keras_ebnn/ir/graph_reference.py. Every float32 result is the reference's
 * sequence of float32 operations (an affine's product goes through a volatile float: never an FMA), so
 * it is bit-identical, except tanh and sigmoid, which use the C library's tanhf / expf (EBNN_ACT_LIBM,
 * ebnn.h: a model without them can leave libm out). Elements are in
 * row-major order with `channels` the last axis (n a multiple of it). affine, activation, add and
 * i32_to_f32 may work in place (out == in). Uses ebnn_bits.c (bit reads and writer). */

#include "ebnn_internal.h"

#if EBNN_ACT_LIBM
#include <math.h> /* tanhf, expf: ebnn_activation_f32's tanh and sigmoid only (see EBNN_ACT_LIBM) */
#endif

EBNN_API int ebnn_bits_to_f32(uint32_t n, const uint32_t *in, float *out)
{
    uint32_t i;
    if (in == NULL || out == NULL)
        return EBNN_ERROR_ARGUMENT;
    for (i = 0; i < n; i++)
        out[i] = ebnn_read_bits(in, i, 1u) != 0u ? 1.0f : -1.0f;
    return EBNN_OK;
}

EBNN_API int ebnn_i32_to_f32(uint32_t n, uint32_t channels, const int32_t *in, const int32_t *divisor,
                             uint32_t n_divisor, float *out)
{
    uint32_t pos, c, i = 0;
    if (in == NULL || out == NULL)
        return EBNN_ERROR_ARGUMENT;
    if (divisor == NULL) {
        for (i = 0; i < n; i++)
            out[i] = EBNN_F32((float)in[i]);
        return EBNN_OK;
    }
    if (channels == 0u || n % channels != 0u || (n_divisor != 1u && n_divisor != n / channels))
        return EBNN_ERROR_ARGUMENT;
    for (pos = 0; pos < n / channels; pos++) {
        /* (float)v rounds like numpy's int -> float32 (exact below 2^24); then one rounded division */
        float d = EBNN_F32((float)EBNN_READ_I32(&divisor[n_divisor == 1u ? 0u : pos]));
        for (c = 0; c < channels; c++, i++)
            out[i] = EBNN_F32(EBNN_F32((float)in[i]) / d);
    }
    return EBNN_OK;
}

EBNN_API int ebnn_affine_f32(uint32_t n, uint32_t channels, const float *in, const float *a, const float *b,
                             uint32_t n_ab, float *out)
{
    uint32_t c, i = 0;
    if (in == NULL || a == NULL || b == NULL || out == NULL)
        return EBNN_ERROR_ARGUMENT;
    if (channels == 0u || n % channels != 0u || (n_ab != 1u && n_ab != channels))
        return EBNN_ERROR_ARGUMENT;
    while (i < n) {
        for (c = 0; c < channels; c++, i++) {
            uint32_t k = n_ab == 1u ? 0u : c;
            volatile float product = in[i] * EBNN_READ_F32(&a[k]); /* rounded: never fused with the add */
            out[i] = EBNN_F32(product + EBNN_READ_F32(&b[k]));
        }
    }
    return EBNN_OK;
}

EBNN_API int ebnn_div_f32(uint32_t n, uint32_t channels, const float *in, const float *d, uint32_t n_d, float *out)
{
    uint32_t c, i = 0;
    if (in == NULL || d == NULL || out == NULL)
        return EBNN_ERROR_ARGUMENT;
    if (channels == 0u || n % channels != 0u || (n_d != 1u && n_d != channels))
        return EBNN_ERROR_ARGUMENT;
    while (i < n)
        for (c = 0; c < channels; c++, i++)
            out[i] = EBNN_F32(in[i] / EBNN_READ_F32(&d[n_d == 1u ? 0u : c])); /* one rounded division */
    return EBNN_OK;
}

/* numpy.maximum(x, lo) / numpy.minimum(x, hi) for a constant bound: x if it wins or is NaN, else the
 * bound (so maximum(-0.0f, 0.0f) is +0.0f, as in numpy). */
static float elem_max(float x, float lo)
{
    return (x > lo || x != x) ? x : lo;
}

static float elem_min(float x, float hi)
{
    return (x < hi || x != x) ? x : hi;
}

EBNN_API int ebnn_activation_f32(uint32_t n, uint8_t fn, float alpha, const float *in, float *out)
{
    uint32_t i;
    if (in == NULL || out == NULL || fn > EBNN_ACT_SIGMOID)
        return EBNN_ERROR_ARGUMENT;
#if !EBNN_ACT_LIBM
    if (fn == EBNN_ACT_TANH || fn == EBNN_ACT_SIGMOID)
        return EBNN_ERROR_UNSUPPORTED; /* compiled without the C library's tanhf / expf */
#endif
    for (i = 0; i < n; i++) {
        float x = in[i], y;
        switch (fn) {
        case EBNN_ACT_RELU:
            y = elem_max(x, 0.0f);
            break;
        case EBNN_ACT_RELU6:
            y = elem_min(elem_max(x, 0.0f), 6.0f);
            break;
        case EBNN_ACT_HARD_TANH:
            y = elem_min(elem_max(x, -1.0f), 1.0f);
            break;
        case EBNN_ACT_LEAKY_RELU:
            y = x >= 0.0f ? x : EBNN_F32(x * alpha);
            break;
#if EBNN_ACT_LIBM
        case EBNN_ACT_TANH:
            y = EBNN_F32(tanhf(x));
            break;
        case EBNN_ACT_SIGMOID:
            y = EBNN_F32(1.0f / EBNN_F32(1.0f + EBNN_F32(expf(-x))));
            break;
#endif
        default: /* not reached: fn checked above */
            y = x;
            break;
        }
        out[i] = y;
    }
    return EBNN_OK;
}

EBNN_API int ebnn_add_f32(uint32_t n, const float *a, const float *b, float *out)
{
    uint32_t i;
    if (a == NULL || b == NULL || out == NULL)
        return EBNN_ERROR_ARGUMENT;
    for (i = 0; i < n; i++)
        out[i] = EBNN_F32(a[i] + b[i]);
    return EBNN_OK;
}

EBNN_API int ebnn_sign_f32(uint32_t n, const float *in, uint32_t *out)
{
    uint32_t i;
    ebnn_bit_writer_t bw;
    if (in == NULL || out == NULL)
        return EBNN_ERROR_ARGUMENT;
    ebnn_bw_init(&bw, out);
    for (i = 0; i < n; i++)
        ebnn_bw_put(&bw, in[i] >= 0.0f ? 1u : 0u, 1u);
    ebnn_bw_flush(&bw);
    return EBNN_OK;
}

EBNN_API int ebnn_sign_i32(uint32_t n, const int32_t *in, uint32_t *out)
{
    uint32_t i;
    ebnn_bit_writer_t bw;
    if (in == NULL || out == NULL)
        return EBNN_ERROR_ARGUMENT;
    ebnn_bw_init(&bw, out);
    for (i = 0; i < n; i++)
        ebnn_bw_put(&bw, in[i] >= 0 ? 1u : 0u, 1u);
    ebnn_bw_flush(&bw);
    return EBNN_OK;
}

/* Flip bit of channel c (bit c & 31 of word c >> 5 of a constant bitmask). */
static uint32_t elem_flip(const uint32_t *flip, uint32_t c)
{
    return (EBNN_READ_U32(&flip[c >> 5]) >> (c & 31u)) & 1u;
}

EBNN_API int ebnn_threshold_f32(uint32_t n, uint32_t channels, const float *in, const float *t, const uint32_t *flip,
                                uint32_t *out)
{
    uint32_t c, i = 0;
    ebnn_bit_writer_t bw;
    if (in == NULL || t == NULL || flip == NULL || out == NULL || channels == 0u || n % channels != 0u)
        return EBNN_ERROR_ARGUMENT;
    ebnn_bw_init(&bw, out);
    while (i < n) {
        for (c = 0; c < channels; c++, i++) {
            float x = elem_flip(flip, c) ? -in[i] : in[i];
            ebnn_bw_put(&bw, x >= EBNN_READ_F32(&t[c]) ? 1u : 0u, 1u);
        }
    }
    ebnn_bw_flush(&bw);
    return EBNN_OK;
}

EBNN_API int ebnn_threshold_i32(uint32_t n, uint32_t channels, const int32_t *in, const int32_t *t,
                                const uint32_t *flip, uint32_t *out)
{
    uint32_t c, i = 0;
    ebnn_bit_writer_t bw;
    if (in == NULL || t == NULL || flip == NULL || out == NULL || channels == 0u || n % channels != 0u)
        return EBNN_ERROR_ARGUMENT;
    ebnn_bw_init(&bw, out);
    while (i < n) {
        for (c = 0; c < channels; c++, i++) {
            int32_t tc = EBNN_READ_I32(&t[c]), x = in[i];
            uint32_t bit;
            if (!elem_flip(flip, c))
                bit = x >= tc;
            else /* -x >= t, without negating INT32_MIN: -x >= INT32_MIN always holds, else x <= -t */
                bit = tc == INT32_MIN || x <= -tc;
            ebnn_bw_put(&bw, bit, 1u);
        }
    }
    ebnn_bw_flush(&bw);
    return EBNN_OK;
}

EBNN_API int ebnn_concat_bits(uint32_t positions, uint32_t n_inputs, const uint32_t *const *inputs,
                              const uint32_t *channels, uint32_t *out)
{
    uint32_t pos, k, c;
    ebnn_bit_writer_t bw;
    if (inputs == NULL || channels == NULL || out == NULL)
        return EBNN_ERROR_ARGUMENT;
    for (k = 0; k < n_inputs; k++)
        if (inputs[k] == NULL)
            return EBNN_ERROR_ARGUMENT;
    ebnn_bw_init(&bw, out);
    for (pos = 0; pos < positions; pos++)
        for (k = 0; k < n_inputs; k++) { /* input k's channels of this position, 32 bits at a time */
            uint32_t ck = channels[k], bit = pos * ck;
            for (c = 0; c < ck; c += 32u) {
                uint_fast8_t n = (uint_fast8_t)(ck - c < 32u ? ck - c : 32u);
                ebnn_bw_put(&bw, ebnn_read_bits(inputs[k], bit + c, n), n);
            }
        }
    ebnn_bw_flush(&bw);
    return EBNN_OK;
}

EBNN_API int ebnn_concat_f32(uint32_t positions, uint32_t n_inputs, const float *const *inputs,
                             const uint32_t *channels, float *out)
{
    uint32_t pos, k, c;
    if (inputs == NULL || channels == NULL || out == NULL)
        return EBNN_ERROR_ARGUMENT;
    for (k = 0; k < n_inputs; k++)
        if (inputs[k] == NULL)
            return EBNN_ERROR_ARGUMENT;
    for (pos = 0; pos < positions; pos++)
        for (k = 0; k < n_inputs; k++) {
            const float *src = inputs[k] + pos * channels[k];
            for (c = 0; c < channels[k]; c++)
                *out++ = src[c];
        }
    return EBNN_OK;
}

EBNN_API int ebnn_argmax_f32(uint32_t n, const float *x)
{
    uint32_t i, best = 0;
    if (x == NULL || n == 0u)
        return EBNN_ERROR_ARGUMENT;
    for (i = 0; i < n; i++) {
        if (x[i] != x[i])
            return (int)i; /* numpy.argmax: the first NaN */
        if (x[i] > x[best])
            best = i;
    }
    return (int)best;
}
