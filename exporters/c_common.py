"""What the C back ends share (exporters/c.py, the front, and exporters/graph_c.py, the one emitter): the
runtime's kernel files per kernel key, the measured tables (exporters/measured.py), the blocks'
constant data and geometry structs, C literals, the memory plan's totals and the prologue / includes
of NAME.c. It imports neither of them (exporters/c.py re-exports these names)."""
import numpy as np

from keras_ebnn.ir.blocks import accumulator_range, class_threshold, fan_in
from keras_ebnn.planning.graph_memory import words

# The runtime files an export ships (paths under runtime_c/). Headers always; per block kind the
# generic kernel file(s), then the byte kernels' variant (avr/, EBNN_BYTE_KERNELS: the AVR default),
# included by NAME.c in this order (helpers before their users).
RUNTIME_HEADERS = ("ebnn.h", "ebnn_internal.h")
BYTE_KERNEL_HEADERS = ("avr/ebnn_bytes.h",)
KERNEL_FILES = {  # key: "common" or a kernel key (see _kernel_keys); value: (generic, byte variant)
    "common": (("ebnn_bits.c",), ("avr/ebnn_bytes.c",)),
    "input_conv_int": (("ebnn_input_conv.c",), ("avr/ebnn_input_conv8.c",)),
    "input_conv_f32": (("ebnn_input_conv.c", "ebnn_input_conv_f32.c"), ()),
    "binary_conv": (("ebnn_binary_conv.c",), ("avr/ebnn_binary_conv8.c",)),
    "binary_dense": (("ebnn_dense.c",), ()),
    "output_dense": (("ebnn_output_dense.c",), ()),
    # the graph ops' kernels (exporters/graph_c.py)
    "binary_acc": (("ebnn_binary_acc.c",), ()),
    "conv_f32": (("ebnn_conv_f32.c",), ()),
    "dense_f32": (("ebnn_dense_f32.c",), ()),
    "pool": (("ebnn_pool.c",), ()),
    "elementwise": (("ebnn_elementwise.c",), ()),
    "conv_pool": (("ebnn_conv_pool_f32.c",), ()),  # after elementwise: it calls the affine / activation kernels
    # the integer-only graph ops (quantize="int8", keras_ebnn/passes/graph_quant.py; they use ebnn_requant.h)
    "conv_s8": (("ebnn_conv_s8.c",), ()),
    "dense_s8": (("ebnn_dense_s8.c",), ()),
    "quant_s8": (("ebnn_quant_s8.c",), ()),
}
QUANT_HEADERS = ("ebnn_requant.h",)  # shipped with the integer-only kernels
# The Helium kernels (mve/, EBNN_MVE_KERNELS: the default on cores with MVE, e.g. Cortex-M55), per
# kernel key, included after that key's other files. Every export ships them (C, Arduino with
# architectures=*, Zephyr: all can target a Cortex-M55); elsewhere they compile to nothing.
MVE_KERNEL_HEADERS = ("mve/ebnn_mve.h",)
MVE_KERNEL_FILES = {"binary_conv": ("mve/ebnn_binary_conv_mve.c",), "binary_dense": ("mve/ebnn_dense_mve.c",)}
INCLUDED_SUFFIX = ".inc"  # the exported copies of the kernel .c files



def kernel_sources(keys, byte_kernels=True):
    """(headers, kernel sources) of runtime_c/ for the kernel files' `keys` (exporters/graph_c.py
    kernel_keys, in include order): what `runtime_files` (exporters/c.py) ships for a model."""
    headers = list(RUNTIME_HEADERS) + (list(BYTE_KERNEL_HEADERS) if byte_kernels else [])
    sources = []
    for key in keys:
        generic, byte = KERNEL_FILES[key]
        for f in generic + (byte if byte_kernels else ()) + MVE_KERNEL_FILES.get(key, ()):
            if f not in sources:
                sources.append(f)
    if any(f in sources for files in MVE_KERNEL_FILES.values() for f in files):
        headers += MVE_KERNEL_HEADERS
    if any(f in sources for key in ("conv_s8", "dense_s8", "quant_s8") for f in KERNEL_FILES[key][0]):
        headers += QUANT_HEADERS
    return headers, sources


def _included_name(source):
    return source[:-2] + INCLUDED_SUFFIX


PARAMS_STRUCT_BYTES = 56  # sizeof(ebnn_conv_params_t) on every target (no padding, no pointers)
# Measured code and stack bytes per kernel (CODE_BYTES, STACK_BYTES): exporters/measured.py, written by
# the bench scripts that measure them. Kernels a model does not call are dropped by the linker
# (--gc-sections); tests/test_targets.py checks the code estimate against the Cortex-M3 ELF (within
# 25%), tests/test_stack_bounds.py every shipped model's predict chain against STACK_BYTES.
from .measured import CODE_BYTES, STACK_BYTES  # noqa: E402

STACK_TARGETS = tuple(STACK_BYTES)
STACK_BUILDS = {"default": "no -D options", "small": "-DEBNN_CHUNK=8 -DEBNN_LOW_STACK=1"}
# memory_plan's target: a target name, None (the largest figure of all of them) or these groups
STACK_TARGET_GROUPS = {"32bit": tuple(t for t in STACK_TARGETS if t.startswith("cortex-"))}


def stack_targets(target):
    """The STACK_BYTES targets a memory_plan `target` stands for (None: all)."""
    if target is None:
        return list(STACK_TARGETS)
    if target in STACK_TARGET_GROUPS:
        return list(STACK_TARGET_GROUPS[target])
    if target not in STACK_BYTES:
        raise ValueError(f"unknown stack target {target!r}; choose one of {', '.join(STACK_TARGETS)}, "
                         f"{', '.join(STACK_TARGET_GROUPS)} or None (all)")
    return [target]


def header_guard(name, suffix="H"):
    """The include guard of a generated header: NAME_suffix with NAME as given (case preserved), so
    exports whose names differ only in case (net, NET) have different guards."""
    return f"{name}_{suffix}"


def _words_of_bits(bits):
    """bool (R, n) -> uint32 (R * words(n),): each row LSB-first from a word boundary, zero padded."""
    bits = np.asarray(bits, dtype=bool)
    r, n = bits.shape
    rw = words(n)
    padded = np.zeros((r, rw * 32), dtype=bool)
    padded[:, :n] = bits
    packed = np.packbits(padded.reshape(r, rw, 32), axis=2, bitorder="little").astype(np.uint32)
    vals = packed[..., 0] | (packed[..., 1] << 8) | (packed[..., 2] << 16) | (packed[..., 3] << 24)
    return vals.reshape(-1)


def _has_pool(block):
    g = block.geometry
    return g.pool is not None and tuple(g.pool) != (1, 1)


def block_data(block):
    """Constant arrays of a block as stored in C: dict of suffix -> (C type, numpy array)."""
    kind = block.kind
    out = {}
    w = np.asarray(block.weights, dtype=bool).reshape(block.weights.shape[0], -1)
    flip = np.zeros(w.shape[0], dtype=bool)
    if kind in ("input_conv", "binary_conv") and _has_pool(block):
        flip = np.asarray(block.pool_min, dtype=bool)
    w = np.where(flip[:, None], ~w, w)  # min-pooled channels: max-pool the negated accumulator
    out["w"] = ("uint32_t", _words_of_bits(w))
    if kind == "output_dense":
        out["scale"] = ("float", np.asarray(block.scale, dtype=np.float32))
        out["offset"] = ("float", np.asarray(block.offset, dtype=np.float32))
        return out
    rng = accumulator_range(block)
    if rng is None:  # float accumulator
        out["t"] = ("float", np.asarray(block.threshold, dtype=np.float32))
    else:
        lo, hi = rng
        if kind == "input_conv" and 2 * hi > 2**31 - 1:
            raise ValueError(f"input accumulator range {rng} does not fit the int32 kernels")
        thr = np.clip(np.asarray(block.threshold, dtype=np.float64), lo, hi + 1)
        thr = np.ceil(thr).astype(np.int64)  # acc >= t  <=>  acc >= ceil(t) for integer acc
        thr = np.where(flip, 1 - thr, thr)
        # int16 when every accumulator fits (ebnn_conv_params_t.acc16; ebnn_binary_dense16): then so
        # does every stored threshold (in [-hi, hi + 1]); half the flash of int32.
        out["t"] = ("int16_t" if _acc16(rng) else "int32_t", thr)
    if kind in ("input_conv", "binary_conv"):
        out["flip"] = ("uint32_t", _words_of_bits(flip[None, :]))
    return out


def _acc16(rng):
    """Every accumulator of the range fits int16 (and every clamped threshold, flipped or not)."""
    return rng is not None and rng[1] < 2**15 - 1


CTYPE_BYTES = {"uint32_t": 4, "int32_t": 4, "float": 4, "int16_t": 2, "int8_t": 1, "uint8_t": 1}


def plan_totals(model, data_bytes, code, activation, arena, stack):
    """The "totals" of a memory plan (chain or graph), in bytes: flash (constant data + code estimate),
    the arena (activations + kernel scratch), the stack bound, RAM (arena + stack) and the input."""
    in_bytes = model.input.length * (1 if model.input.dtype == np.uint8 else 4)
    return {"flash_data_bytes": int(data_bytes), "code_bytes_estimate": int(code),
            "flash_bytes": int(data_bytes + code), "activation_bytes": int(activation),
            "kernel_scratch_bytes": int(arena - activation), "arena_bytes": int(arena),
            "stack_bytes_estimate": int(stack), "ram_bytes": int(arena + stack), "input_bytes": int(in_bytes)}


# ------------------------------------------------------------------------------------------------
# Source generation


def _c_number(ctype, v):
    if ctype == "float":
        v = np.float32(v)
        if np.isnan(v):
            raise ValueError("NaN in model parameters")
        if np.isinf(v):
            return "EBNN_INFINITY" if v > 0 else "-EBNN_INFINITY"
        text = repr(float(v))  # shortest repr that round-trips through double, hence float32 too
        return (text if ("e" in text or "." in text) else text + ".0") + "f"
    if ctype == "uint32_t":
        return f"0x{int(v):08x}u"
    if ctype == "int16_t":
        v = int(v)
        if not -(2**15) < v < 2**15:
            raise ValueError(f"{v} does not fit int16")
        return str(v)
    if ctype == "int32_t":
        v = int(v)
        if not -(2**31) <= v < 2**31:
            raise ValueError(f"{v} does not fit int32")
        return "INT32_MIN" if v == -(2**31) else str(v)
    return str(int(v))


def _c_array(name, ctype, values, per_line=8):
    vals = [_c_number(ctype, v) for v in np.asarray(values).reshape(-1)]
    lines = [", ".join(vals[i:i + per_line]) for i in range(0, len(vals), per_line)]
    body = ",\n    ".join(lines)
    return f"static const {ctype} {name}[{len(vals)}] EBNN_CONST = {{\n    {body}\n}};\n"


def conv_param_fields(block):
    """The uint16_t geometry fields of a conv block's ebnn_conv_params_t (unchecked: see
    exporters/graph_c.py c_limit_problems)."""
    g = block.geometry
    has_pool = g.pool is not None
    return {
        "in_h": g.in_shape[0], "in_w": g.in_shape[1], "in_c": g.in_shape[2],
        "kh": g.kernel[0], "kw": g.kernel[1], "sh": g.strides[0], "sw": g.strides[1],
        "pad_t": g.pad[0], "pad_l": g.pad[1], "conv_h": g.conv_shape[0], "conv_w": g.conv_shape[1],
        "pool_h": g.pool[0] if has_pool else 1, "pool_w": g.pool[1] if has_pool else 1,
        "pool_sh": g.pool_strides[0] if has_pool else 1, "pool_sw": g.pool_strides[1] if has_pool else 1,
        "pool_t": g.pool_pad[0] if has_pool else 0, "pool_l": g.pool_pad[1] if has_pool else 0,
        "out_h": g.out_hw[0], "out_w": g.out_hw[1], "out_c": block.weights.shape[0],
    }


def _conv_params(name, block):
    g = block.geometry
    fields = conv_param_fields(block)
    for key, v in fields.items():
        if not 0 <= int(v) <= 65535:
            raise ValueError(f"block geometry {key}={v} does not fit uint16")
    rng = accumulator_range(block)
    fields["pad_value"] = int(g.pad_value)
    fields["input_mode"] = "EBNN_INPUT_FLOAT"
    fields["acc16"] = int(_acc16(rng))
    if block.kind == "input_conv":
        spec = block.input
        fields["input_mode"] = {"float": "EBNN_INPUT_FLOAT", "uint8": "EBNN_INPUT_UINT8",
                                "sign_float": "EBNN_INPUT_SIGN_FLOAT", "sign_uint8": "EBNN_INPUT_SIGN_UINT8"}[spec.mode]
        thr_u8 = int(np.ceil(spec.sign_threshold)) if spec.mode == "sign_uint8" else 0
        fields.update({"q_mul": int(spec.q_mul), "q_add": int(spec.q_add), "pad_q": int(spec.pad_q),
                       "sign_threshold_u8": min(max(thr_u8, 0), 256),
                       "sign_threshold_f": _c_number("float", spec.sign_threshold)})
        for key in ("q_mul", "q_add", "pad_q"):
            if not -32768 <= fields[key] <= 32767:
                raise ValueError(f"input encoding {key}={fields[key]} does not fit int16")
    body = ",\n    ".join(f".{k} = {v}" for k, v in fields.items())
    return f"static const ebnn_conv_params_t {name} EBNN_CONST = {{\n    {body}\n}};\n"


# AVR: pgm_read_* (and the byte kernels' lpm) take 16-bit addresses, so constant data must lie in the
# first 64 KB of flash; avr-gcc refuses any object over 32,767 B (PTRDIFF_MAX).
AVR_FLASH_REACH = 65536
AVR_MAX_OBJECT = 32767
RUNTIME_CONST_BYTES_AVR = 256  # the runtime's own PROGMEM data on AVR: the popcount table


def kernel_limits(blocks, name):
    """Preprocessor checks for blocks that a kernel variant cannot run: list of (condition, message);
    `blocks`: (index, block) pairs.

    The byte kernels (EBNN_BYTE_KERNELS, the AVR default) need every accumulator within int16 and
    16-bit sizes; on AVR even the generic integer input conv keeps its tables in 16 bits. Rather than
    let such a kernel return EBNN_ERROR_UNSUPPORTED at run time, the generated C stops the build with
    a message naming the block and what to do. Mirrors the checks at the top of the kernels
    (runtime_c): tests/test_c_status.py builds both sides. (The byte binary conv falls back on the
    generic code instead: graph_c.binary_conv_fallback.)"""
    out = []
    for i, b in blocks:
        if b.kind != "input_conv" or b.input.mode == "float":
            continue  # float accumulator, float kernel: no integer limit
        rng = accumulator_range(b)
        acc = "" if rng is None else f"accumulators reach {rng[1]}"
        what = f"{name}: block {i} ({b.kind} from {', '.join(b.source_layers) or '-'})"
        if not _acc16(rng):  # the generic integer kernel has 16-bit tables on AVR
            out.append(("defined(__AVR__)",
                        f"{what}: {acc}, beyond the int16 that the AVR input conv kernels use: use fewer "
                        "taps (kernel size x input channels) or a smaller input scale for AVR"))
        if b.input.mode in ("uint8", "sign_uint8"):
            taps, length = fan_in(b), b.input.length
            if not (_acc16(rng) and taps <= 255 and length < 32768):
                out.append(("EBNN_BYTE_KERNELS",
                            f"{what}: {taps} taps, {acc}, input of {length} values: the byte kernels "
                            "(EBNN_BYTE_KERNELS, the AVR default) need int16 accumulators, at most 255 taps "
                            "and fewer than 32768 input values: build with -DEBNN_BYTE_KERNELS=0"
                            + (" (not enough on AVR, see the error above)" if not _acc16(rng) else "")))
    return out


def _source_prologue(name, generated_by, units, fallback, byte_kernels):
    """The first lines of a generated NAME.c (chain and graph export): its title (`generated_by` is
    appended to "generated by keras-ebnn"), the note on the runtime .inc files, EBNN_PRIVATE, and, with
    byte kernels, EBNN_BINARY_CONV_FALLBACK when the `units` (blocks or ops) numbered `fallback` need
    the generic binary conv."""
    src = [f"/* {name}.c - generated by keras-ebnn{generated_by}. Do not edit. See {name}.h and ebnn.h. */",
           "#include <stddef.h>", "",
           "/* The runtime kernels this model uses, compiled into this file as static functions (the .inc",
           " * files are the runtime's C files, never compiled on their own): several models link into one",
           " * program, each with its own copy of exactly the kernels it calls. */",
           "#define EBNN_PRIVATE 1"]
    if fallback and byte_kernels:
        src += [f"/* {units} {', '.join(map(str, fallback))}: accumulators beyond the byte kernels' int16: their "
                "binary conv runs the generic code */", "#ifndef EBNN_BINARY_CONV_FALLBACK",
                "#define EBNN_BINARY_CONV_FALLBACK 1", "#endif"]
    return src


def _source_includes(name, checks, reach_problems, byte_kernels, sources):
    """The lines of a generated NAME.c from #include "ebnn.h" to #include "NAME.h" (chain and graph
    export): the build-time #error checks (the kernel-limit `checks`, no byte kernels, each AVR
    `reach_problems` sentence) and the runtime's .inc files `sources`."""
    checks = list(checks)
    if not byte_kernels:
        checks += ["#if EBNN_BYTE_KERNELS",
                   f'#error "{name}: this export has no byte kernels (EBNN_BYTE_KERNELS): build with '
                   '-DEBNN_BYTE_KERNELS=0, or export for the c or arduino target"', "#endif"]
    for problem in reach_problems:
        checks += ["#if defined(__AVR__)", f'#error "{problem}: a smaller model is needed on AVR"', "#endif"]
    src = ['#include "ebnn.h"']
    if checks:
        src += ["/* what a target or kernel variant cannot run: stop the build rather than fail at run time */",
                *checks]
    src += [f'#include "{_included_name(f)}"' for f in sources]
    return src + [f'#include "{name}.h"', ""]


def class_rule_text(model):
    """How NAME_predict picks the class (the header's words; keras_ebnn.ir.blocks.class_threshold)."""
    t = class_threshold(model)
    if t is None:
        return "argmax, first maximum wins"
    what = "sigmoid probability p" if t == 0.5 else "logit z"
    return f"one score, a {what}: 1 when {'p >= 0.5' if t == 0.5 else 'z >= 0 (sigmoid(z) >= 0.5)'}, else 0"


def output_dense_return(model, block, src, pre):
    """The C lines of NAME_predict that run the output block on the bits `src` and return the class:
    ebnn_output_dense's argmax, or for one score the class of class_threshold."""
    call = (f"ebnn_output_dense({block.weights.shape[1]}u, {block.weights.shape[0]}u, {src}, {pre}w, "
            f"{pre}scale, {pre}offset, {{}})")
    t = class_threshold(model)
    if t is None:
        return f"    return {call.format('scores')};"
    lines = ["    {", "        float score;", f"        int out_status = {call.format('&score')};",
             "        if (out_status < 0)", "            return out_status;", "        if (scores != NULL)",
             "            scores[0] = score;", f"        return score >= {t!r}f ? 1 : 0; /* {class_rule_text(model)} */",
             "    }"]
    return "\n".join(lines)
