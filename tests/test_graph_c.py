"""Compiled C of graph exports (exporters/graph_c.py) against the graph reference and Keras.

Random-DAG conformance: N_GRAPHS models from tests/helpers/graphgen.py (residual / concat branches, float
parts, average pooling of bits and integers, 1-D and 2-D, uint8 and float inputs), exported and
compiled GROUP at a time into one host program (each NAME.c holds its kernels privately, as
tests/test_multi_model.py checks) with -std=c99 -Wall -Wextra -Werror -pedantic and
-fsanitize=address,undefined. For every input:
  * every tensor the C writes into its arena (debug hook: bits, int32 and float32 tensors) equals
    keras_ebnn.ir.graph_reference's bit for bit (the generated graphs have no tanh / sigmoid; with them
    only the tolerance below applies, see test_tanh_sigmoid_within_tolerance);
  * the C logits equal the reference's bit for bit and the classes are identical;
  * against Keras: identical classes, logits (or softmax probabilities) within
    LOGIT_TOL x (1 + max |Keras value|) (float parts sum in another order than TensorFlow).
"""
import struct
import subprocess

import numpy as np
import pytest

from keras_ebnn.ir import graph_reference
from keras_ebnn.frontdoor import host
from keras_ebnn import import_larq
from keras_ebnn.exporters.c import export_c
from keras_ebnn.exporters.graph_c import GraphModel, debug_tensors, uses_libm
from keras_ebnn.ir.graph import lower_graph
from keras_ebnn.frontdoor.verify import C_LOGIT_TOL
from helpers.common import check_against_keras
from helpers.graphgen import calibrate, random_graph
from helpers.tiers import sweep

N_GRAPHS = 100
GROUP = 20
LOGIT_TOL = 1e-4
N_INPUTS = 8

pytestmark = pytest.mark.skipif(host.find_cc() is None, reason="no host C compiler")

def build_program(exports, folder):
    """Compile several exported graphs (name -> export folder) into one sanitized host program."""
    main = folder / "main.c"
    main.write_text(host.program_source(list(exports), dump=True))
    sources = [s for d in exports.values() for s in host.c_sources(d)]
    incs = [f"-I{d}" for d in exports.values()]
    exe = folder / "prog"
    cmd = [host.find_cc(), *host.STRICT, "-O0", *host.SANITIZE, "-DEBNN_DEBUG_HOOK", *incs, *sources, str(main),
           "-o", str(exe), "-lm"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return exe


def run_program(exe, models, folder):
    """Run the program on each model's inputs: {name: (classes, logits, {op: [raw words per input]})}."""
    args = []
    for name, (gm, x) in models.items():
        (folder / f"{name}.in").write_bytes(np.ascontiguousarray(x, dtype=gm.input.dtype).tobytes())
        args += [str(folder / f"{name}.{ext}") for ext in ("in", "out", "dump")]
    proc = subprocess.run([str(exe), *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = {}
    for name, (gm, x) in models.items():
        rec = np.dtype([("cls", "<i4"), ("logits", "<f4", (gm.num_classes,))])
        out = np.frombuffer((folder / f"{name}.out").read_bytes(), dtype=rec)
        assert len(out) == len(x)
        raw = (folder / f"{name}.dump").read_bytes()
        hooked = debug_tensors(gm)
        dumps, pos = {op: [] for op, _, _ in hooked}, 0
        for _ in range(len(x)):
            for op, _, nbits in hooked:
                got_op, got_bits = struct.unpack_from("<II", raw, pos)
                assert (got_op, got_bits) == (op, nbits), "debug dump out of step"
                nw = (nbits + 31) // 32
                dumps[op].append(np.frombuffer(raw, "<u4", nw, pos + 8))
                pos += 8 + 4 * nw
        assert pos == len(raw)
        results[name] = (out["cls"].astype(np.int64), out["logits"].copy(), dumps)
    return results


def _words(t, v):
    """The reference's value of tensor t (one input) as the C stores it: uint32 words."""
    if t.dtype == "bits":
        packed = np.packbits(np.asarray(v, dtype=bool).reshape(-1), bitorder="little")
        out = np.zeros(4 * ((t.size + 31) // 32), dtype=np.uint8)
        out[:packed.size] = packed
        return out.view("<u4")
    if t.dtype == "int":
        return np.asarray(v, dtype=np.int64).reshape(-1).astype("<i4").view("<u4")
    return np.asarray(v, dtype=np.float32).reshape(-1).view("<u4")


def check_against_reference(gm, x, classes, logits, dumps):
    """C tensors, logits and classes against graph_reference (module docstring); returns the number
    of tensor values compared."""
    g = gm.graph
    ref = graph_reference.run(g, x, keep=True)
    np.testing.assert_array_equal(classes, ref["classes"])
    exact = not uses_libm(g)
    if exact:
        np.testing.assert_array_equal(logits, ref["logits"])
    else:
        scale = 1.0 + float(np.abs(ref["logits"]).max())
        assert float(np.abs(logits - ref["logits"]).max()) <= C_LOGIT_TOL * scale
    compared = 0
    for op, tname, _ in debug_tensors(gm):
        if tname not in ref["tensors"] or not exact:
            continue  # "widen" (the uint8 input as int32) has no reference tensor
        t = g.tensors[tname]
        for i in range(len(x)):
            want = _words(t, ref["tensors"][tname][i])
            got = dumps[op][i]
            assert np.array_equal(got, want), f"op {op} ({g.ops[op].kind}) -> {tname} {t.dtype}: input {i} differs"
            compared += t.size
    return compared


@pytest.mark.parametrize("group", sweep(range(N_GRAPHS // GROUP), fast=1))
def test_random_graphs_compiled_c(group, tmp_path):
    seeds = range(group * GROUP, (group + 1) * GROUP)
    models, kmodels, exports = {}, {}, {}
    for seed in seeds:
        model, x, desc = random_graph(seed, n_inputs=N_INPUTS)
        name = f"g{seed}"
        gm = GraphModel(lower_graph(model, name))
        export_c(gm, tmp_path / "exports" / name, name)
        models[name], kmodels[name], exports[name] = (gm, x), model, tmp_path / "exports" / name
    exe = build_program(exports, tmp_path)
    results = run_program(exe, models, tmp_path)
    compared, worst = 0, 0.0
    for name, (gm, x) in models.items():
        classes, logits, dumps = results[name]
        compared += check_against_reference(gm, x, classes, logits, dumps)
        worst = max(worst, check_against_keras(kmodels[name], gm, x, logits, classes, LOGIT_TOL))
    print(f"graphs {seeds.start}-{seeds.stop - 1}: {len(models)} compiled in one program, {compared:,} tensor "
          f"values identical to the reference, worst C-vs-Keras logit error {worst:.2e}")


def tanh_sigmoid_model():
    """(model, inputs): float conv / dense layers with unfused tanh and sigmoid around a binary dense."""
    tf, lq = import_larq()
    L = tf.keras.layers
    inp = tf.keras.Input((10, 3))
    x = L.Conv1D(6, 3, activation="tanh")(inp)
    x = L.Flatten()(x)
    x = L.Dense(8, activation="sigmoid")(x)
    x = lq.layers.QuantDense(8, input_quantizer="ste_sign", kernel_quantizer="ste_sign")(x)
    x = L.BatchNormalization()(x)
    x = L.Dense(4, activation="tanh")(x)
    model = tf.keras.Model(inp, x)
    rng = np.random.default_rng(3)
    xs = rng.normal(0, 1, (64, 10, 3)).astype(np.float32)
    calibrate(model, xs, rng)
    return model, xs


def test_tanh_sigmoid_within_tolerance(tmp_path):
    """Unfused tanh / sigmoid (C library tanhf / expf): logits within C_LOGIT_TOL of the reference,
    classes identical; and the export() verification accepts it and says so."""
    from keras_ebnn import export
    model, xs = tanh_sigmoid_model()
    res = export(model, tmp_path / "out", name="tanhnet", verify_inputs=xs)
    assert res.lowered.kind == "graph" and uses_libm(res.lowered.graph)
    assert res.c_checked and res.c_matches_reference and res.c_logit_tolerance == C_LOGIT_TOL
    assert "tanhf" in (tmp_path / "out" / "tanhnet_report.md").read_text()
    gm = res.lowered
    exe = build_program({"tanhnet": tmp_path / "out"}, tmp_path)
    classes, logits, dumps = run_program(exe, {"tanhnet": (gm, xs)}, tmp_path)["tanhnet"]
    check_against_reference(gm, xs, classes, logits, dumps)
    check_against_keras(model, gm, xs, logits, classes, LOGIT_TOL)


def test_widened_uint8_input(tmp_path):
    """A uint8 model input read by an op other than an input conv or to_float (here a threshold of
    Rescaling -> BatchNormalization -> sign feeding a binary depthwise conv) is copied to int32 first."""
    tf, lq = import_larq()
    L = tf.keras.layers
    inp = tf.keras.Input((7, 7, 2))
    x = L.Rescaling(1 / 255.0)(inp)
    x = L.BatchNormalization()(x)
    x = lq.layers.QuantDepthwiseConv2D(3, padding="same", input_quantizer="ste_sign", depthwise_quantizer="ste_sign",
                                       use_bias=False)(x)
    x = L.BatchNormalization()(x)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dense(3)(x)
    model = tf.keras.Model(inp, x)
    rng = np.random.default_rng(4)
    xs = rng.integers(0, 256, (16, 7, 7, 2)).astype(np.uint8)
    calibrate(model, xs, rng)
    gm = GraphModel(lower_graph(model, "wide"))
    assert [o.kind for o in gm.graph.ops][0] == "threshold"
    export_c(gm, tmp_path / "out", "wide")
    assert "(int32_t)input[i]" in (tmp_path / "out" / "wide.c").read_text()
    exe = build_program({"wide": tmp_path / "out"}, tmp_path)
    classes, logits, dumps = run_program(exe, {"wide": (gm, xs)}, tmp_path)["wide"]
    check_against_reference(gm, xs, classes, logits, dumps)
    check_against_keras(model, gm, xs, logits, classes, LOGIT_TOL)


def test_summary_and_report_describe_graphs(tmp_path):
    """keras_ebnn.summary() of a model that is not a chain: one row per op with its output tensor's
    type, shape, bytes and arena offset, the peak; the export's NAME.h / NAME.c use the planned arena."""
    from keras_ebnn import summary
    from keras_ebnn.exporters.c import memory_plan
    from helpers.published_models import build
    model, _ = build("birealnet", n=1)
    text = summary(model, print_fn=None)
    gm = GraphModel(lower_graph(model, "bireal"))
    plan = memory_plan(gm)
    rows = [line for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == len(gm.graph.ops) == len(plan["ops"])
    assert {"bits", "int", "float32"} <= {r.split(" | ")[4] for r in rows}
    assert f"peak **{plan['peak_bytes']:,}**" in text and plan["totals"]["stack_bytes_estimate"] > 0
    assert f"stack <= {plan['totals']['stack_bytes_estimate']:,} B" in text
    export_c(gm, tmp_path / "out", "bireal")
    assert f"#define bireal_SCRATCH_SIZE {plan['arena_bytes']}u" in (tmp_path / "out" / "bireal.h").read_text()
    assert f"static uint32_t bireal_arena[{plan['arena_bytes'] // 4}];" in (tmp_path / "out" / "bireal.c").read_text()


def test_ebnn_export_callback_exports_a_graph(tmp_path):
    """EbnnExport on a model that is not a chain (the residual / concat / average-pooling sensor graph
    of tests/test_graph_targets.py): it is exported as a graph after the epoch, verified (C against the
    reference on random inputs in the model's uint8 range)."""
    from keras_ebnn import EbnnExport
    from test_graph_targets import sensor_graph
    tf, _ = import_larq()
    model, x = sensor_graph()
    model.compile(tf.keras.optimizers.Adam(1e-3), tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    y = np.arange(len(x)) % 4
    cb = EbnnExport(tmp_path / "out", name="sensor", verbose=0)
    model.fit(x.astype(np.float32), y, epochs=1, batch_size=8, verbose=0, callbacks=[cb])
    assert not cb.errors, cb.errors
    res = cb.exports[-1]
    assert res.lowered.kind == "graph" and res.c_checked and res.c_matches_reference
    assert "graph of" in res.summary() and (tmp_path / "out" / "sensor.c").is_file()
