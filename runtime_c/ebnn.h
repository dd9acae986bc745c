/* ebnn.h - the one public header of the keras-ebnn C runtime.
 *
 * Fused binarized-network kernels (eBNN style): every kernel computes its convolution or dense
 * product, the max/min pooling and the folded batch norm + sign (one threshold per channel) in ONE
 * pass and writes output *bits*; only the last block writes float logits. Portable C99: no malloc,
 * no recursion, fixed-width integer types only (AVR's int is 16 bits), float only in the
 * float-input kernel and the final logits. The exact semantics are keras_ebnn/blocks.py; the NumPy
 * reference executor keras_ebnn/reference.py is matched bit for bit. See README.md in this folder.
 *
 * Bit layout (activations and weights)
 *   A bitstream packed into uint32_t words: bit i is in word i >> 5 at position i & 31 (LSB first);
 *   bit 1 means +1, bit 0 means -1. A feature map (H, W, C) is stored in HWC order: bit
 *   (y * W + x) * C + c. A buffer of n bits is exactly EBNN_WORDS(n) words; kernels write the unused
 *   high bits of the last word as 0 (the kernels rely on it: weight rows are zero-padded the same
 *   way, so padding bits never count). On a little-endian machine the bytes of a buffer equal
 *   np.packbits(bits, bitorder="little") of the flattened map (plus zero bytes up to the word).
 *
 * Weight layouts (written by keras_ebnn.exporters.c; T = kh * kw * in_c taps in (ky, kx, c) order)
 *   conv blocks: filter o's T bits start at word o * EBNN_WORDS(T) (the integer input conv reads
 *     them as nibbles: bits 4g .. 4g+3 are the weights of taps 4g .. 4g+3).
 *   dense blocks: row o's n_in bits start at word o * EBNN_WORDS(n_in).
 *   Min-pooled channels are stored *negated* (weights inverted): the kernel then max-pools the
 *   negated accumulator. Their bit in the `flip` bitmask is 1, and for integer blocks the stored
 *   threshold is 1 - t: bit = (max(-acc) >= 1 - t) XOR 1 == (min(acc) >= t). Float thresholds are
 *   stored unchanged and the kernel compares -max(-acc) >= t.
 *
 * Constant data (weights, thresholds, flags, parameters) is declared EBNN_CONST and read only
 * through EBNN_READ_* / EBNN_COPY_CONST, so the same kernels run with data in flash on AVR
 * (PROGMEM) and in plain const memory on Cortex-M and hosts.
 *
 * Compile-time options
 *   EBNN_POPCOUNT = EBNN_POPCOUNT_BUILTIN (1) | EBNN_POPCOUNT_SWAR (2) | EBNN_POPCOUNT_TABLE (3)
 *     default: builtin where the CPU has a popcount instruction (x86 with POPCNT, AArch64, RISC-V with Zbb: `cpop`), a
 *     256-byte table in flash on AVR, SWAR (shifts, masks, one multiply per row) elsewhere, e.g. on
 *     Cortex-M0+/M3/M4 where __builtin_popcount is a libgcc call.
 *   EBNN_CHUNK: filters processed at once by the conv kernels (accumulators on the stack);
 *     default 32, 8 on AVR (2 KB of SRAM). Must be 8, 16 or 32.
 *   EBNN_BYTE_KERNELS = 0 | 1: byte-oriented fast paths for 8-bit CPUs (default 1 on AVR, else 0):
 *     byte XOR-popcounts with 8-bit counters and the 256-byte popcount table, binary conv patches
 *     built once per pool window for all filters and two windows counted per weight byte, and a
 *     16-bit subset-sum-table input conv (runtime_c/avr/, replacing the generic conv kernels). They
 *     need every accumulator within int16 (params->acc16), at most 255 input-conv taps and 16-bit
 *     sizes, else return EBNN_ERROR_UNSUPPORTED (a generated NAME.c refuses such a model at build
 *     time, naming the block). Dense blocks take byte popcounts too. Little-endian only.
 */
#ifndef EBNN_H
#define EBNN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- constant data: the only place that knows where it lives -------------------------------- */
#if defined(__AVR__)
#include <avr/pgmspace.h>
#define EBNN_CONST PROGMEM
#define EBNN_READ_U8(p) pgm_read_byte(p)
#define EBNN_READ_U32(p) pgm_read_dword(p)
#define EBNN_READ_I16(p) ((int16_t)pgm_read_word(p))
#define EBNN_READ_I32(p) ((int32_t)pgm_read_dword(p))
#define EBNN_READ_F32(p) pgm_read_float(p)
#define EBNN_COPY_CONST(dst, src, n) memcpy_P((dst), (src), (n))
#else
#include <string.h>
#define EBNN_CONST
#define EBNN_READ_U8(p) (*(const uint8_t *)(p))
#define EBNN_READ_U32(p) (*(const uint32_t *)(p))
#define EBNN_READ_I16(p) (*(const int16_t *)(p))
#define EBNN_READ_I32(p) (*(const int32_t *)(p))
#define EBNN_READ_F32(p) (*(const float *)(p))
#define EBNN_COPY_CONST(dst, src, n) memcpy((dst), (src), (n))
#endif

/* ---- popcount selection ---------------------------------------------------------------------- */
#define EBNN_POPCOUNT_BUILTIN 1
#define EBNN_POPCOUNT_SWAR 2
#define EBNN_POPCOUNT_TABLE 3
#ifndef EBNN_POPCOUNT
#if defined(__POPCNT__) || defined(__aarch64__) || defined(__riscv_zbb)
#define EBNN_POPCOUNT EBNN_POPCOUNT_BUILTIN
#elif defined(__AVR__)
#define EBNN_POPCOUNT EBNN_POPCOUNT_TABLE
#else
#define EBNN_POPCOUNT EBNN_POPCOUNT_SWAR
#endif
#endif

#ifndef EBNN_CHUNK
#if defined(__AVR__)
#define EBNN_CHUNK 8
#else
#define EBNN_CHUNK 32
#endif
#endif

#ifndef EBNN_BYTE_KERNELS
#if defined(__AVR__)
#define EBNN_BYTE_KERNELS 1
#else
#define EBNN_BYTE_KERNELS 0
#endif
#endif

/* EBNN_MVE_KERNELS = 0 | 1: the Helium kernels (runtime_c/mve/: binary conv and hidden binary dense on
 * Arm MVE vectors, four filters or rows at a time) in place of the generic ones. Default: 1 when the
 * compiler targets a core with integer MVE (__ARM_FEATURE_MVE, e.g. -mcpu=cortex-m55) and the byte
 * kernels are off. Same results. */
#ifndef EBNN_MVE_KERNELS
#if defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1) && !EBNN_BYTE_KERNELS
#define EBNN_MVE_KERNELS 1
#else
#define EBNN_MVE_KERNELS 0
#endif
#endif
#if EBNN_MVE_KERNELS && (!defined(__ARM_FEATURE_MVE) || EBNN_BYTE_KERNELS)
#error "EBNN_MVE_KERNELS needs a core with MVE (Helium, e.g. -mcpu=cortex-m55) and EBNN_BYTE_KERNELS=0"
#endif

/* EBNN_INT_LOGITS=1: the logits' two float32 operations are done in integer arithmetic (exact IEEE-754
 * binary32, round to nearest even: bit-identical results), so cores without an FPU link no soft-float
 * routines (~0.9 KB on Cortex-M3, ~1.6 KB on Cortex-M0+). Default: 1 on Arm and RISC-V cores without a
 * hardware FPU, 0 elsewhere (AVR's own float library is smaller than the 64-bit integer code). */
#ifndef EBNN_INT_LOGITS
#if (defined(__arm__) && !defined(__ARM_FP)) || (defined(__riscv) && !defined(__riscv_flen))
#define EBNN_INT_LOGITS 1
#else
#define EBNN_INT_LOGITS 0
#endif
#endif

/* +infinity as a constant expression, without depending on <math.h> (Zephyr's minimal libc lacks
 * INFINITY): float thresholds of constant channels and the float max-pool start value. */
#if defined(__GNUC__) || defined(__clang__)
#define EBNN_INFINITY (__builtin_inff())
#else
#include <math.h>
#define EBNN_INFINITY INFINITY
#endif

/* ---- status codes ----------------------------------------------------------------------------- */
#define EBNN_OK 0
#define EBNN_ERROR_ARGUMENT (-1)    /* a NULL pointer (or misaligned scratch) */
#define EBNN_ERROR_UNSUPPORTED (-2) /* a block these compiled kernels cannot run (see the options above) */

/* ---- sizes ------------------------------------------------------------------------------------ */
/* uint32_t words holding n bits (activation buffers are exactly this long). */
#define EBNN_WORDS(nbits) ((((uint32_t)(nbits)) + 31u) >> 5)
/* Scratch words ebnn_binary_conv needs: the patch of the current window and its validity mask. */
#define EBNN_BINARY_CONV_SCRATCH_WORDS(kh, kw, in_c) (2u * EBNN_WORDS((uint32_t)(kh) * (kw) * (in_c)))

/* Alignment of uint32_t (4 on Cortex-M and hosts, 1 on AVR): scratch memory must be aligned so. */
typedef struct {
    char c;
    uint32_t w;
} ebnn_align_probe_t;
#define EBNN_WORD_ALIGN (offsetof(ebnn_align_probe_t, w))

/* ---- block parameters ------------------------------------------------------------------------- */
/* Input encodings of the first block (keras_ebnn/blocks.py, InputSpec.mode). */
#define EBNN_INPUT_FLOAT 0      /* value = x (float32 accumulator, summed in tap order) */
#define EBNN_INPUT_UINT8 1      /* value = q_mul * p + q_add (integer accumulator) */
#define EBNN_INPUT_SIGN_FLOAT 2 /* value = +1 if x >= sign_threshold_f else -1 */
#define EBNN_INPUT_SIGN_UINT8 3 /* value = +1 if p >= sign_threshold_u8 else -1 */

/* Convolution + pooling geometry of a conv block (56 bytes on every target; lives in flash).
 * Without pooling: pool window 1x1, stride 1, no padding, out = conv. */
typedef struct {
    uint16_t in_h, in_w, in_c;    /* block input (H, W, C) */
    uint16_t kh, kw, sh, sw;      /* kernel and strides */
    uint16_t pad_t, pad_l;        /* leading padding of the convolution */
    uint16_t conv_h, conv_w;      /* convolution output before pooling */
    uint16_t pool_h, pool_w, pool_sh, pool_sw, pool_t, pool_l;
    uint16_t out_h, out_w, out_c; /* block output (H, W, C) */
    uint8_t pad_value;            /* 0: a padded tap adds nothing; 1: it reads +1 (pad_q in uint8 mode) */
    uint8_t input_mode;           /* input conv only: EBNN_INPUT_* */
    uint8_t acc16;                /* 1: every accumulator fits int16; the thresholds are then int16_t */
    uint8_t reserved;
    int16_t q_mul, q_add, pad_q;  /* EBNN_INPUT_UINT8 */
    int16_t sign_threshold_u8;    /* EBNN_INPUT_SIGN_UINT8: 0 .. 256 */
    float sign_threshold_f;       /* EBNN_INPUT_SIGN_FLOAT */
} ebnn_conv_params_t;

/* ---- kernels ---------------------------------------------------------------------------------- */
/* One file per op (runtime_c/README.md). A generated NAME.c defines EBNN_PRIVATE and includes the
 * kernel files its model uses, so their definitions are static to it (and precede their use): the
 * prototypes below are for everything else, which links the kernels as ordinary functions. */
#ifndef EBNN_PRIVATE
/* All kernels write the whole output buffer (EBNN_WORDS(out_h * out_w * out_c) words) and return
 * EBNN_OK, EBNN_ERROR_ARGUMENT for a NULL pointer, or EBNN_ERROR_UNSUPPORTED for a block the compiled
 * variant cannot run (byte kernels: accumulators beyond int16 or the size limits in the notes above;
 * AVR: an integer input conv beyond int16); the output is then not written. `thresholds` of a conv block are int16_t when
 * params->acc16 (every accumulator and, clamped into the reachable range, every threshold fits: half
 * the flash), else int32_t, and float for EBNN_INPUT_FLOAT; `flip` is a bitmask of min-pooled
 * channels (see the layout notes above). Constant arguments (params, weights, thresholds, flip) may
 * live in flash. */

/* First block on a uint8 input (modes EBNN_INPUT_UINT8 and EBNN_INPUT_SIGN_UINT8). */
int ebnn_input_conv_u8(const ebnn_conv_params_t *params, const uint8_t *input, const uint32_t *weights,
                       const void *thresholds, const uint32_t *flip, uint32_t *output);
/* First block on a float input: EBNN_INPUT_FLOAT (float thresholds, filter-major weights) or
 * EBNN_INPUT_SIGN_FLOAT (integer thresholds as above). */
int ebnn_input_conv_f32(const ebnn_conv_params_t *params, const float *input, const uint32_t *weights,
                        const void *thresholds, const uint32_t *flip, uint32_t *output);
/* Binary convolution over a bit map. scratch: EBNN_BINARY_CONV_SCRATCH_WORDS words of RAM. */
int ebnn_binary_conv(const ebnn_conv_params_t *params, const uint32_t *input, const uint32_t *weights,
                     const void *thresholds, const uint32_t *flip, uint32_t *output, uint32_t *scratch);
/* Binary dense: n_in bits -> n_out bits, bit o = (n_in - 2 * popcount(x ^ w_o) >= thresholds[o]). */
int ebnn_binary_dense(uint32_t n_in, uint32_t n_out, const uint32_t *input, const uint32_t *weights,
                      const int32_t *thresholds, uint32_t *output);
/* The same with int16_t thresholds (the exporter uses it when n_in < 32767). */
int ebnn_binary_dense16(uint32_t n_in, uint32_t n_out, const uint32_t *input, const uint32_t *weights,
                        const int16_t *thresholds, uint32_t *output);
/* Output block: x[k] = n_in - 2 * popcount(a ^ w_k); logits[k] = (float)x[k] * scale[k] + offset[k]
 * (two float32 operations, never fused). Returns the argmax (first maximum wins), or
 * EBNN_ERROR_ARGUMENT / EBNN_ERROR_UNSUPPORTED (logits not written). logits may be NULL. scale and
 * offset must be finite (the exporter checks), so no logit is NaN; the argmax compares the float bits
 * as integers (no soft-float compare). With EBNN_INT_LOGITS the float operations are integer code
 * (same bits) and n_in must be below 2^24. */
int ebnn_output_dense(uint32_t n_in, uint32_t n_out, const uint32_t *input, const uint32_t *weights,
                      const float *scale, const float *offset, float *logits);

/* Helpers, exposed for the unit tests. */
uint32_t ebnn_popcount32(uint32_t x);
/* popcount(a[i] ^ w[i]) summed over n words; a in RAM, w constant (flash). */
uint32_t ebnn_xor_popcount(const uint32_t *a, const uint32_t *w, uint32_t n);
/* popcount((a[i] ^ w[i]) & m[i]) summed over n words; a and m in RAM, w constant. */
uint32_t ebnn_xor_popcount_masked(const uint32_t *a, const uint32_t *w, const uint32_t *m, uint32_t n);
#endif /* EBNN_PRIVATE */

#ifdef __cplusplus
}
#endif

#endif /* EBNN_H */
