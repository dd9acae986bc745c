"""Embedded targets on emulated hardware (issue: targets). Run alone with `pytest -m targets`.

The shipped MNIST model runs on Cortex-M0+, M3, M4F, M7 and M55 (Helium kernels) and on RISC-V
rv32imc (with and without Zbb) under QEMU and on the ATmega328P under simavr,
on 100 real test images: classes (and logits) identical to the host build, with instructions or
cycles per inference and the target's own size figures printed. Arduino and Zephyr builds are
checked with their own build flows; each check skips cleanly when its tools are missing.
"""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers.common import ROOT
from keras_ebnn.frontdoor import host
from keras_ebnn.ir import graph_reference
from helpers.tiers import count, sweep
from keras_ebnn.exporters.c import export_c, memory_plan
from keras_ebnn.frontend.lowering import load_model, lower

sys.path.insert(0, str(ROOT))
from bench.targets import avr, cortexm, riscv  # noqa: E402

pytestmark = pytest.mark.targets
MODEL = ROOT / "examples" / "models" / "uno_mnist.keras"
N_IMAGES = 100


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """The shipped model lowered and exported as C, 100 MNIST test images, and the host build's output."""
    from keras_ebnn.train import datasets
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
    ref = graph_reference.run(lowered, x)
    assert np.array_equal(classes, ref["classes"]) and np.array_equal(logits, ref["logits"])
    return lowered, out, x, classes, logits


def _data_symbols(symbols, name="mnist"):
    return sum(v for k, v in symbols.items() if k.startswith(f"{name}_b"))


@pytest.mark.skipif(not cortexm.available(), reason="arm-none-eabi-gcc / qemu-system-arm not installed")
@pytest.mark.parametrize("cpu", ["cortex-m0plus", "cortex-m3", "cortex-m4", "cortex-m7", "cortex-m55"])
def test_cortex_m_under_qemu(cpu, shipped, tmp_path):
    lowered, out, x, classes, logits = shipped
    r = cortexm.build_and_run(out, "mnist", x, lowered.num_classes, cpu=cpu, workdir=tmp_path)
    assert r["images"] == N_IMAGES
    assert np.array_equal(r["classes"], classes)
    assert np.array_equal(r["logits"], logits)  # bit-identical (integer binary32 code on these cores)
    plan = memory_plan(lowered)
    assert _data_symbols(r["symbols"]) == plan["totals"]["flash_data_bytes"]
    assert r["symbols"]["mnist_arena"] == plan["arena_bytes"]
    print(f"\n{cpu}: {r['instructions_per_inference']:,.0f} instructions/inference; arm-none-eabi-size "
          f"text={r['size']['text']} data={r['size']['data']} bss={r['size']['bss']} (whole program incl. "
          f"{N_IMAGES} test images); model data {plan['totals']['flash_data_bytes']} B, runtime+predict code "
          f"{r['code_bytes']} B (library routines {r['libgcc_helpers']}), arena {plan['arena_bytes']} B")
    assert 0 < r["instructions_per_inference"] < 50e6
    # the flash the model adds (build with vs without the predict call) holds the model's data, and its
    # code holds the library routines only it uses, each counted once (see cortexm.model_flash)
    helpers = r["libgcc_helpers"]
    # integer-only on these FPU-less cores (EBNN_INT_LOGITS): no soft-float routine is linked
    assert not [k for k in helpers if k.startswith("__aeabi_f") or k.endswith(("sf3", "sf2", "sisf", "disf"))
                or k.startswith(("__aeabi_i2f", "__aeabi_ui2f", "__aeabi_l2f", "__aeabi_ul2f"))], helpers
    assert sum(helpers.values()) < r["code_bytes"] < 12_000
    assert "memcpy" not in helpers  # only the driver copies images
    # cross-check by symbols: the functions only the predict build links (runtime, predict, helpers)
    # fill the code figure up to alignment padding
    full, empty = cortexm.symbols(r["elf"], with_type=True), cortexm.symbols(r["empty_elf"], with_type=True)
    ours = sum(v[1] for k, v in full.items() if v[2] in "tT" and k not in empty and not k.startswith("__")
               and not k.startswith("mnist_b") and k != "images")  # functions, not data
    assert r["code_bytes"] - 64 <= ours + sum(helpers.values()) <= r["code_bytes"], (ours, helpers, r["code_bytes"])
    if cpu == "cortex-m3":  # the export report's code estimate (exporters/c.py CODE_BYTES) stays honest
        estimate = plan["totals"]["code_bytes_estimate"]
        assert abs(estimate - r["code_bytes"]) <= 0.25 * r["code_bytes"], (estimate, r["code_bytes"])


@pytest.mark.skipif(not cortexm.available(), reason="arm-none-eabi-gcc / qemu-system-arm not installed")
def test_cortex_m0plus_on_an_armv6m_core(shipped, tmp_path):
    """The M0+ build also runs on QEMU's micro:bit (nRF51: a real ARMv6-M Cortex-M0 core, which rejects
    ARMv7-M instructions, and 256 KB flash / 16 KB RAM): same outputs, same instruction count as on the
    Cortex-M3 machine."""
    lowered, out, x, classes, logits = shipped
    r = cortexm.build_and_run(out, "mnist", x, cpu="cortex-m0plus", workdir=tmp_path / "mb", machine="microbit")
    assert r["machine"] == "microbit"
    assert np.array_equal(r["classes"], classes) and np.array_equal(r["logits"], logits)
    m3 = cortexm.build_and_run(out, "mnist", x, cpu="cortex-m0plus", workdir=tmp_path / "an385")
    assert r["instructions_per_inference"] == m3["instructions_per_inference"]


RISCV_SKIP = "riscv64-unknown-elf-gcc + picolibc / qemu-system-riscv32 not installed"
# the instructions only Zbb has (Debian binutils' mnemonics), to check which builds use it
ZBB_OPS = {"andn", "orn", "xnor", "clz", "ctz", "cpop", "max", "maxu", "min", "minu", "sext.b", "sext.h",
           "zext.h", "rol", "ror", "rori", "rev8", "orc.b"}


def _riscv_mnemonics(elf):
    out = subprocess.run(["riscv64-unknown-elf-objdump", "-d", str(elf)], capture_output=True, text=True,
                         check=True).stdout
    return {ln.split("\t")[2].strip() for ln in out.splitlines() if ln.count("\t") >= 2}


@pytest.mark.skipif(not riscv.available(), reason=RISCV_SKIP)
def test_riscv_under_qemu(shipped, tmp_path):
    """rv32imc on QEMU's virt machine (a core without Zbb), and rv32imc_zbb with the default popcount
    (EBNN_POPCOUNT_BUILTIN when __riscv_zbb: GCC compiles __builtin_popcount to `cpop`) and with the
    SWAR popcount forced (-DEBNN_POPCOUNT=2): classes and logits identical to the host build in all
    three; only the Zbb builds contain Zbb instructions, only the default Zbb build `cpop`, and it runs
    fewer instructions than the SWAR builds."""
    lowered, out, x, classes, logits = shipped
    plan = memory_plan(lowered)
    res = {}
    for cpu, flags in [("rv32imc", []), ("rv32imc_zbb", ["-DEBNN_POPCOUNT=2"]), ("rv32imc_zbb", [])]:
        key = cpu + ("+cpop" if cpu == "rv32imc_zbb" and not flags else "")
        r = res[key] = riscv.build_and_run(out, "mnist", x, lowered.num_classes, cpu=cpu, flags=flags,
                                           workdir=tmp_path / key)
        assert r["images"] == N_IMAGES
        assert np.array_equal(r["classes"], classes)
        assert np.array_equal(r["logits"], logits)  # bit-identical (integer binary32 code, no FPU)
        assert _data_symbols(r["symbols"]) == plan["totals"]["flash_data_bytes"]
        assert r["symbols"]["mnist_arena"] == plan["arena_bytes"]
        assert 0 < r["instructions_per_inference"] < 50e6
        helpers = r["libgcc_helpers"]  # integer-only logits: no soft-float routine is linked
        soft_float = [k for k in helpers if k.endswith(("sf3", "sf2", "sisf", "disf")) or k.startswith("__float")]
        assert not soft_float, helpers
        assert r["code_bytes"] < 12_000
        ops = _riscv_mnemonics(r["elf"])
        assert bool(ops & ZBB_OPS) == (cpu == "rv32imc_zbb"), sorted(ops & ZBB_OPS)
        assert ("cpop" in ops) == (key == "rv32imc_zbb+cpop")
        print(f"\n{key}: {r['instructions_per_inference']:,.0f} instructions/inference; size text={r['size']['text']} "
              f"data={r['size']['data']} bss={r['size']['bss']} (whole program incl. {N_IMAGES} test images); "
              f"runtime+predict code {r['code_bytes']} B (library routines {helpers}), stack {r['stack_bytes']} B")
    assert res["rv32imc_zbb+cpop"]["instructions_per_inference"] < res["rv32imc_zbb"]["instructions_per_inference"]
    assert res["rv32imc_zbb+cpop"]["instructions_per_inference"] < res["rv32imc"]["instructions_per_inference"]


@pytest.mark.skipif(not (cortexm.available() and riscv.available()),
                    reason="arm-none-eabi-gcc / qemu-system-arm or " + RISCV_SKIP)
def test_m15_mnist_on_the_newer_cores(shipped, tmp_path):
    """The larger shipped m15_mnist on Cortex-M4F, Cortex-M7, rv32imc and rv32imc_zbb with the `cpop`
    popcount: classes and logits identical to the host build and the reference executor."""
    x = shipped[2]
    lowered = lower(load_model(ROOT / "examples" / "models" / "m15_mnist.keras"), "mnist")
    out = tmp_path / "export"
    export_c(lowered, out, "mnist")
    classes, logits = host.predict_c(lowered, out, "mnist", x)
    ref = graph_reference.run(lowered, x)
    assert np.array_equal(classes, ref["classes"]) and np.array_equal(logits, ref["logits"])
    runs = {cpu: cortexm.build_and_run(out, "mnist", x, cpu=cpu, workdir=tmp_path / cpu)
            for cpu in ("cortex-m4", "cortex-m7")}
    runs["rv32imc"] = riscv.build_and_run(out, "mnist", x, cpu="rv32imc", workdir=tmp_path / "rv32imc")
    runs["rv32imc_zbb+cpop"] = riscv.build_and_run(out, "mnist", x, cpu="rv32imc_zbb", flags=["-DEBNN_POPCOUNT=1"],
                                                   workdir=tmp_path / "zbb")
    for key, r in runs.items():
        assert np.array_equal(r["classes"], classes), key
        assert np.array_equal(r["logits"], logits), key
        assert 0 < r["instructions_per_inference"] < 50e6
        print(f"\nm15_mnist {key}: {r['instructions_per_inference']:,.0f} instructions/inference, "
              f"runtime+predict code {r['code_bytes']} B, stack {r['stack_bytes']} B")


def _function_mnemonics(elf, names):
    """{function: set of instruction mnemonics} of the named functions of an Armv8.1-M ELF, each with those of
    the functions it calls or branches to (one level: e.g. ebnn_binary_conv's two static bodies)."""
    out = subprocess.run(["arm-none-eabi-objdump", "-d", "-m", "armv8.1-m.main", str(elf)], capture_output=True,
                         text=True, check=True).stdout
    ops, calls, current = {}, {}, None
    for ln in out.splitlines():
        if ln.endswith(">:"):
            current = ln.split("<", 1)[1][:-2]
        elif current is not None and ln.count("\t") >= 2:
            ops.setdefault(current, set()).add(ln.split("\t")[2].split()[0])
            target = re.search(r"<([A-Za-z_][A-Za-z0-9_.]*)>$", ln)  # a call or branch to a function's start
            if target and target.group(1) != current:
                calls.setdefault(current, set()).add(target.group(1))
    return {fn: ops.get(fn, set()).union(*(ops.get(c, set()) for c in calls.get(fn, ()))) for fn in names}


MVE_OPS = {"veor", "vmla.u8", "vshr.u8"}  # the Helium kernels' XOR and SWAR popcount steps
BINARY_ENTRIES = ("ebnn_binary_conv", "ebnn_binary_dense16")


@pytest.mark.skipif(not cortexm.available(), reason="arm-none-eabi-gcc / qemu-system-arm not installed")
@pytest.mark.parametrize("model", sweep(["uno_mnist", "m15_mnist"], fast=1))
def test_cortex_m55_helium_kernels(model, shipped, tmp_path):
    """Cortex-M55 (QEMU mps3-an547): the default build runs the Helium kernels (runtime_c/mve/: the binary
    conv and dense entry points are MVE code) and the -DEBNN_MVE_KERNELS=0 build the generic C ones; both
    give the host build's classes and logits on the test images, and the binary layers (binary conv +
    dense calls, counted between markers) run fewer instructions with Helium than the generic C on the
    same core and than the Cortex-M4 build."""
    x = shipped[2][:20]
    lowered = lower(load_model(ROOT / "examples" / "models" / f"{model}.keras"), "mnist")
    out = tmp_path / "export"
    export_c(lowered, out, "mnist")
    classes, logits = host.predict_c(lowered, out, "mnist", x)
    runs = {key: cortexm.kernel_instructions(out, "mnist", x, cpu=cpu, flags=flags, workdir=tmp_path / key)
            for key, cpu, flags in [("helium", "cortex-m55", []), ("m55 generic", "cortex-m55", ["-DEBNN_MVE_KERNELS=0"]),
                                    ("m4", "cortex-m4", [])]}
    for key, r in runs.items():
        assert np.array_equal(r["classes"], classes), key
        assert np.array_equal(r["logits"], logits), key
        ops = _function_mnemonics(r["elf"], BINARY_ENTRIES) if key != "m4" else {}
        for fn in BINARY_ENTRIES if key != "m4" else ():
            assert (MVE_OPS <= ops[fn]) == (key == "helium"), (key, fn, sorted(ops[fn]))
    helium = runs["helium"]["kernel_instructions"]
    assert helium < runs["m55 generic"]["kernel_instructions"] and helium < runs["m4"]["kernel_instructions"]
    print(f"\n{model} binary layers: Helium {helium:,.0f} instructions/inference, generic C on M55 "
          f"{runs['m55 generic']['kernel_instructions']:,.0f}, Cortex-M4 {runs['m4']['kernel_instructions']:,.0f} "
          f"({runs['m4']['kernel_instructions'] / helium:.2f}x)")


@pytest.mark.skipif(not cortexm.available(), reason="arm-none-eabi-gcc / qemu-system-arm not installed")
def test_cortex_m55_random_blocks(tmp_path):
    """The Helium kernels on random models (tests/helpers/randblocks.py: odd filter counts, pad values 0/1 with
    masked windows, pools off the edge, float and uint8 inputs): classes and logits bit-identical to the
    NumPy reference under QEMU."""
    from helpers.randblocks import random_lowered
    checked = 0
    seeds = range(0, 60, 6)[:count(10, 3)]
    for seed in seeds:
        model, x = random_lowered(seed)
        if not any(b.kind in ("binary_conv", "binary_dense") for b in model.blocks):
            continue
        name = f"r{seed}"
        export_c(model, tmp_path / name, name)
        ref = graph_reference.run(model, x)
        r = cortexm.build_and_run(tmp_path / name, name, x, cpu="cortex-m55", workdir=tmp_path / f"w{seed}")
        assert np.array_equal(r["classes"], ref["classes"]), seed
        assert np.array_equal(r["logits"].view(np.uint32), ref["logits"].view(np.uint32)), seed
        checked += 1
    assert checked >= len(seeds) - 2


@pytest.mark.skipif(not cortexm.available(), reason="arm-none-eabi-gcc / qemu-system-arm not installed")
@pytest.mark.parametrize("test", ["test_binary_conv", "test_dense"])
def test_kernel_unit_tests_on_cortex_m55(test, tmp_path):
    """The kernels' C unit tests (tests/c: random geometries against naive loops, int16 and int32
    thresholds) built for Cortex-M55 with the runtime as ordinary files (the Helium kernels in place of
    the generic ones, -pedantic warning-free) and run under QEMU, printing through semihosting."""
    rt = ROOT / "runtime_c"
    flags = [*cortexm.CPUS["cortex-m55"][0], "-O2", "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", f"-I{rt}"]
    objs = []
    for src in [*sorted(rt.glob("*.c")), *sorted(rt.glob("*/*.c"))]:
        obj = tmp_path / f"{src.parent.name}_{src.stem}.o"
        subprocess.run([cortexm.CC, *flags, "-c", str(src), "-o", str(obj)], check=True)
        objs.append(str(obj))
    nm = subprocess.run(["arm-none-eabi-nm", str(tmp_path / "mve_ebnn_binary_conv_mve.o")], capture_output=True,
                        text=True, check=True).stdout
    assert " T ebnn_binary_conv\n" in nm  # the Helium entry point is the one linked
    test_obj = tmp_path / "test.o"  # the test and the start-up code as the other tests/c and bench builds: no -pedantic
    subprocess.run([cortexm.CC, *[f for f in flags if f != "-pedantic"], "-Dmain=test_main", "-c",
                    str(ROOT / "tests" / "c" / f"{test}.c"), "-o", str(test_obj)], check=True)
    elf = tmp_path / f"{test}.elf"
    ld = cortexm.linker_script(tmp_path, "mps3-an547")
    subprocess.run([cortexm.CC, *[f for f in flags if f != "-pedantic"], str(test_obj), *objs, str(cortexm.HERE / "unit_main.c"),
                    str(cortexm.HERE / "startup.c"), "-nostartfiles", "--specs=rdimon.specs", "-T", str(ld),
                    "-Wl,--defsym=end=_ebss", "-o", str(elf), "-lm"], check=True)  # -lm: tanhf / expf
    out = subprocess.run(["qemu-system-arm", "-M", "mps3-an547", "-nographic", "-monitor", "none", "-serial", "none",
                          "-semihosting-config", "enable=on,target=native", "-kernel", str(elf)],
                         capture_output=True, text=True, timeout=600).stdout
    assert out.strip().endswith(" 0 failed"), out[-2000:]
    assert int(out.strip().split(": ")[-1].split(" passed")[0]) > 5000, out


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
    # the Uno target for the shipped uno_mnist: <= 100 ms per image at 16 MHz (mean over the
    # 100 images)
    assert r["ms_per_inference_16mhz"] <= 100.0
    # logits: avr-libc's float routines are not all correctly rounded, so compare with a tolerance
    np.testing.assert_allclose(r["logits"], logits, rtol=1e-5, atol=1e-5)


# --- the counters themselves: a stand-in "model" whose predict is hand-written assembly that spins
# input[0] times, so the difference between two runs is known exactly -----------------------------
STANDIN_H = """#ifndef EXACT_H
#define EXACT_H
#include <stdint.h>
#define exact_INPUT_LEN 4u
#define exact_NUM_CLASSES 1
typedef uint8_t exact_input_t;
int exact_predict(const exact_input_t *input, float *scores);
#endif
"""
# Thumb (ARMv6-M subset, so also Cortex-M0+): 4 + 2 * input[0] instructions (input[0] >= 1)
STANDIN_ARM = r"""#include "exact.h"
__asm__(".pushsection .text.exact_predict,\"ax\",%progbits\n.syntax unified\n.thumb\n"
        ".global exact_predict\n.type exact_predict, %function\n.thumb_func\nexact_predict:\n"
        "  ldrb r2, [r0]\n  movs r0, #0\n  str r0, [r1]\n"
        "1: subs r2, #1\n  bne 1b\n  bx lr\n.size exact_predict, .-exact_predict\n.popsection\n");
"""
# AVR: the loop costs 3 * input[0] - 1 cycles (dec 1 + brne 2 taken, 1 not taken)
STANDIN_AVR = r"""#include "exact.h"
__asm__(".pushsection .text.exact_predict,\"ax\",@progbits\n"
        ".global exact_predict\n.type exact_predict, @function\nexact_predict:\n"
        "  movw r30, r24\n  ld r18, Z\n  movw r30, r22\n  st Z, r1\n  std Z+1, r1\n  std Z+2, r1\n  std Z+3, r1\n"
        "1: dec r18\n  brne 1b\n  ldi r24, 0\n  ldi r25, 0\n  ret\n.size exact_predict, .-exact_predict\n.popsection\n");
"""


def _standin(dirpath, source):
    dirpath.mkdir(parents=True)
    (dirpath / "exact.h").write_text(STANDIN_H)
    (dirpath / "exact.c").write_text(source)
    return dirpath


def _spin_images(n, count=5):
    x = np.zeros((count, 4), np.uint8)
    x[:, 0] = n
    return x


@pytest.mark.skipif(not cortexm.available(), reason="arm-none-eabi-gcc / qemu-system-arm not installed")
@pytest.mark.parametrize("cpu", ["cortex-m0plus", "cortex-m3", "cortex-m4", "cortex-m7", "cortex-m55"])
def test_instruction_count_is_exact(cpu, tmp_path):
    """The plugin's per-inference count moves by exactly 2 per loop turn of a hand-written predict,
    is an integer, and repeats run to run; what remains besides predict's own 4 + 2n instructions
    is the call itself (argument set-up, bl, result move)."""
    export = _standin(tmp_path / "export", STANDIN_ARM)
    res = {n: cortexm.build_and_run(export, "exact", _spin_images(n), cpu=cpu, workdir=tmp_path / f"w{n}")
           for n in (10, 110)}
    for n, r in res.items():
        assert list(r["classes"]) == [0] * 5 and np.all(r["logits"] == 0)
    a, b = res[10]["instructions_per_inference"], res[110]["instructions_per_inference"]
    assert b - a == 200
    overhead = a - (4 + 2 * 10)
    assert overhead == int(overhead) and 0 <= overhead <= 8
    again = cortexm.run(res[110]["elf"], cpu)[1]
    assert again["marked"] == cortexm.run(res[110]["elf"], cpu)[1]["marked"]
    print(f"\n{cpu}: call overhead {overhead:.0f} instructions, marker pair {res[10]['marker_cost']:.0f}")


# RV32 (rv32i subset, so also rv32imc): 5 + 2 * input[0] instructions (input[0] >= 1)
STANDIN_RISCV = r"""#include "exact.h"
__asm__(".pushsection .text.exact_predict,\"ax\",@progbits\n"
        ".global exact_predict\n.type exact_predict, @function\nexact_predict:\n"
        "  lbu a2, 0(a0)\n  sw zero, 0(a1)\n  li a0, 0\n"
        "1: addi a2, a2, -1\n  bnez a2, 1b\n  ret\n.size exact_predict, .-exact_predict\n.popsection\n");
"""


@pytest.mark.skipif(not riscv.available(), reason=RISCV_SKIP)
def test_riscv_instruction_count_is_exact(tmp_path):
    """As test_instruction_count_is_exact, on qemu-system-riscv32: the per-inference count moves by
    exactly 2 per loop turn, is an integer, and repeats run to run."""
    export = _standin(tmp_path / "export", STANDIN_RISCV)
    res = {n: riscv.build_and_run(export, "exact", _spin_images(n), workdir=tmp_path / f"w{n}") for n in (10, 110)}
    for r in res.values():
        assert list(r["classes"]) == [0] * 5 and np.all(r["logits"] == 0)
    a, b = res[10]["instructions_per_inference"], res[110]["instructions_per_inference"]
    assert b - a == 200
    overhead = a - (5 + 2 * 10)
    assert overhead == int(overhead) and 0 <= overhead <= 8
    assert riscv.run(res[110]["elf"])[1]["marked"] == riscv.run(res[110]["elf"])[1]["marked"]
    print(f"\nrv32imc: call overhead {overhead:.0f} instructions, marker pair {res[10]['marker_cost']:.0f}")


@pytest.mark.skipif(not avr.available(), reason="avr-gcc / libsimavr-dev not installed")
def test_avr_cycle_count_is_exact(tmp_path):
    export = _standin(tmp_path / "export", STANDIN_AVR)
    res = {n: avr.build_and_run(export, "exact", _spin_images(n), workdir=tmp_path / f"w{n}") for n in (10, 110)}
    for r in res.values():
        assert list(r["classes"]) == [0] * 5 and np.all(r["logits"] == 0)
    assert res[110]["cycles_per_inference"] - res[10]["cycles_per_inference"] == 300
    # each image's own cycles, from the same run: 3 cycles per loop turn apart
    mixed = avr.build_and_run(export, "exact", np.concatenate([_spin_images(n, 1) for n in (10, 110, 60)]),
                              workdir=tmp_path / "mixed")
    each = mixed["cycles_per_image"]
    assert each[0] == res[10]["cycles_per_inference"] and [each[1] - each[0], each[2] - each[0]] == [300, 150]


ARDUINO = ["arduino-builder", "-hardware", "/usr/share/arduino-builder", "-hardware", "/usr/share/arduino/hardware",
           "-tools", "/usr/share/arduino-builder", "-fqbn", "arduino:avr:uno",
           "-prefs=compiler.cpp.extra_flags=-DDECIMAL_DIG=9"]


@pytest.mark.skipif(not (shutil.which("arduino-builder") and shutil.which("simavr")
                         and os.path.isdir("/usr/share/arduino/hardware")),
                    reason="arduino-builder / arduino-core-avr / simavr not installed")
def test_arduino_library_builds_and_runs(tmp_path):
    from keras_ebnn.frontdoor.exporting import export
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


def _zephyr_python():
    """A Python >= 3.12 with Zephyr's build-time packages: $EBNN_ZEPHYR_PYTHON, else python3 on PATH."""
    for cand in (os.environ.get("EBNN_ZEPHYR_PYTHON"), shutil.which("python3"), shutil.which("python")):
        if cand and subprocess.run([cand, "-c", "import sys; assert sys.version_info >= (3, 12); "
                                    "import yaml, elftools, pykwalify, packaging"], capture_output=True).returncode == 0:
            return cand
    return None


def _zephyr_build(board, module, build, env):
    python = _zephyr_python()
    if python is None:
        pytest.skip("no Python >= 3.12 with Zephyr's packages (set EBNN_ZEPHYR_PYTHON)")
    modules = [str(module)] + [m for m in os.environ.get("EBNN_ZEPHYR_EXTRA_MODULES", "").split(";") if m]
    cmd = ["cmake", "-GNinja", "-S", str(ROOT / "examples" / "zephyr_mnist"), "-B", str(build), f"-DBOARD={board}",
           f"-DZEPHYR_EXTRA_MODULES={';'.join(modules)}", f"-DPython3_EXECUTABLE={python}"]
    for c in (cmd, ["ninja", "-C", str(build)]):
        proc = subprocess.run(c, capture_output=True, text=True, env=env, timeout=1200)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.mark.skipif(not ZEPHYR_BASE, reason="ZEPHYR_BASE is not set (Zephyr is not installable from registries)")
@pytest.mark.parametrize("board", ["native_sim", "qemu_cortex_m3"])
def test_zephyr_sample(board, tmp_path):
    """Builds examples/zephyr_mnist against the exported module; runs it on native_sim, and the
    qemu_cortex_m3 image under qemu-system-arm (lm3s6965evb) when QEMU is installed.
    qemu_cortex_m3 needs the cmsis_6 module: pass its path in EBNN_ZEPHYR_EXTRA_MODULES."""
    from keras_ebnn.frontdoor.exporting import export
    data = np.load(ROOT / "examples" / "data" / "mnist_test_sample.npz")
    module = tmp_path / "module"
    export(load_model(MODEL), module, name="mnist", target="zephyr", verify_inputs=data["x"][:64],
           verify_labels=data["y"][:64])
    env = dict(os.environ)
    if board == "native_sim":
        env["ZEPHYR_TOOLCHAIN_VARIANT"] = "host"
    else:
        extra = [m for m in os.environ.get("EBNN_ZEPHYR_EXTRA_MODULES", "").split(";") if m]
        if not any((Path(m) / "zephyr" / "module.yml").is_file() and "cmsis_6" in m for m in extra) and \
                not (Path(ZEPHYR_BASE).parent / "modules" / "hal" / "cmsis_6" / "zephyr" / "module.yml").is_file():
            pytest.skip("qemu_cortex_m3 needs the cmsis_6 module: pass its path in EBNN_ZEPHYR_EXTRA_MODULES")
        if not shutil.which("arm-none-eabi-gcc"):
            pytest.skip("arm-none-eabi-gcc not installed")
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
        elf = tmp_path / "build" / "zephyr" / "zephyr.elf"
        assert elf.is_file()
        if not shutil.which("qemu-system-arm"):
            return
        # run it as Zephyr's own qemu_cortex_m3 board does (boards/qemu/cortex_m3/board.cmake)
        text = _run_until(["qemu-system-arm", "-cpu", "cortex-m3", "-machine", "lm3s6965evb", "-nographic",
                           "-vga", "none", "-monitor", "none", "-serial", "stdio", "-kernel", str(elf)],
                          "accuracy: ", timeout=120)
        print(text[-400:])
        correct, total = (int(v) for v in text.split("accuracy: ")[1].split()[0].split("/"))
        assert total == 32 and correct >= 30


@pytest.mark.skipif(not ZEPHYR_BASE, reason="ZEPHYR_BASE is not set (Zephyr is not installable from registries)")
def test_zephyr_sample_under_twister(tmp_path):
    """Zephyr's own test runner runs examples/zephyr_mnist (its sample.yaml: console harness, the
    'accuracy: N/M' line) on native_sim against the exported module. Twister's warnings-as-errors is
    turned off because it applies to the whole Zephyr tree (some tree copies carry their own warnings);
    the export's C is compiled warning-free with -Werror by the C tests."""
    import json
    from keras_ebnn.frontdoor.exporting import export
    python = _zephyr_python()
    if python is None:
        pytest.skip("no Python >= 3.12 with Zephyr's packages (set EBNN_ZEPHYR_PYTHON)")
    if subprocess.run([python, "-c", "import natsort, psutil"], capture_output=True).returncode != 0:
        pytest.skip("twister needs Zephyr's scripts/requirements-run-test.txt in EBNN_ZEPHYR_PYTHON")
    data = np.load(ROOT / "examples" / "data" / "mnist_test_sample.npz")
    module = tmp_path / "module"
    export(load_model(MODEL), module, name="mnist", target="zephyr", verify_inputs=data["x"][:64],
           verify_labels=data["y"][:64])
    env = dict(os.environ, ZEPHYR_TOOLCHAIN_VARIANT="host")
    out = tmp_path / "twister-out"
    proc = subprocess.run([python, str(Path(ZEPHYR_BASE) / "scripts" / "twister"), "-T",
                           str(ROOT / "examples" / "zephyr_mnist"), "-p", "native_sim", "--outdir", str(out),
                           f"-x=ZEPHYR_EXTRA_MODULES={module}", "--disable-warnings-as-errors"],
                          capture_output=True, text=True, env=env, timeout=1200)
    suites = json.loads((out / "twister.json").read_text())["testsuites"]
    print([(t["name"], t["status"]) for t in suites])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert [(t["name"], t["status"]) for t in suites] == [("sample.keras_ebnn.mnist", "passed")]
    log = "".join(p.read_text(errors="replace") for p in out.rglob("handler.log"))
    correct, total = (int(v) for v in log.split("accuracy: ")[1].split()[0].split("/"))
    assert total == 32 and correct >= 30, log[-1000:]


def _run_until(cmd, marker, timeout):
    """Run cmd (an emulator that never exits by itself) until a line containing `marker` has been
    printed, then stop it; returns everything it printed."""
    import selectors
    import time
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    out, deadline = b"", time.monotonic() + timeout
    try:
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if sel.select(timeout=1.0):
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                out += chunk
                tail = out.decode(errors="replace").split(marker, 1)
                if len(tail) == 2 and "\n" in tail[1]:
                    break
    finally:
        proc.kill()
        proc.wait()
    text = out.decode(errors="replace")
    assert marker in text, f"{cmd[0]}: no {marker!r} within {timeout} s:\n{text[-2000:]}"
    return text


@pytest.mark.skipif(not cortexm.available(), reason="arm-none-eabi-gcc / qemu-system-arm not installed")
@pytest.mark.parametrize("build,flags", [("default", []), ("small", ["-DEBNN_CHUNK=8", "-DEBNN_LOW_STACK=1"])])
def test_stack_estimate_bounds_the_measured_stack(shipped, tmp_path, build, flags):
    """The export report's stack figure for a build (exporters/c.py STACK_BYTES: the default build, or
    the small-stack options) bounds the stack NAME_predict really uses on Cortex-M3 built so, measured
    under QEMU by painting RAM (tests/test_stack_bounds.py checks the static bound for every model)."""
    lowered, out, x, classes, _ = shipped
    r = cortexm.build_and_run(out, "mnist", x[:10], lowered.num_classes, cpu="cortex-m3", opt="-O2",
                              workdir=tmp_path, flags=flags)
    assert np.array_equal(r["classes"], classes[:10])
    estimate = memory_plan(lowered, target="cortex-m3", build=build)["totals"]["stack_bytes_estimate"]
    assert 0 < r["stack_bytes"] <= estimate <= 1.5 * r["stack_bytes"], (r["stack_bytes"], estimate)
