"""C back end for graphs: a fused `keras_ebnn.graph.Graph` -> NAME.h / NAME.c (same public API as a chain).

A model the chain lowering (`keras_ebnn.lowering`) cannot take -- residual `Add`, `Concatenate`,
full-precision layers, average / global pooling, 1-D inputs -- is lowered with
`keras_ebnn.graph.lower_graph` and exported here. `GraphModel` wraps the graph with the attributes the
exporters read of a `LoweredModel` (name, input: shape / dtype / length / mode, num_classes,
softmax), so `exporters/c.py` export_c / memory_plan / runtime_files, the Arduino and Zephyr exporters
and `keras_ebnn.export()` take either.

The generated NAME.c: one static arena of uint32_t words (`NAME_arena`) laid out by
`keras_ebnn.graph_memory.plan_memory(graph, output_in_arena=...)`; then NAME_predict_scratch() makes
ONE kernel call per op (runtime_c/ebnn.h; the kernels of the graph ops are specified in
runtime_c/README.md) on its planned offsets, in the graph's topological order, and returns the first
negative status of any call (scores not written), else the class:
  * block ops call the chain's fused kernels with the chain exporter's data (`exporters/c.py`
    block_data / _conv_params: the same arrays and layout);
  * a graph ending in an output block lets that kernel write scores and return the class; else the
    float32 logits tensor is computed in the arena, copied to scores (if not NULL) after every op
    succeeded, and the class is ebnn_argmax_f32 of it (first maximum);
  * reshape / Flatten ops generate nothing (the output shares its input's memory);
  * the raw uint8 model input (dtype "int") is read directly by the ops that convert it: an input
    conv block (ebnn_input_conv_u8) or a `to_float` (a plain loop, float32(v) exactly as the
    reference); any other reader gets an int32 copy first (a "widen" loop into the arena).
Tensors in C: bits -> uint32_t words (element i = bit i & 31 of word i >> 5), int -> int32_t,
float32 -> float, int8 -> int8_t. Constant arrays are EBNN_CONST (flash on AVR), named NAME_op<i>_<what>.
An integer-only graph (`keras_ebnn.graph_quant`, export option quantize="int8") uses the int8 kernels
(runtime_c/ebnn_conv_s8.c, ebnn_dense_s8.c, ebnn_quant_s8.c; QUANT_OPS below): NAME_input_t is int8_t
(or the raw uint8_t input), scores are int32_t logits (NAME.h states the input and output scales), the
class is ebnn_argmax_i32 of them; no float code is generated or called.
"""
import copy
import re
from dataclasses import dataclass
from typing import Tuple

import numpy as np

from keras_ebnn.graph import Op, Tensor
from keras_ebnn.graph_memory import plan_memory

from . import c as chain

# Stack bound, in bytes, of each graph kernel file's deepest call chain (entry point + helpers +
# library routines: soft float, tanhf / expf) and of what a generated graph NAME_predict adds, per MCU
# target: the maximum over both builds ("default", "small": exporters/c.py STACK_BUILDS, whose options
# the graph kernel files do not read) and over -O1, -O2, -O3 and -Os of keras_ebnn.stackcheck's chains
# on the graph exports `python bench/graph_stack.py` builds (arm-none-eabi-gcc 12.2, avr-gcc 5.4),
# rounded up to 16 B. "elementwise_libm": with tanh / sigmoid compiled in (EBNN_ACT_LIBM=1). conv_s8,
# dense_s8, quant_s8: the integer-only kernel files (quantize="int8"), from `python bench/graph_stack.py
# --int8` (int8 exports of six random graphs, the same targets, levels and builds).
# tests/test_graph_targets.py checks the bound against stackcheck.
GRAPH_STACK_BY_TARGET = {
    "cortex-m0plus": {"binary_acc": 304, "conv_f32": 288, "dense_f32": 112, "pool": 208, "elementwise": 96, "elementwise_libm": 144, "conv_s8": 432, "dense_s8": 96, "quant_s8": 208, "predict": 128},
    "cortex-m3": {"binary_acc": 288, "conv_f32": 272, "dense_f32": 80, "pool": 192, "elementwise": 112, "elementwise_libm": 160, "conv_s8": 400, "dense_s8": 96, "quant_s8": 160, "predict": 128},
    "cortex-m4": {"binary_acc": 288, "conv_f32": 256, "dense_f32": 64, "pool": 160, "elementwise": 96, "elementwise_libm": 80, "conv_s8": 400, "dense_s8": 96, "quant_s8": 160, "predict": 128},
    "avr": {"binary_acc": 208, "conv_f32": 208, "dense_f32": 80, "pool": 176, "elementwise": 64, "elementwise_libm": 64, "conv_s8": 304, "dense_s8": 64, "quant_s8": 176, "predict": 64},
}
GRAPH_STACK_BYTES = {target: {build: figures for build in chain.STACK_BUILDS}
                     for target, figures in GRAPH_STACK_BY_TARGET.items()}  # as exporters/c.py STACK_BYTES
WINDOW_STRUCT_BYTES = 22  # sizeof(ebnn_window_t): 11 uint16_t fields, no padding
ACTIVATIONS = {"relu": "EBNN_ACT_RELU", "relu6": "EBNN_ACT_RELU6", "hard_tanh": "EBNN_ACT_HARD_TANH",
               "leaky_relu": "EBNN_ACT_LEAKY_RELU", "tanh": "EBNN_ACT_TANH", "sigmoid": "EBNN_ACT_SIGMOID"}
LIBM_ACTIVATIONS = ("tanh", "sigmoid")  # C uses tanhf / expf: agrees with the reference within tolerance
CTYPES = {"bits": "uint32_t", "int": "int32_t", "float32": "float", "int8": "int8_t"}
# Machine code, in bytes, of each graph kernel entry point and of the static helpers they share,
# measured like exporters/c.py CODE_BYTES (arm-none-eabi-gcc 12.2 -mcpu=cortex-m3 -mthumb -O2
# -ffunction-sections, `arm-none-eabi-nm -S` of each runtime_c/ebnn_<op>.c object); the linker drops
# the entry points a model does not call. "soft_float": libgcc's single-precision add / sub / mul /
# div / compare / int-to-float routines that any float32 op pulls in on an FPU-less core (Cortex-M0+/M3,
# measured in a linked M3 program); 0 where the core has an FPU.
GRAPH_CODE_BYTES = {
    "ebnn_bconv_acc": 540, "ebnn_bdense_acc": 140, "ebnn_bdepthwise_acc": 506, "binary_acc helpers": 440,
    "ebnn_conv_f32": 44, "ebnn_conv_w8": 48, "ebnn_depthwise_f32": 44, "ebnn_depthwise_w8": 40, "conv core": 628,
    "ebnn_dense_f32": 196, "ebnn_dense_w8": 192,
    "ebnn_avg_pool_f32": 330, "ebnn_max_pool_bits": 262, "ebnn_max_pool_f32": 300, "ebnn_max_pool_i32": 218,
    "ebnn_sum_pool_bits": 230, "ebnn_sum_pool_i32": 228, "pool helpers": 304,
    "ebnn_activation_f32": 256, "ebnn_add_f32": 56, "ebnn_affine_f32": 190, "ebnn_argmax_f32": 82,
    "ebnn_bits_to_f32": 84, "ebnn_concat_bits": 232, "ebnn_concat_f32": 148, "ebnn_i32_to_f32": 200,
    "ebnn_sign_f32": 78, "ebnn_sign_i32": 66, "ebnn_threshold_f32": 162, "ebnn_threshold_i32": 178,
    "soft_float": 1450,
    # integer-only graphs (quantize="int8"), measured the same way
    "ebnn_conv_s8": 58, "ebnn_depthwise_s8": 58, "conv_s8 core": 2700, "ebnn_dense_s8": 216,
    "ebnn_requant": 252, "ebnn_lut_s8": 46, "ebnn_add_s8": 230, "ebnn_concat_s8": 336, "ebnn_bits_to_s8": 62,
    "ebnn_threshold_s8": 170, "ebnn_argmax_i32": 50, "mbqm": 212, "ebnn_max_pool_s8": 20, "ebnn_avg_pool_s8": 18,
    "pool_s8 core": 448,
}
INT32_MIN, INT32_MAX = -(2 ** 31), 2 ** 31 - 1


@dataclass
class GraphInput:
    """What the exporters read of a LoweredModel's InputSpec."""
    shape: Tuple[int, ...]
    dtype: type  # np.uint8 (raw bytes, the model starts with Rescaling) or np.float32
    mode: str  # "uint8" or "float"

    @property
    def length(self):
        return int(np.prod(self.shape))


class GraphModel:
    """A lowered graph as the exporters take it (see the module docstring)."""
    kind = "graph"

    def __init__(self, graph):
        self.graph = graph
        t = graph.input_tensor
        uint8 = t.dtype == "int"
        self.input = GraphInput(tuple(t.shape), np.uint8 if uint8 else np.float32, "uint8" if uint8 else "float")
        if t.dtype == "int8":  # integer-only graph (keras_ebnn.graph_quant): the quantized input
            self.input = GraphInput(tuple(t.shape), np.int8, "int8")

    @property
    def name(self):
        return self.graph.name

    @name.setter
    def name(self, value):
        self.graph.name = value

    @property
    def num_classes(self):
        return self.graph.num_classes

    @property
    def softmax(self):
        return self.graph.softmax


def uses_libm(graph):
    """True when an op's C differs from the reference by float rounding (tanh / sigmoid via libm)."""
    return any(op.kind == "activation" and op.params["fn"] in LIBM_ACTIVATIONS for op in graph.ops)


# --------------------------------------------------------------------------------------------------
# Preparing the graph for C


def prepare(graph):
    """The graph the C code runs: `graph` itself, or a copy with a "widen" op (raw uint8 input -> an
    int32 tensor in the arena) when an op other than an input conv block or a to_float reads the uint8
    model input."""
    if graph.input_tensor.dtype != "int":
        return graph
    direct = ("to_float", "requant")  # requant: ebnn_requant reads the uint8 input
    readers = [op for op in graph.ops if graph.input in op.inputs]
    if all(op.kind in direct or (op.kind == "block" and op.params["block"].kind == "input_conv") for op in readers):
        return graph
    g = copy.copy(graph)
    g.tensors = dict(graph.tensors)
    wide = "input_i32"
    t = graph.input_tensor
    g.tensors[wide] = Tensor(wide, t.shape, "int", lo=t.lo, hi=t.hi)
    ops = [Op("widen", [graph.input], wide, {}, [])]
    for op in graph.ops:
        if graph.input in op.inputs and op.kind not in direct and op.kind != "block":
            op = Op(op.kind, [wide if n == graph.input else n for n in op.inputs], op.output, op.params, op.layers)
        ops.append(op)
    g.ops = ops
    return g


def _output_block(graph):
    """The output block op writing the logits into the caller's scores, or None."""
    last = graph.ops[-1] if graph.ops else None
    if last is not None and last.kind == "block" and last.params["block"].kind == "output_dense" \
            and last.output == graph.output:
        return last
    return None


def arena_plan(graph):
    """graph_memory.plan_memory of the graph as the C code lays it out (logits in the arena unless an
    output block writes them into scores)."""
    return plan_memory(graph, output_in_arena=_output_block(graph) is None)


# --------------------------------------------------------------------------------------------------
# Constant data per op


def _window(in_shape, kernel, strides, pad, out_hw):
    h, w, c = in_shape
    fields = {"in_h": h, "in_w": w, "in_c": c, "kh": kernel[0], "kw": kernel[1], "sh": strides[0],
              "sw": strides[1], "pad_t": pad[0], "pad_l": pad[1], "out_h": out_hw[0], "out_w": out_hw[1]}
    for key, v in fields.items():
        if not 0 <= int(v) <= 65535:
            raise ValueError(f"window {key}={v} does not fit uint16")
    return {k: int(v) for k, v in fields.items()}


def _conv_window(geom):
    return _window(geom.in_shape, geom.kernel, geom.strides, geom.pad, geom.conv_shape)


def _pool_window(geom):
    return _window(geom["in_shape"], geom["pool"], geom["strides"], geom["pad"], geom["out_hw"])


def _int_threshold(t, lo, hi, flip):
    """Integer thresholds with the reference's bits for every value of [lo, hi]: x >= t <=> x >= ceil(t);
    clamped into [d_min, d_max + 1] of the compared values (x, or -x for flipped channels)."""
    t = np.asarray(t, dtype=np.float64)
    if np.isnan(t).any():
        raise ValueError("NaN threshold")
    dmin = np.where(flip, -hi, lo)
    dmax = np.where(flip, -lo, hi)
    out = np.clip(np.ceil(t), dmin, dmax + 1).astype(np.int64)
    return np.clip(out, INT32_MIN + 1, INT32_MAX)


def op_data(graph, op):
    """Constant data of one op: dict suffix -> (C type, numpy array), and the window struct (dict of
    ebnn_window_t fields) or None. Block ops: exporters/c.py block_data (+ `params`, the geometry)."""
    p, kind = op.params, op.kind
    data, window = {}, None
    if kind == "block":
        return chain.block_data(p["block"]), None
    if kind in QUANT_OPS or (kind in ("threshold", "max_pool", "global_max") and
                             graph.tensors[op.inputs[0]].dtype == "int8"):
        return _quant_op_data(graph, op)
    if kind == "bconv":
        w = np.asarray(p["weights"], dtype=bool)  # (O, KH, KW, C): taps (ky, kx, c) per filter
        data["w"] = ("uint32_t", chain._words_of_bits(w.reshape(w.shape[0], -1)))
        window = _conv_window(p["geometry"])
    elif kind == "bdepthwise":
        w = np.asarray(p["weights"], dtype=bool)  # (M, KH, KW, C) -> channel j = c * M + m: taps (ky, kx)
        m, kh, kw, c = w.shape
        data["w"] = ("uint32_t", chain._words_of_bits(w.transpose(3, 0, 1, 2).reshape(c * m, kh * kw)))
        window = _conv_window(p["geometry"])
    elif kind == "bdense":
        data["w"] = ("uint32_t", chain._words_of_bits(np.asarray(p["weights"], dtype=bool)))  # (O, N)
    elif kind in ("conv", "depthwise", "dense"):
        if "weights_int8" in p:  # float_weights="int8" (keras_ebnn/graph_int8.py): the _w8 kernels
            data["w"] = ("int8_t", np.asarray(p["weights_int8"], dtype=np.int8))
        else:
            data["w"] = ("float", np.asarray(p["weights"], dtype=np.float32))
        if kind != "dense":
            window = _conv_window(p["geometry"])
    elif kind == "to_float":
        src = graph.tensors[op.inputs[0]]
        if src.dtype == "int" and src.divisor is not None:
            d = np.asarray(src.divisor, dtype=np.int64).reshape(-1)
            if d.min() < 1 or d.max() > INT32_MAX:
                raise ValueError(f"divisor out of range in {op.output}")
            data["div"] = ("int32_t", d)
    elif kind == "affine":
        a = np.asarray(p["a"], dtype=np.float32).reshape(-1)
        b = np.asarray(p["b"], dtype=np.float32).reshape(-1)
        if a.size != b.size:  # one of them per channel: store both per channel
            c = graph.tensors[op.output].shape[-1]
            a, b = np.broadcast_to(a, (c,)).copy(), np.broadcast_to(b, (c,)).copy()
        data["a"], data["b"] = ("float", a), ("float", b)
    elif kind in ("max_pool", "global_max", "avg_pool", "global_avg"):
        window = _pool_window(p["geometry"])
    elif kind == "threshold":
        src = graph.tensors[op.inputs[0]]
        flip = np.asarray(p["flip"], dtype=bool).reshape(-1)
        if src.dtype == "float32":
            data["t"] = ("float", np.asarray(p["threshold"]).astype(np.float32))  # as the reference compares
        else:
            data["t"] = ("int32_t", _int_threshold(p["threshold"], src.lo, src.hi, flip))
        data["flip"] = ("uint32_t", chain._words_of_bits(flip[None, :]))
    return data, window


def op_flash_bytes(graph, op):
    data, window = op_data(graph, op)
    n = sum(arr.size * chain.CTYPE_BYTES[ctype] for ctype, arr in data.values())
    if window is not None:
        n += WINDOW_STRUCT_BYTES
    if op.kind == "block" and op.params["block"].kind in ("input_conv", "binary_conv"):
        n += chain.PARAMS_STRUCT_BYTES
    if op.kind in ("conv_s8", "depthwise_s8"):  # a fused pool's window, the output stage's struct
        n += WINDOW_STRUCT_BYTES * (op.params.get("pool") is not None) + QOUT_STRUCT_BYTES * bool(op.params.get("stage"))
    return int(n)


# --------------------------------------------------------------------------------------------------
# Kernels


def _op_key(graph, op):
    """The runtime kernel key (exporters/c.py KERNEL_FILES) of an op, or None (no kernel)."""
    kind = op.kind
    if kind == "block":
        b = op.params["block"]
        if b.kind == "input_conv":
            return "input_conv_int" if b.input.dtype == np.uint8 else "input_conv_f32"
        return b.kind
    if kind in ("bconv", "bdense", "bdepthwise"):
        return "binary_acc"
    if kind in ("conv_s8", "depthwise_s8"):
        return "conv_s8"
    if kind == "dense_s8":
        return "dense_s8"
    if kind in QUANT_OPS or (kind in ("threshold", "max_pool", "global_max") and
                             graph.tensors[op.inputs[0]].dtype == "int8"):
        return "quant_s8"
    if kind in ("conv", "depthwise"):
        return "conv_f32"
    if kind == "dense":
        return "dense_f32"
    if kind in ("max_pool", "global_max", "avg_pool", "global_avg"):
        return "pool"
    if kind in ("reshape", "widen") or (kind == "to_float" and op.inputs[0] == graph.input):
        return None  # no kernel (alias, or a plain loop over the raw uint8 input)
    return "elementwise"


def kernel_keys(graph):
    """The kernel keys of exporters/c.py KERNEL_FILES a graph's C uses, in include order."""
    g = prepare(graph)
    keys = ["common"]
    used = {_op_key(g, op) for op in g.ops}
    if _output_block(g) is None:
        used.add("quant_s8" if _quantized(g) else "elementwise")  # ebnn_argmax_i32 / ebnn_argmax_f32
    for key in chain.KERNEL_FILES:
        if key in used and key not in keys:
            keys.append(key)
    return keys


# --------------------------------------------------------------------------------------------------
# Memory plan (the same keys as exporters/c.py memory_plan, per op instead of per block)


def memory_plan(model, target=None, build="default"):
    """Flash and RAM of a graph export: the keys of exporters/c.py memory_plan that the report, the
    budgets and the boards read, plus graph-specific ones:
      graph: True;
      ops: one dict per op (C order): index, kind, layers, output, dtype, shape, bytes (the output
           tensor's), offset (in the arena; None: the caller's input / scores, or shared with the
           input by a reshape), flash_bytes (its constant data), ram_bytes (= bytes when in the arena),
           live_bytes (arena bytes live while it runs);
      blocks: = ops (what check_budget names);
      arena: the graph_memory plan (buffers, peak_bytes, order, ...);
      arena_bytes, activation_bytes (the peak of live tensors; = arena_bytes when the planner reaches
      the peak), totals (as exporters/c.py; kernel_scratch_bytes = arena - peak of tensors).
    Stack: `stack_bound`.
    """
    graph = prepare(model.graph)
    plan = arena_plan(graph)
    ops = []
    for i, op in enumerate(graph.ops):
        t = plan["tensors"][op.output]
        kind = op.kind if op.kind != "block" else op.params["block"].kind
        in_arena = t["offset"] is not None and op.kind != "reshape"
        ops.append({"index": i, "kind": kind, "layers": ", ".join(op.layers), "output": op.output,
                    "dtype": t["dtype"], "shape": tuple(t["shape"]), "bytes": int(t["bytes"]),
                    "offset": t["offset"], "flash_bytes": op_flash_bytes(graph, op),
                    "ram_bytes": int(t["bytes"]) if in_arena else 0, "live_bytes": plan["ops"][i]["live_bytes"]})
    tensor_peak = max((sum(b["bytes"] for b in plan["buffers"] if b["kind"] == "tensor" and b["first"] <= i <= b["last"])
                       for i in range(len(graph.ops))), default=0)
    arena = plan["arena_bytes"]
    keys = [k for k in kernel_keys(model.graph) if k != "common"]
    code = chain.CODE_BYTES["common"] + chain.CODE_BYTES["predict"] + \
        chain.CODE_BYTES["predict_per_block"] * sum(1 for o in graph.ops if _op_key(graph, o) is not None)
    code += sum(chain.CODE_BYTES[k] for k in keys if k in chain.CODE_BYTES)  # the chain's block kernels
    code += sum(GRAPH_CODE_BYTES[f] for f in graph_functions(graph, plan))
    targets = chain.stack_targets(target)
    stack = stack_bound(model, target, build)
    data_bytes = sum(o["flash_bytes"] for o in ops)
    totals = chain.plan_totals(model, data_bytes, code, tensor_peak, arena, stack)
    return {"graph": True, "ops": ops, "blocks": ops, "arena": plan, "arena_bytes": int(arena),
            "activation_bytes": int(tensor_peak), "peak_bytes": int(plan["peak_bytes"]), "totals": totals,
            "stack": {"target": target or "any", "build": build, "bytes": stack, "targets": targets}}


def stack_bound(model, target=None, build="default"):
    """Upper bound of the stack a graph's NAME_predict uses, like exporters/c.py stack_bound for a
    chain: the deepest chain of the kernels it calls (the chain kernels' STACK_BYTES, the graph kernels'
    GRAPH_STACK_BYTES; "elementwise_libm" when tanh / sigmoid call tanhf / expf) + the larger
    "predict" share, the largest over the targets."""
    keys = [k for k in kernel_keys(model.graph) if k != "common"]
    libm = uses_libm(model.graph)
    best = 0
    for tg in chain.stack_targets(target):
        chain_t, graph_t = chain.STACK_BYTES[tg][build], GRAPH_STACK_BYTES[tg][build]
        per = [chain_t[k] if k in chain_t else graph_t["elementwise_libm" if k == "elementwise" and libm else k]
               for k in keys]
        best = max(best, max(per, default=0) + max(chain_t["predict"], graph_t["predict"]))
    return best


def graph_functions(graph, plan):
    """The graph kernels (and shared helpers, "soft_float") the generated code calls: keys of
    GRAPH_CODE_BYTES."""
    e = _Emitter(graph, plan)
    called = set()
    for i, op in enumerate(graph.ops):
        if op.kind == "block":
            continue
        called |= set(re.findall(r"\b(ebnn_\w+)\(", "\n".join(_op_code(graph, e, i, op, "", 0))))
    if _output_block(graph) is None:
        called.add("ebnn_argmax_i32" if _quantized(graph) else "ebnn_argmax_f32")
    if any(f.startswith(("ebnn_bconv", "ebnn_bdense", "ebnn_bdepthwise")) for f in called):
        called.add("binary_acc helpers")
    if called & {"ebnn_conv_f32", "ebnn_conv_w8", "ebnn_depthwise_f32", "ebnn_depthwise_w8"}:
        called.add("conv core")  # the float32 / int8-weight conv and depthwise entry points share one core
    if any("_pool_" in f and not f.endswith("_s8") for f in called):
        called.add("pool helpers")
    if called & {"ebnn_conv_s8", "ebnn_depthwise_s8"}:
        called.add("conv_s8 core")
    if called & {"ebnn_max_pool_s8", "ebnn_avg_pool_s8"}:
        called.add("pool_s8 core")
    if called & {"ebnn_requant", "ebnn_add_s8", "ebnn_concat_s8"}:
        called.add("mbqm")
    if any(graph.tensors[op.output].dtype == "float32" and op.kind != "block" for op in graph.ops):
        called.add("soft_float")
    return sorted(called)


def avr_reach_problems(model, name):
    """exporters/c.py avr_reach_problems for a graph: the constant data must lie in the 64 KB that
    pgm_read_* reaches, and no array may exceed 32,767 B."""
    graph = prepare(model.graph)
    problems, total = [], 0
    for i, op in enumerate(graph.ops):
        data, window = op_data(graph, op)
        arrays = {f"{name}_op{i}_{key}": arr.size * chain.CTYPE_BYTES[ctype] for key, (ctype, arr) in data.items()}
        total += op_flash_bytes(graph, op)
        for array, size in arrays.items():
            if size > chain.AVR_MAX_OBJECT:
                problems.append(f"{array} (op {i} {op.kind} from {', '.join(op.layers) or '-'}) is {size:,} B: "
                                f"AVR arrays are limited to {chain.AVR_MAX_OBJECT:,} B")
    if total + chain.RUNTIME_CONST_BYTES_AVR > chain.AVR_FLASH_REACH:
        problems.insert(0, f"{name}: {total:,} B of constant model data + {chain.RUNTIME_CONST_BYTES_AVR} B of "
                           f"runtime tables = {total + chain.RUNTIME_CONST_BYTES_AVR:,} B exceed the "
                           f"{chain.AVR_FLASH_REACH:,} B of flash that AVR reads with pgm_read_* (16-bit addresses)")
    return problems


# --------------------------------------------------------------------------------------------------
# Source generation


def _window_struct(name, fields):
    body = ", ".join(f".{k} = {v}u" for k, v in fields.items())
    return f"static const ebnn_window_t {name} EBNN_CONST = {{{body}}};\n"


class _Emitter:
    """Pointer expressions of tensors (arena offsets, the caller's input) for the kernel calls."""

    def __init__(self, graph, plan):
        self.g, self.plan = graph, plan

    def ptr(self, name, const=False):
        t = self.g.tensors[name]
        off = self.plan["tensors"][name]["offset"]
        q = "const " if const else ""
        if off is None:  # the caller's input (or a reshape of it; `prepare` leaves only readers of
            return "input"  # a uint8 input that take it as uint8_t)
        assert off % 4 == 0
        if t.dtype == "bits":
            return f"arena + {off // 4}"
        return f"({q}{CTYPES[t.dtype]} *)(arena + {off // 4})"

    def n(self, name):
        return self.g.tensors[name].size


def _wtype(params):
    """Kernel suffix of a full-precision op: w8 for int8 weights, else f32."""
    return "w8" if "weights_int8" in params else "f32"


def _call_lines(call):
    return [f"    status = {call};", "    if (status != EBNN_OK)", "        return status;"]


def _op_code(graph, e, i, op, pre, scratch_offset):
    """C statements of op i (list of lines); `pre` = the op's constant data prefix."""
    p, kind = op.params, op.kind
    ins = [e.ptr(t, const=True) for t in op.inputs] if kind not in ("to_float", "widen") or \
        op.inputs[0] != graph.input else []
    out = None if kind == "reshape" else e.ptr(op.output)
    t_out = graph.tensors[op.output]
    t_in = graph.tensors[op.inputs[0]]
    c = t_out.shape[-1] if t_out.shape else 1
    if kind == "reshape":
        return [f"    /* op {i}: reshape {op.inputs[0]} -> {op.output}: same memory */"]
    if kind == "widen" or (kind == "to_float" and op.inputs[0] == graph.input):
        ctype = "int32_t" if kind == "widen" else "float"
        return ["    {", "        uint32_t i;", f"        {ctype} *out = {out};",
                f"        for (i = 0u; i < {t_in.size}u; i++)", f"            out[i] = ({ctype})input[i];", "    }"]
    if kind == "block":
        b = p["block"]
        src = op.inputs[0]
        if b.kind == "input_conv":
            fn = "ebnn_input_conv_u8" if b.input.dtype == np.uint8 else "ebnn_input_conv_f32"
            if src != graph.input:
                raise ValueError("an input conv block reads the model input")
            return _call_lines(f"{fn}(&{pre}params, input, {pre}w, {pre}t, {pre}flip, {out})")
        if b.kind == "binary_conv":
            return _call_lines(f"ebnn_binary_conv(&{pre}params, {ins[0]}, {pre}w, {pre}t, {pre}flip, {out}, "
                               f"arena + {scratch_offset // 4})")
        if b.kind == "binary_dense":
            fn = "ebnn_binary_dense16" if chain.block_data(b)["t"][0] == "int16_t" else "ebnn_binary_dense"
            return _call_lines(f"{fn}({b.weights.shape[1]}u, {b.weights.shape[0]}u, {ins[0]}, {pre}w, {pre}t, {out})")
        raise ValueError("an output block must be the graph's last op, writing the logits")
    if kind in QUANT_OPS or (kind in ("threshold", "max_pool", "global_max") and t_in.dtype == "int8"):
        return _quant_op_code(graph, e, op, pre, ins, out, scratch_offset)
    if kind == "bconv":
        return _call_lines(f"ebnn_bconv_acc(&{pre}win, {ins[0]}, {pre}w, {c}u, {int(p['geometry'].pad_value)}u, {out})")
    if kind == "bdepthwise":
        m = p["weights"].shape[0]
        return _call_lines(f"ebnn_bdepthwise_acc(&{pre}win, {ins[0]}, {pre}w, {m}u, {int(p['geometry'].pad_value)}u, "
                           f"{out})")
    if kind == "bdense":
        n_in = t_in.shape[-1]
        rows = t_in.size // n_in
        return _call_lines(f"ebnn_bdense_acc({rows}u, {n_in}u, {c}u, {ins[0]}, {pre}w, {out})")
    if kind == "conv":
        return _call_lines(f"ebnn_conv_{_wtype(p)}(&{pre}win, {ins[0]}, {pre}w, {c}u, "
                           f"{chain._c_number('float', p['pad_value'])}, {out})")
    if kind == "depthwise":
        m = p["weights"].shape[-1]
        return _call_lines(f"ebnn_depthwise_{_wtype(p)}(&{pre}win, {ins[0]}, {pre}w, {m}u, "
                           f"{chain._c_number('float', p['pad_value'])}, {out})")
    if kind == "dense":
        n_in = t_in.shape[-1]
        return _call_lines(f"ebnn_dense_{_wtype(p)}({t_in.size // n_in}u, {n_in}u, {c}u, {ins[0]}, {pre}w, {out})")
    if kind == "to_float":
        if t_in.dtype == "bits":
            return _call_lines(f"ebnn_bits_to_f32({t_in.size}u, {ins[0]}, {out})")
        data, _ = op_data(graph, op)
        if "div" in data:
            return _call_lines(f"ebnn_i32_to_f32({t_in.size}u, {c}u, {ins[0]}, {pre}div, {data['div'][1].size}u, {out})")
        return _call_lines(f"ebnn_i32_to_f32({t_in.size}u, {c}u, {ins[0]}, NULL, 0u, {out})")
    if kind == "affine":
        n_ab = op_data(graph, op)[0]["a"][1].size
        return _call_lines(f"ebnn_affine_f32({t_in.size}u, {c}u, {ins[0]}, {pre}a, {pre}b, {n_ab}u, {out})")
    if kind == "activation":
        alpha = chain._c_number("float", p.get("alpha", 0.0))
        return _call_lines(f"ebnn_activation_f32({t_in.size}u, {ACTIVATIONS[p['fn']]}, {alpha}, {ins[0]}, {out})")
    if kind == "add":
        lines = _call_lines(f"ebnn_add_f32({t_out.size}u, {ins[0]}, {ins[1]}, {out})")
        for other in ins[2:]:  # ((a + b) + c): accumulate in the output
            lines += _call_lines(f"ebnn_add_f32({t_out.size}u, {e.ptr(op.output, const=True)}, {other}, {out})")
        return lines
    if kind == "concat":
        bits = t_out.dtype == "bits"
        ctype = "uint32_t" if bits else "float"
        chans = ", ".join(f"{graph.tensors[n].shape[-1]}u" for n in op.inputs)
        k = len(op.inputs)
        return ["    {", f"        const {ctype} *const inputs[{k}] = {{{', '.join(ins)}}};",
                f"        const uint16_t channels[{k}] = {{{chans}}};",
                *["    " + line for line in _call_lines(
                    f"ebnn_concat_{'bits' if bits else 'f32'}({t_out.size // c}u, {k}u, inputs, channels, {out})")],
                "    }"]
    if kind in ("max_pool", "global_max"):
        suffix = {"bits": "bits", "int": "i32", "float32": "f32"}[t_in.dtype]
        return _call_lines(f"ebnn_max_pool_{suffix}(&{pre}win, {ins[0]}, {out})")
    if kind in ("avg_pool", "global_avg"):
        fn = {"bits": "ebnn_sum_pool_bits", "int": "ebnn_sum_pool_i32", "float32": "ebnn_avg_pool_f32"}[t_in.dtype]
        return _call_lines(f"{fn}(&{pre}win, {ins[0]}, {out})")
    if kind == "sign":
        return _call_lines(f"ebnn_sign_{'f32' if t_in.dtype == 'float32' else 'i32'}({t_in.size}u, {ins[0]}, {out})")
    if kind == "threshold":
        fn = "ebnn_threshold_f32" if t_in.dtype == "float32" else "ebnn_threshold_i32"
        return _call_lines(f"{fn}({t_in.size}u, {c}u, {ins[0]}, {pre}t, {pre}flip, {out})")
    raise ValueError(f"no C for op kind {kind!r}")


def _check_ranges(graph):
    for t in graph.tensors.values():
        if t.dtype == "int" and (t.lo < INT32_MIN + 1 or t.hi > INT32_MAX - 1):
            raise ValueError(f"tensor {t.name}: integer range [{t.lo}, {t.hi}] does not fit int32")
        if t.size >= 2 ** 32 // 32:
            raise ValueError(f"tensor {t.name} is too large for uint32_t element counts")


def _hooked(graph, plan):
    """(op index, nbits) of the ops whose output the debug hook reports: every op writing the arena."""
    out = []
    for i, op in enumerate(graph.ops):
        t = graph.tensors[op.output]
        if op.kind != "reshape" and plan["tensors"][op.output]["offset"] is not None:
            out.append((i, t.size if t.dtype == "bits" else 8 * t.size if t.dtype == "int8" else 32 * t.size))
    return out


def debug_tensors(model):
    """(op index, output tensor name, nbits) per debug-hook call, in call order (see NAME.h)."""
    graph = prepare(model.graph)
    plan = arena_plan(graph)
    return [(i, graph.ops[i].output, nbits) for i, nbits in _hooked(graph, plan)]


def generate(model, name, byte_kernels=True):
    """(header text, source text) of a GraphModel; byte_kernels as for exporters/c.py runtime_files."""
    graph = prepare(model.graph)
    _check_ranges(graph)
    plan = arena_plan(graph)
    mplan = memory_plan(model)
    up = name.upper()
    in_t = {np.dtype(np.uint8): "uint8_t", np.dtype(np.int8): "int8_t"}.get(np.dtype(model.input.dtype), "float")
    score_t = "int32_t" if _quantized(graph) else "float"
    out_block = _output_block(graph)
    hooked = _hooked(graph, plan)
    hook_list = "; ".join(f"{i}: {graph.ops[i].kind if graph.ops[i].kind != 'block' else graph.ops[i].params['block'].kind}"
                          f" {graph.tensors[graph.ops[i].output].dtype}" for i, _ in hooked)
    kinds = ", ".join(dict.fromkeys(r["kind"] for r in mplan["ops"]))
    header = f"""/* {name}.h - generated by keras-ebnn from model '{model.name}' (graph export). Do not edit.
 * {len(graph.ops)} ops: {kinds}.
 * Flash: {mplan['totals']['flash_data_bytes']} B of model data; RAM: {mplan['arena_bytes']} B arena (peak of live
 * tensors {mplan['arena']['peak_bytes']} B). */
#ifndef {up}_H
#define {up}_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {{
#endif

#define {name}_INPUT_LEN {model.input.length}u /* input values, {"x".join(map(str, model.input.shape))} (channels last) */
#define {name}_NUM_CLASSES {model.num_classes}
#define {name}_NUM_BLOCKS {sum(1 for op in graph.ops if op.kind == "block")} /* fused blocks among the ops */
#define {name}_NUM_OPS {len(graph.ops)}
#define {name}_SCRATCH_SIZE {max(plan['arena_bytes'], 4)}u /* bytes of scratch for {name}_predict_scratch */
typedef {in_t} {name}_input_t;
{_quant_header(graph, name)}
/* Classifies one input; returns the class index (argmax, first maximum wins), or a negative status:
 *   -1  input NULL ({name}_predict_scratch: or scratch NULL or misaligned);
 *   -2  an op that the compiled kernel variant cannot run (a kernel returned EBNN_ERROR_UNSUPPORTED).
 * On a negative status scores are not written. scores may be NULL, else it receives
 * {name}_NUM_CLASSES logits (pre-softmax). Uses the static arena {name}_arena: not reentrant. */
int {name}_predict(const {name}_input_t *input, {score_t} *scores);

/* Same, with caller-provided scratch: {name}_SCRATCH_SIZE bytes aligned for uint32_t (CMSIS-NN
 * style). Reentrant. Same return values. */
int {name}_predict_scratch(const {name}_input_t *input, {score_t} *scores, void *scratch);

#ifdef EBNN_DEBUG_HOOK
/* Test hook (compile everything with -DEBNN_DEBUG_HOOK): when non-NULL, called after each op that
 * writes a tensor into the arena, with the op's index and its output's words: bits as nbits packed
 * bits (bit i = word i >> 5, position i & 31, channels last), int32 and float tensors as their
 * nbits / 32 raw 32-bit values. Ops reported (index: kind dtype): {hook_list or 'none'}. */
extern void (*{name}_debug_hook)(int op, const uint32_t *bits, uint32_t nbits);
#endif

#ifdef __cplusplus
}}
#endif

#endif /* {up}_H */
"""
    _, sources = chain.runtime_files(model, byte_kernels)
    fallback = [i for i, op in enumerate(graph.ops) if op.kind == "block" and op.params["block"].kind == "binary_conv"
                and not (chain._acc16(chain.accumulator_range(op.params["block"]))
                         and max(op.params["block"].geometry.in_shape[:2]) <= 32767)]
    src = chain._source_prologue(name, " (graph export)", "op(s)", fallback, byte_kernels)
    if "ebnn_elementwise.c" in sources:
        if uses_libm(graph):
            src += ["/* tanh / sigmoid: ebnn_activation_f32 calls tanhf / expf (link with -lm on hosts) */"]
        else:
            src += ["/* no tanh / sigmoid: the activation kernel references no libm function (no -lm needed) */",
                    "#ifndef EBNN_ACT_LIBM", "#define EBNN_ACT_LIBM 0", "#endif"]
    src += chain._source_includes(name, _limit_checks(model, graph, name), avr_reach_problems(model, name),
                                  byte_kernels, sources)
    scratch = {b["op"]: b["offset"] for b in plan["buffers"] if b["kind"] == "scratch"}
    e = _Emitter(graph, plan)
    body = []
    for i, op in enumerate(graph.ops):
        pre = f"{name}_op{i}_"
        kind = op.kind if op.kind != "block" else f"block {op.params['block'].kind}"
        t = graph.tensors[op.output]
        where = plan["tensors"][op.output]["offset"]
        src.append(f"/* op {i}: {kind} -> {op.output} {t.dtype} {'x'.join(map(str, t.shape))}"
                   f"{'' if where is None else f' at arena byte {where}'} (from {', '.join(op.layers) or '-'}) */")
        data, window = op_data(graph, op)
        for key, (ctype, arr) in data.items():
            src.append(chain._c_array(f"{pre}{key}", ctype, arr))
        if window is not None:
            src.append(_window_struct(f"{pre}win", window))
        src += _quant_structs(op, pre)
        if op.kind == "block" and op.params["block"].kind in ("input_conv", "binary_conv"):
            src.append(chain._conv_params(f"{pre}params", op.params["block"]))
        if op is out_block:
            b = op.params["block"]
            body.append(f"    return ebnn_output_dense({b.weights.shape[1]}u, {b.weights.shape[0]}u, "
                        f"{e.ptr(op.inputs[0], const=True)}, {pre}w, {pre}scale, {pre}offset, scores);")
            continue
        body += _op_code(graph, e, i, op, pre, scratch.get(i))
        if any(h == i for h, _ in hooked):
            nbits = dict(hooked)[i]
            body.append(f"    DEBUG_HOOK({i}, (const uint32_t *)(arena + {where // 4}), {nbits}u);")
    if out_block is None:
        k = model.num_classes
        logits = e.ptr(graph.output, const=True)
        body += ["    if (scores != NULL) {", "        uint32_t k;", f"        const {score_t} *logits = {logits};",
                 f"        for (k = 0u; k < {k}u; k++)", "            scores[k] = logits[k];", "    }",
                 f"    return ebnn_argmax_{'i32' if _quantized(graph) else 'f32'}({k}u, {logits});"]
    src.append(f"static uint32_t {name}_arena[{max(plan['arena_bytes'] // 4, 1)}];")
    src.append("")
    src.append(f"#ifdef EBNN_DEBUG_HOOK\nvoid (*{name}_debug_hook)(int op, const uint32_t *bits, uint32_t nbits) = NULL;\n"
               f"#define DEBUG_HOOK(i, buf, nbits) if ({name}_debug_hook != NULL) {name}_debug_hook(i, buf, nbits)\n"
               "#else\n#define DEBUG_HOOK(i, buf, nbits) (void)0\n#endif\n")
    text = "\n".join(body)
    decl = "\n    int status;" if "status = " in text else ""
    src.append(f"""int {name}_predict_scratch(const {name}_input_t *input, {score_t} *scores, void *scratch)
{{
    uint32_t *arena = (uint32_t *)scratch;{decl}
    if (input == NULL || scratch == NULL || ((uintptr_t)scratch % EBNN_WORD_ALIGN) != 0u)
        return -1;
{text}
}}

int {name}_predict(const {name}_input_t *input, {score_t} *scores)
{{
    return {name}_predict_scratch(input, scores, {name}_arena);
}}
""")
    return header, "\n".join(src)


def _limit_checks(model, graph, name):
    """exporters/c.py kernel_limits for the graph's input conv block (the only block whose limits
    depend on the build): the same #error lines."""
    from keras_ebnn.blocks import LoweredModel
    blocks = [op.params["block"] for op in graph.ops if op.kind == "block" and op.params["block"].kind == "input_conv"]
    if not blocks:
        return []
    fake = LoweredModel(name=name, input=blocks[0].input, blocks=blocks)
    return chain._limit_checks(fake, name)


# --------------------------------------------------------------------------------------------------
# Integer-only graphs (export(..., quantize="int8"), keras_ebnn/graph_quant.py)

QUANT_OPS = ("conv_s8", "depthwise_s8", "dense_s8", "requant", "lut", "add_s8", "concat_s8", "bits_to_s8",
             "avg_pool_s8", "global_avg_s8")
Q_TYPES = {"int": "EBNN_Q_I32", "int8": "EBNN_Q_S8"}


def _quantized(graph):
    return getattr(graph, "quant", None) is not None and "output_scale" in graph.quant


def _quant_header(graph, name):
    """NAME.h lines of an integer-only graph: how to quantize the input, what the scores are."""
    if not _quantized(graph):
        return ""
    q = graph.quant
    lines = ["/* Integer-only export (quantize=\"int8\"): no floating-point arithmetic. scores are int32 logits;",
             f" * real logit = scores[k] * {name}_OUTPUT_SCALE (the class needs no conversion). */",
             f"#define {name}_SCORES_INT32 1",
             f"#define {name}_OUTPUT_SCALE {q['output_scale']!r} /* a number for the reader: the code never uses it */"]
    if q["input"] is not None:
        s, zp = q["input"]
        lines += [f"/* The input is the quantized model input: q = clamp(round(x / {name}_INPUT_SCALE) + "
                  f"{name}_INPUT_ZERO_POINT, -128, 127)", " * (round half away from zero), x the float input Keras takes. */",
                  f"#define {name}_INPUT_SCALE {s!r}", f"#define {name}_INPUT_ZERO_POINT {zp}"]
    else:
        lines += ["/* The input is the raw uint8 model input (the model starts with Rescaling), as in the float export. */"]
    return "\n".join(lines) + "\n"


def _quant_op_data(graph, op):
    p, kind = op.params, op.kind
    data, window = {}, None
    if kind == "conv_s8":  # rows of k4 int8 per output channel, little-endian in words (ebnn_conv_s8.c)
        w = np.asarray(p["weights"], dtype=np.int64)
        rows = w.reshape(-1, w.shape[-1]).T
        k4 = -(-rows.shape[1] // 4) * 4
        padded = np.zeros((rows.shape[0], k4), np.int64)
        padded[:, :rows.shape[1]] = rows
        grouped = padded.reshape(padded.shape[0], -1, 4)[:, :, [0, 2, 1, 3]]  # taps (0, 2, 1, 3) per group
        data["w"] = ("uint32_t", grouped.astype(np.int8).view(np.uint8).reshape(-1, 4).astype(np.uint32)
                     @ np.array([1, 1 << 8, 1 << 16, 1 << 24], np.uint32))
    if kind in ("depthwise_s8", "dense_s8"):
        data["w"] = ("int8_t", np.asarray(p["weights"], dtype=np.int64))
    if kind in ("conv_s8", "depthwise_s8", "dense_s8"):
        data["bias"] = ("int32_t", np.asarray(p["bias"], dtype=np.int64))
        if kind != "dense_s8":
            window = _conv_window(p["geometry"])
        stage = p.get("stage")
        if stage is not None and stage["kind"] == "requant":
            data["m"] = ("int32_t", np.asarray(stage["M"], dtype=np.int64))
            data["shift"] = ("int8_t", np.asarray(stage["shift"], dtype=np.int64))
            data["offset"] = ("int32_t", np.asarray(stage["offset"], dtype=np.int64))
        elif stage is not None:
            flip = np.asarray(stage["flip"], dtype=bool).reshape(-1)
            data["t"] = ("int32_t", _int_threshold(stage["threshold"], stage["acc_lo"], stage["acc_hi"], flip))
            data["flip"] = ("uint32_t", chain._words_of_bits(flip[None, :]))
    elif kind == "requant":
        data["m"] = ("int32_t", np.asarray(p["M"], dtype=np.int64))
        data["shift"] = ("int8_t", np.asarray(p["shift"], dtype=np.int64))
        data["offset"] = ("int32_t", np.asarray(p["offset"], dtype=np.int64))
    elif kind == "lut":
        data["table"] = ("int8_t", np.asarray(p["table"], dtype=np.int64))
    elif kind in ("add_s8", "concat_s8"):
        data["zp"] = ("int32_t", np.asarray(p["zp_in"], dtype=np.int64))
        data["m"] = ("int32_t", np.asarray(p["M_in"], dtype=np.int64))
        data["shift"] = ("int8_t", np.asarray(p["shift_in"], dtype=np.int64))
        if kind == "concat_s8":
            data["copy"] = ("uint8_t", np.asarray(p["copy"], dtype=np.int64))
    elif kind in ("avg_pool_s8", "global_avg_s8", "max_pool", "global_max"):
        window = _pool_window(p["geometry"])
    elif kind == "threshold":  # on int8: integer thresholds (graph_quant computes them)
        flip = np.asarray(p["flip"], dtype=bool).reshape(-1)
        data["t"] = ("int32_t", _int_threshold(p["threshold"], -128, 127, flip))
        data["flip"] = ("uint32_t", chain._words_of_bits(flip[None, :]))
    return data, window


def _quant_op_code(graph, e, op, pre, ins, out, scratch_offset=None):
    p, kind = op.params, op.kind
    t_out, t_in = graph.tensors[op.output], graph.tensors[op.inputs[0]]
    c = t_out.shape[-1] if t_out.shape else 1
    if kind in ("conv_s8", "depthwise_s8"):
        per = p["weights"].shape[-1]
        stage = p.get("stage")
        qkind = {None: "EBNN_QOUT_I32", "requant": "EBNN_QOUT_S8", "threshold": "EBNN_QOUT_BITS"}[
            None if stage is None else stage["kind"]]
        pool = f"&{pre}pool" if p.get("pool") is not None else "NULL"
        q = f"&{pre}qout" if stage is not None else "NULL"
        scratch = "NULL" if scratch_offset is None else f"(int32_t *)(arena + {scratch_offset // 4})"
        target = out if t_out.dtype != "bits" else e.ptr(op.output)
        return _call_lines(f"ebnn_{kind}(&{pre}win, {pool}, {ins[0]}, {p['zp']}, {p['pad_q']}, {pre}w, {pre}bias, "
                           f"{per}u, {qkind}, {q}, {target}, {scratch})")
    if kind == "dense_s8":
        n_in = t_in.shape[-1]
        return _call_lines(f"ebnn_dense_s8({t_in.size // n_in}u, {n_in}u, {c}u, {ins[0]}, {p['zp']}, {pre}w, {pre}bias, "
                           f"{out})")
    if kind == "requant":
        in_type = "EBNN_Q_U8" if op.inputs[0] == graph.input and t_in.dtype == "int" else Q_TYPES[t_in.dtype]
        lo = "INT32_MIN" if p["lo"] == INT32_MIN else str(p["lo"])
        return _call_lines(f"ebnn_requant({t_in.size}u, {len(p['M'])}u, {ins[0]}, {in_type}, {p['zp_in']}, {pre}m, {pre}shift, "
                           f"{pre}offset, {p['zp_out']}, {lo}, {p['hi']}, {out}, {Q_TYPES[t_out.dtype]})")
    if kind == "lut":
        return _call_lines(f"ebnn_lut_s8({t_in.size}u, {ins[0]}, {pre}table, {out})")
    if kind == "bits_to_s8":
        return _call_lines(f"ebnn_bits_to_s8({t_in.size}u, {ins[0]}, {out})")
    if kind in ("add_s8", "concat_s8"):
        k = len(op.inputs)
        lines = ["    {", f"        const int8_t *const inputs[{k}] = {{{', '.join(ins)}}};"]
        if kind == "add_s8":
            call = (f"ebnn_add_s8({t_out.size}u, {k}u, inputs, {pre}zp, {pre}m, {pre}shift, {p['M_out']}, "
                    f"{p['shift_out']}, {p['zp_out']}, {out})")
        else:
            chans = ", ".join(f"{graph.tensors[n].shape[-1]}u" for n in op.inputs)
            lines.append(f"        const uint16_t channels[{k}] = {{{chans}}};")
            call = (f"ebnn_concat_s8({t_out.size // c}u, {k}u, inputs, channels, {pre}zp, {pre}m, {pre}shift, "
                    f"{pre}copy, {p['zp_out']}, {out})")
        return lines + ["    " + line for line in _call_lines(call)] + ["    }"]
    if kind in ("avg_pool_s8", "global_avg_s8"):
        return _call_lines(f"ebnn_avg_pool_s8(&{pre}win, {ins[0]}, {p['zp']}, {out})")
    if kind in ("max_pool", "global_max"):
        return _call_lines(f"ebnn_max_pool_s8(&{pre}win, {ins[0]}, {out})")
    if kind == "threshold":
        return _call_lines(f"ebnn_threshold_s8({t_in.size}u, {c}u, {ins[0]}, {pre}t, {pre}flip, {out})")
    raise ValueError(f"no C for op kind {kind!r}")


QOUT_STRUCT_BYTES = 36  # sizeof(ebnn_qout_t) with 32-bit pointers (6 pointers or int32, 3 int32)


def _quant_structs(op, pre):
    """The fused pool window and output-stage struct of a fused int8 conv (else nothing)."""
    if op.kind not in ("conv_s8", "depthwise_s8"):
        return []
    p, out = op.params, []
    if p.get("pool") is not None:
        out.append(_window_struct(f"{pre}pool", _pool_window(p["pool"])))
    stage = p.get("stage")
    if stage is not None:  # pointers to the EBNN_CONST arrays: the struct itself is plain const data
        if stage["kind"] == "requant":
            lo = "INT32_MIN" if stage["lo"] == INT32_MIN else str(stage["lo"])
            body = (f"{pre}m, {pre}shift, {pre}offset, {stage['zp_out']}, {lo}, {stage['hi']}, NULL, NULL")
        else:
            body = f"NULL, NULL, NULL, 0, 0, 0, {pre}t, {pre}flip"
        out.append(f"static const ebnn_qout_t {pre}qout = {{{body}}};\n")
    return out
