"""Spoken digits end to end: raw 8 kHz audio -> integer front end in C -> BNN, on Cortex-M4F and Cortex-M0+.

    TFLM_DIR=/path/to/tflm python bench/spoken_digits.py [--model examples/spoken_digits/spoken_digits.keras]
        [--no-m0] [--no-tflm] [--cache DIR] [--no-write]
    (TFLM_DIR: see bench/targets/tflm.py; without it the int8 twin is not run and the section says so)

Method: the example's model (examples/spoken_digits: the shipped .keras file and its frontend.json,
--model, or trained here with the example's defaults when neither exists) classifies the whole
official FSDD test split (300 clips, keras_ebnn.train.datasets.load_fsdd; EBNN_DATA_DIR) five ways: Keras
and the NumPy graph reference on the NumPy front end's features (keras_ebnn.frontend.audio.FrontEnd), and on
the raw clips the exported C (NAME_audio_classify_clip: C front end + network) compiled for the host
(gcc -O2), for a Cortex-M4F (QEMU mps2-an386) and a Cortex-M0+ (ARMv6-M code on mps2-an385;
arm-none-eabi-gcc -O2). On the Cortex-M targets a bare-metal driver (bench/targets/cortexm/audio_driver.c)
pushes each clip, then zeros up to the model's window (7,936 samples = 0.992 s at 8 kHz), and runs
NAME_predict on the window; the instruction-counting plugin (bench/targets/cortexm.py) counts the
front end (reset + pushes: the window's frames) and the network (one NAME_predict) in two builds, each averaged
over the 300 clips, the marker pair's cost subtracted. Per second of audio: front end instructions x
8000 / 7936; network: one classification per window of 0.992 s (a device classifying every half
window pays twice that). RAM: the front end's and the model's static buffers (symbols of NAME_audio.c
and the arena) + the stack high-water mark of the whole run (painted; front end and network). Flash:
what the model + front end add to the program (two --gc-sections links, with and without the calls;
cortexm.model_flash). All engines must give identical classes on every clip (exit 1 otherwise).
Writes the "Spoken digits" section of BENCHMARKS.md.
"""
import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from common import ROOT, md_table, write_section

sys.path.insert(0, str(ROOT / "examples" / "spoken_digits"))
sys.path.insert(0, str(ROOT))
import train as example  # noqa: E402

SHIPPED = ROOT / "examples" / "spoken_digits" / "spoken_digits.keras"
NAME = "spoken_digits"
TARGETS = {"Cortex-M4F": "cortex-m4", "Cortex-M0+": "cortex-m0plus"}
GOAL_INSTRUCTIONS, GOAL_RAM = 2_000_000, 16 * 1024


def clips_header(path, clips):
    offsets = np.concatenate([[0], np.cumsum([len(c) for c in clips])])
    samples = np.concatenate(clips).astype(np.int64)
    rows = [", ".join(str(int(v)) for v in samples[i:i + 24]) for i in range(0, len(samples), 24)]
    path.write_text(f"#define N_CLIPS {len(clips)}u\n"
                    f"static const uint32_t clip_offsets[{len(offsets)}] = {{{', '.join(map(str, offsets))}}};\n"
                    f"static const int16_t clip_samples[{len(samples)}] = {{\n" + ",\n".join(rows) + "\n};\n")


def build(export_dir, work, cpu, measure, opt="-O2"):
    from bench.targets import cortexm
    flags, machine = cortexm.CPUS[cpu]
    ld = cortexm.linker_script(work, machine)
    elf = work / f"{NAME}_{cpu}_m{measure}.elf"
    here = cortexm.HERE
    cmd = [cortexm.CC, *flags, "-std=c99", "-Wall", "-Wextra", "-Werror", opt, "-ffunction-sections",
           "-fdata-sections", f"-I{export_dir}", f"-I{work}", f"-I{here}", f"-DMODEL_HEADER=\"{NAME}.h\"",
           f"-DMODEL_AUDIO_HEADER=\"{NAME}_audio.h\"", f"-DMODEL={NAME}", f"-DMEASURE={measure}",
           *sorted(str(p) for p in Path(export_dir).glob("*.c")), str(here / "audio_driver.c"),
           str(here / "startup.c"), "-nostartfiles", "--specs=nano.specs", "-T", str(ld), "-Wl,--gc-sections",
           "-o", str(elf), "-lc", "-lgcc"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"build failed:\n{' '.join(cmd)}\n{proc.stderr}")
    return elf


def run_target(export_dir, clips, cpu, work, num_classes=10):
    """Classes, instructions (front end, network: per clip), RAM and flash of the export on `cpu`."""
    from bench.targets import cortexm
    work.mkdir(parents=True, exist_ok=True)
    clips_header(work / "clips.h", clips)
    out = {}
    counts = {}
    for measure in (0, 1, 2):
        elf = build(export_dir, work, cpu, measure)
        lines, counters = cortexm.run(elf, cpu)
        classes, logits = cortexm.parse(lines, num_classes)
        counts[measure] = counters
        if measure == 1:
            out["classes"], out["logits"], out["elf"] = classes, logits, elf
            out["stack"] = counters["stack"]
        elif measure == 2 and not np.array_equal(classes, out["classes"]):
            raise RuntimeError("the two measuring builds disagree")
    marker = counts[0]["marked"] / counts[0]["pairs"]
    out["front_end"] = counts[1]["marked"] / counts[1]["pairs"] - marker
    out["network"] = counts[2]["marked"] / counts[2]["pairs"] - marker
    syms = cortexm.symbols(out["elf"], with_type=True)
    out["buffers"] = {k: v[1] for k, v in syms.items() if k.startswith(f"{NAME}_") and v[2] in "bBdD"}
    base = build(export_dir, work, cpu, -1)
    out["flash"] = cortexm.model_flash(out["elf"], base, NAME)
    return out


TWIN_EPOCHS = 20


def int8_twin(fe, widths, tf):
    """The example's network with float layers, as 2-D layers over a (1, frames, bands) input (TFLM
    has no 1-D convolution: the converter would add EXPAND_DIMS around a CONV_2D): Conv2D (1 x 3,
    'same', no bias) -> batch norm (before the pooling, so the converter folds it into the conv) ->
    ReLU where the BNN takes the sign -> max pooling (1 x 2) after every block but the first ->
    Flatten -> Dense -> softmax (left out of the conversion)."""
    L = tf.keras.layers
    layers = [L.InputLayer((1, fe.num_frames, fe.mel_bands)), L.Rescaling(1 / 255.0)]
    for i, w in enumerate(widths):
        layers += [L.Conv2D(w, (1, 3), padding="same", use_bias=False), L.BatchNormalization(), L.ReLU()]
        if i > 0:
            layers.append(L.MaxPooling2D((1, 2)))
    layers += [L.Flatten(), L.Dense(10), L.Activation("softmax")]
    return tf.keras.Sequential(layers, name="spoken_digits_int8")


def run_twin(model, fe, x_test, y, work, log=print, cache=None):
    """Train the int8 twin (bench/mcu_peers.py's recipe and converter, TWIN_EPOCHS epochs, on the
    example's training features with its augmented copies), convert it, run it with TFLM + CMSIS-NN
    on the Cortex-M4F (bench/mcu_peers.run_tflm: same harness; outputs checked against TFLite's
    reference kernels). cache: a folder keeping the converted twin (.tflite) between runs. Returns
    run_tflm's dict."""
    import mcu_peers
    from bench.targets import tflm
    from keras_ebnn import import_larq
    tf, _ = import_larq()
    widths = [lay.filters for lay in model.layers if hasattr(lay, "filters")]
    mcu_peers.EPOCHS = TWIN_EPOCHS

    def make():  # the example's training features (and augmented copies), the twin trained and converted
        data = example.load_data(fe.__class__(**fe.config()))
        if data["fe"].config() != fe.config():
            raise RuntimeError("the twin's training features differ from the model's front end")
        xtr = data["x_train"].reshape(-1, 1, fe.num_frames, fe.mel_bands)
        return mcu_peers.train_convert(int8_twin(fe, widths, tf), xtr, data["y_train"], tf)
    if cache is None:
        fb = make()
    else:  # keyed by the front end, the widths and the recipe
        key = hashlib.sha1(repr((fe.config(), widths, TWIN_EPOCHS, mcu_peers.LR, mcu_peers.BATCH, mcu_peers.REP,
                                 "v1")).encode()).hexdigest()[:12]
        Path(cache).mkdir(parents=True, exist_ok=True)
        fb = mcu_peers.cached_tflite(cache, f"spoken_digits_int8_{key}", make)
    objects = tflm.library("cortex-m4", "-O2")
    return mcu_peers.run_tflm("spoken_digits_int8", fb, x_test, y, "cortex-m4", work, objects, tf, log)


TWIN_TEXT = (f"int8 twin: the same network with float Conv2D (1 x 3) / Dense layers, batch norm and ReLU, trained "
             f"{TWIN_EPOCHS} epochs on the same training features (bench/mcu_peers.py's converter: full-integer int8, "
             "Dense per tensor) and run by TFLite Micro with CMSIS-NN (bench/targets/tflm.py, the same QEMU "
             "harness) on the C front end's features of the 300 test clips; its network instructions are per "
             "window as above, its front end is the same C front end. Flash and RAM of the twin count the "
             "network side (TFLM runtime, model, arena, static objects, stack) plus the front end's buffers.")


def mcu_peers_checked(r):
    import mcu_peers
    return mcu_peers.checked(r)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help=f"trained .keras (default: {SHIPPED.relative_to(ROOT)} if present)")
    ap.add_argument("--frontend", default=None, help="its frontend.json (default: beside the model)")
    ap.add_argument("--no-m0", action="store_true", help="skip the Cortex-M0+")
    ap.add_argument("--no-tflm", action="store_true", help="skip the int8 TFLM twin (needs TFLM_DIR)")
    ap.add_argument("--cache", default=None, help="folder keeping the trained int8 twin between runs")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    print(__doc__)
    import time
    import keras_ebnn
    from bench.targets import cortexm
    from keras_ebnn.ir import graph_reference
    from keras_ebnn.frontend.audio import FrontEnd, c_classify_clips
    from keras_ebnn.train.datasets import DatasetNotFoundError, load_fsdd
    from keras_ebnn.ir.graph import lower_graph
    from keras_ebnn.frontend.lowering import load_model
    try:
        clips, y = load_fsdd(split="test")
    except DatasetNotFoundError as exc:
        print(f"skipped: {exc}")
        return 2
    model_path = Path(args.model) if args.model else (SHIPPED if SHIPPED.is_file() else None)
    if model_path is not None:
        model = load_model(model_path)
        fe = FrontEnd(**json.loads(Path(args.frontend or model_path.parent / "frontend.json").read_text()))
        source = f"`{model_path.resolve().relative_to(ROOT)}`" if model_path.resolve().is_relative_to(ROOT) \
            else str(model_path)
    else:
        t0 = time.time()
        data = example.load_data(example.front_end())
        fe = data["fe"]
        model = example.train_model(data)
        source = f"trained by this run with the example's defaults ({time.time() - t0:.0f} s)"
    x = fe.features_batch(clips)
    classes = {"Keras (NumPy features)": example.keras_classes(model, x),
               "NumPy graph reference (NumPy features)": graph_reference.run(lower_graph(model), x)["classes"]}
    results = {}
    with tempfile.TemporaryDirectory(prefix="ebnn-spoken-") as work:
        work = Path(work)
        res = keras_ebnn.export(model, work / "c", name=NAME, target="c", audio_frontend=fe)
        classes["host C on raw audio (gcc -O2)"] = c_classify_clips(work / "c", NAME, clips, 10)[0]
        if cortexm.available():
            for label, cpu in TARGETS.items():
                if cpu == "cortex-m0plus" and args.no_m0:
                    continue
                t = time.time()
                r = run_target(work / "c", clips, cpu, work / cpu)
                print(f"{label}: {time.time() - t:.0f} s")
                results[label] = r
                classes[f"{label} on raw audio (QEMU, -O2)"] = r["classes"]
        from bench.targets import tflm
        twin, twin_note = None, None
        if args.no_tflm:
            twin_note = "the int8 TFLM twin: not run (--no-tflm)"
        elif not tflm.available() or "Cortex-M4F" not in results:
            twin_note = ("the int8 TFLM twin: not run (TFLM_DIR, arm-none-eabi-g++ with libstdc++ or the Cortex-M4F "
                         "run missing; see bench/targets/tflm.py)")
        else:
            t = time.time()
            twin = run_twin(model, fe, x, y, work / "tflm", cache=args.cache)
            print(f"TFLM twin: {time.time() - t:.0f} s")
    ref = classes["NumPy graph reference (NumPy features)"]
    identical = all(np.array_equal(c, ref) for c in classes.values())
    acc_rows = [[k, f"{np.mean(c == y) * 100:.2f}%", "yes" if np.array_equal(c, ref) else
                 f"no ({int(np.sum(c != ref))} differ)"] for k, c in classes.items()]
    secs = fe.window_samples / fe.sample_rate
    cost_rows = []
    for label, r in results.items():
        fe_s, net_s = r["front_end"] / secs, r["network"] / secs
        buffers = sum(r["buffers"].values())
        ram = buffers + r["stack"]
        cost_rows.append([label, f"{fe_s:,.0f}", f"{net_s:,.0f}", f"{fe_s + net_s:,.0f}",
                          f"{ram:,} B (buffers {buffers:,} + stack {r['stack']:,})", f"{r['flash']['flash']:,} B"])
    if twin is not None:
        acc_rows.append(["int8 twin, TFLM + CMSIS-NN on the Cortex-M4F (C front end's features)",
                         f"{twin['acc'] * 100:.2f}%", f"- (its own model; {mcu_peers_checked(twin)})"])
        fe_s = results["Cortex-M4F"]["front_end"] / secs
        net_s = twin["mean_insn"] / secs
        ram = sum(v for k, v in results["Cortex-M4F"]["buffers"].items() if "_audio_" in k) + twin["arena"] + \
            twin["static"] + twin["stack"]
        cost_rows.append(["Cortex-M4F, int8 twin (TFLM + CMSIS-NN)", f"{fe_s:,.0f} (the same C front end)",
                          f"{net_s:,.0f}", f"{fe_s + net_s:,.0f}",
                          f"{ram:,} B (front end buffers + arena {twin['arena']:,} + TFLM static {twin['static']:,} "
                          f"+ network stack {twin['stack']:,})", f"{twin['flash']:,} B (network only: model "
                          f"{twin['model_bytes']:,} + TFLM code {twin['code']:,})"])
    t = res.plan["totals"]
    m4 = results.get("Cortex-M4F")
    goals = ""
    if m4:
        total = (m4["front_end"] + m4["network"]) / secs
        ram = sum(m4["buffers"].values()) + m4["stack"]
        goals = (f"Goals (issue 23) on the Cortex-M4F: front end + network <= {GOAL_INSTRUCTIONS:,} instructions per "
                 f"second of audio: {total:,.0f} ({'met' if total <= GOAL_INSTRUCTIONS else 'NOT met'}); RAM <= "
                 f"{GOAL_RAM:,} B: {ram:,} B ({'met' if ram <= GOAL_RAM else 'NOT met'}); test accuracy >= 97% "
                 f"for Keras, reference and C: {min(np.mean(c == y) for c in classes.values()) * 100:.2f}% (lowest).")
    text = "\n\n".join(filter(None, [
        "## Spoken digits",
        "Raw 8 kHz audio in, digit out, the features computed in C: `examples/spoken_digits/train.py` "
        "(Free Spoken Digit Dataset, official split: 2,700 training / 300 test clips of 6 speakers). Front end "
        f"(`keras_ebnn.frontend.audio.FrontEnd`, integer C `runtime_c/ebnn_audio.c`): {fe.config()}; "
        f"the model reads {fe.num_frames} frames x {fe.mel_bands} uint8 log-mel features. "
        f"Model: {source}; {sum(int(np.prod(w.shape)) for w in model.trainable_weights):,} trainable parameters; "
        f"export plan: model flash {t['flash_bytes']:,} B, activations {t['activation_bytes']:,} B.",
        "Method: " + __doc__.split("Method:")[1].split("Writes")[0].strip().replace("\n", " "),
        md_table(["engine", f"FSDD test accuracy ({len(y)} clips)", "classes = reference"], acc_rows),
        md_table(["target", "front end instr / s of audio", "network instr / s of audio", "total", "RAM",
                  "flash (model + front end)"], cost_rows) if cost_rows else
        "Cortex-M: arm-none-eabi-gcc / qemu-system-arm not available, not run.",
        goals,
        TWIN_TEXT if twin is not None else None,
        ("Not done: " + twin_note + ". " if twin_note else "") + "Zephyr: examples/spoken_digits/zephyr classifies "
        "WAV-derived clips on native_sim (tests/test_audio_zephyr.py: the classes and logit bits equal the "
        "reference; needs ZEPHYR_BASE). Arduino: no audio sketch (the arduino export with audio_frontend= is "
        "compiled by tests/test_audio.py, not run). On an Arduino Uno it cannot fit: the front end's buffers "
        f"alone (sample ring, FFT work, doubled feature window: {fe.ram_bytes():,} B) exceed its 2,048 B of SRAM; "
        "a board with a few KB more (e.g. a Cortex-M board) is needed.",
    ]))
    print(text)
    if not args.no_write:
        command = ("TFLM_DIR=/path/to/tflm " if twin is not None else "") + "python bench/spoken_digits.py" + \
            ("" if args.cache is None or twin is None else " --cache DIR")
        write_section("spoken_digits", text, command)
    if not identical:
        print("ERROR: the engines disagree on some classes", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
