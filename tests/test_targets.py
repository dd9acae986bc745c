"""Embedded targets on emulated hardware (issue: targets). Run alone with `pytest -m targets`.

The shipped MNIST model runs on Cortex-M0+ and M3 under QEMU and on the ATmega328P under simavr,
on 100 real test images: classes (and logits) identical to the host build, with instructions or
cycles per inference and the target's own size figures printed. Arduino and Zephyr builds are
checked with their own build flows; each check skips cleanly when its tools are missing.
"""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from keras_ebnn import host, reference
from keras_ebnn.exporters.c import export_c, memory_plan
from keras_ebnn.lowering import load_model, lower

sys.path.insert(0, str(ROOT))
from bench.targets import avr, cortexm  # noqa: E402

pytestmark = pytest.mark.targets
MODEL = ROOT / "examples" / "models" / "uno_mnist.keras"
N_IMAGES = 100


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """The shipped model lowered and exported as C, 100 MNIST test images, and the host build's output."""
    from keras_ebnn import datasets
    if datasets.find_dir("mnist") is not None:
        x, _ = datasets.load("mnist", split="test")
    else:
        x = np.load(ROOT / "examples" / "data" / "mnist_test_sample.npz")["x"]
    x = x[-N_IMAGES:]  # the last test images: not the ones shipped as the demo sample
    lowered = lower(load_model(MODEL), "mnist")
    out = tmp_path_factory.mktemp("export") / "c"
    export_c(lowered, out, "mnist")
    if host.find_cc() is None:
        pytest.skip("no host C compiler")
    classes, logits = host.predict_c(lowered, out, "mnist", x)
    ref = reference.run(lowered, x, keep_bits=False)
    assert np.array_equal(classes, ref["classes"]) and np.array_equal(logits, ref["logits"])
    return lowered, out, x, classes, logits


def _data_symbols(symbols, name="mnist"):
    return sum(v for k, v in symbols.items() if k.startswith(f"{name}_b"))


@pytest.mark.skipif(not cortexm.available(), reason="arm-none-eabi-gcc / qemu-system-arm not installed")
@pytest.mark.parametrize("cpu", ["cortex-m0plus", "cortex-m3"])
def test_cortex_m_under_qemu(cpu, shipped, tmp_path):
    lowered, out, x, classes, logits = shipped
    r = cortexm.build_and_run(out, "mnist", x, lowered.num_classes, cpu=cpu, workdir=tmp_path)
    assert r["images"] == N_IMAGES
    assert np.array_equal(r["classes"], classes)
    assert np.array_equal(r["logits"], logits)  # bit-identical, soft-float included
    plan = memory_plan(lowered)
    assert _data_symbols(r["symbols"]) == plan["totals"]["flash_data_bytes"]
    assert r["symbols"]["mnist_arena"] == plan["arena_bytes"]
    print(f"\n{cpu}: {r['instructions_per_inference']:,.0f} instructions/inference; arm-none-eabi-size "
          f"text={r['size']['text']} data={r['size']['data']} bss={r['size']['bss']} (whole program incl. "
          f"{N_IMAGES} test images); model data {plan['totals']['flash_data_bytes']} B, runtime+predict code "
          f"{r['code_bytes']} B, arena {plan['arena_bytes']} B")
    assert 0 < r["instructions_per_inference"] < 50e6


@pytest.mark.skipif(not avr.available(), reason="avr-gcc / libsimavr-dev not installed")
def test_atmega328p_under_simavr(shipped, tmp_path):
    lowered, out, x, classes, logits = shipped
    r = avr.build_and_run(out, "mnist", x, lowered.num_classes, workdir=tmp_path)
    assert r["images"] == N_IMAGES
    assert np.array_equal(r["classes"], classes)
    plan = memory_plan(lowered, target="avr")
    assert _data_symbols(r["symbols"]) == plan["totals"]["flash_data_bytes"]
    assert r["symbols"]["mnist_arena"] == plan["arena_bytes"]
    sram = r["sram_static_bytes"] + r["stack_high_water_bytes"]
    print(f"\natmega328p: {r['cycles_per_inference']:,.0f} cycles/inference = {r['ms_per_inference_16mhz']:.1f} ms "
          f"at 16 MHz; avr-size text={r['size']['text']} data={r['size']['data']} bss={r['size']['bss']}; "
          f"stack high-water {r['stack_high_water_bytes']} B; SRAM {sram} of {avr.SRAM_BYTES} B; "
          f"runtime+predict code {r['code_bytes']} B")
    assert r["size"]["text"] + r["size"]["data"] <= avr.FLASH_BYTES
    assert sram < avr.SRAM_BYTES  # the stack never reached the end of .bss
    # logits: avr-libc's float routines are not all correctly rounded, so compare with a tolerance
    np.testing.assert_allclose(r["logits"], logits, rtol=1e-5, atol=1e-5)


ARDUINO = ["arduino-builder", "-hardware", "/usr/share/arduino-builder", "-hardware", "/usr/share/arduino/hardware",
           "-tools", "/usr/share/arduino-builder", "-fqbn", "arduino:avr:uno",
           "-prefs=compiler.cpp.extra_flags=-DDECIMAL_DIG=9"]


@pytest.mark.skipif(not (shutil.which("arduino-builder") and shutil.which("simavr")
                         and os.path.isdir("/usr/share/arduino/hardware")),
                    reason="arduino-builder / arduino-core-avr / simavr not installed")
def test_arduino_library_builds_and_runs(tmp_path):
    from keras_ebnn.exporting import export
    data = np.load(ROOT / "examples" / "data" / "mnist_test_sample.npz")
    lib = tmp_path / "libraries" / "mnist"
    export(load_model(MODEL), lib, name="mnist", target="arduino", verify_inputs=data["x"][:64],
           verify_labels=data["y"][:64])
    for f in ("library.properties", "src/mnist.h", "src/mnist.c", "src/ebnn.h", "examples/mnist/mnist.ino"):
        assert (lib / f).is_file(), f
    sketch = tmp_path / "sketch" / "mnist"
    sketch.mkdir(parents=True)
    shutil.copy(lib / "examples" / "mnist" / "mnist.ino", sketch)
    build = tmp_path / "build"
    build.mkdir()
    proc = subprocess.run([ARDUINO[0], "-compile", *ARDUINO[1:], "-libraries", str(tmp_path / "libraries"),
                           "-build-path", str(build), str(sketch / "mnist.ino")],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    print("\n" + "\n".join(ln for ln in proc.stdout.splitlines() if "Sketch uses" in ln or "Global variables" in ln))
    sim = subprocess.run(["simavr", "-m", "atmega328p", "-f", "16000000", str(build / "mnist.ino.elf")],
                         capture_output=True, text=True, timeout=600)
    text = sim.stdout + sim.stderr
    assert "done" in text, text[-2000:]
    import re
    m = re.search(r"accuracy (\d+)/(\d+)", text)
    assert m, text[-2000:]
    print(m.group(0))
    correct, total = int(m.group(1)), int(m.group(2))
    assert total == 8 and correct >= 7


ZEPHYR_BASE = os.environ.get("ZEPHYR_BASE")


def _zephyr_build(board, module, build, env):
    modules = [str(module)] + [m for m in os.environ.get("EBNN_ZEPHYR_EXTRA_MODULES", "").split(";") if m]
    cmd = ["cmake", "-GNinja", "-S", str(ROOT / "examples" / "zephyr_mnist"), "-B", str(build), f"-DBOARD={board}",
           f"-DZEPHYR_EXTRA_MODULES={';'.join(modules)}"]
    for c in (cmd, ["ninja", "-C", str(build)]):
        proc = subprocess.run(c, capture_output=True, text=True, env=env, timeout=1200)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.mark.skipif(not ZEPHYR_BASE, reason="ZEPHYR_BASE is not set (Zephyr is not installable from registries)")
@pytest.mark.parametrize("board", ["native_sim", "qemu_cortex_m3"])
def test_zephyr_sample(board, tmp_path):
    """Builds examples/zephyr_mnist against the exported module; runs it on native_sim.
    qemu_cortex_m3 needs the cmsis_6 module: pass its path in EBNN_ZEPHYR_EXTRA_MODULES."""
    from keras_ebnn.exporting import export
    data = np.load(ROOT / "examples" / "data" / "mnist_test_sample.npz")
    module = tmp_path / "module"
    export(load_model(MODEL), module, name="mnist", target="zephyr", verify_inputs=data["x"][:64],
           verify_labels=data["y"][:64])
    env = dict(os.environ)
    if board == "native_sim":
        env["ZEPHYR_TOOLCHAIN_VARIANT"] = "host"
    else:
        env.setdefault("ZEPHYR_TOOLCHAIN_VARIANT", "cross-compile")
        env.setdefault("CROSS_COMPILE", "/usr/bin/arm-none-eabi-")
    _zephyr_build(board, module, tmp_path / "build", env)
    if board == "native_sim":
        run = subprocess.run([str(tmp_path / "build" / "zephyr" / "zephyr.exe"), "--stop_at=2"],
                             capture_output=True, text=True, timeout=120)
        print(run.stdout[-400:])
        assert "accuracy: " in run.stdout
        correct, total = (int(v) for v in run.stdout.split("accuracy: ")[1].split()[0].split("/"))
        assert total == 32 and correct >= 30
    else:
        assert (tmp_path / "build" / "zephyr" / "zephyr.elf").is_file()
