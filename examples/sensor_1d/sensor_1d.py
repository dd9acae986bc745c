"""A 1-D binarized network on real sensor data, from training to C for a Cortex-M or an Arduino Uno.

    pip install --no-deps aeon      # optional dependency: only its bundled data files are read
    python examples/sensor_1d/sensor_1d.py --out /tmp/sensor_1d

Dataset: JapaneseVowels of the UEA multivariate time series classification archive (Bagnall et al.,
"The UEA multivariate time series classification archive, 2018", arXiv:1811.00075), as shipped inside
the `aeon` package (aeon/datasets/data/JapaneseVowels/). Nine male speakers say the Japanese vowels
/ae/; each utterance is 7 to 29 frames of 12 LPC cepstrum coefficients (Kudo, Toyama and Shimbo,
Pattern Recognition Letters 20, 1999); the task is to name the speaker. The archive's own split:
270 training, 370 test utterances. `--dataset BasicMotions` (smart-watch accelerometer + gyroscope,
6 channels x 100 steps, 4 activities, 40 + 40 cases) loads the same way, but its longer series need
narrower blocks to fit the Uno: with the default widths the sketch needs 2,176 B of RAM (128 B too
many, export refuses it); `--widths 16,32,32` needs 1,768 B (one untuned run: 38 of 40 test cases).

Pipeline:
  1. keras_ebnn.train.uea.load: (N, L, C) float series, shorter ones padded by repeating their last frame.
  2. Quantize to uint8 per channel with the *training* split's min/max (keras_ebnn.train.uea.to_uint8), as
     a sensor front end with a fixed gain/offset per channel would deliver it; the model starts with
     Rescaling(1/255), so the exported C takes those raw bytes (JapaneseVowels: 29 x 12 = 348 bytes,
     BasicMotions: 100 x 6 = 600 bytes; the Uno has 2 KB of SRAM for everything).
  3. A small Larq 1-D BNN (`build_model`): three QuantConv1D(kernel 3, 'same') blocks with binary
     weights (the first reads the uint8 input, the next two sign-binarized activations), max pooling
     after the second and third, BatchNormalization, then a binary dense layer to the classes. Every
     block is one eBNN fused block (conv -> pool -> BN -> sign becomes integer thresholds).
     `--head float` ends instead in GlobalAveragePooling1D + a full-precision Dense layer, the
     classifier most published Larq time-series models use: the last conv block then has no sign
     after it, so the graph runs it as separate ops (binary accumulators, max pool, batch norm,
     average, dense) on int32 / float32 tensors -- more RAM than the Uno has (see bench/sensor_1d.py).
  4. Train (keras_ebnn.train.training.train: Adam, cosine learning-rate decay, batch 32) on the training
     split, re-estimate the batch-norm statistics exactly on it, and report test accuracy of Keras
     and of the NumPy graph reference executor (keras_ebnn.ir.graph_reference), which must agree.
  5. keras_ebnn.export the model as plain C (OUT/c) and as an Arduino Uno library whose example
     sketch classifies the first 8 test cases (one per speaker: the split is reordered by
     `class_interleaved`), verifying the C against Keras on the whole test split; OUT also gets the
     .keras model and quantization.json (the per-channel lo/hi an application needs to quantize its
     own sensor data).

The architecture and the 80 epochs were chosen on 54 cases held out of the *training* split: with
seeds 1-3, 40 / 80 / 150 epochs got 51.7 / 52.3 / 52.7 of them right on average (differences under
one case; 80 kept as the cheaper of the two best); the test split is only used for the figures
printed at the end. Seeded (--seed) and deterministic here (a rerun reproduces the shipped weights);
about 25 s on two CPU cores, 17 s of it training.
bench/sensor_1d.py runs the exported C on the emulated Cortex-M3 and ATmega328P.
"""
import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run from a source checkout without installing keras_ebnn
    sys.path.insert(0, str(ROOT))

DEFAULTS = dict(dataset="JapaneseVowels", widths=(32, 64, 64), head="binary", epochs=80, batch_size=32,
                lr=3e-3, final_lr=1e-5, seed=0)
HEADS = ("binary", "float")


def load_data(dataset=DEFAULTS["dataset"]):
    """The dataset's archive split quantized to uint8: dict with x_train, y_train, x_test, y_test
    (uint8 (N, L, C), int64 labels), lo/hi (per-channel float32 range from the training split) and
    num_classes. Raises keras_ebnn.train.datasets.DatasetNotFoundError without aeon."""
    from keras_ebnn.train import uea
    (xtr, ytr), (xte, yte) = uea.load(dataset)
    lo, hi = uea.uint8_scaling(xtr)
    return {"x_train": uea.to_uint8(xtr, lo, hi), "y_train": ytr, "x_test": uea.to_uint8(xte, lo, hi),
            "y_test": yte, "lo": lo, "hi": hi, "num_classes": int(max(ytr.max(), yte.max()) + 1)}


def build_model(input_shape, num_classes, widths=DEFAULTS["widths"], head=DEFAULTS["head"]):
    """The 1-D BNN of the module docstring: uint8 (L, C) input, one binary conv block per width
    (max pooling 2 after every block but the first), then head "binary": Flatten, a binary dense
    layer + BatchNormalization to `num_classes` logits; or head "float" (the classifier most Larq
    time-series models use): GlobalAveragePooling1D over the last block's batch-normalized outputs
    and a full-precision Dense layer. Softmax."""
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}")
    from keras_ebnn import import_larq
    tf, lq = import_larq()
    L = tf.keras.layers
    binary = dict(kernel_quantizer="ste_sign", kernel_constraint="weight_clip", use_bias=False)
    layers = [L.InputLayer(input_shape), L.Rescaling(1 / 255.0)]
    for i, width in enumerate(widths):
        layers.append(lq.layers.QuantConv1D(width, 3, padding="same", input_quantizer=None if i == 0 else "ste_sign",
                                            **binary))
        if i > 0:
            layers.append(L.MaxPooling1D(2))
        layers.append(L.BatchNormalization(momentum=0.9))
    if head == "binary":
        layers += [L.Flatten(), lq.layers.QuantDense(num_classes, input_quantizer="ste_sign", **binary),
                   L.BatchNormalization(momentum=0.9)]
    else:
        layers += [L.GlobalAveragePooling1D(), L.Dense(num_classes)]
    layers.append(L.Activation("softmax"))
    return tf.keras.Sequential(layers, name="sensor_1d")


def train_model(data, widths=DEFAULTS["widths"], head=DEFAULTS["head"], epochs=DEFAULTS["epochs"],
                batch_size=DEFAULTS["batch_size"], lr=DEFAULTS["lr"], final_lr=DEFAULTS["final_lr"],
                seed=DEFAULTS["seed"], verbose=0):
    """Build and train the model on data["x_train"] (seeded), then re-estimate its batch-norm
    statistics on the same split. Returns the Keras model."""
    from keras_ebnn import import_larq
    from keras_ebnn.train import training
    tf, _ = import_larq()
    tf.keras.utils.set_random_seed(seed)
    model = build_model(data["x_train"].shape[1:], data["num_classes"], widths, head)
    training.train(model, data["x_train"], data["y_train"], epochs=epochs, batch_size=batch_size, lr=lr,
                   final_lr=final_lr, seed=seed, verbose=verbose)
    training.reestimate_batchnorm(model, data["x_train"])
    return model


def class_interleaved(y):
    """An order of the cases cycling through the classes (one case of each class, then the next
    one of each, ...; stable within a class). The archive lists its test split sorted by class; the
    export embeds the first verification inputs in the Arduino sketch, which should show several."""
    import numpy as np
    y = np.asarray(y)
    rank = np.empty(len(y), dtype=np.int64)
    for c in np.unique(y):
        where = np.flatnonzero(y == c)
        rank[where] = np.arange(len(where))
    return np.lexsort((y, rank))


def keras_classes(model, x):
    import numpy as np
    return np.argmax(model.predict(np.asarray(x, np.float32), batch_size=512, verbose=0), axis=1)


def reference_classes(model, x):
    """Classes of the lowered graph run by the NumPy reference executor (keras_ebnn.ir.graph_reference)."""
    from keras_ebnn.ir import graph_reference
    from keras_ebnn.ir.graph import lower_graph
    return graph_reference.run(lower_graph(model), x)["classes"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default=DEFAULTS["dataset"], help="UEA archive dataset bundled with aeon")
    ap.add_argument("--epochs", type=int, default=DEFAULTS["epochs"])
    ap.add_argument("--widths", default=",".join(map(str, DEFAULTS["widths"])),
                    help="filters of the QuantConv1D blocks, comma-separated")
    ap.add_argument("--head", default=DEFAULTS["head"], choices=HEADS,
                    help="binary dense classifier (default) or global average pooling + float Dense")
    ap.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    ap.add_argument("--name", default="sensor_1d", help="C prefix of the exported model")
    ap.add_argument("--board", default="uno", help="board the Arduino sketch must fit (keras_ebnn.planning.boards)")
    ap.add_argument("--out", required=True, help="output folder: model .keras, quantization.json, c/, arduino/")
    args = ap.parse_args(argv)

    import numpy as np
    import keras_ebnn
    from keras_ebnn.train.datasets import DatasetNotFoundError

    try:
        data = load_data(args.dataset)
    except DatasetNotFoundError as exc:
        sys.exit(f"error: {exc}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"{args.dataset}: train {data['x_train'].shape}, test {data['x_test'].shape} (uint8), "
          f"{data['num_classes']} classes")
    t0 = time.time()
    model = train_model(data, widths=tuple(int(w) for w in args.widths.split(",")), head=args.head,
                        epochs=args.epochs, seed=args.seed)
    print(f"trained {args.epochs} epochs in {time.time() - t0:.0f} s")
    model.save(out / f"{args.name}.keras")
    (out / "quantization.json").write_text(json.dumps(
        {"dataset": args.dataset, "layout": "uint8 (steps, channels), channels last",
         "uint8 = round(255 * (x - lo) / (hi - lo)), clipped to 0..255": True,
         "lo": [float(v) for v in data["lo"]], "hi": [float(v) for v in data["hi"]]}, indent=1) + "\n")
    order = class_interleaved(data["y_test"])  # the same cases; the sketch's samples cover the classes
    x, y = data["x_test"][order], data["y_test"][order]
    k, r = keras_classes(model, x), reference_classes(model, x)
    print(f"test accuracy ({len(y)} cases): Keras {np.mean(k == y):.4f}, graph reference {np.mean(r == y):.4f}, "
          f"classes identical: {bool(np.array_equal(k, r))}")
    for target, folder, board in (("c", "c", None), ("arduino", "arduino", args.board)):
        res = keras_ebnn.export(model, out / folder, name=args.name, target=target, verify_inputs=x,
                                verify_labels=y, board=board)
        print(f"exported {target} to {out / folder}")
        print(res.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
