/* avr/ebnn_bytes.c - byte kernels (EBNN_BYTE_KERNELS, the AVR default): what both byte convs and the
 * dense blocks share. The byte kernels have the semantics of the generic ones (ebnn_*.c) on bytes:
 * see avr/ebnn_bytes.h and README.md. */

#include "ebnn_bytes.h"

#if EBNN_BYTE_KERNELS
/* popcount(a[j] ^ w[j]) over n bytes; a in RAM, w constant. */
NOINLINE EBNN_INTERNAL uint16_t ebnn_xor_popcount8(const uint8_t *a, const uint8_t *w, uint16_t n)
{
    uint16_t count = 0;
    while (n != 0u) {
        uint8_t k = (uint8_t)(n < SLICE_BYTES ? n : SLICE_BYTES), c = 0;
        n = (uint16_t)(n - k);
        XOR_POP_SLICE(a, w, k, c);
        count = (uint16_t)(count + c);
    }
    return count;
}

EBNN_INTERNAL void ebnn_bw8_init(ebnn_bw8_t *w, uint8_t *out, uint8_t step)
{
    w->out = out;
    w->step = step;
    w->byte = 0;
    w->fill = 0;
}

/* Appends the n low bits of `bits` (1 <= n <= 8; the bits above n must be 0). */
EBNN_INTERNAL void ebnn_bw8_put(ebnn_bw8_t *w, uint8_t bits, uint8_t n)
{
    uint8_t fill = w->fill;
    w->byte = (uint8_t)(w->byte | (uint8_t)(bits << fill));
    fill = (uint8_t)(fill + n);
    if (fill >= 8u) {
        *w->out = w->byte;
        w->out += w->step;
        fill = (uint8_t)(fill - 8u);
        w->byte = fill != 0u ? (uint8_t)(bits >> (n - fill)) : 0u;
    }
    w->fill = fill;
}

EBNN_INTERNAL void ebnn_bw8_flush(ebnn_bw8_t *w)
{
    if (w->fill != 0u) {
        *w->out = w->byte;
        w->out += w->step;
    }
    w->byte = 0;
    w->fill = 0;
}

/* Output bits of one pixel: n channels from o0 (o0 a multiple of 8), bits[] XOR the flip bytes. */
EBNN_INTERNAL void ebnn_put_pixel_bits8(ebnn_bw8_t *bw, const uint8_t *bits, const uint32_t *flip, uint_fast16_t o0, uint8_t n)
{
    const uint8_t *f = (const uint8_t *)flip + (o0 >> 3);
    for (; n >= 8u; n = (uint8_t)(n - 8u))
        ebnn_bw8_put(bw, (uint8_t)(*bits++ ^ EBNN_READ_U8(f++)), 8u);
    if (n != 0u)
        ebnn_bw8_put(bw, (uint8_t)((*bits ^ EBNN_READ_U8(f)) & LOW8(n)), n);
}

/* Completes an output buffer of nbits bits written through bw: zero bytes up to the word end. */
EBNN_INTERNAL void ebnn_finish_output8(ebnn_bw8_t *bw, const uint32_t *output, uint32_t nbits)
{
    uint8_t *end = (uint8_t *)output + 4u * EBNN_WORDS(nbits);
    ebnn_bw8_flush(bw);
    while (bw->out < end)
        *bw->out++ = 0u;
}

/* pos * stride - pad in 16 bits (the byte paths need geometries below 32768). */
EBNN_INTERNAL int16_t ebnn_start16(int16_t pos, uint16_t stride, uint16_t pad)
{
    return (int16_t)(pos * (int16_t)stride - (int16_t)pad);
}

/* popcount(x ^ w) over a row of n_in bits (both zero-padded to the word): the dense blocks' row. */
EBNN_INTERNAL uint32_t ebnn_row_popcount(const uint32_t *x, const uint32_t *w, uint32_t n_in)
{
    if (n_in <= 0xffffu)
        return ebnn_xor_popcount8((const uint8_t *)x, (const uint8_t *)w, (uint16_t)((n_in + 7u) >> 3));
    return ebnn_xor_popcount(x, w, EBNN_WORDS(n_in));
}
#endif /* EBNN_BYTE_KERNELS */
