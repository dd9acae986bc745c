/* ebnn_binary_dense and ebnn_output_dense against naive loops (sizes around word boundaries). */
#include "testlib.h"

#define MAXN 1100
#define MAXO 70

static uint8_t a[MAXN], w[MAXN * MAXO];
static uint32_t in[MAXN / 32 + 2], wpk[(MAXN / 32 + 2) * MAXO + 1], out[MAXO / 32 + 2];
static int32_t thr[MAXO];
static int16_t thr16[MAXO];
static float scale[MAXO], offset[MAXO], logits[MAXO];

static int32_t naive_dot(int n, int o)
{
    int i;
    int32_t acc = 0;
    for (i = 0; i < n; i++)
        acc += (a[i] == w[o * n + i]) ? 1 : -1;
    return acc;
}

/* The hidden dense block's output bits against the naive dot products, and zeros past n_out. */
static void check_dense_bits(int n, int n_out, const char *kernel)
{
    int o;
    for (o = 0; o < n_out; o++)
        CHECK(get_bit(out, (uint32_t)o) == (naive_dot(n, o) >= thr[o]), "%s n=%d o=%d", kernel, n, o);
    for (o = n_out; o < (n_out + 31) / 32 * 32; o++)
        CHECK(get_bit(out, (uint32_t)o) == 0, "%s: unused bits of the last word must be 0", kernel);
}

int main(void)
{
    static const int sizes[] = {1, 5, 31, 32, 33, 63, 64, 65, 100, 360, 1024, 1089};
    int s, trial;
    for (s = 0; s < (int)(sizeof(sizes) / sizeof(sizes[0])); s++)
        for (trial = 0; trial < 6; trial++) {
            int n = sizes[s], n_out = 1 + (int)rnd_below(MAXO), i, o, best = 0;
            uint32_t row_words = ((uint32_t)n + 31u) / 32u;
            float best_v = 0.0f;
            memset(in, 0, sizeof(in));
            for (i = 0; i < n; i++) {
                a[i] = (uint8_t)(rnd() & 1u);
                set_bit(in, (uint32_t)i, a[i]);
            }
            for (i = 0; i < n * n_out; i++)
                w[i] = (uint8_t)(rnd() & 1u);
            for (o = 0; o < n_out; o++) {
                thr[o] = (int32_t)rnd_below((uint32_t)n + 3u) - n / 2 - 1;
                scale[o] = (float)((int32_t)rnd_below(2001) - 1000) / 700.0f;
                offset[o] = (float)((int32_t)rnd_below(2001) - 1000) / 300.0f;
            }
            pack_rows(w, n_out, n, row_words, wpk);
            memset(out, 0xA5, sizeof(out));
            CHECK(ebnn_binary_dense((uint32_t)n, (uint32_t)n_out, in, wpk, thr, out) == EBNN_OK, "status");
            check_dense_bits(n, n_out, "dense");
            for (o = 0; o < n_out; o++)
                thr16[o] = (int16_t)thr[o];
            memset(out, 0xA5, sizeof(out));
            CHECK(ebnn_binary_dense16((uint32_t)n, (uint32_t)n_out, in, wpk, thr16, out) == EBNN_OK, "status 16");
            check_dense_bits(n, n_out, "dense16");
            i = ebnn_output_dense((uint32_t)n, (uint32_t)n_out, in, wpk, scale, offset, logits);
            for (o = 0; o < n_out; o++) {
                float y = (float)naive_dot(n, o) * scale[o];
                y = y + offset[o];
                CHECK(memcmp(&y, &logits[o], sizeof(y)) == 0, "logit n=%d o=%d", n, o);
                if (o == 0 || y > best_v) {
                    best_v = y;
                    best = o;
                }
            }
            CHECK(i == best, "argmax n=%d: %d vs %d", n, i, best);
            CHECK(ebnn_output_dense((uint32_t)n, (uint32_t)n_out, in, wpk, scale, offset, NULL) == best,
                  "argmax without logits");
        }
    /* ties: the first maximum wins */
    for (int o = 0; o < 4; o++) {
        scale[o] = 0.0f;
        offset[o] = o == 1 || o == 3 ? 2.0f : 1.0f;
    }
    CHECK(ebnn_output_dense(8, 4, in, wpk, scale, offset, NULL) == 1, "first maximum wins");
    /* signed zeros (equal: the first wins), subnormals, overflow to +-inf: the argmax compares float
     * bits as integers and must agree with the float comparison */
    {
        static const float sc[] = {-3e38f, -1.0f, -0.0f, 0.0f, 1e-45f, 1.0f, 3e38f};
        static const float of[] = {-1e30f, -1.0f, -0.0f, 0.0f, 1e-45f, -1e-45f, 1.0f, 1e30f};
        int trial, n = 40, n_out = 6;
        memset(in, 0, sizeof(in));
        for (int i = 0; i < n; i++) {
            a[i] = (uint8_t)(rnd() & 1u);
            set_bit(in, (uint32_t)i, a[i]);
        }
        for (trial = 0; trial < 2000; trial++) {
            int best = 0, o;
            float best_v = 0.0f;
            for (o = 0; o < n_out * n; o++)
                w[o] = (uint8_t)(rnd() & 1u);
            pack_rows(w, n_out, n, 2, wpk);
            for (o = 0; o < n_out; o++) {
                scale[o] = sc[rnd_below(7)];
                offset[o] = of[rnd_below(8)];
            }
            for (o = 0; o < n_out; o++) {
                volatile float y = (float)naive_dot(n, o) * scale[o];
                float z = y + offset[o];
                if (o == 0 || z > best_v) {
                    best_v = z;
                    best = o;
                }
            }
            CHECK(ebnn_output_dense((uint32_t)n, (uint32_t)n_out, in, wpk, scale, offset, NULL) == best,
                  "argmax with signed zeros / infinities, trial %d", trial);
        }
    }
    return report("test_dense");
}
