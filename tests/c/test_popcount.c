/* ebnn_popcount32, ebnn_xor_popcount and ebnn_xor_popcount_masked against bit loops, 0..39 words.
 * Built once per EBNN_POPCOUNT variant by the test runner. */
#include "testlib.h"

static uint32_t a[40], w[40], m[40];

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
        uint32_t x = rnd(), n = 0, b, len, naive = 0, ones = 0;
        for (b = 0; b < 32u; b++)
            n += (x >> b) & 1u;
        CHECK(ebnn_popcount32(x) == n, "popcount");
        for (i = 0; i < 40; i++) {
            a[i] = rnd();
            w[i] = rnd();
            m[i] = rnd();
        }
        len = rnd_below(40); /* words */
        for (b = 0; b < 32u * len; b++) {
            naive += (uint32_t)(get_bit(a, b) != get_bit(w, b));
            ones += (uint32_t)((get_bit(a, b) != get_bit(w, b)) && get_bit(m, b));
        }
        CHECK(ebnn_xor_popcount(a, w, len) == naive, "xor_popcount over %u words", (unsigned)len);
        CHECK(ebnn_xor_popcount_masked(a, w, m, len) == ones, "xor_popcount_masked over %u words", (unsigned)len);
    }
    return report("test_popcount");
}
