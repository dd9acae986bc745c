"""TensorFlow Lite Micro (with CMSIS-NN kernels) bare metal under QEMU, in the same harness as the
keras-ebnn exports (bench/targets/cortexm.py): same start-up code, linker script, machines, marker
functions, instruction-counting plugin and stack painting.

The TFLM source is not part of this repository: point the environment variable TFLM_DIR at a
flattened TFLM tree with a `src/` folder holding `tensorflow/`, `third_party/flatbuffers`,
`third_party/gemmlowp`, `third_party/ruy`, `third_party/cmsis` and `third_party/cmsis_nn`, e.g. an
export of github.com/tensorflow/tflite-micro-arduino-examples. `available()` is False without it.

Build: every TFLM/CMSIS-NN source is compiled once per CPU (arm-none-eabi-g++ -std=c++17
-fno-exceptions -fno-rtti, -DCMSIS_NN -DTF_LITE_STATIC_MEMORY -DTF_LITE_STRIP_ERROR_STRINGS; CMSIS-NN
(-DARDUINO: the flattened tree guards its static-memory build with it); CMSIS-NN
  picks its DSP-extension code from the compiler's __ARM_FEATURE_DSP, so the Cortex-M4 build uses the
SIMD MAC path and the Cortex-M0+ build the portable C path) into a cached object folder; the model's
flatbuffer becomes a const C array, the resolver registers exactly the model's operators
(MicroMutableOpResolver), and the arena is a static array. Everything is linked with --gc-sections.
"""
import hashlib
import os
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from bench.targets import cortexm

HERE = Path(__file__).resolve().parent / "tflm"
CXX = "arm-none-eabi-g++"
DEFINES = ["-DARDUINO", "-DCMSIS_NN", "-DTF_LITE_STATIC_MEMORY", "-DTF_LITE_STRIP_ERROR_STRINGS", "-DNDEBUG"]
# sources of the tree that a bare-metal interpreter does not need (tests, recording, Arduino set-up,
# the audio front end, the all-ops resolver) or that we replace (DebugLog is in glue.cpp)
SKIP = ("system_setup.cpp", "debug_log.cpp", "test_helpers.cpp", "test_helper_custom_ops.cpp",
        "fake_micro_context.cpp", "mock_micro_graph.cpp", "recording_micro_allocator.cpp",
        "recording_single_arena_buffer_allocator.cpp", "kernel_runner.cpp", "all_ops_resolver.cpp")
# TFLite builtin operator name -> MicroMutableOpResolver method
OPS = {"CONV_2D": "AddConv2D", "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D", "FULLY_CONNECTED": "AddFullyConnected",
       "MAX_POOL_2D": "AddMaxPool2D", "AVERAGE_POOL_2D": "AddAveragePool2D", "RESHAPE": "AddReshape",
       "SOFTMAX": "AddSoftmax", "MUL": "AddMul", "ADD": "AddAdd", "QUANTIZE": "AddQuantize",
       "DEQUANTIZE": "AddDequantize", "RELU": "AddRelu", "MEAN": "AddMean", "PAD": "AddPad",
       "CONCATENATION": "AddConcatenation", "LOGISTIC": "AddLogistic"}


# TFLite builtin operator -> the TFLM kernel sources (tensorflow/lite/micro/kernels/, stems) and CMSIS-NN
# source folders it needs; library(ops=...) compiles only those (plus the interpreter) instead of every kernel
KERNELS = {"CONV_2D": ("conv_common", "cmsis_nn/conv"), "DEPTHWISE_CONV_2D": ("depthwise_conv_common", "cmsis_nn/depthwise_conv"),
           "FULLY_CONNECTED": ("fully_connected_common", "cmsis_nn/fully_connected"),
           "MAX_POOL_2D": ("pooling_common", "cmsis_nn/pooling"), "AVERAGE_POOL_2D": ("pooling_common", "cmsis_nn/pooling"),
           "RESHAPE": ("reshape",), "SOFTMAX": ("softmax_common", "cmsis_nn/softmax"), "MUL": ("mul_common", "cmsis_nn/mul"),
           "ADD": ("add_common", "cmsis_nn/add"), "QUANTIZE": ("quantize", "quantize_common"),
           "DEQUANTIZE": ("dequantize", "dequantize_common"), "RELU": ("activations", "activations_common"),
           "MEAN": ("reduce", "reduce_common"), "PAD": ("pad",), "CONCATENATION": ("concatenation",),
           "LOGISTIC": ("logistic", "logistic_common")}
KERNELS_ALWAYS = ("kernel_util", "micro_tensor_utils")
CMSIS_NN_DIRS = {"CONV_2D": "ConvolutionFunctions", "DEPTHWISE_CONV_2D": "ConvolutionFunctions",
                 "FULLY_CONNECTED": "FullyConnectedFunctions", "MAX_POOL_2D": "PoolingFunctions",
                 "AVERAGE_POOL_2D": "PoolingFunctions", "SOFTMAX": "SoftmaxFunctions", "ADD": "BasicMathFunctions",
                 "MUL": "BasicMathFunctions", "RESHAPE": "ReshapeFunctions", "CONCATENATION": "ConcatenationFunctions"}
CMSIS_NN_ALWAYS = ("NNSupportFunctions", "ActivationFunctions")


def tflm_dir():
    d = os.environ.get("TFLM_DIR")
    return Path(d) if d and (Path(d) / "src" / "tensorflow" / "lite" / "micro").is_dir() else None


def available():
    """True when TFLM_DIR points at a TFLM tree and the Arm C++ toolchain and QEMU are installed."""
    if tflm_dir() is None or not cortexm.available():
        return False
    proc = subprocess.run([CXX, "-mcpu=cortex-m4", "-mthumb", "-x", "c++", "-fsyntax-only", "-"],
                          input="#include <new>\n", capture_output=True, text=True)
    return proc.returncode == 0  # libstdc++ headers (Debian: libstdc++-arm-none-eabi-newlib)


def _includes(src):
    return [f"-I{src}", f"-I{src / 'third_party/flatbuffers/include'}", f"-I{src / 'third_party/gemmlowp'}",
            f"-I{src / 'third_party/ruy'}"]


def cxx_flags(cpu, opt):
    return [*cortexm.CPUS[cpu][0], opt, "-std=c++17", "-fno-exceptions", "-fno-rtti", "-fno-threadsafe-statics",
            "-fno-unwind-tables", "-fno-asynchronous-unwind-tables", "-ffunction-sections", "-fdata-sections",
            "-fno-use-cxa-atexit", *DEFINES]


def c_flags(cpu, opt):
    return [*cortexm.CPUS[cpu][0], opt, "-std=c99", "-ffunction-sections", "-fdata-sections", *DEFINES]


def sources(src, ops=None):
    """The TFLM and CMSIS-NN sources to compile: all of them, or with `ops` (TFLite builtin operator
    names) the interpreter and only the kernels of those operators (KERNELS, CMSIS_NN_DIRS)."""
    kernels = src / "tensorflow" / "lite" / "micro" / "kernels"
    files = sorted(p for p in (src / "tensorflow").rglob("*.cpp")
                   if p.name not in SKIP and "microfrontend" not in p.parts)
    cmsis = sorted((src / "third_party" / "cmsis_nn" / "Source").rglob("*.c"))
    if ops is None:
        return files + cmsis
    unknown = sorted(set(ops) - set(KERNELS))
    if unknown:
        raise ValueError(f"operators {unknown} have no kernel sources in bench/targets/tflm.py KERNELS")
    stems = set(KERNELS_ALWAYS).union(*(KERNELS[o] for o in ops))
    dirs = set(CMSIS_NN_ALWAYS) | {CMSIS_NN_DIRS[o] for o in ops if o in CMSIS_NN_DIRS}
    files = [p for p in files if kernels not in p.parents or str(p.relative_to(kernels).with_suffix("")) in stems]
    return files + [p for p in cmsis if p.parent.name in dirs]


def library(cpu="cortex-m4", opt="-O2", cache=None, jobs=2, ops=None):
    """Compile the TFLM tree (interpreter, kernels, CMSIS-NN) once for `cpu`; returns the object files.
    With `ops` (TFLite builtin operator names) only the kernels of those operators are compiled and
    returned (sources()). Objects are cached in `cache` (default: a folder in the temp dir named after
    the tree and flags)."""
    src = tflm_dir() / "src"
    files = sources(src, ops)
    key = hashlib.sha1(" ".join([str(src), cpu, opt, *cxx_flags(cpu, opt), *map(str, sources(src))]).encode()).hexdigest()[:12]
    cache = Path(cache or Path(tempfile.gettempdir()) / f"ebnn-tflm-{cpu}-{key}")
    cache.mkdir(parents=True, exist_ok=True)
    objs, procs = [], []
    for f in files:
        obj = cache / (str(f.relative_to(src)).replace("/", "__") + ".o")
        objs.append(obj)
        if obj.exists():
            continue
        cmd = ([CXX, *cxx_flags(cpu, opt)] if f.suffix == ".cpp" else ["arm-none-eabi-gcc", *c_flags(cpu, opt)]) \
            + [*_includes(src), "-c", str(f), "-o", str(obj) + ".tmp"]
        procs.append((subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True), obj, cmd))
        while len(procs) >= jobs:
            _reap(procs.pop(0))
    for p in procs:
        _reap(p)
    return objs


def _reap(item):
    proc, obj, cmd = item
    err = proc.communicate()[1]
    if proc.returncode != 0:
        raise RuntimeError(f"TFLM build failed:\n{' '.join(cmd)}\n{err}")
    os.replace(str(obj) + ".tmp", obj)


def op_names(flatbuffer):
    """Builtin operator names used by a .tflite flatbuffer (via TFLite's Python interpreter)."""
    import tensorflow as tf
    interp = tf.lite.Interpreter(model_content=bytes(flatbuffer))
    return sorted({d["op_name"] for d in interp._get_ops_details()})


def model_header(path, name, flatbuffer, arena_bytes):
    ops = op_names(flatbuffer)
    missing = [o for o in ops if o not in OPS]
    if missing:
        raise ValueError(f"{name}: operators {missing} are not mapped to a MicroMutableOpResolver method "
                         f"(bench/targets/tflm.py OPS knows {sorted(OPS)})")
    data = bytes(flatbuffer)
    rows = ",\n".join("    " + ", ".join(f"0x{b:02x}" for b in data[i:i + 16]) for i in range(0, len(data), 16))
    path.write_text(
        f"/* {name}: TFLite flatbuffer ({len(data)} bytes) and its operators; generated by bench/targets/tflm.py */\n"
        f"#define MODEL_DATA {name}_tflite\n#define ARENA_BYTES {int(arena_bytes)}u\n#define NUM_OPS {len(ops)}\n"
        "#define ADD_OPS(r) do { " + " ".join(f"(r).{OPS[o]}();" for o in ops) + " } while (0)\n"
        f"extern \"C\" {{ extern const unsigned char {name}_tflite[{len(data)}]; }} /* C name for the size tables */\n"
        f"alignas(16) const unsigned char {name}_tflite[{len(data)}] = {{\n{rows}\n}};\n")


def build(name, flatbuffer, images, num_outputs, arena_bytes, cpu="cortex-m4", opt="-O2", workdir=None,
          empty=False, machine=None, objects=None):
    """Link an ELF running the int8 model `flatbuffer` over `images` (int8, one row per image).
    `empty=True` builds the calibration ELF (markers only, no TFLM call)."""
    work = Path(workdir or tempfile.mkdtemp(prefix=f"ebnn-tflm-{cpu}-"))
    work.mkdir(parents=True, exist_ok=True)
    src = tflm_dir() / "src"
    images = np.asarray(images).reshape(len(images), -1)
    if images.dtype != np.int8:
        raise ValueError(f"{name}: images must be int8 (the model's quantized input), got {images.dtype}")
    ld = cortexm.linker_script(work, machine or cortexm.CPUS[cpu][1])
    cortexm.images_header(work / "images.h", images, "int8_t")
    model_header(work / "model_data.h", name, flatbuffer, arena_bytes)
    elf = work / f"{name}_tflm_{cpu}{'_empty' if empty else ''}.elf"
    glue = work / "glue.o"
    tflm_includes = [f.replace("-I", "-isystem", 1) for f in _includes(src)]  # warnings: ours, not TFLM's
    proc = subprocess.run([CXX, *cxx_flags(cpu, opt), "-Wall", "-Wextra", "-Werror", *tflm_includes, f"-I{work}",
                           "-c", str(HERE / "glue.cpp"), "-o", str(glue)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"TFLM glue build failed:\n{proc.stderr}")
    objects = objects if objects is not None else library(cpu, opt)
    cmd = ["arm-none-eabi-gcc", *cortexm.CPUS[cpu][0], "-std=c99", "-Wall", "-Wextra", "-Werror", opt,
           "-ffunction-sections", "-fdata-sections", f"-I{work}", f"-DINPUT_LEN={images.shape[1]}u",
           f"-DNUM_OUTPUTS={num_outputs}", *(["-DPREDICT_EMPTY"] if empty else []),
           str(HERE / "driver.c"), str(cortexm.HERE / "startup.c"), str(glue), *map(str, objects),
           "-nostartfiles", "--specs=nano.specs", "-T", str(ld), "-Wl,--gc-sections", f"-Wl,-Map={elf}.map", "-o", str(elf),
           "-lstdc++", "-lm", "-lc", "-lgcc"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"TFLM link failed:\n{proc.stderr[-4000:]}")
    return elf


def run_each(elf, cpu="cortex-m4", machine=None, timeout=3600):
    """Run an ELF built with the bench drivers under QEMU with the plugin's per-inference counts.
    Returns (lines starting with "R ", {"A": arena used or None, "S": stack bytes}, [instructions of each
    marker pair, markers included])."""
    machine = machine or cortexm.CPUS[cpu][1]
    cmd = ["qemu-system-arm", "-M", machine, "-nographic", "-monitor", "none", "-serial", "none",
           "-semihosting-config", "enable=on,target=native", "-kernel", str(elf)]
    text = cortexm.run_counted(cmd, elf, timeout, plugin_options=",each=1")
    if "heap allocation attempted" in text or "\nabort" in text:
        raise RuntimeError(f"QEMU run of {elf} failed:\n{text[-3000:]}")
    pairs = [int(v) for v in re.findall(r"^insn_pair (\d+)", text, re.M)]
    tags = {t: int(v) for t, v in re.findall(r"^([AS]) (\d+)", text, re.M)}
    return [ln for ln in text.splitlines() if ln.startswith("R ")], tags, pairs


def parse_int8(lines, num_outputs):
    """(index, class, int8 outputs) arrays from the driver's "R" lines."""
    idx, cls, out = [], [], []
    for ln in lines:
        parts = ln.split()
        idx.append(int(parts[1]))
        cls.append(int(parts[2]))
        out.append([int(h, 16) for h in parts[3:3 + num_outputs]])
    return np.array(idx), np.array(cls), np.array(out, dtype=np.uint8).view(np.int8)
