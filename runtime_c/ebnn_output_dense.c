/* ebnn_output_dense.c - the output block: integer scores, the per-class affine in float32 (or, with
 * EBNN_INT_LOGITS, the same IEEE-754 binary32 operations in integer code), the argmax. */

#include "ebnn_internal.h"

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

EBNN_API int ebnn_output_dense(uint32_t n_in, uint32_t n_out, const uint32_t *input, const uint32_t *weights,
                      const float *scale, const float *offset, float *logits)
{
    uint32_t k, rwords = EBNN_WORDS(n_in);
    int best_k = 0;
    int32_t best = 0; /* ebnn_key_of_bits of the largest logit so far */
    if (input == NULL || weights == NULL || scale == NULL || offset == NULL || n_out == 0u)
        return EBNN_ERROR_ARGUMENT;
#if EBNN_INT_LOGITS
    if (n_in >= ((uint32_t)1 << 24))
        return EBNN_ERROR_UNSUPPORTED; /* (float)x would round */
#endif
    for (k = 0; k < n_out; k++, weights += rwords) {
        int32_t x = (int32_t)n_in - 2 * (int32_t)ebnn_row_popcount(input, weights, n_in);
        uint32_t y;
#if EBNN_INT_LOGITS
        y = f32_add(f32_mul_int(x, ebnn_f32_bits(EBNN_READ_F32(&scale[k]))), ebnn_f32_bits(EBNN_READ_F32(&offset[k])));
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
            float f = EBNN_F32(product + EBNN_READ_F32(&offset[k]));
            if (logits != NULL)
                logits[k] = f;
            y = ebnn_f32_bits(f);
        }
#endif
        if (k == 0u || ebnn_key_of_bits(y) > best) { /* y > largest so far (never NaN: see ebnn.h) */
            best = ebnn_key_of_bits(y);
            best_k = (int)k;
        }
    }
    return best_k;
}
