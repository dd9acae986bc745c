/* ebnn_kernels.c - the fused eBNN kernels. Layouts and options: ebnn.h and README.md; semantics:
 * keras_ebnn/blocks.py (matched bit for bit against keras_ebnn/reference.py by the tests).
 *
 * Sections: popcount, bit streams, pooling windows, input convolution (integer: 4-tap subset-sum
 * tables; float: sequential float32 sums), binary convolution (patch + XOR-popcount), dense blocks. */

#include "ebnn.h"

#if EBNN_CHUNK != 8 && EBNN_CHUNK != 16 && EBNN_CHUNK != 32
#error "EBNN_CHUNK must be 8, 16 or 32"
#endif

#define ONE32 ((uint32_t)1)
#define LOW_BITS(n) ((n) >= 32u ? 0xffffffffu : (ONE32 << (n)) - 1u) /* n in 0..32 */

/* Unit tests only (-DEBNN_TEST_COUNTERS): ebnn_test_zero_windows counts the conv windows (per pass of
 * filters) that the integer input convolutions skipped as all-zero, to show the shortcut is taken. */
#ifdef EBNN_TEST_COUNTERS
extern uint32_t ebnn_test_zero_windows;
uint32_t ebnn_test_zero_windows = 0;
#define COUNT_ZERO_WINDOWS(n) (ebnn_test_zero_windows += (uint32_t)(n))
#else
#define COUNT_ZERO_WINDOWS(n) ((void)0)
#endif

/* ==== float order without float instructions ==================================================
 * Comparing float32 values as integers keeps libgcc's soft-float compare routines (~0.25 KB on
 * Cortex-M3, more on M0+) out of FPU-less builds. For non-NaN a and b: float_key(a) < float_key(b)
 * exactly when a < b, and float_key(-0.0f) == float_key(+0.0f), as for the float comparison. */
static uint32_t f32_bits(float f)
{
    union { float f; uint32_t u; } v;
    v.f = f;
    return v.u;
}

static int32_t key_of_bits(uint32_t u)
{
    return (u & 0x80000000u) != 0u ? -(int32_t)(u & 0x7fffffffu) : (int32_t)u;
}

static int32_t float_key(float f)
{
    return key_of_bits(f32_bits(f));
}

static int float_is_nan(float f)
{
    union { float f; uint32_t u; } v;
    v.f = f;
    return (v.u & 0x7fffffffu) > 0x7f800000u;
}

/* ==== popcount ================================================================================ */
#if EBNN_POPCOUNT == EBNN_POPCOUNT_TABLE || EBNN_BYTE_KERNELS
#if defined(__AVR__) && EBNN_BYTE_KERNELS
#define POPCOUNT_ALIGN __attribute__((aligned(256))) /* a lookup sets only ZL (byte kernels' asm) */
#else
#define POPCOUNT_ALIGN
#endif
static const uint8_t popcount_table[256] EBNN_CONST POPCOUNT_ALIGN = {
#define B2(n) n, n + 1, n + 1, n + 2
#define B4(n) B2(n), B2(n + 1), B2(n + 1), B2(n + 2)
#define B6(n) B4(n), B4(n + 1), B4(n + 1), B4(n + 2)
    B6(0), B6(1), B6(1), B6(2)
#undef B2
#undef B4
#undef B6
};
#define POPCOUNT8(b) ((uint_fast16_t)EBNN_READ_U8(&popcount_table[(uint8_t)(b)]))
#endif

uint32_t ebnn_popcount32(uint32_t x)
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

uint32_t ebnn_xor_popcount(const uint32_t *a, const uint32_t *w, uint32_t n)
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
        count += POPCOUNT8(pa[0] ^ EBNN_READ_U8(pw)) + POPCOUNT8(pa[1] ^ EBNN_READ_U8(pw + 1)) +
                 POPCOUNT8(pa[2] ^ EBNN_READ_U8(pw + 2)) + POPCOUNT8(pa[3] ^ EBNN_READ_U8(pw + 3));
#else
    for (; n != 0u; n--)
        count += ebnn_popcount32(*a++ ^ EBNN_READ_U32(w++));
#endif
    return count;
}

uint32_t ebnn_xor_popcount_masked(const uint32_t *a, const uint32_t *w, const uint32_t *m, uint32_t n)
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
        count += POPCOUNT8((pa[0] ^ EBNN_READ_U8(pw)) & pm[0]) + POPCOUNT8((pa[1] ^ EBNN_READ_U8(pw + 1)) & pm[1]) +
                 POPCOUNT8((pa[2] ^ EBNN_READ_U8(pw + 2)) & pm[2]) + POPCOUNT8((pa[3] ^ EBNN_READ_U8(pw + 3)) & pm[3]);
#else
    for (; n != 0u; n--)
        count += ebnn_popcount32((*a++ ^ EBNN_READ_U32(w++)) & *m++);
#endif
    return count;
}

/* ==== bit streams ============================================================================= */
/* Appends bit fields to a word buffer, LSB first; the last partial word is completed with zeros. */
typedef struct {
    uint32_t *out;
    uint32_t word;
    uint_fast8_t fill; /* bits already in `word`, 0..31 */
} bit_writer_t;

static void bw_init(bit_writer_t *bw, uint32_t *out)
{
    bw->out = out;
    bw->word = 0;
    bw->fill = 0;
}

/* Appends the n low bits of `bits` (1 <= n <= 32; the bits above n must be 0). */
static void bw_put(bit_writer_t *bw, uint32_t bits, uint_fast8_t n)
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

#if !EBNN_BYTE_KERNELS /* used by the generic binary conv only */
/* Appends n copies of one bit value (fill = 0 or 0xffffffff). */
static void bw_put_run(bit_writer_t *bw, uint32_t fill, uint32_t n)
{
    for (; n >= 32u; n -= 32u)
        bw_put(bw, fill, 32u);
    if (n != 0u)
        bw_put(bw, fill & LOW_BITS(n), (uint_fast8_t)n);
}
#endif

static void bw_flush(bit_writer_t *bw)
{
    if (bw->fill != 0u)
        *bw->out++ = bw->word;
    bw->word = 0;
    bw->fill = 0;
}

#if !EBNN_BYTE_KERNELS /* used by the generic binary conv only */
/* n bits (1..32) of a RAM bit stream from bit `bit`; never reads past the word holding the last. */
static uint32_t get_bits(const uint32_t *p, uint32_t bit, uint_fast8_t n)
{
    const uint32_t *q = p + (bit >> 5);
    uint_fast8_t s = (uint_fast8_t)(bit & 31u);
    uint32_t v = q[0] >> s;
    if (s + n > 32u)
        v |= q[1] << (32u - s);
    return v & LOW_BITS(n);
}

/* Appends bits [bit, bit + n) of a RAM bit stream. */
static void bw_copy(bit_writer_t *bw, const uint32_t *src, uint32_t bit, uint32_t n)
{
    for (; n >= 32u; n -= 32u, bit += 32u)
        bw_put(bw, get_bits(src, bit, 32u), 32u);
    if (n != 0u)
        bw_put(bw, get_bits(src, bit, (uint_fast8_t)n), (uint_fast8_t)n);
}
#endif

/* ==== windows ================================================================================= */
/* Taps [*lo, *hi) of a window of `k` taps starting at `start` that fall inside 0 .. size-1. */
static void clip_window(int32_t start, uint_fast16_t k, uint_fast16_t size, uint_fast16_t *lo, uint_fast16_t *hi)
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
static int32_t read_threshold(const void *t, uint32_t o, uint_fast8_t is16)
{
    return is16 ? (int32_t)EBNN_READ_I16((const int16_t *)t + o) : EBNN_READ_I32((const int32_t *)t + o);
}

/* The flip bits of channels o0 .. o0+n-1 (a chunk never straddles a word). */
static uint32_t flip_bits(const uint32_t *flip, uint_fast16_t o0, uint_fast8_t n)
{
    return (EBNN_READ_U32(&flip[o0 >> 5]) >> (o0 & 31u)) & LOW_BITS(n);
}

/* First input row (or column) of the window of convolution output row (column) `pos`. */
static int32_t conv_start(int32_t pos, uint_fast16_t stride, uint_fast16_t pad)
{
    return pos * (int32_t)stride - (int32_t)pad;
}

/* `const ebnn_conv_params_t *name` for the parameters at src: on AVR a copy from flash on the stack
 * (56 B), elsewhere the constant itself (no copy: less stack). A declaration: opens a block's use. */
#if defined(__AVR__)
#define PARAMS_IN_RAM(name, src)                                                                    \
    ebnn_conv_params_t name##_ram;                                                                  \
    const ebnn_conv_params_t *name = (EBNN_COPY_CONST(&name##_ram, (src), sizeof(name##_ram)), &name##_ram)
#else
#define PARAMS_IN_RAM(name, src) const ebnn_conv_params_t *name = (src)
#endif

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
                         : [tab] "i"(popcount_table));                                              \
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
                         : [tab] "i"(popcount_table));                                              \
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

/* popcount(a[j] ^ w[j]) over n bytes; a in RAM, w constant. */
NOINLINE static uint16_t xor_popcount8(const uint8_t *a, const uint8_t *w, uint16_t n)
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

/* Appends bit fields to a byte buffer, LSB first; consecutive bytes are `step` apart (interleaved
 * patches). The last partial byte is completed with zeros by bw8_flush. */
typedef struct {
    uint8_t *out;
    uint8_t step, byte, fill;
} bw8_t;

static void bw8_init(bw8_t *w, uint8_t *out, uint8_t step)
{
    w->out = out;
    w->step = step;
    w->byte = 0;
    w->fill = 0;
}

/* Appends the n low bits of `bits` (1 <= n <= 8; the bits above n must be 0). */
static void bw8_put(bw8_t *w, uint8_t bits, uint8_t n)
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

static void bw8_flush(bw8_t *w)
{
    if (w->fill != 0u) {
        *w->out = w->byte;
        w->out += w->step;
    }
    w->byte = 0;
    w->fill = 0;
}

/* Appends n copies of one bit value (fill = 0 or 0xff). */
static void bw8_run(bw8_t *w, uint8_t fill, uint16_t n)
{
    for (; n >= 8u; n = (uint16_t)(n - 8u))
        bw8_put(w, fill, 8u);
    if (n != 0u)
        bw8_put(w, (uint8_t)(fill & LOW8(n)), (uint8_t)n);
}

/* Appends bits [bit, bit + n) of a RAM bit stream; whole bytes are copied when both sides are
 * byte aligned (e.g. a multiple of 8 channels). Never reads past the byte holding the last bit. */
static void bw8_copy(bw8_t *w, const uint8_t *src, uint32_t bit, uint16_t n)
{
    const uint8_t *s = src + (bit >> 3);
    uint8_t sh = (uint8_t)(bit & 7u);
    if (sh == 0u && w->fill == 0u) {
        for (; n >= 8u; n = (uint16_t)(n - 8u)) {
            *w->out = *s++;
            w->out += w->step;
        }
        if (n != 0u)
            bw8_put(w, (uint8_t)(*s & LOW8(n)), (uint8_t)n);
        return;
    }
    for (; n >= 8u; n = (uint16_t)(n - 8u), s++)
        bw8_put(w, sh == 0u ? *s : (uint8_t)((*s >> sh) | (s[1] << (8u - sh))), 8u);
    if (n != 0u) {
        uint8_t v = (uint8_t)(*s >> sh);
        if (sh + n > 8u)
            v = (uint8_t)(v | (s[1] << (8u - sh)));
        bw8_put(w, (uint8_t)(v & LOW8(n)), (uint8_t)n);
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
    bw8_t pw, mw;
    if (mask == NULL && (p->in_c & 7u) == 0u && iy0 >= 0 && ix0 >= 0 && iy0 + (int32_t)p->kh <= (int32_t)p->in_h &&
        ix0 + (int32_t)p->kw <= (int32_t)p->in_w) { /* unmasked, inside, whole bytes (8k channels): copies */
        uint16_t rb = (uint16_t)(row >> 3), sb = (uint16_t)((p->in_w * p->in_c) >> 3), j;
        const uint8_t *src = in + (((uint16_t)iy0 * p->in_w + (uint16_t)ix0) * p->in_c >> 3);
        for (ky = 0; ky < p->kh; ky++, src += sb)
            for (j = 0; j < rb; j++, patch += step)
                *patch = src[j];
        return (uint16_t)(row * p->kh);
    }
    clip_window(iy0, p->kh, p->in_h, &ky0, &ky1);
    clip_window(ix0, p->kw, p->in_w, &kx0, &kx1);
    left = (uint16_t)(kx0 * p->in_c);
    mid = (uint16_t)((kx1 - kx0) * p->in_c);
    bw8_init(&pw, patch, step);
    bw8_init(&mw, mask, step);
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
    bw8_flush(&pw);
    if (mask == NULL)
        return (uint16_t)(row * p->kh);
    bw8_flush(&mw);
    return (uint16_t)((ky1 - ky0) * mid);
}

/* Output bits of one pixel: n channels from o0 (o0 a multiple of 8), bits[] XOR the flip bytes. */
static void put_pixel_bits8(bw8_t *bw, const uint8_t *bits, const uint32_t *flip, uint_fast16_t o0, uint8_t n)
{
    const uint8_t *f = (const uint8_t *)flip + (o0 >> 3);
    for (; n >= 8u; n = (uint8_t)(n - 8u))
        bw8_put(bw, (uint8_t)(*bits++ ^ EBNN_READ_U8(f++)), 8u);
    if (n != 0u)
        bw8_put(bw, (uint8_t)((*bits ^ EBNN_READ_U8(f)) & LOW8(n)), n);
}

/* Completes an output buffer of nbits bits written through bw: zero bytes up to the word end. */
static void finish_output8(bw8_t *bw, const uint32_t *output, uint32_t nbits)
{
    uint8_t *end = (uint8_t *)output + 4u * EBNN_WORDS(nbits);
    bw8_flush(bw);
    while (bw->out < end)
        *bw->out++ = 0u;
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
                c = xor_popcount8(patch, w, nb);
            }
            if ((int16_t)(uint16_t)(valid - 2u * c) >= EBNN_READ_I16(thr))
                cur |= m;
        }
        *bits = cur;
    }
}

/* pos * stride - pad in 16 bits (the byte paths need geometries below 32768). */
static int16_t start16(int16_t pos, uint16_t stride, uint16_t pad)
{
    return (int16_t)(pos * (int16_t)stride - (int16_t)pad);
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
    bw8_t bw;
    bw8_init(&bw, (uint8_t *)output, 1u);
    for (oy = 0; oy < p->out_h; oy++) {
        uint_fast16_t py0, py1;
        clip_window((int32_t)oy * p->pool_sh - p->pool_t, p->pool_h, p->conv_h, &py0, &py1);
        for (ox = 0; ox < p->out_w; ox++) {
            uint_fast16_t px0, px1, nwin;
            clip_window((int32_t)ox * p->pool_sw - p->pool_l, p->pool_w, p->conv_w, &px0, &px1);
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
                        iy[g] = start16((int16_t)(start16((int16_t)oy, p->pool_sh, p->pool_t) + (int16_t)py), p->sh,
                                        p->pad_t);
                        ix[g] = start16((int16_t)(start16((int16_t)ox, p->pool_sw, p->pool_l) + (int16_t)px), p->sw,
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
                put_pixel_bits8(&bw, bits, flip, o0, n);
            }
        }
    }
    finish_output8(&bw, output, (uint32_t)p->out_h * p->out_w * p->out_c);
}

/* Input conv, byte path (uint8 input modes, acc16, at most 255 taps, input shorter than 32 K values so
 * that 16-bit coordinates suffice). Per window, each group g of 4 taps gets the table T_g[s] = sum of
 * v_i over its taps i in s - sum over the others (16-bit), and a filter's accumulator is the sum of the
 * entries its weight nibbles select: one lookup per group, up to 4 groups (16 taps, 2 weight bytes) per
 * pass (missing groups' tables stay 0; more taps: several passes, window_passes8). Pooling and output as
 * in binary_conv8. Small helpers keep the AVR stack frames short.
 * All-zero windows: when every tap of a window is worth 0 (mode EBNN_INPUT_UINT8 with add == 0, all its
 * pixels inside the input 0, padded taps 0), every filter's accumulator is exactly 0: no values, tables
 * or weights, the window only ORs in the bits (0 >= threshold) of its pass (zero_bits8, computed once
 * per pass). An output pixel whose pool window spans only zero pixels is written from those bits at
 * once, for every pass, before any per-window work; the per-window check remains only for pool
 * windows of several conv windows. On MNIST about two thirds of the 3x3 windows are all zero. */

typedef struct {
    const ebnn_conv_params_t *p;
    const uint8_t *in;
    uint16_t stride;      /* input values per row */
    int16_t pad, mul, add; /* value of a tap outside the input; value = mul * pixel + add */
    int16_t thr_u8;       /* EBNN_INPUT_SIGN_UINT8: value = pixel >= thr_u8 ? 1 : -1 */
    uint8_t sign, taps, groups;
    uint8_t plain;        /* mul == 1 and add == 0: value = pixel */
    uint8_t zero;         /* add == 0 and padded taps 0: an all-zero window has acc 0 for every filter */
} input8_t;

/* 1 when every pixel inside the input of the h x w region at (iy0, ix0) is 0 (padded taps are not
 * read). With ic->zero (uint8 values, add == 0, padded taps 0) every tap of every window within it is
 * then worth 0, so every filter's accumulator is exactly 0. Clipped here in 16 bits (clip_window's
 * 32-bit arithmetic costs more than the scan); a row that is not all zero ends the scan. */
NOINLINE static uint8_t region_zero8(const input8_t *ic, int16_t iy0, int16_t ix0, int16_t h, int16_t w)
{
    const ebnn_conv_params_t *p = ic->p;
    int16_t iy1 = (int16_t)(iy0 + h), ix1 = (int16_t)(ix0 + w); /* ends, exclusive */
    const uint8_t *src;
    uint8_t any = 0;
    uint16_t rows, n, j, skip;
    if (iy0 < 0)
        iy0 = 0;
    if (ix0 < 0)
        ix0 = 0;
    if (iy1 > (int16_t)p->in_h)
        iy1 = (int16_t)p->in_h;
    if (ix1 > (int16_t)p->in_w)
        ix1 = (int16_t)p->in_w;
    if (iy1 <= iy0 || ix1 <= ix0 || p->in_c == 0u)
        return 1u; /* padding only (or no taps) */
    rows = (uint16_t)(iy1 - iy0);
    n = (uint16_t)((uint16_t)(ix1 - ix0) * p->in_c); /* bytes per row */
    skip = (uint16_t)(ic->stride - n);
    src = ic->in + (uint16_t)iy0 * ic->stride + (uint16_t)ix0 * p->in_c;
    do {
        j = n;
        do
            any |= *src++;
        while (--j != 0u);
        if (any != 0u)
            return 0u;
        src += skip;
    } while (--rows != 0u);
    return 1u;
}

/* The BYTE_CHUNK / 8 bytes bits[] of an all-zero window (acc 0) for the n filters from thr: bit o =
 * (0 >= threshold o); the bits from n on are 0. */
NOINLINE static void zero_bits8(const int16_t *thr, uint8_t n, uint8_t *bits)
{
    uint8_t b;
    for (b = 0; b < BYTE_CHUNK / 8u; b++, bits++) {
        uint8_t cur = 0, m;
        for (m = 1u; m != 0u && n != 0u; m = (uint8_t)(m << 1), n--, thr++)
            if (EBNN_READ_I16(thr) <= 0)
                cur |= m;
        *bits = cur;
    }
}

/* zbits = zero_bits8 of the pass of n filters from o0, unless *cached says it holds them already
 * (once per call when out_c <= BYTE_CHUNK). */
static void zero_pass8(const int16_t *thresholds, uint_fast16_t o0, uint8_t n, uint8_t *zbits, uint_fast16_t *cached)
{
    if (*cached != o0) {
        zero_bits8(thresholds + o0, n, zbits);
        *cached = o0;
    }
}

/* The values of taps t0 .. t0 + cnt - 1 of the window at (iy0, ix0) ((ky, kx, c) order; any window,
 * any mode), then zeros up to the end of the last group. */
NOINLINE static void window_values8(const input8_t *ic, int16_t iy0, int16_t ix0, uint8_t t0, uint8_t cnt, int16_t *v)
{
    const ebnn_conv_params_t *p = ic->p;
    uint8_t row = (uint8_t)(p->kw * p->in_c), ky = (uint8_t)(t0 / row), kx = (uint8_t)(t0 % row / p->in_c);
    uint8_t c = (uint8_t)(t0 % p->in_c), i;
    for (i = 0; i < cnt; i++) {
        int16_t iy = (int16_t)(iy0 + ky), ix = (int16_t)(ix0 + kx);
        if (iy < 0 || iy >= (int16_t)p->in_h || ix < 0 || ix >= (int16_t)p->in_w) {
            *v++ = ic->pad;
        } else {
            int16_t x = ic->in[(uint16_t)iy * ic->stride + (uint16_t)ix * p->in_c + c];
            *v++ = ic->sign ? (x >= ic->thr_u8 ? 1 : -1) : (int16_t)(ic->mul * x + ic->add);
        }
        if (++c == p->in_c) {
            c = 0;
            if (++kx == p->kw) {
                kx = 0;
                ky++;
            }
        }
    }
    for (; (i & 3u) != 0u; i++)
        *v++ = 0; /* missing taps of the last group: weight bits 0, value 0 */
}

/* The entries of one group's table from its values (straight-line: they stay in registers); a
 * group of n < 4 taps needs only its first 2^n entries (the weight bits of missing taps are 0). */
static void group_table8(int16_t v0, int16_t v1, int16_t v2, int16_t v3, uint8_t n, int16_t *tb)
{
    int16_t d2 = (int16_t)(2 * v2), d3 = (int16_t)(2 * v3);
    int16_t t0 = (int16_t)(-v0 - v1 - v2 - v3), t1 = (int16_t)(t0 + 2 * v0);
    int16_t t2 = (int16_t)(t0 + 2 * v1), t3 = (int16_t)(t1 + 2 * v1);
    int16_t t4 = (int16_t)(t0 + d2), t5 = (int16_t)(t1 + d2), t6 = (int16_t)(t2 + d2), t7 = (int16_t)(t3 + d2);
    *tb++ = t0;
    *tb++ = t1;
    if (n < 2u)
        return;
    *tb++ = t2;
    *tb++ = t3;
    if (n < 3u)
        return;
    *tb++ = t4;
    *tb++ = t5;
    *tb++ = t6;
    *tb++ = t7;
    if (n < 4u)
        return;
    *tb++ = (int16_t)(t0 + d3);
    *tb++ = (int16_t)(t1 + d3);
    *tb++ = (int16_t)(t2 + d3);
    *tb++ = (int16_t)(t3 + d3);
    *tb++ = (int16_t)(t4 + d3);
    *tb++ = (int16_t)(t5 + d3);
    *tb++ = (int16_t)(t6 + d3);
    *tb = (int16_t)(t7 + d3);
}

/* table[16 * g + s] for every group g (see above) from the window's values. */
NOINLINE static void build_tables8(const int16_t *v, uint8_t taps, int16_t *tb)
{
    for (; taps != 0u; taps = (uint8_t)(taps > 4u ? taps - 4u : 0u), v += 4, tb += 16)
        group_table8(v[0], v[1], v[2], v[3], taps, tb);
}

/* The values of a window inside the input (mode EBNN_INPUT_UINT8, at most 16 taps) whose first value
 * is src: kh runs of kw * in_c consecutive pixels; then zeros up to the end of the last group. */
NOINLINE static void interior_values8(const input8_t *ic, const uint8_t *src, int16_t *v)
{
    const ebnn_conv_params_t *p = ic->p;
    uint8_t row = (uint8_t)(p->kw * p->in_c), skip = (uint8_t)(ic->stride - row), ky, j, t;
    for (ky = (uint8_t)p->kh; ky != 0u; ky--, src += skip) {
        if (ic->plain) /* value = pixel */
            for (j = row; j != 0u; j--)
                *v++ = *src++;
        else
            for (j = row; j != 0u; j--)
                *v++ = (int16_t)(ic->mul * *src++ + ic->add);
    }
    for (t = ic->taps; (t & 3u) != 0u; t++)
        *v++ = 0;
}

/* Entry of a 16-bit table at byte offset `off` (= 2 * index, computed in 8 bits). */
#define TAB8(tab, off) (*(const int16_t *)(const void *)((const uint8_t *)(tab) + (off)))

/* A filter's accumulator: the sum over its groups (up to 4) of the entry its weight nibble selects. */
ALWAYS_INLINE static int16_t filter_acc8(const int16_t *tab, const uint8_t *w, uint8_t groups)
{
    uint8_t b = EBNN_READ_U8(w);
    int16_t acc = (int16_t)(TAB8(tab, (uint8_t)(b << 1) & 0x1eu) + TAB8(tab + 16, (b >> 3) & 0x1eu));
    if (groups > 2u) {
        b = EBNN_READ_U8(w + 1);
        acc = (int16_t)(acc + TAB8(tab + 32, (uint8_t)(b << 1) & 0x1eu));
        if (groups > 3u)
            acc = (int16_t)(acc + TAB8(tab + 48, (b >> 3) & 0x1eu));
    }
    return acc;
}

/* For n filters from w (rows row_bytes apart), thresholds thr: set bit o of bits[] when filter o's
 * accumulator reaches its threshold; filters whose bit is already set are skipped. */
NOINLINE static void input_filters8(const int16_t *tab, const uint8_t *w, uint16_t row_bytes, const int16_t *thr, uint8_t n,
                                    uint8_t groups, uint8_t *bits)
{
    for (; n != 0u; bits++) {
        uint8_t cur = *bits, m;
        for (m = 1u; m != 0u && n != 0u; m = (uint8_t)(m << 1), n--, w += row_bytes, thr++)
            if ((cur & m) == 0u && filter_acc8(tab, w, groups) >= EBNN_READ_I16(thr))
                cur |= m;
        *bits = cur;
    }
}

/* The same for one pass of a window of more than 16 taps: add the pass's sums to part[] (first pass:
 * set them), and on the last pass compare. A separate loop: the one-pass case stays lean. */
#define PASS_ADD 1u  /* add the partial sums of the previous passes */
#define PASS_LAST 2u /* compare with the thresholds (else store the partial sums) */
NOINLINE static void input_filters_pass8(const int16_t *tab, const uint8_t *w, uint16_t row_bytes, const int16_t *thr,
                                         uint8_t n, uint8_t groups, uint8_t *bits, int16_t *part, uint8_t pass)
{
    uint8_t o = 0;
    for (; n != 0u; bits++) {
        uint8_t cur = *bits, m;
        for (m = 1u; m != 0u && n != 0u; m = (uint8_t)(m << 1), n--, w += row_bytes, thr++, o++) {
            int16_t acc;
            if ((cur & m) != 0u)
                continue;
            acc = filter_acc8(tab, w, groups);
            if ((pass & PASS_ADD) != 0u)
                acc = (int16_t)(acc + part[o]);
            if ((pass & PASS_LAST) == 0u)
                part[o] = acc;
            else if (acc >= EBNN_READ_I16(thr))
                cur |= m;
        }
        *bits = cur;
    }
}

/* A window of more than 16 taps: passes of 16 taps (2 weight bytes), partial sums in part[]. Its
 * own frame, so the usual case (one pass) does not carry part[] on the stack. */
NOINLINE static void window_passes8(const input8_t *ic, int16_t iy0, int16_t ix0, int16_t *table, int16_t *vals,
                                    const uint8_t *w, uint16_t row_bytes, const int16_t *thr, uint8_t n, uint8_t *bits)
{
    int16_t part[BYTE_CHUNK];
    uint8_t t0;
    for (t0 = 0; t0 < ic->taps; t0 = (uint8_t)(t0 + 16u)) {
        uint8_t cnt = (uint8_t)(ic->taps - t0 < 16 ? ic->taps - t0 : 16);
        uint8_t g;
        window_values8(ic, iy0, ix0, t0, cnt, vals);
        build_tables8(vals, cnt, table);
        for (g = (uint8_t)((cnt + 3u) >> 2); g < 4u; g++)
            table[16u * g] = 0; /* groups missing from this pass: their (zero) nibbles read entry 0 */
        input_filters_pass8(table, w + (t0 >> 3), row_bytes, thr, n, (uint8_t)((cnt + 3u) >> 2), bits, part,
                       (uint8_t)((t0 != 0u ? PASS_ADD : 0u) | (t0 + cnt == ic->taps ? PASS_LAST : 0u)));
    }
}

/* 1 when every conv window of the clipped pool window [py0, py1) x [px0, px1) at (cy0, cx0) is all
 * zero (region_zero8 over the input rectangle they span; with a stride above the kernel size the
 * rectangle also covers the gaps between them, and a non-zero gap only sends the pixel to the
 * per-window check). */
static uint8_t pool_zero8(const input8_t *ic, int16_t cy0, int16_t cx0, uint_fast16_t py0, uint_fast16_t py1,
                          uint_fast16_t px0, uint_fast16_t px1)
{
    const ebnn_conv_params_t *p = ic->p;
    return region_zero8(ic, start16((int16_t)(cy0 + (int16_t)py0), p->sh, p->pad_t),
                        start16((int16_t)(cx0 + (int16_t)px0), p->sw, p->pad_l),
                        (int16_t)((int16_t)(py1 - py0 - 1u) * (int16_t)p->sh + (int16_t)p->kh),
                        (int16_t)((int16_t)(px1 - px0 - 1u) * (int16_t)p->sw + (int16_t)p->kw));
}

/* The loops of input_conv8. The tables stay in the caller's frame: with them in this one, the loop
 * variables that the AVR must spill lie beyond its 63-byte frame displacement and every access to
 * them costs a pointer adjustment (uno_mnist's input conv took 13% more cycles, and 0.7 KB more
 * flash, that way). */
NOINLINE static void input_conv8_loops(const ebnn_conv_params_t *p, const uint8_t *in, const uint32_t *weights,
                                       const int16_t *thresholds, const uint32_t *flip, uint32_t *output,
                                       int16_t *table)
{
    int16_t *vals = table + 48;
    uint16_t row_bytes = (uint16_t)(4u * EBNN_WORDS((uint32_t)p->kh * p->kw * p->in_c));
    uint_fast16_t oy, ox, o0, zero_o0 = 0xffffu; /* the pass of filters whose zero_bits8 are in zbits */
    uint8_t zbits[BYTE_CHUNK / 8u] = {0};
    input8_t ic;
    bw8_t bw;
    ic.p = p;
    ic.in = in;
    ic.stride = (uint16_t)(p->in_w * p->in_c);
    ic.sign = p->input_mode == EBNN_INPUT_SIGN_UINT8;
    ic.pad = p->pad_value == 0u ? 0 : (ic.sign ? 1 : p->pad_q);
    ic.mul = p->q_mul;
    ic.add = p->q_add;
    ic.thr_u8 = p->sign_threshold_u8;
    ic.taps = (uint8_t)(p->kh * p->kw * p->in_c);
    ic.groups = (uint8_t)((ic.taps + 3u) >> 2);
    ic.plain = ic.mul == 1 && ic.add == 0;
    ic.zero = !ic.sign && ic.add == 0 && ic.pad == 0;
    bw8_init(&bw, (uint8_t *)output, 1u);
    for (oy = 0; oy < p->out_h; oy++) {
        uint_fast16_t py0, py1;
        int16_t cy0 = start16((int16_t)oy, p->pool_sh, p->pool_t);
        clip_window(cy0, p->pool_h, p->conv_h, &py0, &py1);
        for (ox = 0; ox < p->out_w; ox++) {
            uint_fast16_t px0, px1;
            int16_t cx0 = start16((int16_t)ox, p->pool_sw, p->pool_l);
            uint8_t multi; /* the pool window has several conv windows: some may be all zero */
            clip_window(cx0, p->pool_w, p->conv_w, &px0, &px1);
            multi = py1 - py0 > 1u || px1 - px0 > 1u;
            if (ic.zero && pool_zero8(&ic, cy0, cx0, py0, py1, px0, px1)) {
                /* every window of the pixel is all zero: every accumulator is 0, for every pass */
                for (o0 = 0; o0 < p->out_c; o0 = (uint_fast16_t)(o0 + BYTE_CHUNK)) {
                    uint8_t n = (uint8_t)(p->out_c - o0 < BYTE_CHUNK ? p->out_c - o0 : BYTE_CHUNK);
                    zero_pass8(thresholds, o0, n, zbits, &zero_o0);
                    put_pixel_bits8(&bw, zbits, flip, o0, n);
                    COUNT_ZERO_WINDOWS((py1 - py0) * (px1 - px0));
                }
                continue;
            }
            for (o0 = 0; o0 < p->out_c; o0 = (uint_fast16_t)(o0 + BYTE_CHUNK)) {
                uint8_t n = (uint8_t)(p->out_c - o0 < BYTE_CHUNK ? p->out_c - o0 : BYTE_CHUNK);
                uint8_t bits[BYTE_CHUNK / 8u] = {0};
                uint_fast16_t py, px;
                const uint8_t *w = (const uint8_t *)weights + (uint32_t)o0 * row_bytes;
                for (py = py0; py < py1; py++) {
                    int16_t iy0 = start16((int16_t)(cy0 + (int16_t)py), p->sh, p->pad_t);
                    for (px = px0; px < px1; px++) {
                        int16_t ix0 = start16((int16_t)(cx0 + (int16_t)px), p->sw, p->pad_l);
                        if (multi && ic.zero && region_zero8(&ic, iy0, ix0, (int16_t)p->kh, (int16_t)p->kw)) {
                            uint8_t i; /* every acc is 0: no tables */
                            zero_pass8(thresholds, o0, n, zbits, &zero_o0);
                            for (i = 0; i < BYTE_CHUNK / 8u; i++)
                                bits[i] |= zbits[i];
                            COUNT_ZERO_WINDOWS(1);
                            continue;
                        }
                        if (ic.taps > 16u) {
                            window_passes8(&ic, iy0, ix0, table, vals, w, row_bytes, thresholds + o0, n, bits);
                            continue;
                        }
                        if (!ic.sign && iy0 >= 0 && ix0 >= 0 && iy0 + (int16_t)p->kh <= (int16_t)p->in_h &&
                            ix0 + (int16_t)p->kw <= (int16_t)p->in_w)
                            interior_values8(&ic, ic.in + (uint16_t)iy0 * ic.stride + (uint16_t)ix0 * p->in_c, vals);
                        else
                            window_values8(&ic, iy0, ix0, 0u, ic.taps, vals);
                        build_tables8(vals, ic.taps, table);
                        input_filters8(table, w, row_bytes, thresholds + o0, n, ic.groups, bits);
                    }
                }
                put_pixel_bits8(&bw, bits, flip, o0, n);
            }
        }
    }
    finish_output8(&bw, output, (uint32_t)p->out_h * p->out_w * p->out_c);
}

NOINLINE static void input_conv8(const ebnn_conv_params_t *p, const uint8_t *in, const uint32_t *weights,
                        const int16_t *thresholds, const uint32_t *flip, uint32_t *output)
{
    /* The tables of missing groups 1 and 2 stay 0 (group 3 is read only when it exists). The window's
     * values (16 at most) live in group 3's table: build_tables8 reads a group's 4 values before
     * writing its entries, and group 3's values are the last read (2 KB of SRAM on AVR: every byte of
     * stack counts). */
    int16_t table[64] = {0};
    input_conv8_loops(p, in, weights, thresholds, flip, output, table);
}
#endif /* EBNN_BYTE_KERNELS */

/* ==== input convolution, integer accumulator ==================================================
 * acc = sum_t s_t * v_t (s = +1/-1 weight, v = input value) = 2 * P - S with P = sum of v_t over
 * the taps whose weight is +1 and S = sum of all v_t. Taps are taken four at a time: the 16 subset
 * sums of their values are tabulated once per position and every filter adds the entry that its 4
 * weight bits (a nibble of its filter-major row) select: one lookup per 4 taps and filter. Taps are
 * processed in passes of PASS_TAPS (the tables live on the stack). A position whose taps are all worth
 * 0 (uint8 pixels 0 with q_add == 0, padded taps 0) has acc 0 for every filter and is not computed
 * (window_is_zero). */
#define PASS_TAPS 16 /* taps per pass: 4 groups, the nibbles of one half weight word */
/* Tap values and their partial-sum tables: 16-bit on AVR (2 KB of SRAM: halves the stack), where the
 * kernel requires params->acc16 (every accumulator, hence every partial sum, fits int16). */
#if defined(__AVR__)
typedef int16_t ebnn_tab_t;
typedef int16_t ebnn_acc_t; /* per-filter maxima of the integer input convolution */
#define EBNN_ACC_MIN INT16_MIN
#else
typedef int32_t ebnn_tab_t;
typedef int32_t ebnn_acc_t;
#define EBNN_ACC_MIN INT32_MIN
#endif

#ifndef EBNN_LOW_STACK
#if defined(__AVR__)
#define EBNN_LOW_STACK 1 /* 2 KB of SRAM: tap by tap, no tables (about 200 B less stack, slower) */
#else
#define EBNN_LOW_STACK 0
#endif
#endif

/* Walks the taps of one convolution position in (ky, kx, c) order, yielding input values. */
typedef struct {
    const ebnn_conv_params_t *p;
    const uint8_t *in_u8;
    const float *in_f32;
    int32_t iy0, ix0;        /* top-left tap of the window in input coordinates */
    uint_fast16_t ky, kx, c; /* next tap */
    int32_t pad;             /* value of a tap outside the input */
    int interior;            /* the whole window is inside the input */
} tap_walker_t;

/* Input value of element `i` of the input (integer modes). */
static int32_t input_value(const tap_walker_t *tw, uint32_t i)
{
    const ebnn_conv_params_t *p = tw->p;
    if (tw->in_f32 != NULL) /* x >= threshold (false for NaN), without a soft-float compare */
        return !float_is_nan(tw->in_f32[i]) && float_key(tw->in_f32[i]) >= float_key(p->sign_threshold_f) ? 1 : -1;
    if (p->input_mode == EBNN_INPUT_SIGN_UINT8)
        return (int16_t)tw->in_u8[i] >= p->sign_threshold_u8 ? 1 : -1;
    return (int32_t)p->q_mul * tw->in_u8[i] + p->q_add;
}

/* Writes the values of the next `count` taps to vals. */
static void gather_taps(tap_walker_t *tw, ebnn_tab_t *vals, uint_fast16_t count)
{
    const ebnn_conv_params_t *p = tw->p;
    while (count != 0u) {
        int32_t iy = tw->iy0 + (int32_t)tw->ky, ix = tw->ix0 + (int32_t)tw->kx;
        uint_fast16_t m = (uint_fast16_t)(p->in_c - tw->c), i;
        if (m > count)
            m = count;
        count = (uint_fast16_t)(count - m);
        if (iy >= 0 && iy < (int32_t)p->in_h && ix >= 0 && ix < (int32_t)p->in_w) {
            uint32_t base = ((uint32_t)iy * p->in_w + (uint32_t)ix) * p->in_c + tw->c;
            for (i = 0; i < m; i++)
                *vals++ = input_value(tw, base + i);
        } else {
            for (i = 0; i < m; i++)
                *vals++ = tw->pad;
        }
        tw->c = (uint_fast16_t)(tw->c + m);
        if (tw->c == p->in_c) {
            tw->c = 0;
            if (++tw->kx == p->kw) {
                tw->kx = 0;
                tw->ky++;
            }
        }
    }
}

#if !EBNN_LOW_STACK
/* Same for a window that lies entirely inside the input and a pass holding all its taps. */
static void gather_interior(const tap_walker_t *tw, ebnn_tab_t *vals)
{
    const ebnn_conv_params_t *p = tw->p;
    uint_fast16_t row = (uint_fast16_t)(p->kw * p->in_c), kh = p->kh, i;
    uint32_t stride = (uint32_t)p->in_w * p->in_c;
    uint32_t base = ((uint32_t)tw->iy0 * p->in_w + (uint32_t)tw->ix0) * p->in_c;
    if (tw->in_u8 != NULL && p->input_mode == EBNN_INPUT_UINT8) {
        const uint8_t *src = tw->in_u8 + base;
        int32_t mul = p->q_mul, add = p->q_add;
        for (; kh != 0u; kh--, src += stride)
            for (i = 0; i < row; i++)
                *vals++ = mul * src[i] + add;
    } else {
        for (; kh != 0u; kh--, base += stride)
            for (i = 0; i < row; i++)
                *vals++ = input_value(tw, base + i);
    }
}
#endif

#if !EBNN_LOW_STACK
/* table[16 * g + s] = sum of the values of group g's taps selected by the bits of s (entry 0 of
 * every group is 0 and never written). Returns the sum of all values. */
static int32_t build_tables(const ebnn_tab_t *vals, uint_fast8_t groups, ebnn_tab_t *table)
{
    int32_t sum = 0;
    for (; groups != 0u; groups--, vals += 4, table += 16) {
        int32_t v0 = vals[0], v1 = vals[1], v2 = vals[2], v3 = vals[3], v01 = v0 + v1;
        table[1] = v0;
        table[2] = v1;
        table[3] = v01;
        table[4] = v2;
        table[5] = v0 + v2;
        table[6] = v1 + v2;
        table[7] = v01 + v2;
        table[8] = v3;
        table[9] = v0 + v3;
        table[10] = v1 + v3;
        table[11] = v01 + v3;
        table[12] = v2 + v3;
        table[13] = table[5] + v3;
        table[14] = table[6] + v3;
        table[15] = table[7] + v3;
        sum += table[15];
    }
    return sum;
}
#endif

/* 1 when every pixel of the window at (tw->iy0, tw->ix0) that lies inside the uint8 input is 0
 * (padded taps are not read). In mode EBNN_INPUT_UINT8 with q_add == 0 and padded taps worth 0, every
 * tap's value is then 0 and so is every filter's accumulator. A row that is not all zero ends the scan. */
static int window_is_zero(const tap_walker_t *tw)
{
    const ebnn_conv_params_t *p = tw->p;
    int32_t y0 = tw->iy0 > 0 ? tw->iy0 : 0, x0 = tw->ix0 > 0 ? tw->ix0 : 0; /* the part inside the input */
    int32_t y1 = tw->iy0 + (int32_t)p->kh, x1 = tw->ix0 + (int32_t)p->kw;  /* (ends exclusive) */
    uint32_t stride = (uint32_t)p->in_w * p->in_c, n, i;
    const uint8_t *src;
    unsigned any = 0;
    if (y1 > (int32_t)p->in_h)
        y1 = (int32_t)p->in_h;
    if (x1 > (int32_t)p->in_w)
        x1 = (int32_t)p->in_w;
    if (y1 <= y0 || x1 <= x0)
        return 1; /* padding only */
    n = (uint32_t)(x1 - x0) * p->in_c;
    src = tw->in_u8 + (uint32_t)y0 * stride + (uint32_t)x0 * p->in_c;
    for (; y0 < y1; y0++, src += stride) {
        for (i = 0; i < n; i++)
            any |= src[i];
        if (any != 0u)
            return 0;
    }
    return 1;
}

#if EBNN_LOW_STACK
/* colmax[o] = max(colmax[o], acc of filter o0 + o) for the convolution position whose window
 * starts at (tw->iy0, tw->ix0): one tap at a time, each filter adding +v or -v. */
static void input_position_int(const ebnn_conv_params_t *p, tap_walker_t *tw, const uint32_t *weights,
                               uint_fast16_t o0, uint_fast8_t n, ebnn_acc_t *colmax)
{
    ebnn_acc_t acc[EBNN_CHUNK];
    uint32_t taps = (uint32_t)p->kh * p->kw * p->in_c, fwords = EBNN_WORDS(taps), t;
    uint_fast8_t o;
    for (o = 0; o < n; o++)
        acc[o] = 0;
    tw->ky = tw->kx = tw->c = 0;
    for (t = 0; t < taps; t++) {
        ebnn_tab_t v;
        const uint32_t *row = weights + (uint32_t)o0 * fwords + (t >> 5);
        gather_taps(tw, &v, 1u);
        for (o = 0; o < n; o++, row += fwords)
            acc[o] = (ebnn_acc_t)(acc[o] + (((EBNN_READ_U32(row) >> (t & 31u)) & 1u) ? v : -v));
    }
    for (o = 0; o < n; o++)
        if (acc[o] > colmax[o])
            colmax[o] = acc[o];
}
#else
/* colmax[o] = max(colmax[o], acc of filter o0 + o) for the convolution position whose window
 * starts at (tw->iy0, tw->ix0).*/
static void input_position_int(const ebnn_conv_params_t *p, tap_walker_t *tw, const uint32_t *weights,
                               uint_fast16_t o0, uint_fast8_t n, ebnn_acc_t *colmax)
{
    ebnn_acc_t part[EBNN_CHUNK];
    ebnn_tab_t vals[PASS_TAPS + 3], table[64];
    const ebnn_tab_t *t0_ = table, *t1_ = table + 16, *t2_ = table + 32, *t3_ = table + 48;
    uint32_t taps = (uint32_t)p->kh * p->kw * p->in_c, fwords = EBNN_WORDS(taps), t0;
    int32_t sum = 0;
    table[0] = table[16] = table[32] = table[48] = 0; /* never written by build_tables */
    tw->ky = tw->kx = tw->c = 0;
    for (t0 = 0; t0 < taps; t0 += PASS_TAPS) {
        uint_fast8_t cnt = (uint_fast8_t)(taps - t0 < PASS_TAPS ? taps - t0 : PASS_TAPS), o;
        const uint32_t *row = weights + (uint32_t)o0 * fwords + (t0 >> 5);
        uint_fast8_t shift = (uint_fast8_t)(t0 & 31u);
        if (cnt == taps && tw->interior)
            gather_interior(tw, vals);
        else
            gather_taps(tw, vals, cnt);
        vals[cnt] = vals[cnt + 1u] = vals[cnt + 2u] = 0; /* missing taps of the last group (weight bits 0) */
        sum += build_tables(vals, (uint_fast8_t)((cnt + 3u) / 4u), table);
        /* 4 lookups even for fewer groups: the weight bits of missing taps are 0 and entry 0 of
         * every table is 0 */
        if (cnt == taps) { /* one pass (up to 16 taps) */
            for (o = 0; o < n; o++, row += fwords) {
                uint32_t w = EBNN_READ_U32(row);
                int32_t acc = t0_[w & 15u] + t1_[(w >> 4) & 15u] + t2_[(w >> 8) & 15u] + t3_[(w >> 12) & 15u];
                acc = 2 * acc - sum;
                if (acc > colmax[o])
                    colmax[o] = (ebnn_acc_t)acc;
            }
        } else if (t0 + cnt < taps) {
            for (o = 0; o < n; o++, row += fwords) {
                uint32_t w = EBNN_READ_U32(row) >> shift;
                part[o] = (ebnn_acc_t)((t0 != 0u ? part[o] : 0) + t0_[w & 15u] + t1_[(w >> 4) & 15u] + t2_[(w >> 8) & 15u] +
                          t3_[(w >> 12) & 15u]);
            }
        } else {
            for (o = 0; o < n; o++, row += fwords) {
                uint32_t w = EBNN_READ_U32(row) >> shift;
                int32_t acc = t0_[w & 15u] + t1_[(w >> 4) & 15u] + t2_[(w >> 8) & 15u] + t3_[(w >> 12) & 15u];
                if (t0 != 0u)
                    acc += part[o];
                acc = 2 * acc - sum;
                if (acc > colmax[o])
                    colmax[o] = (ebnn_acc_t)acc;
            }
        }
    }
}
#endif /* EBNN_LOW_STACK */

static int input_conv_int(const ebnn_conv_params_t *pp, const uint8_t *in_u8, const float *in_f32,
                          const uint32_t *weights, const void *thresholds, const uint32_t *flip,
                          uint32_t *output)
{
    ebnn_conv_params_t pl = *pp; /* a local copy: read through a pointer that output writes might */
    const ebnn_conv_params_t *p = &pl; /* alias, the fields are reloaded in every loop (+4% on M3) */
    ebnn_acc_t best[EBNN_CHUNK], cols[2][EBNN_CHUNK];
    int32_t iy_max, ix_max;
    uint_fast16_t oy, ox, o0;
    int reuse, zero_ok;
    bit_writer_t bw;
    tap_walker_t tw;
#if defined(__AVR__)
    if (!p->acc16)
        return EBNN_ERROR_UNSUPPORTED; /* 16-bit tables on AVR: see ebnn_tab_t */
#endif
    tw.p = p;
    tw.in_u8 = in_u8;
    tw.in_f32 = in_f32;
    tw.pad = p->pad_value == 0u ? 0 : (p->input_mode == EBNN_INPUT_UINT8 ? p->pad_q : 1);
    /* All-zero windows (acc 0 for every filter) are skipped: only where every tap of such a window
     * is worth 0, i.e. uint8 values q_mul * pixel + 0 and padded taps worth 0. */
    zero_ok = in_u8 != NULL && p->input_mode == EBNN_INPUT_UINT8 && p->q_add == 0 && tw.pad == 0;
    /* Overlapping pool windows (pool_w = pool_sw + 1, e.g. 3x3 stride 2): the last conv column of
     * a window is the first of the next one; its column max is kept instead of recomputed. */
    reuse = p->pool_w == p->pool_sw + 1u && p->out_c <= EBNN_CHUNK;
    iy_max = (int32_t)p->in_h - (int32_t)p->kh; /* last window start inside the input */
    ix_max = (int32_t)p->in_w - (int32_t)p->kw;
    bw_init(&bw, output);
    for (oy = 0; oy < p->out_h; oy++) {
        uint_fast16_t py0, py1;
        int32_t cached_cx = -1;
        uint_fast8_t cached = 0;
        clip_window((int32_t)oy * p->pool_sh - p->pool_t, p->pool_h, p->conv_h, &py0, &py1);
        for (ox = 0; ox < p->out_w; ox++) {
            uint_fast16_t px0, px1;
            clip_window((int32_t)ox * p->pool_sw - p->pool_l, p->pool_w, p->conv_w, &px0, &px1);
            for (o0 = 0; o0 < p->out_c; o0 = (uint_fast16_t)(o0 + EBNN_CHUNK)) {
                uint_fast8_t n = (uint_fast8_t)(p->out_c - o0 < EBNN_CHUNK ? p->out_c - o0 : EBNN_CHUNK), o;
                uint_fast16_t py, px;
                uint32_t bits = 0;
                for (o = 0; o < n; o++)
                    best[o] = EBNN_ACC_MIN;
                for (px = px0; px < px1; px++) {
                    int32_t cx = (int32_t)ox * p->pool_sw + (int32_t)px - p->pool_l;
                    ebnn_acc_t *col = cols[cached ^ 1u];
                    if (reuse && cx == cached_cx) {
                        col = cols[cached];
                    } else {
                        int zero = 0; /* an all-zero window of this column was skipped */
                        for (o = 0; o < n; o++)
                            col[o] = EBNN_ACC_MIN;
                        tw.ix0 = conv_start(cx, p->sw, p->pad_l);
                        for (py = py0; py < py1; py++) {
                            tw.iy0 = conv_start((int32_t)oy * p->pool_sh + (int32_t)py - p->pool_t, p->sh, p->pad_t);
                            tw.interior = tw.iy0 >= 0 && tw.ix0 >= 0 && tw.iy0 <= iy_max && tw.ix0 <= ix_max;
                            if (zero_ok && window_is_zero(&tw)) {
                                zero = 1;
                                COUNT_ZERO_WINDOWS(1);
                                continue;
                            }
                            input_position_int(p, &tw, weights, o0, n, col);
                        }
                        if (zero) /* its accumulators: 0 for every filter */
                            for (o = 0; o < n; o++)
                                if (col[o] < 0)
                                    col[o] = 0;
                        if (reuse && px + 1u == px1) {
                            cached = (uint_fast8_t)(cached ^ 1u);
                            cached_cx = cx;
                        }
                    }
                    for (o = 0; o < n; o++)
                        if (col[o] > best[o])
                            best[o] = col[o];
                }
                for (o = 0; o < n; o++)
                    bits |= (uint32_t)(best[o] >= read_threshold(thresholds, o0 + o, p->acc16)) << o;
                bw_put(&bw, bits ^ flip_bits(flip, o0, n), n);
            }
        }
    }
    bw_flush(&bw);
    return EBNN_OK;
}

int ebnn_input_conv_u8(const ebnn_conv_params_t *params, const uint8_t *input, const uint32_t *weights,
                       const void *thresholds, const uint32_t *flip, uint32_t *output)
{
    if (params == NULL || input == NULL || weights == NULL || thresholds == NULL || flip == NULL || output == NULL)
        return EBNN_ERROR_ARGUMENT;
    {
        PARAMS_IN_RAM(p, params);
#if EBNN_BYTE_KERNELS /* the only path: the generic one is not linked for uint8 inputs */
        if (!p->acc16 || (uint32_t)p->kh * p->kw * p->in_c > 255u || (uint32_t)p->in_h * p->in_w * p->in_c >= 32768u)
            return EBNN_ERROR_UNSUPPORTED; /* int16 accumulators, 8-bit tap counts, 16-bit coordinates */
        input_conv8(p, input, weights, (const int16_t *)thresholds, flip, output);
        return EBNN_OK;
#else
        return input_conv_int(p, input, NULL, weights, thresholds, flip, output);
#endif
    }
}

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
                    acc = bit ? acc + px[c] : acc - px[c];
                else if (p->pad_value != 0u)
                    acc = bit ? acc + 1.0f : acc - 1.0f;
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
    bit_writer_t bw;
    fwords = EBNN_WORDS((uint32_t)p->kh * p->kw * p->in_c);
    bw_init(&bw, output);
    for (oy = 0; oy < p->out_h; oy++) {
        uint_fast16_t py0, py1;
        clip_window((int32_t)oy * p->pool_sh - p->pool_t, p->pool_h, p->conv_h, &py0, &py1);
        for (ox = 0; ox < p->out_w; ox++) {
            uint_fast16_t px0, px1;
            clip_window((int32_t)ox * p->pool_sw - p->pool_l, p->pool_w, p->conv_w, &px0, &px1);
            for (o = 0; o < p->out_c; o++) {
                float best = -EBNN_INFINITY;
                uint_fast16_t py, px;
                for (py = py0; py < py1; py++) {
                    for (px = px0; px < px1; px++) {
                        int32_t iy0 = conv_start((int32_t)oy * p->pool_sh + (int32_t)py - p->pool_t, p->sh, p->pad_t);
                        int32_t ix0 = conv_start((int32_t)ox * p->pool_sw + (int32_t)px - p->pool_l, p->sw, p->pad_l);
                        float acc = conv_position_f32(p, input, weights + (uint32_t)o * fwords, iy0, ix0);
                        if (acc > best)
                            best = acc;
                    }
                }
                if (flip_bits(flip, o, 1u))
                    best = -best; /* min(acc) = -max(-acc): the weights of this channel are negated */
                bw_put(&bw, best >= EBNN_READ_F32(&thr[o]) ? 1u : 0u, 1u);
            }
        }
    }
    bw_flush(&bw);
}

int ebnn_input_conv_f32(const ebnn_conv_params_t *params, const float *input, const uint32_t *weights,
                        const void *thresholds, const uint32_t *flip, uint32_t *output)
{
    if (params == NULL || input == NULL || weights == NULL || thresholds == NULL || flip == NULL || output == NULL)
        return EBNN_ERROR_ARGUMENT;
    {
        PARAMS_IN_RAM(p, params);
        if (p->input_mode == EBNN_INPUT_SIGN_FLOAT)
            return input_conv_int(p, NULL, input, weights, thresholds, flip, output);
        input_conv_f32(p, input, weights, (const float *)thresholds, flip, output);
    }
    return EBNN_OK;
}

#if !EBNN_BYTE_KERNELS /* the generic word path; EBNN_BYTE_KERNELS: binary_conv8 */
/* ==== binary convolution ======================================================================
 * For each convolution position the window's kh x kw x in_c input bits are copied once into an
 * aligned patch (same (ky, kx, c) order as a filter); every filter is then a word-wise XOR-popcount
 * against its bits: acc = taps - 2 * popcount(patch ^ w). Taps outside the input read +1 (pad 1:
 * the patch bit is 1) or are masked out (pad 0: mask bit 0, and only the valid taps count). */

/* Fills patch (and, when the window is clipped and pad_value is 0, mask). Returns the number of
 * taps that count; *masked says whether the mask must be applied. */
static uint32_t build_patch(const ebnn_conv_params_t *p, const uint32_t *in, int32_t iy0, int32_t ix0,
                            uint32_t *patch, uint32_t *mask, int *masked)
{
    uint_fast16_t ky, ky0, ky1, kx0, kx1;
    uint32_t row = (uint32_t)p->kw * p->in_c;
    uint32_t pad = p->pad_value != 0u ? 0xffffffffu : 0u;
    bit_writer_t pw, mw;
    clip_window(iy0, p->kh, p->in_h, &ky0, &ky1);
    clip_window(ix0, p->kw, p->in_w, &kx0, &kx1);
    bw_init(&pw, patch);
    if (ky0 == 0u && ky1 == p->kh && kx0 == 0u && kx1 == p->kw) { /* interior: plain copy */
        uint32_t bit = ((uint32_t)iy0 * p->in_w + (uint32_t)ix0) * p->in_c;
        uint32_t stride = (uint32_t)p->in_w * p->in_c;
        for (ky = 0; ky < p->kh; ky++, bit += stride)
            bw_copy(&pw, in, bit, row);
        bw_flush(&pw);
        *masked = 0;
        return row * p->kh;
    }
    *masked = pad == 0u;
    bw_init(&mw, mask);
    {
        uint32_t left = (uint32_t)kx0 * p->in_c, mid = (uint32_t)(kx1 - kx0) * p->in_c;
        uint32_t right = row - left - mid;
        for (ky = 0; ky < p->kh; ky++) {
            if (ky < ky0 || ky >= ky1 || mid == 0u) {
                bw_put_run(&pw, pad, row);
                if (*masked)
                    bw_put_run(&mw, 0u, row);
                continue;
            }
            bw_put_run(&pw, pad, left);
            bw_copy(&pw, in, ((uint32_t)(iy0 + (int32_t)ky) * p->in_w + (uint32_t)(ix0 + (int32_t)kx0)) * p->in_c,
                    mid);
            bw_put_run(&pw, pad, right);
            if (*masked) {
                bw_put_run(&mw, 0u, left);
                bw_put_run(&mw, 0xffffffffu, mid);
                bw_put_run(&mw, 0u, right);
            }
        }
        bw_flush(&pw);
        if (*masked) {
            bw_flush(&mw);
            return (uint32_t)(ky1 - ky0) * mid;
        }
    }
    return row * p->kh;
}

static void binary_conv32(const ebnn_conv_params_t *pp, const uint32_t *input, const uint32_t *weights,
                          const void *thresholds, const uint32_t *flip, uint32_t *output, uint32_t *scratch)
{
    ebnn_conv_params_t pl = *pp; /* local copy: see input_conv_int */
    const ebnn_conv_params_t *p = &pl;
    int32_t best[EBNN_CHUNK];
    uint32_t fwords, *patch, *mask;
    uint_fast16_t oy, ox, o0;
    bit_writer_t bw;
    fwords = EBNN_WORDS((uint32_t)p->kh * p->kw * p->in_c);
    patch = scratch;
    mask = scratch + fwords;
    bw_init(&bw, output);
    for (oy = 0; oy < p->out_h; oy++) {
        uint_fast16_t py0, py1;
        clip_window((int32_t)oy * p->pool_sh - p->pool_t, p->pool_h, p->conv_h, &py0, &py1);
        for (ox = 0; ox < p->out_w; ox++) {
            uint_fast16_t px0, px1;
            clip_window((int32_t)ox * p->pool_sw - p->pool_l, p->pool_w, p->conv_w, &px0, &px1);
            for (o0 = 0; o0 < p->out_c; o0 = (uint_fast16_t)(o0 + EBNN_CHUNK)) {
                uint_fast8_t n = (uint_fast8_t)(p->out_c - o0 < EBNN_CHUNK ? p->out_c - o0 : EBNN_CHUNK), o;
                uint_fast16_t py, px;
                uint32_t bits = 0;
                for (o = 0; o < n; o++)
                    best[o] = INT32_MIN;
                for (py = py0; py < py1; py++) {
                    for (px = px0; px < px1; px++) {
                        int masked;
                        int32_t iy0 = conv_start((int32_t)oy * p->pool_sh + (int32_t)py - p->pool_t, p->sh, p->pad_t);
                        int32_t ix0 = conv_start((int32_t)ox * p->pool_sw + (int32_t)px - p->pool_l, p->sw, p->pad_l);
                        int32_t taps = (int32_t)build_patch(p, input, iy0, ix0, patch, mask, &masked);
                        const uint32_t *w = weights + (uint32_t)o0 * fwords;
                        for (o = 0; o < n; o++, w += fwords) {
                            uint32_t pc = masked ? ebnn_xor_popcount_masked(patch, w, mask, fwords)
                                                 : ebnn_xor_popcount(patch, w, fwords);
                            int32_t acc = taps - 2 * (int32_t)pc;
                            if (acc > best[o])
                                best[o] = acc;
                        }
                    }
                }
                for (o = 0; o < n; o++)
                    bits |= (uint32_t)(best[o] >= read_threshold(thresholds, o0 + o, p->acc16)) << o;
                bw_put(&bw, bits ^ flip_bits(flip, o0, n), n);
            }
        }
    }
    bw_flush(&bw);
}

#endif /* !EBNN_BYTE_KERNELS */

/* The byte path needs acc16 (every accumulator fits int16: true unless a filter has 32767+ taps). */
int ebnn_binary_conv(const ebnn_conv_params_t *params, const uint32_t *input, const uint32_t *weights,
                     const void *thresholds, const uint32_t *flip, uint32_t *output, uint32_t *scratch)
{
    if (params == NULL || input == NULL || weights == NULL || thresholds == NULL || flip == NULL ||
        output == NULL || scratch == NULL)
        return EBNN_ERROR_ARGUMENT;
    {
        PARAMS_IN_RAM(p, params);
#if EBNN_BYTE_KERNELS
        if (!p->acc16 || p->in_h > 32767u || p->in_w > 32767u)
            return EBNN_ERROR_UNSUPPORTED; /* int16 accumulators and coordinates (see binary_conv8) */
        binary_conv8(p, (const uint8_t *)input, weights, (const int16_t *)thresholds, flip, output, (uint8_t *)scratch);
#else
        binary_conv32(p, input, weights, thresholds, flip, output, scratch);
#endif
    }
    return EBNN_OK;
}

/* ==== dense blocks ============================================================================ */
/* popcount(x ^ w) over a row of n_in bits (both zero-padded to the word). */
static uint32_t dense_popcount(const uint32_t *x, const uint32_t *w, uint32_t n_in)
{
#if EBNN_BYTE_KERNELS
    if (n_in <= 0xffffu)
        return xor_popcount8((const uint8_t *)x, (const uint8_t *)w, (uint16_t)((n_in + 7u) >> 3));
#endif
    return ebnn_xor_popcount(x, w, EBNN_WORDS(n_in));
}

static int binary_dense(uint32_t n_in, uint32_t n_out, const uint32_t *input, const uint32_t *weights,
                        const void *thresholds, uint_fast8_t thr16, uint32_t *output)
{
    uint32_t o, rwords = EBNN_WORDS(n_in);
    bit_writer_t bw;
    if (input == NULL || weights == NULL || thresholds == NULL || output == NULL)
        return EBNN_ERROR_ARGUMENT;
    bw_init(&bw, output);
    for (o = 0; o < n_out; o++, weights += rwords) {
        int32_t acc = (int32_t)n_in - 2 * (int32_t)dense_popcount(input, weights, n_in);
        bw_put(&bw, acc >= read_threshold(thresholds, o, thr16) ? 1u : 0u, 1u);
    }
    bw_flush(&bw);
    return EBNN_OK;
}

int ebnn_binary_dense(uint32_t n_in, uint32_t n_out, const uint32_t *input, const uint32_t *weights,
                      const int32_t *thresholds, uint32_t *output)
{
    return binary_dense(n_in, n_out, input, weights, thresholds, 0u, output);
}

int ebnn_binary_dense16(uint32_t n_in, uint32_t n_out, const uint32_t *input, const uint32_t *weights,
                        const int16_t *thresholds, uint32_t *output)
{
    return binary_dense(n_in, n_out, input, weights, thresholds, 1u, output);
}

#if EBNN_INT_LOGITS
/* ==== IEEE-754 binary32 in integers (EBNN_INT_LOGITS) ===========================================
 * Just what the logits need, for finite operands: (float)x * s and p + o, each rounded to nearest
 * even, with subnormals, signed zeros and overflow to infinity as the float operations give them. A
 * value is handled as m * 2^e with an integer m. */

static int clz64(uint64_t v) /* v != 0 */
{
#if defined(__GNUC__) || defined(__clang__)
    return __builtin_clzll(v);
#else
    int n = 0;
    while (!(v & ((uint64_t)1 << 63))) {
        v <<= 1;
        n++;
    }
    return n;
#endif
}

/* The finite binary32 bits u as m * 2^e (m < 2^24; returns m, writes e). */
static uint32_t f32_parts(uint32_t u, int32_t *e)
{
    uint32_t ex = (u >> 23) & 0xffu, m = u & 0x7fffffu;
    if (ex == 0u) { /* zero or subnormal */
        *e = -149;
        return m;
    }
    *e = (int32_t)ex - 150;
    return m | 0x800000u;
}

/* sign | the binary32 nearest to m * 2^e (m > 0, e >= -149), ties to even; +-infinity on overflow. */
static uint32_t f32_round(uint32_t sign, uint64_t m, int32_t e)
{
    int32_t r = 64 - clz64(m) - 24; /* right shift leaving 24 significant bits (<= 40) */
    uint64_t q;
    if (r < -149 - e)
        r = -149 - e; /* subnormal result: its last bit is worth 2^-149 */
    if (r > 0) {
        uint64_t rem = m & (((uint64_t)1 << r) - 1u), half = (uint64_t)1 << (r - 1);
        q = m >> r;
        if (rem > half || (rem == half && (q & 1u) != 0u))
            q++;
    } else {
        q = m << -r;
    }
    e += r; /* the value is now q * 2^e, q <= 2^24 */
    if (q == ((uint64_t)1 << 24)) { /* rounding carried into a new bit */
        q >>= 1;
        e++;
    }
    if (q < ((uint64_t)1 << 23)) /* subnormal (e == -149) */
        return sign | (uint32_t)q;
    if (e + 150 >= 255)
        return sign | 0x7f800000u;
    return sign | ((uint32_t)(e + 150) << 23) | ((uint32_t)q & 0x7fffffu);
}

/* (float)x * s for |x| < 2^24 ((float)x is then exact) and finite s. */
static uint32_t f32_mul_int(int32_t x, uint32_t s)
{
    uint32_t sign = (s & 0x80000000u) ^ (x < 0 ? 0x80000000u : 0u);
    uint32_t ax = x < 0 ? 0u - (uint32_t)x : (uint32_t)x, m;
    int32_t e;
    m = f32_parts(s, &e);
    if (ax == 0u || m == 0u)
        return sign; /* a signed zero: (+0 or +-x) * (+-0 or s) */
    return f32_round(sign, (uint64_t)ax * m, e);
}

/* a + b for b finite and a finite or +-infinity. */
static uint32_t f32_add(uint32_t a, uint32_t b)
{
    uint32_t ma, mb, t;
    int32_t ea, eb, d;
    uint64_t big;
    if ((a & 0x7f800000u) == 0x7f800000u)
        return a; /* an overflowed product */
    ma = f32_parts(a, &ea);
    mb = f32_parts(b, &eb);
    if (mb == 0u)
        return ma == 0u ? (a & b) : a; /* a + 0 = a; -0 + -0 = -0, else +0 */
    if (ma == 0u)
        return b;
    if (ea < eb || (ea == eb && ma < mb)) { /* make |a| >= |b| */
        t = a; a = b; b = t;
        t = ma; ma = mb; mb = t;
        d = ea; ea = eb; eb = d;
    }
    d = ea - eb;
    if (d > 40)
        return a; /* |b| < 2^-16 of a's last bit: the sum rounds to a */
    big = (uint64_t)ma << d; /* exact sum at b's scale: < 2^64 */
    if ((a ^ b) & 0x80000000u) {
        if (big == mb)
            return 0u; /* x + (-x) = +0 */
        return f32_round(a & 0x80000000u, big - mb, eb);
    }
    return f32_round(a & 0x80000000u, big + mb, eb);
}
#endif /* EBNN_INT_LOGITS */

int ebnn_output_dense(uint32_t n_in, uint32_t n_out, const uint32_t *input, const uint32_t *weights,
                      const float *scale, const float *offset, float *logits)
{
    uint32_t k, rwords = EBNN_WORDS(n_in);
    int best_k = 0;
    int32_t best = 0; /* key_of_bits of the largest logit so far */
    if (input == NULL || weights == NULL || scale == NULL || offset == NULL || n_out == 0u)
        return EBNN_ERROR_ARGUMENT;
#if EBNN_INT_LOGITS
    if (n_in >= ((uint32_t)1 << 24))
        return EBNN_ERROR_UNSUPPORTED; /* (float)x would round */
#endif
    for (k = 0; k < n_out; k++, weights += rwords) {
        int32_t x = (int32_t)n_in - 2 * (int32_t)dense_popcount(input, weights, n_in);
        uint32_t y;
#if EBNN_INT_LOGITS
        y = f32_add(f32_mul_int(x, f32_bits(EBNN_READ_F32(&scale[k]))), f32_bits(EBNN_READ_F32(&offset[k])));
        if (logits != NULL) {
            union { uint32_t u; float f; } v;
            v.u = y;
            logits[k] = v.f;
        }
#else
        {
            /* Two float32 operations, each rounded: the volatile store keeps compilers from fusing
             * them into one FMA and forces float precision where FLT_EVAL_METHOD != 0. */
            volatile float product = (float)x * EBNN_READ_F32(&scale[k]);
            float f = product + EBNN_READ_F32(&offset[k]);
            if (logits != NULL)
                logits[k] = f;
            y = f32_bits(f);
        }
#endif
        if (k == 0u || key_of_bits(y) > best) { /* y > largest so far (never NaN: see ebnn.h) */
            best = key_of_bits(y);
            best_k = (int)k;
        }
    }
    return best_k;
}
