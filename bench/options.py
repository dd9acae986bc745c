"""What each runtime build option changes on Cortex-M0+/M3: stack, code and instructions per inference.

    EBNN_DATA_DIR=../shared/data python bench/options.py [--models uno_mnist,m15_mnist] [--no-write]

Method: each shipped model (default: uno_mnist and m15_mnist) is exported and built with
arm-none-eabi-gcc -O2 for Cortex-M3 and Cortex-M0+, once per option set below. Instructions per
inference are counted under QEMU exactly as in bench/cost.py (mean over 100 test images, the
shipped MNIST sample when EBNN_DATA_DIR is not set); code = the runtime + predict code the model adds
to the program (bench/targets/cortexm.model_flash); stack bound = the deepest NAME_predict chain
computed by keras_ebnn.planning.stackcheck for that build (what the report's figure must cover); stack
measured = the bytes NAME_predict really used under QEMU (painted RAM). The AVR builds are covered
by bench/cost.py and runtime_c/README.md (avr.py builds only the defaults). Writes the "options"
section of BENCHMARKS.md.
"""
import tempfile

from common import available_models, load_export, md_table, model_args, sample_images, write_section

from keras_ebnn.planning import stackcheck

OPTIONS = {
    "defaults": [],
    "EBNN_CHUNK=16": ["-DEBNN_CHUNK=16"],
    "EBNN_CHUNK=8": ["-DEBNN_CHUNK=8"],
    "EBNN_LOW_STACK=1": ["-DEBNN_LOW_STACK=1"],
    "EBNN_CHUNK=8 EBNN_LOW_STACK=1": ["-DEBNN_CHUNK=8", "-DEBNN_LOW_STACK=1"],
    "EBNN_BYTE_KERNELS=1": ["-DEBNN_BYTE_KERNELS=1"],
    "EBNN_POPCOUNT=3 (table)": ["-DEBNN_POPCOUNT=3"],
    "EBNN_POPCOUNT=1 (builtin)": ["-DEBNN_POPCOUNT=1"],
    "EBNN_INT_LOGITS=0": ["-DEBNN_INT_LOGITS=0"],
}
CPUS = ("cortex-m3", "cortex-m0plus")


def main(argv=None):
    args = model_args(__doc__, "uno_mnist,m15_mnist", argv)
    from bench.targets import cortexm
    if not cortexm.available():
        print("arm-none-eabi-gcc / qemu-system-arm not installed")
        return 1
    rows = {}
    with tempfile.TemporaryDirectory() as work:
        for name, (path, dataset) in available_models(args.models.split(",")).items():
            _, lowered, out = load_export(name, path, work)
            x = sample_images(dataset)
            for cpu in CPUS:
                for label, flags in OPTIONS.items():
                    r = cortexm.build_and_run(out, name, x, lowered.num_classes, cpu=cpu, opt="-O2", flags=flags,
                                              workdir=f"{work}/{cpu}_{name}_{len(rows)}")
                    bound = stackcheck.analyze(out, cpu, "-O2", flags)[f"{name}_predict"].bytes
                    rows[(name, cpu, label)] = (r["instructions_per_inference"], r["code_bytes"], bound,
                                                r["stack_bytes"])
                    print(name, cpu, label, rows[(name, cpu, label)], flush=True)
    models = sorted({k[0] for k in rows}, key=args.models.split(",").index)
    header = ["option (-D)", "CPU"] + [f"{m} instructions" for m in models] + \
        [f"{m} code B" for m in models] + ["stack bound B", "stack measured B"]
    table = []
    for label in OPTIONS:
        for cpu in CPUS:
            cells = [label, cpu]
            for m in models:
                insn, base = rows[(m, cpu, label)][0], rows[(m, cpu, "defaults")][0]
                change = round((insn / base - 1) * 100)
                note = "" if label == "defaults" else f" ({change:+d}%)" if change else " (±0%)"
                cells.append(f"{insn:,.0f}{note}")
            cells += [f"{rows[(m, cpu, label)][1]:,}" for m in models]
            cells += [f"{max(rows[(m, cpu, label)][2] for m in models):,}",
                      f"{max(rows[(m, cpu, label)][3] for m in models):,}"]
            table.append(cells)
    text = md_table(header, table)
    print(text)
    if not args.no_write:
        method = __doc__.split("Method:")[1].split("Writes")[0].strip().replace("\n", " ")
        write_section("options", "## Runtime build options on Cortex-M\n\n" + method + "\n\n" + text,
                      "EBNN_DATA_DIR=../shared/data python bench/options.py")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
