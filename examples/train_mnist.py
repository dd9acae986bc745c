"""Train an eBNN preset on MNIST or Fashion-MNIST: the recipe that produced the shipped models.

    python examples/train_mnist.py --preset demo_mnist --epochs 15 --out examples/models/mnist_demo.keras

Recipe: uint8 input (Rescaling 1/255 inside the model), Adam with a cosine-decaying learning rate
(1e-3 -> 1e-5), batch 128, latent weights clipped to [-1, 1] (weight_clip), BN momentum 0.9, optional
random shifts, then batch-norm statistics re-estimated on the whole training set. The last 5,000
training images are held out for validation; the test set is used only for the final figures.
"""
import argparse
import json
import sys
import time
from pathlib import Path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="demo_mnist", help="keras_ebnn.models preset name")
    ap.add_argument("--dataset", default="mnist", choices=("mnist", "fashion_mnist"))
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--shift", type=int, default=0, help="random shift augmentation, pixels (0: off)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default=None, help="IDX folder (default: EBNN_DATA_DIR, Keras cache)")
    ap.add_argument("--reestimate-bn", dest="reestimate_bn", action="store_true", default=True)
    ap.add_argument("--no-reestimate-bn", dest="reestimate_bn", action="store_false")
    ap.add_argument("--out", required=True, help="where to save the trained .keras model")
    args = ap.parse_args(argv)

    from keras_ebnn import datasets, import_larq, models, training
    tf, _ = import_larq()
    tf.keras.utils.set_random_seed(args.seed)
    (xtr, ytr), (xte, yte) = datasets.load(args.dataset, args.data_dir)
    xval, yval = xtr[-5000:], ytr[-5000:]
    xtr, ytr = xtr[:-5000], ytr[:-5000]
    model = models.get(args.preset)
    start = time.time()
    training.train(model, xtr, ytr, xval, yval, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                   max_shift=args.shift, seed=args.seed)
    minutes = (time.time() - start) / 60
    before = training.evaluate(model, xte, yte)
    val_before = training.evaluate(model, xval, yval)
    result = {"preset": args.preset, "dataset": args.dataset, "epochs": args.epochs, "shift": args.shift,
              "seed": args.seed, "train_minutes": round(minutes, 1),
              "test_accuracy": round(before, 4), "val_accuracy": round(val_before, 4)}
    if args.reestimate_bn:
        training.reestimate_batchnorm(model, xtr)
        result["test_accuracy_bn_reestimated"] = round(training.evaluate(model, xte, yte), 4)
        result["val_accuracy_bn_reestimated"] = round(training.evaluate(model, xval, yval), 4)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    model.save(args.out, include_optimizer=False)
    result["file"] = args.out
    result["command"] = "python examples/train_mnist.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
