"""Cost per inference of the shipped models: Cortex-M3 / M0+ instructions, ATmega328P cycles, host time.

    EBNN_DATA_DIR=../shared/data python bench/cost.py [--models a,b] [--no-avr] [--avr-opt=-Os] [--no-write]

Method: instructions are counted exactly under QEMU (mps2-an385) by our TCG plugin between markers
around each NAME_predict call, averaged over 100 test images, arm-none-eabi-gcc -O2 (M0+ code runs on
the same machine). ATmega328P cycles are counted by simavr's cycle-accurate core between markers,
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

from common import available_models, load_export, md_table, test_set, write_section


def host_us(lowered, out, name, x, repeat=5, flags=()):
    from keras_ebnn import host
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
    from bench.targets import avr, cortexm
    from keras_ebnn import graph_reference
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for name, (path, dataset) in available_models(args.models and args.models.split(",")).items():
            model, lowered, out = load_export(name, path, work)
            x, _ = test_set(dataset)
            x = x[:1000]
            row = {"model": name}
            for cpu in ("cortex-m3", "cortex-m0plus"):
                if cortexm.available():
                    r = cortexm.build_and_run(out, name, x[:100], lowered.num_classes, cpu=cpu, opt="-O2",
                                              workdir=f"{work}/{cpu}_{name}")
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
    table = md_table(["model", "Cortex-M3 instr.", "Cortex-M0+ instr.", "ATmega328P cycles (mean)", "ms @16 MHz (mean / slowest image)",
                      "host C µs (-O2)", "host C µs (-O2 -march=native)", "NumPy ref µs", "Keras µs"],
                     [[r["model"], fmt(r.get("cortex-m3")), fmt(r.get("cortex-m0plus")),
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
