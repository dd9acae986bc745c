"""C back end: a model (a chain of fused blocks, LoweredModel, or a graph) -> NAME.h / NAME.c + the
runtime files the model uses.

`export_c(model, out_dir, name)` writes the files (atomically: into a temporary folder, then renamed
into place) and returns the memory plan. `memory_plan(model)` computes that plan without writing.
Both run the one pipeline of exporters/graph_c.py (a chain as the graph of one op per block); this
module holds the front (runtime files, export names) and re-exports what the back ends share from
exporters/c_common.py: the blocks' constant data and geometry structs, the measured tables
(exporters/measured.py), the prologue of NAME.c.

The runtime (runtime_c/: one file per op, target variants in avr/ and mve/) is compiled *into* NAME.c: NAME.c
defines EBNN_PRIVATE and #includes the kernel files its blocks use, which the export ships as `.inc`
copies (no build compiles them on their own: `find OUT -name '*.c'`, Arduino's recursive src/ build and
the Zephyr module compile NAME.c only). The kernels are then static to NAME.c, so several exported
models link into one program, each with exactly the kernels it calls (see `runtime_files`).

The generated NAME.c of a chain holds, per block, the bit-packed weights (`NAME_b<i>_w`), thresholds
(`NAME_b<i>_t`), min-pool flags (`NAME_b<i>_flip`), conv geometry (`NAME_b<i>_params`) or the output
affine (`NAME_b<i>_scale`, `NAME_b<i>_offset`), all `const ... EBNN_CONST` (flash; PROGMEM on AVR),
one statically sized activation arena `NAME_arena`, and NAME_predict_scratch(): a plain sequence of
kernel calls. What the generator precomputes so the kernels don't have to:
  * weight layouts: filter-major, each filter (or dense row) from a word boundary, zero padded
    (see ebnn.h);
  * min-pooled channels: weights inverted and threshold t stored as 1 - t, plus a flip bit, so every
    kernel max-pools and compares with `>=` (exact: the accumulator is linear in the weights);
  * thresholds clamped into [lo, hi + 1] of the block's reachable accumulator range (same bits);
  * buffer offsets in the arena (a chain: ping-pong with a scratch gap, see `memory_plan`).
"""
import os
import re
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

from keras_ebnn.planning.graph_memory import words  # (uint32 words of n bits, EBNN_WORDS)

from . import graph_c
# What the back ends share lives in exporters/c_common.py (graph_c uses it without importing this front);
# re-exported here, the names other modules and the tests import from keras_ebnn.exporters.c.
from .c_common import (
    AVR_FLASH_REACH, AVR_MAX_OBJECT, BYTE_KERNEL_HEADERS, CODE_BYTES, CTYPE_BYTES, INCLUDED_SUFFIX, KERNEL_FILES,
    MVE_KERNEL_FILES, MVE_KERNEL_HEADERS, PARAMS_STRUCT_BYTES, QUANT_HEADERS, RUNTIME_CONST_BYTES_AVR,
    RUNTIME_HEADERS, STACK_BUILDS, STACK_BYTES, STACK_TARGET_GROUPS, STACK_TARGETS, _acc16, _c_array, _c_number,
    _conv_params, _has_pool, _included_name, _source_includes, _source_prologue, _words_of_bits,
    accumulator_range, block_data, class_rule_text, class_threshold, conv_param_fields, fan_in, header_guard,
    kernel_limits, kernel_sources, output_dense_return, plan_totals, stack_targets)

__all__ = [  # this front's names and, re-exported, those of exporters/c_common.py (imported from here)
    "runtime_files", "stack_kernel_keys", "stack_bound", "PUBLIC_HEADER", "C_KEYWORDS", "GENERATED_SUFFIXES",
    "SHADOWED_HEADERS", "generated_files", "name_problem", "check_name", "runtime_dir", "memory_plan",
    "avr_reach_problems", "generate", "export_c", "words", "AVR_FLASH_REACH", "AVR_MAX_OBJECT",
    "BYTE_KERNEL_HEADERS", "CODE_BYTES", "CTYPE_BYTES", "INCLUDED_SUFFIX", "KERNEL_FILES", "MVE_KERNEL_FILES",
    "MVE_KERNEL_HEADERS", "PARAMS_STRUCT_BYTES", "QUANT_HEADERS", "RUNTIME_CONST_BYTES_AVR", "RUNTIME_HEADERS",
    "STACK_BUILDS", "STACK_BYTES", "STACK_TARGET_GROUPS", "STACK_TARGETS", "_acc16", "_c_array", "_c_number",
    "_conv_params", "_has_pool", "_included_name", "_source_includes", "_source_prologue", "_words_of_bits",
    "accumulator_range", "block_data", "class_rule_text", "class_threshold", "conv_param_fields", "fan_in",
    "header_guard", "kernel_limits", "kernel_sources", "output_dense_return", "plan_totals", "stack_targets"]


def _kernel_keys(model):
    """The kernel files' keys a model (LoweredModel, Graph or graph_c.GraphModel) needs, in include order."""
    return graph_c.kernel_keys(graph_c.as_graph_model(model).graph)


def runtime_files(model, byte_kernels=True):
    """(headers, kernel sources) of runtime_c/ that the export of `model` ships, sources in include
    order; byte_kernels=False leaves out the byte kernels (avr/: exports for targets that are never
    AVR, e.g. Zephyr). The Helium kernels (mve/) of the model's binary conv / dense blocks always come
    along (see MVE_KERNEL_FILES)."""
    return kernel_sources(_kernel_keys(model), byte_kernels)


def stack_kernel_keys(model):
    """The STACK_BYTES kernel entries a model's NAME_predict calls (the kernels of `_kernel_keys`)."""
    return sorted(k for k in _kernel_keys(model) if k != "common")


def stack_bound(model, target=None, build="default"):
    """Upper bound of the stack NAME_predict uses (from the caller's stack pointer at the call) when
    built for `target` (see stack_targets) with `build` ("default" or "small", see STACK_BUILDS):
    the deepest kernel chain it calls + the generated functions' share, the largest over the targets
    (exporters/graph_c.py stack_bound)."""
    return graph_c.stack_bound(model, target, build)


PUBLIC_HEADER = "ebnn.h"  # the runtime's one public header; its stem is the runtime's C namespace
# C99/C11 keywords (the language's, not derivable from the runtime)
C_KEYWORDS = frozenset("""auto break case char const continue default do double else enum extern float for goto if
    inline int long register restrict return short signed sizeof static struct switch typedef union unsigned void
    volatile while _Alignas _Alignof _Atomic _Bool _Complex _Generic _Imaginary _Noreturn _Static_assert
    _Thread_local""".split())
# Identifiers the generated files define for a model NAME (NAME.h, NAME.c, the Zephyr samples header):
# NAME_ + one of these (tests/test_names.py checks the list against generated code).
GENERATED_SUFFIXES = re.compile(r"(predict|predict_scratch|arena|debug_hook|input_t|INPUT_LEN|NUM_CLASSES|"
                                r"NUM_BLOCKS|NUM_OPS|SCRATCH_SIZE|H|SAMPLES_H|samples|sample_labels|NUM_SAMPLES|"
                                r"b\d+_(w|t|flip|params|scale|offset)|op\d+_(w|t|flip|params|scale|offset|win|a|b|div))")


# Headers a program may include beside an export: a NAME.h in a folder on the include path (-I) would
# shadow <NAME.h>, on case-insensitive file systems in any case, so these stems are refused as names
# (compared lower-cased). C99/C11/C17/C23 standard headers; POSIX.1-2017's top-level headers (those in
# sub-folders, <sys/...>, <netinet/...>, cannot be shadowed by NAME.h) and common C-library ones;
# Arduino: the AVR core (ArduinoCore-avr cores/arduino, its bundled libraries, the variants'
# pins_arduino.h), the ArduinoCore-API api/ headers other cores share, and the official libraries
# sketches most often include (Servo, SD, WiFi...).
SHADOWED_HEADERS = {
    "C standard": """assert complex ctype errno fenv float inttypes iso646 limits locale math setjmp signal
        stdalign stdarg stdatomic stdbit stdbool stdckdint stddef stdint stdio stdlib stdnoreturn string
        tgmath threads time uchar wchar wctype""",
    "POSIX": """aio cpio dirent dlfcn fcntl fmtmsg fnmatch ftw glob grp iconv langinfo libgen monetary
        mqueue ndbm netdb nl_types poll pthread pwd regex sched search semaphore spawn strings stropts
        syslog tar termios trace ulimit unistd utime utmp utmpx wordexp alloca malloc memory endian err
        getopt features byteswap execinfo""",
    "Arduino": """Arduino Binary Client HardwareSerial HardwareSerial_private IPAddress PluggableUSB Print
        Printable Server Stream Udp USBAPI USBCore USBDesc WCharacter WString new wiring_private
        pins_arduino EEPROM HID SPI SoftwareSerial Wire ArduinoAPI Common Compat HardwareCAN CanMsg
        CanMsgRingbuffer HardwareI2C HardwareSPI Interrupts RingBuffer String itoa
        Servo LiquidCrystal SD Ethernet WiFi Stepper Keyboard Mouse Firmata""",
}
_SHADOWED = {stem.lower(): kind for kind, stems in SHADOWED_HEADERS.items() for stem in stems.split()}


def generated_files(name):
    """Files an export writes for NAME besides the runtime's (C, Arduino and Zephyr exports)."""
    return (f"{name}.h", f"{name}.c", f"{name}_samples.h", f"{name}.ino")


@lru_cache(maxsize=1)
def _runtime_namespace():
    """What an export name must not collide with, read from the runtime's files themselves:
    (file names lower-cased, header guards, <system headers> the runtime includes (lower-cased stems),
    every identifier token of its code, the public header's stem = its C namespace)."""
    root = runtime_dir()
    files, guards, system, tokens = set(), set(), set(), set()
    for path in root.rglob("*"):
        if not path.is_file() or path.suffix not in (".c", ".h"):
            continue
        files.add(path.name.lower())
        text = path.read_text()
        guards.update(re.findall(r"^\s*#\s*ifndef\s+(\w+)\s*\n\s*#\s*define\s+\1\b", text, re.M))
        system.update(h.lower() for h in re.findall(r"^\s*#\s*include\s*<(\w+)\.h>", text, re.M))
        code = re.sub(r"/\*.*?\*/|//[^\n]*", " ", text, flags=re.S)
        tokens.update(re.findall(r"\b[A-Za-z_]\w*\b", code))
    return frozenset(files), frozenset(guards), frozenset(system), frozenset(tokens), Path(PUBLIC_HEADER).stem


def name_problem(name):
    """Why `name` cannot name an export (a sentence), or None when it can.

    The name prefixes every generated file and identifier (NAME.h, NAME.c, NAME_predict, header guard
    NAME_H...), so it must be a plain C identifier that does not reach into the C implementation's
    or the runtime's namespaces: not a keyword, no leading underscore (reserved at file scope), not
    the runtime's prefix (`ebnn`, `ebnn_*`, `EBNN_*`, any case), no generated file that would replace a
    runtime file or shadow a system header the code includes (case-insensitively: some file systems
    are), no header guard equal to a runtime one, no generated identifier equal to one the runtime
    uses. The runtime's side is read from its files (`_runtime_namespace`), so it cannot go stale."""
    if not (isinstance(name, str) and name.isidentifier() and name.isascii()):
        return "must be a C identifier (ASCII letters, digits and _, not starting with a digit)"
    if name in C_KEYWORDS:
        return "is a C keyword"
    if name.startswith("_"):
        return "starts with an underscore: such names are reserved for the C implementation"
    files, guards, system, tokens, prefix = _runtime_namespace()
    if name.lower() == prefix or name.lower().startswith(prefix + "_"):
        return (f"is in the runtime's namespace ({prefix}, {prefix}_*, {prefix.upper()}_*, any case): "
                "its files, symbols and header guards would collide")
    for f in generated_files(name):
        if f.lower() in files:
            return f"would write {f}, which is a runtime file"
        if f.lower().split(".")[0] in system and f.endswith(".h"):
            return f"would write {f}, which would shadow the system header <{f.lower()}> the code includes"
    if name.lower() in _SHADOWED:
        return (f"would write {name}.h, which would shadow the {_SHADOWED[name.lower()]} header "
                f"<{name.lower()}.h> (any case: some file systems ignore it) for code that includes it")
    upper_guards = {g.upper() for g in guards}  # any case: a guard differing only in case is too close
    for guard in (header_guard(name), header_guard(name, "SAMPLES_H")):
        if guard.upper() in upper_guards:
            return f"would use the header guard {guard.upper()}, which is a runtime header's"
    clash = sorted(t for t in tokens if t.startswith(name + "_") and GENERATED_SUFFIXES.fullmatch(t[len(name) + 1:]))
    if clash:
        return f"would define {clash[0]}, which the runtime uses"
    return None


def check_name(name):
    """Raise ValueError (saying why) unless `name` can name an export: see `name_problem`."""
    problem = name_problem(name)
    if problem:
        raise ValueError(f"name {name!r} {problem}; choose another name")


def runtime_dir():
    """The folder holding the runtime's C files (installed package data, or the source tree)."""
    try:
        from importlib.resources import files
        path = Path(str(files("keras_ebnn.runtime_c")))
        if (path / "ebnn.h").is_file():
            return path
    except (ImportError, ModuleNotFoundError, TypeError):
        pass
    return Path(__file__).resolve().parent.parent / "runtime_c"


def memory_plan(model, target=None, build="default"):
    """Flash and RAM of an export (a LoweredModel, Graph or graph_c.GraphModel), per op and in total (a
    plain dict of ints and lists; exporters/graph_c.py memory_plan lists the per-op keys).

    Keys:
      ops (= blocks): one dict per op (a fused block of a chain is one op), in C order: flash
        (weight_bytes + param_bytes = flash_bytes: packed weights incl. word padding; thresholds,
        flip words, geometry structs, affine), the output tensor (dtype, shape, bytes, out_bits,
        ram_bytes, buffer_offset in the arena), kernel scratch (scratch_bytes, scratch_offset);
      chain: True when every op is a fused block;
      arena: the keras_ebnn.planning.graph_memory plan (a chain's buffers alternate between the bottom and
        the top of the arena, scratch in the gap: the ping-pong layout, when no layout is smaller);
      activation_bytes: the peak of live tensors;
      arena_bytes: NAME_SCRATCH_SIZE = the static arena (tensors + kernel scratch);
      totals: flash_data_bytes (all ops' constant data, exact: equals the object's symbol sizes),
        code_bytes_estimate (CODE_BYTES / graph_c.GRAPH_CODE_BYTES of the kernels used + predict,
        Cortex-M3 -O2), flash_bytes (data + code), activation_bytes, kernel_scratch_bytes (arena -
        activations), arena_bytes, stack_bytes_estimate (upper bound of the stack NAME_predict uses in
        the build below: see stack_bound and STACK_BYTES), ram_bytes (arena + stack), input_bytes (the
        caller's input array, not counted in ram_bytes).
      stack: {target, build, bytes, targets}: which build stack_bytes_estimate holds for.
    target: the MCU the stack figure is for: "cortex-m0plus", "cortex-m3", "cortex-m4", "avr",
      "32bit" (the Cortex-M ones) or None (default: the largest of all, so it holds for any of them).
      Every other size is the same on all targets.
    build: "default" (compiled without -D options; default) or "small" (-DEBNN_CHUNK=8
      -DEBNN_LOW_STACK=1, about half the stack, slower: see runtime_c/README.md).
    """
    return graph_c.memory_plan(model, target, build)


def avr_reach_problems(model, name):
    """Why the model's constant data cannot be read on AVR (exporters/graph_c.py avr_reach_problems)."""
    return graph_c.avr_reach_problems(model, name)


def generate(model, name, byte_kernels=True):
    """(header text, source text) of the model (exporters/graph_c.py generate); byte_kernels as for
    `runtime_files`."""
    return graph_c.generate(model, name, byte_kernels)


def export_c(model, out_dir, name, byte_kernels=True):
    """Write NAME.h, NAME.c and the runtime files the model uses into out_dir: the headers, and the
    kernel files as .inc copies that NAME.c includes (see `runtime_files`; byte_kernels=False: no
    avr/ byte kernels, for targets that are never AVR).

    The files are written into a temporary folder beside out_dir and then moved into place, so a
    failure never leaves half-written output. An existing out_dir is kept (other files in it stay,
    e.g. another model's export: files of the same name are the same runtime); the files written are
    replaced. Returns the memory plan (see `memory_plan`)."""
    check_name(name)
    header, source = generate(model, name, byte_kernels)
    headers, sources = runtime_files(model, byte_kernels)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.c-", dir=out_dir.parent))
    try:
        (tmp / f"{name}.h").write_text(header)
        (tmp / f"{name}.c").write_text(source)
        for f in headers + sources:
            dst = tmp / (f if f in headers else _included_name(f))
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(runtime_dir() / f, dst)
        if out_dir.exists():
            for p in sorted(tmp.rglob("*"), key=lambda q: len(q.parts)):  # merge (e.g. an exporter's temp dir)
                if p.is_file():
                    (out_dir / p.relative_to(tmp)).parent.mkdir(parents=True, exist_ok=True)
                    os.replace(p, out_dir / p.relative_to(tmp))
            shutil.rmtree(tmp)
        else:
            tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return memory_plan(model)
