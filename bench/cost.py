"""Cost per inference of the shipped models: Cortex-M0+ / M3 / M4F / M7 and RISC-V rv32imc(+Zbb)
instructions, ATmega328P cycles, host time.

    EBNN_DATA_DIR=../shared/data python bench/cost.py [--models a,b] [--no-avr] [--avr-opt=-Os] [--no-write]

Method: every model in examples/models/. Instructions are counted exactly under QEMU by our TCG plugin
between markers around each NAME_predict call (the marker pair's own cost subtracted), averaged over
100 test images, -O2: arm-none-eabi-gcc for Cortex-M3 and M0+ (mps2-an385; M0+ code runs on the same
machine), Cortex-M4F (-mfpu=fpv4-sp-d16 -mfloat-abi=hard, mps2-an386) and Cortex-M7 (-mfpu=fpv5-d16
-mfloat-abi=hard, mps2-an500), all with the generic C kernels; riscv64-unknown-elf-gcc + picolibc for
rv32imc (popcount in SWAR) and rv32imc_zbb (popcount by Zbb's cpop; when the compiler accepts it) on
qemu-system-riscv32 -M virt. Every emulated run's classes and logits must equal the host C build's.
ATmega328P cycles are counted by simavr's cycle-accurate core between markers,
avr-gcc -Os (--avr-opt), averaged over the same 100 images, and each image's own marked cycles for
the slowest one (the kernels' time depends on the data); ms = cycles / 16 MHz. Host: the C export
built with gcc -O2 (and with -O2 -march=native) runs 1,000 test images in one process (wall time /
1,000, median of 5 runs); the NumPy reference executor and Keras (model.predict, batch 1,000) on the
same 1,000 images, per image, median of 5 runs, all in this one run on this machine. Writes the "cost" section of BENCHMARKS.md.
"""
import argparse
import subprocess
import tempfile
import time

import numpy as np

from common import load_export, shipped_models, md_table, test_set, write_section


ARM_CPUS = ("cortex-m3", "cortex-m0plus", "cortex-m4", "cortex-m7")
RV_CPUS = ("rv32imc", "rv32imc_zbb")
INSTR_COLUMNS = {"cortex-m3": "Cortex-M3 instr.", "cortex-m0plus": "Cortex-M0+ instr.",
                 "cortex-m4": "Cortex-M4F instr.", "cortex-m7": "Cortex-M7 instr.",
                 "rv32imc": "RV32 rv32imc instr.", "rv32imc_zbb": "RV32 rv32imc+Zbb instr."}


def host_us(lowered, out, name, x, repeat=5, flags=()):
    from keras_ebnn.frontdoor import host
    exe = host.build_runner(out, name, opt="-O2", extra_flags=list(flags))
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        host.run_runner(exe, x, lowered.num_classes, lowered.input.dtype)
        times.append(time.perf_counter() - t)
    return float(np.median(times)) / len(x) * 1e6


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", help="comma-separated subset of the shipped models")
    ap.add_argument("--no-avr", action="store_true")
    ap.add_argument("--avr-opt", default="-Os", help="avr-gcc optimisation level (default -Os, the Arduino default)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    print(__doc__)
    from bench.targets import avr, cortexm, riscv
    from keras_ebnn.ir import graph_reference
    from keras_ebnn.frontdoor import host
    riscv_ok = {cpu: riscv.supports(cpu) for cpu in RV_CPUS}
    print("RISC-V targets the toolchain supports:", riscv_ok)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for name, (path, dataset) in shipped_models(args.models and args.models.split(",")).items():
            model, lowered, out = load_export(name, path, work)
            x, _ = test_set(dataset)
            x = x[:1000]
            row = {"model": name}
            classes, logits = host.predict_c(lowered, out, name, x[:100])
            runs = []
            if cortexm.available():
                runs += [(cpu, cortexm.build_and_run) for cpu in ARM_CPUS]
            runs += [(cpu, riscv.build_and_run) for cpu in RV_CPUS if riscv_ok[cpu]]
            for cpu, build_and_run in runs:
                r = build_and_run(out, name, x[:100], lowered.num_classes, cpu=cpu, opt="-O2",
                                  workdir=f"{work}/{cpu}_{name}")
                got = r["logits"].view(np.int32) if logits.dtype.kind == "i" else r["logits"]  # int8 mode: int32 logits
                if not (np.array_equal(r["classes"], classes) and np.array_equal(got, logits)):
                    raise RuntimeError(f"{name} on {cpu}: classes or logits differ from the host C build's")
                row[cpu] = r["instructions_per_inference"]
            if avr.available() and not args.no_avr:
                try:
                    r = avr.build_and_run(out, name, x[:100], lowered.num_classes, workdir=f"{work}/avr_{name}",
                                          opt=args.avr_opt)
                    fits = r["size"]["text"] + r["size"]["data"] <= avr.FLASH_BYTES and \
                        r["sram_static_bytes"] + r["stack_high_water_bytes"] < avr.SRAM_BYTES
                    row["avr_cycles"] = r["cycles_per_inference"] if fits else None
                    row["avr_max"] = max(r["cycles_per_image"]) if fits else None
                    row["avr_fits"] = fits
                except (RuntimeError, subprocess.SubprocessError) as exc:
                    print(f"{name}: AVR run failed: {exc}")
            row["host_us"] = host_us(lowered, out, name, x)
            row["host_native_us"] = host_us(lowered, out, name, x, flags=["-march=native"])
            ref_t, keras_t = [], []
            for _ in range(5):
                t = time.perf_counter()
                graph_reference.run(lowered, x)
                ref_t.append(time.perf_counter() - t)
                t = time.perf_counter()
                model.predict(x.astype(np.float32), batch_size=1000, verbose=0)
                keras_t.append(time.perf_counter() - t)
            row["numpy_us"] = float(np.median(ref_t)) / len(x) * 1e6
            row["keras_us"] = float(np.median(keras_t)) / len(x) * 1e6
            print(row)
            rows.append(row)

    def fmt(v, f="{:,.0f}"):
        return "-" if v is None else f.format(v)
    table = md_table(["model", *INSTR_COLUMNS.values(), "ATmega328P cycles (mean)", "ms @16 MHz (mean / slowest image)",
                      "host C µs (-O2)", "host C µs (-O2 -march=native)", "NumPy ref µs", "Keras µs"],
                     [[r["model"], *(fmt(r.get(cpu)) for cpu in INSTR_COLUMNS),
                       fmt(r.get("avr_cycles")) if r.get("avr_fits", True) else "does not fit",
                       (fmt(r["avr_cycles"] / 16e3, "{:,.1f}") + " / " + fmt(r["avr_max"] / 16e3, "{:,.1f}"))
                       if r.get("avr_cycles") else "-",
                       fmt(r["host_us"], "{:.1f}"), fmt(r["host_native_us"], "{:.1f}"), fmt(r["numpy_us"], "{:.1f}"), fmt(r["keras_us"], "{:.1f}")]
                      for r in rows])
    print(table)
    text = "## Cost per inference\n\n" + __doc__.split("Method:")[1].split("Writes")[0].strip().replace("\n", " ") \
        + "\n\n" + table
    if not args.no_write:
        write_section("cost", text, "EBNN_DATA_DIR=../shared/data python bench/cost.py")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
