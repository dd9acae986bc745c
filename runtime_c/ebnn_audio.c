/* ebnn_audio.c - the integer audio front end (see ebnn_audio.h; the arithmetic is
 * keras_ebnn/frontend/audio.py's, step by step, and equal to it bit for bit).
 *
 * Integer ranges: windowed samples are shifted below 2^14 (block floating point), so a complex value's
 * modulus stays below 2^14 * sqrt(2) through the FFT (every butterfly halves its outputs) and each
 * twiddle product sum (|b| * 32767 by Cauchy-Schwarz) fits int32; a bin's power |X|^2 < 2^32 (uint32);
 * the mel sums (power * Q15 weight) are uint64. */
#include "ebnn_internal.h"
#include "ebnn_audio.h"

#include <string.h>

/* The arithmetic needs >> of a negative int32 to be a floor shift (C99: implementation-defined; true
 * on GCC, Clang and every compiler keras-ebnn targets): refuse to compile otherwise. */
typedef char ebnn_audio_needs_arithmetic_shift[(((int32_t)-3) >> 1) == -2 ? 1 : -1];

/* round(64 * log2(1 + (j + 0.5) / 64)), j = 0..63 (keras_ebnn/frontend/audio.py LOG2_TABLE) */
static const uint8_t ebnn_audio_log2_table[64] EBNN_CONST = {
    1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, 15, 16, 18, 19, 20, 21, 22, 23, 25, 26, 27, 28, 29,
    30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 43, 44, 45, 46, 47, 48, 49, 50, 50, 51,
    52, 53, 54, 55, 55, 56, 57, 58, 58, 59, 60, 61, 61, 62, 63, 64};

#define AUDIO_BLOCK_BITS 14

static uint32_t audio_bit_length32(uint32_t v)
{
    uint32_t b = 0;
    if (v >> 16) { v >>= 16; b += 16; }
    if (v >> 8) { v >>= 8; b += 8; }
    if (v >> 4) { v >>= 4; b += 4; }
    if (v >> 2) { v >>= 2; b += 2; }
    if (v >> 1) { v >>= 1; b += 1; }
    return b + v; /* v is 0 or 1 here */
}

/* The uint8 feature of a band energy E (block shift r of the frame). */
static uint8_t audio_feature(const ebnn_audio_config_t *cfg, uint64_t e, uint32_t r)
{
    int32_t level = 0, d;
    if (e != 0) {
        uint32_t hi = (uint32_t)(e >> 32);
        uint32_t b = hi ? 32u + audio_bit_length32(hi) - 1u : audio_bit_length32((uint32_t)e) - 1u;
        uint32_t j = (uint32_t)(b >= 6u ? e >> (b - 6u) : e << (6u - b)) & 63u;
        level = (int32_t)((b + 2u * r) << 6) + (int32_t)EBNN_READ_U8(&ebnn_audio_log2_table[j]);
    }
    d = level - cfg->log_offset;
    if (d <= 0) {
        return 0;
    }
    d >>= cfg->log_shift;
    return (uint8_t)(d > 255 ? 255 : d);
}

static int audio_config_ok(const ebnn_audio_config_t *c)
{
    uint32_t n;
    if (c == NULL || c->window == NULL || c->cos_q15 == NULL || c->sin_q15 == NULL || c->mel_band == NULL ||
        c->mel_weight == NULL) {
        return 0;
    }
    n = c->fft_size;
    return n >= 16u && n <= 4096u && (n & (n - 1u)) == 0 && c->frame_length >= 1u && c->frame_length <= n &&
           c->frame_step >= 1u && c->mel_bands >= 1u && c->mel_bands <= 254u && c->num_frames >= 1u &&
           c->log_shift <= 16u;
}

/* |X|^2 of bin k from a = z[k] and b = conj(z[m - k]) (c, s: cos and sin of 2 pi k / fft_size, Q15). */
static uint32_t audio_bin_power(int32_t ar, int32_t ai, int32_t br, int32_t bi, int32_t c, int32_t s)
{
    int32_t er = (ar + br) >> 1, ei = (ai + bi) >> 1, or_ = (ar - br) >> 1, oi = (ai - bi) >> 1;
    int32_t xr = er + ((c * oi - s * or_) >> 15);
    int32_t xi = ei - ((c * or_ + s * oi) >> 15);
    uint32_t ur = xr < 0 ? (uint32_t)0 - (uint32_t)xr : (uint32_t)xr;
    uint32_t ui = xi < 0 ? (uint32_t)0 - (uint32_t)xi : (uint32_t)xi;
    return ur * ur + ui * ui;
}

EBNN_API int ebnn_audio_frame(const ebnn_audio_config_t *cfg, const int16_t *ring, uint32_t start, int32_t *work,
                              uint8_t *out)
{
    uint32_t n, m, len, i, j, half, r, k, maxabs = 0, cur;
    uint64_t acc0 = 0, acc1 = 0;
    if (!audio_config_ok(cfg) || ring == NULL || work == NULL || out == NULL || start >= cfg->frame_length) {
        return EBNN_ERROR_ARGUMENT;
    }
    n = cfg->fft_size;
    m = n >> 1;
    len = cfg->frame_length;
    /* 1. window (oldest sample first: ring[start..len-1], then ring[0..start-1]), the largest magnitude */
    for (i = 0, j = start; i < len; i++, j++) {
        int32_t p;
        uint32_t a;
        if (j == len) {
            j = 0;
        }
        p = (int32_t)ring[j] * (int32_t)EBNN_READ_I16(&cfg->window[i]);
        a = p < 0 ? (uint32_t)0 - (uint32_t)p : (uint32_t)p;
        work[i] = p;
        maxabs = a > maxabs ? a : maxabs;
    }
    for (; i < n; i++) {
        work[i] = 0;
    }
    /* 2. block floating point: below 2^14 (applied while reordering, below) */
    r = audio_bit_length32(maxabs);
    r = r > AUDIO_BLOCK_BITS ? r - AUDIO_BLOCK_BITS : 0u;
    /* 3. complex FFT of m points z[q] = (v[2q], v[2q+1]): bit-reversed order (each value shifted by r
     * once), then radix-2 stages */
    for (i = 0, j = 0; i < m; i++) {
        uint32_t bit;
        if (i < j) {
            int32_t t0 = work[2 * i] >> r, t1 = work[2 * i + 1] >> r;
            work[2 * i] = work[2 * j] >> r;
            work[2 * i + 1] = work[2 * j + 1] >> r;
            work[2 * j] = t0;
            work[2 * j + 1] = t1;
        } else if (i == j) {
            work[2 * i] >>= r;
            work[2 * i + 1] >>= r;
        }
        bit = m >> 1;
        while (bit && (j & bit)) {
            j ^= bit;
            bit >>= 1;
        }
        j |= bit;
    }
    for (half = 1; half < m; half <<= 1) {
        uint32_t span = half << 1, step = n / span, g;
        for (k = 0; k < half; k++) {
            int32_t c = EBNN_READ_I16(&cfg->cos_q15[k * step]);
            int32_t s = EBNN_READ_I16(&cfg->sin_q15[k * step]);
            for (g = k; g < m; g += span) {
                int32_t *a = work + 2 * g, *b = work + 2 * (g + half);
                int32_t tr = (b[0] * c + b[1] * s) >> 15;
                int32_t ti = (b[1] * c - b[0] * s) >> 15;
                int32_t ar = a[0], ai = a[1];
                a[0] = (ar + tr) >> 1;
                a[1] = (ai + ti) >> 1;
                b[0] = (ar - tr) >> 1;
                b[1] = (ai - ti) >> 1;
            }
        }
    }
    /* 4. the real FFT's bins X[k], k = 0..m, from z[k] and conj(z[m - k]), and their powers |X[k]|^2
     * (uint32), in place: P[k] goes where z[k].re was (k and m - k are computed together, both
     * from z), P[m] where z[0].im was */
    {
        uint32_t *pw = (uint32_t *)work; /* the same objects as unsigned (C99 6.5p7) */
        int32_t xr = work[0] + work[1], xi = work[0] - work[1];
        uint32_t u0 = xr < 0 ? (uint32_t)0 - (uint32_t)xr : (uint32_t)xr;
        uint32_t u1 = xi < 0 ? (uint32_t)0 - (uint32_t)xi : (uint32_t)xi;
        pw[0] = u0 * u0;
        pw[1] = u1 * u1;
        for (k = 1; k <= m - k; k++) {
            uint32_t q = m - k, pk, pq;
            int32_t zkr = work[2 * k], zki = work[2 * k + 1], zqr = work[2 * q], zqi = work[2 * q + 1];
            pk = audio_bin_power(zkr, zki, zqr, -zqi, EBNN_READ_I16(&cfg->cos_q15[k]), EBNN_READ_I16(&cfg->sin_q15[k]));
            pq = k == q ? pk : audio_bin_power(zqr, zqi, zkr, -zki, EBNN_READ_I16(&cfg->cos_q15[q]),
                                               EBNN_READ_I16(&cfg->sin_q15[q]));
            pw[2 * k] = pk;
            pw[2 * q] = pq;
        }
    }
    /* 5.-7. the mel sums (bands in increasing order: a band is complete once a bin of a later band is
     * reached), their logs, the features */
    cur = 0;
    for (k = 0; k <= m; k++) {
        const uint32_t *pw = (const uint32_t *)work;
        uint32_t band = EBNN_READ_U8(&cfg->mel_band[k]), w, power;
        if (band == 255u) {
            continue;
        }
        power = pw[k == m ? 1u : 2u * k];
        while (cur < band) { /* bands before `band` get nothing more */
            if (cur >= 1u) {
                out[cur - 1u] = audio_feature(cfg, acc0, r);
            }
            acc0 = acc1;
            acc1 = 0;
            cur++;
        }
        w = (uint16_t)EBNN_READ_I16((const int16_t *)&cfg->mel_weight[k]);
        acc0 += (uint64_t)power * (32768u - w);
        acc1 += (uint64_t)power * w;
    }
    while (cur <= cfg->mel_bands) {
        if (cur >= 1u) {
            out[cur - 1u] = audio_feature(cfg, acc0, r);
        }
        acc0 = acc1;
        acc1 = 0;
        cur++;
    }
    return EBNN_OK;
}

EBNN_API void ebnn_audio_reset(ebnn_audio_t *st)
{
    const ebnn_audio_config_t *c = st->cfg;
    memset(st->ring, 0, (size_t)c->frame_length * sizeof(int16_t));
    memset(st->features, 0, (size_t)EBNN_AUDIO_FEATURES(c->num_frames, c->mel_bands));
    st->ring_pos = 0;
    st->pending = c->frame_length;
    st->frame_pos = 0;
    st->frames = 0;
}

EBNN_API int ebnn_audio_init(ebnn_audio_t *st, const ebnn_audio_config_t *cfg, int16_t *ring, int32_t *work,
                             uint8_t *features)
{
    if (st == NULL || !audio_config_ok(cfg) || ring == NULL || work == NULL || features == NULL) {
        return EBNN_ERROR_ARGUMENT;
    }
    st->cfg = cfg;
    st->ring = ring;
    st->work = work;
    st->features = features;
    ebnn_audio_reset(st);
    return EBNN_OK;
}

EBNN_API uint32_t ebnn_audio_push(ebnn_audio_t *st, const int16_t *samples, uint32_t n)
{
    const ebnn_audio_config_t *c = st->cfg;
    uint32_t made = 0, bands = c->mel_bands, len = c->frame_length, pos = st->ring_pos, pending = st->pending;
    int16_t *ring = st->ring;
    while (n > 0) {
        /* copy a run: up to the next frame, the ring's end, or the samples' end */
        uint32_t k = pending < len - pos ? pending : len - pos, i;
        k = k < n ? k : n;
        for (i = 0; i < k; i++) {
            ring[pos + i] = samples[i];
        }
        samples += k;
        n -= k;
        pos += k;
        pending -= k;
        if (pos == len) {
            pos = 0;
        }
        if (pending == 0) {
            uint8_t *slot = st->features + (uint32_t)st->frame_pos * bands;
            (void)ebnn_audio_frame(c, ring, pos, st->work, slot);
            memcpy(slot + (uint32_t)c->num_frames * bands, slot, (size_t)bands);
            if (++st->frame_pos == c->num_frames) {
                st->frame_pos = 0;
            }
            pending = c->frame_step;
            st->frames++;
            made++;
        }
    }
    st->ring_pos = (uint16_t)pos;
    st->pending = (uint16_t)pending;
    return made;
}

EBNN_API const uint8_t *ebnn_audio_window(const ebnn_audio_t *st)
{
    return st->features + (uint32_t)st->frame_pos * st->cfg->mel_bands;
}
