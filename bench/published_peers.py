"""Published BNNs on microcontrollers, side by side: keras-ebnn (exact float32 and quantize="int8") vs the
TFLite Micro + CMSIS-NN int8 twin of each re-created published architecture, in the same QEMU harness.

    TFLM_DIR=/path/to/tflm python bench/published_peers.py [--models samy_bnn,embedia_person,float_stem_mnist,residual_bnn]
        [--cpus CPU,...] [--cache DIR] [--no-write]
    (TFLM_DIR: a flattened TFLite Micro tree, see bench/targets/tflm.py; without it the command says so
    and exits.)

Method. Architectures: Binary Samy (WakeVision person detector, 80x80x3), EmbedIA person detection
(96x96x1) and the float-stem 28x28 MNIST BNN of tests/helpers/published_models.py MCU_MODELS (the ones
bench/published_mcu.py measures; sources cited there), and the small residual BNN of bench/int8_mode.py
(float stem, two binary residual blocks, global average pool, float head), all with random weights and
batch norm calibrated on random inputs (seed 0; random weights are fine for cost and memory: neither
depends on the values in either engine). Inputs: N_REP random inputs (normal(0, 1); integers 0..255 for
the residual BNN, which rescales by 1/255) used as representative data of both int8 schemes, and the
first N_RUN of them measured.
  * keras-ebnn exact: the default graph export (bench/published_mcu.py measure, "after"): classes and
    logits bit for bit equal to keras_ebnn.ir.graph_reference.
  * keras-ebnn int8: export(model, quantize="int8", representative_data=the N_REP inputs) (keras_ebnn
    graph_quant: int8 activations, per-channel int8 weights, binary layers as bits), built with
    -DSCORE_T=int32_t; the classes QEMU prints equal keras_ebnn.passes.graph_quant.run's. RAM = arena + stack
    measured under QEMU.
  * TFLM int8 twin: the same layer structure as a float Keras model (twin() below: QuantConv2D /
    QuantDense -> Conv2D / Dense with float weights; the sign on a binary layer's input -> ReLU; a
    batch norm right after a conv's pool moved before the pool and a conv's own activation moved after
    its batch norm, so that the converter folds batch norm into the conv, as a TFLM user would build
    it; every other layer as it is, standalone batch norms become MUL + ADD), fresh random weights,
    converted by TF's TFLiteConverter to full-integer int8 (int8 input and output, the N_REP inputs as
    representative data, conv weights per channel, Dense per tensor as in bench/mcu_peers.py), run by
    TFLM + CMSIS-NN (bench/targets/tflm.py; bench/mcu_peers.run_tflm: arena = arena_used_bytes() rounded
    up to 16, every int8 output vector compared with TFLite's reference kernels, at most 1 apart).
    RAM = arena + TFLM's static objects (interpreter, resolver, allocator) + stack; flash = model
    flatbuffer + the runtime code it pulls in (interpreter, kernels).
All builds arm-none-eabi-gcc/g++ -O2, same start-up code, linker script, markers and instruction-counting
plugin (bench/targets/cortexm.py); instructions per inference are exact counts (not cycles: a Cortex-M7
issues two instructions per cycle at best, loads, multiplies and branches cost different cycles), mean
over the N_RUN inputs; the model input buffer is excluded from RAM in every engine. flash = what the
engine adds to a program (text + data of the ELF calling it minus one that does not, --gc-sections):
for TFLM this includes its interpreter (per program, shared by every model), for keras-ebnn its kernels.
Cores: Cortex-M7 (mps2-an500, FPv5-D16) and Cortex-M4 (mps2-an386, FPv4-SP, DSP extension: CMSIS-NN's
SIMD path) for every model; Cortex-M0+ (ARMv6-M code on mps2-an385: soft float, CMSIS-NN's portable C
path) for the 28x28 MNIST models (the float stem is issue 21's M0+ case).
CBin-NN's figures (Binary Samy only) are quoted from ../shared/REFERENCES.md: its public code, patched to
run, measured on this harness (Cortex-M7, -O2); it is not built here.
Writes the "published_mcu_peers" section of BENCHMARKS.md (placed after "published_mcu").
"""
import argparse
import copy
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from common import md_table, write_section  # noqa: E402

DEFAULT_MODELS = "samy_bnn,embedia_person,float_stem_mnist,residual_bnn"
CPUS = {"float_stem_mnist": "cortex-m7,cortex-m4,cortex-m0plus", "residual_bnn": "cortex-m7,cortex-m4,cortex-m0plus"}
DEFAULT_CPUS = "cortex-m7,cortex-m4"
N_REP, N_RUN = 16, 2
ENGINES = ("keras-ebnn exact", "keras-ebnn int8", "TFLM + CMSIS-NN int8")
QUANT = {"QuantConv2D": "Conv2D", "QuantDense": "Dense", "QuantDepthwiseConv2D": "DepthwiseConv2D"}
LARQ_KEYS = ("input_quantizer", "kernel_quantizer", "depthwise_quantizer", "pad_values", "metrics")
CONVS = ("Conv2D", "DepthwiseConv2D", "Dense")
POOLS = ("MaxPooling2D", "AveragePooling2D")
# CBin-NN's public code on Binary Samy, measured on this harness (Cortex-M7, -O2): ../shared/REFERENCES.md
CBINNN = {"model": "samy_bnn", "cpu": "cortex-m7", "instructions": 45.0e6, "flash": 17420,
          "ram": "32,164 + 6,944 + ~1,100", "exact": "no (12 of 14 test images get Keras's class)"}


# ------------------------------------------------------------------------------------------- twin
def _refs(lay):
    return [ref[0] for node in lay["inbound_nodes"] for ref in node]


def _rewire(layers, outputs, old, new, skip=()):
    """Every reference to layer `old` (in the inbound nodes of layers not in `skip`, and in `outputs`)
    becomes a reference to `new`."""
    for lay in layers:
        if lay["name"] in skip:
            continue
        for node in lay["inbound_nodes"]:
            for ref in node:
                if ref[0] == old:
                    ref[0] = new
    for ref in outputs:
        if ref[0] == old:
            ref[0] = new


def _layer(cls, name, inbound, **config):
    return {"module": "keras.layers", "class_name": cls, "config": {"name": name, "trainable": True, "dtype": "float32",
                                                                    **config},
            "registered_name": None, "name": name, "inbound_nodes": [[[inbound, 0, 0, {}]]]}


def twin_config(config):
    """The functional-model config of the float twin of a Larq functional-model `config` (see the module
    docstring: binary layers as float Conv2D / Dense, ReLU where a sign was, batch norm placed where the
    converter folds it)."""
    cfg = copy.deepcopy(config)
    layers, outputs = cfg["layers"], cfg["output_layers"]
    out = []
    for lay in layers:
        cls, c = lay["class_name"], lay["config"]
        if cls in QUANT:
            sign = c.get("input_quantizer") is not None
            for key in LARQ_KEYS:
                c.pop(key, None)
            for key in ("kernel_constraint", "depthwise_constraint", "bias_constraint"):
                if isinstance(c.get(key), dict) and str(c[key].get("module", "")).startswith("larq"):
                    c[key] = None
            lay.update(class_name=QUANT[cls], module="keras.layers", registered_name=None)
            if sign:  # the sign on the binary layer's input -> ReLU
                relu = _layer("ReLU", f"{lay['name']}_sign_relu", None)
                relu["inbound_nodes"] = lay["inbound_nodes"]
                lay["inbound_nodes"] = [[[relu["name"], 0, 0, {}]]]
                out.append(relu)
        out.append(lay)
    layers[:] = out
    by = {lay["name"]: lay for lay in layers}

    def consumers(name):
        return [lay for lay in layers if name in _refs(lay)]

    # a conv's own activation after its batch norm: conv(act) -> BN  =>  conv -> BN -> act
    for lay in list(layers):
        cons = consumers(lay["name"])
        act = lay["config"].get("activation", "linear")
        if lay["class_name"] in CONVS and act not in ("linear", None) and len(cons) == 1 \
                and cons[0]["class_name"] == "BatchNormalization":
            bn = cons[0]
            lay["config"]["activation"] = "linear"
            post = _layer("Activation", f"{bn['name']}_{act}", bn["name"], activation=act)
            _rewire(layers, outputs, bn["name"], post["name"])
            layers.insert(layers.index(bn) + 1, post)
            by[post["name"]] = post
    # conv(act) -> pool -> BN  =>  conv -> BN (-> act) -> pool (the converter folds a batch norm that
    # follows a conv)
    for pool in [lay for lay in layers if lay["class_name"] in POOLS]:
        src = _refs(pool)
        cons = consumers(pool["name"])
        if len(src) != 1 or by[src[0]]["class_name"] not in CONVS or len(consumers(src[0])) != 1 \
                or len(cons) != 1 or cons[0]["class_name"] != "BatchNormalization":
            continue
        bn, conv = cons[0], by[src[0]]
        _rewire(layers, outputs, bn["name"], pool["name"], skip=(pool["name"],))
        bn["inbound_nodes"] = copy.deepcopy(pool["inbound_nodes"])
        pool["inbound_nodes"] = [[[bn["name"], 0, 0, {}]]]
        layers.remove(bn)
        layers.insert(layers.index(pool), bn)
        act = conv["config"].get("activation", "linear")
        if act not in ("linear", None):
            conv["config"]["activation"] = "linear"
            post = _layer("Activation", f"{bn['name']}_{act}", bn["name"], activation=act)
            pool["inbound_nodes"] = [[[post["name"], 0, 0, {}]]]
            layers.insert(layers.index(pool), post)
    return cfg


def twin(model, tf):
    """Float Keras twin (fresh random weights) of the Larq `model` (Sequential or functional)."""
    functional = tf.keras.Model(model.inputs, model.outputs, name=f"{model.name}_twin")
    return tf.keras.Model.from_config(twin_config(functional.get_config()))


def kinds(model):
    return [type(lay).__name__ for lay in model.layers]


# --------------------------------------------------------------------------------------- models
def build(name, seed=0):
    """(Larq model, the N_REP inputs) of architecture `name` (random weights, calibrated batch norm)."""
    if name == "residual_bnn":
        from helpers.graphgen import calibrate
        from int8_mode import residual_bnn
        from keras_ebnn import import_larq
        tf, _ = import_larq()
        tf.keras.utils.set_random_seed(seed)
        model = residual_bnn()
        rng = np.random.default_rng(seed)
        x = rng.integers(0, 256, (N_REP, 28, 28, 1)).astype(np.float32)  # raw pixels: the model rescales
        calibrate(model, x, rng)
        return model, x
    from helpers.published_models import build_mcu
    return build_mcu(name, n=N_REP, seed=seed)


# ------------------------------------------------------------------------------------- measuring
def measure_ebnn_int8(name, model, x, cpu, work, exports):
    """keras-ebnn's quantize="int8" export of `model` on `cpu` (the export made once per model, in `exports`)."""
    from bench.targets import cortexm
    from keras_ebnn.passes import graph_quant
    from keras_ebnn.frontdoor.exporting import export
    out = Path(work) / f"{name}_int8"
    if name not in exports:
        r = export(model, out, name=name, verify_inputs=x, quantize="int8", representative_data=x)
        if not (r.c_checked and r.c_matches_reference):
            raise RuntimeError(f"{name}: the int8 export's C differs from its reference")
        exports[name] = r
    r = exports[name]
    g = r.lowered.graph
    ref = graph_quant.run(g, x[:N_RUN])
    q = cortexm.build_and_run(out, name, graph_quant.quantize_input(g, x[:N_RUN]), cpu=cpu,
                              workdir=Path(work) / f"build_{name}_int8_{cpu}", flags=["-DSCORE_T=int32_t"])
    if not np.array_equal(q["classes"], ref["classes"]):
        raise RuntimeError(f"{name} int8 on {cpu}: QEMU's classes differ from the reference's")
    arena = r.plan["arena_bytes"]
    return {"engine": "keras-ebnn int8", "arena": arena, "static": 0, "stack": q["stack_bytes"],
            "flash": q["model_flash"], "model_bytes": r.plan["totals"]["flash_data_bytes"],
            "instructions": q["instructions_per_inference"], "check": "classes = int8 reference (C = reference bit for bit)"}


def measure_ebnn_exact(name, model, x, cpu, work):
    from keras_ebnn.ir.graph import lower_graph
    from published_mcu import measure
    m = measure(name, lower_graph(model, name), x[:N_RUN], cpu, work, inplace=True)
    return {"engine": "keras-ebnn exact", "arena": m["arena"], "static": 0, "stack": m["stack"], "flash": m["flash"],
            "model_bytes": m["data"], "instructions": m["instructions"],
            "check": "classes and logits = graph reference bit for bit"}


def measure_tflm(name, fb, x, cpu, work, objects, tf):
    from mcu_peers import run_tflm
    r = run_tflm(f"{name}_tflm", fb, x[:N_RUN], np.zeros(N_RUN, dtype=np.int64), cpu, work, objects, tf,
                 lambda s: print(s, flush=True))
    diff = r["ref_differ"]
    return {"engine": "TFLM + CMSIS-NN int8", "arena": r["arena"], "static": r["static"], "stack": r["stack"],
            "flash": r["flash"], "model_bytes": r["model_bytes"], "instructions": r["mean_insn"],
            "check": "outputs = TFLite reference kernels" if not diff else
            f"{diff} of {r['checked']} output vectors 1 apart from TFLite's reference kernels"}


def ram(r):
    return r["arena"] + r["static"] + r["stack"]


def rows_table(rows):
    def k(v):
        return f"{v:,.0f}"
    out = [[r["model"], r["cpu"], r["engine"], f"{r['instructions'] / 1e6:.2f} M", k(r["flash"]), k(r["model_bytes"]),
            k(ram(r)), k(r["arena"]), k(r["static"]), k(r["stack"]), r["check"]] for r in rows]
    out += [[CBINNN["model"], CBINNN["cpu"], "CBin-NN (../shared/REFERENCES.md)", f"{CBINNN['instructions'] / 1e6:.1f} M",
             f"{CBINNN['flash']:,}", "", f"~{32164 + 6944 + 1100:,}", "32,164 (buffers)", "6,944 (parameters)", "~1,100",
             CBINNN["exact"]]] if any(r["model"] == CBINNN["model"] for r in rows) else []
    return md_table(["model", "core", "engine", "instructions", "flash B", "of which model B", "RAM B", "= arena",
                     "+ static", "+ stack", "checked"], out)


def ratios(rows):
    """Per model and core: TFLM twin / keras-ebnn (exact and int8) for instructions, flash and RAM."""
    by = {(r["model"], r["cpu"], r["engine"]): r for r in rows}
    out = []
    for (model, cpu, engine), t in by.items():
        if engine != "TFLM + CMSIS-NN int8":
            continue
        cells = [model, cpu]
        for mode in ("keras-ebnn exact", "keras-ebnn int8"):
            e = by.get((model, cpu, mode))
            cells.append("-" if e is None else
                         f"{t['instructions'] / e['instructions']:.2f}x / {t['flash'] / e['flash']:.1f}x / {ram(t) / ram(e):.1f}x")
        out.append(cells)
    return md_table(["model", "core", "TFLM / keras-ebnn exact (instructions / flash / RAM)",
                     "TFLM / keras-ebnn int8 (instructions / flash / RAM)"], out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=DEFAULT_MODELS)
    ap.add_argument("--cpus", default=None, help="cores for every model (default: M7 and M4, and M0+ for the MNIST ones)")
    ap.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "ebnn-mcu-peers"),
                    help="folder for the compiled TFLM objects and the measured rows (an interrupted run resumes)")
    ap.add_argument("--engines", default=",".join(ENGINES), help="a subset of: " + ", ".join(ENGINES))
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    print(__doc__)
    from bench.targets import tflm
    if not tflm.available():
        print("skipped: needs TFLM_DIR (a TFLite Micro tree), arm-none-eabi-g++ with libstdc++ and qemu-system-arm")
        return 0
    from mcu_peers import convert_int8
    from keras_ebnn import import_larq
    tf, _ = import_larq()
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    done_path = cache / f"published_rows_{N_REP}_{N_RUN}.json"  # delete it to re-measure
    done = json.loads(done_path.read_text()) if done_path.exists() else {}
    rows, objects, exports, flatbuffers = [], {}, {}, {}
    with tempfile.TemporaryDirectory() as work:
        for name in args.models.split(","):
            model, x = build(name)
            for cpu in (args.cpus or CPUS.get(name, DEFAULT_CPUS)).split(","):
                for engine in [e for e in ENGINES if e in args.engines.split(",")]:
                    key = f"{name}|{cpu}|{engine}"
                    if key not in done:
                        print(f"{name} on {cpu}: {engine}", flush=True)
                        if engine == "keras-ebnn exact":
                            r = measure_ebnn_exact(name, model, x, cpu, work)
                        elif engine == "keras-ebnn int8":
                            r = measure_ebnn_int8(name, model, x, cpu, work, exports)
                        else:
                            if name not in flatbuffers:
                                tf.keras.utils.set_random_seed(0)
                                flatbuffers[name] = convert_int8(twin(model, tf), x, tf)
                            ops = tuple(tflm.op_names(flatbuffers[name]))
                            if (cpu, ops) not in objects:
                                objects[cpu, ops] = tflm.library(cpu, "-O2", cache=cache / f"tflm-{cpu}", ops=ops)
                            r = measure_tflm(name, flatbuffers[name], x, cpu, work, objects[cpu, ops], tf)
                        done[key] = {**r, "engine": engine, "model": name, "cpu": cpu}
                        done_path.write_text(json.dumps(done, indent=1))
                    print(done[key], flush=True)
                    rows.append(done[key])
    tab, rat = rows_table(rows), ratios(rows)
    text = ("### Published BNNs on microcontrollers: side by side with TFLite Micro + CMSIS-NN int8\n\n"
            + __doc__.split("Method. ")[1].split("Writes")[0].strip() + "\n\n" + tab
            + "\n\nRatios, TFLM int8 twin / keras-ebnn (above 1: keras-ebnn needs less):\n\n" + rat)
    print(text)
    if not args.no_write:
        command = "TFLM_DIR=... python bench/published_peers.py" + (f" --models {args.models}" if args.models != DEFAULT_MODELS
                                                                    else "") + (f" --cpus {args.cpus}" if args.cpus else "")
        write_section("published_mcu_peers", text, command, after="published_mcu")
    return 0


if __name__ == "__main__":
    sys.exit(main())
