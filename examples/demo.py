"""MNIST demo, offline: export the shipped pretrained model as C, build it, run it on the shipped
sample of test images, and print accuracy, memory and the C-vs-Keras agreement.

    python examples/demo.py [--model examples/models/uno_mnist.keras] [--out out/mnist_demo]
"""
import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(HERE / "models" / "uno_mnist.keras"))
    ap.add_argument("--samples", default=str(HERE / "data" / "mnist_test_sample.npz"))
    ap.add_argument("--out", default="out/mnist_demo")
    ap.add_argument("--name", default="mnist")
    ap.add_argument("--verbose", action="store_true", help="show TensorFlow's own log output")
    args = ap.parse_args(argv)

    from keras_ebnn.frontdoor import host, report
    from keras_ebnn._tf import quiet_tensorflow

    data = np.load(args.samples)
    x, y = data["x"], data["y"]
    print(f"[1/3] Exporting {args.model} as C to {args.out} (verifying on {len(x)} MNIST test images)")
    with quiet_tensorflow(enabled=not args.verbose):  # hide TensorFlow/absl/oneDNN/CUDA start-up logs
        from keras_ebnn.frontdoor.exporting import export
        from keras_ebnn.frontend.lowering import load_model
        model = load_model(args.model)
        result = export(model, args.out, name=args.name, verify_inputs=x, verify_labels=y)
    print()
    print(report.table(result.lowered, result.plan))
    print(report.totals_text(result.lowered, result.plan))
    print()

    cc = host.find_cc()
    if cc is None:
        print("No C compiler found (set CC): skipping the C build.")
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        exe = Path(tmp) / "demo"
        cmd = [cc, "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", f"-I{args.out}",
               f"-DMODEL_HEADER=\"{args.name}.h\"", f"-DMODEL={args.name}",
               *host.c_sources(args.out), str(HERE / "main.c"), "-o", str(exe)]
        print("[2/3] Building: " + " ".join(Path(c).name if c.endswith('.c') else c for c in cmd))
        subprocess.run(cmd, check=True)
        samples = Path(tmp) / "samples.bin"
        records = np.concatenate([y.astype(np.uint8)[:, None], x.reshape(len(x), -1)], axis=1)
        samples.write_bytes(records.astype(np.uint8).tobytes())
        print(f"[3/3] Running the C build on {len(x)} images:")
        out = subprocess.run([str(exe), str(samples)], check=True, capture_output=True, text=True).stdout
        print("  " + out.strip())
    c_acc = float(out.split("= ")[1].split("%")[0]) / 100
    print()
    print(f"Accuracy on {len(x)} MNIST test images: Keras {result.keras_accuracy * 100:.2f}%, "
          f"reference executor {result.accuracy * 100:.2f}%, C {c_acc * 100:.2f}%")
    a = result.agreement
    print(f"C vs Keras: classes agree on {a.class_agreement * 100:.2f}% of images ({a.class_flips} differ); "
          f"compiled C vs reference executor: "
          f"{'bit-identical logits' if result.c_matches_reference else 'MISMATCH'}")
    print(f"Report: {result.report_path}")
    return 0 if result.c_matches_reference else 1


if __name__ == "__main__":
    sys.exit(main())
