/* The output block's logits, (float)x * scale + offset with two rounded float32 operations, against
 * the host's float arithmetic, bit for bit, over the whole binary32 range: random sign, exponent and
 * mantissa bits (subnormals and zeros included), products that overflow to infinity, and offsets
 * that nearly or exactly cancel the product. Meant for -DEBNN_INT_LOGITS=1 (the integer binary32
 * code); it passes trivially with the float path. */
#include "testlib.h"

#define MAXN 3000

static uint32_t in[MAXN / 32 + 2], wpk[MAXN / 32 + 2];

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}

static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    return u;
}

/* A finite float from random bits, often with an extreme exponent. */
static float random_float(void)
{
    uint32_t sign = (rnd() & 1u) << 31, ex, man = rnd() & 0x7fffffu;
    switch (rnd_below(5)) {
    case 0: ex = 0u; break;                     /* zero or subnormal */
    case 1: ex = 254u - rnd_below(30); break;   /* huge: products overflow */
    case 2: ex = 1u + rnd_below(30); break;     /* tiny: subnormal results */
    default: ex = 100u + rnd_below(50); break;  /* ordinary */
    }
    if (rnd_below(8) == 0u)
        man &= 0x7f0000u; /* short mantissas: exact ties in the roundings */
    return from_bits(sign | (ex << 23) | man);
}

int main(void)
{
    int trial;
    for (trial = 0; trial < 200000; trial++) {
        int pow2 = rnd_below(6) == 0u; /* a power-of-two product: x = n = 2^k, scale's mantissa 0 */
        uint32_t n = pow2 ? 1u << rnd_below(12) : 1u + rnd_below(MAXN), i, pe;
        int32_t x;
        float scale = random_float(), offset, logit, want;
        volatile float product;
        memset(in, 0, sizeof(in));
        memset(wpk, 0, sizeof(wpk));
        for (i = 0; i < n; i++) {
            set_bit(in, i, (int)(rnd() & 1u));
            set_bit(wpk, i, pow2 ? get_bit(in, i) : rnd_below(4) != 0u); /* biased: large |x| too */
        }
        if (pow2)
            scale = from_bits(bits_of(scale) & 0xff800000u);
        x = (int32_t)n;
        for (i = 0; i < n; i++)
            x -= 2 * (get_bit(in, i) ^ get_bit(wpk, i));
        product = (float)x * scale;
        switch (rnd_below(5)) {
        case 0: /* cancels the product exactly or up to a few last bits */
            offset = (bits_of(product) << 1) != 0xff000000u /* finite product */
                         ? from_bits(bits_of(-product) ^ rnd_below(8u)) : random_float();
            break;
        case 2: /* opposite sign, 2^-22 .. 2^-27 of the product: just below a power of two the spacing
                 * halves, so a subtraction there can round down even for tiny offsets */
            pe = (bits_of(product) >> 23) & 0xffu;
            offset = pe > 30u && pe < 255u
                         ? from_bits((~bits_of(product) & 0x80000000u) | ((pe - 22u - rnd_below(6)) << 23) | (rnd() & 0x7fffffu))
                         : random_float();
            break;
        case 1: offset = from_bits(bits_of(scale) ^ (rnd() & 0x807fffffu)); break; /* a similar scale */
        default: offset = random_float(); break;
        }
        want = product + offset;
        CHECK(ebnn_output_dense(n, 1u, in, wpk, &scale, &offset, &logit) == 0, "status n=%u", (unsigned)n);
        CHECK(bits_of(logit) == bits_of(want), "x=%d scale=%08x offset=%08x: %08x, float gives %08x", (int)x,
              (unsigned)bits_of(scale), (unsigned)bits_of(offset), (unsigned)bits_of(logit), (unsigned)bits_of(want));
    }
    return report("test_logits");
}
