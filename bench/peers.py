"""Peers, side by side in one run: keras-ebnn's C vs Larq Compute Engine and TensorFlow Lite Micro.

    EBNN_DATA_DIR=../shared/data python bench/peers.py [--model m15_mnist] [--no-write]
    (needs: pip install larq-compute-engine; pip install --pre tflite-micro)

Method, all on this machine in this one run, on the MNIST test set:
  * keras-ebnn: the shipped Larq model exported as C, gcc -O2 (portable) and -O2 -march=native (the
    compiler may use the CPU's popcount instruction), one process classifying the images;
    time per image = wall time / images (median of 5 runs); size = model data (weights, thresholds)
    and RAM = activation arena, from the memory plan (checked against the ELF by the test suite).
  * Larq Compute Engine: the same Larq model converted with larq_compute_engine.convert_keras_model,
    run by LCE's x86 interpreter (Python API, one image per call, 1 thread); time per image = median
    over 500 single-image calls; size = flatbuffer bytes.
  * TFLite Micro: the same architecture with float Conv2D/Dense layers (an "int8 twin"), trained 3
    epochs with Adam, converted to a full-integer int8 TFLite model (representative data: 200
    training images), run by the tflite-micro Python runtime; arena bytes from print_allocations,
    size = flatbuffer bytes; accuracy on the test set.
Writes the "peers" section of BENCHMARKS.md.
"""
import argparse
import os
import re
import tempfile
import time

import numpy as np

from common import available_models, load_export, md_table, test_set, write_section


def ebnn_row(name, path, x, y, work):
    from keras_ebnn.frontdoor import host
    from keras_ebnn.exporters.c import memory_plan
    model, lowered, out = load_export(name, path, work)
    plan = memory_plan(lowered)
    rows = []
    for flags, label in (([], "gcc -O2"), (["-march=native"], "gcc -O2 -march=native")):
        exe = host.build_runner(out, name, opt="-O2", extra_flags=flags)
        times = []
        for _ in range(5):
            t = time.perf_counter()
            cls, _ = host.run_runner(exe, x, lowered.num_classes, lowered.input.dtype)
            times.append(time.perf_counter() - t)
        rows.append({"engine": f"keras-ebnn C ({label})", "acc": float(np.mean(cls == y)),
                     "us": float(np.median(times)) / len(x) * 1e6, "model_bytes": plan["totals"]["flash_data_bytes"],
                     "ram_bytes": plan["arena_bytes"], "note": "model data; RAM = activation arena"})
    return model, rows


def lce_row(model, x, y):
    from larq_compute_engine import convert_keras_model
    from larq_compute_engine.tflite.python.interpreter import Interpreter
    fb = convert_keras_model(model)
    interp = Interpreter(fb, num_threads=1)
    xf = x.astype(np.float32)
    preds = np.concatenate([np.argmax(interp.predict(xf[i:i + 1]), axis=1) for i in range(len(x))])
    times = []
    for i in range(500):
        t = time.perf_counter()
        interp.predict(xf[i:i + 1])
        times.append(time.perf_counter() - t)
    return {"engine": "Larq Compute Engine 0.16 (x86 interpreter)", "acc": float(np.mean(preds == y)),
            "us": float(np.median(times)) * 1e6, "model_bytes": len(fb), "ram_bytes": None,
            "note": "flatbuffer"}


def float_layer(lay, L):
    """A fresh float layer for one layer of a Larq model: Conv2D / Dense for QuantConv2D / QuantDense
    (no quantizers), a new BatchNormalization, else a copy from the layer's config. L: keras.layers."""
    cls = type(lay).__name__
    if cls == "QuantConv2D":
        return L.Conv2D(lay.filters, lay.kernel_size, strides=lay.strides, padding=lay.padding,
                        use_bias=lay.use_bias)
    if cls == "QuantDense":
        return L.Dense(lay.units, use_bias=lay.use_bias)
    if cls == "BatchNormalization":
        return L.BatchNormalization(momentum=0.9, scale=lay.scale, center=lay.center)
    return type(lay).from_config(lay.get_config())


def float_twin(model, tf, lq):
    """Same architecture with float Conv2D / Dense layers (no quantizers)."""
    L = tf.keras.layers
    return tf.keras.Sequential([L.InputLayer(model.input_shape[1:])] + [float_layer(lay, L) for lay in model.layers])


def tflm_row(model, x, y, xtr, ytr):
    from keras_ebnn import import_larq
    tf, lq = import_larq()
    twin = float_twin(model, tf, lq)
    twin.compile(tf.keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    twin.fit(xtr, ytr, epochs=3, batch_size=128, verbose=0)
    conv = tf.lite.TFLiteConverter.from_keras_model(twin)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    rep = xtr[:200].astype(np.float32)
    conv.representative_dataset = lambda: ([rep[i:i + 1]] for i in range(len(rep)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    fb = conv.convert()
    from tflite_micro import runtime
    interp = runtime.Interpreter.from_bytes(fb, arena_size=256 * 1024)
    det = interp.get_input_details(0)
    scale, zero = det["quantization_parameters"]["scales"][0], det["quantization_parameters"]["zero_points"][0]
    preds = []
    for i in range(len(x)):
        q = np.clip(np.round(x[i:i + 1].astype(np.float32) / scale + zero), -128, 127).astype(np.int8)
        interp.set_input(q, 0)
        interp.invoke()
        preds.append(int(np.argmax(interp.get_output(0))))
    arena = _arena_bytes(interp)
    return {"engine": "TFLite Micro (int8 twin, float weights quantized)", "acc": float(np.mean(np.array(preds) == y)),
            "us": None, "model_bytes": len(fb), "ram_bytes": arena, "note": "flatbuffer; RAM = arena used"}


def _arena_bytes(interp):
    """print_allocations() writes to C-level stderr: capture file descriptor 2."""
    with tempfile.TemporaryFile(mode="w+b") as f:
        saved = os.dup(2)
        os.dup2(f.fileno(), 2)
        try:
            interp.print_allocations()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        f.seek(0)
        text = f.read().decode(errors="replace")
    m = re.search(r"[Aa]rena[^\n]*?(\d+)\s*bytes", text) or re.search(r"(\d+) bytes", text)
    return int(m.group(1)) if m else None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="m15_mnist")
    ap.add_argument("--images", type=int, default=2000, help="test images used (default 2000)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    print(__doc__)
    name = args.model
    path, dataset = available_models([name])[name]
    x, y = test_set(dataset)
    x, y = x[:args.images], y[:args.images]
    from keras_ebnn.train import datasets
    (xtr, ytr), _ = datasets.load(dataset)
    with tempfile.TemporaryDirectory() as work:
        model, rows = ebnn_row(name, path, x, y, work)
    for fn in (lambda: lce_row(model, x, y), lambda: tflm_row(model, x, y, xtr, ytr)):
        try:
            rows.append(fn())
        except Exception as exc:  # a peer that is not installed is reported, not fatal
            print(f"peer failed: {type(exc).__name__}: {exc}")
    for r in rows:
        print(r)

    def fmt(v, f):
        return "-" if v is None else f.format(v)
    table = md_table(["engine", f"accuracy ({len(x)} test images)", "µs / image (host)", "model bytes", "RAM bytes", "what the bytes are"],
                     [[r["engine"], f"{r['acc'] * 100:.2f}%", fmt(r["us"], "{:.1f}"), fmt(r["model_bytes"], "{:,}"),
                       fmt(r["ram_bytes"], "{:,}"), r["note"]] for r in rows])
    print(table)
    text = f"## Peers on `{name}`\n\n" + __doc__.split("Method, ")[1].split("Writes")[0].strip() + "\n\n" + table
    if not args.no_write:
        write_section("peers", text, f"EBNN_DATA_DIR=../shared/data python bench/peers.py --model {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
