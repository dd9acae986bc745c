"""C back end: a LoweredModel -> NAME.h / NAME.c + the runtime (ebnn.h, ebnn_kernels.c).

The generated NAME.c holds the bit-packed weights, thresholds and block parameters as `const` data
(PROGMEM on AVR, via EBNN_CONST), one statically sized activation arena, and NAME_predict(): a plain
sequence of kernel calls. `memory_plan()` sizes and places the activation buffers and reports flash
and RAM per block; it is what `keras_ebnn.summary()` and the export report print.
"""
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from keras_ebnn.blocks import LoweredModel

RUNTIME_FILES = ("ebnn.h", "ebnn_kernels.c")
# sizeof(ebnn_conv_params_t): 56 on 32- and 64-bit targets, 54 on AVR (no alignment padding)
PARAMS_STRUCT_BYTES = {"32bit": 56, "avr": 54}
# Code size, in bytes, of the runtime kernels (each with the static helpers it inlines) and of the
# generated predict function, measured with arm-none-eabi-gcc -mcpu=cortex-m3 -mthumb -O2 -ffunction-sections
# (`arm-none-eabi-nm -S` of ebnn_kernels.o). "common" is ebnn_xor_popcount + ebnn_const_popcount +
# memcpy. Kernels a model does not use are dropped by the linker. Not included: libgcc's soft-float
# routines used by the output block's logits on FPU-less cores (about 1 KB). The benchmarks and
# tests/test_targets.py report the exact figure from each target's ELF.
CODE_BYTES = {"common": 888, "input_conv_int": 1264, "input_conv_f32": 1228, "binary_conv": 1276,
              "binary_dense": 148, "output_dense": 160, "predict": 40, "predict_per_block": 36}
# Deepest stack frame chain of each kernel, in bytes, from arm-none-eabi-gcc -mcpu=cortex-m3 -O2
# -fstack-usage (kernel + the helpers it calls); on AVR the input convolution uses fewer accumulators
# (EBNN_INPUT_CONV_BATCH) and tests/test_targets.py measures the real high-water mark.
STACK_BYTES = {"input_conv": 600, "binary_conv": 440, "binary_dense": 104, "output_dense": 112, "predict": 24}


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


def words(nbits):
    """uint32 words for n bits plus the guard word the kernels may read ahead (EBNN_WORDS)."""
    return (int(nbits) + 31) // 32 + 1


def _pack_rows(bits, row_words):
    """bool (R, n) -> uint32 (R * row_words + 1,): each row LSB-first from a word boundary."""
    r, n = bits.shape
    padded = np.zeros((r, row_words * 32), dtype=bool)
    padded[:, :n] = bits
    packed = np.packbits(padded.reshape(r, row_words, 32), axis=2, bitorder="little")
    w = packed.astype(np.uint32)
    vals = w[..., 0] | (w[..., 1] << 8) | (w[..., 2] << 16) | (w[..., 3] << 24)
    return np.concatenate([vals.reshape(-1), np.zeros(1, np.uint32)])


def _pack_taps(weights):
    """Input-conv weights (O, KH, KW, C) -> tap-major group masks (taps * groups + 1,)."""
    o = weights.shape[0]
    taps = weights.reshape(o, -1).T  # (taps, O)
    groups = (o + 31) // 32
    return _pack_rows(taps, groups)


MAX_WINDOW = 64  # EBNN_MAX_WINDOW in ebnn.h


def filter_major(block):
    """Input conv blocks with an integer accumulator and a small window use the kernel's fast path
    (window gathered once per position, filter-major weights); others the general tap-major path."""
    if block.input.mode == "float" or int(np.prod(block.weights.shape[1:])) > MAX_WINDOW:
        return False
    lo, hi = block.input.value_range()
    return max(abs(lo), abs(hi)) <= 32767


def block_data(block):
    """Packed constant arrays of a block: dict of name -> (C type, numpy array)."""
    kind = block.kind
    out = {}
    if kind == "input_conv" and filter_major(block):
        k = int(np.prod(block.weights.shape[1:]))
        out["w"] = ("uint32_t", _pack_rows(block.weights.reshape(block.weights.shape[0], -1), (k + 31) // 32))
    elif kind == "input_conv":
        out["w"] = ("uint32_t", _pack_taps(block.weights))
    elif kind == "binary_conv":
        k = int(np.prod(block.weights.shape[1:]))
        out["w"] = ("uint32_t", _pack_rows(block.weights.reshape(block.weights.shape[0], -1), (k + 31) // 32))
    else:
        n = block.weights.shape[1]
        out["w"] = ("uint32_t", _pack_rows(block.weights, (n + 31) // 32))
    if kind == "output_dense":
        out["scale"] = ("float", block.scale.astype(np.float32))
        out["offset"] = ("float", block.offset.astype(np.float32))
    else:
        float_thr = kind == "input_conv" and block.input.mode == "float"
        thr = block.threshold.astype(np.float32 if float_thr else np.int64)
        if not float_thr and (thr.max() > 2**31 - 1 or thr.min() < -(2**31)):
            raise ValueError("threshold does not fit int32")
        out["t"] = ("float" if float_thr else "int32_t", thr)
    if kind in ("input_conv", "binary_conv"):
        out["pool_min"] = ("uint8_t", block.pool_min.astype(np.uint8))
    return out


def _out_bits(block):
    return int(np.prod(block.out_shape))


def memory_plan(model: LoweredModel, target="32bit"):
    """Flash and RAM of an export, per block and in total.

    Returns a dict:
      blocks: one dict per block with index, kind, out_bits, weight_bytes (packed weights incl.
        word padding), param_bytes (thresholds, pool flags, parameter struct or per-class affine),
        flash_bytes (their sum), ram_bytes (its output buffer, 4-byte words incl. one guard word;
        0 for the output block, whose logits go to the caller), buffer_offset (bytes into the arena).
      arena_bytes: activation arena (= NAME_SCRATCH_SIZE). Buffers are placed alternately at the
        bottom and the top of the arena, so block i's output never overlaps its input and the arena
        is the largest adjacent (input + output) pair of hidden buffers.
      totals: flash_data_bytes (all blocks), code_bytes_estimate (kernels used + predict, see
        CODE_BYTES), flash_bytes (data + code), activation_bytes (= arena), stack_bytes_estimate
        (deepest kernel frame + predict, see STACK_BYTES), ram_bytes (activations + stack),
        input_bytes (the caller's input array, not counted in ram_bytes).
    target: "32bit" (Cortex-M, hosts) or "avr" (which packs the parameter struct without padding).
    """
    blocks, sizes = [], []
    for i, b in enumerate(model.blocks):
        data = block_data(b)
        wbytes = data["w"][1].size * 4
        pbytes = sum(arr.size * np.dtype(arr.dtype).itemsize if ctype != "int32_t" else arr.size * 4
                     for key, (ctype, arr) in data.items() if key != "w")
        if b.kind in ("input_conv", "binary_conv"):
            pbytes += PARAMS_STRUCT_BYTES[target]
        hidden = b.kind != "output_dense"
        ram = words(_out_bits(b)) * 4 if hidden else 0
        if hidden:
            sizes.append(ram)
        blocks.append({"index": i, "kind": b.kind, "out_bits": _out_bits(b) if hidden else 0,
                       "weight_bytes": int(wbytes), "param_bytes": int(pbytes),
                       "flash_bytes": int(wbytes + pbytes), "ram_bytes": int(ram), "buffer_offset": 0})
    arena = max([sizes[0]] + [a + b for a, b in zip(sizes, sizes[1:])]) if sizes else 0
    for i, size in enumerate(sizes):
        blocks[i]["buffer_offset"] = 0 if i % 2 == 0 else arena - size
    kinds = {b.kind for b in model.blocks}
    code = CODE_BYTES["common"] + CODE_BYTES["predict"] + CODE_BYTES["predict_per_block"] * len(model.blocks)
    for kind in kinds:
        if kind == "input_conv":
            code += CODE_BYTES["input_conv_f32" if model.input.mode == "float" else "input_conv_int"]
        else:
            code += CODE_BYTES[kind]
    stack = max(STACK_BYTES[k] for k in kinds) + STACK_BYTES["predict"]
    data_bytes = sum(b["flash_bytes"] for b in blocks)
    in_bytes = model.input.length * (1 if model.input.dtype == np.uint8 else 4)
    totals = {"flash_data_bytes": int(data_bytes), "code_bytes_estimate": int(code),
              "flash_bytes": int(data_bytes + code), "activation_bytes": int(arena),
              "stack_bytes_estimate": int(stack), "ram_bytes": int(arena + stack), "input_bytes": int(in_bytes)}
    return {"blocks": blocks, "arena_bytes": int(arena), "totals": totals}


# ------------------------------------------------------------------------------------------------
# Source generation


def _c_number(ctype, v):
    if ctype == "float":
        v = float(np.float32(v))
        if np.isinf(v):
            return "INFINITY" if v > 0 else "-INFINITY"
        return f"{v:.9g}f" if ("e" in f"{v:.9g}" or "." in f"{v:.9g}") else f"{v:.9g}.0f"
    if ctype == "uint32_t":
        return f"0x{int(v):08x}u"
    if ctype == "int32_t":
        v = int(v)
        return "INT32_MIN" if v == -(2**31) else str(v)
    return str(int(v))


def _c_array(name, ctype, values, per_line=8):
    vals = [_c_number(ctype, v) for v in np.asarray(values).reshape(-1)]
    lines = [", ".join(vals[i:i + per_line]) for i in range(0, len(vals), per_line)]
    body = ",\n    ".join(lines)
    return f"static const {ctype} {name}[{len(vals)}] EBNN_CONST = {{\n    {body}\n}};\n"


def _conv_params(name, block):
    g = block.geometry
    pool = g.pool or (1, 1)
    pstr = g.pool_strides if g.pool else (1, 1)
    ppad = g.pool_pad if g.pool else (0, 0)
    fields = {
        "in_h": g.in_shape[0], "in_w": g.in_shape[1], "in_c": g.in_shape[2],
        "kh": g.kernel[0], "kw": g.kernel[1], "sh": g.strides[0], "sw": g.strides[1],
        "pad_t": g.pad[0], "pad_l": g.pad[1], "conv_h": g.conv_shape[0], "conv_w": g.conv_shape[1],
        "pool_h": pool[0], "pool_w": pool[1], "pool_sh": pstr[0], "pool_sw": pstr[1],
        "pool_t": ppad[0], "pool_l": ppad[1], "out_h": g.out_hw[0], "out_w": g.out_hw[1],
        "out_c": block.weights.shape[0], "pad_value": g.pad_value,
    }
    if block.kind == "input_conv":
        spec = block.input
        mode = {"float": "EBNN_INPUT_FLOAT", "uint8": "EBNN_INPUT_UINT8", "sign_float": "EBNN_INPUT_SIGN_FLOAT",
                "sign_uint8": "EBNN_INPUT_SIGN_UINT8"}[spec.mode]
        fields.update({"input_mode": mode, "q_mul": spec.q_mul, "q_add": spec.q_add, "pad_q": spec.pad_q,
                       "sign_threshold_u8": int(spec.sign_threshold) if spec.mode == "sign_uint8" else 0,
                       "sign_threshold_f": _c_number("float", spec.sign_threshold)})
        for key in ("q_mul", "q_add", "pad_q"):
            if not -32768 <= int(fields[key]) <= 32767:
                raise ValueError(f"input encoding {key}={fields[key]} does not fit int16")
    for key, v in fields.items():
        if isinstance(v, (int, np.integer)) and key not in ("q_mul", "q_add", "pad_q", "sign_threshold_u8") \
                and not 0 <= int(v) <= 65535:
            raise ValueError(f"block geometry {key}={v} does not fit uint16")
    body = ",\n    ".join(f".{k} = {v}" for k, v in fields.items())
    return f"static const ebnn_conv_params_t {name} EBNN_CONST = {{\n    {body}\n}};\n"


def generate(model: LoweredModel, name):
    """(header text, source text) of the model."""
    plan = memory_plan(model)
    up = name.upper()
    in_t = "uint8_t" if model.input.dtype == np.uint8 else "float"
    arena_words = plan["arena_bytes"] // 4
    header = f"""/* {name}.h - generated by keras-ebnn from Keras model '{model.name}'. Do not edit.
 * Blocks: {", ".join(b.kind for b in model.blocks)}.
 * Flash: {plan['totals']['flash_data_bytes']} B of model data; RAM: {plan['arena_bytes']} B activation arena. */
#ifndef {up}_H
#define {up}_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {{
#endif

#define {name}_INPUT_LEN {model.input.length}u  /* input values, NHWC {"x".join(map(str, model.input.shape))} */
#define {name}_NUM_CLASSES {model.num_classes}
#define {name}_SCRATCH_SIZE {plan['arena_bytes']}u  /* bytes of scratch for {name}_predict_scratch */
typedef {in_t} {name}_input_t;

/* Classifies one input; returns the class index (argmax). scores may be NULL, else it receives
 * {name}_NUM_CLASSES logits (pre-softmax). Uses a static activation arena: not reentrant. */
int {name}_predict(const {name}_input_t *input, float *scores);

/* Same, with caller-provided scratch memory: {name}_SCRATCH_SIZE bytes, aligned for uint32_t.
 * Returns -1 if scratch is NULL or misaligned. */
int {name}_predict_scratch(const {name}_input_t *input, float *scores, void *scratch);

#ifdef EBNN_DEBUG_HOOK
/* Test hook: when set, called after every hidden block with its output bits (ebnn.h layout). */
extern void (*{name}_debug_hook)(int block, const uint32_t *bits, uint32_t nbits);
#endif

#ifdef __cplusplus
}}
#endif

#endif /* {up}_H */
"""
    src = [f"/* {name}.c - generated by keras-ebnn. Do not edit. See {name}.h and ebnn.h. */",
           "#include <math.h>", "#include <stddef.h>", "", '#include "ebnn.h"', f'#include "{name}.h"', ""]
    for i, b in enumerate(model.blocks):
        src.append(f"/* block {i}: {b.kind} {'x'.join(map(str, b.out_shape))} <- {', '.join(b.source_layers)} */")
        for key, (ctype, arr) in block_data(b).items():
            src.append(_c_array(f"{name}_b{i}_{key}", ctype, arr))
        if b.kind in ("input_conv", "binary_conv"):
            src.append(_conv_params(f"{name}_b{i}_params", b))
    src.append(f"static uint32_t {name}_arena[{max(arena_words, 1)}];")
    src.append("")
    src.append(f"#ifdef EBNN_DEBUG_HOOK\nvoid (*{name}_debug_hook)(int block, const uint32_t *bits, uint32_t nbits) = NULL;\n#endif\n")
    body = []
    prev = "input"
    for i, b in enumerate(model.blocks):
        p = plan["blocks"][i]
        buf = f"(arena + {p['buffer_offset'] // 4})"
        wname = f"{name}_b{i}_w"
        if b.kind == "input_conv":
            fn = "ebnn_input_conv_window" if filter_major(b) else "ebnn_input_conv"
            fn += "_u8" if model.input.dtype == np.uint8 else "_f32"
            body.append(f"    {fn}(&{name}_b{i}_params, input, {wname}, {name}_b{i}_t, {name}_b{i}_pool_min, {buf});")
        elif b.kind == "binary_conv":
            fw = (int(np.prod(b.weights.shape[1:])) + 31) // 32
            body.append(f"    ebnn_binary_conv(&{name}_b{i}_params, {prev}, {wname}, {fw}u, {name}_b{i}_t, "
                        f"{name}_b{i}_pool_min, {buf});")
        elif b.kind == "binary_dense":
            n = b.weights.shape[1]
            body.append(f"    ebnn_binary_dense({n}u, {b.weights.shape[0]}u, {prev}, {wname}, {(n + 31) // 32}u, "
                        f"{name}_b{i}_t, {buf});")
        else:
            n = b.weights.shape[1]
            body.append(f"    return ebnn_output_dense({n}u, {b.weights.shape[0]}u, {prev}, {wname}, "
                        f"{(n + 31) // 32}u, {name}_b{i}_scale, {name}_b{i}_offset, scores);")
            break
        body.append(f"#ifdef EBNN_DEBUG_HOOK\n    if ({name}_debug_hook != NULL)\n"
                    f"        {name}_debug_hook({i}, {buf}, {p['out_bits']}u);\n#endif")
        prev = buf
    src.append(f"""int {name}_predict_scratch(const {name}_input_t *input, float *scores, void *scratch)
{{
    uint32_t *arena = (uint32_t *)scratch;
    if (scratch == NULL || ((uintptr_t)scratch % EBNN_WORD_ALIGN) != 0u || input == NULL)
        return -1;
{chr(10).join(body)}
}}

int {name}_predict(const {name}_input_t *input, float *scores)
{{
    return {name}_predict_scratch(input, scores, {name}_arena);
}}
""")
    return header, "\n".join(src)


def export_c(model: LoweredModel, out_dir, name):
    """Write NAME.h, NAME.c and the runtime files into out_dir (created or replaced atomically).

    Returns the memory plan (see `memory_plan`)."""
    if not (name.isidentifier() and name.isascii()):
        raise ValueError(f"name {name!r} must be a C identifier")
    header, source = generate(model, name)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.c-", dir=out_dir.parent))
    try:
        (tmp / f"{name}.h").write_text(header)
        (tmp / f"{name}.c").write_text(source)
        for f in RUNTIME_FILES:
            shutil.copyfile(runtime_dir() / f, tmp / f)
        if out_dir.exists():
            for p in tmp.iterdir():  # merge into an existing folder (e.g. an exporter's temp dir)
                os.replace(p, out_dir / p.name)
            tmp.rmdir()
        else:
            tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return memory_plan(model)
