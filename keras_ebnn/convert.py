"""keras-ebnn-convert: export a saved Keras/Larq model as C, a Zephyr module or an Arduino library.

Exit codes: 0 exported; 1 export error (unsupported model, budget overrun, failed verification or C
build); 2 usage error (bad arguments, missing files).
"""
import argparse
import sys
from pathlib import Path

EXIT_OK, EXIT_EXPORT_ERROR, EXIT_USAGE = 0, 1, 2


def build_parser():
    p = argparse.ArgumentParser(
        prog="keras-ebnn-convert",
        description="Convert a saved Keras/Larq binarized model (.keras/.h5) into dependency-free C "
                    "(fused eBNN blocks), a Zephyr module or an Arduino library, with a memory report.",
        epilog="Exit codes: 0 ok, 1 export error (unsupported model, budget overrun, verification "
               "failure), 2 usage error.")
    p.add_argument("model", help="saved model file (.keras or .h5)")
    p.add_argument("-o", "--output", required=True, help="output folder (replaced atomically)")
    p.add_argument("--name", default=None,
                   help="C name prefix: NAME_predict(), NAME.h (default: the model file's stem)")
    p.add_argument("--target", choices=("c", "zephyr", "arduino"), default="c",
                   help="output kind (default: c)")
    p.add_argument("--verify-data", metavar="DIR",
                   help="folder with the dataset's IDX .gz test files: print Keras vs exported accuracy "
                        "on the whole test set")
    p.add_argument("--dataset", choices=("mnist", "fashion_mnist"), default="mnist",
                   help="dataset in --verify-data (default: mnist)")
    p.add_argument("--max-ram", type=int, metavar="BYTES", help="fail if the model needs more RAM")
    p.add_argument("--max-flash", type=int, metavar="BYTES", help="fail if the model needs more flash")
    p.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)  # exits with 2 on usage errors
    say = (lambda *a: None) if args.quiet else print
    model_path = Path(args.model)
    if not model_path.exists():
        print(f"error: model file {model_path} does not exist", file=sys.stderr)
        return EXIT_USAGE
    name = args.name or "".join(ch if ch.isalnum() else "_" for ch in model_path.stem)
    from .exporters.c import name_problem  # the one rule for export names (also in export())
    if (problem := name_problem(name)):
        print(f"error: --name {name!r} {problem}", file=sys.stderr)
        return EXIT_USAGE
    x = y = None
    if args.verify_data:
        from .datasets import FILES, DatasetNotFoundError, find_dir, load
        if find_dir(args.dataset, args.verify_data, use_env=False) is None:
            print(f"error: --verify-data {args.verify_data}: no {args.dataset} IDX files "
                  f"({', '.join(FILES['test'])}) there or in its {args.dataset.replace('_', '-')}/ "
                  "sub-folder (EBNN_DATA_DIR is not used when --verify-data is given)", file=sys.stderr)
            return EXIT_USAGE
        try:
            x, y = load(args.dataset, args.verify_data, split="test")
        except DatasetNotFoundError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE

    from .errors import UnsupportedModelError
    from .exporting import BudgetError, export
    from .lowering import load_model
    try:
        model = load_model(model_path)
        result = export(model, args.output, name=name, target=args.target, verify_inputs=x,
                        verify_labels=y, max_ram=args.max_ram, max_flash=args.max_flash,
                        progress=not args.quiet)
    except (UnsupportedModelError, BudgetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_EXPORT_ERROR
    except (OSError, RuntimeError) as exc:
        print(f"error: export failed: {exc}", file=sys.stderr)
        return EXIT_EXPORT_ERROR
    say(result.summary())
    if x is not None:
        say(f"accuracy on {len(x)} {args.dataset} test images: Keras {result.keras_accuracy * 100:.2f}%, "
            f"exported {result.accuracy * 100:.2f}% (reference executor"
            f"{', C' if result.c_checked else ''}); classes differ on "
            f"{result.agreement.class_flips} images")
        if result.c_checked and not result.c_matches_reference:
            print("error: the compiled C does not match the reference executor", file=sys.stderr)
            return EXIT_EXPORT_ERROR
    say(f"wrote {result.out_dir}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
