"""Who wins on the microcontroller: keras-ebnn's C vs TensorFlow Lite Micro + CMSIS-NN int8, on Cortex-M4.

    TFLM_DIR=/path/to/tflm EBNN_DATA_DIR=../shared/data python bench/mcu_peers.py \
        [--models paper_mnist,tiny_mnist,uno_mnist,m15_mnist] [--no-family] [--images N] [--cpu cortex-m4] [--cache DIR] [--no-write]
    TFLM_DIR=... [EBNN_DATA_DIR=../shared/data] python bench/mcu_peers.py --cifar-resnet8 [...]: the MLPerf Tiny
        ResNet-8 (CIFAR-10) int8 peer instead (see cifar_resnet8(); section "cifar_resnet8_cortex-m4")
    (TFLM_DIR: a flattened TFLite Micro tree, e.g. an export of tensorflow/tflite-micro-arduino-examples;
    see bench/targets/tflm.py. Without it the command says so and exits.)

Method, all in this one run, on the test set given by --images (default: all of it):
  * Both engines run bare metal on QEMU's mps2-an386 (Cortex-M4 with FPU and DSP extension), built
    with arm-none-eabi-gcc/g++ 12 -O2, with the same start-up code, linker script, marker functions
    around each inference, instruction-counting plugin and stack painting (bench/targets/cortexm.py).
    Instructions are exact counts per inference, marker cost subtracted (from a build without the
    inference call): the mean over the test images and the slowest image.
  * keras-ebnn: the shipped Larq models exported as C (default runtime options); every class printed
    by the device equals the NumPy reference executor's (checked for every image).
  * int8: TFLite Micro (tflite-micro-arduino-examples snapshot, CMSIS-NN kernels, ARM_MATH_DSP path on
    the M4), MicroMutableOpResolver with exactly the model's operators, static arena of
    arena_used_bytes() rounded up to 16 (measured on the device by a first run). Models: an int8 twin
    of each shipped model (same layers and sizes, float Conv2D/Dense in place of the binary ones, BN
    before the pooling so that the converter folds it into the convolution, ReLU where the binary net
    takes the sign, final softmax left out as it does not change the class) and a family of plain
    int8 CNNs (conv3x3-BN-ReLU-maxpool twice, dense 10) of increasing width; all trained 3 epochs with
    Adam (lr 1e-3, batch 128) on the training set and converted with TF 2.21's converter to
    full-integer int8 (int8 input and output, representative data: 500 training images).
    Quantization mode: int8 activations, int32 biases; convolution weights per channel (the
    converter's default); Dense weights per tensor
    (_experimental_disable_per_channel_quantization_for_dense_layers), because this TFLM snapshot
    computes per-channel FULLY_CONNECTED wrongly without an error. Every int8 output vector the device
    prints is compared with (a) TFLite's Python interpreter with its reference kernels (BUILTIN_REF)
    and (b) TFLM's own Python interpreter (pip tflite-micro 0.dev20261023, its reference kernels, a
    newer TFLM than the device's). Neither is bit-exact to the device in every case: BUILTIN_REF
    requantizes with a single rounding where this TFLM/CMSIS-NN rounds twice (gemmlowp style), and
    the newer TFLM differs in a few last-bit cases; the vectors that differ (by 1) are counted in the
    table, any difference larger than 1 fails the run.
  * flash = what the engine adds to the driver's flash (ELF text + data minus those of the build
    without the inference call; bench/targets/cortexm.model_flash); model = the model's const data
    (keras-ebnn: weights and thresholds; TFLM: the flatbuffer array); runtime/code = the rest (kernels,
    interpreter, flatbuffer parsing, library routines). RAM: arena = the activation arena (keras-ebnn:
    its arena symbol; TFLM: the tensor arena array); static = the other .data/.bss the engine adds
    (TFLM: interpreter, resolver and allocator objects); stack = the stack the inferences use,
    measured by painting (minus what the build without the call reaches). The input image buffer of
    the driver is not counted (784 B in both engines). Accuracy = the device's classes on the test images.
Caveats:
  * Instructions, not cycles: the M4 executes SMLAD (two 16-bit multiply-accumulates) in one
    instruction, and loads, branches and multiplies cost different cycles on real silicon; TFLM's
    count is nearly the same for every image, keras-ebnn's depends on the image (hence the slowest column).
  * Both engines at -O2. keras-ebnn with its default runtime options: its stack (1.3 KB on the M4) is
    larger than with -DEBNN_LOW_STACK=1 -Os (see the accuracy section, measured on the M3).
  * TFLM's runtime/code is per program, not per model (models with the same operators share it);
    it includes what this TFLM snapshot (tflite-micro-arduino-examples commit 7948b85, Dec 2023) links
    at -O2 with -DTF_LITE_STRIP_ERROR_STRINGS: the interpreter, flatbuffer parsing, the kernels'
    Prepare code (double-precision soft-float for the quantization multipliers) and newlib's malloc
    (referenced by TFLM's common.cpp, never called: no heap exists in the build).
  * The int8 models are trained 3 epochs only; keras-ebnn's shipped models were trained longer
    (see examples/models). Longer training would raise the int8 accuracies, not lower them.
  * The TFLite flatbuffers carry tensor names and metadata that a stripped model would not.
Writes the "mcu_peers" section of BENCHMARKS.md and bench/mcu_peers_pareto.png (with --cpu cortex-m0plus:
"mcu_peers_cortex-m0plus" and bench/mcu_peers_pareto_cortex-m0plus.png).
"""
import argparse
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from common import ROOT, available_models, load_export, md_table, write_section
from peers import float_layer

DEFAULT_MODELS = "paper_mnist,tiny_mnist,uno_mnist,m15_mnist"
FAMILY = [(4, 8), (8, 16), (16, 32), (32, 64)]  # plain int8 CNNs: filters of the two conv layers
CHUNK = 2500  # test images per ELF (they are const data in the 4 MB flash of the QEMU machine)
EPOCHS, LR, BATCH, REP = 3, 1e-3, 128, 500
PLOT = ROOT / "bench" / "mcu_peers_pareto.png"


def chunks(n, image_bytes=784):
    """(first, last + 1) of the images of each ELF: CHUNK 28x28 images' worth of bytes per ELF."""
    per = max(1, CHUNK * 784 // image_bytes)
    return [(i, min(i + per, n)) for i in range(0, n, per)]


# ----------------------------------------------------------------------------------------- models
def int8_twin(model, tf):
    """Float Keras model with the layers of the Larq `model` (see the method above)."""
    L = tf.keras.layers
    src = list(model.layers)
    out = [L.InputLayer(model.input_shape[1:])]
    quant_after = [any(type(m).__name__ in ("QuantConv2D", "QuantDense") for m in src[i + 1:]) for i in range(len(src))]
    i = 0
    while i < len(src):
        lay, kind = src[i], type(src[i]).__name__
        if kind == "MaxPooling2D" and i + 1 < len(src) and type(src[i + 1]).__name__ == "BatchNormalization":
            out.append(float_layer(src[i + 1], L))  # the BatchNormalization, moved before the pool
            if quant_after[i + 1]:
                out.append(L.ReLU())
            out.append(L.MaxPooling2D.from_config(lay.get_config()))
            i += 2
            continue
        out.append(float_layer(lay, L))
        if kind == "BatchNormalization" and quant_after[i]:
            out.append(L.ReLU())
        i += 1
    return tf.keras.Sequential(out)


def family_cnn(tf, c1, c2):
    L = tf.keras.layers
    return tf.keras.Sequential([
        L.InputLayer((28, 28, 1)), L.Rescaling(1 / 255),
        L.Conv2D(c1, 3, use_bias=False), L.BatchNormalization(), L.ReLU(), L.MaxPooling2D(2),
        L.Conv2D(c2, 3, use_bias=False), L.BatchNormalization(), L.ReLU(), L.MaxPooling2D(2),
        L.Flatten(), L.Dense(10), L.Activation("softmax")])


def train_convert(net, xtr, ytr, tf, seed=0, dense_per_tensor=True):
    """Train `net` (ends with a softmax Activation) and convert it without the softmax to int8
    (Dense weights per tensor unless dense_per_tensor=False)."""
    tf.keras.utils.set_random_seed(seed)
    net.compile(tf.keras.optimizers.Adam(LR), "sparse_categorical_crossentropy", metrics=["accuracy"])
    net.fit(xtr.astype(np.float32), ytr, epochs=EPOCHS, batch_size=BATCH, verbose=0)
    assert type(net.layers[-1]).__name__ == "Activation"
    logits = tf.keras.Model(net.inputs, net.layers[-2].output)
    return convert_int8(logits, xtr[:REP], tf, dense_per_tensor)


def convert_int8(model, rep, tf, dense_per_tensor=True):
    """Full-integer int8 flatbuffer of the float Keras `model` (TFLite converter, int8 input and output,
    representative data `rep`: one image per sample; Dense weights per tensor unless dense_per_tensor=False)."""
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    rep = np.asarray(rep, dtype=np.float32).reshape(len(rep), *model.input_shape[1:])
    conv.representative_dataset = lambda: ([rep[i:i + 1]] for i in range(len(rep)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    conv._experimental_disable_per_channel_quantization_for_dense_layers = dense_per_tensor
    return conv.convert()


def resnet8(tf, filters=16, weight_decay=1e-4):
    """The MLPerf Tiny image-classification reference architecture (ResNet-8 for 32x32x3 CIFAR-10:
    conv 3x3 + BN + ReLU, three residual stacks of `filters`, 2x, 4x filters (two conv 3x3 + BN, the
    second and third stacks with stride 2 and a conv 1x1 stride-2 shortcut), 8x8 average pool, Dense 10,
    softmax; mlcommons/tiny benchmark/training/image_classification/keras_model.py resnet_v1_eembc), with
    a Rescaling(1/255) input layer (the model takes raw 0..255 pixels, as keras_ebnn.train.training.train feeds them)."""
    L = tf.keras.layers
    reg = tf.keras.regularizers.l2(weight_decay)

    def conv(n, k=3, stride=1):
        return L.Conv2D(n, k, strides=stride, padding="same", kernel_initializer="he_normal", kernel_regularizer=reg)

    inp = L.Input((32, 32, 3))
    x = L.ReLU()(L.BatchNormalization()(conv(filters)(L.Rescaling(1 / 255)(inp))))
    for stack in range(3):
        n, stride = filters * 2 ** stack, 1 if stack == 0 else 2
        y = L.ReLU()(L.BatchNormalization()(conv(n, 3, stride)(x)))
        y = L.BatchNormalization()(conv(n)(y))
        if stack:
            x = conv(n, 1, stride)(x)
        x = L.ReLU()(L.Add()([x, y]))
    x = L.Flatten()(L.AveragePooling2D(x.shape[1])(x))
    out = L.Activation("softmax")(L.Dense(10, kernel_initializer="he_normal")(x))
    return tf.keras.Model(inp, out, name="resnet8")


def macs(model):
    """Multiply-accumulates of the Conv2D and Dense layers of a built Keras `model`, one inference."""
    total = 0
    for lay in model.layers:
        kind = type(lay).__name__
        if kind == "Conv2D":
            total += int(np.prod(lay.output.shape[1:])) * int(np.prod(lay.kernel.shape[:3]))
        elif kind == "Dense":
            total += int(np.prod(lay.kernel.shape))
    return total


def cached_tflite(cache, key, make):
    """The flatbuffer stored under `key` in `cache`, made (and stored) by make() when absent."""
    path = Path(cache) / f"{key}.tflite"
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(make())
        os.replace(tmp, path)  # atomic: runs for two CPUs may share the cache
    return path.read_bytes()


def quantize_input(fb, x, tf):
    det = tf.lite.Interpreter(model_content=fb).get_input_details()[0]
    scale, zero = det["quantization"]
    q = np.round(x.reshape(len(x), *det["shape"][1:]).astype(np.float64) / scale + zero)
    return np.clip(q, -128, 127).astype(np.int8)


def reference_outputs(fb, xq, tf):
    """int8 outputs of TFLite's Python interpreter with its reference kernels, one image at a time."""
    interp = tf.lite.Interpreter(model_content=fb,
                                 experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF)
    interp.allocate_tensors()
    i_in, i_out = interp.get_input_details()[0]["index"], interp.get_output_details()[0]["index"]
    outs = []
    for img in xq:
        interp.set_tensor(i_in, img[None])
        interp.invoke()
        outs.append(interp.get_tensor(i_out)[0].copy())
    return np.array(outs, dtype=np.int8)


def tflm_python_outputs(fb, xq):
    """int8 outputs of TFLM's own Python interpreter (pip install --pre tflite-micro: TFLM's reference
    kernels), or None when it is not installed."""
    try:
        from tflite_micro import runtime
    except ImportError:
        return None
    interp = runtime.Interpreter.from_bytes(bytes(fb), arena_size=1024 * 1024)
    outs = []
    for img in xq:
        interp.set_input(img[None], 0)
        interp.invoke()
        outs.append(np.array(interp.get_output(0)).reshape(-1).copy())
    return np.array(outs, dtype=np.int8)


def check_outputs(name, cpu, outs, ref, micro, strict=True):
    """Compare every device output vector with TFLite's BUILTIN_REF kernels (`ref`) and, when available,
    TFLM's Python interpreter (`micro`, a newer TFLM than the device's). A difference of 1 in an output
    is requantization rounding: TFLite's reference kernels round once where the device's TFLM/CMSIS-NN
    round twice (gemmlowp style), and the newer TFLM's kernels differ from the device's in a few
    last-bit cases too; such differences are counted and reported. A larger difference (a kernel
    computing a quantization mode wrongly) fails, unless strict=False (the quantization-mode check)."""
    res = {}
    for key, other in (("ref", ref), ("micro", micro)):
        if other is None:
            res.update({f"{key}_differ": None, f"{key}_max_diff": None, f"{key}_class_differ": None})
            continue
        d = np.abs(outs.astype(np.int16) - other.astype(np.int16))
        res.update({f"{key}_differ": int(np.sum(d.max(axis=1) > 0)), f"{key}_max_diff": int(d.max()),
                    f"{key}_class_differ": int(np.sum(np.argmax(outs, axis=1) != np.argmax(other, axis=1)))})
        if strict and res[f"{key}_max_diff"] > 1:
            what = "TFLite's reference kernels (BUILTIN_REF)" if key == "ref" else "TFLM's Python interpreter"
            raise RuntimeError(f"{name}: output vectors on the {cpu} differ from {what} by up to "
                               f"{res[f'{key}_max_diff']} ({res[f'{key}_differ']} of {len(outs)} vectors)")
    return res


# ------------------------------------------------------------------------------------ measuring
def _static_ram(elf, empty, arena_symbol):
    """RAM objects (.data/.bss symbols) the engine adds: those of `elf` that the calibration build
    `empty` lacks, without the arena and the driver's input buffer (excluded in both engines; the
    calibration build's compiler may drop it, as nothing reads it there)."""
    from bench.targets import cortexm
    full, base = cortexm.symbols(elf, with_type=True), cortexm.symbols(empty, with_type=True)
    return sum(v[1] for k, v in full.items() if v[2] in "bBdD" and k not in base and k != arena_symbol
               and not k.startswith("input"))


def _cost(pairs, empty_pairs):
    marker = float(np.mean(empty_pairs))
    per = np.array(pairs, dtype=np.float64) - marker
    return {"mean_insn": float(per.mean()), "max_insn": float(per.max()), "marker_cost": marker}


def run_tflm(name, fb, x, y, cpu, work, objects, tf, log, strict=True):
    from bench.targets import cortexm, tflm
    xq = quantize_input(fb, x, tf)
    ref = reference_outputs(fb, xq, tf)
    micro = tflm_python_outputs(fb, xq)
    n_out = ref.shape[1]
    work = Path(work) / f"{name}_{cpu}"
    probe = tflm.build(name, fb, xq[:1], n_out, 512 * 1024, cpu, workdir=work / "probe", objects=objects)
    _, tags, _ = tflm.run_each(probe, cpu)
    arena = -(-tags["A"] // 16) * 16
    empty = tflm.build(name, fb, xq[:4], n_out, arena, cpu, workdir=work / "empty", empty=True, objects=objects)
    _, etags, epairs = tflm.run_each(empty, cpu)
    classes, outs, pairs, stack = [], [], [], 0
    for a, b in chunks(len(xq), xq[0].size):
        elf = tflm.build(name, fb, xq[a:b], n_out, arena, cpu, workdir=work / f"c{a}", objects=objects)
        lines, t, p = tflm.run_each(elf, cpu)
        idx, cls, out = tflm.parse_int8(lines, n_out)
        if len(p) != b - a or not np.array_equal(idx, np.arange(b - a)):
            raise RuntimeError(f"{name}: the device printed {len(idx)} results for {b - a} images")
        classes.append(cls)
        outs.append(out)
        pairs += p
        stack = max(stack, t["S"] - etags["S"])
        log(f"  {name}: images {a}..{b}: {np.mean(np.concatenate(classes) == y[:b]) * 100:.2f}% so far")
    classes, outs = np.concatenate(classes), np.concatenate(outs)
    check = check_outputs(name, cpu, outs, ref, micro, strict)
    if not np.array_equal(classes, np.argmax(outs, axis=1)):
        raise RuntimeError(f"{name}: the driver's argmax differs from numpy's")
    flash = cortexm.model_flash(elf, empty, name)
    syms = cortexm.symbols(elf)
    model = syms[f"{name}_tflite"][1]
    assert syms["tflm_arena"][1] == arena, (syms["tflm_arena"], arena)
    assert model == len(fb) or model == -(-len(fb) // 16) * 16, (model, len(fb))
    return {"engine": "TFLM int8", "model": name, "cpu": cpu, "acc": float(np.mean(classes == y)),
            "images": len(y), "checked": len(outs), "flatbuffer": len(fb), **check,
            **_cost(pairs, epairs), "flash": flash["flash"], "model_bytes": model, "code": flash["flash"] - model,
            "arena": arena, "static": _static_ram(elf, empty, "tflm_arena"), "stack": stack}


def run_ebnn(name, path, x, y, cpu, work, log):
    from bench.targets import cortexm, tflm
    from keras_ebnn.ir import graph_reference
    _, lowered, out = load_export(name, path, Path(work) / "exports")
    ref = graph_reference.predict(lowered, x)
    work = Path(work) / f"{name}_{cpu}"
    empty = cortexm.build(out, name, x[:4], cpu, "-O2", work / "empty", empty=True)
    _, etags, epairs = tflm.run_each(empty, cpu)
    classes, pairs, stack = [], [], 0
    for a, b in chunks(len(x)):
        elf = cortexm.build(out, name, x[a:b], cpu, "-O2", work / f"c{a}")
        lines, t, p = tflm.run_each(elf, cpu)
        cls, _ = cortexm.parse(lines, lowered.num_classes)
        if len(p) != b - a or len(cls) != b - a:
            raise RuntimeError(f"{name}: the device printed {len(cls)} results for {b - a} images")
        classes.append(cls)
        pairs += p
        stack = max(stack, t["S"] - etags["S"])
        log(f"  {name}: images {a}..{b}: {np.mean(np.concatenate(classes) == y[:b]) * 100:.2f}% so far")
    classes = np.concatenate(classes)
    if not np.array_equal(classes, ref):
        raise RuntimeError(f"{name}: {int(np.sum(classes != ref))} classes on the {cpu} differ from the NumPy reference")
    flash = cortexm.model_flash(elf, empty, name)
    arena = cortexm.symbols(elf)[f"{name}_arena"][1]
    return {"engine": "keras-ebnn", "model": name, "cpu": cpu, "acc": float(np.mean(classes == y)),
            "images": len(y), "checked": len(classes), **_cost(pairs, epairs), "flash": flash["flash"],
            "model_bytes": flash["data"], "code": flash["code"], "arena": arena,
            "static": _static_ram(elf, empty, f"{name}_arena"), "stack": stack}


# ------------------------------------------------------------------------------------- reporting
def total_bytes(r):
    return r["flash"] + r["arena"] + r["static"] + r["stack"]


def checked(r):
    if r["engine"] == "keras-ebnn":
        return f"{r['checked']:,} classes = NumPy reference"

    def vs(key, what):
        n = r[f"{key}_differ"]
        if n is None:
            return None
        if n == 0:
            return f"= {what}"
        cls = r.get(f"{key}_class_differ") or 0
        return f"{n} differ from {what} by {r.get(f'{key}_max_diff', 1)}" + (f" ({cls} classes)" if cls else "")
    return f"{r['checked']:,}: " + "; ".join(v for v in (vs("micro", "TFLM Python"), vs("ref", "BUILTIN_REF")) if v)


def table(rows):
    def k(v):
        return f"{v:,.0f}"
    return md_table(
        ["engine", "model", "accuracy", "outputs checked", "instr. mean", "instr. slowest", "flash B", "= runtime/code", "+ model",
         "RAM B", "= static", "+ arena", "+ stack", "flash + RAM B"],
        [[r["engine"], r["model"], f"{r['acc'] * 100:.2f}%", checked(r), k(r["mean_insn"]), k(r["max_insn"]), k(r["flash"]),
          k(r["code"]), k(r["model_bytes"]), k(r["static"] + r["arena"] + r["stack"]), k(r["static"]), k(r["arena"]),
          k(r["stack"]), k(total_bytes(r))] for r in rows])


def _ram(r):
    return r["static"] + r["arena"] + r["stack"]


def ratios(rows):
    """keras-ebnn vs its int8 twin: (markdown table, {criterion: [models where it holds]}) with the
    instructions, flash and RAM ratios (int8 / keras-ebnn) and the issue's goals (>= 2x, 8x, 2x)."""
    by = {(r["engine"], r["model"]): r for r in rows}
    out, met = [], {"instructions >= 2x": [], "flash >= 8x": [], "RAM >= 2x": []}
    for r in rows:
        twin = by.get(("TFLM int8", r["model"] + "_int8"))
        if r["engine"] == "keras-ebnn" and twin:
            q = (twin["mean_insn"] / r["mean_insn"], twin["flash"] / r["flash"], _ram(twin) / _ram(r))
            out.append([r["model"], f"{r['acc'] * 100:.2f}% / {twin['acc'] * 100:.2f}%", f"{q[0]:.1f}x", f"{q[1]:.1f}x",
                        f"{q[2]:.1f}x", f"{total_bytes(twin) / total_bytes(r):.1f}x"])
            for (key, goal), v in zip((("instructions >= 2x", 2), ("flash >= 8x", 8), ("RAM >= 2x", 2)), q):
                met[key].append((r["model"], v >= goal))
    return md_table(["model", "accuracy keras-ebnn / int8 twin", "instructions (int8 / ebnn)", "flash (int8 / ebnn)",
                     "RAM (int8 / ebnn)", "flash + RAM (int8 / ebnn)"], out), met


def equal_accuracy(rows):
    """For each keras-ebnn model: the cheapest int8 model (by instructions, and by flash + RAM) that is
    at least as accurate, and the ratio of its cost to keras-ebnn's. Returns (markdown table, a
    sentence saying where int8 wins)."""
    int8 = [r for r in rows if r["engine"] == "TFLM int8"]
    out, win_insn, win_bytes = [], [], []
    for r in rows:
        if r["engine"] != "keras-ebnn":
            continue
        ok = [q for q in int8 if q["acc"] >= r["acc"]]
        if not ok:
            out.append([r["model"], f"{r['acc'] * 100:.2f}%", "none as accurate", "-", "none as accurate", "-"])
            continue
        fi = min(ok, key=lambda q: q["mean_insn"])
        fb = min(ok, key=total_bytes)
        out.append([r["model"], f"{r['acc'] * 100:.2f}%",
                    f"{fi['model']} ({fi['acc'] * 100:.2f}%, {fi['mean_insn']:,.0f})", f"{fi['mean_insn'] / r['mean_insn']:.2f}x",
                    f"{fb['model']} ({fb['acc'] * 100:.2f}%, {total_bytes(fb):,} B)", f"{total_bytes(fb) / total_bytes(r):.2f}x"])
        if fi["mean_insn"] < r["mean_insn"]:
            win_insn.append(f"{fi['model']} ({fi['acc'] * 100:.2f}%) needs {r['mean_insn'] / fi['mean_insn']:.2f}x fewer "
                            f"instructions than {r['model']} ({r['acc'] * 100:.2f}%)")
        if total_bytes(fb) < total_bytes(r):
            win_bytes.append(f"{fb['model']} is smaller than {r['model']}")
    by = {r["model"]: r for r in rows}
    pairs = [(r, by[r["model"] + "_int8"]) for r in rows if r["engine"] == "keras-ebnn" and r["model"] + "_int8" in by]
    better = [r["model"] for r, t in pairs if t["acc"] > r["acc"]]
    twins_line = (f"The int8 twin is more accurate than its keras-ebnn architecture for {len(better)} of {len(pairs)} "
                  f"models ({', '.join(better) or 'none'}).")
    table = md_table(["keras-ebnn model", "accuracy", "fewest-instruction int8 model at >= that accuracy",
                      "its instructions / ebnn's", "smallest int8 model (flash + RAM) at >= that accuracy",
                      "its bytes / ebnn's"], out)
    wins = ("Where int8 wins: " + ("; ".join(win_insn) if win_insn else "no int8 model of this run is both as accurate "
                                  "and cheaper in instructions than a keras-ebnn model")
            + ". " + ("; ".join(win_bytes) if win_bytes else "In flash + RAM no int8 model of this run comes within "
                      f"{min(total_bytes(q) for q in int8) / max(total_bytes(r) for r in rows if r['engine'] == 'keras-ebnn'):.1f}x "
                      "of keras-ebnn's largest model at any accuracy")
            + ". " + twins_line if int8 else "")
    return table, wins


def plot(rows, path, cpu):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    styles = {"keras-ebnn": ("o", "tab:blue"), "TFLM int8": ("s", "tab:red")}
    for ax, (xkey, xlabel) in zip(axes, ((lambda r: r["mean_insn"], f"instructions per inference ({cpu}, mean)"),
                                         (total_bytes, "flash + RAM bytes (runtime, model, arena, static, stack)"))):
        for engine, (marker, color) in styles.items():
            pts = sorted((xkey(r), r["acc"] * 100, r["model"]) for r in rows if r["engine"] == engine)
            if not pts:
                continue
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker, color=color, label=engine)
            front, best = [], -1.0  # Pareto front: more accurate than everything cheaper
            for p in pts:
                if p[1] > best:
                    front.append(p)
                    best = p[1]
            ax.step([p[0] for p in front], [p[1] for p in front], where="post", color=color, alpha=0.5)
            for p in pts:
                ax.annotate(p[2], (p[0], p[1]), fontsize=7, xytext=(3, -9), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test accuracy (%)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="lower right")
    fig.suptitle(f"keras-ebnn vs TFLite Micro + CMSIS-NN int8 on {cpu} (MNIST)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# ------------------------------------------------------------------------------- CIFAR-10 ResNet-8
MLPERF_IC = [  # MLPerf Tiny image classification, NUCLEO-L4R5ZI (Cortex-M4F, 120 MHz): ../shared/REFERENCES.md
    ("TFLM v2.3.1 + CMSIS-NN (reference)", 704.0, 84.5e6), ("microTVM + CMSIS-NN", 390.0, 46.7e6),
    ("Plumerai", 167.8, 20.1e6), ("X-CUBE-AI 9.0", 165.1, 19.8e6)]
RESNET8_REP, RESNET8_BATCH, RESNET8_LR = 500, 32, 1e-3


def resnet8_data():
    """((x_train, y_train), (x_test, y_test)) of CIFAR-10 (JPEG copy) from keras_ebnn.train.datasets.load_cifar10,
    or None when that loader is absent or finds no data."""
    from keras_ebnn.train import datasets
    load = getattr(datasets, "load_cifar10", None)
    if load is None:
        return None
    try:
        return load()
    except Exception as exc:  # no data folder: cost only
        print(f"CIFAR-10 (JPEG copy) not loaded ({type(exc).__name__}: {exc}): cost only, random weights")
        return None


def resnet8_model(tf, weights=None, data=None, epochs=0, minutes=40.0, log=print):
    """(ResNet-8 Keras model, how its weights were made): loaded from `weights`, trained `epochs` epochs
    on `data` (keras_ebnn.train.training.train: Adam, cosine schedule from RESNET8_LR, batch RESNET8_BATCH, random
    shifts of up to 4 pixels and left-right flips; at least one epoch, no further one begins after `minutes` of
    wall time), else random."""
    import time
    tf.keras.utils.set_random_seed(0)
    model = resnet8(tf)
    if weights:
        model.set_weights(tf.keras.models.load_model(weights, compile=False).get_weights())
        return model, f"trained weights from {Path(weights).name}"
    if not (epochs and data):
        return model, "random weights (He normal; batch norm at its initial values): cost only"
    from keras_ebnn.train.training import train
    (xtr, ytr), _ = data
    start = time.time()

    class OutOfTime(Exception):
        pass

    class Budget(tf.keras.callbacks.Callback):  # keras_ebnn.train.training.train fits one epoch at a time when augmenting
        epochs = 0

        def on_epoch_begin(self, epoch, logs=None):
            if epoch and time.time() - start > minutes * 60:
                raise OutOfTime

        def on_epoch_end(self, epoch, logs=None):
            Budget.epochs = epoch + 1
            log(f"  resnet8 epoch {epoch + 1}: {logs} ({(time.time() - start) / 60:.1f} min)")
    budget = Budget()
    try:
        train(model, xtr, ytr, epochs=epochs, batch_size=RESNET8_BATCH, lr=RESNET8_LR, max_shift=4, hflip=True,
              verbose=0, callbacks=[budget])
    except OutOfTime:
        pass
    return model, (f"trained {budget.epochs} of {epochs} epochs in {(time.time() - start) / 60:.0f} min on the "
                   f"{len(xtr):,} training images of CIFAR-10 (JPEG copy) (keras_ebnn.train.training.train: Adam "
                   f"{RESNET8_LR:g} cosine, batch {RESNET8_BATCH}, shifts <= 4 px, flips)")


def int8_accuracy(fb, x, y, tf):
    """Top-1 accuracy of the int8 flatbuffer `fb` on (x, y) with TFLite's Python interpreter."""
    xq = quantize_input(fb, x, tf)
    interp = tf.lite.Interpreter(model_content=fb)
    interp.allocate_tensors()
    i_in, i_out = interp.get_input_details()[0]["index"], interp.get_output_details()[0]["index"]
    hits = 0
    for img, label in zip(xq, y):
        interp.set_tensor(i_in, img[None])
        interp.invoke()
        hits += int(np.argmax(interp.get_tensor(i_out)[0]) == label)
    return hits / len(y)


def cifar_resnet8(args):
    """The MLPerf Tiny image-classification peer: ResNet-8 int8 under TFLite Micro + CMSIS-NN on Cortex-M4.

    TFLM_DIR=... [EBNN_DATA_DIR=../shared/data] python bench/mcu_peers.py --cifar-resnet8
        [--resnet8-weights FILE | --resnet8-epochs N [--resnet8-minutes M]] [--images N] [--cpu cortex-m4]

Method: the MLPerf Tiny reference ResNet-8 (bench/mcu_peers.py resnet8(): 32x32x3 input, conv 16, three
residual stacks of 16 / 32 / 64 filters, 8x8 average pool, Dense 10; mlcommons/tiny
benchmark/training/image_classification/keras_model.py) with a Rescaling(1/255) first layer; its weights
trained (--resnet8-epochs, CIFAR-10 (JPEG copy) through keras_ebnn.train.datasets.load_cifar10), loaded
(--resnet8-weights) or random (cost only: TFLM's instruction count, flash and RAM do not depend on the
weights' values). Converted by TF's TFLiteConverter to full-integer int8 without the final softmax (int8
input and output; representative data: 500 training images, or 500 random uniform 0..255 images without
data; conv weights per channel, Dense per tensor: see the MNIST method above), run bare metal under QEMU by
TFLM + CMSIS-NN in the harness of the MNIST comparison (bench/targets/tflm.py; DSP-extension SIMD path on
the Cortex-M4, -O2): instructions per inference (exact counts, marker cost subtracted; mean over the
measured images), flash (flatbuffer + runtime code), RAM (arena + TFLM's static objects + stack; the
3,072 B int8 input buffer excluded). Every device output vector is compared with TFLite's reference
kernels (at most 1 apart). With trained weights: int8 top-1 accuracy on the 10,000 CIFAR-10 (JPEG copy)
test images (TFLite's Python interpreter; the device's classes on the measured images).
"""
    from bench.targets import tflm
    from keras_ebnn import import_larq
    tf, _ = import_larq()
    log = lambda s: print(s, flush=True)  # noqa: E731
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    data = resnet8_data() if args.resnet8_epochs or args.resnet8_weights or args.images else None
    model, how = resnet8_model(tf, args.resnet8_weights, data, args.resnet8_epochs, args.resnet8_minutes, log)
    params = sum(int(np.prod(w.shape)) for lay in model.layers if type(lay).__name__ in ("Conv2D", "Dense")
                 for w in lay.get_weights())
    if data is not None:
        (xtr, _), (xte, yte) = data
        rep = xtr[:RESNET8_REP]
    else:
        rep = np.random.default_rng(0).uniform(0, 255, (RESNET8_REP, 32, 32, 3)).astype(np.float32)
    fb = convert_int8(tf.keras.Model(model.inputs, model.layers[-2].output), rep, tf)
    acc = int8_accuracy(fb, xte, yte, tf) if data is not None and (args.resnet8_weights or args.resnet8_epochs) else None
    if data is not None and args.images:
        x, y = xte[:args.images], yte[:args.images]
    else:
        x, y = rep[:2], np.zeros(2, dtype=np.int64)
    objects = tflm.library(args.cpu, "-O2", cache=cache / f"tflm-{args.cpu}", ops=tflm.op_names(fb))
    r = run_tflm("resnet8", fb, x, y, args.cpu, tempfile.mkdtemp(prefix="ebnn-resnet8-"), objects, tf, log)
    log(str(r))
    ram = r["arena"] + r["static"] + r["stack"]
    rows = [["ResNet-8 int8 (TFLM + CMSIS-NN)", args.cpu, f"{r['mean_insn']:,.0f}", f"{r['max_insn']:,.0f}",
             f"{r['flash']:,}", f"{r['code']:,}", f"{r['model_bytes']:,}", f"{ram:,}", f"{r['arena']:,}", f"{r['static']:,}",
             f"{r['stack']:,}", "-" if acc is None else f"{acc * 100:.2f}%"]]
    text = (f"## CIFAR-10 peer: MLPerf Tiny ResNet-8, int8, TFLite Micro + CMSIS-NN ({args.cpu})\n\n"
            + cifar_resnet8.__doc__.split("Method: ")[1].strip()
            + f"\n\nWeights: {how}. {params:,} weights and biases in the conv and dense layers (MLPerf: 77.7 k "
            f"parameters), {macs(model):,} multiply-accumulates per inference (MLPerf: 12.5 M); flatbuffer {len(fb):,} B "
            f"(MLPerf's reference .tflite: 98,496 B); operators {', '.join(tflm.op_names(fb))}; measured on {len(x)} "
            + ("CIFAR-10 (JPEG copy) test images" if data is not None and args.images else "random images")
            + f" ({r['ref_differ']} output vectors 1 apart from TFLite's reference kernels).\n\n"
            + md_table(["model", "core", "instr. mean", "instr. slowest", "flash B", "= runtime/code", "+ model", "RAM B",
                        "= arena", "+ static", "+ stack", "int8 accuracy (CIFAR-10 JPEG copy, 10,000 test images)"], rows)
            + "\n\nFor context, MLPerf Tiny's published image-classification results on NUCLEO-L4R5ZI (Cortex-M4F, "
            "120 MHz; cycles = median latency x clock; ../shared/REFERENCES.md): "
            + "; ".join(f"{who} {ms:g} ms ({cyc / 1e6:.1f} M cycles)" for who, ms, cyc in MLPERF_IC)
            + ". Instructions are not cycles: the figures above count executed instructions under QEMU (no wait states, "
            "no pipeline or flash-latency effects; on the M4 a load takes 2 cycles, SMLAD one), so they are not "
            "directly comparable with those cycle counts, only an order of magnitude; the MLPerf runs also use "
            "other TFLM / CMSIS-NN versions.")
    print(text)
    if not args.no_write:
        command = ("TFLM_DIR=... " + ("EBNN_DATA_DIR=../shared/data " if data is not None else "")
                   + "python bench/mcu_peers.py --cifar-resnet8" + (f" --cpu {args.cpu}" if args.cpu != "cortex-m4" else "")
                   + (f" --resnet8-weights {args.resnet8_weights}" if args.resnet8_weights else "")
                   + (f" --resnet8-epochs {args.resnet8_epochs}" if args.resnet8_epochs else "")
                   + (f" --images {args.images}" if args.images else ""))
        write_section(f"cifar_resnet8_{args.cpu}", text, command)
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=DEFAULT_MODELS, help=f"shipped models and their twins (default {DEFAULT_MODELS})")
    ap.add_argument("--no-family", action="store_true", help="leave out the family of plain int8 CNNs")
    ap.add_argument("--images", type=int, default=None, help="first N test images (default: all)")
    ap.add_argument("--cpu", default="cortex-m4", choices=["cortex-m4", "cortex-m0plus"])
    ap.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "ebnn-mcu-peers"),
                    help="folder for the trained int8 flatbuffers and the compiled TFLM objects")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--cifar-resnet8", action="store_true",
                    help="instead: the MLPerf Tiny ResNet-8 (CIFAR-10) int8 peer on --cpu (default Cortex-M4); see cifar_resnet8()")
    ap.add_argument("--resnet8-weights", default=None, help="trained ResNet-8 (Keras model file of resnet8()'s architecture)")
    ap.add_argument("--resnet8-epochs", type=int, default=0,
                    help="train ResNet-8 this many epochs on CIFAR-10 (JPEG copy; needs keras_ebnn.train.datasets.load_cifar10)")
    ap.add_argument("--resnet8-minutes", type=float, default=40.0, help="wall-time bound of that training")
    args = ap.parse_args(argv)
    print(cifar_resnet8.__doc__ if args.cifar_resnet8 else __doc__)
    sys.path.insert(0, str(ROOT))
    from bench.targets import tflm
    if not tflm.available():
        print("skipped: needs TFLM_DIR (a TFLite Micro tree), arm-none-eabi-g++ with libstdc++ and qemu-system-arm")
        return 0
    if args.cifar_resnet8:
        return cifar_resnet8(args)
    from keras_ebnn.train import datasets
    from keras_ebnn import import_larq
    tf, _ = import_larq()
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    objects = tflm.library(args.cpu, "-O2", cache=cache / f"tflm-{args.cpu}")
    rows = []
    log = lambda s: print(s, flush=True)  # noqa: E731
    models = available_models(args.models.split(","))
    datasets_used = sorted({d for _, d in models.values()} | ({"mnist"} if not args.no_family else set()))
    if datasets_used != ["mnist"]:
        raise SystemExit(f"this bench compares MNIST models; got datasets {datasets_used}")
    (xtr, ytr), (x, y) = datasets.load("mnist")
    if args.images:
        x, y = x[:args.images], y[:args.images]
    recipe = hashlib.sha1(repr((EPOCHS, LR, BATCH, REP, "v1")).encode()).hexdigest()[:8]
    # measured rows are kept in the cache, so that an interrupted run resumes (delete the file to re-measure)
    done_path = cache / f"rows_{args.cpu}_{len(y)}_{recipe}.json"
    done = json.loads(done_path.read_text()) if done_path.exists() else {}

    def measure(key, fn):
        if key not in done:
            done[key] = fn()
            done_path.write_text(json.dumps(done, indent=1))
        log(str(done[key]))
        rows.append(done[key])

    mode = None
    with tempfile.TemporaryDirectory() as work:
        for name, (path, _) in models.items():
            log(f"{name}: keras-ebnn on {args.cpu}")
            measure(name, lambda: run_ebnn(name, path, x, y, args.cpu, work, log))
            keras_model = tf.keras.models.load_model(path)
            fb = cached_tflite(cache, f"{name}_int8_{recipe}",
                               lambda: train_convert(int8_twin(keras_model, tf), xtr, ytr, tf))
            log(f"{name}_int8: TFLM on {args.cpu}")
            measure(f"{name}_int8", lambda: run_tflm(f"{name}_int8", fb, x, y, args.cpu, work, objects, tf, log))
        if not args.no_family:
            for c1, c2 in FAMILY:
                name = f"cnn_{c1}_{c2}"
                fb = cached_tflite(cache, f"{name}_{recipe}", lambda: train_convert(family_cnn(tf, c1, c2), xtr, ytr, tf))
                log(f"{name}: TFLM on {args.cpu}")
                measure(name, lambda: run_tflm(name, fb, x, y, args.cpu, work, objects, tf, log))
        # the quantization-mode check: the paper twin with per-channel Dense weights (TF's default)
        if "paper_mnist" in models:
            keras_model = tf.keras.models.load_model(models["paper_mnist"][0])
            fb = cached_tflite(cache, f"paper_mnist_int8_pcdense_{recipe}",
                               lambda: train_convert(int8_twin(keras_model, tf), xtr, ytr, tf, dense_per_tensor=False))
            n = min(500, len(y))
            measure("paper_mnist_int8_pcdense", lambda: run_tflm("paper_mnist_int8_pcdense", fb, x[:n], y[:n], args.cpu,
                                                                 work, objects, tf, log, strict=False))
            mode = rows.pop()
    tab = table(rows)
    rat, met = ratios(rows)
    eq, wins = equal_accuracy(rows)
    print(tab, "\n\n", rat, "\n\n", eq, "\n\n", wins)
    plot_path = PLOT if args.cpu == "cortex-m4" else PLOT.with_name(f"mcu_peers_pareto_{args.cpu}.png")
    if not args.no_write:
        plot(rows, plot_path, args.cpu)
        images = f"{len(y):,} MNIST test images" + (" (the full test set)" if args.images is None else "")
        method = __doc__.split("Method, ")[1].split("Writes")[0].strip()
        if args.cpu == "cortex-m0plus":
            method = method.replace("QEMU's mps2-an386 (Cortex-M4 with FPU and DSP extension)",
                                    "QEMU's mps2-an385 (-mcpu=cortex-m0plus code, ARMv6-M instructions only, on the M3 machine)") \
                .replace("ARM_MATH_DSP path on\n    the M4", "portable C path on\n    the M0+")
            assert "mps2-an386" not in method and "path on\n    the M4" not in method
        text = (f"## On the microcontroller: keras-ebnn vs TFLite Micro + CMSIS-NN int8 ({args.cpu})\n\n"
                + method + f"\n\nOn {images}:\n\n" + tab
                + "\n\nSame architecture, int8 twin / keras-ebnn (the issue's goals: keras-ebnn needs >= 2x fewer "
                "instructions, >= 8x less flash, >= 2x less RAM):\n\n" + rat + "\n\n"
                + "; ".join(f"{k}: met for " + (", ".join(m for m, ok in v if ok) or "none")
                            + (", not met for " + ", ".join(m for m, ok in v if not ok) if not all(ok for _, ok in v) else "")
                            for k, v in met.items())
                + ".\n\nAt equal accuracy (any int8 model of this run, twins and family):\n\n" + eq + "\n\n" + wins
                + (f"\n\nQuantization-mode check: the paper twin converted with per-channel Dense weights (TF's default) "
                   f"on the first {mode['checked']} test images: {mode['ref_differ']} output vectors differ from "
                   f"BUILTIN_REF (largest difference {mode['ref_max_diff']}, {mode['ref_class_differ']} classes differ)"
                   + ("" if mode["micro_differ"] is None else f", {mode['micro_differ']} from TFLM's Python interpreter")
                   + f"; device accuracy {mode['acc'] * 100:.2f}% on those images. Hence per-tensor Dense above."
                   if mode else "")
                + f"\n\n![accuracy vs cost]({plot_path.relative_to(ROOT)})")
        key = "mcu_peers" if args.cpu == "cortex-m4" else f"mcu_peers_{args.cpu}"
        command = "TFLM_DIR=... EBNN_DATA_DIR=../shared/data python bench/mcu_peers.py" \
            + (f" --cpu {args.cpu}" if args.cpu != "cortex-m4" else "") \
            + (f" --models {args.models}" if args.models != DEFAULT_MODELS else "") \
            + (f" --images {args.images}" if args.images else "")
        write_section(key, text, command)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
