"""CIFAR-10 (JPEG copy) -> a binary VGG chain -> C, checked against Keras on the test images.

    EBNN_DATA_DIR=/path/to/data python examples/cifar10/train.py --out /tmp/cifar10 [--preset vgg_cifar10_t]
        [--epochs 30] [--time-budget MIN] [--model FILE]

Loads the JPEG copy of CIFAR-10 (`keras_ebnn.train.datasets.load_cifar10`: DATA/cifar10/cifar10-jpeg.tar.gz,
decoded once with Pillow and cached in ~/.cache/keras-ebnn), trains a preset of the binary VGG family
(`keras_ebnn.train.models.cifar_vgg`) with `keras_ebnn.train.training.train` (Adam, cosine schedule, random crops
and flips), re-estimates its batch-norm statistics, saves it (OUT/NAME.keras) and exports it to C
(OUT/c) with `keras_ebnn.export`, verified on the test images: the C is compiled with the host compiler
and run on every one of them, and the export fails unless its classes and logits equal the reference
executor's bit for bit. Prints the test accuracy of Keras and of the C, and the memory plan.
--model FILE skips training and exports a saved model.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--preset", default="vgg_cifar10_t")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--time-budget", type=float, default=None, help="minutes; stop after the last epoch that fits")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--model", help="export this trained model instead of training one")
    ap.add_argument("--train-images", type=int, default=None, help="use only the first N (a quick try)")
    ap.add_argument("--test-images", type=int, default=None)
    args = ap.parse_args(argv)
    from keras_ebnn.train import datasets, models, training
    from keras_ebnn import export
    from keras_ebnn.frontend.model_loading import load_model
    (xtr, ytr), (xte, yte) = datasets.load_cifar10()
    perm = np.random.default_rng(0).permutation(len(xtr))  # the archive is stored class by class
    xtr, ytr = xtr[perm][:args.train_images], ytr[perm][:args.train_images]
    xte, yte = xte[:args.test_images], yte[:args.test_images]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = args.preset
    if args.model:
        model = load_model(args.model)
    else:
        model = models.get(name, output_scale=True)
        t = time.time()
        training.train(model, xtr, ytr, epochs=args.epochs, lr=args.lr, max_shift=2, hflip=True, verbose=2,
                       time_budget=None if args.time_budget is None else 60 * args.time_budget)
        training.reestimate_batchnorm(model, xtr[:10000])
        print(f"trained in {(time.time() - t) / 60:.1f} min")
        model.save(out / f"{name}.keras")
    res = export(model, out / "c", name, verify_inputs=xte, verify_labels=yte, overwrite=True)
    print(f"CIFAR-10 (JPEG copy), {len(xte)} test images: Keras {res.keras_accuracy * 100:.2f}%, "
          f"C {res.accuracy * 100:.2f}% (C = reference bit for bit: {res.c_matches_reference})")
    t = res.plan["totals"]
    print(f"model data {t['flash_data_bytes']:,} B flash, arena {t['arena_bytes']:,} B RAM "
          f"(+ stack; input {t['input_bytes']:,} B); C in {res.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
