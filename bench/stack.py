"""Stack bounds of the runtime per MCU target and build: the STACK_BYTES table of exporters/measured.py.

    python bench/stack.py [--targets avr,cortex-m3] [--models a,b] [--jobs 2]

Method: every shipped model is exported and its C folder analysed by keras_ebnn.planning.stackcheck (GCC's
-fstack-usage frames along the call graph of the disassembled objects, library routines bounded from
their code) for each target (arm-none-eabi-gcc -mcpu=cortex-m0plus / cortex-m3 / cortex-m4 -mthumb,
avr-gcc -mmcu=atmega328p), each optimisation level -O1, -O2, -O3, -Os, and two builds: "default" (no
-D option: what the README, Arduino and Zephyr builds use) and "small" (-DEBNN_CHUNK=8
-DEBNN_LOW_STACK=1; on AVR these are the defaults). Per kernel: the deepest chain from its entry point
(ebnn_input_conv_u8, ebnn_input_conv_f32, ebnn_binary_conv, ebnn_binary_dense / ebnn_binary_dense16,
ebnn_output_dense), the maximum over the optimisation levels and models; "predict": the most that
NAME_predict's deepest chain exceeds the largest chain of the kernels that model uses, over the
models and levels (the generated functions' own frames; a kernel whose entry point the build does not
have, e.g. inlined into the model's code, counts 0 there, so "predict" covers it). Each figure is
rounded up to 16 bytes.
Prints the measured chains and writes the table (STACK_BYTES) of the targets measured into
exporters/measured.py (--no-write: print only).
"""
import argparse
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

from common import available_models, load_export, write_measured

from keras_ebnn.planning import stackcheck
from keras_ebnn.exporters.c import stack_kernel_keys

OPTS = ("-O1", "-O2", "-O3", "-Os")
BUILDS = {"default": [], "small": ["-DEBNN_CHUNK=8", "-DEBNN_LOW_STACK=1"]}
TARGETS = ("cortex-m0plus", "cortex-m3", "cortex-m4", "avr")
ENTRIES = {"input_conv_int": ("ebnn_input_conv_u8",), "input_conv_f32": ("ebnn_input_conv_f32",),
           "binary_conv": ("ebnn_binary_conv",), "binary_dense": ("ebnn_binary_dense", "ebnn_binary_dense16"),
           "output_dense": ("ebnn_output_dense",)}


def round16(n):
    return -(-n // 16) * 16


def measure(out, name, target, opt, flags):
    """({kernel: deepest chain bytes}, NAME_predict's deepest chain bytes) of one build."""
    roots = [f"{name}_predict"] + [e for es in ENTRIES.values() for e in es]
    chains = stackcheck.analyze(out, target, opt, flags, roots=roots, require_roots=False)
    if f"{name}_predict" not in chains:
        raise RuntimeError(f"{out}: {name}_predict not found")
    # a kernel the build has no function for (inlined into predict) counts 0: "predict" then covers it
    kernels = {k: max([chains[e].bytes for e in es if e in chains], default=0) for k, es in ENTRIES.items()}
    return kernels, chains[f"{name}_predict"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--models", help="comma-separated subset of the shipped models")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--no-write", dest="write", action="store_false",
                    help="print the table only (default: write it into exporters/measured.py)")
    args = ap.parse_args(argv)
    print(__doc__)
    targets = [t for t in args.targets.split(",") if stackcheck.available(t)]
    missing = set(args.targets.split(",")) - set(targets)
    if missing:
        print(f"skipped (compiler not installed): {', '.join(sorted(missing))}")
    table = {}
    with tempfile.TemporaryDirectory() as work:
        exports = []
        for name, (path, _) in available_models(args.models and args.models.split(",")).items():
            _, lowered, out = load_export(name, path, work)
            exports.append((name, out, stack_kernel_keys(lowered)))
        jobs = [(t, b, o, e) for t in targets for b in BUILDS for o in OPTS for e in exports]
        with ThreadPoolExecutor(args.jobs) as pool:
            results = list(pool.map(lambda j: measure(j[3][1], j[3][0], j[0], j[2], BUILDS[j[1]]), jobs))
    for (target, build, opt, (name, _, keys)), (kernels, predict) in zip(jobs, results):
        entry = table.setdefault(target, {}).setdefault(build, {k: 0 for k in list(ENTRIES) + ["predict"]})
        for k, v in kernels.items():
            entry[k] = max(entry[k], v)
        entry["predict"] = max(entry["predict"], predict.bytes - max(kernels[k] for k in keys))
        print(f"{target:13s} {build:7s} {opt} {name}: {predict}")
    for target, builds in table.items():
        for build, entry in builds.items():
            for k, v in entry.items():
                if v <= 0:
                    print(f"WARNING: {target} {build}: no entry point for {k} in any build: its figure is 0 "
                          "(the shipped models' chains are covered by 'predict', other models' are not)")
    rounded = {t: {b: {k: round16(max(v, 0)) for k, v in e.items()} for b, e in builds.items()}
               for t, builds in table.items()}
    print(f"\nSTACK_BYTES (measured targets) = {rounded}")
    if args.write:  # the targets measured replace theirs in exporters/measured.py
        from keras_ebnn.exporters.measured import STACK_BYTES
        write_measured(STACK_BYTES={**STACK_BYTES, **rounded})
    return 0


if __name__ == "__main__":
    sys.exit(main())
