/* mve/ebnn_mve.h - shared piece of the Helium kernels (EBNN_MVE_KERNELS: Arm M-profile Vector
 * Extension, e.g. Cortex-M55/M85): not a public header. The kernels are mve/ebnn_binary_conv_mve.c and
 * mve/ebnn_dense_mve.c; the generic C kernels (ebnn_binary_conv.c, ebnn_dense.c) are the reference. */
#ifndef EBNN_MVE_H
#define EBNN_MVE_H

#include "../ebnn_internal.h"

#if EBNN_MVE_KERNELS
#include <arm_mve.h>

#if defined(__GNUC__)
#define EBNN_MVE_INLINE static inline __attribute__((always_inline))
#else
#define EBNN_MVE_INLINE static inline
#endif

/* ==== four rows at once ========================================================================
 * MVE has no vector popcount instruction (Neon's VCNT has no Helium counterpart), so the counts are
 * SWAR on 128-bit vectors. The four 32-bit lanes hold four *rows* (filters of a conv block, rows of a
 * dense block): lane l reads word k of its row with one gather load, XORs it with word k of the
 * patch or input (the same for all lanes) and counts. Per lane: 2-bit counts, then 4-bit counts
 * (x - 3 * (x >> 2 & 0x33) is (x & 0x33) + (x >> 2 & 0x33) in one multiply-accumulate: each nibble
 * stays in 0..4, no borrow crosses it), the 4-bit counts of up to three words summed (<= 12), then
 * byte counts (s - 15 * (s >> 4), again one multiply-accumulate; <= 24), and a lane's four bytes added
 * up by one multiply (their sum must stay < 256). */

/* The 4-bit counts of v (each nibble of the result: popcount of that nibble of v, 0..4). */
EBNN_MVE_INLINE uint8x16_t ebnn_mve_nibble_counts(uint32x4_t v)
{
    uint8x16_t x = vreinterpretq_u8_u32(v);
    x = vsubq_u8(x, vandq_u8(vshrq_n_u8(x, 1), vdupq_n_u8(0x55u)));
    return vmlaq_n_u8(x, vandq_u8(vshrq_n_u8(x, 2), vdupq_n_u8(0x33u)), (uint8_t)0xfdu); /* 0xfd = -3 */
}

/* The byte counts of the 4-bit counts s (each <= 12): s - 15 * (s >> 4), each <= 24. */
EBNN_MVE_INLINE uint8x16_t ebnn_mve_byte_counts(uint8x16_t s)
{
    return vmlaq_n_u8(s, vshrq_n_u8(s, 4), (uint8_t)0xf1u);
}

/* Adds the byte counts b of a lane's bytes (their sum <= 255) to that lane's count. */
EBNN_MVE_INLINE uint32x4_t ebnn_mve_add_counts(uint32x4_t count, uint8x16_t b)
{
    return vaddq_u32(count, vshrq_n_u32(vmulq_n_u32(vreinterpretq_u32_u8(b), 0x01010101u), 24));
}

/* Word j of the four rows (lane l: word w[off[l] + j]) XOR word j of x, AND word j of m if masked, as
 * 4-bit counts. */
#define EBNN_MVE_WORD(w, off, x, m, j, masked)                                                      \
    ebnn_mve_nibble_counts((masked) ? vandq_u32(veorq_u32(vldrwq_gather_shifted_offset_u32((w) + (j), off), \
                                                          vdupq_n_u32((x)[j])), vdupq_n_u32((m)[j])) \
                                    : veorq_u32(vldrwq_gather_shifted_offset_u32((w) + (j), off), vdupq_n_u32((x)[j])))

/* The byte counts of words 0 .. 2 (three words) of the four rows, as EBNN_MVE_WORD. */
#define EBNN_MVE_WORDS3(w, off, x, m, masked)                                                        \
    ebnn_mve_byte_counts(vaddq_u8(vaddq_u8(EBNN_MVE_WORD(w, off, x, m, 0, masked),                 \
                                           EBNN_MVE_WORD(w, off, x, m, 1, masked)),                 \
                                  EBNN_MVE_WORD(w, off, x, m, 2, masked)))

/* Lane l: popcount(x ^ row_l) over n words, or popcount((x ^ row_l) & m) if masked, where row_l
 * starts at word w + off[l] (weights: uint32_t arrays); x and m are RAM words. Three words at a time.
 * With `merge` (for a constant n: GCC keeps the vector live across the loop badly otherwise), the
 * byte counts of the last one or two words are added to those of the last three (<= 40 per byte)
 * before their lane sums: one lane-sum step fewer. Always inlined, with `masked` and `merge`
 * constants at every call: each loop has no test left in it. */
EBNN_MVE_INLINE uint32x4_t ebnn_mve_xor_popcount4(const uint32_t *x, const uint32_t *m, const uint32_t *w,
                                                  uint32x4_t off, uint32_t n, int masked, int merge)
{
    uint32x4_t count = vdupq_n_u32(0u);
    uint8x16_t b = vdupq_n_u8(0u);
    uint32_t t = n / 3u;
    if (merge && t != 0u)
        t--; /* the last three words: below */
    for (; t != 0u; t--) {
        count = ebnn_mve_add_counts(count, EBNN_MVE_WORDS3(w, off, x, m, masked));
        w += 3;
        x += 3;
        if (masked)
            m += 3;
    }
    if (merge && n >= 3u) {
        b = EBNN_MVE_WORDS3(w, off, x, m, masked);
        w += 3;
        x += 3;
        if (masked)
            m += 3;
    }
    if (n % 3u == 2u) /* the last one or two words */
        b = merge ? vaddq_u8(b, ebnn_mve_byte_counts(vaddq_u8(EBNN_MVE_WORD(w, off, x, m, 0, masked),
                                                              EBNN_MVE_WORD(w, off, x, m, 1, masked))))
                  : ebnn_mve_byte_counts(vaddq_u8(EBNN_MVE_WORD(w, off, x, m, 0, masked),
                                                  EBNN_MVE_WORD(w, off, x, m, 1, masked)));
    else if (n % 3u == 1u)
        b = merge ? vaddq_u8(b, ebnn_mve_byte_counts(EBNN_MVE_WORD(w, off, x, m, 0, masked)))
                  : ebnn_mve_byte_counts(EBNN_MVE_WORD(w, off, x, m, 0, masked));
    else if (!merge)
        return count;
    return ebnn_mve_add_counts(count, b);
}

/* The word offsets of rows 0 .. 3, `stride` words apart; rows beyond the last (lanes - 1, lanes in
 * 1..4) replaced by the last: the gathers never read past the weights. */
EBNN_MVE_INLINE uint32x4_t ebnn_mve_row_offsets(uint32_t lanes, uint32_t stride)
{
    return vmulq_n_u32(vminq_u32(vidupq_n_u32(0u, 1), vdupq_n_u32(lanes - 1u)), stride);
}

/* The bits (lane l -> bit l) of the true (and active) lanes of a comparison, as an integer: a 32-bit
 * lane sets predicate bits 4l .. 4l+3; the multiply by 0x249 (bits 0, 3, 6, 9) moves bits 0, 4, 8, 12
 * to bits 9, 10, 11, 12 and nothing else there (no two of its partial products overlap). */
EBNN_MVE_INLINE uint32_t ebnn_mve_pred_bits(mve_pred16_t p)
{
    return (((uint32_t)p & 0x1111u) * 0x249u >> 9) & 15u;
}

/* Thresholds o .. o+3 (int16_t when is16, else int32_t). */
EBNN_MVE_INLINE int32x4_t ebnn_mve_thresholds(const void *t, uint32_t o, uint_fast8_t is16)
{
    return is16 ? vldrhq_s32((const int16_t *)t + o) : vldrwq_s32((const int32_t *)t + o);
}

/* The same for the active lanes only (the others read nothing and are 0). */
EBNN_MVE_INLINE int32x4_t ebnn_mve_thresholds_z(const void *t, uint32_t o, uint_fast8_t is16, mve_pred16_t lanes)
{
    return is16 ? vldrhq_z_s32((const int16_t *)t + o, lanes) : vldrwq_z_s32((const int32_t *)t + o, lanes);
}

#endif /* EBNN_MVE_KERNELS */
#endif /* EBNN_MVE_H */
