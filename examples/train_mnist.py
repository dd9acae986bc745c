"""Train an eBNN preset on MNIST or Fashion-MNIST: the recipe that produced the shipped models.

    python examples/train_mnist.py --preset uno_mnist --epochs 15 --out examples/models/uno_mnist.keras
    python examples/train_mnist.py --preset m15_fashion_mnist --dataset fashion_mnist --epochs 15 \
        --out examples/models/m15_fashion_mnist.keras
    # knowledge distillation: first a float teacher (not exportable), then the BNN student
    python examples/train_mnist.py --preset teacher --dataset fashion_mnist --epochs 15 --out /tmp/teacher.keras
    python examples/train_mnist.py --preset m15_fashion_mnist --dataset fashion_mnist --distill /tmp/teacher.keras \
        --out examples/models/m15_fashion.keras

Recipe (keras_ebnn.train.training.train): uint8 input (Rescaling 1/255 inside the model, so the exported C
takes raw pixels), Adam with a cosine-decaying learning rate (1e-3 -> 1e-5), batch 128, latent weights
clipped to [-1, 1] (weight_clip), BN momentum 0.9, optional random shifts (--shift) and left-right flips
(--hflip), optional distillation from a teacher model (--distill: loss = (1 - alpha) cross-entropy + alpha
T^2 KL to the teacher's outputs softened by temperature T; `--preset teacher` trains the small float CNN
keras_ebnn.train.training.teacher_model on the same split), then batch-norm
moving statistics re-estimated exactly on the training images (--reestimate-bn, the default). The last
5,000 training images are held out for validation (every choice was made on it); the test set is only
used for the figures printed at the end: test accuracy before and after BN re-estimation. The saved
model is the re-estimated one (without optimizer state). examples/models/README.md lists every run.
"""
import argparse
import json
import sys
import time
from pathlib import Path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="uno_mnist",
                    help="keras_ebnn.train.models preset name, or 'teacher' (float CNN to distil from)")
    ap.add_argument("--dataset", default="mnist", choices=("mnist", "fashion_mnist"))
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--final-lr", type=float, default=1e-5)
    ap.add_argument("--schedule", default="cosine", choices=("cosine", "exponential", "constant"))
    ap.add_argument("--val-size", type=int, default=5000,
                    help="last N training images held out for validation (0: train on all of them)")
    ap.add_argument("--output-scale", action="store_true",
                    help="let the last BatchNormalization learn a per-class scale (softmax temperature)")
    ap.add_argument("--shift", type=int, default=0, help="random shift augmentation, pixels (0: off)")
    ap.add_argument("--hflip", action="store_true", help="random left-right flip augmentation")
    ap.add_argument("--distill", default=None, metavar="TEACHER.keras",
                    help="distil from this trained model (e.g. made with --preset teacher)")
    ap.add_argument("--alpha", type=float, default=0.5, help="distillation: weight of the teacher term")
    ap.add_argument("--temperature", type=float, default=4.0, help="distillation: softmax temperature")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default=None, help="IDX folder (default: EBNN_DATA_DIR, Keras cache)")
    ap.add_argument("--reestimate-bn", dest="reestimate_bn", action="store_true", default=True)
    ap.add_argument("--no-reestimate-bn", dest="reestimate_bn", action="store_false")
    ap.add_argument("--out", required=True, help="where to save the trained .keras model")
    ap.add_argument("--results", default=None, help="append the JSON result line to this file")
    ap.add_argument("--skip-test", action="store_true",
                    help="model-selection run: report validation accuracy only, never touch the test set")
    args = ap.parse_args(argv)

    from keras_ebnn.train import datasets, models, training
    from keras_ebnn import import_larq
    tf, _ = import_larq()
    tf.keras.utils.set_random_seed(args.seed)
    (xtr, ytr), (xte, yte) = datasets.load(args.dataset, args.data_dir)
    if not 0 <= args.val_size < len(xtr):
        ap.error(f"--val-size must be between 0 and {len(xtr) - 1}")
    cut = len(xtr) - args.val_size
    xval, yval = (xtr[cut:], ytr[cut:]) if args.val_size else (None, None)
    xtr, ytr = xtr[:cut], ytr[:cut]
    if args.preset == "teacher":
        model = training.teacher_model()
    else:
        model = models.get(args.preset, output_scale=args.output_scale)
    teacher = None
    if args.distill:
        from keras_ebnn.frontend.lowering import load_model
        teacher = load_model(args.distill)
    start = time.time()
    training.train(model, xtr, ytr, xval, yval, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                   final_lr=args.final_lr, schedule=args.schedule, max_shift=args.shift, seed=args.seed,
                   hflip=args.hflip, teacher=teacher, alpha=args.alpha, temperature=args.temperature)
    minutes = (time.time() - start) / 60
    test = (lambda: float("nan")) if args.skip_test else (lambda: training.evaluate(model, xte, yte))
    before = test()
    val = (lambda: float("nan")) if xval is None else (lambda: training.evaluate(model, xval, yval))
    val_before = val()
    result = {"preset": args.preset, "dataset": args.dataset, "epochs": args.epochs,
              "batch_size": args.batch_size, "lr": args.lr, "final_lr": args.final_lr,
              "schedule": args.schedule, "shift": args.shift, "hflip": args.hflip,
              "distill": args.distill, "alpha": args.alpha if args.distill else None,
              "temperature": args.temperature if args.distill else None, "output_scale": args.output_scale, "seed": args.seed,
              "params": model.count_params(), "train_minutes": round(minutes, 1),
              "test_accuracy": round(before, 4), "val_accuracy": round(val_before, 4)}
    if args.reestimate_bn:
        training.reestimate_batchnorm(model, xtr)
        result["test_accuracy_bn_reestimated"] = round(test(), 4)
        result["val_accuracy_bn_reestimated"] = round(val(), 4)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    plain = tf.keras.models.clone_model(model)  # saved without optimizer state: a smaller file
    plain.set_weights(model.get_weights())
    plain.save(args.out)
    reloaded = tf.keras.models.load_model(args.out)  # the shipped file must reload (larq imported)
    probe = xtr[-256:].astype("float32")
    result["reload_ok"] = bool((reloaded.predict(probe, verbose=0).argmax(1)
                                == model.predict(probe, verbose=0).argmax(1)).all())
    result["file"] = args.out
    result["command"] = "python examples/train_mnist.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"test accuracy (Keras, float): {before:.4f} before BN re-estimation", end="")
    if args.reestimate_bn:
        print(f", {result['test_accuracy_bn_reestimated']:.4f} after")
    else:
        print()
    print(json.dumps(result))
    if args.results:
        with open(args.results, "a") as f:
            f.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
