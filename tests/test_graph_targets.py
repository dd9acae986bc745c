"""Graph exports (exporters/graph_c.py) on MCU emulators: a small 1-D uint8 sensor-style graph (binary
input conv block, average pooling of binary accumulators, residual Add of float tensors, concatenation
of bits, global average pooling, float Dense head) built with the Cortex-M and AVR harnesses of bench/targets:
  * Cortex-M0+/M3 (soft float) and M4F (FPU) under qemu: classes and logits identical to the host C and
    graph_reference (IEEE float32 add / mul / div are correctly rounded on all three), the Cortex-M3
    code estimate of the report within 25% of the linked code;
  * ATmega328P under simavr: classes identical, logits within 1e-5 (avr-libc's float routines are not
    all correctly rounded), the measured stack high-water and SRAM reported.
Generated C of graph models also compiles warning-free (-Werror) for AVR and Cortex-M4F at -O3 with
-ffp-contract=fast.
"""
import subprocess
import sys

import numpy as np
import pytest

from helpers.common import ROOT
from keras_ebnn.ir import graph_reference
from keras_ebnn.frontdoor import host
from keras_ebnn import import_larq
from keras_ebnn.planning import stackcheck
from keras_ebnn.exporters.c import export_c, memory_plan
from keras_ebnn.exporters.graph_c import GraphModel
from keras_ebnn.passes.graph_fuse import all_ops
from keras_ebnn.ir.graph import lower_graph
from helpers.graphgen import calibrate

sys.path.insert(0, str(ROOT))
from bench.targets import avr, cortexm  # noqa: E402

pytestmark = pytest.mark.targets
N = 24


def sensor_graph():
    tf, lq = import_larq()
    L = tf.keras.layers
    sign = dict(input_quantizer="ste_sign", kernel_quantizer="ste_sign", kernel_constraint="weight_clip",
                use_bias=False)
    inp = tf.keras.Input((24, 2))
    x = L.Rescaling(1 / 255.0)(inp)
    x = lq.layers.QuantConv1D(8, 5, kernel_quantizer="ste_sign", kernel_constraint="weight_clip", use_bias=False)(x)
    x = L.BatchNormalization()(x)
    x = lq.layers.QuantConv1D(8, 3, padding="same", **sign)(x)
    x = L.BatchNormalization()(L.AveragePooling1D(2)(x))
    r = L.BatchNormalization()(lq.layers.QuantConv1D(8, 3, padding="same", **sign)(x))
    x = L.Add()([x, r])
    b = L.BatchNormalization()(lq.layers.QuantConv1D(4, 3, padding="same", **sign)(x))
    x = L.Concatenate()([x, b])
    x = lq.layers.QuantConv1D(12, 3, **sign)(x)
    x = L.GlobalAveragePooling1D()(x)
    x = L.BatchNormalization()(x)
    x = L.Dense(4)(x)
    model = tf.keras.Model(inp, x)
    rng = np.random.default_rng(11)
    xs = rng.integers(0, 256, (N, 24, 2)).astype(np.uint8)
    calibrate(model, xs, rng)
    return model, xs


@pytest.fixture(scope="module")
def sensor(tmp_path_factory):
    model, x = sensor_graph()
    gm = GraphModel(lower_graph(model, "sensor"))
    kinds = {op.kind for op in all_ops(gm.graph)}  # with the conv_pool ops' sub-ops (graph_fuse.py)
    assert {"add", "concat", "avg_pool", "global_avg", "dense", "block"} <= kinds, kinds
    out = tmp_path_factory.mktemp("sensor") / "out"
    export_c(gm, out, "sensor")
    cls, logits = host.predict_c(gm, out, "sensor", x)
    ref = graph_reference.run(gm.graph, x)
    np.testing.assert_array_equal(cls, ref["classes"])
    np.testing.assert_array_equal(logits, ref["logits"])
    return gm, out, x, cls, logits


@pytest.mark.skipif(not cortexm.available(), reason="arm-none-eabi-gcc / qemu-system-arm not installed")
@pytest.mark.parametrize("cpu", ["cortex-m0plus", "cortex-m3", "cortex-m4"])
def test_graph_on_cortex_m(cpu, sensor, tmp_path):
    gm, out, x, classes, logits = sensor
    r = cortexm.build_and_run(out, "sensor", x, gm.num_classes, cpu=cpu, workdir=tmp_path)
    np.testing.assert_array_equal(r["classes"], classes)
    np.testing.assert_array_equal(r["logits"], logits)
    plan = memory_plan(gm)
    assert r["symbols"]["sensor_arena"] == plan["arena_bytes"]
    # the report's flash figure is the constant data the object really holds
    assert sum(v for k, v in r["symbols"].items() if k.startswith("sensor_op")) == plan["totals"]["flash_data_bytes"]
    print(f"\n{cpu}: {r['instructions_per_inference']:,.0f} instructions/inference; runtime+predict code "
          f"{r['code_bytes']} B (estimate {plan['totals']['code_bytes_estimate']} B), arena {plan['arena_bytes']} B")
    if cpu == "cortex-m3":
        estimate = plan["totals"]["code_bytes_estimate"]
        assert abs(estimate - r["code_bytes"]) <= 0.25 * r["code_bytes"], (estimate, r["code_bytes"])


@pytest.mark.skipif(not avr.available(), reason="avr-gcc / libsimavr-dev not installed")
def test_graph_on_atmega328p(sensor, tmp_path):
    gm, out, x, classes, logits = sensor
    r = avr.build_and_run(out, "sensor", x, gm.num_classes, workdir=tmp_path)
    np.testing.assert_array_equal(r["classes"], classes)
    np.testing.assert_allclose(r["logits"], logits, rtol=1e-5, atol=1e-5)
    plan = memory_plan(gm, target="avr")
    assert r["symbols"]["sensor_arena"] == plan["arena_bytes"]
    assert sum(v for k, v in r["symbols"].items() if k.startswith("sensor_op")) == plan["totals"]["flash_data_bytes"]
    sram = r["sram_static_bytes"] + r["stack_high_water_bytes"]
    assert sram < avr.SRAM_BYTES
    assert r["stack_high_water_bytes"] <= plan["totals"]["stack_bytes_estimate"]  # the report's bound holds
    print(f"\natmega328p: {r['ms_per_inference_16mhz']:.1f} ms at 16 MHz; stack high-water "
          f"{r['stack_high_water_bytes']} B (report bound {plan['totals']['stack_bytes_estimate']} B); "
          f"SRAM {sram} of {avr.SRAM_BYTES} B; arena {plan['arena_bytes']} B")


@pytest.mark.skipif(not (avr.available() and cortexm.available()), reason="avr-gcc / arm-none-eabi-gcc missing")
def test_graph_c_compiles_warning_free_for_mcus(sensor, tmp_path):
    _, out, _, _, _ = sensor
    flags = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", f"-I{out}", "-c", str(out / "sensor.c")]
    for cc, target in (("avr-gcc", ["-mmcu=atmega328p", "-Os"]),
                       ("arm-none-eabi-gcc", ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16",
                                              "-O3", "-ffp-contract=fast"]),
                       ("arm-none-eabi-gcc", ["-mcpu=cortex-m0plus", "-mthumb", "-O2"])):
        proc = subprocess.run([cc, *target, *flags, "-o", str(tmp_path / "sensor.o")], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr


@pytest.mark.skipif(not stackcheck.available("cortex-m0plus"), reason="arm-none-eabi-gcc not installed")
def test_stackcheck_measures_graph_exports(sensor, tmp_path):
    """keras_ebnn.planning.stackcheck bounds graph exports (what bench/graph_stack.py builds the report's graph
    figures from). larq_readme_mlp's predict at -O2 on Cortex-M0+ ends with a branch
    before an elided literal pool, whose relocations once were taken for the branch's target; in
    kws_binary_dscnn at -Os GCC folds the equal bit-reading helpers of the binary conv and binary
    accumulator kernels into one body with two names (one .su line)."""
    from helpers.published_models import build
    _, out, _, _, _ = sensor
    folders = [(out, "sensor", "-O2")]
    for name, short, opt in (("larq_readme_mlp", "mlp", "-O2"), ("kws_binary_dscnn", "kws", "-Os")):
        model, _ = build(name, n=1)
        export_c(GraphModel(lower_graph(model, short)), tmp_path / short, short)
        folders.append((tmp_path / short, short, opt))
    for folder, name, opt in folders:
        chain = stackcheck.analyze(folder, "cortex-m0plus", opt)[f"{name}_predict"]
        assert chain.path[0][0] == f"{name}_predict" and len(chain.path) >= 2 and chain.bytes > 0
        print(f"{name}: Cortex-M0+ {opt} stack {chain}")


@pytest.mark.parametrize("target", ["cortex-m0plus", "cortex-m3", "avr"])
def test_report_stack_bounds_graph_builds(target, sensor, tmp_path):
    """The report's RAM figure of a graph export (arena + GRAPH_STACK_BYTES / STACK_BYTES bound, for this
    target and for any target) is at least the arena + stackcheck's deepest chain of the default
    build (-O2 on Cortex-M, -Os on AVR; the other level too) -- for the sensor graph, kws_binary_dscnn
    (binary accumulators, depthwise) and a model with tanh / sigmoid (libm) -- and not loose."""
    if not stackcheck.available(target):
        pytest.skip(f"{stackcheck.TARGETS[target].cc} not installed")
    from helpers.published_models import build
    from test_graph_c import tanh_sigmoid_model
    gm_sensor, out, _, _, _ = sensor
    cases = [(gm_sensor, out)]
    for name, model in (("kws", build("kws_binary_dscnn", n=1)[0]), ("tanhnet", tanh_sigmoid_model()[0])):
        gm = GraphModel(lower_graph(model, name))
        export_c(gm, tmp_path / name, name)
        cases.append((gm, tmp_path / name))
    for gm, folder in cases:
        plan_t, plan_any = memory_plan(gm, target=target), memory_plan(gm)
        for opt in ("-O2", "-Os"):
            chains = stackcheck.analyze(folder, target, opt)
            deepest = max(c.bytes for c in chains.values())
            need = plan_t["arena_bytes"] + deepest
            print(f"{target} {opt} {gm.name}: chain {chains[gm.name + '_predict']}; report stack "
                  f"{plan_t['totals']['stack_bytes_estimate']} B")
            assert plan_t["totals"]["ram_bytes"] >= need and plan_any["totals"]["ram_bytes"] >= need
            assert plan_t["totals"]["stack_bytes_estimate"] <= 1.5 * deepest + 64, (gm.name, opt, deepest)
