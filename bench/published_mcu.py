"""Published BNNs on microcontrollers: RAM, flash and Cortex-M instructions of the default (exact float32)
graph export of re-created published architectures, before and after eBNN's reordering.

    python bench/published_mcu.py [--models samy_bnn,embedia_person,float_stem_mnist] [--cpus CPU,...] [--no-write]

Method: each architecture of tests/helpers/published_models.py MCU_MODELS (WakeVision "Binary Samy" 80x80x3,
EmbedIA person detection 96x96x1, a float-stem 28x28 MNIST BNN; sources cited there) is built with
random weights and batch norm calibrated on random inputs (seed 0; random weights are fine for memory
and cost: neither depends on the values), lowered with keras_ebnn.ir.graph.lower_graph and exported to C.
"before": the same graph with every conv_pool op split back into its unfused ops
(keras_ebnn.passes.graph_fuse.unfuse) and no in-place ops, i.e. the graph C export without this work (each op
materialises its full output). "after": the default export (conv -> affine / activation -> pool ->
sign fused per pooled output, binary weights on float maps as bits, rows streamed between fused convs,
elementwise ops in place). RAM = arena (exporters/graph_c.py memory_plan, = what NAME.c declares) +
stack (measured under QEMU: painted stack reached by NAME_predict), model input excluded (the caller's
array). Flash = what the model adds to a program (bench/targets/cortexm.model_flash: text + data of an
ELF calling NAME_predict minus one that does not, --gc-sections). Instructions: executed per inference,
counted exactly under QEMU (arm-none-eabi-gcc -O2, bench/targets/cortexm.py), mean over 2 inputs, on
Cortex-M7 (the float-stem model also on the FPU-less Cortex-M0+, soft float). Every
build's classes and logits are checked equal, bit for bit, to keras_ebnn.ir.graph_reference's, and the
fused graph's reference logits to the unfused graph's. Binary Samy is also exported with quantize="int8"
(row "int8": keras_ebnn.passes.graph_quant calibrated on the same random inputs; QEMU's int32 logits checked equal
to keras_ebnn.passes.graph_quant.run's), with its Cortex-M7 instructions per kernel entry point (each kernel's
calls bracketed by the harness's markers). "full-res maps": float32 tensors written by a
full-precision conv before its pool (0 = the conv's map is never stored). Writes the "published_mcu"
section of BENCHMARKS.md.
"""
import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from common import md_table, write_section  # noqa: E402

DEFAULT_MODELS = "samy_bnn,embedia_person,float_stem_mnist"
TARGETS = {  # issue 21, exact mode: (RAM bytes, flash bytes, Cortex-M7 instructions) or None
    "samy_bnn": (20000, 8000, 10_000_000),
    "embedia_person": (40000, None, None),
}
N_RUN = 2
CPUS = {"float_stem_mnist": "cortex-m7,cortex-m0plus"}  # default per model (else cortex-m7); --cpus overrides
INT8_MODELS = ("samy_bnn",)  # also exported with quantize="int8" (Cortex-M7 row "int8")


def full_res_maps(graph):
    """Float tensors a full-precision conv writes whose (only) reader is a pool or an op leading to one."""
    cons = graph.consumers()
    out = []
    for op in graph.ops:
        if op.kind not in ("conv", "depthwise"):
            continue
        t = op.output
        while len(cons[t]) == 1 and cons[t][0].kind in ("affine", "activation"):
            t = cons[t][0].output
        if any(c.kind in ("max_pool", "avg_pool", "global_max", "global_avg") for c in cons[t]):
            out.append(op.output)
    return out


def float_macs(graph):
    """Multiply-adds of the full-precision convs / dense layers fused into conv_pool ops (each conv
    position once: pool windows that do not overlap)."""
    total = 0
    for op in graph.ops:
        if op.kind == "conv_pool":
            geom, w = op.params["geometry"], op.params["conv"].params["weights"]
            total += geom.conv_shape[0] * geom.conv_shape[1] * int(np.prod(w.shape))
    return total


def measure(name, graph, x, cpu, work, inplace, int8=False):
    """Export `graph` and run it on `cpu`: dict of the figures (see the module docstring). int8: `graph` is
    an integer-only graph (keras_ebnn.passes.graph_quant), run on the quantized inputs, int32 logits compared."""
    from bench.targets import cortexm
    from keras_ebnn.passes import graph_quant
    from keras_ebnn.ir import graph_reference
    from keras_ebnn.exporters import graph_c
    from keras_ebnn.exporters.c import export_c
    from keras_ebnn.planning.graph_memory import plan_memory
    gm = graph_c.GraphModel(graph)
    if not inplace:  # the export without in-place ops: the arena the C then declares
        real = graph_c.arena_plan
        graph_c.arena_plan = lambda g: plan_memory(g, output_in_arena=graph_c._output_block(g) is None)
    try:
        out = Path(work) / f"{name}_{'int8' if int8 else 'after' if inplace else 'before'}"
        export_c(gm, out, name)
        plan = graph_c.memory_plan(gm)
    finally:
        if not inplace:
            graph_c.arena_plan = real
    if int8:
        r = cortexm.build_and_run(out, name, graph_quant.quantize_input(graph, x[:N_RUN]), cpu=cpu,
                                  workdir=Path(work) / f"build_{name}_{cpu}_int8", flags=["-DSCORE_T=int32_t"])
        ref = graph_quant.run(graph, x[:N_RUN])
        logits_equal = np.array_equal(np.asarray(r["logits"]).view(np.int32), ref["logits"].astype(np.int32))
    else:
        r = cortexm.build_and_run(out, name, x[:N_RUN], cpu=cpu, workdir=Path(work) / f"build_{name}_{cpu}_{inplace}")
        ref = graph_reference.run(graph, x[:N_RUN])
        logits_equal = np.array_equal(np.asarray(r["logits"], dtype=np.float32), ref["logits"])
    if not (np.array_equal(r["classes"], ref["classes"]) and logits_equal):
        raise RuntimeError(f"{name} on {cpu}: C differs from the reference")
    profile = {}
    if int8:  # where the instructions go: each kernel entry point's calls bracketed (cortexm.kernel_instructions)
        import re
        for k in sorted(set(re.findall(r"status = (ebnn_\w+)\(", (out / f"{name}.c").read_text()))):
            profile[k] = cortexm.kernel_instructions(out, name, graph_quant.quantize_input(graph, x[:N_RUN]), cpu=cpu,
                                                     workdir=Path(work) / f"prof_{name}_{k}", flags=["-DSCORE_T=int32_t"],
                                                     kernels=(k,))["kernel_instructions"]
    return {"arena": plan["arena_bytes"], "stack": r["stack_bytes"], "ram": plan["arena_bytes"] + r["stack_bytes"],
            "data": plan["totals"]["flash_data_bytes"],
            "flash": r["model_flash"], "instructions": r["instructions_per_inference"],
            "full_res": len(full_res_maps(graph)), "ops": len(graph.ops), "profile": profile}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=DEFAULT_MODELS)
    ap.add_argument("--cpus", default=None)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    print(__doc__)
    from helpers.published_models import build_mcu
    from keras_ebnn.ir import graph_reference
    from keras_ebnn.ir.graph import lower_graph
    from keras_ebnn.passes.graph_fuse import unfuse
    rows, goals, macs, profiles = [], [], {}, {}
    with tempfile.TemporaryDirectory() as work:
        for name in args.models.split(","):
            model, x = build_mcu(name, n=4)
            after = lower_graph(model, name)
            before = unfuse(after)
            np.testing.assert_array_equal(graph_reference.run(after, x)["logits"],
                                          graph_reference.run(before, x)["logits"])
            for cpu in (args.cpus or CPUS.get(name, "cortex-m7")).split(","):
                b = measure(name, before, x, cpu, work, inplace=False)
                a = measure(name, after, x, cpu, work, inplace=True)
                measured = [("before", b), ("after", a)]
                if name in INT8_MODELS and cpu == "cortex-m7":  # issue 21's integer-only mode
                    from keras_ebnn.passes import graph_quant
                    q = measure(name, graph_quant.quantize_graph(model, x, name), x, cpu, work, True, int8=True)
                    measured.append(("int8", q))
                    profiles[name] = q["profile"]
                for label, m in measured:
                    rows.append([name, cpu, label, f"{m['arena']:,}", f"{m['stack']:,}", f"{m['ram']:,}",
                                 f"{m['flash']:,}", f"{m['data']:,}", f"{m['instructions'] / 1e6:.2f} M",
                                 m["full_res"], "yes"])
                    print(rows[-1], flush=True)
                macs[name] = float_macs(after)
                goal = TARGETS.get(name)
                if goal is not None and cpu == "cortex-m7":
                    ram, flash, ins = goal
                    for label, m in measured[1:]:
                        for what, got, want in (("RAM", m["ram"], ram), ("flash (code + constants)", m["flash"], flash),
                                                ("constants", m["data"], flash),
                                                ("Cortex-M7 instructions", m["instructions"], ins)):
                            if want is not None:
                                goals.append([name, "exact" if label == "after" else label, what, f"<= {want:,}",
                                              f"{got:,.0f}", "met" if got <= want else "NOT met"])
    text = ["## Published BNNs on microcontrollers", "",
            "Default (exact float32) graph exports of re-created published architectures (random weights; "
            "`tests/helpers/published_models.py` cites the sources), before and after eBNN's reordering for "
            "full-precision convs (`keras_ebnn/passes/graph_fuse.py`: conv -> batch norm / activation -> pool -> "
            "sign computed per pooled output, binary weights on float maps as bits, rows streamed between "
            "fused convs) and in-place elementwise ops. RAM = arena + measured stack, model input "
            "excluded; flash = what the model adds to a program; instructions per inference under QEMU "
            "(`-O2`). \"C = ref\": classes and logits bit for bit equal to the graph reference.", "",
            md_table(["model", "core", "export", "arena B", "stack B", "RAM B", "flash B", "constants B",
                      "instructions", "full-res maps", "C = ref"], rows), ""]
    if goals:
        text += ["Issue 21 targets (measured above; the issue's flash figure is model flash, shown both as "
                 "what the model adds to a program and as its constant data alone):", "",
                 md_table(["model", "export", "figure", "target", "measured", ""], goals), "",
                 "CBin-NN on Binary Samy, measured on the same harness (`../shared/REFERENCES.md`): 45.0 M "
                 "instructions on Cortex-M7, 17,420 B flash, ~40 KB RAM, and not Keras's classes (it binarizes "
                 "the second conv's real-valued input and rounds the first conv's weights to 8 bits). In the "
                 f"exact float32 mode the full-precision convs of Binary Samy are {macs.get('samy_bnn', 0) / 1e6:.2f} M "
                 "multiply-adds (binary weights: adds / subtracts), each a separately rounded float32 "
                 "operation to stay bit-exact, i.e. at least a weight load, a multiply (or a test) and an add "
                 f"each: {3 * macs.get('samy_bnn', 0) / 1e6:.1f} M instructions before anything else, so the 10 M "
                 "target is out of reach in this mode. constants B: the model's constant data (exporters/graph_c.py "
                 "memory_plan), part of flash B.", ""]
    for name, prof in profiles.items():
        text += [f"{name} with `quantize=\"int8\"` (row \"int8\"; keras_ebnn.passes.graph_quant, calibrated on the same random "
                 "inputs; the binary-weight conv on the int8 map exported as sign bits, ebnn_conv_s8_bits): Cortex-M7 "
                 "instructions per inference by kernel entry point (each kernel's calls bracketed with the harness's "
                 "markers, bench/targets/cortexm.kernel_instructions): "
                 + ", ".join(f"{k} {v / 1e6:.2f} M" for k, v in sorted(prof.items(), key=lambda kv: -kv[1])) + ".", ""]
    text += ["keras-ebnn's exact and int8 exports of these architectures next to their TFLite Micro + CMSIS-NN "
             "int8 twins and CBin-NN, on Cortex-M7, M4 and M0+: the next section (`bench/published_peers.py`).", ""]
    text = "\n".join(text)
    print(text)
    if not args.no_write:
        write_section("published_mcu", text, "python bench/published_mcu.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
