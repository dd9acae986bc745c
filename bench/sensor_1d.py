"""Real sensor data end to end: the 1-D example (examples/sensor_1d) on the emulated Cortex-M3 and ATmega328P.

    pip install --no-deps aeon       # the dataset (optional dependency of keras-ebnn)
    python bench/sensor_1d.py [--model examples/sensor_1d/sensor_1d.keras] [--no-float] [--no-avr] [--no-write]

Method: Two models: the example's (binary head; the shipped file, --model, or trained here with the
example's defaults when neither exists) and its `--head float` variant (GlobalAveragePooling1D + a
full-precision Dense classifier; trained here with the same recipe and seed, not tuned; --no-float
skips it). Each is exported with keras_ebnn.export (target "c") and classifies the whole JapaneseVowels test split of
the UEA archive (370 utterances, uint8-quantized with the training split's per-channel range, as in
the example) five ways: Keras (model.predict), the NumPy graph reference (keras_ebnn.ir.graph_reference),
the C export compiled for the host (gcc -O2), the same C on a Cortex-M3 under QEMU (mps2-an385,
arm-none-eabi-gcc -O2; instructions counted exactly between markers around each NAME_predict, averaged
over the 370 inputs) and on an ATmega328P under simavr (avr-gcc -Os; cycles counted between markers,
mean and slowest input, ms at 16 MHz). For each model all five must give identical classes (the command exits 1
otherwise); a model whose build does not fit the ATmega328P's 2 KB of SRAM is reported as such. Sizes: the model's flash (data + code + library helpers the model alone pulls in, from two
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
    """Classes (engine -> array) and costs of every engine on data's test split: a dict with
    "classes", "export" (the ExportResult), "m3" / "avr" (the target harnesses' results, when run)
    and "notes" (why a target was not run)."""
    import keras_ebnn
    from bench.targets import avr, cortexm
    from keras_ebnn.frontdoor import host
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
        try:
            r = avr.build_and_run(export_dir, NAME, x, num_classes, workdir=Path(work) / "avr", opt="-Os")
        except RuntimeError as exc:
            if "not within region `data'" not in str(exc):
                raise
            t = res.plan["totals"]
            out["notes"].append(f"ATmega328P: does not fit -- the link overflows the 2,048 B of SRAM (the export "
                                f"plans {t['activation_bytes']:,} B of activations besides the "
                                f"{int(np.prod(x.shape[1:]))}-byte input)")
        else:
            out["classes"]["ATmega328P (simavr)"] = r["classes"]
            out["avr"] = r
    else:
        out["notes"].append("ATmega328P: avr-gcc / simavr not available (or --no-avr), not run")
    return out


def _cost_rows(label, r):
    rows = []
    if "m3" in r:
        m3 = r["m3"]
        rows.append([label, "Cortex-M3 (arm-none-eabi-gcc -O2)", f"{m3['instructions_per_inference']:,.0f} instructions",
                     f"{m3['model_flash']:,} B", f"stack {m3['stack_bytes']:,} B" if m3["stack_bytes"] else "-"])
    if "avr" in r:
        a = r["avr"]
        ram = a["sram_static_bytes"] + a["stack_high_water_bytes"]
        rows.append([label, "ATmega328P (avr-gcc -Os)",
                     f"{a['cycles_per_inference']:,.0f} cycles mean = {a['ms_per_inference_16mhz']:.2f} ms @16 MHz "
                     f"(slowest input {max(a['cycles_per_image']) / 16e3:.2f} ms)",
                     f"{a['model_flash']:,} B (whole program {a['flash_bytes']:,} of 32,768 B)",
                     f"whole program {ram:,} of 2,048 B (static {a['sram_static_bytes']:,} + stack "
                     f"{a['stack_high_water_bytes']:,})"])
    return rows


def _ops(res):
    kinds = []
    from keras_ebnn.exporters.graph_c import as_graph_model
    for op in as_graph_model(res.lowered).graph.ops:
        kinds.append(op.params["block"].kind + " block" if op.kind == "block" else op.kind)
    return ", ".join(kinds)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None,
                    help=f"trained .keras model (default: {SHIPPED.relative_to(ROOT)} if present, else train one)")
    ap.add_argument("--no-float", action="store_true", help="skip the float-head variant")
    ap.add_argument("--no-avr", action="store_true")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    print(__doc__)
    from keras_ebnn.train.datasets import DatasetNotFoundError
    from keras_ebnn.frontend.lowering import load_model
    try:
        data = example.load_data()
    except DatasetNotFoundError as exc:
        print(f"skipped: {exc}")
        return 2
    model_path = Path(args.model) if args.model else (SHIPPED if SHIPPED.is_file() else None)
    if model_path is not None:
        model = load_model(model_path)
        source = f"`{model_path.resolve().relative_to(ROOT)}`" if model_path.resolve().is_relative_to(ROOT) \
            else str(model_path)
    else:
        model, source = example.train_model(data), "trained by this run with the example's defaults"
    models = {"binary head": (model, source)}
    if not args.no_float:
        models["float head"] = (example.train_model(data, head="float"),
                                "trained by this run (`train_model(data, head=\"float\")`: the example's recipe and seed)")
    y = data["y_test"]
    results = {}
    with tempfile.TemporaryDirectory(prefix="ebnn-sensor-") as work:
        for i, (label, (m, _)) in enumerate(models.items()):
            results[label] = run_all(m, data, Path(work) / str(i), avr_on=not args.no_avr)
    engines = list(next(iter(results.values()))["classes"])
    identical = True
    acc_rows = []
    for engine in engines:
        row = [engine]
        for label, r in results.items():
            c, keras = r["classes"].get(engine), r["classes"]["Keras"]
            if c is None:
                row.append("not run (see below)")
                continue
            same = np.array_equal(c, keras)
            identical &= same
            row.append(f"{np.mean(c == y) * 100:.2f}%" + ("" if engine == "Keras" else " (= Keras)" if same else
                                                        f" ({int(np.sum(c != keras))} classes differ from Keras)"))
        acc_rows.append(row)
    table = md_table(["engine"] + [f"{label}: test accuracy ({len(y)} utterances)" for label in results], acc_rows)
    cost_rows = [row for label, r in results.items() for row in _cost_rows(label, r)]
    cost = md_table(["model", "target", "time per inference", "model flash", "RAM"], cost_rows) if cost_rows else ""
    models_text = "\n".join(
        f"- {label}: {source}; {sum(int(np.prod(w.shape)) for w in models[label][0].trainable_weights):,} "
        f"trainable parameters; graph ops: {_ops(r['export'])}; export plan (target c): flash "
        f"{r['export'].plan['totals']['flash_bytes']:,} B, activations {r['export'].plan['totals']['activation_bytes']:,} B"
        for label, r in results.items() for source in [models[label][1]])
    notes = "\n".join(f"- {label}: {n}" for label, r in results.items() for n in r["notes"])
    base = md_table(["classifier", "test accuracy"],
                    [[f"{n} (published)", f"{a * 100:.1f}%"] for n, a in BASELINES]
                    + [[f"this 1-D BNN, {label} (uint8 input)", f"{np.mean(r['classes']['Keras'] == y) * 100:.2f}%"]
                       for label, r in results.items()])
    text = "\n\n".join(filter(None, [
        "## Real sensor data: JapaneseVowels on Cortex-M3 and ATmega328P",
        "The example `examples/sensor_1d/sensor_1d.py`: JapaneseVowels of the UEA multivariate archive "
        "(Bagnall et al. 2018, arXiv:1811.00075; the copy bundled in the `aeon` package; 9 speakers, 12 LPC "
        "coefficients x up to 29 frames, 270 training / 370 test utterances), quantized to uint8 per channel "
        "(29 x 12 = 348-byte input), three QuantConv1D blocks, then a binary dense classifier (binary head) "
        "or global average pooling + a float Dense layer (float head).",
        models_text,
        __doc__.split("Method:")[1].split("Writes")[0].strip().replace("\n", " "),
        table,
        cost,
        notes,
        "Published baselines (test accuracy on JapaneseVowels as reported), quoted from " + BASELINE_SOURCE +
        " -- not rerun here. (The multivariate bake-off of Ruiz et al. 2021 evaluates only the 26 equal-length "
        "problems and has no JapaneseVowels entry.) Those are kernel methods on the float series; these models "
        "are binary networks on 8-bit inputs.",
        base,
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
