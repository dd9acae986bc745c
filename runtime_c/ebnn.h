/* ebnn.h - the one public header of the keras-ebnn C runtime.
 *
 * Fused binarized-network kernels (eBNN style): each kernel computes convolution, pooling and the
 * folded batch-norm + sign (one integer threshold per channel) in one pass and writes output *bits*.
 * Portable C99; no malloc, no recursion; float only in the float-input kernel and the final logits.
 *
 * Bit layout (activations and weights): a bitstream packed into uint32_t words, bit i in word i / 32
 * at position i % 32 (LSB first); bit 1 means +1, bit 0 means -1. Feature maps are stored in HWC
 * order: bit (y * W + x) * C + c. On a little-endian machine the bytes of a buffer equal NumPy's
 * np.packbits(bits, bitorder="little") of the flattened map.
 *
 * Constant data (weights, thresholds, parameters) is read through EBNN_READ_* so that the same
 * kernels work with data in flash on AVR (PROGMEM) and in plain const memory elsewhere.
 *
 * Options (compile-time macros):
 *   EBNN_POPCOUNT = EBNN_POPCOUNT_BUILTIN | EBNN_POPCOUNT_SWAR | EBNN_POPCOUNT_TABLE
 *     default: builtin where the CPU has a popcount instruction (x86 with POPCNT, AArch64),
 *     a 256-entry table on AVR, SWAR (shifts, masks, one multiply) elsewhere (Cortex-M).
 */
#ifndef EBNN_H
#define EBNN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- constant data in flash ------------------------------------------------------------------ */
#if defined(__AVR__)
#include <avr/pgmspace.h>
#define EBNN_CONST PROGMEM
#define EBNN_READ_U8(p) pgm_read_byte(p)
#define EBNN_READ_U32(p) pgm_read_dword(p)
#define EBNN_READ_I32(p) ((int32_t)pgm_read_dword(p))
#define EBNN_READ_F32(p) pgm_read_float(p)
#define EBNN_COPY_CONST(dst, src, n) memcpy_P((dst), (src), (n))
#else
#define EBNN_CONST
#define EBNN_READ_U8(p) (*(const uint8_t *)(p))
#define EBNN_READ_U32(p) (*(const uint32_t *)(p))
#define EBNN_READ_I32(p) (*(const int32_t *)(p))
#define EBNN_READ_F32(p) (*(const float *)(p))
#define EBNN_COPY_CONST(dst, src, n) memcpy((dst), (src), (n))
#endif

/* ---- popcount selection -------------------------------------------------------------------- */
#define EBNN_POPCOUNT_BUILTIN 1
#define EBNN_POPCOUNT_SWAR 2
#define EBNN_POPCOUNT_TABLE 3
#ifndef EBNN_POPCOUNT
#if defined(__POPCNT__) || defined(__aarch64__)
#define EBNN_POPCOUNT EBNN_POPCOUNT_BUILTIN
#elif defined(__AVR__)
#define EBNN_POPCOUNT EBNN_POPCOUNT_TABLE
#else
#define EBNN_POPCOUNT EBNN_POPCOUNT_SWAR
#endif
#endif

/* ---- status codes ---------------------------------------------------------------------------- */
#define EBNN_OK 0
#define EBNN_ERROR_ARGUMENT (-1)

/* ---- block parameters ---------------------------------------------------------------------- */
/* Input encodings of the first block (see keras_ebnn/blocks.py, InputSpec). */
#define EBNN_INPUT_FLOAT 0      /* float input, float32 accumulator */
#define EBNN_INPUT_UINT8 1      /* q = q_mul * p + q_add, integer accumulator */
#define EBNN_INPUT_SIGN_FLOAT 2 /* +1 if x >= sign_threshold_f else -1 */
#define EBNN_INPUT_SIGN_UINT8 3 /* +1 if p >= sign_threshold_u8 else -1 */

/* Convolution + pooling geometry. Without pooling: pool window 1x1, stride 1, no padding. */
typedef struct {
    uint16_t in_h, in_w, in_c;      /* block input */
    uint16_t kh, kw, sh, sw;        /* kernel and strides */
    uint16_t pad_t, pad_l;          /* leading padding of the convolution */
    uint16_t conv_h, conv_w;        /* convolution output (before pooling) */
    uint16_t pool_h, pool_w, pool_sh, pool_sw, pool_t, pool_l;
    uint16_t out_h, out_w, out_c;   /* block output */
    uint8_t pad_value;              /* 0: padded taps add nothing, 1: padded taps are +1 (or pad_q) */
    uint8_t input_mode;             /* input conv only: EBNN_INPUT_* */
    int16_t q_mul, q_add, pad_q;    /* input conv, EBNN_INPUT_UINT8 */
    int16_t sign_threshold_u8;      /* input conv, EBNN_INPUT_SIGN_UINT8 (0..256) */
    float sign_threshold_f;         /* input conv, EBNN_INPUT_SIGN_FLOAT */
} ebnn_conv_params_t;

/* Alignment of uint32_t (4 on Cortex-M and hosts, 1 on AVR): scratch memory must be aligned so. */
typedef struct {
    char c;
    uint32_t w;
} ebnn_align_probe_t;
#define EBNN_WORD_ALIGN (offsetof(ebnn_align_probe_t, w))

/* Number of uint32_t words holding n bits, plus one guard word (kernels may read one word ahead). */
#define EBNN_WORDS(nbits) ((((uint32_t)(nbits)) + 31u) / 32u + 1u)

/* Largest kernel window (kh * kw * in_c taps) of the input convolution's filter-major fast path. */
#define EBNN_MAX_WINDOW 64

/* ---- kernels ------------------------------------------------------------------------------- */
/* Weights of ebnn_input_conv_u8/_f32 are tap-major: for tap t = (ky * kw + kx) * in_c + c and filter
 * group g = o / 32, word t * groups + g holds bit o % 32 (groups = ceil(out_c / 32)).
 * ebnn_input_conv_window_u8/_f32 (integer input modes with at most EBNN_MAX_WINDOW taps and input
 * values within int16) take filter-major weights: filter o's taps in (ky, kx, c) order from word
 * o * ceil(taps / 32); they gather each window once and share it across filters (faster).
 * Weights of binary conv blocks are filter-major: filter o's kh*kw*in_c bits in (ky, kx, c) order,
 * starting at word o * filter_words. Dense weights: row o's n_in bits at word o * row_words.
 * thresholds: one per output channel (int32, or float for EBNN_INPUT_FLOAT).
 * pool_min: one byte per channel, 1 = the pooled value is the minimum of the accumulator.
 * All kernels overwrite the whole output buffer (EBNN_WORDS(out bits) words). */
int ebnn_input_conv_u8(const ebnn_conv_params_t *params, const uint8_t *input, const uint32_t *weights,
                       const int32_t *thresholds, const uint8_t *pool_min, uint32_t *output);
int ebnn_input_conv_f32(const ebnn_conv_params_t *params, const float *input, const uint32_t *weights,
                        const void *thresholds, const uint8_t *pool_min, uint32_t *output);
int ebnn_input_conv_window_u8(const ebnn_conv_params_t *params, const uint8_t *input, const uint32_t *weights,
                              const int32_t *thresholds, const uint8_t *pool_min, uint32_t *output);
int ebnn_input_conv_window_f32(const ebnn_conv_params_t *params, const float *input, const uint32_t *weights,
                               const int32_t *thresholds, const uint8_t *pool_min, uint32_t *output);
int ebnn_binary_conv(const ebnn_conv_params_t *params, const uint32_t *input, const uint32_t *weights,
                     uint32_t filter_words, const int32_t *thresholds, const uint8_t *pool_min,
                     uint32_t *output);
int ebnn_binary_dense(uint32_t n_in, uint32_t n_out, const uint32_t *input, const uint32_t *weights,
                      uint32_t row_words, const int32_t *thresholds, uint32_t *output);
/* Output block: logits[k] = (float)x[k] * scale[k] + offset[k]; returns the argmax (first maximum).
 * logits may be NULL. */
int ebnn_output_dense(uint32_t n_in, uint32_t n_out, const uint32_t *input, const uint32_t *weights,
                      uint32_t row_words, const float *scale, const float *offset, float *logits);

/* Helpers, exposed for tests. */
uint32_t ebnn_popcount32(uint32_t x);
/* Number of differing bits between a[abit .. abit+n) and the constant w[wbit .. wbit+n). */
uint32_t ebnn_xor_popcount(const uint32_t *a, uint32_t abit, const uint32_t *w, uint32_t wbit, uint32_t n);
/* Number of set bits in the constant w[wbit .. wbit+n). */
uint32_t ebnn_const_popcount(const uint32_t *w, uint32_t wbit, uint32_t n);

#ifdef __cplusplus
}
#endif

#endif /* EBNN_H */
