/* avr/ebnn_bytes.h - shared pieces of the byte kernels (EBNN_BYTE_KERNELS, the AVR default): not a
 * public header. See avr/ebnn_bytes.c. */
#ifndef EBNN_BYTES_H
#define EBNN_BYTES_H

#include "../ebnn_internal.h"

/* ==== byte kernels (EBNN_BYTE_KERNELS: 8-bit CPUs) =============================================
 * The same semantics on bytes: an 8-bit CPU has no cheap 32-bit shift, so bit streams are handled a
 * byte at a time (bit i of a word buffer is bit i & 7 of byte i >> 3 on a little-endian CPU), counts
 * are 8-bit where they cannot overflow, and every popcount is one read of the 256-byte table. */
#if EBNN_BYTE_KERNELS
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "EBNN_BYTE_KERNELS needs a little-endian CPU"
#endif
/* The helpers below stay separate functions: inlined into one big loop nest, avr-gcc runs out of
 * registers and spills (measured: the input conv 30% slower); the innermost step is always inlined. */
#if defined(__GNUC__)
#define NOINLINE __attribute__((noinline))
#define ALWAYS_INLINE __attribute__((always_inline)) inline
#else
#define NOINLINE
#define ALWAYS_INLINE
#endif
#define SLICE_BYTES 31u /* 31 * 8 = 248: a popcount over a slice fits a uint8_t counter */
#define BYTE_CHUNK 32u  /* filters per pass of the byte conv kernels (their output bits: 4 bytes) */
#define LOW8(n) ((uint8_t)((1u << (n)) - 1u)) /* n in 0..8 */


/* The two inner loops below, over k (1..SLICE_BYTES) bytes, adding to 8-bit counts. On AVR they are
 * written in assembly: the weight pointer and the table lookup both need Z (lpm), which the compiler
 * juggles badly (~21 instead of 16 cycles per byte); with the table 256-byte aligned a lookup only
 * sets ZL. Elsewhere (and in the host tests of this path) plain C. */
#if defined(__AVR__)
#define XOR_POP_SLICE(a, w, k, x)                                                                   \
    do {                                                                                            \
        uint8_t wb_;                                                                                \
        uint16_t save_; /* a register pair: movw */                                                 \
        __asm__ volatile("1: lpm %[wb], Z+\n\t"                                                     \
                         "movw %[sv], r30\n\t"                                                     \
                         "ldi r31, hi8(%[tab])\n\t"                                                \
                         "ld r30, %a[pa]+\n\t"                                                     \
                         "eor r30, %[wb]\n\t"                                                      \
                         "lpm %[wb], Z\n\t"                                                        \
                         "add %[cx], %[wb]\n\t"                                                    \
                         "movw r30, %[sv]\n\t"                                                     \
                         "dec %[kk]\n\t"                                                           \
                         "brne 1b"                                                                 \
                         : [wb] "=&r"(wb_), [sv] "=&r"(save_), [cx] "+r"(x),                       \
                           [kk] "+r"(k), [pa] "+x"(a), "+z"(w)                                         \
                         : [tab] "i"(ebnn_popcount_table));                                              \
    } while (0)
#define XOR_POP_SLICE2(a, w, k, x0, x1)                                                             \
    do {                                                                                            \
        uint8_t wb_, t_;                                                                            \
        uint16_t save_;                                                                             \
        __asm__ volatile("1: lpm %[wb], Z+\n\t"                                                     \
                         "movw %[sv], r30\n\t"                                                     \
                         "ldi r31, hi8(%[tab])\n\t"                                                \
                         "ld r30, %a[pa]+\n\t"                                                     \
                         "eor r30, %[wb]\n\t"                                                      \
                         "lpm %[t], Z\n\t"                                                         \
                         "add %[c0], %[t]\n\t"                                                     \
                         "ld r30, %a[pa]+\n\t"                                                     \
                         "eor r30, %[wb]\n\t"                                                      \
                         "lpm %[t], Z\n\t"                                                         \
                         "add %[c1], %[t]\n\t"                                                     \
                         "movw r30, %[sv]\n\t"                                                     \
                         "dec %[kk]\n\t"                                                           \
                         "brne 1b"                                                                 \
                         : [wb] "=&r"(wb_), [t] "=&r"(t_), [sv] "=&r"(save_), \
                           [c0] "+r"(x0), [c1] "+r"(x1), [kk] "+r"(k), [pa] "+x"(a), "+z"(w)            \
                         : [tab] "i"(ebnn_popcount_table));                                              \
    } while (0)
#else
#define XOR_POP_SLICE(a, w, k, x)                                                                   \
    do                                                                                              \
        (x) = (uint8_t)((x) + POPCOUNT8(*(a)++ ^ EBNN_READ_U8((w)++)));                             \
    while (--(k) != 0u)
#define XOR_POP_SLICE2(a, w, k, x0, x1)                                                             \
    do {                                                                                            \
        uint8_t b_ = EBNN_READ_U8((w)++);                                                           \
        (x0) = (uint8_t)((x0) + POPCOUNT8(*(a)++ ^ b_));                                            \
        (x1) = (uint8_t)((x1) + POPCOUNT8(*(a)++ ^ b_));                                            \
    } while (--(k) != 0u)
#endif

/* Appends bit fields to a byte buffer, LSB first; consecutive bytes are `step` apart (interleaved
 * patches). The last partial byte is completed with zeros by ebnn_bw8_flush. */
typedef struct {
    uint8_t *out;
    uint8_t step, byte, fill;
} ebnn_bw8_t;

#ifndef EBNN_PRIVATE
uint16_t ebnn_xor_popcount8(const uint8_t *a, const uint8_t *w, uint16_t n);
void ebnn_bw8_init(ebnn_bw8_t *w, uint8_t *out, uint8_t step);
void ebnn_bw8_put(ebnn_bw8_t *w, uint8_t bits, uint8_t n);
void ebnn_bw8_flush(ebnn_bw8_t *w);
void ebnn_put_pixel_bits8(ebnn_bw8_t *bw, const uint8_t *bits, const uint32_t *flip, uint_fast16_t o0, uint8_t n);
void ebnn_finish_output8(ebnn_bw8_t *bw, const uint32_t *output, uint32_t nbits);
int16_t ebnn_start16(int16_t pos, uint16_t stride, uint16_t pad);
#endif

#endif /* EBNN_BYTE_KERNELS */
#endif /* EBNN_BYTES_H */
