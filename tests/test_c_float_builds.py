"""Compiler builds that change float arithmetic (issue 22, item 9), each re-created here:

* x87 (gcc -m32 in a GNU mode, clang -m32 -mno-sse): float expressions are evaluated in 80-bit
  registers (FLT_EVAL_METHOD 2) and GNU modes keep them there across assignments, so `acc = acc +
  product` in ebnn_dense_f32 gave other logits (566 of 864 not bit-identical in the issue's run; 196
  of 800 on tests/helpers/graphgen.py's first 12 graphs). The kernels round every float result that feeds
  another operation (EBNN_F32, runtime_c/ebnn_internal.h): the logits of random graphs (float conv,
  dense, affine, average pooling, float-input blocks) equal the reference's bit for bit.
* -ffast-math / -Ofast changed logits too; the kernels now stop such a build with an #error
  (EBNN_ALLOW_FAST_MATH overrides it).
* -DEBNN_ACT_LIBM=0 on a model with tanh / sigmoid built and then returned -2 at run time; the
  generated NAME.c now stops the build with an #error naming the ops.
* -Wconversion: every kernel file compiles warning-free with it (-Werror) on the host (64-bit), AVR
  and Arm (Cortex-M0+/M3/M4F/M55) with each popcount variant (ebnn_input_conv.c and
  ebnn_binary_conv.c warned before).
"""
import shutil
import subprocess

import numpy as np
import pytest

from helpers.common import ROOT
from keras_ebnn.ir import graph_reference
from keras_ebnn.frontdoor import host
from keras_ebnn.exporters.c import export_c
from keras_ebnn.exporters.graph_c import GraphModel, uses_libm
from keras_ebnn.ir.graph import lower_graph
from helpers.graphgen import random_graph

RUNTIME = ROOT / "runtime_c"
SEEDS = range(12)  # tests/helpers/graphgen.py graphs: 9 of the 12 have float parts whose logits x87 changed


def _cc_works(cc, flags, tmp_path):
    if shutil.which(cc) is None:
        return False
    src = tmp_path / "probe.c"
    src.write_text("#include <stdio.h>\nint main(void) { return 0; }\n")
    proc = subprocess.run([cc, *flags, str(src), "-o", str(tmp_path / "probe")], capture_output=True)
    return proc.returncode == 0


def _exports(tmp_path, seeds):
    out = []
    for seed in seeds:
        model, x, _ = random_graph(seed, n_inputs=16)
        gm = GraphModel(lower_graph(model, f"g{seed}"))
        if uses_libm(gm.graph):
            continue  # tanhf / expf: libm tolerance, not bit-identical anywhere
        export_c(gm, tmp_path / f"g{seed}", f"g{seed}")
        out.append((gm, x, tmp_path / f"g{seed}"))
    return out


@pytest.mark.parametrize("cc,flags", [("gcc", ["-m32", "-std=gnu99"]), ("gcc", ["-m32", "-std=gnu99", "-mfpmath=387"]),
                                      ("clang", ["-m32", "-mno-sse", "-std=gnu99"])])
def test_x87_logits_bit_identical(cc, flags, tmp_path):
    if not _cc_works(cc, ["-m32"], tmp_path):
        pytest.skip(f"{cc} cannot build -m32 programs (Debian: apt-get install gcc-multilib)")
    checked = 0
    for gm, x, folder in _exports(tmp_path, SEEDS):
        exe = host.build_runner(folder, gm.name, cc=shutil.which(cc), opt="-O2", extra_flags=flags)
        try:
            classes, logits = host.run_runner(exe, x, gm.num_classes, gm.input.dtype)
        finally:
            shutil.rmtree(exe.parent, ignore_errors=True)
        ref = graph_reference.run(gm.graph, x)
        np.testing.assert_array_equal(logits.view(np.uint32), np.asarray(ref["logits"], np.float32).view(np.uint32),
                                      err_msg=f"{gm.name} {' '.join(flags)}")
        np.testing.assert_array_equal(classes, ref["classes"])
        checked += logits.size
    assert checked >= 500


def test_fast_math_refused(tmp_path):
    cc = host.find_cc()
    if cc is None:
        pytest.skip("no host C compiler")
    gm, x, folder = _exports(tmp_path, [0])[0]
    with pytest.raises(RuntimeError, match="without -ffast-math"):
        host.build_runner(folder, gm.name, extra_flags=["-ffast-math"])
    with pytest.raises(RuntimeError, match="without -ffast-math"):
        host.build_runner(folder, gm.name, opt="-Ofast")
    exe = host.build_runner(folder, gm.name, extra_flags=["-ffast-math", "-DEBNN_ALLOW_FAST_MATH"])  # the way out
    shutil.rmtree(exe.parent, ignore_errors=True)


def test_act_libm_0_with_tanh_stops_the_build(tmp_path):
    """A tanh / sigmoid model built with -DEBNN_ACT_LIBM=0 (e.g. copied from a ReLU model's build
    line) fails to compile, naming the ops, instead of returning -2 from every predict call."""
    from test_graph_c import tanh_sigmoid_model
    model, xs = tanh_sigmoid_model()
    gm = GraphModel(lower_graph(model, "tanhnet"))
    export_c(gm, tmp_path / "out", "tanhnet")
    with pytest.raises(RuntimeError, match=r"tanhnet: op \d+ tanh \(conv1d.*need\(s\) tanhf / expf"):
        host.build_runner(tmp_path / "out", "tanhnet", extra_flags=["-DEBNN_ACT_LIBM=0"])
    exe = host.build_runner(tmp_path / "out", "tanhnet")  # the default build still works
    classes, _ = host.run_runner(exe, xs[:4], gm.num_classes, gm.input.dtype)
    shutil.rmtree(exe.parent, ignore_errors=True)
    assert (classes >= 0).all()


WCONVERSION_TARGETS = {
    "host gcc": ["gcc", "-O2"], "host clang": ["clang", "-O2"],
    "avr": ["avr-gcc", "-mmcu=atmega328p", "-Os"], "avr mega": ["avr-gcc", "-mmcu=atmega2560", "-Os"],
    "cortex-m0plus": ["arm-none-eabi-gcc", "-mcpu=cortex-m0plus", "-mthumb", "-O2"],
    "cortex-m3": ["arm-none-eabi-gcc", "-mcpu=cortex-m3", "-mthumb", "-O2"],
    "cortex-m4f": ["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", "-O2"],
    "cortex-m55": ["arm-none-eabi-gcc", "-mcpu=cortex-m55", "-mthumb", "-O2"],
}


@pytest.mark.parametrize("target", sorted(WCONVERSION_TARGETS))
def test_kernels_warning_free_with_wconversion(target, tmp_path):
    cmd = WCONVERSION_TARGETS[target]
    if shutil.which(cmd[0]) is None:
        pytest.skip(f"{cmd[0]} not installed")
    files = sorted(RUNTIME.glob("ebnn_*.c")) + sorted((RUNTIME / "avr").glob("*.c")) + sorted((RUNTIME / "mve").glob("*.c"))
    assert len(files) >= 12
    for pop in (1, 2, 3):
        for f in files:
            proc = subprocess.run([*cmd, "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Wconversion", "-Werror",
                                   f"-DEBNN_POPCOUNT={pop}", f"-I{RUNTIME}", "-c", str(f), "-o", str(tmp_path / "k.o")],
                                  capture_output=True, text=True)
            assert proc.returncode == 0, f"{target} EBNN_POPCOUNT={pop} {f.name}:\n{proc.stderr[-3000:]}"


@pytest.mark.parametrize("target", ["host gcc", "avr mega", "cortex-m3"])
def test_generated_graph_code_warning_free_with_wconversion(target, tmp_path):
    """The generated NAME.c of graph exports (random graphs: every kind of op) with -Wconversion."""
    cmd = WCONVERSION_TARGETS[target]
    if shutil.which(cmd[0]) is None:
        pytest.skip(f"{cmd[0]} not installed")
    for gm, _, folder in _exports(tmp_path, range(8)):
        proc = subprocess.run([*cmd, "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Wconversion", "-Werror",
                               f"-I{folder}", "-c", str(folder / f"{gm.name}.c"), "-o", str(tmp_path / "m.o")],
                              capture_output=True, text=True)
        assert proc.returncode == 0, f"{target} {gm.name}:\n{proc.stderr[-3000:]}"
