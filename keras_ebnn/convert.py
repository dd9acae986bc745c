"""keras-ebnn-convert: export a saved Keras/Larq model as C, a Zephyr module or an Arduino library.

Exit codes: 0 exported; 1 export error (unreadable, unsafe or unsupported model, budget overrun,
failed verification or C build); 2 usage error (bad arguments, missing files).

A failed conversion prints one `error: ...` line on stderr (for an unsupported layer, followed by the
list of supported layers), never a traceback, and writes nothing. TensorFlow's start-up logs are hidden
unless --verbose. The model file is checked before Keras reads it (keras_ebnn.safe_load): layers that
could run code (Lambda, custom classes) and SavedModel directories are refused unless --trust-model.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

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
    p.add_argument("--board", metavar="NAME",
                   help="fail unless the export fits this board's flash and SRAM (model, runtime, stack, "
                        "input buffer; for --target arduino also the core and the example sketch): "
                        "one of " + ", ".join(_board_names()))
    p.add_argument("--force", action="store_true",
                   help="with --board: write an export that does not fit, with a warning")
    p.add_argument("--float-weights", choices=("float32", "int8"), default="float32",
                   help="weights of full-precision conv / dense layers (stems, heads, shortcuts): float32 "
                        "(default, Keras's values) or int8 with a float32 scale per output channel (~4x less "
                        "flash for them; outputs differ from Keras's by that rounding, reported)")
    _add_quantize_options(p)
    p.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    p.add_argument("--trust-model", action="store_true",
                   help="load the model even if it holds code (Lambda layers, custom classes, SavedModel "
                        "graphs): loading runs that code, so use it only for files you trust like a "
                        "script you would run")
    p.add_argument("--verbose", action="store_true",
                   help="show TensorFlow's own log output and warnings (hidden by default)")
    return p


# --quantize int8 (keras_ebnn/graph_quant.py): options and the representative data, in one block
REPRESENTATIVE_IMAGES = 500  # from a dataset folder: its first training images


def _add_quantize_options(p):
    p.add_argument("--quantize", choices=("int8",), default=None,
                   help="int8: integer-only C (int8 activations, int8 weights, int32 accumulators, TFLite "
                        "fixed-point requantization; no floating point); needs --representative-data. The C "
                        "then takes the quantized input and returns int32 scores (see NAME.h). Default: the "
                        "exact float32 export")
    p.add_argument("--representative-data", metavar="FILE.npy|DIR",
                   help="with --quantize int8: inputs that calibrate the int8 scales, as the model takes them: "
                        "a .npy array (N, *input shape), or a --dataset folder (its first "
                        f"{REPRESENTATIVE_IMAGES} training images)")


def _representative(args):
    """(array or None, error message or None) of --representative-data."""
    if args.quantize is None:
        return None, ("--representative-data needs --quantize int8" if args.representative_data else None)
    if not args.representative_data:
        return None, "--quantize int8 needs --representative-data FILE.npy|DIR"
    path = Path(args.representative_data)
    if path.is_dir():
        from .datasets import DatasetNotFoundError, load
        try:
            x, _ = load(args.dataset, path, split="train")
        except DatasetNotFoundError as exc:
            return None, f"--representative-data {path}: {exc}"
        return x[:REPRESENTATIVE_IMAGES], None
    if path.suffix != ".npy" or not path.is_file():
        return None, f"--representative-data {path}: not a .npy file or a dataset folder"
    try:
        return np.load(path, allow_pickle=False), None
    except (OSError, ValueError) as exc:
        return None, f"--representative-data {path}: cannot read it as a NumPy array ({exc})"


def _error(message, hint=None):
    """Print a failure as one `error:` line (and an optional one-line hint) on stderr."""
    print("error: " + " ".join(str(message).split()), file=sys.stderr)
    if hint:
        print(" ".join(hint.split()), file=sys.stderr)


def _board_names():
    from .boards import board_names
    return board_names()


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)  # exits with 2 on usage errors
    if args.board is not None:
        from .exporting import BoardError, check_board
        try:
            check_board(args.board, args.target)
        except BoardError as exc:
            parser.error(f"--board: {exc}")  # exits with 2
    elif args.force:
        parser.error("--force needs --board")
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
    rep, problem = _representative(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
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

    from ._tf import quiet_tensorflow
    from .errors import UnsupportedModelError
    try:
        with quiet_tensorflow(enabled=not args.verbose):  # TF/absl/oneDNN/CUDA logs go to a sink
            from .exporting import BudgetError, export
            from .lowering import load_model
            try:
                model = load_model(model_path, trust_model=args.trust_model)
                result = export(model, args.output, name=name, target=args.target, verify_inputs=x,
                                verify_labels=y, max_ram=args.max_ram, max_flash=args.max_flash,
                                progress=not args.quiet, board=args.board, force=args.force,
                                float_weights=args.float_weights, quantize=args.quantize,
                                representative_data=rep)
            except UnsupportedModelError as exc:  # hint: the supported layers (None for a bad file)
                _error(exc.message, exc.hint)
                return EXIT_EXPORT_ERROR
            except BudgetError as exc:
                _error(exc)
                return EXIT_EXPORT_ERROR
            except (OSError, RuntimeError) as exc:
                print(f"error: export failed: {exc}", file=sys.stderr)  # may hold compiler output
                return EXIT_EXPORT_ERROR
    except Exception as exc:  # a loader or TensorFlow bug on odd input: still one line, no traceback
        _error(f"export failed: {type(exc).__name__}: {exc}"[:500])
        return EXIT_EXPORT_ERROR
    for note in result.notes:  # e.g. --force on a board it does not fit: shown even with -q
        if note.startswith("WARNING"):
            print(note, file=sys.stderr)
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
