/* The graph ops' kernels (ebnn_conv_f32.c, ebnn_dense_f32.c, ebnn_binary_acc.c, ebnn_pool.c,
 * ebnn_elementwise.c) against naive loops written from keras_ebnn/ir/graph.py's definitions: random
 * geometries (1-D with H = 1 and 2-D, kernels 1..4, strides 1..3, any leading / trailing padding,
 * pad values 0 and 1, channel counts that are not multiples of 32), dense with several rows whose bits
 * are not word-aligned. Bits and ints must be equal, float results bit-identical (same operations in
 * the same order), tanh / sigmoid within 1e-6 relative of the double-precision functions. Bit outputs
 * are checked to leave the unused high bits of their last word 0; errors (NULL pointers, windows
 * without an in-bounds tap, bad sizes) to leave the output untouched. */
#include <math.h>

#include "testlib.h"

#define MAXE 8192   /* elements of an input or output tensor */
#define MAXW 40000  /* float weights */
#define GUARD 0xA5A5A5A5u

static float fin[MAXE], fin2[MAXE], fout[MAXE + 1], fwant[MAXE + 1], fw[MAXW];
static int32_t iin[MAXE], iout[MAXE + 1], iwant[MAXE + 1], ithr[64];
static uint8_t a[MAXE], wb[MAXW], want_bits[MAXE];
static uint32_t bin[MAXE / 32 + 2], bout[MAXE / 32 + 2], wpk[MAXW / 32 + 64 * 40];
static float fthr[64];
static uint32_t flip[2];

/* ---- random data ------------------------------------------------------------------------------ */
/* Floats with many exponents and some special values (signed zeros, ties of the activations). */
static float rnd_float(void)
{
    static const float special[] = {0.0f, -0.0f, 1.0f, -1.0f, 6.0f, 0.5f, 1e-39f, -3e-38f};
    uint32_t r = rnd_below(16);
    if (r == 0)
        return special[rnd_below(8)];
    return (float)((int32_t)rnd_below(200001) - 100000) / (float)(1 + rnd_below(5000));
}

/* Window geometry: 1-D (H = 1) in a third of the trials; any leading padding below the kernel size
 * and any trailing padding (sometimes larger: windows entirely outside the input). */
static void random_window(ebnn_window_t *g, uint32_t max_c)
{
    int one_d = rnd_below(3) == 0;
    uint32_t pad_b, pad_r, th, tw;
    memset(g, 0, sizeof(*g));
    g->in_h = (uint16_t)(one_d ? 1 : 1 + rnd_below(9));
    g->in_w = (uint16_t)(1 + rnd_below(12));
    g->in_c = (uint16_t)(1 + rnd_below(max_c));
    g->kh = (uint16_t)(one_d ? 1 : 1 + rnd_below(4));
    g->kw = (uint16_t)(1 + rnd_below(4));
    g->sh = (uint16_t)(one_d ? 1 : 1 + rnd_below(3));
    g->sw = (uint16_t)(1 + rnd_below(3));
    g->pad_t = (uint16_t)(one_d ? 0 : rnd_below(g->kh));
    g->pad_l = (uint16_t)rnd_below(g->kw);
    pad_b = rnd_below(8) == 0 ? rnd_below(6u) : rnd_below(g->kh);
    pad_r = rnd_below(8) == 0 ? rnd_below(6u) : rnd_below(g->kw);
    th = g->in_h + g->pad_t + pad_b;
    tw = g->in_w + g->pad_l + pad_r;
    if (th < g->kh)
        th = g->kh;
    if (tw < g->kw)
        tw = g->kw;
    g->out_h = (uint16_t)((th - g->kh) / g->sh + 1);
    g->out_w = (uint16_t)((tw - g->kw) / g->sw + 1);
}

static uint32_t n_in_of(const ebnn_window_t *g) { return (uint32_t)g->in_h * g->in_w * g->in_c; }
static uint32_t positions_of(const ebnn_window_t *g) { return (uint32_t)g->out_h * g->out_w; }

/* Input (y, x) of tap (ky, kx) of output (oy, ox); returns 1 if it is inside the input. */
static int tap_at(const ebnn_window_t *g, int oy, int ox, int ky, int kx, int *y, int *x)
{
    *y = oy * g->sh - g->pad_t + ky;
    *x = ox * g->sw - g->pad_l + kx;
    return *y >= 0 && *y < g->in_h && *x >= 0 && *x < g->in_w;
}

static void random_bits(uint32_t n)
{
    uint32_t i;
    for (i = 0; i < MAXE / 32 + 2; i++)
        bin[i] = rnd(); /* garbage past the last bit too: kernels must not read it */
    for (i = 0; i < n; i++)
        a[i] = (uint8_t)get_bit(bin, i);
}

static int same_float(float x, float y) { return memcmp(&x, &y, sizeof(x)) == 0; }

/* Fills the outputs with the guard pattern; untouched(n) says whether n words of each still hold it. */
static void guard_outputs(void)
{
    memset(fout, 0xA5, sizeof(fout));
    memset(iout, 0xA5, sizeof(iout));
    memset(bout, 0xA5, sizeof(bout));
}

static int is_guard(const void *p)
{
    uint32_t u;
    memcpy(&u, p, sizeof(u));
    return u == GUARD;
}

static int untouched(void)
{
    uint32_t i;
    for (i = 0; i < MAXE / 32 + 2; i++)
        if (!is_guard(&bout[i]))
            return 0;
    for (i = 0; i < MAXE + 1; i++)
        if (!is_guard(&fout[i]) || !is_guard(&iout[i]))
            return 0;
    return 1;
}

/* Output bits 0 .. n-1 against want_bits, and the unused bits of the last word 0. */
static void check_bits(uint32_t n, const char *what)
{
    uint32_t i;
    for (i = 0; i < n; i++)
        CHECK(get_bit(bout, i) == want_bits[i], "%s: bit %u of %u", what, (unsigned)i, (unsigned)n);
    for (i = n; i < (n + 31u) / 32u * 32u; i++)
        CHECK(get_bit(bout, i) == 0, "%s: unused bit %u must be 0", what, (unsigned)i);
    CHECK(is_guard(&bout[(n + 31u) / 32u]), "%s: wrote past the output", what);
}

static void check_floats(uint32_t n, const char *what)
{
    uint32_t i;
    for (i = 0; i < n; i++)
        CHECK(same_float(fout[i], fwant[i]), "%s: element %u: %.9g instead of %.9g", what, (unsigned)i,
              (double)fout[i], (double)fwant[i]);
    CHECK(is_guard(&fout[n]), "%s: wrote past the output", what);
}

static void check_ints(uint32_t n, const char *what)
{
    uint32_t i;
    for (i = 0; i < n; i++)
        CHECK(iout[i] == iwant[i], "%s: element %u: %ld instead of %ld", what, (unsigned)i, (long)iout[i],
              (long)iwant[i]);
    CHECK(is_guard(&iout[n]), "%s: wrote past the output", what);
}

/* ---- full-precision conv, depthwise, dense ------------------------------------------------------ */
static void test_conv_f32(int depthwise)
{
    ebnn_window_t g;
    uint32_t oc, mult, taps, n_w, n_out, i;
    int oy, ox, ky, kx, c, o, y, x;
    float pad;
    random_window(&g, 12);
    mult = 1 + rnd_below(3);
    oc = depthwise ? g.in_c * mult : 1 + rnd_below(12);
    taps = (uint32_t)g.kh * g.kw * g.in_c;
    n_w = depthwise ? taps * mult : taps * oc;
    n_out = positions_of(&g) * oc;
    if (n_in_of(&g) > MAXE || n_w > MAXW || n_out > MAXE)
        return;
    pad = rnd_below(2) ? 1.0f : 0.0f;
    for (i = 0; i < n_in_of(&g); i++)
        fin[i] = rnd_float();
    for (i = 0; i < n_w; i++)
        fw[i] = rnd_float();
    for (oy = 0; oy < g.out_h; oy++)
        for (ox = 0; ox < g.out_w; ox++)
            for (o = 0; o < (int)oc; o++) {
                float acc = 0.0f;
                for (ky = 0; ky < g.kh; ky++)
                    for (kx = 0; kx < g.kw; kx++)
                        for (c = 0; c < g.in_c; c++) {
                            float v, wv;
                            volatile float p;
                            if (depthwise && c != o / (int)mult)
                                continue;
                            v = tap_at(&g, oy, ox, ky, kx, &y, &x) ? fin[(y * g.in_w + x) * g.in_c + c] : pad;
                            wv = depthwise ? fw[((ky * g.kw + kx) * g.in_c + c) * (int)mult + o % (int)mult]
                                           : fw[((ky * g.kw + kx) * g.in_c + c) * (int)oc + o];
                            p = v * wv;
                            acc = acc + p;
                        }
                fwant[(oy * g.out_w + ox) * (int)oc + o] = acc;
            }
    guard_outputs();
    if (depthwise)
        CHECK(ebnn_depthwise_f32(&g, fin, fw, (uint16_t)mult, pad, fout) == EBNN_OK, "depthwise status");
    else
        CHECK(ebnn_conv_f32(&g, fin, fw, (uint16_t)oc, pad, fout) == EBNN_OK, "conv status");
    check_floats(n_out, depthwise ? "depthwise_f32" : "conv_f32");
}

static void test_dense_f32(void)
{
    uint32_t rows = 1 + rnd_below(4), n = 1 + rnd_below(150), no = 1 + rnd_below(20), r, o, k;
    for (k = 0; k < rows * n; k++)
        fin[k] = rnd_float();
    for (k = 0; k < n * no; k++)
        fw[k] = rnd_float();
    for (r = 0; r < rows; r++)
        for (o = 0; o < no; o++) {
            float acc = 0.0f;
            for (k = 0; k < n; k++) {
                volatile float p = fin[r * n + k] * fw[k * no + o];
                acc = acc + p;
            }
            fwant[r * no + o] = acc;
        }
    guard_outputs();
    CHECK(ebnn_dense_f32(rows, n, no, fin, fw, fout) == EBNN_OK, "dense status");
    check_floats(rows * no, "dense_f32");
}

/* ---- binary accumulators ------------------------------------------------------------------------ */
static void test_bconv(int depthwise)
{
    ebnn_window_t g;
    uint32_t oc, mult, taps, n_filters, n_out, i;
    int oy, ox, ky, kx, c, o, y, x;
    uint8_t pad;
    random_window(&g, 40);
    mult = 1 + rnd_below(3);
    oc = depthwise ? g.in_c * mult : 1 + rnd_below(40);
    taps = depthwise ? (uint32_t)g.kh * g.kw : (uint32_t)g.kh * g.kw * g.in_c; /* bits per filter */
    n_filters = oc;
    n_out = positions_of(&g) * oc;
    if (n_in_of(&g) > MAXE || taps * n_filters > MAXW || n_filters * EBNN_WORDS(taps) > sizeof(wpk) / 4 ||
        n_out > MAXE)
        return;
    pad = (uint8_t)rnd_below(2);
    random_bits(n_in_of(&g));
    for (i = 0; i < taps * n_filters; i++)
        wb[i] = (uint8_t)(rnd() & 1u);
    pack_rows(wb, (int)n_filters, (int)taps, EBNN_WORDS(taps), wpk);
    for (oy = 0; oy < g.out_h; oy++)
        for (ox = 0; ox < g.out_w; ox++)
            for (o = 0; o < (int)oc; o++) {
                int32_t acc = 0;
                for (ky = 0; ky < g.kh; ky++)
                    for (kx = 0; kx < g.kw; kx++)
                        for (c = 0; c < g.in_c; c++) {
                            int av, wv;
                            if (depthwise && c != o / (int)mult)
                                continue;
                            wv = depthwise ? wb[(uint32_t)o * taps + (uint32_t)(ky * g.kw + kx)]
                                           : wb[(uint32_t)o * taps + (uint32_t)((ky * g.kw + kx) * g.in_c + c)];
                            if (tap_at(&g, oy, ox, ky, kx, &y, &x))
                                av = a[(y * g.in_w + x) * g.in_c + c] ? 1 : -1;
                            else
                                av = pad; /* 0 adds nothing, 1 reads +1 */
                            acc += av * (wv ? 1 : -1);
                        }
                iwant[(oy * g.out_w + ox) * (int)oc + o] = acc;
            }
    guard_outputs();
    if (depthwise)
        CHECK(ebnn_bdepthwise_acc(&g, bin, wpk, (uint16_t)mult, pad, iout) == EBNN_OK, "bdepthwise status");
    else
        CHECK(ebnn_bconv_acc(&g, bin, wpk, (uint16_t)oc, pad, iout) == EBNN_OK, "bconv status");
    check_ints(n_out, depthwise ? "bdepthwise_acc" : "bconv_acc");
}

static void test_bdense(void)
{
    static const uint32_t sizes[] = {1, 5, 31, 32, 33, 63, 64, 65, 100, 200};
    uint32_t rows = 1 + rnd_below(5), n = sizes[rnd_below(10)], no = 1 + rnd_below(40), r, o, k;
    uint32_t rw = EBNN_WORDS(n);
    if (rows * n > MAXE)
        return;
    random_bits(rows * n);
    for (k = 0; k < n * no; k++)
        wb[k] = (uint8_t)(rnd() & 1u);
    pack_rows(wb, (int)no, (int)n, rw, wpk);
    for (r = 0; r < rows; r++)
        for (o = 0; o < no; o++) {
            int32_t acc = 0;
            for (k = 0; k < n; k++)
                acc += a[r * n + k] == wb[o * n + k] ? 1 : -1;
            iwant[r * no + o] = acc;
        }
    guard_outputs();
    CHECK(ebnn_bdense_acc(rows, n, no, bin, wpk, iout) == EBNN_OK, "bdense status");
    check_ints(rows * no, "bdense_acc");
}

/* ---- pooling ------------------------------------------------------------------------------------ */
enum { MAX_BITS, SUM_BITS, MAX_I32, SUM_I32, MAX_F32, AVG_F32 };

static void test_pool(int kind)
{
    static const char *names[] = {"max_pool_bits", "sum_pool_bits", "max_pool_i32", "sum_pool_i32", "max_pool_f32",
                                  "avg_pool_f32"};
    ebnn_window_t g;
    uint32_t n_out, i;
    int oy, ox, ky, kx, c, y, x, status, empty = 0;
    random_window(&g, 40);
    if (rnd_below(6) == 0) { /* global pooling */
        g.kh = g.in_h;
        g.kw = g.in_w;
        g.sh = g.sw = 1;
        g.pad_t = g.pad_l = 0;
        g.out_h = g.out_w = 1;
    }
    n_out = positions_of(&g) * g.in_c;
    if (n_in_of(&g) > MAXE || n_out > MAXE)
        return;
    random_bits(n_in_of(&g));
    for (i = 0; i < n_in_of(&g); i++) {
        iin[i] = (int32_t)rnd_below(1u << 21) - (1 << 20);
        fin[i] = rnd_float();
        if (rnd_below(50) == 0)
            iin[i] = rnd_below(2) ? INT32_MAX / 64 : INT32_MIN / 64;
    }
    for (oy = 0; oy < g.out_h; oy++)
        for (ox = 0; ox < g.out_w; ox++)
            for (c = 0; c < g.in_c; c++) {
                int count = 0, bits = 0;
                int32_t s = 0, m = 0;
                float fm = 0.0f, fs = 0.0f;
                for (ky = 0; ky < g.kh; ky++)
                    for (kx = 0; kx < g.kw; kx++) {
                        int k;
                        if (!tap_at(&g, oy, ox, ky, kx, &y, &x))
                            continue;
                        k = (y * g.in_w + x) * g.in_c + c;
                        bits |= a[k];
                        s += kind == SUM_BITS ? (a[k] ? 1 : -1) : iin[k];
                        if (count == 0 || iin[k] > m)
                            m = iin[k];
                        if (count == 0 || !(fm > fin[k] || isnan(fm))) /* numpy.maximum(fm, v) */
                            fm = fin[k];
                        fs = fs + fin[k];
                        count++;
                    }
                i = (uint32_t)((oy * g.out_w + ox) * g.in_c + c);
                empty |= count == 0;
                want_bits[i] = (uint8_t)bits;
                iwant[i] = kind == MAX_I32 ? m : s;
                fwant[i] = kind == MAX_F32 ? fm : fs / (float)count;
            }
    guard_outputs();
    switch (kind) {
    case MAX_BITS: status = ebnn_max_pool_bits(&g, bin, bout); break;
    case SUM_BITS: status = ebnn_sum_pool_bits(&g, bin, iout); break;
    case MAX_I32: status = ebnn_max_pool_i32(&g, iin, iout); break;
    case SUM_I32: status = ebnn_sum_pool_i32(&g, iin, iout); break;
    case MAX_F32: status = ebnn_max_pool_f32(&g, fin, fout); break;
    default: status = ebnn_avg_pool_f32(&g, fin, fout); break;
    }
    if (empty) { /* a window without an in-bounds tap: refused, nothing written */
        CHECK(status == EBNN_ERROR_ARGUMENT && untouched(), "%s: empty window must be refused", names[kind]);
        return;
    }
    CHECK(status == EBNN_OK, "%s status %d", names[kind], status);
    if (kind == MAX_BITS)
        check_bits(n_out, names[kind]);
    else if (kind == MAX_F32 || kind == AVG_F32)
        check_floats(n_out, names[kind]);
    else
        check_ints(n_out, names[kind]);
}

/* ---- elementwise -------------------------------------------------------------------------------- */
static void test_conversions(void)
{
    uint32_t ch = 1 + rnd_below(9), pos = 1 + rnd_below(30), n = ch * pos, i, mode = rnd_below(3);
    static int32_t div[64];
    random_bits(n);
    for (i = 0; i < n; i++)
        want_bits[i] = a[i];
    guard_outputs();
    CHECK(ebnn_bits_to_f32(n, bin, fout) == EBNN_OK, "bits_to_f32 status");
    for (i = 0; i < n; i++)
        fwant[i] = a[i] ? 1.0f : -1.0f;
    check_floats(n, "bits_to_f32");

    for (i = 0; i < n; i++) /* some beyond 2^24, where the conversion rounds */
        iin[i] = rnd_below(4) == 0 ? (int32_t)rnd() : (int32_t)rnd_below(2001) - 1000;
    for (i = 0; i < pos; i++)
        div[i] = (int32_t)(1 + rnd_below(9));
    for (i = 0; i < n; i++)
        fwant[i] = mode == 0 ? (float)iin[i] : (float)iin[i] / (float)div[mode == 1 ? 0 : i / ch];
    guard_outputs();
    CHECK(ebnn_i32_to_f32(n, ch, iin, mode == 0 ? NULL : div, mode == 1 ? 1u : pos, fout) == EBNN_OK,
          "i32_to_f32 status");
    check_floats(n, "i32_to_f32");
    /* in place (int32 and float slots coincide) */
    memcpy(fout, iin, n * sizeof(int32_t));
    CHECK(ebnn_i32_to_f32(n, ch, (const int32_t *)(void *)fout, mode == 0 ? NULL : div, mode == 1 ? 1u : pos, fout) ==
              EBNN_OK, "i32_to_f32 in place");
    check_floats(n, "i32_to_f32 in place");
}

static void test_affine_add(void)
{
    uint32_t ch = 1 + rnd_below(40), pos = 1 + rnd_below(30), n = ch * pos, i, n_ab = rnd_below(2) ? 1u : ch;
    static float fa[64], fb[64];
    for (i = 0; i < n; i++) {
        fin[i] = rnd_float();
        fin2[i] = rnd_float();
    }
    for (i = 0; i < ch; i++) {
        fa[i] = rnd_float();
        fb[i] = rnd_float();
    }
    for (i = 0; i < n; i++) {
        uint32_t k = n_ab == 1u ? 0u : i % ch;
        volatile float p = fin[i] * fa[k];
        fwant[i] = p + fb[k];
    }
    guard_outputs();
    CHECK(ebnn_affine_f32(n, ch, fin, fa, fb, n_ab, fout) == EBNN_OK, "affine status");
    check_floats(n, "affine_f32");
    memcpy(fout, fin, n * sizeof(float));
    CHECK(ebnn_affine_f32(n, ch, fout, fa, fb, n_ab, fout) == EBNN_OK, "affine in place");
    check_floats(n, "affine_f32 in place");
    for (i = 0; i < n; i++)
        fwant[i] = fin[i] + fin2[i];
    guard_outputs();
    CHECK(ebnn_add_f32(n, fin, fin2, fout) == EBNN_OK, "add status");
    check_floats(n, "add_f32");
}

static float naive_activation(int fn, float x, float alpha)
{
    float y;
    switch (fn) { /* numpy.maximum(x, b) = x > b or x NaN ? x : b; numpy.minimum likewise with < */
    case EBNN_ACT_RELU:
        return (x > 0.0f || isnan(x)) ? x : 0.0f;
    case EBNN_ACT_RELU6:
        y = (x > 0.0f || isnan(x)) ? x : 0.0f;
        return (y < 6.0f || isnan(y)) ? y : 6.0f;
    case EBNN_ACT_HARD_TANH:
        y = (x > -1.0f || isnan(x)) ? x : -1.0f;
        return (y < 1.0f || isnan(y)) ? y : 1.0f;
    default: /* leaky relu */
        return x >= 0.0f ? x : x * alpha;
    }
}

static void test_activations(void)
{
    static const float special[] = {0.0f, -0.0f, 6.0f, -1.0f, 1.0f, 1e30f, -1e30f, 90.0f, -90.0f, 1e-40f};
    uint32_t n = 1 + rnd_below(200), i;
    int fn;
    float alpha = (float)rnd_below(100) / 97.0f;
    for (i = 0; i < n; i++)
        fin[i] = rnd_below(5) == 0 ? special[rnd_below(10)] : rnd_float();
    fin[0] = NAN;
    for (fn = EBNN_ACT_RELU; fn <= EBNN_ACT_SIGMOID; fn++) {
        guard_outputs();
#if !EBNN_ACT_LIBM /* built without tanhf / expf: those two are refused, nothing written */
        if (fn == EBNN_ACT_TANH || fn == EBNN_ACT_SIGMOID) {
            CHECK(ebnn_activation_f32(n, (uint8_t)fn, alpha, fin, fout) == EBNN_ERROR_UNSUPPORTED && untouched(),
                  "activation %d without EBNN_ACT_LIBM must be refused", fn);
            continue;
        }
#endif
        CHECK(ebnn_activation_f32(n, (uint8_t)fn, alpha, fin, fout) == EBNN_OK, "activation %d status", fn);
        CHECK(isnan(fout[0]), "activation %d of NaN must be NaN", fn);
        for (i = 1; i < n; i++) {
            float x = fin[i];
            if (fn == EBNN_ACT_TANH || fn == EBNN_ACT_SIGMOID) {
                double want = fn == EBNN_ACT_TANH ? tanh((double)x) : 1.0 / (1.0 + exp(-(double)x));
                double err = fabs((double)fout[i] - want);
                CHECK(err <= 1e-6 * fabs(want) || err < 1e-38, "activation %d(%.9g) = %.9g, want %.9g", fn,
                      (double)x, (double)fout[i], want);
            } else {
                float want = naive_activation(fn, x, alpha);
                CHECK(same_float(fout[i], want), "activation %d(%.9g) = %.9g, want %.9g", fn, (double)x,
                      (double)fout[i], (double)want);
            }
        }
        CHECK(is_guard(&fout[n]), "activation %d wrote past the output", fn);
        memcpy(fwant, fout, n * sizeof(float));
        memcpy(fout, fin, n * sizeof(float));
        CHECK(ebnn_activation_f32(n, (uint8_t)fn, alpha, fout, fout) == EBNN_OK, "activation in place");
        for (i = 0; i < n; i++)
            CHECK(same_float(fout[i], fwant[i]) || (isnan(fout[i]) && isnan(fwant[i])), "activation %d in place", fn);
    }
    {
        float z = -0.0f, r;
        CHECK(ebnn_activation_f32(1, EBNN_ACT_RELU, 0.0f, &z, &r) == EBNN_OK && same_float(r, 0.0f),
              "relu(-0.0) is +0.0 (numpy.maximum(-0.0, 0.0))");
    }
}

static void test_sign_threshold(void)
{
    static const int32_t ithr_special[] = {INT32_MIN, INT32_MAX, 0, -1, 1};
    static const int32_t iin_special[] = {INT32_MIN, INT32_MAX, 0, -1, 1, INT32_MIN + 1};
    uint32_t ch = 1 + rnd_below(40), pos = 1 + rnd_below(40), n = ch * pos, i, c;
    for (i = 0; i < n; i++) {
        fin[i] = rnd_float();
        iin[i] = rnd_below(10) == 0 ? iin_special[rnd_below(6)] : (int32_t)rnd_below(201) - 100;
    }
    flip[0] = rnd();
    flip[1] = rnd();
    for (c = 0; c < ch; c++) {
        ithr[c] = rnd_below(6) == 0 ? ithr_special[rnd_below(5)] : (int32_t)rnd_below(201) - 100;
        fthr[c] = rnd_below(8) == 0 ? (rnd_below(2) ? EBNN_INFINITY : -EBNN_INFINITY) : rnd_float();
    }
    for (i = 0; i < n; i++)
        want_bits[i] = fin[i] >= 0.0f;
    guard_outputs();
    CHECK(ebnn_sign_f32(n, fin, bout) == EBNN_OK, "sign_f32 status");
    check_bits(n, "sign_f32");
    for (i = 0; i < n; i++)
        want_bits[i] = iin[i] >= 0;
    guard_outputs();
    CHECK(ebnn_sign_i32(n, iin, bout) == EBNN_OK, "sign_i32 status");
    check_bits(n, "sign_i32");
    for (i = 0; i < n; i++) {
        c = i % ch;
        want_bits[i] = (get_bit(flip, c) ? -fin[i] : fin[i]) >= fthr[c];
    }
    guard_outputs();
    CHECK(ebnn_threshold_f32(n, ch, fin, fthr, flip, bout) == EBNN_OK, "threshold_f32 status");
    check_bits(n, "threshold_f32");
    for (i = 0; i < n; i++) {
        c = i % ch;
        want_bits[i] = (get_bit(flip, c) ? -(int64_t)iin[i] : (int64_t)iin[i]) >= (int64_t)ithr[c];
    }
    guard_outputs();
    CHECK(ebnn_threshold_i32(n, ch, iin, ithr, flip, bout) == EBNN_OK, "threshold_i32 status");
    check_bits(n, "threshold_i32");
}

static void test_concat(void)
{
    static uint32_t bits_in[4][MAXE / 128 + 2];
    static float floats_in[4][MAXE / 4];
    uint32_t k, nk = 1 + rnd_below(4), pos = 1 + rnd_below(20), total = 0, p, c, i = 0;
    uint32_t ch[4];
    const uint32_t *bptr[4];
    const float *fptr[4];
    for (k = 0; k < nk; k++) {
        ch[k] = 1 + rnd_below(40);
        total += ch[k];
        for (c = 0; c < sizeof(bits_in[k]) / 4; c++)
            bits_in[k][c] = rnd();
        for (c = 0; c < pos * ch[k]; c++)
            floats_in[k][c] = rnd_float();
        bptr[k] = bits_in[k];
        fptr[k] = floats_in[k];
    }
    for (p = 0; p < pos; p++)
        for (k = 0; k < nk; k++)
            for (c = 0; c < ch[k]; c++, i++) {
                want_bits[i] = (uint8_t)get_bit(bits_in[k], p * ch[k] + c);
                fwant[i] = floats_in[k][p * ch[k] + c];
            }
    guard_outputs();
    CHECK(ebnn_concat_bits(pos, nk, bptr, ch, bout) == EBNN_OK, "concat_bits status");
    check_bits(pos * total, "concat_bits");
    CHECK(ebnn_concat_f32(pos, nk, fptr, ch, fout) == EBNN_OK, "concat_f32 status");
    check_floats(pos * total, "concat_f32");
}

static void test_argmax(void)
{
    uint32_t n = 1 + rnd_below(30), i, best = 0;
    for (i = 0; i < n; i++)
        fin[i] = (float)rnd_below(5) - 2.0f; /* many ties: the first maximum wins */
    for (i = 1; i < n; i++)
        if (fin[i] > fin[best])
            best = i;
    CHECK(ebnn_argmax_f32(n, fin) == (int)best, "argmax");
    if (n > 2) {
        fin[n - 1] = NAN; /* numpy.argmax: the first NaN */
        CHECK(ebnn_argmax_f32(n, fin) == (int)(n - 1), "argmax with NaN");
    }
}

/* ---- errors: NULL pointers and invalid sizes return EBNN_ERROR_ARGUMENT, nothing written ---------- */
static void test_errors(void)
{
    ebnn_window_t g = {4, 4, 3, 2, 2, 1, 1, 0, 0, 3, 3};
    const uint32_t *bp[1] = {NULL};
    const float *fp[1] = {NULL};
    uint32_t ch[1] = {3};
    guard_outputs();
#define REFUSED(call) CHECK((call) == EBNN_ERROR_ARGUMENT && untouched(), "%s must be refused", #call)
    REFUSED(ebnn_conv_f32(NULL, fin, fw, 2, 0.0f, fout));
    REFUSED(ebnn_conv_f32(&g, NULL, fw, 2, 0.0f, fout));
    REFUSED(ebnn_conv_f32(&g, fin, NULL, 2, 0.0f, fout));
    REFUSED(ebnn_conv_f32(&g, fin, fw, 2, 0.0f, NULL));
    REFUSED(ebnn_depthwise_f32(&g, fin, NULL, 2, 0.0f, fout));
    REFUSED(ebnn_dense_f32(1, 3, 3, NULL, fw, fout));
    REFUSED(ebnn_dense_f32(1, 3, 3, fin, fw, NULL));
    REFUSED(ebnn_bconv_acc(&g, bin, NULL, 2, 0, iout));
    REFUSED(ebnn_bconv_acc(NULL, bin, wpk, 2, 0, iout));
    REFUSED(ebnn_bdense_acc(1, 3, 3, bin, wpk, NULL));
    REFUSED(ebnn_bdepthwise_acc(&g, NULL, wpk, 1, 0, iout));
    REFUSED(ebnn_max_pool_bits(&g, NULL, bout));
    REFUSED(ebnn_sum_pool_bits(NULL, bin, iout));
    REFUSED(ebnn_max_pool_i32(&g, iin, NULL));
    REFUSED(ebnn_sum_pool_i32(&g, NULL, iout));
    REFUSED(ebnn_max_pool_f32(&g, NULL, fout));
    REFUSED(ebnn_avg_pool_f32(&g, fin, NULL));
    REFUSED(ebnn_bits_to_f32(3, NULL, fout));
    REFUSED(ebnn_i32_to_f32(3, 1, iin, NULL, 1, NULL));
    REFUSED(ebnn_i32_to_f32(6, 3, iin, ithr, 3, fout));  /* 2 positions, 3 divisors */
    REFUSED(ebnn_i32_to_f32(7, 3, iin, ithr, 1, fout));  /* n not a multiple of channels */
    REFUSED(ebnn_affine_f32(6, 3, fin, fthr, fthr, 2, fout)); /* n_ab neither 1 nor channels */
    REFUSED(ebnn_affine_f32(6, 3, fin, NULL, fthr, 1, fout));
    REFUSED(ebnn_activation_f32(3, 6, 0.0f, fin, fout)); /* unknown function */
    REFUSED(ebnn_activation_f32(3, EBNN_ACT_RELU, 0.0f, NULL, fout));
    REFUSED(ebnn_add_f32(3, fin, NULL, fout));
    REFUSED(ebnn_sign_f32(3, NULL, bout));
    REFUSED(ebnn_sign_i32(3, iin, NULL));
    REFUSED(ebnn_threshold_f32(6, 3, fin, fthr, NULL, bout));
    REFUSED(ebnn_threshold_i32(6, 0, iin, ithr, flip, bout)); /* no channels */
    REFUSED(ebnn_concat_bits(2, 1, bp, ch, bout));
    REFUSED(ebnn_concat_f32(2, 1, fp, ch, fout));
    REFUSED(ebnn_concat_f32(2, 1, NULL, ch, fout));
    CHECK(ebnn_argmax_f32(0, fin) == EBNN_ERROR_ARGUMENT, "argmax of nothing");
    CHECK(ebnn_argmax_f32(3, NULL) == EBNN_ERROR_ARGUMENT, "argmax of NULL");
    /* a pooling window entirely in the trailing padding */
    g.kh = g.kw = 2;
    g.sh = g.sw = 3;
    g.out_h = 2;
    g.out_w = 1; /* row window 1 covers rows 3..4: row 3 in bounds */
    g.in_h = 3;  /* ... now rows 3..4 are both outside */
    REFUSED(ebnn_max_pool_f32(&g, fin, fout));
    REFUSED(ebnn_sum_pool_bits(&g, bin, iout));
#undef REFUSED
}

int main(void)
{
    int trial;
    for (trial = 0; trial < 300; trial++) {
        test_conv_f32(trial & 1);
        test_bconv(trial & 1);
        test_pool(trial % 6);
        test_dense_f32();
        test_bdense();
    }
    for (trial = 0; trial < 200; trial++) {
        test_conversions();
        test_affine_add();
        test_activations();
        test_sign_threshold();
        test_concat();
        test_argmax();
    }
    test_errors();
    return report("test_graph_kernels");
}
