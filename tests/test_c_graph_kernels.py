"""The graph ops' C kernels (runtime_c/ebnn_conv_f32.c, ebnn_dense_f32.c, ebnn_binary_acc.c, ebnn_pool.c,
ebnn_elementwise.c; API: ebnn.h "graph ops").

* tests/c/test_graph_kernels.c: every kernel against naive C loops under ASan/UBSan, with the SWAR and
  the table popcounts, and without libm (EBNN_ACT_LIBM=0: tanh / sigmoid refused, nothing referenced).
* The kernels called through ctypes on random inputs and compared with keras_ebnn/ir/graph_reference.py's
  own op implementations (`run_op`, the definition of the graph semantics): bits and ints equal, float
  results bit-identical (the spec's operation order; the library is built with -ffp-contract=fast and,
  where the CPU has it, -mfma, so an FMA the kernels failed to prevent would show), tanh / sigmoid
  within 1e-6 relative. Geometries: 1-D (H = 1) and 2-D, strides 1..3, TF "same" / "valid" and
  arbitrary padding, pad values 0 and 1, channel counts not multiples of 32, dense with several rows.
* Every new file compiles warning-free for ATmega328P (-Os), Cortex-M3 and Cortex-M4F (-O2), on its own
  and privately included (EBNN_PRIVATE, as a generated NAME.c does); the float kernels contain no
  fused multiply-add on Cortex-M4F even with -ffp-contract=fast.
"""
import ctypes
import shutil
import subprocess
from types import SimpleNamespace

import numpy as np
import pytest

from helpers.common import ROOT
from keras_ebnn.ir import graph_reference as gr
from keras_ebnn.frontdoor import host
from keras_ebnn.ir.blocks import ConvGeometry

RUNTIME = ROOT / "runtime_c"
GRAPH_FILES = ["ebnn_conv_f32.c", "ebnn_dense_f32.c", "ebnn_binary_acc.c", "ebnn_pool.c", "ebnn_elementwise.c",
               "ebnn_conv_pool_f32.c"]  # conv_pool after elementwise: it calls ebnn_activation_f32
STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g"]
ACT = {"relu": 0, "relu6": 1, "hard_tanh": 2, "leaky_relu": 3, "tanh": 4, "sigmoid": 5}


def _run(cmd, **kw):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


# A private build's includes (what a generated NAME.c does with the .inc copies).
PRIVATE = """#define EBNN_PRIVATE
#include "ebnn_bits.c"
#if EBNN_BYTE_KERNELS
#include "avr/ebnn_bytes.c"
#endif
""" + "".join(f'#include "{f}"\n' for f in GRAPH_FILES)

# ---- C unit tests against naive loops -------------------------------------------------------------
# the graph kernels' popcounts are ebnn_bits.c's (SWAR on Cortex-M, the table on AVR); nothing of
# theirs depends on EBNN_BYTE_KERNELS. "no-libm": tanh / sigmoid compiled out (EBNN_ACT_LIBM=0), refused.
BUILDS = {"swar": ["-DEBNN_POPCOUNT=2"], "table": ["-DEBNN_POPCOUNT=3"], "no-libm": ["-DEBNN_ACT_LIBM=0"]}


@pytest.mark.parametrize("build", sorted(BUILDS) + ["private"])
def test_graph_kernels_against_naive_loops(build, tmp_path):
    """build "private": the kernels static in the test's translation unit (EBNN_PRIVATE), as a generated
    NAME.c includes them, at -O2."""
    cc = host.find_cc()
    if cc is None:
        pytest.skip("no host C compiler")
    exe = tmp_path / "test_graph_kernels"
    test = ROOT / "tests" / "c" / "test_graph_kernels.c"
    if build == "private":
        wrapper = tmp_path / "private_test.c"
        wrapper.write_text(PRIVATE + f'#include "{test}"\n')
        _run([cc, *STRICT, "-O2", *SANITIZE, f"-I{RUNTIME}", f"-I{test.parent}", wrapper, "-o", exe, "-lm"])
    else:
        kernels = [RUNTIME / f for f in ["ebnn_bits.c"] + GRAPH_FILES]  # the graph ops need only ebnn_bits.c
        _run([cc, *STRICT, "-O1", *SANITIZE, *BUILDS[build], f"-I{RUNTIME}", test, *kernels, "-o", exe, "-lm"])
    out = _run([exe]).strip()
    assert out.endswith(" 0 failed"), out
    assert int(out.split(": ")[-1].split(" passed")[0]) > 100000, out


@pytest.mark.parametrize("act_libm", [0, 1])
def test_libm_only_with_tanh_and_sigmoid(act_libm, tmp_path):
    """ebnn_elementwise.c references tanhf / expf only when built with EBNN_ACT_LIBM=1 (the default), so
    an export whose model has no tanh / sigmoid links without -lm."""
    cc = host.find_cc()
    if cc is None or not shutil.which("nm"):
        pytest.skip("no host C compiler / nm")
    obj = tmp_path / "elementwise.o"
    _run([cc, *STRICT, "-O2", f"-DEBNN_ACT_LIBM={act_libm}", f"-I{RUNTIME}", "-c", RUNTIME / "ebnn_elementwise.c",
          "-o", obj])
    undefined = {line.split()[-1] for line in _run(["nm", "-u", obj]).splitlines() if line.strip()}
    assert bool(undefined & {"tanhf", "expf"}) == bool(act_libm), undefined


# ---- the kernels against keras_ebnn/ir/graph_reference.py ------------------------------------------------
class Window(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint16) for n in
                ("in_h", "in_w", "in_c", "kh", "kw", "sh", "sw", "pad_t", "pad_l", "out_h", "out_w")]


def _has_fma():
    try:
        return " fma " in open("/proc/cpuinfo").read().replace("\n", " ")
    except OSError:
        return False


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    """The runtime as a shared library, built so that an unprevented FMA contraction would happen."""
    cc = host.find_cc()
    if cc is None:
        pytest.skip("no host C compiler")
    out = tmp_path_factory.mktemp("lib") / "libebnn_graph.so"
    fma = ["-mfma"] if _has_fma() and "86" in _run(["uname", "-m"]) else []
    _run([cc, *STRICT, "-O2", "-ffp-contract=fast", *fma, "-shared", "-fPIC", f"-I{RUNTIME}",
          *[RUNTIME / f for f in ["ebnn_bits.c"] + GRAPH_FILES], "-o", out, "-lm"])
    return ctypes.CDLL(str(out))


def _ptr(a, ctype):
    return a.ctypes.data_as(ctypes.POINTER(ctype))


F32, I32, U32 = ctypes.c_float, ctypes.c_int32, ctypes.c_uint32


def _pack(bits):
    """bool array (any shape, row-major) -> uint32 words in the ebnn layout (unused bits 0)."""
    flat = np.asarray(bits, dtype=bool).reshape(-1)
    words = np.zeros((flat.size + 31) // 32 + 1, dtype=np.uint32)  # + a guard word
    packed = np.packbits(flat, bitorder="little")
    words.view(np.uint8)[:packed.size] = packed
    return words


def _unpack(words, n):
    return np.unpackbits(words.view(np.uint8), bitorder="little")[:n].astype(bool)


def _geometry(rng, one_d, max_c=37):
    """Random window geometry: TF 'same' / 'valid' padding or arbitrary leading / trailing padding."""
    h = 1 if one_d else int(rng.integers(1, 10))
    w, c = int(rng.integers(1, 13)), int(rng.integers(1, max_c + 1))
    kh = 1 if one_d else int(rng.integers(1, 5))
    kw = int(rng.integers(1, 5))
    sh = 1 if one_d else int(rng.integers(1, 4))
    sw = int(rng.integers(1, 4))
    mode = rng.integers(3)

    def axis(size, k, s, lead_allowed):
        if mode == 0 and size >= k:  # valid
            return (size - k) // s + 1, 0
        if mode <= 1:  # same
            o = -(-size // s)
            return o, max((o - 1) * s + k - size, 0) // 2
        lead = int(rng.integers(0, k)) if lead_allowed else 0
        trail = int(rng.integers(0, k))
        return max((size + lead + trail - k) // s + 1, 1), lead

    oh, pt = axis(h, kh, sh, not one_d)
    ow, pl = axis(w, kw, sw, True)
    return dict(in_shape=(h, w, c), kernel=(kh, kw), strides=(sh, sw), pad=(pt, pl), out_hw=(oh, ow))


def _window(geo):
    (h, w, c), (kh, kw), (sh, sw), (pt, pl), (oh, ow) = (geo["in_shape"], geo["kernel"], geo["strides"],
                                                         geo["pad"], geo["out_hw"])
    return Window(h, w, c, kh, kw, sh, sw, pt, pl, oh, ow)


def _conv_geometry(geo, pad_value=0):
    return ConvGeometry(in_shape=geo["in_shape"], kernel=geo["kernel"], strides=geo["strides"], pad=geo["pad"],
                        conv_shape=geo["out_hw"], out_hw=geo["out_hw"], pad_value=pad_value)


def _pool_geometry(geo):
    return dict(in_shape=geo["in_shape"], pool=geo["kernel"], strides=geo["strides"], pad=geo["pad"],
                out_hw=geo["out_hw"])


def _ref(kind, args, out_shape, params=None, in_divisor=None, out_divisor=None):
    """graph_reference.run_op on a one-op graph: inputs "x0", "x1", ...; output "y"."""
    tensors = {f"x{i}": SimpleNamespace(divisor=in_divisor) for i in range(len(args))}
    tensors["y"] = SimpleNamespace(shape=tuple(out_shape), divisor=out_divisor)
    graph = SimpleNamespace(tensors=tensors)
    op = SimpleNamespace(kind=kind, inputs=list(tensors)[:-1], output="y", params=params or {})
    return gr.run_op(graph, op, [a[None] for a in args])[0]


def _floats(rng, shape):
    x = (rng.standard_normal(shape) * 10.0 ** rng.integers(-3, 4, size=shape)).astype(np.float32)
    flat = x.reshape(-1)
    flat[rng.random(x.size) < 0.05] = 0.0
    flat[rng.random(x.size) < 0.03] = -0.0  # signed zeros: max / relu ties must pick numpy's zero
    return x


def _same_bits(got, want):
    got, want = np.asarray(got, np.float32), np.asarray(want, np.float32)
    assert got.shape == want.shape
    bad = np.flatnonzero(got.view(np.uint32) != want.view(np.uint32))
    assert bad.size == 0, f"{bad.size} of {got.size} differ, e.g. {got.flat[bad[0]]!r} vs {want.flat[bad[0]]!r}"


TRIALS = 30


def _weights(rng, shape, int8):
    """float32 weights, or (int8: the _w8 kernels) int8 weights and the same values as float32 for
    the reference (keras_ebnn.passes.graph_int8: the op runs on float32(q))."""
    if not int8:
        w = _floats(rng, shape)
        return w, _ptr(w, F32)
    q = rng.integers(-127, 128, size=shape).astype(np.int8)
    return q.astype(np.float32), q.ctypes.data_as(ctypes.POINTER(ctypes.c_int8)), q


@pytest.mark.parametrize("int8", [False, True], ids=["f32", "w8"])
@pytest.mark.parametrize("depthwise", [False, True])
def test_float_conv_matches_reference(lib, depthwise, int8):
    rng = np.random.default_rng(11 + depthwise + 2 * int8)
    for trial in range(TRIALS):
        geo = _geometry(rng, one_d=trial % 3 == 0, max_c=9)
        (h, w, c), (kh, kw), (oh, ow) = geo["in_shape"], geo["kernel"], geo["out_hw"]
        m = int(rng.integers(1, 4)) if depthwise else int(rng.integers(1, 10))
        pad = float(rng.integers(2))
        x = _floats(rng, (h, w, c))
        wt, wptr, *keep = _weights(rng, (kh, kw, c, m), int8)
        oc = c * m if depthwise else m
        want = _ref("depthwise" if depthwise else "conv", [x], (oh, ow, oc),
                    dict(geometry=_conv_geometry(geo), weights=wt, pad_value=pad))
        out = np.zeros(oh * ow * oc + 1, np.float32)
        fn = getattr(lib, f"ebnn_{'depthwise' if depthwise else 'conv'}_{'w8' if int8 else 'f32'}")
        status = fn(ctypes.byref(_window(geo)), _ptr(x, F32), wptr, ctypes.c_uint16(m), F32(pad),
                    _ptr(out, F32))
        assert status == 0
        _same_bits(out[:-1].reshape(oh, ow, oc), want)


@pytest.mark.parametrize("int8", [False, True], ids=["f32", "w8"])
def test_float_dense_matches_reference(lib, int8):
    rng = np.random.default_rng(5 + int8)
    fn = lib.ebnn_dense_w8 if int8 else lib.ebnn_dense_f32
    for trial in range(TRIALS):
        rows, n, o = int(rng.integers(1, 5)), int(rng.integers(1, 300)), int(rng.integers(1, 20))
        x = _floats(rng, (rows, n))
        wt, wptr, *keep = _weights(rng, (n, o), int8)
        want = _ref("dense", [x], (rows, o), dict(weights=wt))
        out = np.zeros(rows * o, np.float32)
        assert fn(U32(rows), U32(n), U32(o), _ptr(x, F32), wptr, _ptr(out, F32)) == 0
        _same_bits(out.reshape(rows, o), want)


@pytest.mark.parametrize("depthwise", [False, True])
def test_binary_acc_matches_reference(lib, depthwise):
    rng = np.random.default_rng(21 + depthwise)
    for trial in range(TRIALS):
        geo = _geometry(rng, one_d=trial % 3 == 0)
        (h, w, c), (kh, kw), (oh, ow) = geo["in_shape"], geo["kernel"], geo["out_hw"]
        pad = int(rng.integers(2))
        x = rng.random((h, w, c)) < 0.5
        m = int(rng.integers(1, 4)) if depthwise else int(rng.integers(1, 40))
        wt = rng.random((m, kh, kw, c)) < 0.5  # (O or M, KH, KW, C)
        if depthwise:  # channel j = ci * M + mi: its (ky, kx) bits
            filters = wt.transpose(3, 0, 1, 2).reshape(c * m, kh * kw)
        else:
            filters = wt.reshape(m, -1)
        words = EBNN_WORDS(filters.shape[1])
        wpk = np.concatenate([_pack(f)[:words] for f in filters])
        oc = c * m if depthwise else m
        want = _ref("bdepthwise" if depthwise else "bconv", [x], (oh, ow, oc),
                    dict(geometry=_conv_geometry(geo, pad), weights=wt))
        out = np.zeros(oh * ow * oc, np.int32)
        fn = lib.ebnn_bdepthwise_acc if depthwise else lib.ebnn_bconv_acc
        assert fn(ctypes.byref(_window(geo)), _ptr(_pack(x), U32), _ptr(wpk, U32), ctypes.c_uint16(m),
                  ctypes.c_uint8(pad), _ptr(out, I32)) == 0
        np.testing.assert_array_equal(out.reshape(oh, ow, oc), want)


def EBNN_WORDS(n):
    return (n + 31) // 32


def test_binary_dense_matches_reference(lib):
    rng = np.random.default_rng(8)
    for trial in range(TRIALS):
        rows, n, o = int(rng.integers(1, 6)), int(rng.choice([1, 7, 31, 32, 33, 64, 95, 200])), int(rng.integers(1, 40))
        x, wt = rng.random((rows, n)) < 0.5, rng.random((o, n)) < 0.5
        wpk = np.concatenate([_pack(r)[:EBNN_WORDS(n)] for r in wt])
        want = _ref("bdense", [x], (rows, o), dict(weights=wt))
        out = np.zeros(rows * o, np.int32)
        assert lib.ebnn_bdense_acc(U32(rows), U32(n), U32(o), _ptr(_pack(x), U32), _ptr(wpk, U32), _ptr(out, I32)) == 0
        np.testing.assert_array_equal(out.reshape(rows, o), want)


@pytest.mark.parametrize("dtype", ["bits", "int", "float32"])
@pytest.mark.parametrize("kind", ["max_pool", "avg_pool"])
def test_pooling_matches_reference(lib, kind, dtype):
    rng = np.random.default_rng(hash((kind, dtype)) % 1000)
    for trial in range(TRIALS):
        geo = _geometry(rng, one_d=trial % 3 == 0)
        if trial % 5 == 4:  # global pooling
            h, w, _ = geo["in_shape"]
            geo.update(kernel=(h, w), strides=(1, 1), pad=(0, 0), out_hw=(1, 1))
        pg = _pool_geometry(geo)
        if not gr._in_bounds(pg).any(axis=(2, 3)).all():
            continue  # a window without in-bounds taps: Keras never builds it (the C unit test checks the error)
        (oh, ow), c = geo["out_hw"], geo["in_shape"][2]
        n_out = oh * ow * c
        if dtype == "bits":
            x = rng.random(geo["in_shape"]) < 0.5
            arg = _pack(x)
        elif dtype == "int":
            x = rng.integers(-2**20, 2**20, size=geo["in_shape"]).astype(np.int64)
            arg = x.astype(np.int32)
        else:
            x = arg = _floats(rng, geo["in_shape"])
        divisor = gr._in_bounds(pg).sum(axis=(2, 3))[..., None] if kind == "avg_pool" and dtype != "float32" else None
        want = _ref(kind, [x], (oh, ow, c), dict(geometry=pg), out_divisor=divisor)
        ctype = {"bits": U32, "int": I32, "float32": F32}[dtype]
        if kind == "max_pool" and dtype == "bits":
            out = np.zeros(EBNN_WORDS(n_out) + 1, np.uint32)
            assert lib.ebnn_max_pool_bits(ctypes.byref(_window(geo)), _ptr(arg, U32), _ptr(out, U32)) == 0
            np.testing.assert_array_equal(out, _pack(want))  # incl. zero unused bits, guard word untouched
            continue
        out = np.zeros(n_out, np.float32 if dtype == "float32" else np.int32)
        fn = {("max_pool", "int"): lib.ebnn_max_pool_i32, ("max_pool", "float32"): lib.ebnn_max_pool_f32,
              ("avg_pool", "bits"): lib.ebnn_sum_pool_bits, ("avg_pool", "int"): lib.ebnn_sum_pool_i32,
              ("avg_pool", "float32"): lib.ebnn_avg_pool_f32}[(kind, dtype)]
        out_ctype = F32 if dtype == "float32" else I32
        assert fn(ctypes.byref(_window(geo)), _ptr(arg, ctype), _ptr(out, out_ctype)) == 0
        if dtype == "float32":
            _same_bits(out.reshape(oh, ow, c), want)
            continue
        np.testing.assert_array_equal(out.reshape(oh, ow, c), want)
        if divisor is not None:  # then to_float with the per-position (or single) divisor
            single = np.all(divisor == divisor.flat[0])
            d = divisor.reshape(-1)[:1] if single else divisor
            fwant = _ref("to_float", [want], (oh, ow, c), in_divisor=d)
            dv = np.ascontiguousarray(d.reshape(-1), dtype=np.int32)
            fout = np.zeros(n_out, np.float32)
            assert lib.ebnn_i32_to_f32(U32(n_out), U32(c), _ptr(out, I32), _ptr(dv, I32), U32(dv.size),
                                       _ptr(fout, F32)) == 0
            _same_bits(fout.reshape(oh, ow, c), fwant)


def test_elementwise_match_reference(lib):
    rng = np.random.default_rng(3)
    for trial in range(TRIALS):
        c, pos = int(rng.integers(1, 40)), int(rng.integers(1, 30))
        n = c * pos
        x, y = _floats(rng, (pos, c)), _floats(rng, (pos, c))
        out = np.zeros(n, np.float32)
        # to_float of bits and of ints without divisor
        bits = rng.random((pos, c)) < 0.5
        assert lib.ebnn_bits_to_f32(U32(n), _ptr(_pack(bits), U32), _ptr(out, F32)) == 0
        _same_bits(out.reshape(pos, c), _ref("to_float", [bits], (pos, c)))
        ints = rng.integers(-2**31, 2**31, size=(pos, c)).astype(np.int64)  # rounds beyond 2^24, like numpy
        assert lib.ebnn_i32_to_f32(U32(n), U32(c), _ptr(ints.astype(np.int32), I32), None, U32(0), _ptr(out, F32)) == 0
        _same_bits(out.reshape(pos, c), _ref("to_float", [ints], (pos, c)))
        # affine with per-channel or single a, b
        k = 1 if trial % 2 else c
        a, b = _floats(rng, (k,)), _floats(rng, (k,))
        assert lib.ebnn_affine_f32(U32(n), U32(c), _ptr(x, F32), _ptr(a, F32), _ptr(b, F32), U32(k), _ptr(out, F32)) == 0
        _same_bits(out.reshape(pos, c), _ref("affine", [x], (pos, c), dict(a=a, b=b)))
        # div by a constant per channel or for all (x / c in a functional model; c != 0)
        d = np.where(a == 0, np.float32(3), a).astype(np.float32)
        assert lib.ebnn_div_f32(U32(n), U32(c), _ptr(x, F32), _ptr(d, F32), U32(k), _ptr(out, F32)) == 0
        _same_bits(out.reshape(pos, c), _ref("div", [x], (pos, c), dict(d=d)))
        # add
        assert lib.ebnn_add_f32(U32(n), _ptr(x, F32), _ptr(y, F32), _ptr(out, F32)) == 0
        _same_bits(out.reshape(pos, c), _ref("add", [x, y], (pos, c)))
        # activations (x with signed zeros and the clamps' ties)
        xa = x.copy()
        xa.reshape(-1)[rng.random(n) < 0.1] = rng.choice(np.float32([0.0, -0.0, 6.0, -1.0, 1.0, 50.0, -50.0]))
        for fn, code in ACT.items():
            alpha = np.float32(rng.random())
            assert lib.ebnn_activation_f32(U32(n), ctypes.c_uint8(code), F32(alpha), _ptr(xa, F32), _ptr(out, F32)) == 0
            with np.errstate(over="ignore"):  # exp(-x) overflows to inf for x << 0: sigmoid 0, as in C
                want = _ref("activation", [xa], (pos, c), dict(fn=fn, alpha=alpha))
            if fn in ("tanh", "sigmoid"):
                np.testing.assert_allclose(out.reshape(pos, c), want, rtol=1e-6, atol=1e-37)
            else:
                _same_bits(out.reshape(pos, c), want)


def test_sign_threshold_concat_match_reference(lib):
    rng = np.random.default_rng(4)
    for trial in range(TRIALS):
        c, pos = int(rng.integers(1, 70)), int(rng.integers(1, 30))
        n = c * pos
        x = _floats(rng, (pos, c))
        xi = rng.integers(-100, 101, size=(pos, c)).astype(np.int64)
        out = np.zeros(EBNN_WORDS(n) + 1, np.uint32)
        assert lib.ebnn_sign_f32(U32(n), _ptr(x, F32), _ptr(out, U32)) == 0
        np.testing.assert_array_equal(out, _pack(_ref("sign", [x], (pos, c))))
        assert lib.ebnn_sign_i32(U32(n), _ptr(xi.astype(np.int32), I32), _ptr(out, U32)) == 0
        np.testing.assert_array_equal(out, _pack(_ref("sign", [xi], (pos, c))))
        flip = rng.random(c) < 0.5
        flip_words = _pack(flip)
        tf = _floats(rng, (c,))
        tf[rng.random(c) < 0.1] = np.inf
        tf[rng.random(c) < 0.1] = -np.inf
        ti = rng.integers(-120, 121, size=c).astype(np.int64)
        assert lib.ebnn_threshold_f32(U32(n), U32(c), _ptr(x, F32), _ptr(tf, F32), _ptr(flip_words, U32),
                                      _ptr(out, U32)) == 0
        np.testing.assert_array_equal(out, _pack(_ref("threshold", [x], (pos, c), dict(flip=flip, threshold=tf))))
        assert lib.ebnn_threshold_i32(U32(n), U32(c), _ptr(xi.astype(np.int32), I32), _ptr(ti.astype(np.int32), I32),
                                      _ptr(flip_words, U32), _ptr(out, U32)) == 0
        np.testing.assert_array_equal(out, _pack(_ref("threshold", [xi], (pos, c), dict(flip=flip, threshold=ti))))
        # concat of 1..4 inputs along the channels
        chans = rng.integers(1, 40, size=int(rng.integers(1, 5)))
        parts_b = [rng.random((pos, int(k))) < 0.5 for k in chans]
        parts_f = [_floats(rng, (pos, int(k))) for k in chans]
        ch = (ctypes.c_uint32 * len(chans))(*[int(k) for k in chans])
        packed = [_pack(p) for p in parts_b]
        ptrs_b = (ctypes.POINTER(U32) * len(chans))(*[_ptr(p, U32) for p in packed])
        ptrs_f = (ctypes.POINTER(F32) * len(chans))(*[_ptr(p, F32) for p in parts_f])
        total = int(chans.sum())
        out = np.zeros(EBNN_WORDS(pos * total) + 1, np.uint32)
        assert lib.ebnn_concat_bits(U32(pos), U32(len(chans)), ptrs_b, ch, _ptr(out, U32)) == 0
        np.testing.assert_array_equal(out, _pack(_ref("concat", parts_b, (pos, total))))
        fout = np.zeros(pos * total, np.float32)
        assert lib.ebnn_concat_f32(U32(pos), U32(len(chans)), ptrs_f, ch, _ptr(fout, F32)) == 0
        _same_bits(fout.reshape(pos, total), _ref("concat", parts_f, (pos, total)))
        # argmax: numpy's first maximum
        logits = rng.integers(-3, 4, size=int(rng.integers(1, 20))).astype(np.float32)
        assert lib.ebnn_argmax_f32(U32(logits.size), _ptr(logits, F32)) == int(np.argmax(logits))


# ---- cross compilers ---------------------------------------------------------------------------------
CROSS = {
    "atmega328p": ["avr-gcc", "-mmcu=atmega328p", "-Os"],
    "cortex-m3": ["arm-none-eabi-gcc", "-mcpu=cortex-m3", "-mthumb", "-O2"],
    "cortex-m4f": ["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", "-O2"],
}


@pytest.mark.parametrize("target", sorted(CROSS))
def test_graph_kernels_cross_compile_warning_free(target, tmp_path):
    cmd = CROSS[target]
    if not shutil.which(cmd[0]):
        pytest.skip(f"{cmd[0]} not installed")
    for f in GRAPH_FILES:  # each as its own translation unit
        _run([*cmd, *STRICT, f"-I{RUNTIME}", "-c", RUNTIME / f, "-o", tmp_path / (f + ".o")])
    (tmp_path / "private.c").write_text(PRIVATE)  # as a generated NAME.c includes them
    _run([*cmd, *STRICT, f"-I{RUNTIME}", "-c", tmp_path / "private.c", "-o", tmp_path / "private.o"])


def test_no_fused_multiply_add_on_cortex_m4f(tmp_path):
    """The float kernels' products stay separate instructions on an FPU core even when the compiler is
    allowed to contract (-ffp-contract=fast, -O3): a vfma/vmla would change the rounding."""
    cmd = CROSS["cortex-m4f"][:-1]  # without -O2
    if not shutil.which(cmd[0]) or not shutil.which("arm-none-eabi-objdump"):
        pytest.skip("arm-none-eabi-gcc / objdump not installed")
    asm = ""
    for f in ("ebnn_conv_f32.c", "ebnn_dense_f32.c", "ebnn_elementwise.c", "ebnn_conv_pool_f32.c"):
        obj = tmp_path / (f + ".o")
        _run([*cmd, *STRICT, "-O3", "-ffp-contract=fast", f"-I{RUNTIME}", "-c", RUNTIME / f, "-o", obj])
        asm += _run(["arm-none-eabi-objdump", "-d", obj])
    assert "vmul.f32" in asm  # the products are there ...
    for fused in ("vfma", "vfms", "vmla", "vmls", "vfnm", "vnml"):
        assert fused not in asm, fused  # ... and never fused with the sum
