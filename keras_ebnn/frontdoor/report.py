"""Memory/agreement report written next to every export (`NAME_report.md`, `NAME_memory.png`)."""
from pathlib import Path

from ..ir.blocks import fan_in


def block_macs(block):
    """Multiply-accumulates (binary XNOR-popcount terms for binary blocks) per inference."""
    o = block.weights.shape[0]
    if block.kind in ("input_conv", "binary_conv"):
        ch, cw = block.geometry.conv_shape
        return ch * cw * o * fan_in(block)
    return o * fan_in(block)


def _shape(s):
    return "x".join(str(d) for d in s)


def block_rows(lowered, plan):
    """One dict per block: what the report and `summary()` print."""
    from ..exporters.graph_c import as_graph_model
    rows, in_shape = [], lowered.input.shape
    blocks = [op.params["block"] for op in as_graph_model(lowered).graph.ops]
    for b, p in zip(blocks, plan["blocks"]):
        rows.append({
            "index": p["index"], "kind": b.kind, "layers": ", ".join(b.source_layers),
            "in": _shape(in_shape), "out": _shape(b.out_shape), "macs": block_macs(b),
            "weights": p["weight_bytes"], "params": p["param_bytes"], "flash": p["flash_bytes"],
            "ram": p["ram_bytes"],
        })
        in_shape = b.out_shape
    return rows


def graph_table(plan):
    """The per-op markdown table of a graph export (exporters/graph_c.py memory_plan): each op's output
    tensor (dtype, shape, bytes, arena offset), its constant data and the arena bytes live while it
    runs; then the peak and the arena."""
    lines = ["| # | op | Keras layers | output | dtype | shape | bytes | arena offset | flash B | live B |",
             "|---|---|---|---|---|---|---:|---:|---:|---:|"]
    for r in plan["ops"]:
        where = "caller" if r["offset"] is None else f"{r['offset']:,}"
        if r["kind"] == "reshape":
            where = "shared" if r["offset"] is not None else "caller"
        lines.append(f"| {r['index']} | {r['kind']} | {r['layers'] or '-'} | {r['output']} | {r['dtype']} | "
                     f"{_shape(r['shape'])} | {r['bytes']:,} | {where} | {r['flash_bytes']:,} | "
                     f"{r['live_bytes']:,} |")
    t = plan["totals"]
    lines.append(f"| | **total** | | | | | | | **{t['flash_data_bytes']:,}** | peak **{plan['peak_bytes']:,}** |")
    lines.append("")
    lines.append("Tensor types: bits = packed +-1 (32 per uint32_t word), int = int32 (exact counts and "
                 "binary accumulators; the raw uint8 model input stays in the caller's uint8 array), "
                 "float32. \"caller\": the caller's input or scores "
                 "array; \"shared\": a reshape, same memory as its input. "
                 f"Arena {plan['arena_bytes']:,} B = peak of live tensors {plan['peak_bytes']:,} B"
                 + (f" + {plan['arena_bytes'] - plan['peak_bytes']:,} B the greedy placement could not fill"
                    if plan["arena_bytes"] > plan["peak_bytes"] else "") + ".")
    return "\n".join(lines)


def table(lowered, plan):
    """The per-block markdown table with totals (per op for a graph: `graph_table`)."""
    if not plan["chain"]:
        return graph_table(plan)
    rows = block_rows(lowered, plan)
    t = plan["totals"]
    lines = ["| # | block | Keras layers | in | out | MACs | weights B | thresholds/affine B | flash B | activation RAM B |",
             "|---|---|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['index']} | {r['kind']} | {r['layers']} | {r['in']} | {r['out']} | {r['macs']:,} | "
                     f"{r['weights']:,} | {r['params']:,} | {r['flash']:,} | {r['ram']:,} |")
    lines.append(f"| | **total** | | | | **{sum(r['macs'] for r in rows):,}** | "
                 f"**{sum(r['weights'] for r in rows):,}** | **{sum(r['params'] for r in rows):,}** | "
                 f"**{t['flash_data_bytes']:,}** | **{t['activation_bytes']:,}** |")
    return "\n".join(lines)


def stack_build_text(plan):
    """Which build the plan's stack figure is an upper bound for."""
    from ..exporters.c import STACK_BUILDS
    s = plan["stack"]
    where = "any of " + ", ".join(s["targets"]) if s["target"] == "any" else ", ".join(s["targets"])
    return f"{where}; {STACK_BUILDS[s['build']]}, -O1..-O3 or -Os"


def stack_table_text(lowered):
    """One line: the stack bound per target, default build / small-stack build."""
    from ..exporters.c import STACK_TARGETS, stack_bound
    return "- Stack bound per target, default build / with `-DEBNN_CHUNK=8 -DEBNN_LOW_STACK=1` (slower): " + \
        ", ".join(f"{t} {stack_bound(lowered, t):,} / {stack_bound(lowered, t, 'small'):,} B"
                  for t in STACK_TARGETS) + \
        " (`python -m keras_ebnn.planning.stackcheck OUT --target T` computes it for your build)"


def totals_text(lowered, plan):
    t = plan["totals"]
    inp = lowered.input
    return "\n".join([
        f"- Flash: **{t['flash_bytes']:,} B** = model data {t['flash_data_bytes']:,} B + runtime code "
        f"~{t['code_bytes_estimate']:,} B (estimate; the target's size tool gives the exact figure)",
        f"- RAM: **{t['ram_bytes']:,} B** = activation buffers {t['activation_bytes']:,} B"
        + (f" + kernel scratch {t['kernel_scratch_bytes']:,} B" if t.get("kernel_scratch_bytes") else "")
        + f" + stack <= {t['stack_bytes_estimate']:,} B (upper bound for {stack_build_text(plan)})",
        stack_table_text(lowered),
        f"- Input buffer (caller's): {inp.length} x {'uint8' if inp.dtype.__name__ == 'uint8' else 'float'} = "
        f"{t['input_bytes']:,} B, not counted above",
    ])


def _classes_text(lowered):
    """The report's "Classes:" value: K, or for one output unit its class rule (README "Limits")."""
    if lowered.num_classes != 1:
        return str(lowered.num_classes)
    from ..exporters.c import class_rule_text
    return f"2 ({class_rule_text(lowered)})"


def write(result, folder):
    """Write NAME_report.md (and NAME_memory.png when matplotlib is installed) into `folder`."""
    folder = Path(folder)
    lowered, plan = result.lowered, result.plan
    what = (f"Graph of {len(plan['ops'])} ops (the model is not a chain of fused blocks)"
            if not plan["chain"] else f"Chain of {len(plan['blocks'])} fused blocks")
    md = [f"# {result.name}: keras-ebnn export report", "",
          f"Target: `{result.target}`. Input: {_shape(lowered.input.shape)} ({lowered.input.mode}). "
          f"Classes: {_classes_text(lowered)}. {what}.", "", "## Memory", "", totals_text(lowered, plan), "",
          table(lowered, plan), ""]
    md += _board_section(result)
    notes = [n for n in getattr(result, "notes", []) if not n.startswith("WARNING")]  # warnings: board section
    if notes:
        md += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    png = _chart(result, folder)
    if png is not None:
        md += [f"![memory per {'op' if plan.get('graph') else 'block'}]({png.name})", ""]
    md += ["## Agreement", ""]
    if result.agreement is None and result.accuracy is None:
        md.append("Not verified (no verification data given).")
    else:
        if result.agreement is not None:
            a = result.agreement
            md.append(f"- Reference executor vs Keras on {a.samples} inputs: classes agree on "
                      f"{a.class_agreement * 100:.2f}% ({a.class_flips} differ); hidden-bit mismatch "
                      f"{a.bit_mismatch_total:.2e}" + (f"; max logit difference {a.max_logit_error:.2e}"
                                                        if a.max_logit_error is not None else ""))
        if result.c_checked:
            tol = getattr(result, "c_logit_tolerance", None)
            same = ("identical classes and bit-identical logits" if tol is None else
                    f"identical classes, logits within {tol:g} x (1 + max |logit|) (max difference "
                    f"{result.c_max_logit_diff:.2e}: tanh / sigmoid use the C library's tanhf / expf)")
            md.append(f"- Compiled C (host) vs reference executor: {same if result.c_matches_reference else 'MISMATCH'}")
        if result.accuracy is not None:
            md.append(f"- Accuracy on the verification labels: exported {result.accuracy * 100:.2f}%"
                      + (f", Keras {result.keras_accuracy * 100:.2f}%" if result.keras_accuracy is not None else ""))
    path = folder / f"{result.name}_report.md"
    path.write_text("\n".join(md) + "\n")
    return path


def _board_section(result):
    """The board budget (export(..., board=...)) and the Arduino sketch's inputs, when there are any."""
    md = []
    budget = getattr(result, "budget", None)
    if budget is not None:
        md += ["## Board", ""]
        if getattr(result, "forced", False):
            md += [f"**WARNING: this export does not fit board `{budget.board.name}`; it was written only "
                   "because of `force=True` / `--force`.**", ""]
        md += [f"- {line}" for line in budget.lines()] + [""]
    if getattr(result, "sketch_inputs", None):
        md += [f"Example sketch: {result.sketch_inputs}.", ""]
    return md


def _chart(result, folder):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    if not result.plan["chain"]:
        rows = [{"index": r["index"], "kind": r["kind"], "flash": r["flash_bytes"], "ram": r["ram_bytes"]}
                for r in result.plan["ops"]]
    else:
        rows = block_rows(result.lowered, result.plan)
    labels = [f"{r['index']}:{r['kind']}" for r in rows]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    xs = range(len(rows))
    ax.bar([x - 0.2 for x in xs], [r["flash"] for r in rows], width=0.4, label="flash (weights+thresholds)")
    ax.bar([x + 0.2 for x in xs], [r["ram"] for r in rows], width=0.4,
           label="RAM (output tensor)" if not result.plan["chain"] else "RAM (output bits)")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(labels, rotation=20, fontsize=8)
    ax.set_ylabel("bytes")
    ax.set_title(f"{result.name}: memory per {'op' if result.plan.get('graph') else 'block'}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(folder) / f"{result.name}_memory.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
