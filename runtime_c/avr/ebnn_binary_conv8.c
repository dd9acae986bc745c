/* avr/ebnn_binary_conv8.c - ebnn_binary_conv for EBNN_BYTE_KERNELS (the AVR default): the generic
 * kernel is ebnn_binary_conv.c. Same results; see README.md for the method. */

#include "ebnn_bytes.h"

#if EBNN_BYTE_KERNELS
/* The same for two patches stored interleaved (a[2j], a[2j+1] = byte j of patch 0, 1): one weight
 * read serves both. */
NOINLINE static void xor_popcount8_x2(const uint8_t *a, const uint8_t *w, uint16_t n, uint16_t *c0, uint16_t *c1)
{
    uint16_t s0 = 0, s1 = 0;
    while (n != 0u) {
        uint8_t k = (uint8_t)(n < SLICE_BYTES ? n : SLICE_BYTES), x0 = 0, x1 = 0;
        n = (uint16_t)(n - k);
        XOR_POP_SLICE2(a, w, k, x0, x1);
        s0 = (uint16_t)(s0 + x0);
        s1 = (uint16_t)(s1 + x1);
    }
    *c0 = s0;
    *c1 = s1;
}

/* popcount((a[j] ^ w[j]) & m[j]) over n bytes. */
static uint16_t xor_popcount8_masked(const uint8_t *a, const uint8_t *w, const uint8_t *m, uint16_t n)
{
    uint16_t count = 0;
    for (; n != 0u; n--)
        count = (uint16_t)(count + POPCOUNT8((*a++ ^ EBNN_READ_U8(w++)) & *m++));
    return count;
}

/* Appends n copies of one bit value (fill = 0 or 0xff). */
static void bw8_run(ebnn_bw8_t *w, uint8_t fill, uint16_t n)
{
    for (; n >= 8u; n = (uint16_t)(n - 8u))
        ebnn_bw8_put(w, fill, 8u);
    if (n != 0u)
        ebnn_bw8_put(w, (uint8_t)(fill & LOW8(n)), (uint8_t)n);
}

/* Appends bits [bit, bit + n) of a RAM bit stream; whole bytes are copied when both sides are
 * byte aligned (e.g. a multiple of 8 channels). Never reads past the byte holding the last bit. */
static void bw8_copy(ebnn_bw8_t *w, const uint8_t *src, uint32_t bit, uint16_t n)
{
    const uint8_t *s = src + (bit >> 3);
    uint8_t sh = (uint8_t)(bit & 7u);
    if (sh == 0u && w->fill == 0u) {
        for (; n >= 8u; n = (uint16_t)(n - 8u)) {
            *w->out = *s++;
            w->out += w->step;
        }
        if (n != 0u)
            ebnn_bw8_put(w, (uint8_t)(*s & LOW8(n)), (uint8_t)n);
        return;
    }
    for (; n >= 8u; n = (uint16_t)(n - 8u), s++)
        ebnn_bw8_put(w, sh == 0u ? *s : (uint8_t)((*s >> sh) | (s[1] << (8u - sh))), 8u);
    if (n != 0u) {
        uint8_t v = (uint8_t)(*s >> sh);
        if (sh + n > 8u)
            v = (uint8_t)(v | (s[1] << (8u - sh)));
        ebnn_bw8_put(w, (uint8_t)(v & LOW8(n)), (uint8_t)n);
    }
}

/* Writes the patch of the window at (iy0, ix0) as bytes `step` apart from `patch` (and, if mask is
 * not NULL, the validity mask likewise); the caller passes a mask exactly when pad_value is 0 and the
 * window is clipped. Returns the number of taps that count. Same rules as build_patch. */
NOINLINE static uint16_t build_patch8(const ebnn_conv_params_t *p, const uint8_t *in, int32_t iy0, int32_t ix0,
                             uint8_t *patch, uint8_t *mask, uint8_t step)
{
    uint_fast16_t ky, ky0, ky1, kx0, kx1;
    uint16_t row = (uint16_t)(p->kw * p->in_c), left, mid;
    uint8_t pad = p->pad_value != 0u ? 0xffu : 0u;
    ebnn_bw8_t pw, mw;
    if (mask == NULL && (p->in_c & 7u) == 0u && iy0 >= 0 && ix0 >= 0 && iy0 + (int32_t)p->kh <= (int32_t)p->in_h &&
        ix0 + (int32_t)p->kw <= (int32_t)p->in_w) { /* unmasked, inside, whole bytes (8k channels): copies */
        uint16_t rb = (uint16_t)(row >> 3), sb = (uint16_t)((p->in_w * p->in_c) >> 3), j;
        const uint8_t *src = in + (((uint16_t)iy0 * p->in_w + (uint16_t)ix0) * p->in_c >> 3);
        for (ky = 0; ky < p->kh; ky++, src += sb)
            for (j = 0; j < rb; j++, patch += step)
                *patch = src[j];
        return (uint16_t)(row * p->kh);
    }
    ebnn_clip_window(iy0, p->kh, p->in_h, &ky0, &ky1);
    ebnn_clip_window(ix0, p->kw, p->in_w, &kx0, &kx1);
    left = (uint16_t)(kx0 * p->in_c);
    mid = (uint16_t)((kx1 - kx0) * p->in_c);
    ebnn_bw8_init(&pw, patch, step);
    ebnn_bw8_init(&mw, mask, step);
    for (ky = 0; ky < p->kh; ky++) {
        if (ky < ky0 || ky >= ky1 || mid == 0u) {
            bw8_run(&pw, pad, row);
            if (mask != NULL)
                bw8_run(&mw, 0u, row);
            continue;
        }
        if (left != 0u)
            bw8_run(&pw, pad, left);
        bw8_copy(&pw, in, ((uint32_t)(iy0 + (int32_t)ky) * p->in_w + (uint32_t)(ix0 + (int32_t)kx0)) * p->in_c, mid);
        if (row != left + mid)
            bw8_run(&pw, pad, (uint16_t)(row - left - mid));
        if (mask != NULL) {
            bw8_run(&mw, 0u, left);
            bw8_run(&mw, 0xffu, mid);
            bw8_run(&mw, 0u, (uint16_t)(row - left - mid));
        }
    }
    ebnn_bw8_flush(&pw);
    if (mask == NULL)
        return (uint16_t)(row * p->kh);
    ebnn_bw8_flush(&mw);
    return (uint16_t)((ky1 - ky0) * mid);
}

/* For n filters from w (rows row_bytes apart) against the nw (1 or 2) interleaved patches of nb bytes
 * (or one patch and its mask): set bit o of bits[] when the larger accumulator valid - 2 * count
 * reaches threshold o; filters whose bit is already set are skipped. */
NOINLINE static void conv_filters8(const uint8_t *patch, const uint8_t *mask, uint8_t nw, uint16_t nb, uint16_t valid,
                                   const uint8_t *w, uint16_t row_bytes, const int16_t *thr, uint8_t n, uint8_t *bits)
{
    for (; n != 0u; bits++) {
        uint8_t cur = *bits, m;
        for (m = 1u; m != 0u && n != 0u; m = (uint8_t)(m << 1), n--, w += row_bytes, thr++) {
            uint16_t c, c1;
            if ((cur & m) != 0u)
                continue;
            if (mask != NULL) {
                c = xor_popcount8_masked(patch, w, mask, nb);
            } else if (nw == 2u) {
                xor_popcount8_x2(patch, w, nb, &c, &c1);
                if (c1 < c)
                    c = c1; /* the larger accumulator */
            } else {
                c = ebnn_xor_popcount8(patch, w, nb);
            }
            if ((int16_t)(uint16_t)(valid - 2u * c) >= EBNN_READ_I16(thr))
                cur |= m;
        }
        *bits = cur;
    }
}

/* Binary conv, byte path. For each output pixel and pass of up to BYTE_CHUNK filters, the windows
 * of its pool window are taken two at a time: both patches are built (interleaved) once for all the
 * filters of the pass, and each weight byte is read once for both. The pooled bit of a filter is the
 * OR over windows of (acc >= threshold) (= max(acc) >= threshold), so a filter whose bit is already
 * 1 skips the remaining windows. Clipped windows with pad 0 are counted one at a time, masked. */
NOINLINE static void binary_conv8(const ebnn_conv_params_t *p, const uint8_t *in, const uint32_t *weights,
                         const int16_t *thresholds, const uint32_t *flip, uint32_t *output, uint8_t *scratch)
{
    uint16_t taps = (uint16_t)(p->kh * p->kw * p->in_c), nb = (uint16_t)((taps + 7u) >> 3);
    uint16_t row_bytes = (uint16_t)(4u * EBNN_WORDS(taps));
    uint8_t *patch = scratch, *mask = scratch + nb; /* two interleaved patches, or a patch and a mask */
    uint_fast16_t oy, ox, o0;
    ebnn_bw8_t bw;
    ebnn_bw8_init(&bw, (uint8_t *)output, 1u);
    for (oy = 0; oy < p->out_h; oy++) {
        uint_fast16_t py0, py1;
        ebnn_clip_window((int32_t)oy * p->pool_sh - p->pool_t, p->pool_h, p->conv_h, &py0, &py1);
        for (ox = 0; ox < p->out_w; ox++) {
            uint_fast16_t px0, px1, nwin;
            ebnn_clip_window((int32_t)ox * p->pool_sw - p->pool_l, p->pool_w, p->conv_w, &px0, &px1);
            nwin = (py1 - py0) * (px1 - px0);
            for (o0 = 0; o0 < p->out_c; o0 = (uint_fast16_t)(o0 + BYTE_CHUNK)) {
                uint8_t n = (uint8_t)(p->out_c - o0 < BYTE_CHUNK ? p->out_c - o0 : BYTE_CHUNK);
                uint8_t bits[BYTE_CHUNK / 8u] = {0};
                uint_fast16_t k = 0, py = py0, px = px0;
                while (k < nwin) {
                    int16_t iy[2], ix[2];
                    uint16_t valid = taps;
                    uint8_t g, nw = (uint8_t)(nwin - k >= 2u ? 2u : 1u);
                    int masked = 0;
                    for (g = 0; g < nw; g++) { /* the next windows, row by row */
                        iy[g] = ebnn_start16((int16_t)(ebnn_start16((int16_t)oy, p->pool_sh, p->pool_t) + (int16_t)py), p->sh,
                                        p->pad_t);
                        ix[g] = ebnn_start16((int16_t)(ebnn_start16((int16_t)ox, p->pool_sw, p->pool_l) + (int16_t)px), p->sw,
                                        p->pad_l);
                        if (++px == px1) {
                            px = px0;
                            py++;
                        }
                        if (p->pad_value == 0u && (iy[g] < 0 || ix[g] < 0 || iy[g] + (int16_t)p->kh > (int16_t)p->in_h ||
                                                   ix[g] + (int16_t)p->kw > (int16_t)p->in_w))
                            masked = 1; /* clipped window, pad 0 */
                    }
                    if (masked && nw == 2u) { /* one window at a time, with its mask: undo the second */
                        nw = 1;
                        if (px == px0) {
                            px = px1 - 1u;
                            py--;
                        } else {
                            px--;
                        }
                    }
                    for (g = 0; g < nw; g++) {
                        uint16_t v = build_patch8(p, in, iy[g], ix[g], patch + g, masked ? mask : NULL, nw);
                        if (masked)
                            valid = v;
                    }
                    k += nw;
                    conv_filters8(patch, masked ? mask : NULL, nw, nb, valid,
                                  (const uint8_t *)weights + (uint32_t)o0 * row_bytes, row_bytes, thresholds + o0, n, bits);
                }
                ebnn_put_pixel_bits8(&bw, bits, flip, o0, n);
            }
        }
    }
    ebnn_finish_output8(&bw, output, (uint32_t)p->out_h * p->out_w * p->out_c);
}

/* The byte path needs acc16 (every accumulator fits int16: true unless a filter has 32767+ taps). */
EBNN_API int ebnn_binary_conv(const ebnn_conv_params_t *params, const uint32_t *input, const uint32_t *weights,
                     const void *thresholds, const uint32_t *flip, uint32_t *output, uint32_t *scratch)
{
    if (params == NULL || input == NULL || weights == NULL || thresholds == NULL || flip == NULL ||
        output == NULL || scratch == NULL)
        return EBNN_ERROR_ARGUMENT;
    {
        PARAMS_IN_RAM(p, params);
        if (!p->acc16 || p->in_h > 32767u || p->in_w > 32767u) { /* int16 accumulators, coordinates */
#if EBNN_BINARY_CONV_FALLBACK
            ebnn_binary_conv32(p, input, weights, thresholds, flip, output, scratch); /* ebnn_binary_conv.c */
            return EBNN_OK;
#else
            return EBNN_ERROR_UNSUPPORTED;
#endif
        }
        binary_conv8(p, (const uint8_t *)input, weights, (const int16_t *)thresholds, flip, output, (uint8_t *)scratch);
    }
    return EBNN_OK;
}
#endif /* EBNN_BYTE_KERNELS */
