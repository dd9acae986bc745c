"""The C pipeline of every export: a fused `keras_ebnn.ir.graph.Graph` -> memory plan -> NAME.h / NAME.c.

Every model is lowered by `keras_ebnn.ir.graph.lower_graph`; a chain of fused blocks (its chain view,
`keras_ebnn.frontend.lowering`, LoweredModel) is the graph of one block op per block (`as_graph_model`:
graph.as_graph / from_lowered). `GraphModel` wraps the graph with the attributes the exporters read
of a `LoweredModel` (name, input: shape / dtype / length / mode, num_classes, softmax), so
`exporters/c.py` export_c / memory_plan / runtime_files, the Arduino and Zephyr exporters and
`keras_ebnn.export()` take either. What makes a chain's export small are choices of this one
pipeline: its blocks run the fused block kernels (with the AVR byte kernels), the planner keeps the
ping-pong layout when no other is smaller, a graph of blocks only gets the chain's header, names
(NAME_b<i>_) and predict stack share, and the code estimate counts what each kernel calls.

The generated NAME.c: one static arena of uint32_t words (`NAME_arena`) laid out by
`keras_ebnn.planning.graph_memory.plan_memory(graph, output_in_arena=...)`; then NAME_predict_scratch() makes
ONE kernel call per op (runtime_c/ebnn.h; the kernels of the graph ops are specified in
runtime_c/README.md) on its planned offsets, in the graph's topological order, and returns the first
negative status of any call (scores not written), else the class:
  * block ops call the chain's fused kernels with the chain exporter's data (`exporters/c.py`
    block_data / _conv_params: the same arrays and layout);
  * a graph ending in an output block lets that kernel write scores and return the class; else the
    float32 logits tensor is computed in the arena, copied to scores (if not NULL) after every op
    succeeded, and the class is ebnn_argmax_f32 of it (first maximum);
  * reshape / Flatten ops generate nothing (the output shares its input's memory);
  * a conv_pool op (keras_ebnn/passes/graph_fuse.py) is one ebnn_conv_pool_f32 call; when its input rows are
    streamed from conv_pool op(s) before it, one loop over its output rows that first has each
    producer compute the rows it needs into its ring (nested for chains of streamed ops);
  * elementwise ops run in place when their input dies (graph_memory.plan_memory inplace_ok);
  * the raw uint8 model input (dtype "int") is read directly by the ops that convert it: an input
    conv block (ebnn_input_conv_u8) or a `to_float` (a plain loop, float32(v) exactly as the
    reference); any other reader gets an int32 copy first (a "widen" loop into the arena).
Tensors in C: bits -> uint32_t words (element i = bit i & 31 of word i >> 5), int -> int32_t,
float32 -> float. Constant arrays are EBNN_CONST (flash on AVR), named NAME_op<i>_<what> (NAME_b<i>_<what>
in a chain of blocks).
An integer-only graph (`keras_ebnn.passes.graph_quant`, export option quantize="int8") uses the int8 kernels
(runtime_c/ebnn_conv_s8.c, ebnn_dense_s8.c, ebnn_quant_s8.c; QUANT_OPS below): int8 tensors are int8_t,
NAME_input_t is int8_t (or the raw uint8_t input), scores are int32_t logits (NAME.h states the input and
output scales), the class is ebnn_argmax_i32 of them; no float code is generated or called.
"""
import copy
import re
from dataclasses import dataclass
from typing import Tuple

import numpy as np

from keras_ebnn.ir.blocks import class_threshold
from keras_ebnn.ir.graph import Op, Tensor
from keras_ebnn.passes.graph_fuse import all_ops, streamed_producer
from keras_ebnn.planning.graph_memory import conv_s8_bits, conv_s8_cache, plan_memory

from . import c_common as chain
from .measured import GRAPH_CODE_BYTES, GRAPH_STACK_BY_TARGET  # measured: exporters/measured.py

# tests/test_graph_targets.py checks the stack bound (GRAPH_STACK_BYTES) against stackcheck.
GRAPH_STACK_BYTES = {target: {build: figures for build in chain.STACK_BUILDS}
                     for target, figures in GRAPH_STACK_BY_TARGET.items()}  # as exporters/c.py STACK_BYTES
WINDOW_STRUCT_BYTES = 22  # sizeof(ebnn_window_t): 11 uint16_t fields, no padding
ACTIVATIONS = {"relu": "EBNN_ACT_RELU", "relu6": "EBNN_ACT_RELU6", "hard_tanh": "EBNN_ACT_HARD_TANH",
               "leaky_relu": "EBNN_ACT_LEAKY_RELU", "tanh": "EBNN_ACT_TANH", "sigmoid": "EBNN_ACT_SIGMOID"}
LIBM_ACTIVATIONS = ("tanh", "sigmoid")  # C uses tanhf / expf: agrees with the reference within tolerance
CTYPES = {"bits": "uint32_t", "int": "int32_t", "float32": "float", "int8": "int8_t"}
CONV_POOL_STRUCT_BYTES = 64  # sizeof(ebnn_conv_pool_t): 3 floats + 2 windows + uint16 + 6 uint8 (AVR too)
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
        if t.dtype == "int8":  # integer-only graph (keras_ebnn.passes.graph_quant): the quantized input
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


def is_chain(graph):
    """True when every op is a fused block (the graph of a keras_ebnn.ir.blocks.LoweredModel): its C and
    report then take the chain's forms (blocks, NAME_b<i>_ arrays, the chain kernels' predict frame)."""
    return bool(graph.ops) and all(op.kind == "block" for op in graph.ops)


def as_graph_model(model):
    """The GraphModel the exporters work on: a GraphModel or a keras_ebnn.ir.graph Graph, or a chain of fused
    blocks (keras_ebnn.ir.blocks.LoweredModel) as the graph of one block op per block (graph.as_graph)."""
    if isinstance(model, GraphModel):
        return model
    from keras_ebnn.ir.graph import as_graph
    return GraphModel(as_graph(model))


def uses_libm(graph):
    """True when an op's C differs from the reference by float rounding (tanh / sigmoid via libm)."""
    return any(op.kind == "activation" and op.params["fn"] in LIBM_ACTIVATIONS for op in all_ops(graph))


# --------------------------------------------------------------------------------------------------
# Preparing the graph for C


def prepare(graph):
    """The graph the C code runs: `graph` itself, or a copy with a "widen" op (raw uint8 input -> an
    int32 tensor in the arena) when an op other than an input conv block or a to_float reads the uint8
    model input."""
    if graph.input_tensor.dtype != "int":
        return graph
    direct = ("to_float", "conv_pool", "requant")  # conv_pool: absorbed to_float (graph_fuse.py input_steps); requant reads uint8
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
    output block writes them into scores; elementwise ops in place when their input dies: the
    affine / activation / add / i32_to_f32 kernels accept out == in)."""
    return plan_memory(graph, inplace_ok=True, output_in_arena=_output_block(graph) is None)


# --------------------------------------------------------------------------------------------------
# Constant data per op


def _window(in_shape, kernel, strides, pad, out_hw, check=True):
    h, w, c = in_shape
    fields = {"in_h": h, "in_w": w, "in_c": c, "kh": kernel[0], "kw": kernel[1], "sh": strides[0],
              "sw": strides[1], "pad_t": pad[0], "pad_l": pad[1], "out_h": out_hw[0], "out_w": out_hw[1]}
    for key, v in fields.items() if check else ():
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
        if "weights_int8" in p:  # float_weights="int8" (keras_ebnn/passes/graph_int8.py): the _w8 kernels
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
    elif kind == "div":
        data["div"] = ("float", np.asarray(p["d"], dtype=np.float32).reshape(-1))
    elif kind in ("max_pool", "global_max", "avg_pool", "global_avg"):
        window = _pool_window(p["geometry"])
    elif kind == "conv_pool":
        data = _conv_pool_data(graph, op)
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
    if op.kind == "conv_pool":
        n += CONV_POOL_STRUCT_BYTES
    if op.kind in ("conv_s8", "depthwise_s8"):  # a fused pool's window, the output stage's struct
        n += WINDOW_STRUCT_BYTES * (op.params.get("pool") is not None) + QOUT_STRUCT_BYTES * bool(op.params.get("stage"))
    return int(n)


ACT_CODES = {"relu": 0, "relu6": 1, "hard_tanh": 2, "leaky_relu": 3, "tanh": 4, "sigmoid": 5}  # EBNN_ACT_*
CP_AFFINE, CP_AFFINE1 = 0x10, 0x11  # ebnn.h EBNN_CP_AFFINE / EBNN_CP_AFFINE1


def _steps(ops, out_c):
    """(step codes, step data floats) of a conv_pool op's affine / activation sub-ops (ebnn.h)."""
    codes, data = [], []
    for o in ops:
        if o.kind == "affine":
            a = np.asarray(o.params["a"], dtype=np.float32).reshape(-1)
            b = np.asarray(o.params["b"], dtype=np.float32).reshape(-1)
            if a.size == 1 and b.size == 1:
                codes.append(CP_AFFINE1)
                data += [a, b]
            else:
                codes.append(CP_AFFINE)
                data += [np.broadcast_to(a, (out_c,)), np.broadcast_to(b, (out_c,))]
        else:
            codes.append(ACT_CODES[o.params["fn"]])
            if o.params["fn"] == "leaky_relu":
                data.append(np.asarray([o.params["alpha"]], dtype=np.float32))
    return codes, (np.concatenate(data).astype(np.float32) if data else np.zeros(0, np.float32))


def _conv_pool_data(graph, op):
    """Constant arrays of a conv_pool op: w (float / int8 / packed bits in storage order), steps, sd,
    and t / flip for a threshold output."""
    p = op.params
    conv = p["conv"]
    out_c = int(conv.params["weights"].shape[-1])
    data = {}
    if conv.params.get("binary_weights"):
        from keras_ebnn.passes.graph_fuse import weight_bytes8
        data["w"] = ("uint8_t", weight_bytes8(op))
    elif "weights_int8" in conv.params:
        data["w"] = ("int8_t", np.asarray(conv.params["weights_int8"], dtype=np.int8))
    else:
        data["w"] = ("float", np.asarray(conv.params["weights"], dtype=np.float32))
    codes, sd = _steps(p["pre"] + p["post"], out_c)
    if codes:
        data["steps"] = ("uint8_t", np.asarray(codes, dtype=np.uint8))
    if sd.size:
        data["sd"] = ("float", sd)
    final = p["final"]
    if final is not None and final.kind == "threshold":
        data["t"] = ("float", np.asarray(final.params["threshold"]).astype(np.float32).reshape(-1))
        flip = np.asarray(final.params["flip"], dtype=bool).reshape(-1)
        data["flip"] = ("uint32_t", chain._words_of_bits(flip[None, :]))
    return data


def _conv_pool_struct(name, op):
    """The ebnn_conv_pool_t of a conv_pool op."""
    from keras_ebnn.passes.graph_fuse import pool_geometry
    p = op.params
    conv = p["conv"]
    pg = pool_geometry(op)
    out_c = int(conv.params["weights"].shape[-1])
    wkind = 2 if conv.params.get("binary_weights") else 1 if "weights_int8" in conv.params else 0
    pool_kind = 1 if p["pool"] is not None and p["pool"].kind in ("avg_pool", "global_avg") else 0
    final = p["final"]
    output = 0 if final is None else 1 if final.kind == "sign" else 2
    in_steps = p.get("input_steps", [])
    in_kind = 0 if not in_steps else 1 if len(in_steps) == 1 else 2  # EBNN_CP_IN_*
    in_a, in_b = (np.float32(np.asarray(in_steps[1].params[k]).reshape(-1)[0]) for k in ("a", "b")) \
        if in_kind == 2 else (np.float32(1), np.float32(0))
    if len(p["pre"]) > 255 or len(p["post"]) > 255 or not 0 < out_c <= 65535:
        raise ValueError(f"conv_pool op {op.output}: too many steps or channels")
    cw = ", ".join(f".{k} = {v}u" for k, v in _conv_window(p["geometry"]).items())
    pw = ", ".join(f".{k} = {v}u" for k, v in _pool_window(pg).items())
    return (f"static const ebnn_conv_pool_t {name} EBNN_CONST = {{.pad_value = "
            f"{chain._c_number('float', conv.params.get('pad_value', 0.0))}, .in_a = {chain._c_number('float', in_a)}, "
            f".in_b = {chain._c_number('float', in_b)}, .conv = {{{cw}}}, .pool = {{{pw}}}, "
            f".out_c = {out_c}u, .weights = {wkind}u, .pool_kind = {pool_kind}u, .n_pre = {len(p['pre'])}u, "
            f".n_post = {len(p['post'])}u, .output = {output}u, .input = {in_kind}u}};\n")


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
    if kind == "conv_pool":
        return "conv_pool"
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
    if "conv_pool" in used:
        used.add("elementwise")  # conv_pool calls the affine / activation kernels
    for key in chain.KERNEL_FILES:
        if key in used and key not in keys:
            keys.append(key)
    return keys


# --------------------------------------------------------------------------------------------------
# Memory plan (exporters/c.py memory_plan: the one plan of every export)


def _op_row(graph, plan, i, op):
    """The memory plan's row of op i (see memory_plan)."""
    t = plan["tensors"][op.output]
    kind = op.kind if op.kind != "block" else op.params["block"].kind
    in_arena = t["offset"] is not None and op.kind != "reshape"
    data, _ = op_data(graph, op)
    flash = op_flash_bytes(graph, op)
    weights = data["w"][1].size * chain.CTYPE_BYTES[data["w"][0]] if "w" in data else 0
    scratch = [b for b in plan["buffers"] if b["kind"] == "scratch" and b["op"] == i]
    return {"index": i, "kind": kind, "layers": ", ".join(op.layers), "output": op.output,
            "dtype": t["dtype"], "shape": tuple(t["shape"]), "bytes": int(t["bytes"]), "offset": t["offset"],
            "flash_bytes": flash, "weight_bytes": int(weights), "param_bytes": int(flash - weights),
            "ram_bytes": int(t["bytes"]) if in_arena else 0, "live_bytes": plan["ops"][i]["live_bytes"],
            "out_bits": int(np.prod(t["shape"])) if in_arena and t["dtype"] == "bits" else 0,
            "buffer_offset": t["offset"] if in_arena else 0,
            "scratch_bytes": scratch[0]["bytes"] if scratch else 0,
            "scratch_offset": scratch[0]["offset"] if scratch else 0}


def code_bytes(graph, plan):
    """Estimated machine code of an export (Cortex-M3 -O2): exporters/c.py CODE_BYTES of the block
    kernels (a sign_float input conv also calls the integer one) and GRAPH_CODE_BYTES of the graph
    kernels it calls, + the generated predict functions."""
    keys = [k for k in kernel_keys(graph) if k != "common"]
    code = chain.CODE_BYTES["common"] + chain.CODE_BYTES["predict"] + \
        chain.CODE_BYTES["predict_per_block"] * sum(1 for o in graph.ops if _op_key(graph, o) is not None)
    code += sum(chain.CODE_BYTES[k] for k in keys if k in chain.CODE_BYTES)  # the fused blocks' kernels
    if any(op.kind == "block" and op.params["block"].kind == "input_conv"
           and op.params["block"].input.mode == "sign_float" for op in graph.ops):
        code += chain.CODE_BYTES["input_conv_int"]  # ebnn_input_conv_f32 dispatches to the integer code
    return code + sum(GRAPH_CODE_BYTES[f] for f in graph_functions(graph, plan))


def memory_plan(model, target=None, build="default"):
    """Flash and RAM of an export (exporters/c.py memory_plan documents the keys), per op:
      chain: True when every op is a fused block (the report then shows blocks);
      ops: one dict per op (C order): index, kind, layers, output, dtype, shape, bytes (the output
           tensor's), offset (in the arena; None: the caller's input / scores, or shared with the
           input by a reshape), flash_bytes (its constant data) = weight_bytes + param_bytes,
           ram_bytes (= bytes when in the arena), live_bytes (arena bytes live while it runs),
           out_bits (bits written into the arena, else 0), buffer_offset (offset, 0 when not in the
           arena), scratch_bytes / scratch_offset (kernel scratch while it runs);
      blocks: = ops (what check_budget and the report name);
      arena: the graph_memory plan (buffers, peak_bytes, order, ...);
      arena_bytes, activation_bytes (the peak of live tensors), peak_bytes (live tensors and scratch),
      totals (exporters/c.py plan_totals; kernel_scratch_bytes = arena - peak of tensors), stack.
    Raises UnsupportedModelError (`check_c_limits`) when a kernel parameter does not fit its C type.
    """
    model = as_graph_model(model)
    check_c_limits(model)
    graph = prepare(model.graph)
    plan = arena_plan(graph)
    ops = [_op_row(graph, plan, i, op) for i, op in enumerate(graph.ops)]
    tensor_peak = max((sum(b["bytes"] for b in plan["buffers"] if b["kind"] == "tensor" and b["first"] <= i <= b["last"])
                       for i in range(len(graph.ops))), default=0)
    arena = plan["arena_bytes"]
    stack = stack_bound(model, target, build)
    data_bytes = sum(o["flash_bytes"] for o in ops)
    totals = chain.plan_totals(model, data_bytes, code_bytes(graph, plan), tensor_peak, arena, stack)
    return {"chain": is_chain(graph), "ops": ops, "blocks": ops, "arena": plan, "arena_bytes": int(arena),
            "activation_bytes": int(tensor_peak), "peak_bytes": int(plan["peak_bytes"]), "totals": totals,
            "stack": {"target": target or "any", "build": build, "bytes": stack,
                      "targets": chain.stack_targets(target)}}


def stack_bound(model, target=None, build="default"):
    """Upper bound of the stack NAME_predict uses (exporters/c.py stack_bound): the deepest chain of the
    kernels it calls (the block kernels' STACK_BYTES, the graph kernels' GRAPH_STACK_BYTES;
    "elementwise_libm" when tanh / sigmoid call tanhf / expf) + the generated functions' share (the
    chain's "predict" when every op is a fused block, else the larger of both), the largest over the
    targets."""
    if build not in chain.STACK_BUILDS:
        raise ValueError(f"unknown build {build!r}; choose one of {', '.join(chain.STACK_BUILDS)}")
    graph = as_graph_model(model).graph
    keys = [k for k in kernel_keys(graph) if k != "common"]
    libm, blocks_only = uses_libm(graph), is_chain(graph)
    best = 0
    for tg in chain.stack_targets(target):
        chain_t, graph_t = chain.STACK_BYTES[tg][build], GRAPH_STACK_BYTES[tg][build]
        per = [chain_t[k] if k in chain_t else graph_t[k + "_libm" if k in ("elementwise", "conv_pool") and libm else k]
               for k in keys]
        predict = chain_t["predict"] if blocks_only else max(chain_t["predict"], graph_t["predict"])
        best = max(best, max(per, default=0) + predict)
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
    if called & {"ebnn_conv_s8", "ebnn_conv_s8_bits", "ebnn_depthwise_s8"}:
        called.add("conv_s8 core")
    if called & {"ebnn_max_pool_s8", "ebnn_avg_pool_s8"}:
        called.add("pool_s8 core")
    if called & {"ebnn_requant", "ebnn_add_s8", "ebnn_concat_s8"}:
        called.add("mbqm")
    if any((graph.tensors[op.output].dtype == "float32" or op.kind == "conv_pool") and op.kind != "block"
           for op in graph.ops):
        called.add("soft_float")
    if "ebnn_conv_pool_f32" in called:
        called |= {"conv_pool helpers", "ebnn_activation_f32"}  # its steps call the activation kernel
        if any("stream_to" in op.params for op in graph.ops if op.kind == "conv_pool"):
            called.add("ebnn_conv_pool_need")
    return sorted(called)


def _unit(graph):
    """What the generated code calls an op: ("block", "b") in a chain, else ("op", "op")."""
    return ("block", "b") if is_chain(graph) else ("op", "op")


def _op_desc(name, graph, i, op):
    kind = op.params["block"].kind if op.kind == "block" else op.kind
    return f"{name}: {_unit(graph)[0]} {i} ({kind} from {', '.join(op.layers) or '-'})"


def avr_reach_problems(model, name):
    """Why the model's constant data cannot be read on AVR (list of sentences with the byte counts;
    empty when it can): more than the reachable 64 KB of flash in total (the model's data plus the
    runtime's tables; other PROGMEM data of the program, e.g. a sketch's sample images, shares the
    same 64 KB), or one array over 32,767 B. The generated C turns these into #errors on AVR and the
    Arduino exporter refuses the export."""
    graph = prepare(as_graph_model(model).graph)
    problems, total = [], 0
    for i, op in enumerate(graph.ops):
        data, window = op_data(graph, op)
        arrays = {f"{name}_{_unit(graph)[1]}{i}_{key}": arr.size * chain.CTYPE_BYTES[ctype]
                  for key, (ctype, arr) in data.items()}
        total += op_flash_bytes(graph, op)
        for array, size in arrays.items():
            if size > chain.AVR_MAX_OBJECT:
                problems.append(f"{array} ({_op_desc(name, graph, i, op)}) is {size:,} B: "
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
    if kind == "div":
        n_d = op_data(graph, op)[0]["div"][1].size
        return _call_lines(f"ebnn_div_f32({t_in.size}u, {c}u, {ins[0]}, {pre}div, {n_d}u, {out})")
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
                f"        const uint32_t channels[{k}] = {{{chans}}};",
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
    if kind == "conv_pool":
        from keras_ebnn.passes.graph_fuse import pool_geometry
        rows = pool_geometry(op)["out_hw"][0]
        return _call_lines(_conv_pool_call(graph, e, op, pre, scratch_offset, "0u", f"{rows}u", "0u"))
    raise ValueError(f"no C for op kind {kind!r}")


def _conv_pool_call(graph, e, op, pre, scratch_offset, row0, row1, in_ring):
    """The ebnn_conv_pool_f32 call of a conv_pool op for output rows [row0, row1) (C expressions)."""
    data = _conv_pool_data(graph, op)
    arg = {k: (f"{pre}{k}" if k in data else "NULL") for k in ("steps", "sd", "t", "flip")}
    out_ring = op.params.get("ring_rows", 0)
    return (f"ebnn_conv_pool_f32(&{pre}cp, {e.ptr(op.inputs[0], const=True)}, {pre}w, {arg['steps']}, {arg['sd']}, "
            f"{arg['t']}, {arg['flip']}, {e.ptr(op.output)}, (uint16_t)({row0}), (uint16_t)({row1}), {in_ring}, "
            f"{out_ring}u, (float *)(arena + {scratch_offset // 4}))")


def _stream_code(graph, e, op, prefix, scratch):
    """C statements of a conv_pool op whose input rows are streamed from the conv_pool op(s) before it
    (keras_ebnn/passes/graph_fuse.py plan_streams): for each output row, each producer first computes the rows
    of its ring the row needs (ebnn_conv_pool_need), recursively."""
    from keras_ebnn.passes.graph_fuse import pool_geometry
    index = {o.output: i for i, o in enumerate(graph.ops)}
    stages = [op]
    while streamed_producer(graph, stages[0]) is not None:
        stages.insert(0, streamed_producer(graph, stages[0]))
    k = len(stages)

    def call(s, row):
        o = stages[s]
        i = index[o.output]
        ring = f"{stages[s - 1].params['ring_rows']}u" if s > 0 else "0u"
        return _call_lines(_conv_pool_call(graph, e, o, prefix(i), scratch[i], row, f"{row} + 1u", ring))

    def ensure(s, count_expr, depth):
        """Lines making stage s compute its rows below count_expr (rows next{s} .. count - 1)."""
        ind = "    " * depth
        lines = [f"{ind}while (next{s} < {count_expr}) {{"]
        if s > 0:
            lines += ensure(s - 1, f"ebnn_conv_pool_need(&{prefix(index[stages[s].output])}cp, next{s})", depth + 1)
        lines += [ind + line for line in call(s, f"next{s}")]
        lines += [f"{ind}    next{s}++;", f"{ind}}}"]
        return lines

    rows = pool_geometry(op)["out_hw"][0]
    lines = ["    {", "        uint32_t r" + "".join(f", next{s} = 0u" for s in range(k - 1)) + ";",
             f"        for (r = 0u; r < {rows}u; r++) {{"]
    lines += ensure(k - 2, f"ebnn_conv_pool_need(&{prefix(index[op.output])}cp, r)", 3)
    lines += ["        " + line for line in call(k - 1, "r")]
    lines += ["        }", "    }"]
    return lines


UINT16_MAX, INT16_MIN, INT16_MAX = 65535, -32768, 32767
MAX_OUTPUT_DENSE_INPUTS = 2 ** 24  # ebnn_output_dense with EBNN_INT_LOGITS: (float)x must be exact


def _op_label(graph, i, op):
    kind = op.kind if op.kind != "block" else f"{op.params['block'].kind} block"
    return f"op {i} ({kind}) of layer(s) {', '.join(repr(n) for n in op.layers) or '-'}"


def _op_c_parameters(graph, op):
    """(C parameter, value, lo, hi, C type) of every narrow kernel parameter an op's call passes."""
    out = []
    t_out = graph.tensors[op.output]
    geom = op.params.get("geometry")
    if op.kind in ("bconv", "bdepthwise", "conv", "depthwise"):
        out += [(f"ebnn_window_t.{k}", v, 0, UINT16_MAX, "uint16_t") for k, v in _window(
            geom.in_shape, geom.kernel, geom.strides, geom.pad, geom.conv_shape, check=False).items()]
        if op.kind in ("bconv", "conv"):
            out.append(("out_c", t_out.shape[-1], 0, UINT16_MAX, "uint16_t"))
        else:
            m = op.params["weights"].shape[0 if op.kind == "bdepthwise" else -1]
            out.append(("mult (depth multiplier)", m, 0, UINT16_MAX, "uint16_t"))
    elif op.kind in ("max_pool", "global_max", "avg_pool", "global_avg"):
        out += [(f"ebnn_window_t.{k}", v, 0, UINT16_MAX, "uint16_t") for k, v in _window(
            geom["in_shape"], geom["pool"], geom["strides"], geom["pad"], geom["out_hw"], check=False).items()]
    elif op.kind == "conv_pool":  # keras_ebnn/passes/graph_fuse.py: the conv's and the pool's windows, out_c
        from keras_ebnn.passes.graph_fuse import pool_geometry
        g, pg = op.params["geometry"], pool_geometry(op)
        out += [(f"ebnn_window_t.{k}", v, 0, UINT16_MAX, "uint16_t") for k, v in _window(
            g.in_shape, g.kernel, g.strides, g.pad, g.conv_shape, check=False).items()]
        out += [(f"pool ebnn_window_t.{k}", v, 0, UINT16_MAX, "uint16_t") for k, v in _window(
            pg["in_shape"], pg["pool"], pg["strides"], pg["pad"], pg["out_hw"], check=False).items()]
        out.append(("ebnn_conv_pool_t.out_c", op.params["conv"].params["weights"].shape[-1], 1, UINT16_MAX, "uint16_t"))
        out += [(f"ebnn_conv_pool_t.n_{k} (steps)", len(op.params[k]), 0, 255, "uint8_t") for k in ("pre", "post")]
    elif op.kind in ("conv_s8", "depthwise_s8") and geom is not None:  # integer-only graphs
        out += [(f"ebnn_window_t.{k}", v, 0, UINT16_MAX, "uint16_t") for k, v in _window(
            geom.in_shape, geom.kernel, geom.strides, geom.pad, geom.conv_shape, check=False).items()]
    elif op.kind == "concat_s8":
        out += [(f"channels[{j}] (ebnn_concat_s8)", graph.tensors[n].shape[-1], 0, UINT16_MAX, "uint16_t")
                for j, n in enumerate(op.inputs)]
    elif op.kind == "block":
        b = op.params["block"]
        if b.kind in ("input_conv", "binary_conv"):
            out += [(f"ebnn_conv_params_t.{k}", v, 0, UINT16_MAX, "uint16_t")
                    for k, v in chain.conv_param_fields(b).items()]
        if b.kind == "input_conv" and b.input.mode == "uint8":
            out += [(f"ebnn_conv_params_t.{k} (input encoding)", getattr(b.input, k), INT16_MIN, INT16_MAX, "int16_t")
                    for k in ("q_mul", "q_add", "pad_q")]
        if b.kind == "output_dense":
            out.append(("n_in (ebnn_output_dense, exact (float) of the count)", b.weights.shape[1], 0,
                        MAX_OUTPUT_DENSE_INPUTS - 1, "below 2^24"))
    return out


def c_limit_problems(model):
    """Kernel parameters of an export (GraphModel or chain LoweredModel) that their C types cannot
    hold, one sentence each naming the op / block and its Keras layers (empty when all fit): window and
    conv-parameter fields and out_c / depth multipliers (uint16_t), the uint8 input encoding (int16_t),
    int tensors' ranges (int32_t), element counts (uint32_t), the output block's input count (2^24)."""
    graph = prepare(as_graph_model(model).graph)
    problems = []
    for i, op in enumerate(graph.ops):
        for what, v, lo, hi, ctype in _op_c_parameters(graph, op):
            if not lo <= int(v) <= hi:
                problems.append(f"{_op_label(graph, i, op)}: {what} = {int(v):,} does not fit the kernel's "
                                f"{ctype} ({lo:,} .. {hi:,})")
    producer = graph.producer()
    for t in graph.tensors.values():
        op = producer.get(t.name)
        where = f"{_op_label(graph, graph.ops.index(op), op)}: " if op is not None else "the input: "
        if t.dtype == "int" and (t.lo < INT32_MIN + 1 or t.hi > INT32_MAX - 1):
            problems.append(f"{where}integer range [{t.lo:,}, {t.hi:,}] of tensor {t.name} does not fit int32_t")
        if t.size >= 2 ** 32 // 32:
            problems.append(f"{where}tensor {t.name} has {t.size:,} elements, too many for uint32_t bit counts")
    return problems


def check_c_limits(model):
    """Raise UnsupportedModelError listing `c_limit_problems` (before any file is written)."""
    from keras_ebnn.errors import UnsupportedModelError
    problems = c_limit_problems(model)
    if problems:
        raise UnsupportedModelError(
            "the C kernels cannot hold this model's parameters: " + "; ".join(problems) + ".",
            hint="Such sizes are beyond the C runtime's parameter types; reduce the layer (fewer channels, "
                 "a smaller kernel or input).", supported=None)


def _hooked(graph, plan):
    """(op index, nbits) of the ops whose output the debug hook reports: every op writing the arena."""
    out = []
    for i, op in enumerate(graph.ops):
        t = graph.tensors[op.output]
        if op.kind != "reshape" and plan["tensors"][op.output]["offset"] is not None and \
                "ring_rows" not in op.params:  # a streamed ring holds a few rows only
            out.append((i, t.size if t.dtype == "bits" else 8 * t.size if t.dtype == "int8" else 32 * t.size))
    return out


def debug_tensors(model):
    """(op index, output tensor name, nbits) per debug-hook call, in call order (see NAME.h)."""
    graph = prepare(model.graph)
    plan = arena_plan(graph)
    return [(i, graph.ops[i].output, nbits) for i, nbits in _hooked(graph, plan)]


def _header(model, graph, name, mplan, hooked):
    """NAME.h: the public API (NAME_predict, NAME_predict_scratch) with the model's sizes; a chain of
    fused blocks describes its blocks, any other graph its ops."""
    guard, blocks_only, t = chain.header_guard(name), is_chain(graph), mplan["totals"]
    in_t = {np.dtype(np.uint8): "uint8_t", np.dtype(np.int8): "int8_t"}.get(np.dtype(model.input.dtype), "float")
    score_t = "int32_t" if _quantized(graph) else "float"
    shape = "x".join(map(str, model.input.shape))
    n_blocks = sum(1 for op in graph.ops if op.kind == "block")
    if blocks_only:
        title = f"""from model '{model.name}'. Do not edit.
 * Blocks: {", ".join(op.params["block"].kind for op in graph.ops)}.
 * Flash: {t['flash_data_bytes']} B of model data; RAM: {mplan['arena_bytes']} B arena
 * ({mplan['activation_bytes']} B activation bits + {t['kernel_scratch_bytes']} B kernel scratch). */"""
        sizes = (f"#define {name}_INPUT_LEN {model.input.length}u /* input values, NHWC {shape} */\n"
                 f"#define {name}_NUM_CLASSES {model.num_classes}\n#define {name}_NUM_BLOCKS {n_blocks}\n")
        unsupported = """a block that the compiled kernel variant cannot run (a kernel returned
 *       EBNN_ERROR_UNSUPPORTED; the generated C stops the build where it can tell, see {name}.c).""".format(name=name)
        hook = f"""/* Test hook (compile everything with -DEBNN_DEBUG_HOOK): when non-NULL, called after each hidden
 * block (0 .. {name}_NUM_BLOCKS - 2) with its output bits: nbits bits in (nbits + 31) / 32 words,
 * bit i = word i >> 5, position i & 31, bit 1 = +1, HWC order (i = (y * W + x) * C + c); the unused
 * high bits of the last word are 0. nbits per block: {", ".join(str(n) for _, n in hooked)}. */
extern void (*{name}_debug_hook)(int block, const uint32_t *bits, uint32_t nbits);"""
    else:
        kinds = ", ".join(dict.fromkeys(r["kind"] for r in mplan["ops"]))
        title = f"""from model '{model.name}' (graph export). Do not edit.
 * {len(graph.ops)} ops: {kinds}.
 * Flash: {t['flash_data_bytes']} B of model data; RAM: {mplan['arena_bytes']} B arena (peak of live
 * tensors {mplan['arena']['peak_bytes']} B). */"""
        sizes = (f"#define {name}_INPUT_LEN {model.input.length}u /* input values, {shape} (channels last) */\n"
                 f"#define {name}_NUM_CLASSES {model.num_classes}\n"
                 f"#define {name}_NUM_BLOCKS {n_blocks} /* fused blocks among the ops */\n"
                 f"#define {name}_NUM_OPS {len(graph.ops)}\n")
        unsupported = "an op that the compiled kernel variant cannot run (a kernel returned EBNN_ERROR_UNSUPPORTED)."
        hook_list = "; ".join(f"{i}: {mplan['ops'][i]['kind']} {graph.tensors[graph.ops[i].output].dtype}"
                              for i, _ in hooked)
        hook = f"""/* Test hook (compile everything with -DEBNN_DEBUG_HOOK): when non-NULL, called after each op that
 * writes a tensor into the arena, with the op's index and its output's words: bits as nbits packed
 * bits (bit i = word i >> 5, position i & 31, channels last), int32 and float tensors as their
 * nbits / 32 raw 32-bit values. Ops reported (index: kind dtype): {hook_list or 'none'}. */
extern void (*{name}_debug_hook)(int op, const uint32_t *bits, uint32_t nbits);"""
    return f"""/* {name}.h - generated by keras-ebnn {title}
#ifndef {guard}
#define {guard}

#include <stdint.h>

#ifdef __cplusplus
extern "C" {{
#endif

{sizes}#define {name}_SCRATCH_SIZE {max(mplan['arena_bytes'], 4)}u /* bytes of scratch for {name}_predict_scratch */
typedef {in_t} {name}_input_t;

{_quant_header(graph, name)}/* Classifies one input; returns the class index ({chain.class_rule_text(model)}), or a negative status:
 *   -1  input NULL ({name}_predict_scratch: or scratch NULL or misaligned);
 *   -2  {unsupported}
 * On a negative status scores are not written. scores may be NULL, else it receives
 * {name}_NUM_CLASSES logits (pre-softmax). Uses the static arena {name}_arena: not reentrant. */
int {name}_predict(const {name}_input_t *input, {score_t} *scores);

/* Same, with caller-provided scratch: {name}_SCRATCH_SIZE bytes aligned for uint32_t (CMSIS-NN
 * style). Reentrant. Same return values. */
int {name}_predict_scratch(const {name}_input_t *input, {score_t} *scores, void *scratch);

#ifdef EBNN_DEBUG_HOOK
{hook}
#endif

#ifdef __cplusplus
}}
#endif

#endif /* {guard} */
"""


def binary_conv_fallback(graph):
    """Indices of the binary conv blocks the byte binary conv cannot run (accumulators beyond int16 or
    sides over 32,767): the generated C compiles the generic binary conv in for them
    (EBNN_BINARY_CONV_FALLBACK), so they run on AVR too, at the cost of its code for that model only."""
    return [i for i, op in enumerate(graph.ops) if op.kind == "block" and op.params["block"].kind == "binary_conv"
            and not (chain._acc16(chain.accumulator_range(op.params["block"]))
                     and max(op.params["block"].geometry.in_shape[:2]) <= 32767)]


def generate(model, name, byte_kernels=True):
    """(header text, source text) of an export (exporters/c.py generate); byte_kernels as for
    exporters/c.py runtime_files."""
    model = as_graph_model(model)
    graph = prepare(model.graph)
    check_c_limits(model)
    plan = arena_plan(graph)
    mplan = memory_plan(model)
    blocks_only = is_chain(graph)
    unit, prefix = _unit(graph)
    out_block = _output_block(graph)
    hooked = _hooked(graph, plan)
    score_t = "int32_t" if _quantized(graph) else "float"
    if _quantized(graph) and class_threshold(model) is not None:
        from keras_ebnn.errors import UnsupportedModelError
        raise UnsupportedModelError("quantize='int8' exports return int32 score vectors: a one-unit (sigmoid / logit) "
                                    "classifier is supported by the default float32 export only", supported=None)
    header = _header(model, graph, name, mplan, hooked)
    _, sources = chain.kernel_sources(kernel_keys(as_graph_model(model).graph), byte_kernels)
    src = chain._source_prologue(name, "" if blocks_only else " (graph export)", f"{unit}(s)",
                                 binary_conv_fallback(graph), byte_kernels)
    if "ebnn_elementwise.c" in sources:
        if uses_libm(graph):
            ops = ", ".join(f"op {i} {sub.params['fn']} ({', '.join(sub.layers or op.layers) or '-'})"
                            for i, op in enumerate(graph.ops)
                            for sub in ([op] + list(op.params["ops"]) if op.kind == "conv_pool" else [op])
                            if sub.kind == "activation" and sub.params["fn"] in LIBM_ACTIVATIONS)
            src += ["/* tanh / sigmoid: ebnn_activation_f32 calls tanhf / expf (link with -lm on hosts) */",
                    "#if defined(EBNN_ACT_LIBM) && !EBNN_ACT_LIBM",
                    f'#error "{name}: {ops} need(s) tanhf / expf: do not build this model with -DEBNN_ACT_LIBM=0"',
                    "#endif"]
        else:
            src += ["/* no tanh / sigmoid: the activation kernel references no libm function (no -lm needed) */",
                    "#ifndef EBNN_ACT_LIBM", "#define EBNN_ACT_LIBM 0", "#endif"]
    src += chain._source_includes(name, _limit_checks(graph, name), avr_reach_problems(model, name),
                                  byte_kernels, sources)
    scratch = {b["op"]: b["offset"] for b in plan["buffers"] if b["kind"] == "scratch"}
    e = _Emitter(graph, plan)
    body = []
    for i, op in enumerate(graph.ops):
        pre = f"{name}_{prefix}{i}_"
        t = graph.tensors[op.output]
        where = plan["tensors"][op.output]["offset"]
        if blocks_only:
            src.append(f"/* block {i}: {op.params['block'].kind} -> {'x'.join(map(str, t.shape))} "
                       f"(from {', '.join(op.layers) or '-'}) */")
        else:
            kind = op.kind if op.kind != "block" else f"block {op.params['block'].kind}"
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
        if op.kind == "conv_pool":
            src.append(_conv_pool_struct(f"{pre}cp", op))
            if "stream_to" in op.params:  # computed row by row inside its reader's loop
                body.append(f"    /* op {i}: streamed into {op.params['stream_to']} (ring of "
                            f"{op.params['ring_rows']} rows) */")
                continue
            if streamed_producer(graph, op) is not None:
                body += _stream_code(graph, e, op, lambda j: f"{name}_op{j}_", scratch)
                if any(h == i for h, _ in hooked):
                    body.append(f"    DEBUG_HOOK({i}, (const uint32_t *)(arena + {where // 4}), {dict(hooked)[i]}u);")
                continue
        if op is out_block:
            body.append(chain.output_dense_return(model, op.params["block"], e.ptr(op.inputs[0], const=True), pre))
            continue
        body += _op_code(graph, e, i, op, pre, scratch.get(i))
        if any(h == i for h, _ in hooked):
            nbits = dict(hooked)[i]
            words = f"arena + {where // 4}" if t.dtype == "bits" else f"(const uint32_t *)(arena + {where // 4})"
            body.append(f"    DEBUG_HOOK({i}, {words}, {nbits}u);")
    if out_block is None:
        k = model.num_classes
        logits = e.ptr(graph.output, const=True)
        body += ["    if (scores != NULL) {", "        uint32_t k;", f"        const {score_t} *logits = {logits};",
                 f"        for (k = 0u; k < {k}u; k++)", "            scores[k] = logits[k];", "    }",
                 (f"    return ebnn_argmax_{'i32' if _quantized(graph) else 'f32'}({k}u, {logits});"
                  if class_threshold(model) is None else
                  f"    return ({logits})[0] >= {class_threshold(model)!r}f ? 1 : 0; /* {chain.class_rule_text(model)} */")]
    src.append(f"static uint32_t {name}_arena[{max(plan['arena_bytes'] // 4, 1)}];")
    src.append("")
    src.append(f"#ifdef EBNN_DEBUG_HOOK\nvoid (*{name}_debug_hook)(int {unit}, const uint32_t *bits, uint32_t nbits) = NULL;\n"
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


def _limit_checks(graph, name):
    """The #error lines of exporters/c.py kernel_limits for the graph's input conv block (the only
    block whose limits depend on the build)."""
    blocks = [(i, op.params["block"]) for i, op in enumerate(graph.ops)
              if op.kind == "block" and op.params["block"].kind == "input_conv"]
    return [line for cond, msg in chain.kernel_limits(blocks, name)
            for line in (f"#if {cond}", f'#error "{msg}"', "#endif")]


# --------------------------------------------------------------------------------------------------
# Integer-only graphs (export(..., quantize="int8"), keras_ebnn/passes/graph_quant.py)

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
    bits = conv_s8_bits(op)
    if bits is not None:  # binary weights: sign nibbles and magnitudes (ebnn_conv_s8_bits)
        data["w"] = ("uint8_t", bits[0].astype(np.int64))
        data["mag"] = ("int32_t", bits[1])
    elif kind == "conv_s8":  # rows of k4 int8 per output channel, little-endian in words (ebnn_conv_s8.c)
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
        rows = f"{conv_s8_cache(op)[0]}u, " if kind == "conv_s8" else ""  # the row cache's rows (0: none)
        if conv_s8_bits(op) is not None:
            return _call_lines(f"ebnn_conv_s8_bits(&{pre}win, {pool}, {ins[0]}, {p['zp']}, {p['pad_q']}, {pre}w, "
                               f"{pre}mag, {pre}bias, {per}u, {qkind}, {q}, {target}, {rows}{scratch})")
        return _call_lines(f"ebnn_{kind}(&{pre}win, {pool}, {ins[0]}, {p['zp']}, {p['pad_q']}, {pre}w, {pre}bias, "
                           f"{per}u, {qkind}, {q}, {target}, {rows}{scratch})")
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
