"""Several models in one program (issue 15, point 5): each export compiles its kernels privately into
its NAME.c (exporters/c.py, runtime_c/README.md), so exports link together. Checked in a host program
(ASan/UBSan) with three models of different kernel sets — two exported into one folder — against the
reference executor; one Arduino sketch using two exported libraries (arduino-builder, Uno, simavr); and,
when ZEPHYR_BASE is set, one Zephyr app enabling two model modules."""
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from helpers.common import ROOT
from keras_ebnn.frontdoor import host
from keras_ebnn.ir import graph_reference
from keras_ebnn.exporters.c import export_c
from helpers.randblocks import random_lowered

@pytest.fixture(scope="module")
def paper():
    from keras_ebnn.frontend.lowering import load_model, lower
    return lower(load_model(ROOT / "examples" / "models" / "paper_mnist.keras"), "paper")


@pytest.mark.skipif(host.find_cc() is None, reason="no host C compiler")
def test_three_models_link_into_one_host_program(paper, tmp_path):
    """paper_mnist (uint8 input conv, output dense) and a generated sign_uint8 model (dense blocks)
    exported into ONE folder, a generated float-input model (binary convs, dense) into another: one program, each
    model's classes and logits equal the reference executor's. No kernel symbol is global."""
    fl, _ = random_lowered(4)  # float input, binary convs and dense blocks
    su, _ = random_lowered(3)  # sign_uint8 input, dense blocks
    assert fl.input.mode == "float" and su.input.mode == "sign_uint8"
    assert "binary_conv" in {b.kind for b in fl.blocks} and "binary_dense" in {b.kind for b in su.blocks}
    shared, other = tmp_path / "shared", tmp_path / "other"
    export_c(paper, shared, "paper")
    export_c(su, shared, "su")
    export_c(fl, other, "fl")
    rng = np.random.default_rng(0)
    data = np.load(ROOT / "examples" / "data" / "mnist_test_sample.npz")["x"][:40]
    inputs = {"paper": (paper, data),
              "su": (su, rng.integers(0, 256, (40,) + su.input.shape).astype(np.uint8)),
              "fl": (fl, rng.normal(0, 1, (40,) + fl.input.shape).astype(np.float32))}
    main = tmp_path / "main.c"
    main.write_text(host.program_source(list(inputs)))
    exe = tmp_path / "three"
    sources = host.c_sources(shared) + host.c_sources(other)
    assert [os.path.basename(s) for s in sources] == ["paper.c", "su.c", "fl.c"]  # the kernels are .inc
    proc = subprocess.run([host.find_cc(), *host.STRICT, "-O1", *host.SANITIZE, f"-I{shared}", f"-I{other}", *sources,
                           str(main), "-o", str(exe)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    args = []
    for n, (model, x) in inputs.items():
        (tmp_path / f"{n}.in").write_bytes(np.ascontiguousarray(x).tobytes())
        args += [str(tmp_path / f"{n}.in"), str(tmp_path / f"{n}.out")]
    run = subprocess.run([str(exe), *args], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    for n, (model, x) in inputs.items():
        rec = np.dtype([("cls", "<i4"), ("logits", "<f4", (model.num_classes,))])
        out = np.frombuffer((tmp_path / f"{n}.out").read_bytes(), dtype=rec)
        ref = graph_reference.run(model, x)
        assert len(out) == len(x)
        assert np.array_equal(out["cls"], ref["classes"]), n
        assert np.array_equal(out["logits"].view(np.uint32), ref["logits"].view(np.uint32)), n
    if shutil.which("nm"):
        syms = subprocess.run(["nm", str(exe)], capture_output=True, text=True).stdout
        assert not re.findall(r" [TDRB] ebnn_\w+", syms), "kernel symbols must be private to each model"
        assert len(re.findall(r" t ebnn_binary_conv$", syms, re.M)) == 1  # only fl uses it
        assert len(re.findall(r" t ebnn_output_dense$", syms, re.M)) == 3  # one copy per model


ARDUINO_SKETCH = r"""// two keras-ebnn models in one sketch: each prints its classes of the same images
#include <paper.h>
#include <tiny.h>
#include <avr/pgmspace.h>
#include <avr/sleep.h>

@IMAGES@
static uint8_t input[784];

void setup() {
  Serial.begin(115200);
  for (int i = 0; i < N_IMAGES; i++) {
    memcpy_P(input, images[i], sizeof(input));
    int a = paper_predict(input, NULL);
    int b = tiny_predict(input, NULL);
    Serial.print(F("image "));
    Serial.print(i);
    Serial.print(F(" paper "));
    Serial.print(a);
    Serial.print(F(" tiny "));
    Serial.println(b);
  }
  Serial.println(F("done"));
  Serial.flush();
  cli();
  sleep_cpu();
}

void loop() {}
"""


@pytest.mark.targets
@pytest.mark.skipif(not (shutil.which("arduino-builder") and shutil.which("simavr")
                         and os.path.isdir("/usr/share/arduino/hardware")),
                    reason="arduino-builder / arduino-core-avr / simavr not installed")
def test_two_libraries_in_one_uno_sketch(paper, tmp_path):
    """paper_mnist and tiny_mnist exported as two Arduino libraries, used by one sketch built for the
    Uno with arduino-builder and run under simavr: both models' classes equal the reference's."""
    from keras_ebnn.exporters.arduino import export_arduino
    from keras_ebnn.frontend.lowering import load_model, lower
    from test_targets import ARDUINO
    tiny = lower(load_model(ROOT / "examples" / "models" / "tiny_mnist.keras"), "tiny")
    libs = tmp_path / "libraries"
    plans = [export_arduino(paper, libs / "paper", "paper"), export_arduino(tiny, libs / "tiny", "tiny")]
    assert sum(p["arena_bytes"] for p in plans) + 784 < 1500  # two static arenas + the input fit 2 KB
    x = np.load(ROOT / "examples" / "data" / "mnist_test_sample.npz")["x"][:6]
    rows = ",\n".join("  {" + ", ".join(str(int(v)) for v in img.reshape(-1)) + "}" for img in x)
    sketch = tmp_path / "sketch" / "two"
    sketch.mkdir(parents=True)
    (sketch / "two.ino").write_text(ARDUINO_SKETCH.replace(
        "@IMAGES@", f"#define N_IMAGES {len(x)}\nstatic const uint8_t images[N_IMAGES][784] PROGMEM = {{\n{rows}\n}};"))
    build = tmp_path / "build"
    build.mkdir()
    proc = subprocess.run([ARDUINO[0], "-compile", *ARDUINO[1:], "-libraries", str(libs), "-build-path", str(build),
                           str(sketch / "two.ino")], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    print("\n" + "\n".join(ln for ln in proc.stdout.splitlines() if "Sketch uses" in ln or "Global variables" in ln))
    sim = subprocess.run(["simavr", "-m", "atmega328p", "-f", "16000000", str(build / "two.ino.elf")],
                         capture_output=True, text=True, timeout=600)
    text = sim.stdout + sim.stderr
    assert "done" in text, text[-2000:]
    got = [tuple(int(v) for v in m) for m in re.findall(r"image \d+ paper (-?\d+) tiny (-?\d+)", text)]
    want = list(zip(graph_reference.run(paper, x)["classes"].tolist(),
                    graph_reference.run(tiny, x)["classes"].tolist()))
    assert got == want, (got, want)


ZEPHYR_APP = {
    "CMakeLists.txt": "cmake_minimum_required(VERSION 3.20.0)\nfind_package(Zephyr REQUIRED HINTS $ENV{ZEPHYR_BASE})\n"
                      "project(two_models)\ntarget_sources(app PRIVATE src/main.c)\n",
    "prj.conf": "CONFIG_EBNN_PAPER=y\nCONFIG_EBNN_TINY=y\nCONFIG_PRINTK=y\nCONFIG_MAIN_STACK_SIZE=2048\n",
    "src/main.c": r"""/* two keras-ebnn model modules in one Zephyr app */
#include <zephyr/kernel.h>
#include <zephyr/sys/printk.h>
#include "paper.h"
#include "paper_samples.h"
#include "tiny.h"

int main(void)
{
    static paper_input_t input[paper_INPUT_LEN];
    for (int i = 0; i < paper_NUM_SAMPLES; i++) {
        for (unsigned k = 0; k < paper_INPUT_LEN; k++) {
            input[k] = paper_samples[i][k];
        }
        printk("image %d paper %d tiny %d\n", i, paper_predict(input, NULL), tiny_predict(input, NULL));
    }
    printk("done\n");
    return 0;
}
""",
}


@pytest.mark.targets
@pytest.mark.skipif(not os.environ.get("ZEPHYR_BASE"), reason="ZEPHYR_BASE is not set (Zephyr is not installable "
                    "from registries)")
def test_two_model_modules_in_one_zephyr_app(paper, tmp_path):
    """paper_mnist and tiny_mnist as two Zephyr modules in one native_sim app: both models' classes
    equal the reference's."""
    from keras_ebnn.exporters.zephyr import export_zephyr
    from keras_ebnn.frontend.lowering import load_model, lower
    from test_targets import _zephyr_python
    tiny = lower(load_model(ROOT / "examples" / "models" / "tiny_mnist.keras"), "tiny")
    x = np.load(ROOT / "examples" / "data" / "mnist_test_sample.npz")["x"][:8]
    export_zephyr(paper, tmp_path / "mod_paper", "paper", sample_images=x, sample_labels=np.zeros(8))
    export_zephyr(tiny, tmp_path / "mod_tiny", "tiny")
    app = tmp_path / "app"
    for rel, text in ZEPHYR_APP.items():
        (app / rel).parent.mkdir(parents=True, exist_ok=True)
        (app / rel).write_text(text)
    python = _zephyr_python()
    if python is None:
        pytest.skip("no Python >= 3.12 with Zephyr's packages (set EBNN_ZEPHYR_PYTHON)")
    env = dict(os.environ, ZEPHYR_TOOLCHAIN_VARIANT="host")
    build = tmp_path / "build"
    for cmd in (["cmake", "-GNinja", "-S", str(app), "-B", str(build), "-DBOARD=native_sim",
                 f"-DZEPHYR_EXTRA_MODULES={tmp_path / 'mod_paper'};{tmp_path / 'mod_tiny'}",
                 f"-DPython3_EXECUTABLE={python}"], ["ninja", "-C", str(build)]):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = subprocess.run([str(build / "zephyr" / "zephyr.exe"), "--stop_at=2"], capture_output=True, text=True,
                         timeout=120)
    got = [tuple(int(v) for v in m) for m in re.findall(r"image \d+ paper (-?\d+) tiny (-?\d+)", run.stdout)]
    want = list(zip(graph_reference.run(paper, x)["classes"].tolist(),
                    graph_reference.run(tiny, x)["classes"].tolist()))
    assert "done" in run.stdout and got == want, (run.stdout[-2000:], want)


def test_export_ships_exactly_the_kernels_it_uses(tmp_path):
    """The export holds one compilable C file (NAME.c); the kernels its blocks use come as .inc copies
    of the runtime's files (avr/ byte kernels for the c and arduino targets, not for Zephyr; the mve/
    Helium kernels of its binary blocks for all)."""
    from keras_ebnn.exporters.c import runtime_dir
    from keras_ebnn.exporters.zephyr import export_zephyr
    model, _ = random_lowered(3)  # sign_uint8 input conv, dense blocks: no binary conv
    assert "binary_conv" not in {b.kind for b in model.blocks}
    export_c(model, tmp_path / "c", "dn")
    files = sorted(str(p.relative_to(tmp_path / "c")) for p in (tmp_path / "c").rglob("*") if p.is_file())
    assert files == ["avr/ebnn_bytes.h", "avr/ebnn_bytes.inc", "avr/ebnn_input_conv8.inc", "dn.c", "dn.h", "ebnn.h",
                     "ebnn_bits.inc", "ebnn_dense.inc", "ebnn_input_conv.inc", "ebnn_internal.h",
                     "ebnn_output_dense.inc", "mve/ebnn_dense_mve.inc", "mve/ebnn_mve.h"]
    for f in files:
        if f.endswith(".inc"):
            assert (tmp_path / "c" / f).read_bytes() == (runtime_dir() / (f[:-4] + ".c")).read_bytes(), f
    export_zephyr(model, tmp_path / "z", "dn")
    src = tmp_path / "z" / "src"
    assert not (src / "avr").exists() and [p.name for p in src.rglob("*.c")] == ["dn.c"]
    assert "zephyr_library_sources(src/dn.c)\n" in (tmp_path / "z" / "CMakeLists.txt").read_text()
    if host.find_cc() is not None:  # a Zephyr export built with the byte kernels says why it cannot
        with pytest.raises(RuntimeError, match="this export has no byte kernels"):
            host.build_runner(src, "dn", extra_flags=["-DEBNN_BYTE_KERNELS=1"])


GRAPH_APP_MAIN = r"""/* a keras-ebnn graph model (1-D, uint8 input) as a Zephyr module */
#include <zephyr/kernel.h>
#include <zephyr/sys/printk.h>
#include "sensor.h"
#include "sensor_samples.h"

int main(void)
{
    static sensor_input_t input[sensor_INPUT_LEN];
    for (int i = 0; i < sensor_NUM_SAMPLES; i++) {
        for (unsigned k = 0; k < sensor_INPUT_LEN; k++) {
            input[k] = sensor_samples[i][k];
        }
        printk("sample %d class %d\n", i, sensor_predict(input, NULL));
    }
    printk("done\n");
    return 0;
}
"""


@pytest.mark.targets
@pytest.mark.skipif(not os.environ.get("ZEPHYR_BASE"), reason="ZEPHYR_BASE is not set (Zephyr is not installable "
                    "from registries)")
def test_graph_model_as_a_zephyr_module(tmp_path):
    """The shipped 1-D example (examples/sensor_1d) exported as its graph (keras_ebnn.ir.graph.lower_graph,
    with its Flatten op: the graph forms of the back end, not the chain view's) with target="zephyr" and
    built into a native_sim app: its classes on the embedded inputs equal the graph reference's."""
    from keras_ebnn.ir import graph_reference
    from keras_ebnn.frontdoor.exporting import export
    from keras_ebnn.frontend.lowering import load_model
    from test_targets import _zephyr_python
    python = _zephyr_python()
    if python is None:
        pytest.skip("no Python >= 3.12 with Zephyr's packages (set EBNN_ZEPHYR_PYTHON)")
    model = load_model(ROOT / "examples" / "sensor_1d" / "sensor_1d.keras")
    x = np.random.default_rng(0).integers(0, 256, size=(16,) + tuple(model.input_shape[1:])).astype(np.uint8)
    from keras_ebnn.ir.graph import lower_graph
    graph = lower_graph(model, "sensor")
    result = export(graph, tmp_path / "mod_sensor", name="sensor", target="zephyr", verify_inputs=x, keras_model=model)
    assert not result.plan["chain"]  # the graph back end's forms wrote this module
    app = tmp_path / "app"
    files = dict(ZEPHYR_APP, **{"src/main.c": GRAPH_APP_MAIN})
    files["prj.conf"] = "CONFIG_EBNN_SENSOR=y\nCONFIG_PRINTK=y\nCONFIG_MAIN_STACK_SIZE=4096\n"
    for rel, text in files.items():
        (app / rel).parent.mkdir(parents=True, exist_ok=True)
        (app / rel).write_text(text.replace("two_models", "graph_model"))
    env = dict(os.environ, ZEPHYR_TOOLCHAIN_VARIANT="host")
    build = tmp_path / "build"
    for cmd in (["cmake", "-GNinja", "-S", str(app), "-B", str(build), "-DBOARD=native_sim",
                 f"-DZEPHYR_EXTRA_MODULES={tmp_path / 'mod_sensor'}", f"-DPython3_EXECUTABLE={python}"],
                ["ninja", "-C", str(build)]):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = subprocess.run([str(build / "zephyr" / "zephyr.exe"), "--stop_at=2"], capture_output=True, text=True,
                         timeout=120)
    got = [int(c) for c in re.findall(r"sample \d+ class (-?\d+)", run.stdout)]
    want = graph_reference.run(graph, x)["classes"].tolist()
    assert "done" in run.stdout and got == want, (run.stdout[-2000:], want)
