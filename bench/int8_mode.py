"""Integer-only mode (export(..., quantize="int8")): cost on an FPU-less core and accuracy against Keras.

    EBNN_DATA_DIR=/work/shared/data python bench/int8_mode.py [--epochs 8] [--images 20] [--no-write]

Method. Two BNNs of issue 21 with a full-precision stem are trained on MNIST for --epochs epochs
(keras_ebnn.train.training.train: Adam 1e-3, cosine schedule, batch 128, all 60,000 training images; then the
batch-norm statistics re-estimated on 10,000 training images, keras_ebnn.train.training.reestimate_batchnorm):
  * float-stem: tiny_mnist (keras_ebnn.train.models) with a float Conv2D(16, 3) (+ bias) as its first layer
    instead of the binary-weight QuantConv2D; the rest binary;
  * residual: float stem (Conv2D(16, 3), max-pool 2, BN), two binary residual blocks
    (x + BN(QuantConv2D(16, 3, same)(x))), global average pool, float Dense(10).
Each is exported twice: the default exact float32 graph and quantize="int8" calibrated on the first 500
training images. Accuracy on the 10,000 MNIST test images: Keras (float), the exported model's
reference executor (float32 export: keras_ebnn.ir.graph_reference; int8: keras_ebnn.passes.graph_quant.run), and the
C of each export is checked bit for bit against its reference on the first 1,000 test images (export()
raises otherwise). Cost: instructions per inference counted under QEMU by bench/targets (mps2-an385;
Cortex-M0+ and Cortex-M4F, arm-none-eabi-gcc -O2), mean over the first --images test images, for both
exports and for the binary-weight twin (the shipped examples/models/tiny_mnist.keras, a chain export);
the classes QEMU prints must equal the reference's. "soft-float calls": the __aeabi_f* / __aeabi_d* /
int-float conversion routines `arm-none-eabi-nm` finds in the Cortex-M0+ ELF. RAM: the export's arena
(input excluded); flash: its model data.
Binary Samy (WakeVision person detector, 80x80x3; EBNN_DATA_DIR/published-models/wakevision_samy_bnn.h5,
the trained Larq file; skipped when absent): exported with quantize="int8" calibrated on --images random
uniform [0, 1] inputs (no WakeVision images here: its figures are cost and memory, the C checked
against the reference on those inputs); instructions on Cortex-M7 and M0+ under QEMU; RAM = arena +
the export's stack bound (input excluded, as issue 21 counts it); model flash = its constant data.
"""
import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import write_section, md_table  # noqa: E402
from bench.targets import cortexm  # noqa: E402

SOFT_FLOAT = ("__aeabi_f", "__aeabi_d", "__aeabi_i2f", "__aeabi_ui2f", "__aeabi_l2f", "__aeabi_ul2f",
              "__aeabi_i2d", "__aeabi_ui2d", "__aeabi_l2d", "__aeabi_ul2d")
HIDDEN = dict(input_quantizer="ste_sign", kernel_quantizer="ste_sign", kernel_constraint="weight_clip",
              use_bias=False)
REPRESENTATIVE = 500
C_CHECKED = 1000
CPUS = ("cortex-m0plus", "cortex-m4")


def float_stem_mnist():
    """tiny_mnist with a float Conv2D(16, 3) first layer (issue 21's float-stem MNIST BNN)."""
    from keras_ebnn import import_larq
    tf, lq = import_larq()
    L = tf.keras.layers
    bn = dict(momentum=0.9, scale=False)
    return tf.keras.Sequential([
        L.InputLayer((28, 28, 1)), L.Rescaling(1 / 255.0),
        L.Conv2D(16, 3), L.MaxPooling2D(2), L.BatchNormalization(**bn),
        lq.layers.QuantConv2D(32, 3, **HIDDEN), L.MaxPooling2D(2), L.BatchNormalization(**bn),
        L.Flatten(), lq.layers.QuantDense(10, **HIDDEN), L.BatchNormalization(**bn), L.Activation("softmax")],
        name="float_stem")


def residual_bnn():
    """Float stem, two binary residual blocks (two adds), global average pool, float head."""
    from keras_ebnn import import_larq
    tf, lq = import_larq()
    L = tf.keras.layers
    inp = L.Input((28, 28, 1))
    x = L.Rescaling(1 / 255.0)(inp)
    x = L.Conv2D(16, 3)(x)
    x = L.MaxPooling2D(2)(x)
    x = L.BatchNormalization(momentum=0.9)(x)
    for _ in range(2):
        y = lq.layers.QuantConv2D(16, 3, padding="same", **HIDDEN)(x)
        x = L.Add()([x, L.BatchNormalization(momentum=0.9)(y)])
    x = L.GlobalAveragePooling2D()(x)
    out = L.Activation("softmax")(L.Dense(10)(x))
    return tf.keras.Model(inp, out, name="residual")


def soft_float_symbols(elf):
    names = subprocess.run(["arm-none-eabi-nm", str(elf)], capture_output=True, text=True, check=True).stdout.split()
    return sorted({n for n in names if n.startswith(SOFT_FLOAT)})


def measure(out_dir, name, images, want_classes, int8):
    """{cpu: instructions per inference}, soft-float symbols of the M0+ ELF; checks QEMU's classes."""
    res, soft = {}, None
    for cpu in CPUS:
        with tempfile.TemporaryDirectory(prefix=f"int8-{cpu}-") as work:
            r = cortexm.build_and_run(out_dir, name, images, cpu=cpu, workdir=work,
                                      flags=["-DSCORE_T=int32_t"] if int8 else [])
            if not np.array_equal(r["classes"], want_classes):
                raise RuntimeError(f"{name} on {cpu}: QEMU's classes differ from the reference's")
            res[cpu] = r["instructions_per_inference"]
            if cpu == "cortex-m0plus":
                soft = soft_float_symbols(r["elf"])
    return res, soft


def samy(args):
    """The Binary Samy lines of the section (empty when the model file is absent)."""
    import os
    from keras_ebnn.passes import graph_quant
    from keras_ebnn.frontdoor.exporting import export
    path = Path(os.environ.get("EBNN_DATA_DIR", "")) / "published-models" / "wakevision_samy_bnn.h5"
    if not path.is_file():
        print(f"{path}: absent, Binary Samy skipped")
        return []
    x = np.random.default_rng(0).uniform(0, 1, (args.images, 80, 80, 3)).astype(np.float32)
    out = Path(tempfile.mkdtemp(prefix="int8-samy-"))
    from keras_ebnn.frontend.lowering import load_model
    r = export(load_model(path), out / "samy", name="samy", verify_inputs=x, quantize="int8", representative_data=x)
    assert r.c_checked and r.c_matches_reference
    g = r.lowered.graph
    ref = graph_quant.run(g, x)
    cost = {}
    for cpu in ("cortex-m7", "cortex-m0plus"):
        with tempfile.TemporaryDirectory(prefix=f"samy-{cpu}-") as work:
            q = cortexm.build_and_run(out / "samy", "samy", graph_quant.quantize_input(g, x), cpu=cpu, workdir=work,
                                      flags=["-DSCORE_T=int32_t"])
            if not np.array_equal(q["classes"], ref["classes"]):
                raise RuntimeError(f"Binary Samy on {cpu}: QEMU's classes differ from the reference's")
            cost[cpu] = q["instructions_per_inference"]
            if cpu == "cortex-m0plus":
                soft = soft_float_symbols(q["elf"])
    t = r.plan["totals"]
    line = (f"\nBinary Samy (wakevision_samy_bnn.h5) with quantize=\"int8\": arena {r.plan['arena_bytes']:,} B + stack "
            f"<= {t['stack_bytes_estimate']:,} B = {r.plan['arena_bytes'] + t['stack_bytes_estimate']:,} B of RAM (input "
            f"excluded; issue 21 target <= 20,000 B), model data {t['flash_data_bytes']:,} B of flash (target <= 8,000 B), "
            f"{cost['cortex-m7']:,.0f} instructions per inference on Cortex-M7 (target <= 10 M; CBin-NN 45.0 M, the exact "
            f"float32 export 41.5 M) and {cost['cortex-m0plus']:,.0f} on Cortex-M0+ (soft-float calls: "
            f"{', '.join(soft) if soft else 'none'}); C = reference on {args.images} random inputs, classes = Keras float "
            f"on {r.agreement.class_agreement * 100:.0f}% of them. Ops: "
            + ", ".join(f"{o['kind']} ({'x'.join(map(str, o['shape']))} {o['dtype']})" for o in r.plan["ops"]) + ".")
    print(line)
    return [line]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    print(__doc__)
    from keras_ebnn.train import datasets, training
    from keras_ebnn.passes import graph_quant
    from keras_ebnn.ir import graph_reference
    from keras_ebnn.frontdoor.exporting import export, lower_for_export
    (x_train, y_train), (x_test, y_test) = datasets.load("mnist")
    rep = x_train[:REPRESENTATIVE]
    rows, notes = [], []
    work = Path(tempfile.mkdtemp(prefix="int8-mode-"))
    twin_out = work / "twin"
    twin = lower_for_export(str(ROOT / "examples/models/tiny_mnist.keras"), "twin")
    from keras_ebnn.ir import graph_reference as reference
    from keras_ebnn.exporters.c import export_c
    export_c(twin, twin_out, "twin")
    twin_cls = reference.run(twin, x_test[:args.images])["classes"]
    twin_cost, twin_soft = measure(twin_out, "twin", x_test[:args.images], twin_cls, False)
    print(f"binary-weight twin (tiny_mnist.keras): {twin_cost}")
    for build in (float_stem_mnist, residual_bnn):
        model = build()
        t0 = time.time()
        training.train(model, x_train, y_train, epochs=args.epochs, verbose=2)
        training.reestimate_batchnorm(model, x_train[:10000])  # inference statistics, as EbnnExport does
        print(f"{model.name}: trained {args.epochs} epochs in {time.time() - t0:.0f} s")
        keras_acc = training.evaluate(model, x_test, y_test)
        for mode in ("float32", "int8"):
            out = work / f"{model.name}_{mode}"
            kw = {"quantize": "int8", "representative_data": rep} if mode == "int8" else {}
            r = export(model, out, name="m", verify_inputs=x_test[:C_CHECKED], verify_labels=y_test[:C_CHECKED], **kw)
            assert r.c_checked and r.c_matches_reference
            g = r.lowered.graph
            if mode == "int8":
                ref = graph_quant.run(g, x_test)
            else:
                ref = graph_reference.run(g, x_test)
            acc = float(np.mean(ref["classes"] == y_test))
            keras_cls = np.argmax(model.predict(x_test.astype(np.float32), batch_size=1000, verbose=0), axis=1)
            agree = float(np.mean(ref["classes"] == keras_cls))
            imgs = graph_quant.quantize_input(g, x_test[:args.images]) if mode == "int8" else x_test[:args.images]
            cost, soft = measure(out, "m", imgs, ref["classes"][:args.images], mode == "int8")
            t = r.plan["totals"]
            rows.append([model.name, mode, f"{keras_acc * 100:.2f}%", f"{acc * 100:.2f}%", f"{agree * 100:.2f}%",
                         f"{cost['cortex-m0plus']:,.0f}", f"{cost['cortex-m0plus'] / twin_cost['cortex-m0plus']:.2f}x",
                         f"{cost['cortex-m4']:,.0f}", ", ".join(soft) if soft else "none",
                         f"{r.plan['arena_bytes']:,}", f"{t['flash_data_bytes']:,}"])
            print(rows[-1])
    notes += samy(args)
    rows.append(["tiny_mnist (binary-weight twin)", "chain", "", "", "", f"{twin_cost['cortex-m0plus']:,.0f}", "1.00x",
                 f"{twin_cost['cortex-m4']:,.0f}", ", ".join(twin_soft) if twin_soft else "none", "", ""])
    table = md_table(["model", "export", "Keras acc.", "export acc.", "classes = Keras", "M0+ instr.",
                      "vs twin (M0+)", "M4F instr.", "soft-float calls (M0+ ELF)", "arena B", "model data B"], rows)
    text = (f"## Integer-only mode (int8)\n\n`export(model, out, quantize=\"int8\", representative_data=x)` (CLI: "
            "`--quantize int8 --representative-data FILE.npy|DIR`) turns every full-precision part into the TFLite "
            "int8 scheme (keras_ebnn/passes/graph_quant.py): no floating-point arithmetic in the C. "
            f"Both models trained {args.epochs} epochs on MNIST; accuracy on the 10,000 test images; "
            f"instructions: mean over {args.images} test images under QEMU, -O2; the C of every export equals its "
            f"reference bit for bit on {C_CHECKED:,} test images (and QEMU's classes on the measured ones).\n\n"
            + table + "\n" + "\n".join(notes))
    print(text)
    if not args.no_write:
        write_section("int8_mode", text, "EBNN_DATA_DIR=/work/shared/data python bench/int8_mode.py"
                      + (f" --epochs {args.epochs}" if args.epochs != 8 else "")
                      + (f" --images {args.images}" if args.images != 20 else ""))


if __name__ == "__main__":
    main()
