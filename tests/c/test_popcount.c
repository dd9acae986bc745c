/* ebnn_popcount32, ebnn_xor_popcount and ebnn_const_popcount against bit loops, at every alignment.
 * Built once per EBNN_POPCOUNT variant by the test runner. */
#include "testlib.h"

static uint32_t a[40], w[40];

int main(void)
{
    int i, trial;
    static const uint32_t edge[] = {0u, 1u, 0x80000000u, 0xffffffffu, 0x55555555u, 0xaaaaaaaau, 0x0f0f0f0fu};
    for (i = 0; i < (int)(sizeof(edge) / sizeof(edge[0])); i++) {
        uint32_t n = 0, b;
        for (b = 0; b < 32u; b++)
            n += (edge[i] >> b) & 1u;
        CHECK(ebnn_popcount32(edge[i]) == n, "popcount(0x%08lx)", (unsigned long)edge[i]);
    }
    for (trial = 0; trial < 3000; trial++) {
        uint32_t x = rnd(), n = 0, b, abit, wbit, len, naive = 0, ones = 0;
        for (b = 0; b < 32u; b++)
            n += (x >> b) & 1u;
        CHECK(ebnn_popcount32(x) == n, "popcount");
        for (i = 0; i < 40; i++) {
            a[i] = rnd();
            w[i] = rnd();
        }
        abit = rnd_below(300);
        wbit = trial % 3 == 0 ? abit & ~31u : rnd_below(300);
        if (trial % 3 == 0)
            abit &= ~31u;
        len = rnd_below(900);
        for (b = 0; b < len; b++) {
            naive += (uint32_t)(get_bit(a, abit + b) != get_bit(w, wbit + b));
            ones += (uint32_t)get_bit(w, wbit + b);
        }
        CHECK(ebnn_xor_popcount(a, abit, w, wbit, len) == naive, "xor_popcount %u %u %u", (unsigned)abit,
              (unsigned)wbit, (unsigned)len);
        CHECK(ebnn_const_popcount(w, wbit, len) == ones, "const_popcount");
    }
    return report("test_popcount");
}
