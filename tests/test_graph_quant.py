"""Integer-only graphs (export(..., quantize="int8"), keras_ebnn/passes/graph_quant.py).

  * the fixed-point arithmetic: the NumPy functions against exact rational arithmetic, and the C
    helpers of runtime_c/ebnn_requant.h against the NumPy ones on the same values (bit for bit);
  * random branching models (tests/graphgen.py): the compiled C (ASan/UBSan) equals the integer
    reference bit for bit (classes and int32 logits); the classes' agreement with Keras float is
    printed and asserted loosely (quantization changes near-ties);
  * export() / the CLI / EbnnExport take the option and refuse bad uses clearly;
  * a Cortex-M0+ ELF of an integer-only export links no soft-float routine (while the float32 export
    of the same model does: the check can fail).
"""
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from helpers.cbuild import STRICT, SANITIZE, have, run
from helpers.graphgen import random_graph
from keras_ebnn.passes import graph_quant
from keras_ebnn.frontdoor import host
from keras_ebnn import import_larq
from keras_ebnn.errors import UnsupportedModelError
from keras_ebnn.planning.graph_memory import plan_memory, tensor_bytes

ROOT = Path(__file__).resolve().parent.parent
N_SWEEP = 24
MIN_AGREEMENT = 0.85  # mean class agreement with Keras float over the sweep (measured ~0.98)
SOFT_FLOAT = ("__aeabi_f", "__aeabi_d", "__aeabi_i2f", "__aeabi_ui2f", "__aeabi_l2f", "__aeabi_ul2f",
              "__aeabi_i2d", "__aeabi_ui2d", "__aeabi_l2d", "__aeabi_ul2d")


def _exact_round_half_away(fr):
    sign = -1 if fr < 0 else 1
    a = abs(fr)
    return sign * int(a + Fraction(1, 2)) if a.denominator != 1 else int(fr)


def test_fixed_point_against_exact_arithmetic():
    rng = np.random.default_rng(0)
    # rdbpot: round half away from zero
    assert list(graph_quant.rdbpot(np.array([5, -5, 6, -6, 7, -7]), 1)) == [3, -3, 3, -3, 4, -4]
    assert list(graph_quant.rdbpot(np.array([6, -6, 2, -2]), 2)) == [2, -2, 1, -1]
    assert int(graph_quant.srdhm(2 ** 30, 2 ** 30)) == 2 ** 29
    assert int(graph_quant.srdhm(-2 ** 31, -2 ** 31)) == 2 ** 31 - 1
    for _ in range(2000):
        r = float(np.exp(rng.uniform(-20, 4))) * (1 if rng.random() < 0.8 else -1)
        m, shift = graph_quant.quantize_multiplier(r)
        assert 2 ** 30 <= abs(m) < 2 ** 31
        approx = Fraction(m) * Fraction(2) ** (shift - 31)
        assert abs(approx - Fraction(r)) <= abs(Fraction(r)) * Fraction(1, 2 ** 30)
        vmax = (2 ** 31 - 1) >> max(shift, 0)
        x = int(rng.integers(-min(vmax, 2 ** 24), min(vmax, 2 ** 24) + 1))
        got = int(graph_quant.mbqm(x, m, shift))
        want = _exact_round_half_away(Fraction(x) * approx)
        assert abs(got - want) <= 1, (x, r, m, shift, got, want)  # two roundings: at most one unit apart
    assert graph_quant.quantize_multiplier(0.0) == (0, 0)
    assert graph_quant.quantize_multiplier(1e-12) == (0, 0)  # below 2^-31: zero, as TFLite
    s, zp = graph_quant.qparams(0.0, 1.0)
    assert zp == -128 and abs(s - 1 / 255) < 1e-12
    s, zp = graph_quant.qparams(-1.0, 1.0)
    assert zp in (-1, 0) and abs(s - 2 / 255) < 1e-12


@pytest.mark.skipif(host.find_cc() is None, reason="no host C compiler")
def test_c_fixed_point_equals_reference(tmp_path):
    """ebnn_mbqm (runtime_c/ebnn_requant.h) on random (x, M, shift), incl. negative multipliers and the
    rounding ties, equals graph_quant.mbqm bit for bit."""
    rng = np.random.default_rng(1)
    rows = []
    for i in range(3000):
        shift = int(rng.integers(-31, 8))
        m = int(rng.integers(2 ** 30, 2 ** 31)) * (1 if rng.random() < 0.7 else -1)
        bound = (2 ** 31 - 1) >> max(shift, 0)
        x = int(rng.integers(-bound, bound + 1)) if i % 3 else int(rng.integers(-300, 301)) << 8
        rows.append((x, m, shift))
    src = tmp_path / "t.c"
    body = ",\n".join(f"    {{{x}, {m}, {s}}}" for x, m, s in rows)
    src.write_text('#include <stdio.h>\n#include "ebnn_requant.h"\n'
                   f"static const long long cases[{len(rows)}][3] = {{\n{body}\n}};\n"
                   "int main(void)\n{\n    unsigned i;\n"
                   f"    for (i = 0; i < {len(rows)}u; i++)\n"
                   "        printf(\"%ld\\n\", (long)ebnn_mbqm((int32_t)cases[i][0], (int32_t)cases[i][1], "
                   "(int32_t)cases[i][2]));\n    return 0;\n}\n")
    exe = tmp_path / "t"
    run([host.find_cc(), *STRICT, *SANITIZE, "-O2", f"-I{ROOT / 'runtime_c'}", src, "-o", exe])
    got = [int(v) for v in run([exe]).split()]
    want = [int(graph_quant.mbqm(x, m, s)) for x, m, s in rows]
    assert got == want


def _export_and_run(g, x, out):
    from keras_ebnn.exporters.c import export_c
    from keras_ebnn.exporters.graph_c import GraphModel
    gm = GraphModel(g)
    export_c(gm, out, "m")
    exe = host.build_runner(out, "m", opt="-O1", sanitize=True)
    cls, logits = host.run_runner(exe, graph_quant.quantize_input(g, x), g.num_classes, gm.input.dtype)
    return cls, logits.view(np.int32)


@pytest.mark.skipif(host.find_cc() is None, reason="no host C compiler")
def test_random_graphs_int8_c_equals_reference(tmp_path):
    tf, _ = import_larq()
    agreements, refused = [], []
    for seed in range(N_SWEEP):
        model, x, desc = random_graph(seed, n_inputs=48)
        try:
            g = graph_quant.quantize_graph(model, x)
        except UnsupportedModelError as exc:
            refused.append((seed, exc.message))
            continue
        graph_quant.check_q(g)
        for t in g.tensors.values():  # the planner: an int8 tensor takes one byte per value
            if t.dtype == "int8":
                assert tensor_bytes(t) == 4 * ((t.size + 3) // 4)
        assert plan_memory(g)["arena_bytes"] > 0
        cls, logits = _export_and_run(g, x, tmp_path / f"g{seed}")
        ref = graph_quant.run(g, x)
        assert np.array_equal(cls, ref["classes"]), desc
        assert np.array_equal(logits, ref["logits"]), desc  # the int32 logits, bit for bit
        keras = np.asarray(model(tf.constant(np.asarray(x, np.float32)), training=False)).argmax(1)
        agreements.append(float(np.mean(ref["classes"] == keras)))
        print(f"seed {seed}: classes agree with Keras float on {agreements[-1] * 100:.1f}% ({desc})")
    print(f"int8 sweep: {len(agreements)} graphs quantized, C = reference bit for bit; mean class agreement "
          f"with Keras float {np.mean(agreements) * 100:.1f}% (min {np.min(agreements) * 100:.1f}%); "
          f"refused {len(refused)}: {refused}")
    assert not refused and len(agreements) == N_SWEEP
    assert np.mean(agreements) >= MIN_AGREEMENT


def _float_stem(tf, lq, input_uint8=True, residual=False):
    """The float-stem MNIST BNN of issue 21 (first layer Conv2D(16, 3) instead of a binary-weight
    QuantConv2D) or, with residual=True, a small residual BNN (float stem, two adds, global average
    pool, float head); seeded random weights."""
    tf.keras.utils.set_random_seed(5)
    L = tf.keras.layers
    hid = dict(input_quantizer="ste_sign", kernel_quantizer="ste_sign", kernel_constraint="weight_clip",
               use_bias=False)
    inp = L.Input((28, 28, 1))
    x = L.Rescaling(1 / 255.0)(inp) if input_uint8 else inp
    x = L.Conv2D(16, 3)(x)
    x = L.MaxPooling2D(2)(x)
    x = L.BatchNormalization(momentum=0.9, scale=False)(x)
    if residual:
        for _ in range(2):
            y = lq.layers.QuantConv2D(16, 3, padding="same", **hid)(x)
            y = L.BatchNormalization(momentum=0.9)(y)
            x = L.Add()([x, y])
        x = L.GlobalAveragePooling2D()(x)
        x = L.Dense(10)(x)
    else:
        x = lq.layers.QuantConv2D(32, 3, **hid)(x)
        x = L.MaxPooling2D(2)(x)
        x = L.BatchNormalization(momentum=0.9, scale=False)(x)
        x = L.Flatten()(x)
        x = lq.layers.QuantDense(10, **hid)(x)
        x = L.BatchNormalization(momentum=0.9, scale=False)(x)
    out = L.Activation("softmax")(x)
    return tf.keras.Model(inp, out)


def _samy_like(tf, lq, seed=3):
    """A small Binary-Samy-shaped BNN (tests/helpers/published_models.py samy_bnn): float Conv2D 3x3
    'same' + BN + max pool 2, a binary-weight QuantConv2D on the float map (no input quantizer) + BN +
    max pool 2 (with an odd map: a truncated pool window), a binary QuantConv2D, global average pool,
    float Dense; seeded random weights."""
    tf.keras.utils.set_random_seed(seed)
    L = tf.keras.layers
    kq = dict(kernel_quantizer="ste_sign", kernel_constraint="weight_clip", use_bias=False)
    inp = L.Input((19, 17, 3))
    x = L.Conv2D(8, 3, padding="same", use_bias=False)(inp)
    x = L.MaxPooling2D(2)(L.BatchNormalization()(x))
    x = lq.layers.QuantConv2D(12, 3, input_quantizer=None, padding="same", **kq)(x)
    x = L.MaxPooling2D(2, padding="same")(L.BatchNormalization()(x))
    x = L.BatchNormalization()(lq.layers.QuantConv2D(16, 3, input_quantizer="ste_sign", **kq)(x))
    x = L.Dense(3)(L.GlobalAveragePooling2D()(x))
    return tf.keras.Model(inp, x)


def _calibrated(model, x):
    """Batch-norm statistics from the model's own activations."""
    model(np.asarray(x, np.float32), training=True)  # batch-norm statistics from the model's own activations
    return model


@pytest.mark.skipif(host.find_cc() is None, reason="no host C compiler")
def test_export_quantize_int8_end_to_end(tmp_path):
    """export(quantize="int8") writes integer-only C equal to the reference, with the input
    quantization in NAME.h and a report note; bad uses fail before anything is written; the CLI's
    --quantize int8 --representative-data FILE.npy gives the same C."""
    from keras_ebnn import convert
    from keras_ebnn.frontdoor.exporting import export
    tf, lq = import_larq()
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (64, 28, 28, 1)).astype(np.uint8)
    for residual in (False, True):
        model = _calibrated(_float_stem(tf, lq, input_uint8=not residual, residual=residual), x)
        xin = x if not residual else (x / 255.0).astype(np.float32)
        out = tmp_path / f"e{int(residual)}"
        r = export(model, out, name="m", verify_inputs=xin, quantize="int8", representative_data=xin[:32])
        assert r.c_checked and r.c_matches_reference and r.c_logit_tolerance is None
        # random weights on noise images: many near-ties between classes (the trained figures are in
        # bench/int8_mode.py); the bits are what quantization changes little
        assert r.agreement.class_agreement >= 0.7 and r.agreement.bit_mismatch_total < 0.02, r.agreement.summary()
        head, src = (out / "m.h").read_text(), (out / "m.c").read_text()
        assert "int32_t *scores" in head and "m_SCORES_INT32" in head
        assert ("m_INPUT_ZERO_POINT" in head) == residual and ("typedef int8_t m_input_t" in head) == residual
        assert "float" not in src.split("m_predict_scratch")[1]  # the predict body has no float
        assert any("quantize=int8" in n for n in r.notes)
        assert "quantize=int8" in r.report_path.read_text()
        print(f"{'residual' if residual else 'float-stem'}: {r.agreement.summary()}")
    with pytest.raises(ValueError, match="representative_data"):
        export(model, tmp_path / "bad", name="m", quantize="int8")
    with pytest.raises(ValueError, match="quantize"):
        export(model, tmp_path / "bad", name="m", quantize="int4", representative_data=xin)
    with pytest.raises(ValueError, match="target='c'"):
        export(model, tmp_path / "bad", name="m", target="arduino", quantize="int8", representative_data=xin)
    assert not (tmp_path / "bad").exists()
    # the CLI
    path = tmp_path / "model.keras"
    model.save(path)
    np.save(tmp_path / "rep.npy", xin[:32])
    assert convert.main([str(path), "-o", str(tmp_path / "cli"), "--name", "m", "--quantize", "int8",
                         "--representative-data", str(tmp_path / "rep.npy"), "-q"]) == 0
    assert (tmp_path / "cli" / "m.c").read_text() == (out / "m.c").read_text()
    assert convert.main([str(path), "-o", str(tmp_path / "cli2"), "--quantize", "int8", "-q"]) == 2
    assert convert.main([str(path), "-o", str(tmp_path / "cli2"), "--representative-data",
                         str(tmp_path / "rep.npy"), "-q"]) == 2
    assert not (tmp_path / "cli2").exists()
    # EbnnExport checks the option at construction
    from keras_ebnn.frontdoor.callback import EbnnExport
    with pytest.raises(ValueError, match="representative_data"):
        EbnnExport(tmp_path / "cb", quantize="int8")
    assert EbnnExport(tmp_path / "cb", quantize="int8", representative_data=xin).quantize == "int8"


def test_tanh_sigmoid_are_tables_and_bad_divisor_is_refused():
    """tanh / sigmoid become 256-entry lookup tables (integer); what has no integer form is refused
    naming the layer."""
    tf, _ = import_larq()
    L = tf.keras.layers
    inp = L.Input((6,))
    h = L.Dense(8, activation="tanh")(inp)
    h = L.Dense(8, activation="sigmoid")(h)
    model = tf.keras.Model(inp, L.Dense(3)(h))
    x = np.random.default_rng(3).normal(size=(64, 6)).astype(np.float32)
    g = graph_quant.quantize_graph(model, x)
    assert [op.kind for op in g.ops].count("lut") == 2
    keras = np.asarray(model(x)).argmax(1)
    assert np.mean(graph_quant.run(g, x)["classes"] == keras) >= 0.85
    with pytest.raises(ValueError, match="representative_data has shape"):
        graph_quant.quantize_graph(model, x[:, :5])


@pytest.mark.skipif(not (have("arm-none-eabi-gcc") and have("arm-none-eabi-nm")), reason="no Arm toolchain")
def test_cortex_m0plus_elf_has_no_soft_float(tmp_path):
    sys.path.insert(0, str(ROOT))
    from bench.targets import cortexm
    from keras_ebnn.frontdoor.exporting import export
    tf, lq = import_larq()
    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, (32, 28, 28, 1)).astype(np.uint8)
    found = {}
    for residual in (False, True):
        model = _calibrated(_float_stem(tf, lq, input_uint8=not residual, residual=residual), x)
        xin = x if not residual else (x / 255.0).astype(np.float32)
        for mode in ("float32", "int8"):
            out = tmp_path / f"{mode}{int(residual)}"
            export(model, out, name="m", **({"quantize": "int8", "representative_data": xin} if mode == "int8" else {}))
            imgs = graph_quant.quantize_input(graph_quant.quantize_graph(model, xin), xin[:2]) if mode == "int8" else xin[:2]
            elf = cortexm.build(out, "m", imgs, cpu="cortex-m0plus", workdir=tmp_path / f"b{mode}{int(residual)}",
                                flags=["-DSCORE_T=int32_t"] if mode == "int8" else [])
            names = subprocess.run(["arm-none-eabi-nm", str(elf)], capture_output=True, text=True,
                                   check=True).stdout.split()
            found[(mode, residual)] = sorted({n for n in names if n.startswith(SOFT_FLOAT)})
    assert found[("float32", False)] and found[("float32", True)], found  # the float export needs soft float
    assert found[("int8", False)] == [] and found[("int8", True)] == [], found


@pytest.mark.parametrize("target", ["cortex-m0plus", "cortex-m3", "avr"])
def test_report_stack_bounds_int8_builds(target, tmp_path):
    """The report's RAM of an integer-only export (arena + the int8 kernel files' GRAPH_STACK_BYTES) is
    at least the arena + keras_ebnn.planning.stackcheck's deepest chain (-O2 and -Os), on graphs using the
    fused conv, add, concat, depthwise and pools."""
    from keras_ebnn.planning import stackcheck
    from keras_ebnn.exporters.c import export_c
    from keras_ebnn.exporters.graph_c import GraphModel, memory_plan
    if not stackcheck.available(target):
        pytest.skip(f"{stackcheck.TARGETS[target].cc} not installed")
    for seed in (9, 28):
        model, x, _ = random_graph(seed)
        gm = GraphModel(graph_quant.quantize_graph(model, x, f"q{seed}"))
        export_c(gm, tmp_path / gm.name, gm.name)
        plan = memory_plan(gm, target=target)
        for opt in ("-O2", "-Os"):
            deepest = max(c.bytes for c in stackcheck.analyze(tmp_path / gm.name, target, opt).values())
            assert plan["totals"]["ram_bytes"] >= plan["arena_bytes"] + deepest, (seed, opt, deepest)


@pytest.mark.slow
@pytest.mark.skipif(not (have("arm-none-eabi-gcc") and have("qemu-system-arm")), reason="no Arm toolchain / QEMU")
@pytest.mark.parametrize("cpu", ["cortex-m7", "cortex-m0plus"])
def test_int8_convs_on_cortex_m_equal_reference(cpu, tmp_path, monkeypatch):
    """The int8 conv kernel's core-specific paths (runtime_c/ebnn_conv_s8.c: __smlad dot products two
    positions at a time, the four-taps-per-word patch reads on a DSP core; the portable loops on the
    M0+) give the reference's int32 logits bit for bit under QEMU: random graphs (odd and even pool
    windows, padding, strides, channel counts) and the float-stem / residual BNNs."""
    sys.path.insert(0, str(ROOT))
    from bench.targets import cortexm
    from keras_ebnn.exporters.c import export_c
    from keras_ebnn.planning import graph_memory
    from keras_ebnn.exporters.graph_c import GraphModel
    tf, lq = import_larq()
    rng = np.random.default_rng(7)
    cases = []
    for seed in (1, 9, 28):
        model, x, _ = random_graph(seed, n_inputs=8)
        cases.append((f"r{seed}", graph_quant.quantize_graph(model, x, f"r{seed}"), x))
    x = rng.integers(0, 256, (8, 28, 28, 1)).astype(np.uint8)
    for residual in (False, True):
        xin = x if not residual else (x / 255.0).astype(np.float32)
        model = _calibrated(_float_stem(tf, lq, input_uint8=not residual, residual=residual), x)
        cases.append((f"s{int(residual)}", graph_quant.quantize_graph(model, xin, f"s{int(residual)}"), xin))
    xs = rng.normal(0, 1, (8, 19, 17, 3)).astype(np.float32)
    cases.append(("samy", graph_quant.quantize_graph(_calibrated(_samy_like(tf, lq), xs), xs, "samy"), xs))
    cases.append(("nocache", cases[-1][1], xs))  # the same without row caches: windows read per position
    n_conv = 0
    for name, g, xs in cases:
        n_conv += sum(op.kind == "conv_s8" for op in g.ops)
        with monkeypatch.context() as mp:
            if name == "nocache":
                mp.setattr(graph_memory, "CONV_S8_CACHE_MAX", 0)
            export_c(GraphModel(g), tmp_path / name, name)
        if name == "nocache":
            assert ", 0u, (int32_t *)(arena" in (tmp_path / name / f"{name}.c").read_text()
        if name == "samy":  # the binary-weight conv as bits, both convs with a row cache
            src = (tmp_path / name / f"{name}.c").read_text()
            assert "ebnn_conv_s8_bits(" in src and src.count(", 4u, (int32_t *)(arena") == 2
        r = cortexm.build_and_run(tmp_path / name, name, graph_quant.quantize_input(g, xs), cpu=cpu,
                                  workdir=tmp_path / f"b{name}", flags=["-DSCORE_T=int32_t"])
        ref = graph_quant.run(g, xs)
        assert np.array_equal(r["classes"], ref["classes"]), name
        assert np.array_equal(np.asarray(r["logits"]).view(np.int32), ref["logits"].astype(np.int32)), name
    assert n_conv >= 4


@pytest.mark.skipif(host.find_cc() is None, reason="no host C compiler")
def test_binary_weight_conv_on_int8_map_is_bits(tmp_path, monkeypatch):
    """A binary-weight conv on an int8 map exports its weights as sign bits (ebnn_conv_s8_bits, 1 bit
    per weight + a magnitude per channel instead of an int8 each), the float conv before it with a
    row cache; the C (ASan/UBSan) equals the reference bit for bit."""
    from keras_ebnn.exporters.c import export_c
    from keras_ebnn.exporters.graph_c import GraphModel, memory_plan
    from keras_ebnn.planning import graph_memory
    from keras_ebnn.planning.graph_memory import conv_s8_bits, conv_s8_cache
    tf, lq = import_larq()
    x = np.random.default_rng(5).normal(0, 1, (24, 19, 17, 3)).astype(np.float32)
    model = _calibrated(_samy_like(tf, lq), x)
    g = graph_quant.quantize_graph(model, x)
    convs = [op for op in g.ops if op.kind == "conv_s8"]
    assert len(convs) == 2 and conv_s8_bits(convs[0]) is None and conv_s8_bits(convs[1]) is not None
    assert conv_s8_cache(convs[0])[0] == 4 and conv_s8_cache(convs[1])[0] == 4  # (pool 2 - 1) * 1 + 3 rows
    nib, mag = conv_s8_bits(convs[1])
    assert nib.shape == (12, 9) and np.all(mag == 127)  # 72 taps: 18 nibbles per output channel
    plan = memory_plan(GraphModel(g))
    assert plan["ops"][1]["flash_bytes"] < 400  # bits + magnitudes + thresholds, not 864 int8 weights
    cls, logits = _export_and_run(g, x, tmp_path / "m")
    ref = graph_quant.run(g, x)
    assert np.array_equal(cls, ref["classes"]) and np.array_equal(logits, ref["logits"])
    src = (tmp_path / "m" / "m.c").read_text()
    assert "ebnn_conv_s8_bits(" in src and ", 4u, (int32_t *)(arena" in src
    monkeypatch.setattr(graph_memory, "CONV_S8_CACHE_MAX", 0)  # without row caches: windows read per position
    cls, logits = _export_and_run(g, x, tmp_path / "nocache")
    assert np.array_equal(cls, ref["classes"]) and np.array_equal(logits, ref["logits"])
    assert ", 0u, (int32_t *)(arena" in (tmp_path / "nocache" / "m.c").read_text()


def _conv_requant_pool_graph(m_sign, seed=0):
    """A hand-built integer graph (no TensorFlow): int8 input 7x7x2 -> conv_s8 3x3 'same', 4 channels ->
    requant to int8 (per-channel multipliers, multiplied by m_sign) -> max pool 2 (stride 2, 'same': the
    last window truncated)."""
    from keras_ebnn.ir.blocks import ConvGeometry
    from keras_ebnn.ir.graph import Graph, Op, Tensor
    rng = np.random.default_rng(seed)
    h, c, o = 7, 2, 4
    w = rng.integers(-127, 128, (3, 3, c, o)).astype(np.int64)
    bound = 9 * c * 255 * 127 + 5000
    t = {"x": Tensor("x", (h, h, c), "int8", scale=0.05, zero_point=3),
         "acc": Tensor("acc", (h, h, o), "int", lo=-bound, hi=bound, scale=np.full(o, 1e-4), zero_point=0),
         "r": Tensor("r", (h, h, o), "int8", scale=0.1, zero_point=-5),
         "y": Tensor("y", (4, 4, o), "int8", scale=0.1, zero_point=-5)}
    geom = ConvGeometry(in_shape=(h, h, c), kernel=(3, 3), strides=(1, 1), pad=(1, 1), conv_shape=(h, h),
                        out_hw=(h, h))
    m, shift = graph_quant._multipliers(rng.uniform(2e-4, 3e-3, o) * np.asarray(m_sign))
    ops = [Op("conv_s8", ["x"], "acc", {"weights": w, "bias": rng.integers(-5000, 5000, o), "zp": 3, "pad_q": 0,
                                        "geometry": geom}, ["conv"]),
           Op("requant", ["acc"], "r", {"M": m, "shift": shift, "offset": rng.integers(-20, 20, o), "zp_in": 0,
                                        "zp_out": -5, "lo": -128, "hi": 127}, ["bn"]),
           Op("max_pool", ["r"], "y", {"geometry": {"pool": (2, 2), "strides": (2, 2), "pad": (0, 0),
                                                    "out_hw": (4, 4), "in_shape": (h, h, o)}}, ["pool"])]
    return Graph(name="crp", input="x", output="y", tensors=t, ops=ops)


def _run_ops(g, x):
    from keras_ebnn.ir.graph_reference import run_op
    vals = {g.input: x}
    for op in g.ops:
        vals[op.output] = run_op(g, op, [vals[n] for n in op.inputs])
    return vals[g.output]


@pytest.mark.parametrize("m_sign", [[1, 1, 1, 1], [1, -1, 1, 1]])
def test_pool_before_requant_bit_exact(m_sign):
    """conv_s8 -> requant -> max_pool becomes conv -> max_pool (int32) -> requant, then one fused conv,
    only where every channel's multiplier is >= 0 (requantization monotone non-decreasing: it commutes
    with the maximum); with a negative multiplier the pass leaves the graph as it is and fuse_convs fuses
    conv -> requant -> max_pool directly (the minimum for that channel). The reference output is the
    unfused graph's bit for bit on random inputs (a hand-built graph: no TensorFlow)."""
    import copy
    fusable = min(m_sign) > 0
    g = _conv_requant_pool_graph(m_sign)
    x = np.random.default_rng(1).integers(-128, 128, (64, 7, 7, 2)).astype(np.int64)
    want = _run_ops(g, x)
    assert want.shape == (64, 4, 4, 4) and len(np.unique(want)) > 20  # not a saturated constant
    swapped = graph_quant.pool_before_requant(copy.deepcopy(g))
    kinds = [op.kind for op in swapped.ops]
    assert kinds == (["conv_s8", "max_pool", "requant"] if fusable else ["conv_s8", "requant", "max_pool"])
    assert "r" not in swapped.tensors if fusable else "r" in swapped.tensors
    assert np.array_equal(_run_ops(swapped, x), want)
    # fuse_convs then fuses either form into one conv (with a negative multiplier: conv -> requant ->
    # max_pool directly, the fused form pooling that channel's minimum)
    fused = graph_quant.fuse_convs(swapped)
    assert [op.kind for op in fused.ops] == ["conv_s8"] and "pool" in fused.ops[0].params
    assert np.array_equal(_run_ops(fused, x), want)


@pytest.mark.skipif(host.find_cc() is None, reason="no host C compiler")
def test_requant_then_pool_fused_c_equals_reference(tmp_path):
    """The Binary-Samy-shaped BNN with a first batch norm whose gamma is negative on some channels: the
    quantizer requantizes to int8 before the max pool; both convs are then fused with their pools
    (no full-resolution map), and the compiled C (ASan/UBSan) equals the reference bit for bit."""
    tf, lq = import_larq()
    model = _samy_like(tf, lq, seed=4)
    bn = [l for l in model.layers if "batch_normalization" in l.name][0]
    gamma, beta, mean, var = bn.get_weights()
    bn.set_weights([gamma * np.array([1, -1, 1, 1, -1, 1, 1, 1]), beta, mean, var])
    xs = np.random.default_rng(8).normal(0, 1, (16, 19, 17, 3)).astype(np.float32)
    model = _calibrated(model, xs)
    g = graph_quant.quantize_graph(model, xs, "samyneg")
    first = g.ops[0]
    assert first.kind == "conv_s8" and "pool" in first.params and first.params["stage"]["kind"] == "requant"
    assert (np.asarray(first.params["stage"]["M"]) < 0).sum() == 2
    assert not any(op.kind == "max_pool" for op in g.ops)
    cls, logits = _export_and_run(g, xs, tmp_path / "samyneg")
    ref = graph_quant.run(g, xs)
    assert np.array_equal(cls, ref["classes"]) and np.array_equal(logits, ref["logits"])
