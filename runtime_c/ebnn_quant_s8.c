/* ebnn_quant_s8.c - integer-only graph ops: requantization, lookup-table activations, add,
 * concatenation, bits to int8, int8 threshold to bits, int8 max / average pooling, int32 argmax.
 *
 * Semantics: keras_ebnn/passes/graph_quant.py (ops "requant", "lut", "add_s8", "concat_s8", "bits_to_s8",
 * "avg_pool_s8", "global_avg_s8"; "threshold" and "max_pool" on int8), defined by its run_op and
 * keras_ebnn/ir/graph_reference.py. Integer arithmetic only (ebnn_requant.h): no float anywhere, so a
 * model made of these kernels and the binary ones links no soft-float routine. Elements are in
 * row-major order with the channels last. Uses ebnn_bits.c (bit reads and writer). */

#include "ebnn_requant.h"

static int32_t q_read(const void *in, int type, uint32_t i)
{
    if (type == EBNN_Q_U8)
        return (int32_t)((const uint8_t *)in)[i];
    if (type == EBNN_Q_S8)
        return (int32_t)((const int8_t *)in)[i];
    return ((const int32_t *)in)[i];
}

/* y[i] = clamp(zp_out + offset[c] + mbqm(x[i] - zp_in, m[c], shift[c]), lo, hi), c = i % channels. */
EBNN_API int ebnn_requant(uint32_t n, uint32_t channels, const void *in, int in_type, int32_t zp_in, const int32_t *m,
                          const int8_t *shift, const int32_t *offset, int32_t zp_out, int32_t lo, int32_t hi,
                          void *out, int out_type)
{
    uint32_t c, i = 0;
    if (in == NULL || m == NULL || shift == NULL || offset == NULL || out == NULL || channels == 0u ||
        n % channels != 0u)
        return EBNN_ERROR_ARGUMENT;
    while (i < n) {
        for (c = 0; c < channels; c++, i++) {
            int32_t r = ebnn_mbqm(q_read(in, in_type, i) - zp_in, EBNN_READ_I32(&m[c]), (int32_t)EBNN_READ_S8(&shift[c]));
            int32_t y = ebnn_clamp64((int64_t)zp_out + EBNN_READ_I32(&offset[c]) + r, lo, hi);
            if (out_type == EBNN_Q_S8)
                ((int8_t *)out)[i] = (int8_t)y;
            else
                ((int32_t *)out)[i] = y;
        }
    }
    return EBNN_OK;
}

/* out[i] = table[in[i] + 128] */
EBNN_API int ebnn_lut_s8(uint32_t n, const int8_t *in, const int8_t *table, int8_t *out)
{
    uint32_t i;
    if (in == NULL || table == NULL || out == NULL)
        return EBNN_ERROR_ARGUMENT;
    for (i = 0; i < n; i++)
        out[i] = EBNN_READ_S8(&table[(int32_t)in[i] + 128]);
    return EBNN_OK;
}

/* TFLite's int8 add of n_inputs tensors of n elements (keras_ebnn/passes/graph_quant.py "add_s8"). */
EBNN_API int ebnn_add_s8(uint32_t n, uint32_t n_inputs, const int8_t *const *inputs, const int32_t *zp,
                         const int32_t *m, const int8_t *shift, int32_t m_out, int32_t shift_out, int32_t zp_out,
                         int8_t *out)
{
    uint32_t i, k;
    if (inputs == NULL || zp == NULL || m == NULL || shift == NULL || out == NULL)
        return EBNN_ERROR_ARGUMENT;
    for (k = 0; k < n_inputs; k++)
        if (inputs[k] == NULL)
            return EBNN_ERROR_ARGUMENT;
    for (i = 0; i < n; i++) {
        int32_t sum = 0;
        for (k = 0; k < n_inputs; k++) {
            int32_t v = ((int32_t)inputs[k][i] - EBNN_READ_I32(&zp[k])) * ((int32_t)1 << 20);
            sum += ebnn_mbqm(v, EBNN_READ_I32(&m[k]), (int32_t)EBNN_READ_S8(&shift[k]));
        }
        out[i] = (int8_t)ebnn_clamp64((int64_t)zp_out + ebnn_mbqm(sum, m_out, shift_out), -128, 127);
    }
    return EBNN_OK;
}

/* Channel concatenation; input k is copied (copy[k] != 0) or requantized to the output's scale:
 * clamp(zp_out + mbqm(x - zp[k], m[k], shift[k]), -128, 127). */
EBNN_API int ebnn_concat_s8(uint32_t positions, uint32_t n_inputs, const int8_t *const *inputs,
                            const uint16_t *channels, const int32_t *zp, const int32_t *m, const int8_t *shift,
                            const uint8_t *copy, int32_t zp_out, int8_t *out)
{
    uint32_t pos, k, c;
    if (inputs == NULL || channels == NULL || zp == NULL || m == NULL || shift == NULL || copy == NULL ||
        out == NULL)
        return EBNN_ERROR_ARGUMENT;
    for (k = 0; k < n_inputs; k++)
        if (inputs[k] == NULL)
            return EBNN_ERROR_ARGUMENT;
    for (pos = 0; pos < positions; pos++)
        for (k = 0; k < n_inputs; k++) {
            const int8_t *src = inputs[k] + pos * channels[k];
            int32_t zk = EBNN_READ_I32(&zp[k]), mk = EBNN_READ_I32(&m[k]), sk = (int32_t)EBNN_READ_S8(&shift[k]);
            int same = EBNN_READ_U8(&copy[k]) != 0u;
            for (c = 0; c < channels[k]; c++)
                *out++ = same ? src[c]
                              : (int8_t)ebnn_clamp64((int64_t)zp_out + ebnn_mbqm((int32_t)src[c] - zk, mk, sk), -128, 127);
        }
    return EBNN_OK;
}

/* bits -> int8 +1 / -1 */
EBNN_API int ebnn_bits_to_s8(uint32_t n, const uint32_t *in, int8_t *out)
{
    uint32_t i;
    if (in == NULL || out == NULL)
        return EBNN_ERROR_ARGUMENT;
    for (i = 0; i < n; i++)
        out[i] = (int8_t)(ebnn_read_bits(in, i, 1u) != 0u ? 1 : -1);
    return EBNN_OK;
}

/* bit = x >= t[c], or -x >= t[c] where channel c's flip bit is set */
EBNN_API int ebnn_threshold_s8(uint32_t n, uint32_t channels, const int8_t *in, const int32_t *t,
                               const uint32_t *flip, uint32_t *out)
{
    uint32_t c, i = 0;
    ebnn_bit_writer_t bw;
    if (in == NULL || t == NULL || flip == NULL || out == NULL || channels == 0u || n % channels != 0u)
        return EBNN_ERROR_ARGUMENT;
    ebnn_bw_init(&bw, out);
    while (i < n) {
        for (c = 0; c < channels; c++, i++) {
            int32_t x = (int32_t)in[i];
            if ((EBNN_READ_U32(&flip[c >> 5]) >> (c & 31u)) & 1u)
                x = -x;
            ebnn_bw_put(&bw, x >= EBNN_READ_I32(&t[c]) ? 1u : 0u, 1u);
        }
    }
    ebnn_bw_flush(&bw);
    return EBNN_OK;
}

/* The first maximum of n int32 values. */
EBNN_API int ebnn_argmax_i32(uint32_t n, const int32_t *x)
{
    uint32_t i, best = 0;
    if (x == NULL || n == 0u)
        return EBNN_ERROR_ARGUMENT;
    for (i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return (int)best;
}

/* Pools over int8 (avg: sum of x - zp over the in-bounds taps, rounded half away from zero by
 * C division; max: the maximum of the in-bounds taps). Windows as ebnn_window_t (kh, kw = pool). */
static int pool_s8(const ebnn_window_t *gp, const int8_t *in, int32_t zp, int average, int8_t *out)
{
    ebnn_window_t g;
    uint32_t oy, ox, c;
    if (gp == NULL || in == NULL || out == NULL)
        return EBNN_ERROR_ARGUMENT;
    EBNN_COPY_CONST(&g, gp, sizeof(g));
    for (oy = 0; oy < g.out_h; oy++)
        for (ox = 0; ox < g.out_w; ox++)
            for (c = 0; c < g.in_c; c++) {
                int32_t y0 = (int32_t)(oy * g.sh) - (int32_t)g.pad_t, x0 = (int32_t)(ox * g.sw) - (int32_t)g.pad_l;
                int32_t y, x, acc = 0, count = 0;
                for (y = y0 < 0 ? 0 : y0; y < y0 + (int32_t)g.kh && y < (int32_t)g.in_h; y++)
                    for (x = x0 < 0 ? 0 : x0; x < x0 + (int32_t)g.kw && x < (int32_t)g.in_w; x++) {
                        int32_t v = (int32_t)in[((uint32_t)y * g.in_w + (uint32_t)x) * g.in_c + c];
                        if (average)
                            acc += v - zp;
                        else if (count == 0 || v > acc)
                            acc = v;
                        count++;
                    }
                if (average && count > 0)
                    acc = zp + (acc >= 0 ? (acc + count / 2) / count : (acc - count / 2) / count);
                *out++ = (int8_t)acc;
            }
    return EBNN_OK;
}

EBNN_API int ebnn_max_pool_s8(const ebnn_window_t *g, const int8_t *in, int8_t *out)
{
    return pool_s8(g, in, 0, 0, out);
}

EBNN_API int ebnn_avg_pool_s8(const ebnn_window_t *g, const int8_t *in, int32_t zp, int8_t *out)
{
    return pool_s8(g, in, zp, 1, out);
}
