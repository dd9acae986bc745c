/* ebnn_internal.h - shared helpers of the keras-ebnn C runtime's kernels (not a public header).
 *
 * The kernels live one op per file (ebnn_<op>.c; target variants in a folder per target, e.g. avr/).
 * Two ways to build them:
 *   - as ordinary C files, each its own translation unit with external linkage (the unit tests,
 *     or an application that calls the kernels itself): the shared helpers below are then ordinary
 *     functions named ebnn_*;
 *   - private to one model (EBNN_PRIVATE, what a generated NAME.c does): NAME.c defines EBNN_PRIVATE
 *     and #includes the kernel files its blocks use (exported as .inc files, which no build compiles
 *     on its own), so kernels and helpers are static to NAME.c. Several models then link into one
 *     program without clashing symbols, and the whole model compiles as one translation unit.
 */
#ifndef EBNN_INTERNAL_H
#define EBNN_INTERNAL_H

#include "ebnn.h"

#if EBNN_CHUNK != 8 && EBNN_CHUNK != 16 && EBNN_CHUNK != 32
#error "EBNN_CHUNK must be 8, 16 or 32"
#endif

/* ---- float32 arithmetic ------------------------------------------------------------------------
 * The float kernels do the reference's float32 operations one by one, each rounded to float32
 * (keras_ebnn/ir/graph_reference.py). Two kinds of build would break that:
 *   - -ffast-math / -Ofast (__FAST_MATH__): reassociation, reciprocals, flush-to-zero. Refused here;
 *     define EBNN_ALLOW_FAST_MATH to build anyway (logits, and the classes of models with float
 *     layers, may then differ from the reference and Keras).
 *   - float expressions evaluated in a wider format (FLT_EVAL_METHOD != 0: the x87 FPU, e.g. gcc -m32
 *     without SSE). In GNU modes (-std=gnu99, the default) gcc keeps such values in 80-bit registers
 *     even across assignments and casts. EBNN_F32(x) rounds x to float32 there (a store through a
 *     volatile float); elsewhere it is x itself (no code). Every float result that feeds another
 *     operation goes through it; one operation in 80 bits, then rounded to float32, gives the float32
 *     operation's result (64 >= 2 * 24 + 2 significand bits: the double rounding is harmless). */
#include <float.h>
#if defined(__FAST_MATH__) && !defined(EBNN_ALLOW_FAST_MATH)
#error "keras-ebnn kernels need IEEE float32 arithmetic: build without -ffast-math / -Ofast (or define EBNN_ALLOW_FAST_MATH to accept logits that may differ from Keras)"
#endif
#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD != 0
static inline float ebnn_round_f32(float x)
{
    volatile float v = x;
    return v;
}
#define EBNN_F32(x) ebnn_round_f32(x)
#else
#define EBNN_F32(x) (x)
#endif

/* ---- linkage ---------------------------------------------------------------------------------- */
#if defined(__has_attribute)
#if __has_attribute(unused)
#define EBNN_MAYBE_UNUSED __attribute__((unused))
#endif
#if __has_attribute(noipa)
#define EBNN_OWN_FRAME __attribute__((noipa))
#elif __has_attribute(noclone)
#define EBNN_OWN_FRAME __attribute__((noinline, noclone))
#elif __has_attribute(noinline)
#define EBNN_OWN_FRAME __attribute__((noinline))
#endif
#if __has_attribute(noclone)
#define EBNN_NOT_INLINED __attribute__((noinline, noclone))
#elif __has_attribute(noinline)
#define EBNN_NOT_INLINED __attribute__((noinline))
#endif
#endif
#ifndef EBNN_MAYBE_UNUSED
#define EBNN_MAYBE_UNUSED
#endif
#ifndef EBNN_OWN_FRAME
#define EBNN_OWN_FRAME
#endif
#ifndef EBNN_NOT_INLINED
#define EBNN_NOT_INLINED
#endif

#ifdef EBNN_PRIVATE
/* Kernels (the ebnn.h API) static to the including NAME.c and compiled as their own functions, as
 * when they were a separate translation unit (same code, same stack frames); a file may define
 * entry points its model does not call, hence "maybe unused". */
#define EBNN_API static EBNN_OWN_FRAME EBNN_MAYBE_UNUSED
/* Helpers shared between kernel files: static too (inlined where the compiler sees fit). */
#define EBNN_INTERNAL static EBNN_MAYBE_UNUSED
/* Helpers that stay ordinary calls, neither inlined nor specialised, as when the kernels were one
 * translation unit (the API's popcount helpers, the integer input conv that two entry points share):
 * inlined or specialised to one model's constants, GCC allocated registers differently and the
 * Cortex-M3 build of paper_mnist ran 0.6% more instructions. */
#define EBNN_HELPER static EBNN_NOT_INLINED EBNN_MAYBE_UNUSED
#else
#define EBNN_API
#define EBNN_INTERNAL
#define EBNN_HELPER
#endif

/* 1: the byte binary conv runs the blocks it cannot (accumulators beyond int16) with the generic code
 * (ebnn_binary_conv.c, compiled in then). A generated NAME.c sets it for the models that need it. */
#ifndef EBNN_BINARY_CONV_FALLBACK
#define EBNN_BINARY_CONV_FALLBACK 0
#endif

#define ONE32 ((uint32_t)1)
#define LOW_BITS(n) ((n) >= 32u ? 0xffffffffu : (ONE32 << (n)) - 1u) /* n in 0..32 */

/* Unit tests only (-DEBNN_TEST_COUNTERS): ebnn_test_zero_windows counts the conv windows (per pass of
 * filters) that the integer input convolutions skipped as all-zero, to show the shortcut is taken. */
#ifdef EBNN_TEST_COUNTERS
extern uint32_t ebnn_test_zero_windows;
#define COUNT_ZERO_WINDOWS(n) (ebnn_test_zero_windows += (uint32_t)(n))
#else
#define COUNT_ZERO_WINDOWS(n) ((void)0)
#endif

/* The 256-byte popcount table (ebnn_bits.c): with EBNN_POPCOUNT_TABLE and for the byte kernels. */
#if EBNN_POPCOUNT == EBNN_POPCOUNT_TABLE || EBNN_BYTE_KERNELS
#if defined(__AVR__) && EBNN_BYTE_KERNELS
#define POPCOUNT_ALIGN __attribute__((aligned(256))) /* a lookup sets only ZL (byte kernels' asm) */
#else
#define POPCOUNT_ALIGN
#endif
#define POPCOUNT8(b) ((uint_fast16_t)EBNN_READ_U8(&ebnn_popcount_table[(uint8_t)(b)]))
#endif

/* Appends bit fields to a word buffer, LSB first; the last partial word is completed with zeros. */
typedef struct {
    uint32_t *out;
    uint32_t word;
    uint_fast8_t fill; /* bits already in `word`, 0..31 */
} ebnn_bit_writer_t;

/* `const ebnn_conv_params_t *name` for the parameters at src: on AVR a copy from flash on the stack
 * (56 B), elsewhere the constant itself (no copy: less stack). A declaration: opens a block's use. */
#if defined(__AVR__)
#define PARAMS_IN_RAM(name, src)                                                                    \
    ebnn_conv_params_t name##_ram;                                                                  \
    const ebnn_conv_params_t *name = (EBNN_COPY_CONST(&name##_ram, (src), sizeof(name##_ram)), &name##_ram)
#else
#define PARAMS_IN_RAM(name, src) const ebnn_conv_params_t *name = (src)
#endif

#ifndef EBNN_PRIVATE /* in a private build every helper is defined (ebnn_bits.inc) before its use */
#if EBNN_POPCOUNT == EBNN_POPCOUNT_TABLE || EBNN_BYTE_KERNELS
extern const uint8_t ebnn_popcount_table[256];
#endif
/* float order without float instructions: see ebnn_bits.c */
uint32_t ebnn_f32_bits(float f);
int32_t ebnn_key_of_bits(uint32_t u);
int32_t ebnn_float_key(float f);
int ebnn_float_is_nan(float f);
/* bit writer */
void ebnn_bw_init(ebnn_bit_writer_t *bw, uint32_t *out);
void ebnn_bw_put(ebnn_bit_writer_t *bw, uint32_t bits, uint_fast8_t n);
void ebnn_bw_flush(ebnn_bit_writer_t *bw);
uint32_t ebnn_read_bits(const uint32_t *p, uint32_t bit, uint_fast8_t n);
/* windows, thresholds, flip bits */
void ebnn_clip_window(int32_t start, uint_fast16_t k, uint_fast16_t size, uint_fast16_t *lo, uint_fast16_t *hi);
int32_t ebnn_read_threshold(const void *t, uint32_t o, uint_fast8_t is16);
uint32_t ebnn_flip_bits(const uint32_t *flip, uint_fast16_t o0, uint_fast8_t n);
int32_t ebnn_conv_start(int32_t pos, uint_fast16_t stride, uint_fast16_t pad);
/* popcount(x ^ w) over a row of n_in bits (dense blocks; the byte kernels have their own) */
uint32_t ebnn_row_popcount(const uint32_t *x, const uint32_t *w, uint32_t n_in);
#if EBNN_BINARY_CONV_FALLBACK
/* the generic binary convolution (ebnn_binary_conv.c) for the byte kernels' fallback */
void ebnn_binary_conv32(const ebnn_conv_params_t *pp, const uint32_t *input, const uint32_t *weights,
                        const void *thresholds, const uint32_t *flip, uint32_t *output, uint32_t *scratch);
#endif
#if EBNN_MVE_KERNELS
/* the generic binary convolution's patch builder (ebnn_binary_conv.c), shared with mve/ */
uint32_t ebnn_build_patch(const ebnn_conv_params_t *p, const uint32_t *in, int32_t iy0, int32_t ix0,
                          uint32_t *patch, uint32_t *mask, int *masked);
#endif
/* the integer input convolution (ebnn_input_conv.c), also used for sign_float inputs */
int ebnn_input_conv_int(const ebnn_conv_params_t *pp, const uint8_t *in_u8, const float *in_f32, const uint32_t *weights,
                   const void *thresholds, const uint32_t *flip, uint32_t *output);
#endif

/* Weight k of a full-precision conv / dense layer as a float: float32 weights wf, or int8 weights w8
 * (float_weights="int8") when wf is NULL, converted exactly. Both are constant data. */
static inline float ebnn_read_weight_f32(const float *wf, const int8_t *w8, uint32_t k)
{
    return wf != NULL ? EBNN_READ_F32(wf + k) : (float)(int8_t)EBNN_READ_U8((const uint8_t *)(w8 + k));
}

#endif /* EBNN_INTERNAL_H */
