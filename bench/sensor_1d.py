"""Real sensor data end to end: the 1-D example (examples/sensor_1d) on the emulated Cortex-M3 and ATmega328P.

    pip install --no-deps aeon       # the dataset (optional dependency of keras-ebnn)
    python bench/sensor_1d.py [--model examples/sensor_1d/sensor_1d.keras] [--no-avr] [--no-write]

Method: The model (the shipped one, --model, or one trained here with the example's defaults) is
exported with keras_ebnn.export (target "c") and classifies the whole JapaneseVowels test split of
the UEA archive (370 utterances, uint8-quantized with the training split's per-channel range, as in
the example) five ways: Keras (model.predict), the NumPy graph reference (keras_ebnn.graph_reference),
the C export compiled for the host (gcc -O2), the same C on a Cortex-M3 under QEMU (mps2-an385,
arm-none-eabi-gcc -O2; instructions counted exactly between markers around each NAME_predict, averaged
over the 370 inputs) and on an ATmega328P under simavr (avr-gcc -Os; cycles counted between markers,
mean and slowest input, ms at 16 MHz). All five must give identical classes (the command exits 1
otherwise). Sizes: the model's flash (data + code + library helpers the model alone pulls in, from two
--gc-sections links with and without NAME_predict), and on the AVR the static RAM of the whole
program plus the painted stack high-water mark, against the Uno's 32 KB flash / 2 KB SRAM.
Writes the "sensor_1d" section of BENCHMARKS.md.
"""
import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from common import ROOT, md_table, write_section

sys.path.insert(0, str(ROOT / "examples" / "sensor_1d"))
import sensor_1d as example  # noqa: E402

SHIPPED = ROOT / "examples" / "sensor_1d" / "sensor_1d.keras"
NAME = "sensor_1d"
# Published accuracies on the same archive split, quoted (not rerun). JapaneseVowels is one of the 4
# unequal-length problems that the multivariate bake-off (Ruiz et al. 2021, "The great multivariate
# time series classification bake off", DMKD 35) leaves out, so its table has no entry for it.
BASELINES = [
    ("signature kernel (KSig; best entry of the table, tied with KSigPDE)", 0.986),
    ("global alignment kernel (GAK)", 0.981),
]
BASELINE_SOURCE = ("Tóth, Oberhauser and Szabó, \"Random Fourier Signature Features\" (arXiv:2311.12214), "
                   "results table on the UEA multivariate archive with N <= 1000 cases, as published in the "
                   "README of the authors' repository github.com/tgcsaba/KSig")


def run_all(model, data, work, avr_on=True, m3_on=True):
    """Classes and costs of every engine on data's test split; returns a dict (see main)."""
    import keras_ebnn
    from bench.targets import avr, cortexm
    from keras_ebnn import host
    x = data["x_test"]
    out = {"classes": {}, "notes": []}
    out["classes"]["Keras"] = example.keras_classes(model, x)
    out["classes"]["NumPy graph reference"] = example.reference_classes(model, x)
    res = keras_ebnn.export(model, Path(work) / "c", name=NAME, target="c")
    export_dir = res.out_dir
    out["export"] = res
    exe = host.build_runner(export_dir, NAME, opt="-O2")
    num_classes = cortexm.header_num_classes(export_dir, NAME)
    out["classes"]["host C (gcc -O2)"] = host.run_runner(exe, x, num_classes, np.uint8)[0]
    if m3_on and cortexm.available():
        r = cortexm.build_and_run(export_dir, NAME, x, num_classes, cpu="cortex-m3", opt="-O2",
                                  workdir=Path(work) / "m3")
        out["classes"]["Cortex-M3 (QEMU)"] = r["classes"]
        out["m3"] = r
    else:
        out["notes"].append("Cortex-M3: arm-none-eabi-gcc / qemu-system-arm not available, not run")
    if avr_on and avr.available():
        r = avr.build_and_run(export_dir, NAME, x, num_classes, workdir=Path(work) / "avr", opt="-Os")
        out["classes"]["ATmega328P (simavr)"] = r["classes"]
        out["avr"] = r
    else:
        out["notes"].append("ATmega328P: avr-gcc / simavr not available (or --no-avr), not run")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None,
                    help=f"trained .keras model (default: {SHIPPED.relative_to(ROOT)} if present, else train one)")
    ap.add_argument("--no-avr", action="store_true")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    print(__doc__)
    from keras_ebnn.datasets import DatasetNotFoundError
    from keras_ebnn.lowering import load_model
    try:
        data = example.load_data()
    except DatasetNotFoundError as exc:
        print(f"skipped: {exc}")
        return 2
    model_path = Path(args.model) if args.model else (SHIPPED if SHIPPED.is_file() else None)
    if model_path is not None:
        model, source = load_model(model_path), f"`{model_path.resolve().relative_to(ROOT)}`" \
            if model_path.resolve().is_relative_to(ROOT) else str(model_path)
    else:
        model, source = example.train_model(data), "trained by this run with the example's defaults"
    y = data["y_test"]
    with tempfile.TemporaryDirectory(prefix="ebnn-sensor-") as work:
        r = run_all(model, data, work, avr_on=not args.no_avr)
    classes = r["classes"]
    first = classes["Keras"]
    rows = [[engine, f"{np.mean(c == y) * 100:.2f}%", "yes" if np.array_equal(c, first) else
             f"NO ({int(np.sum(c != first))} differ)"] for engine, c in classes.items()]
    table = md_table(["engine", f"test accuracy ({len(y)} utterances)", "classes identical to Keras"], rows)
    identical = all(np.array_equal(c, first) for c in classes.values())
    cost_rows = []
    if "m3" in r:
        m3 = r["m3"]
        cost_rows.append(["Cortex-M3 (arm-none-eabi-gcc -O2)", f"{m3['instructions_per_inference']:,.0f} instructions",
                          f"{m3['model_flash']:,} B", f"stack {m3['stack_bytes']:,} B" if m3["stack_bytes"] else "-"])
    if "avr" in r:
        a = r["avr"]
        ram = a["sram_static_bytes"] + a["stack_high_water_bytes"]
        cost_rows.append(["ATmega328P (avr-gcc -Os)",
                          f"{a['cycles_per_inference']:,.0f} cycles mean = {a['ms_per_inference_16mhz']:.2f} ms @16 MHz "
                          f"(slowest input {max(a['cycles_per_image']) / 16e3:.2f} ms)",
                          f"{a['model_flash']:,} B (whole program {a['flash_bytes']:,} of 32,768 B)",
                          f"whole program {ram:,} of 2,048 B (static {a['sram_static_bytes']:,} + stack "
                          f"{a['stack_high_water_bytes']:,})"])
    cost = md_table(["target", "time per inference", "model flash", "RAM"], cost_rows) if cost_rows else ""
    base = md_table(["classifier (published)", "test accuracy"],
                    [[n, f"{a * 100:.1f}%"] for n, a in BASELINES]
                    + [["this 1-D BNN (binary weights and activations, uint8 input)",
                        f"{np.mean(first == y) * 100:.2f}%"]])
    totals = r["export"].plan["totals"]
    text = "\n\n".join(filter(None, [
        "## Real sensor data: JapaneseVowels on Cortex-M3 and ATmega328P",
        "The example `examples/sensor_1d/sensor_1d.py`: JapaneseVowels of the UEA multivariate archive "
        "(Bagnall et al. 2018, arXiv:1811.00075; the copy bundled in the `aeon` package; 9 speakers, 12 LPC "
        "coefficients x up to 29 frames, 270 training / 370 test utterances), quantized to uint8 per channel "
        "(29 x 12 = 348-byte input), three QuantConv1D blocks + binary dense layer "
        f"({sum(int(np.prod(w.shape)) for w in model.trainable_weights):,} trainable parameters). "
        f"Model: {source}.",
        __doc__.split("Method:")[1].split("Writes")[0].strip().replace("\n", " "),
        table,
        cost,
        f"Export plan (keras_ebnn.export, target c): flash {totals['flash_bytes']:,} B, RAM {totals['ram_bytes']:,} B "
        f"(activations {totals['activation_bytes']:,} B).",
        "Published baselines (test accuracy on JapaneseVowels as reported), quoted from " + BASELINE_SOURCE + " -- not rerun "
        "here. (The multivariate bake-off of Ruiz et al. 2021 evaluates only the 26 equal-length problems and "
        "has no JapaneseVowels entry.) Those are kernel methods on the float series; this model is the binary "
        "network above on 8-bit inputs.",
        base,
        "\n".join(f"- {n}" for n in r["notes"]),
    ]))
    print(text)
    if not args.no_write:
        write_section("sensor_1d", text, "python bench/sensor_1d.py")
    if not identical:
        print("ERROR: the engines disagree on some classes", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
