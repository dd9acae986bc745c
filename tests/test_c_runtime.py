"""C runtime: kernel unit tests (tests/c), strict compile checks on every toolchain, memory plan."""
import shutil
import subprocess

import pytest

from helpers.common import ROOT
from keras_ebnn.frontdoor import host
from keras_ebnn import lower
from keras_ebnn.exporters.c import export_c, memory_plan
from helpers.modelgen import random_model

RUNTIME = ROOT / "runtime_c"
# the runtime's C files (one per op, target variants in avr/ and mve/), built as ordinary translation units (-lm:
# ebnn_activation_f32 calls tanhf / expf)
KERNELS = [str(p) for p in sorted(RUNTIME.rglob("*.c"))]
STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g"]
VARIANTS = {"builtin": 1, "swar": 2, "table": 3}


def _run(cmd, **kw):
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("test", ["test_binary_conv", "test_input_conv", "test_dense", "test_popcount"])
def test_kernel_unit_tests(test, variant, tmp_path):
    if test != "test_popcount" and variant == "builtin":
        pytest.skip("kernels are checked with the portable popcounts; builtin is covered by test_popcount")
    cc = host.find_cc()
    exe = tmp_path / test
    _run([cc, *STRICT, "-O1", *SANITIZE, f"-DEBNN_POPCOUNT={VARIANTS[variant]}", f"-I{RUNTIME}",
          str(ROOT / "tests" / "c" / f"{test}.c"), *KERNELS, "-o", str(exe), "-lm"])
    out = _run([str(exe)])
    assert out.strip().endswith(" 0 failed"), out
    passed = int(out.strip().split(": ")[-1].split(" passed")[0])
    assert passed > 5000, out


@pytest.mark.parametrize("int_logits", [0, 1])
def test_logits_bit_exact(int_logits, tmp_path):
    """The output block's logits against the host's float32 arithmetic, bit for bit, over the whole
    binary32 range, with the float operations (0) and with the integer binary32 code that FPU-less
    Arm/RISC-V builds use by default (EBNN_INT_LOGITS=1)."""
    exe = tmp_path / "test_logits"
    _run([host.find_cc(), *STRICT, "-O1", *SANITIZE, f"-DEBNN_INT_LOGITS={int_logits}", f"-I{RUNTIME}",
          str(ROOT / "tests" / "c" / "test_logits.c"), *KERNELS, "-o", str(exe), "-lm"])
    out = _run([str(exe)])
    assert out.strip().endswith(" 0 failed"), out
    assert int(out.strip().split(": ")[-1].split(" passed")[0]) > 100000, out


@pytest.mark.parametrize("chunk", [8, 16, 32])
def test_input_conv_low_stack_path(chunk, tmp_path):
    """The AVR default (EBNN_LOW_STACK: tap by tap, no tables) checked on the host, with every chunk size."""
    exe = tmp_path / "low_stack"
    _run([host.find_cc(), *STRICT, "-O1", *SANITIZE, "-DEBNN_LOW_STACK=1", f"-DEBNN_CHUNK={chunk}", f"-I{RUNTIME}",
          str(ROOT / "tests" / "c" / "test_input_conv.c"), *KERNELS, "-o", str(exe), "-lm"])
    out = _run([str(exe)])
    assert out.strip().endswith(" 0 failed"), out


@pytest.mark.parametrize("popcount", ["swar", "table"])
@pytest.mark.parametrize("test", ["test_binary_conv", "test_input_conv", "test_dense"])
def test_byte_kernels_on_host(test, popcount, tmp_path):
    """The AVR default (EBNN_BYTE_KERNELS: byte bit streams, 8-bit counts, subset-sum tables in 16 bits,
    two windows per weight byte) built and checked on the host against the naive loops."""
    exe = tmp_path / test
    _run([host.find_cc(), *STRICT, "-O1", *SANITIZE, "-DEBNN_BYTE_KERNELS=1", f"-DEBNN_POPCOUNT={VARIANTS[popcount]}",
          f"-I{RUNTIME}", str(ROOT / "tests" / "c" / f"{test}.c"), *KERNELS, "-o", str(exe), "-lm"])
    out = _run([str(exe)])
    assert out.strip().endswith(" 0 failed"), out
    assert int(out.strip().split(": ")[-1].split(" passed")[0]) > 5000, out


ZERO_WINDOW_BUILDS = {
    "generic": [],
    "generic-chunk16": ["-DEBNN_CHUNK=16"],
    "low-stack-chunk8": ["-DEBNN_LOW_STACK=1", "-DEBNN_CHUNK=8"],
    "byte-kernels": ["-DEBNN_BYTE_KERNELS=1", f"-DEBNN_POPCOUNT={VARIANTS['table']}"],
}


@pytest.mark.parametrize("build", sorted(ZERO_WINDOW_BUILDS))
def test_input_conv_zero_window_shortcut(build, tmp_path):
    """The uint8 input conv's all-zero window shortcut on mostly-zero inputs, on every input conv path:
    results against the naive loops, and the kernel's test-only count of skipped windows
    (-DEBNN_TEST_COUNTERS) equal to the all-zero windows it visits (0 where q_add != 0, padded taps
    are not 0, or in sign mode): fails if the shortcut is removed or taken wrongly."""
    exe = tmp_path / "test_input_conv_zero"
    _run([host.find_cc(), *STRICT, "-O1", *SANITIZE, "-DEBNN_TEST_COUNTERS", *ZERO_WINDOW_BUILDS[build],
          f"-I{RUNTIME}", str(ROOT / "tests" / "c" / "test_input_conv_zero.c"), *KERNELS, "-lm",
          "-o", str(exe)])
    out = _run([str(exe)])
    assert out.strip().endswith(" 0 failed"), out
    assert int(out.strip().split(": ")[-1].split(" passed")[0]) > 5000, out


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One generated model per input mode, exported as C."""
    out = {}
    for seed in (3, 5, 11, 15):  # uint8, float, sign, ... inputs (see modelgen)
        model, x, _ = random_model(seed, n_inputs=8)
        lowered = lower(model)
        d = tmp_path_factory.mktemp(f"m{seed}")
        export_c(lowered, d, f"m{seed}")
        out[seed] = (lowered, d)
    return out


def _compilers():
    found = [c for c in ("gcc", "clang") if shutil.which(c)]
    assert "gcc" in found
    return found


@pytest.mark.parametrize("cc", ["gcc", "clang"])
def test_strict_host_build(cc, exported, tmp_path):
    if not shutil.which(cc):
        pytest.skip(f"{cc} not installed")
    for seed, (lowered, d) in exported.items():
        _run([cc, *STRICT, "-O2", f"-I{d}", "-c", *host.c_sources(d)], cwd=tmp_path)


def test_header_compiles_as_cpp(exported, tmp_path):
    if not shutil.which("g++"):
        pytest.skip("g++ not installed")
    lowered, d = exported[3]
    main = tmp_path / "main.cpp"
    main.write_text('#include "m3.h"\n#include "ebnn.h"\nint main() { static m3_input_t x[m3_INPUT_LEN]; '
                    'float s[m3_NUM_CLASSES]; return m3_predict(x, s) < 0; }\n')
    objs = []
    for src in host.c_sources(d):
        obj = tmp_path / (src.rsplit("/", 1)[-1] + ".o")
        _run(["gcc", *STRICT, "-O2", f"-I{d}", "-c", src, "-o", str(obj)])
        objs.append(str(obj))
    _run(["g++", "-std=c++11", "-Wall", "-Wextra", "-Werror", "-pedantic", f"-I{d}", str(main), *objs,
          "-o", str(tmp_path / "cpp")])
    _run([str(tmp_path / "cpp")])


CROSS = {
    "cortex-m0plus": ["arm-none-eabi-gcc", "-mcpu=cortex-m0plus", "-mthumb"],
    "cortex-m3": ["arm-none-eabi-gcc", "-mcpu=cortex-m3", "-mthumb"],
    "cortex-m4f": ["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"],
    "cortex-m55": ["arm-none-eabi-gcc", "-mcpu=cortex-m55", "-mthumb", "-mfloat-abi=hard"],  # Helium kernels (mve/)
    "atmega328p": ["avr-gcc", "-mmcu=atmega328p"],
}


@pytest.mark.parametrize("target", sorted(CROSS))
def test_cross_compiles_warning_free(target, exported, tmp_path):
    cmd = CROSS[target]
    if not shutil.which(cmd[0]):
        pytest.skip(f"{cmd[0]} not installed")
    for seed, (lowered, d) in exported.items():
        for opt in ("-O2", "-Os"):
            _run([*cmd, *STRICT, opt, f"-I{d}", "-c", *host.c_sources(d)], cwd=tmp_path)


def test_memory_plan_is_minimal_and_safe():
    """Buffers: block i's output never overlaps its input; the arena is exactly the largest adjacent
    (input bits + output bits) pair of hidden buffers (at least the first buffer)."""
    for seed in range(12):
        model, _, _ = random_model(seed, n_inputs=2)
        plan = memory_plan(lower(model))
        hidden = [b for b in plan["blocks"] if b["kind"] != "output_dense"]
        sizes = [b["ram_bytes"] for b in hidden]
        pairs = [sizes[0]] + [a + b for a, b in zip(sizes, sizes[1:])]
        assert plan["activation_bytes"] == max(pairs)
        assert plan["arena_bytes"] == plan["activation_bytes"] + plan["totals"]["kernel_scratch_bytes"]
        for prev, cur in zip(hidden, hidden[1:]):
            a0, a1 = prev["buffer_offset"], prev["buffer_offset"] + prev["ram_bytes"]
            b0, b1 = cur["buffer_offset"], cur["buffer_offset"] + cur["ram_bytes"]
            assert a1 <= b0 or b1 <= a0
        for b in hidden:
            assert 0 <= b["buffer_offset"] and b["buffer_offset"] + b["ram_bytes"] <= plan["arena_bytes"]
            assert b["ram_bytes"] == (b["out_bits"] + 31) // 32 * 4  # exact: no guard word


def _symbol_sizes(nm, obj):
    out = _run([nm, "-S", "--size-sort", str(obj)])
    sizes = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4:
            sizes[parts[3]] = int(parts[1], 16)
    return sizes


@pytest.mark.parametrize("target", ["host", "cortex-m3"])
def test_plan_matches_object_sizes(target, exported, tmp_path):
    """The planner's flash (weights, thresholds, parameters) and RAM (arena) equal the symbol sizes
    the compiler emits for those objects."""
    if target == "host":
        cc, nm = [host.find_cc()], "nm"
    else:
        cc, nm = CROSS[target], "arm-none-eabi-nm"
    if not shutil.which(cc[0]) or not shutil.which(nm):
        pytest.skip("toolchain not installed")
    for seed, (lowered, d) in exported.items():
        name = f"m{seed}"
        obj = tmp_path / f"{name}.o"
        _run([*cc, *STRICT, "-O2", f"-I{d}", "-c", str(d / f"{name}.c"), "-o", str(obj)])
        sizes = _symbol_sizes(nm, obj)
        plan = memory_plan(lowered)
        data = sum(v for k, v in sizes.items() if k.startswith(f"{name}_b"))
        assert data == plan["totals"]["flash_data_bytes"], (sizes, plan["totals"])
        assert sizes[f"{name}_arena"] == max(plan["arena_bytes"], 4)
