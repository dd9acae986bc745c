/* ebnn_bits.c - what every kernel shares: popcounts, the bit writer, float order without float
 * instructions, window clipping, thresholds and flip bits, and a dense row's XOR-popcount.
 * Layouts and options: ebnn.h; see ebnn_internal.h for how the kernel files are built. */

#include "ebnn_internal.h"

/* Unit tests only (-DEBNN_TEST_COUNTERS): ebnn_test_zero_windows counts the conv windows (per pass of
 * filters) that the integer input convolutions skipped as all-zero, to show the shortcut is taken. */
#ifdef EBNN_TEST_COUNTERS
uint32_t ebnn_test_zero_windows = 0;
#endif

/* ==== float order without float instructions ==================================================
 * Comparing float32 values as integers keeps libgcc's soft-float compare routines (~0.25 KB on
 * Cortex-M3, more on M0+) out of FPU-less builds. For non-NaN a and b: ebnn_float_key(a) < ebnn_float_key(b)
 * exactly when a < b, and ebnn_float_key(-0.0f) == ebnn_float_key(+0.0f), as for the float comparison. */
EBNN_INTERNAL uint32_t ebnn_f32_bits(float f)
{
    union { float f; uint32_t u; } v;
    v.f = f;
    return v.u;
}

EBNN_INTERNAL int32_t ebnn_key_of_bits(uint32_t u)
{
    return (u & 0x80000000u) != 0u ? -(int32_t)(u & 0x7fffffffu) : (int32_t)u;
}

EBNN_INTERNAL int32_t ebnn_float_key(float f)
{
    return ebnn_key_of_bits(ebnn_f32_bits(f));
}

EBNN_INTERNAL int ebnn_float_is_nan(float f)
{
    union { float f; uint32_t u; } v;
    v.f = f;
    return (v.u & 0x7fffffffu) > 0x7f800000u;
}

/* ==== popcount ================================================================================ */
#if EBNN_POPCOUNT == EBNN_POPCOUNT_TABLE || EBNN_BYTE_KERNELS
EBNN_INTERNAL const uint8_t ebnn_popcount_table[256] EBNN_CONST POPCOUNT_ALIGN = {
#define B2(n) n, n + 1, n + 1, n + 2
#define B4(n) B2(n), B2(n + 1), B2(n + 1), B2(n + 2)
#define B6(n) B4(n), B4(n + 1), B4(n + 1), B4(n + 2)
    B6(0), B6(1), B6(1), B6(2)
#undef B2
#undef B4
#undef B6
};
#endif

EBNN_HELPER uint32_t ebnn_popcount32(uint32_t x)
{
#if EBNN_POPCOUNT == EBNN_POPCOUNT_BUILTIN
    return (uint32_t)__builtin_popcountl((unsigned long)x);
#elif EBNN_POPCOUNT == EBNN_POPCOUNT_TABLE
    return (uint32_t)(POPCOUNT8(x) + POPCOUNT8(x >> 8) + POPCOUNT8(x >> 16) + POPCOUNT8(x >> 24));
#else
    x = x - ((x >> 1) & 0x55555555u);
    x = (x & 0x33333333u) + ((x >> 2) & 0x33333333u);
    x = (x + (x >> 4)) & 0x0f0f0f0fu;
    return (x * 0x01010101u) >> 24;
#endif
}

#if EBNN_POPCOUNT == EBNN_POPCOUNT_SWAR
/* SWAR down to per-byte counts (each <= 8); the bytes of up to 7 words are summed before the one
 * multiply that adds the 4 bytes (7 * 32 = 224 < 256: no byte overflows). */
#define SWAR_BYTES(x) \
    ((x) = (x) - (((x) >> 1) & 0x55555555u), (x) = ((x) & 0x33333333u) + (((x) >> 2) & 0x33333333u), \
     ((x) + ((x) >> 4)) & 0x0f0f0f0fu)
#endif

EBNN_HELPER uint32_t ebnn_xor_popcount(const uint32_t *a, const uint32_t *w, uint32_t n)
{
    uint32_t count = 0;
#if EBNN_POPCOUNT == EBNN_POPCOUNT_SWAR
    while (n != 0u) {
        uint32_t k = n < 7u ? n : 7u, bytes = 0;
        n -= k;
        do {
            uint32_t x = *a++ ^ EBNN_READ_U32(w++);
            bytes += SWAR_BYTES(x);
        } while (--k != 0u);
        count += (bytes * 0x01010101u) >> 24;
    }
#elif EBNN_POPCOUNT == EBNN_POPCOUNT_TABLE
    /* byte by byte: popcount of the whole range does not depend on the byte order */
    const uint8_t *pa = (const uint8_t *)a, *pw = (const uint8_t *)w;
    for (; n != 0u; n--, pa += 4, pw += 4)
        count += (uint32_t)(POPCOUNT8(pa[0] ^ EBNN_READ_U8(pw)) + POPCOUNT8(pa[1] ^ EBNN_READ_U8(pw + 1)) +
                            POPCOUNT8(pa[2] ^ EBNN_READ_U8(pw + 2)) + POPCOUNT8(pa[3] ^ EBNN_READ_U8(pw + 3)));
#else
    for (; n != 0u; n--)
        count += ebnn_popcount32(*a++ ^ EBNN_READ_U32(w++));
#endif
    return count;
}

EBNN_HELPER uint32_t ebnn_xor_popcount_masked(const uint32_t *a, const uint32_t *w, const uint32_t *m, uint32_t n)
{
    uint32_t count = 0;
#if EBNN_POPCOUNT == EBNN_POPCOUNT_SWAR
    while (n != 0u) {
        uint32_t k = n < 7u ? n : 7u, bytes = 0;
        n -= k;
        do {
            uint32_t x = (*a++ ^ EBNN_READ_U32(w++)) & *m++;
            bytes += SWAR_BYTES(x);
        } while (--k != 0u);
        count += (bytes * 0x01010101u) >> 24;
    }
#elif EBNN_POPCOUNT == EBNN_POPCOUNT_TABLE
    const uint8_t *pa = (const uint8_t *)a, *pw = (const uint8_t *)w, *pm = (const uint8_t *)m;
    for (; n != 0u; n--, pa += 4, pw += 4, pm += 4)
        count += (uint32_t)(POPCOUNT8((pa[0] ^ EBNN_READ_U8(pw)) & pm[0]) + POPCOUNT8((pa[1] ^ EBNN_READ_U8(pw + 1)) & pm[1]) +
                            POPCOUNT8((pa[2] ^ EBNN_READ_U8(pw + 2)) & pm[2]) + POPCOUNT8((pa[3] ^ EBNN_READ_U8(pw + 3)) & pm[3]));
#else
    for (; n != 0u; n--)
        count += ebnn_popcount32((*a++ ^ EBNN_READ_U32(w++)) & *m++);
#endif
    return count;
}

/* ==== bit streams ============================================================================= */
EBNN_INTERNAL void ebnn_bw_init(ebnn_bit_writer_t *bw, uint32_t *out)
{
    bw->out = out;
    bw->word = 0;
    bw->fill = 0;
}

/* Appends the n low bits of `bits` (1 <= n <= 32; the bits above n must be 0). */
EBNN_INTERNAL void ebnn_bw_put(ebnn_bit_writer_t *bw, uint32_t bits, uint_fast8_t n)
{
    uint_fast8_t fill = bw->fill;
    bw->word |= bits << fill;
    fill = (uint_fast8_t)(fill + n);
    if (fill >= 32u) {
        *bw->out++ = bw->word;
        fill = (uint_fast8_t)(fill - 32u);
        bw->word = fill != 0u ? bits >> (n - fill) : 0u;
    }
    bw->fill = fill;
}

/* n bits (1..32) of a RAM bit stream from bit `bit`, LSB first; never reads past the word holding the
 * last of them (the binary conv's patch copy, the graph ops' bit readers). */
EBNN_INTERNAL uint32_t ebnn_read_bits(const uint32_t *p, uint32_t bit, uint_fast8_t n)
{
    const uint32_t *q = p + (bit >> 5);
    uint_fast8_t s = (uint_fast8_t)(bit & 31u);
    uint32_t v = q[0] >> s;
    if (s + n > 32u)
        v |= q[1] << (32u - s);
    return v & LOW_BITS(n);
}

EBNN_INTERNAL void ebnn_bw_flush(ebnn_bit_writer_t *bw)
{
    if (bw->fill != 0u)
        *bw->out++ = bw->word;
    bw->word = 0;
    bw->fill = 0;
}

/* ==== windows ================================================================================= */
/* Taps [*lo, *hi) of a window of `k` taps starting at `start` that fall inside 0 .. size-1. */
EBNN_INTERNAL void ebnn_clip_window(int32_t start, uint_fast16_t k, uint_fast16_t size, uint_fast16_t *lo, uint_fast16_t *hi)
{
    int32_t a = start < 0 ? -start : 0;
    int32_t b = (int32_t)size - start;
    if (b > (int32_t)k)
        b = (int32_t)k;
    if (b < a)
        b = a;
    *lo = (uint_fast16_t)a;
    *hi = (uint_fast16_t)b;
}

/* Threshold o of a block: int16_t when its accumulators fit int16 (params->acc16), else int32_t. */
EBNN_INTERNAL int32_t ebnn_read_threshold(const void *t, uint32_t o, uint_fast8_t is16)
{
    return is16 ? (int32_t)EBNN_READ_I16((const int16_t *)t + o) : EBNN_READ_I32((const int32_t *)t + o);
}

/* The flip bits of channels o0 .. o0+n-1 (a chunk never straddles a word). */
EBNN_INTERNAL uint32_t ebnn_flip_bits(const uint32_t *flip, uint_fast16_t o0, uint_fast8_t n)
{
    return (EBNN_READ_U32(&flip[o0 >> 5]) >> (o0 & 31u)) & LOW_BITS(n);
}

/* First input row (or column) of the window of convolution output row (column) `pos`. */
EBNN_INTERNAL int32_t ebnn_conv_start(int32_t pos, uint_fast16_t stride, uint_fast16_t pad)
{
    return pos * (int32_t)stride - (int32_t)pad;
}


#if !EBNN_BYTE_KERNELS /* the byte kernels' version: avr/ebnn_bytes.c */
/* popcount(x ^ w) over a row of n_in bits (both zero-padded to the word). */
EBNN_INTERNAL uint32_t ebnn_row_popcount(const uint32_t *x, const uint32_t *w, uint32_t n_in)
{
    return ebnn_xor_popcount(x, w, EBNN_WORDS(n_in));
}
#endif
