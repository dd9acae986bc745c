/* ebnn.h - the one public header of the keras-ebnn C runtime.
 *
 * Fused binarized-network kernels (eBNN style): every kernel computes its convolution or dense
 * product, the max/min pooling and the folded batch norm + sign (one threshold per channel) in ONE
 * pass and writes output *bits*; only the last block writes float logits. Portable C99: no malloc,
 * no recursion, fixed-width integer types only (AVR's int is 16 bits), float only in the
 * float-input kernel and the final logits. The exact semantics are keras_ebnn/ir/blocks.py; the NumPy
 * reference executor keras_ebnn/reference.py is matched bit for bit. See README.md in this folder.
 *
 * Graph ops (keras_ebnn/ir/graph.py; NumPy definition keras_ebnn/ir/graph_reference.py): unfused kernels over
 * typed tensors -- bits (the layout below), int (int32_t, always) and float32 (float) -- for the parts
 * of a model that are not fused blocks: binary accumulators, full-precision conv / depthwise / dense,
 * pooling, to_float, affine, div, activations, add, sign / threshold, concat, argmax. Bits and ints match
 * the reference exactly; float ops do the reference's float32 operations in its order (products
 * never fused into an FMA), so they match bit for bit too, except tanh / sigmoid (libm tolerance).
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

/* EBNN_ACT_LIBM=1 (default): ebnn_activation_f32 computes tanh and sigmoid with the C library's tanhf
 * and expf (link with -lm on hosts; avr-gcc and Arduino link libm anyway). 0: those two functions are
 * not compiled (they return EBNN_ERROR_UNSUPPORTED), so a model without them links no libm: a
 * generated NAME.c defines it 0 before including ebnn_elementwise.inc unless its model uses them. */
#ifndef EBNN_ACT_LIBM
#define EBNN_ACT_LIBM 1
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
/* Input encodings of the first block (keras_ebnn/ir/blocks.py, InputSpec.mode). */
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

/* Window geometry of the graph ops' conv, depthwise and pooling kernels (22 bytes; may live in
 * flash). A 1-D (L, C) tensor is H = 1, W = L. Tap (ky, kx) of output (oy, ox) reads input
 * y = oy * sh - pad_t + ky, x = ox * sw - pad_l + kx; it is in bounds when 0 <= y < in_h and
 * 0 <= x < in_w. Global pooling: kh = in_h, kw = in_w, out 1x1, no padding. */
typedef struct {
    uint16_t in_h, in_w, in_c; /* input (H, W, C) */
    uint16_t kh, kw, sh, sw;   /* window (kernel or pool) and strides */
    uint16_t pad_t, pad_l;     /* leading padding */
    uint16_t out_h, out_w;     /* output positions */
} ebnn_window_t;

/* ebnn_activation_f32's functions (keras_ebnn/ir/graph.py, op "activation"). */
#define EBNN_ACT_RELU 0       /* max(x, 0) */
#define EBNN_ACT_RELU6 1      /* min(max(x, 0), 6) */
#define EBNN_ACT_HARD_TANH 2  /* min(max(x, -1), 1) */
#define EBNN_ACT_LEAKY_RELU 3 /* x >= 0 ? x : x * alpha */
#define EBNN_ACT_TANH 4       /* tanhf(x) */
#define EBNN_ACT_SIGMOID 5    /* 1 / (1 + expf(-x)) */

/* ebnn_conv_pool_f32 (keras_ebnn/passes/graph_fuse.py, op "conv_pool"): a full-precision conv, its affine /
 * activation steps, a pool and a sign / threshold, computed per pooled output. */
#define EBNN_CP_W_F32 0  /* weights: float32 */
#define EBNN_CP_W_INT8 1 /* int8 (converted exactly to float) */
#define EBNN_CP_W_BITS 2 /* binary, packed bits (bit 1 = +1) */
#define EBNN_CP_MAX 0    /* pool: max (a 1x1 max pool when the op has no pool) */
#define EBNN_CP_AVG 1    /* average over the in-bounds positions */
#define EBNN_CP_OUT_F32 0       /* output: float32 */
#define EBNN_CP_OUT_SIGN 1      /* bits, x >= 0 */
#define EBNN_CP_OUT_THRESHOLD 2 /* bits, (flip[c] ? -x : x) >= t[c] */
#define EBNN_CP_AFFINE 0x10  /* step: x * a[c] + b[c] (2 * out_c data floats) */
#define EBNN_CP_AFFINE1 0x11 /* step: x * a + b (2 data floats) */
#define EBNN_CP_IN_F32 0        /* input: float32 */
#define EBNN_CP_IN_U8 1         /* the uint8 model input, float32(v) */
#define EBNN_CP_IN_U8_AFFINE 2  /* the uint8 model input, float32(v) * in_a + in_b (a Rescaling) */
typedef struct {
    float pad_value;      /* value of the conv's padded taps */
    float in_a, in_b;     /* EBNN_CP_IN_U8_AFFINE: the input's scalar affine */
    ebnn_window_t conv;   /* the conv: input (in_h, in_w, in_c), kernel, strides, padding, out_h x out_w positions */
    ebnn_window_t pool;   /* the pool over the conv positions (in_h x in_w = the conv's out_h x out_w) */
    uint16_t out_c;       /* output channels */
    uint8_t weights;      /* EBNN_CP_W_* */
    uint8_t pool_kind;    /* EBNN_CP_MAX / EBNN_CP_AVG */
    uint8_t n_pre, n_post; /* steps before / after the pool */
    uint8_t output;       /* EBNN_CP_OUT_* */
    uint8_t input;        /* EBNN_CP_IN_*; the struct is 64 bytes on every target (no padding) */
} ebnn_conv_pool_t;
/* The output stage fused into ebnn_conv_s8 / ebnn_depthwise_s8 (integer-only graphs). */
#define EBNN_QOUT_I32 0  /* int32 accumulators */
#define EBNN_QOUT_S8 1   /* requantized to int8 */
#define EBNN_QOUT_BITS 2 /* thresholded to bits */
typedef struct {
    const int32_t *m;      /* EBNN_QOUT_S8: per channel multiplier, shift, offset (ebnn_requant) */
    const int8_t *shift;
    const int32_t *offset;
    int32_t zp_out, lo, hi;
    const int32_t *t;      /* EBNN_QOUT_BITS: per channel thresholds and flip bits */
    const uint32_t *flip;
} ebnn_qout_t;
/* int32 scratch values of an int8 conv: n_out per conv output (twice with a pool) + the patch of
 * k4 int16 (conv: kh * kw * in_c rounded up to a multiple of 4; depthwise: 0) */
#define EBNN_CONV_S8_SCRATCH(n_out, pool, k4) ((n_out) * ((pool) ? 3u : 2u) + (k4))
/* + a row cache (conv_s8 / conv_s8_bits with rows != 0): rows input rows of cols = (out_w - 1) * sw + kw
 * columns of in_c int16, and the rows' numbers */
#define EBNN_CONV_S8_CACHE(rows, cols, in_c) ((rows) + ((rows) * (cols) * (in_c) + 1u) / 2u)
/* ebnn_conv_s8_bits: the same + 16 subset sums per group of four taps */
#define EBNN_CONV_S8_BITS_SCRATCH(n_out, pool, k4) (EBNN_CONV_S8_SCRATCH(n_out, pool, k4) + 4u * (k4))

/* ebnn_requant's element types (integer-only graphs, keras_ebnn/passes/graph_quant.py). */
#define EBNN_Q_U8 0  /* uint8_t (the raw model input) */
#define EBNN_Q_S8 1  /* int8_t */
#define EBNN_Q_I32 2 /* int32_t */

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

/* ---- graph ops (runtime_c/README.md, "Graph ops") -----------------------------------------------
 * Tensors live in RAM; `g`, weights, thresholds, flip masks, divisors, a / b are constants (may live
 * in flash). Shapes are channels last, row-major; bits as above, ints int32_t. Every kernel returns
 * EBNN_OK, or EBNN_ERROR_ARGUMENT (a NULL pointer or an invalid argument; the output is then not
 * written). Outputs must not overlap inputs, except that the elementwise float kernels (affine,
 * activation, add, i32_to_f32) may write in place (out == in). */

/* Full-precision conv: out (OH, OW, out_c) float; w (KH, KW, C, out_c); padded taps read pad_value.
 * Per output: acc = 0.0f; for (ky, kx, c) in row-major order acc = acc + v * w (each op rounded). */
int ebnn_conv_f32(const ebnn_window_t *g, const float *in, const float *w, uint16_t out_c, float pad_value,
                  float *out);
/* Full-precision depthwise conv: out (OH, OW, C * mult), channel c * mult + m; w (KH, KW, C, mult). */
int ebnn_depthwise_f32(const ebnn_window_t *g, const float *in, const float *w, uint16_t mult, float pad_value,
                       float *out);
/* Full-precision dense over the last axis: in (rows, n_in), w (n_in, n_out), out (rows, n_out);
 * acc = 0.0f; for n: acc = acc + in[r][n] * w[n][o]. */
int ebnn_dense_f32(uint32_t rows, uint32_t n_in, uint32_t n_out, const float *in, const float *w, float *out);
/* The same three with int8 weights (export option float_weights="int8"): each weight is converted to
 * float exactly, then the same float32 operations; the per-channel scale is a separate affine op. */
int ebnn_conv_w8(const ebnn_window_t *g, const float *in, const int8_t *w, uint16_t out_c, float pad_value,
                 float *out);
int ebnn_depthwise_w8(const ebnn_window_t *g, const float *in, const int8_t *w, uint16_t mult, float pad_value,
                      float *out);
int ebnn_dense_w8(uint32_t rows, uint32_t n_in, uint32_t n_out, const float *in, const int8_t *w, float *out);

/* Binary accumulators (bits in, int32 out): the sum of the +-1 products of the in-bounds taps; an
 * out-of-bounds tap adds 0 (pad_value 0) or its weight (pad_value 1: it reads +1). bconv weights:
 * filter o's kh*kw*in_c bits in (ky, kx, c) order from word o * EBNN_WORDS(kh*kw*in_c); out
 * (OH, OW, out_c). */
int ebnn_bconv_acc(const ebnn_window_t *g, const uint32_t *in, const uint32_t *w, uint16_t out_c, uint8_t pad_value,
                   int32_t *out);
/* rows x n_in bits (rows not word-aligned) against rows o of n_in bits from word o * EBNN_WORDS(n_in):
 * out[r * n_out + o] = sum_n (a[r][n] == w[o][n] ? 1 : -1). */
int ebnn_bdense_acc(uint32_t rows, uint32_t n_in, uint32_t n_out, const uint32_t *in, const uint32_t *w,
                    int32_t *out);
/* Depthwise: output channel j = c * mult + m, its kh*kw bits (ky, kx order) from word j * EBNN_WORDS(kh*kw);
 * out (OH, OW, in_c * mult). */
int ebnn_bdepthwise_acc(const ebnn_window_t *g, const uint32_t *in, const uint32_t *w, uint16_t mult,
                        uint8_t pad_value, int32_t *out);

/* Pooling over each window's in-bounds taps (row-major order), (OH, OW, C) out. A window without an
 * in-bounds tap is EBNN_ERROR_ARGUMENT. bits: max = OR; sum of bits = sum of +-1; avg float:
 * s = 0.0f; s = s + x; out = s / (float)count. */
int ebnn_max_pool_bits(const ebnn_window_t *g, const uint32_t *in, uint32_t *out);
int ebnn_max_pool_i32(const ebnn_window_t *g, const int32_t *in, int32_t *out);
int ebnn_max_pool_f32(const ebnn_window_t *g, const float *in, float *out);
int ebnn_sum_pool_bits(const ebnn_window_t *g, const uint32_t *in, int32_t *out);
int ebnn_sum_pool_i32(const ebnn_window_t *g, const int32_t *in, int32_t *out);
int ebnn_avg_pool_f32(const ebnn_window_t *g, const float *in, float *out);

/* Elementwise (n elements; `channels` = the last axis, n a multiple of it). */
int ebnn_bits_to_f32(uint32_t n, const uint32_t *in, float *out); /* +1.0f / -1.0f */
/* divisor NULL: (float)v; else (float)v / (float)divisor[k], k = 0 (n_divisor 1) or the position
 * i / channels (n_divisor = n / channels). */
int ebnn_i32_to_f32(uint32_t n, uint32_t channels, const int32_t *in, const int32_t *divisor, uint32_t n_divisor,
                    float *out);
/* out = (x * a[c]) + b[c] (two rounded ops); n_ab = 1 (one a, b for all) or channels. */
int ebnn_affine_f32(uint32_t n, uint32_t channels, const float *in, const float *a, const float *b, uint32_t n_ab,
                    float *out);
/* out = x / d[c] (one rounded division); n_d = 1 or channels. */
int ebnn_div_f32(uint32_t n, uint32_t channels, const float *in, const float *d, uint32_t n_d, float *out);
/* fn: EBNN_ACT_*; alpha: leaky relu's slope. EBNN_ERROR_UNSUPPORTED for tanh / sigmoid when compiled
 * with EBNN_ACT_LIBM=0. */
int ebnn_activation_f32(uint32_t n, uint8_t fn, float alpha, const float *in, float *out);
int ebnn_add_f32(uint32_t n, const float *a, const float *b, float *out);
/* bit = x >= 0 */
int ebnn_sign_f32(uint32_t n, const float *in, uint32_t *out);
int ebnn_sign_i32(uint32_t n, const int32_t *in, uint32_t *out);
/* bit = flip bit c ? (-x >= t[c]) : (x >= t[c]); flip: bitmask over the channels (bit c of word c >> 5). */
int ebnn_threshold_f32(uint32_t n, uint32_t channels, const float *in, const float *t, const uint32_t *flip,
                       uint32_t *out);
int ebnn_threshold_i32(uint32_t n, uint32_t channels, const int32_t *in, const int32_t *t, const uint32_t *flip,
                       uint32_t *out);
/* Concatenation along the channels: input k is (positions, channels[k]); inputs and channels are RAM
 * arrays; out (positions, sum of channels) must not overlap an input. */
int ebnn_concat_bits(uint32_t positions, uint32_t n_inputs, const uint32_t *const *inputs, const uint32_t *channels,
                     uint32_t *out);
int ebnn_concat_f32(uint32_t positions, uint32_t n_inputs, const float *const *inputs, const uint32_t *channels,
                    float *out);
/* Index of the first maximum of x[0 .. n-1] (a NaN counts as the maximum, as numpy.argmax), or
 * EBNN_ERROR_ARGUMENT (x NULL or n 0). */
int ebnn_argmax_f32(uint32_t n, const float *x);

/* conv -> steps -> pool -> steps -> output for the pooled output rows [row0, row1) (runtime_c/ebnn_conv_pool_f32.c):
 * in (in_h, in_w, in_c) float, or a ring of in_ring rows, or the uint8 model input (p->input); out float (a ring of out_ring rows) or bits;
 * scratch: 2 * out_c floats. */
int ebnn_conv_pool_f32(const ebnn_conv_pool_t *p, const void *in, const void *w, const uint8_t *steps,
                       const float *sd, const float *t, const uint32_t *flip, void *out, uint16_t row0,
                       uint16_t row1, uint16_t in_ring, uint16_t out_ring, float *scratch);
/* The number of input rows output row `row` reads (its last input row + 1, clipped to in_h). */
uint32_t ebnn_conv_pool_need(const ebnn_conv_pool_t *p, uint32_t row);
/* Integer-only graph ops (export option quantize="int8"; semantics in keras_ebnn/passes/graph_quant.py, the
 * fixed-point helpers in ebnn_requant.h): int8 tensors with a scale and zero point, int32 accumulators,
 * no floating point. conv / depthwise / dense: acc = bias[o] + sum (x - zp) * w over the taps (a tap
 * outside the input is worth pad_q), weights int8 in the float ops' layouts. */
/* conv / depthwise: an optional max pool (pool NULL: none) and output stage (kind, q: see
 * ebnn_conv_s8.c) are fused in, computed per pooled output; scratch: EBNN_CONV_S8_SCRATCH int32s
 * (+ EBNN_CONV_S8_CACHE with rows != 0: a conv's input rows converted once, (pool_kh or 2 without a
 * pool, - 1) * sh + kh of them; rows = 0: each position's window read from the input).
 * The conv's weights are rows of k4 int8 per output channel packed little-endian in 32-bit words. */
int ebnn_conv_s8(const ebnn_window_t *g, const ebnn_window_t *pool, const int8_t *in, int32_t zp, int32_t pad_q,
                 const uint32_t *w, const int32_t *bias, uint16_t out_c, int kind, const ebnn_qout_t *q, void *out,
                 uint16_t rows, int32_t *scratch);
int ebnn_depthwise_s8(const ebnn_window_t *g, const ebnn_window_t *pool, const int8_t *in, int32_t zp,
                      int32_t pad_q, const int8_t *w, const int32_t *bias, uint16_t mult, int kind,
                      const ebnn_qout_t *q, void *out, int32_t *scratch);
/* ebnn_conv_s8 with binary weights (each output channel's weights +-mag[o]) stored as bits: per output
 * channel (k4 / 4 + 1) / 2 bytes, the sign nibble of taps 4g .. 4g + 3 (bit i: tap 4g + i is +mag, taps in
 * the conv's (KH, KW, C) order) in the low (even g) or high (odd g) half of byte g / 2. Exact when
 * kh * kw * in_c * max|x - zp| (and |pad_q|) <= 32767 (the export checks it); scratch:
 * EBNN_CONV_S8_BITS_SCRATCH int32s. */
int ebnn_conv_s8_bits(const ebnn_window_t *g, const ebnn_window_t *pool, const int8_t *in, int32_t zp, int32_t pad_q,
                      const uint8_t *w, const int32_t *mag, const int32_t *bias, uint16_t out_c, int kind,
                      const ebnn_qout_t *q, void *out, uint16_t rows, int32_t *scratch);
int ebnn_dense_s8(uint32_t rows, uint32_t n_in, uint32_t n_out, const int8_t *in, int32_t zp, const int8_t *w,
                  const int32_t *bias, int32_t *out);
/* y = clamp(zp_out + offset[c] + mbqm(x - zp_in, m[c], shift[c]), lo, hi); in / out element types
 * EBNN_Q_U8 (in only) = 0, EBNN_Q_S8 = 1, EBNN_Q_I32 = 2. */
int ebnn_requant(uint32_t n, uint32_t channels, const void *in, int in_type, int32_t zp_in, const int32_t *m,
                 const int8_t *shift, const int32_t *offset, int32_t zp_out, int32_t lo, int32_t hi, void *out,
                 int out_type);
int ebnn_lut_s8(uint32_t n, const int8_t *in, const int8_t *table, int8_t *out); /* table[x + 128] */
int ebnn_add_s8(uint32_t n, uint32_t n_inputs, const int8_t *const *inputs, const int32_t *zp, const int32_t *m,
                const int8_t *shift, int32_t m_out, int32_t shift_out, int32_t zp_out, int8_t *out);
int ebnn_concat_s8(uint32_t positions, uint32_t n_inputs, const int8_t *const *inputs, const uint16_t *channels,
                   const int32_t *zp, const int32_t *m, const int8_t *shift, const uint8_t *copy, int32_t zp_out,
                   int8_t *out);
int ebnn_bits_to_s8(uint32_t n, const uint32_t *in, int8_t *out);
int ebnn_threshold_s8(uint32_t n, uint32_t channels, const int8_t *in, const int32_t *t, const uint32_t *flip,
                      uint32_t *out);
int ebnn_max_pool_s8(const ebnn_window_t *g, const int8_t *in, int8_t *out);
int ebnn_avg_pool_s8(const ebnn_window_t *g, const int8_t *in, int32_t zp, int8_t *out);
int ebnn_argmax_i32(uint32_t n, const int32_t *x); /* the first maximum */

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
