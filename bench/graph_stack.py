"""Stack bounds of the graph kernels per MCU target: the GRAPH_STACK_BY_TARGET table of
exporters/measured.py (what bench/stack.py is for the chain kernels' STACK_BYTES).

    python bench/graph_stack.py [--targets avr,cortex-m3] [--jobs 2] [--int8]

Method (as bench/stack.py): the graph exports of the re-created published Larq models that are not
chains (tests/helpers/published_models.py), the 1-D sensor graph of tests/test_graph_targets.py and a model with
unfused tanh / sigmoid (tests/test_graph_c.py) are analysed by keras_ebnn.planning.stackcheck for each target,
-O1/-O2/-O3/-Os and the "default" and "small" builds. Per graph kernel file: the deepest chain from any
of its entry points (library routines such as soft float, tanhf and expf included), the maximum over
levels, models and both builds (the graph kernel files do not read the "small" build's options);
"elementwise_libm" / "conv_pool_libm" are the elementwise and conv_pool files of the models with tanh /
sigmoid (EBNN_ACT_LIBM=1), "elementwise" / "conv_pool" those of the others. "predict": the most that NAME_predict's deepest chain exceeds the
largest kernel chain of that model (the generated function's own frame). Rounded up to 16 bytes.
Writes the GRAPH_STACK_BY_TARGET table of the targets measured into exporters/measured.py (--no-write:
print only).
"""
import argparse
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from common import write_measured  # noqa: E402
from stack import BUILDS, ENTRIES, OPTS, TARGETS, round16  # noqa: E402

from keras_ebnn.planning import stackcheck  # noqa: E402

GRAPH_ENTRIES = {
    "binary_acc": ("ebnn_bconv_acc", "ebnn_bdense_acc", "ebnn_bdepthwise_acc"),
    "conv_f32": ("ebnn_conv_f32", "ebnn_depthwise_f32"),
    "dense_f32": ("ebnn_dense_f32",),
    "pool": ("ebnn_max_pool_bits", "ebnn_max_pool_i32", "ebnn_max_pool_f32", "ebnn_sum_pool_bits",
             "ebnn_sum_pool_i32", "ebnn_avg_pool_f32"),
    "elementwise": ("ebnn_bits_to_f32", "ebnn_i32_to_f32", "ebnn_affine_f32", "ebnn_div_f32", "ebnn_activation_f32", "ebnn_add_f32",
                    "ebnn_sign_f32", "ebnn_sign_i32", "ebnn_threshold_f32", "ebnn_threshold_i32",
                    "ebnn_concat_bits", "ebnn_concat_f32", "ebnn_argmax_f32"),
    "conv_pool": ("ebnn_conv_pool_f32", "ebnn_conv_pool_need"),
}
LIBM_KEYS = ("elementwise", "conv_pool")  # kernels that reach tanhf / expf (EBNN_ACT_LIBM=1)
KEYS = list(GRAPH_ENTRIES) + [k + "_libm" for k in LIBM_KEYS] + ["predict"]
# the integer-only kernels (quantize="int8"): measured with --int8 on int8 exports (int8_models)
INT8_ENTRIES = {
    "conv_s8": ("ebnn_conv_s8", "ebnn_conv_s8_bits", "ebnn_depthwise_s8"),
    "dense_s8": ("ebnn_dense_s8",),
    "quant_s8": ("ebnn_requant", "ebnn_lut_s8", "ebnn_add_s8", "ebnn_concat_s8", "ebnn_bits_to_s8",
                 "ebnn_threshold_s8", "ebnn_max_pool_s8", "ebnn_avg_pool_s8", "ebnn_argmax_i32"),
}


def int8_models():
    """name -> integer-only Graph: random graphs of tests/graphgen.py that use every int8 kernel
    between them (conv, depthwise, dense, add, concat, pools, tables), quantized on their inputs."""
    from helpers.graphgen import random_graph
    from keras_ebnn.passes import graph_quant
    out = {}
    for seed in (9, 14, 21, 28, 33, 3):
        model, x, _ = random_graph(seed)
        out[f"int8_{seed}"] = graph_quant.quantize_graph(model, x, f"int8_{seed}")
    return out


def main_int8(args, targets):
    """The int8 kernel files' rows (conv_s8, dense_s8, quant_s8) to add to GRAPH_STACK_BY_TARGET."""
    from keras_ebnn.exporters.c import export_c
    from keras_ebnn.exporters.graph_c import GraphModel
    table = {t: {k: 0 for k in INT8_ENTRIES} for t in targets}
    with tempfile.TemporaryDirectory() as work:
        exports = []
        for name, g in int8_models().items():
            export_c(GraphModel(g), Path(work) / name, name)
            exports.append((name, Path(work) / name))

        def one(job):
            target, build, opt, (name, out) = job
            roots = [f"{name}_predict"] + [e for es in INT8_ENTRIES.values() for e in es]
            chains = stackcheck.analyze(out, target, opt, BUILDS[build], roots=roots, require_roots=False)
            return {k: max([chains[e].bytes for e in es if e in chains], default=0) for k, es in INT8_ENTRIES.items()}
        jobs = [(t, b, o, e) for t in targets for b in BUILDS for o in OPTS for e in exports]
        with ThreadPoolExecutor(args.jobs) as pool:
            for (target, _, _, _), kernels in zip(jobs, pool.map(one, jobs)):
                for k, v in kernels.items():
                    table[target][k] = max(table[target][k], v)
    for target, entry in table.items():
        print(f'    "{target}": ' + ", ".join(f'"{k}": {round16(v)}' for k, v in entry.items()))
    return 0


def graph_models():
    """name -> Keras model of the measured graphs."""
    from helpers.published_models import PUBLISHED, build
    from test_graph_c import tanh_sigmoid_model
    from test_graph_targets import sensor_graph
    from keras_ebnn.exporters.c import memory_plan
    from keras_ebnn.frontdoor.exporting import lower_for_export
    out = {}
    for name, (_, expected) in sorted(PUBLISHED.items()):
        if expected == "lowers":
            model, _ = build(name, n=4)
            if not memory_plan(lower_for_export(model, name))["chain"]:  # graph kernels, not only blocks
                out[name] = model
    out["sensor"] = sensor_graph()[0]
    out["tanhnet"] = tanh_sigmoid_model()[0]
    from helpers.published_models import build_mcu
    out["samy"] = build_mcu("samy_bnn", n=2)[0]  # conv_pool ops, streamed
    return out



def measure(out, name, target, opt, flags, libm):
    """({kernel key: deepest chain bytes}, NAME_predict's chain) of one build."""
    entries = dict(ENTRIES, **GRAPH_ENTRIES)
    roots = [f"{name}_predict"] + [e for es in entries.values() for e in es]
    chains = stackcheck.analyze(out, target, opt, flags, roots=roots, require_roots=False)
    kernels = {k: max([chains[e].bytes for e in es if e in chains], default=0) for k, es in entries.items()}
    for k in LIBM_KEYS:
        kernels[k + "_libm"] = kernels[k] if libm else 0
        if libm:
            kernels[k] = 0
    return kernels, chains[f"{name}_predict"]


def main(argv=None):
    from keras_ebnn.exporters.c import export_c
    from keras_ebnn.exporters.graph_c import GraphModel, uses_libm
    from keras_ebnn.ir.graph import lower_graph
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--models", default=None, help="comma-separated subset of the measured graphs")
    ap.add_argument("--no-write", dest="write", action="store_false",
                    help="print the table only (default: write it into exporters/measured.py)")
    ap.add_argument("--int8", action="store_true", help="only the integer-only kernels (quantize='int8')")
    args = ap.parse_args(argv)
    targets = [t for t in args.targets.split(",") if stackcheck.available(t)]
    if args.int8:
        return main_int8(args, targets)
    table = {t: {k: 0 for k in KEYS} for t in targets}  # the maximum over both builds
    with tempfile.TemporaryDirectory() as work:
        exports = []
        for name, model in graph_models().items():
            if args.models and name not in args.models.split(","):
                continue
            gm = GraphModel(lower_graph(model, name))
            export_c(gm, Path(work) / name, name)
            exports.append((name, Path(work) / name, uses_libm(gm.graph)))
        jobs = [(t, b, o, e) for t in targets for b in BUILDS for o in OPTS for e in exports]
        with ThreadPoolExecutor(args.jobs) as pool:
            results = list(pool.map(lambda j: measure(j[3][1], j[3][0], j[0], j[2], BUILDS[j[1]], j[3][2]), jobs))
    for (target, build, opt, (name, _, _)), (kernels, predict) in zip(jobs, results):
        entry = table[target]
        for k in KEYS[:-1]:
            entry[k] = max(entry[k], kernels[k])
        entry["predict"] = max(entry["predict"], predict.bytes - max(kernels.values()))
        print(f"{target:13s} {build:7s} {opt} {name}: {predict}")
    rounded = {t: {k: round16(max(v, 0)) for k, v in entry.items()} for t, entry in table.items()}
    print(f"\nGRAPH_STACK_BY_TARGET (measured targets) = {rounded}")
    if args.write:  # the targets measured replace theirs in exporters/measured.py
        from keras_ebnn.exporters.measured import GRAPH_STACK_BY_TARGET
        write_measured(GRAPH_STACK_BY_TARGET={**GRAPH_STACK_BY_TARGET, **rounded})
    return 0


if __name__ == "__main__":
    sys.exit(main())
