"""keras-ebnn-convert: export a saved Keras/Larq model as C, a Zephyr module or an Arduino library.

Exit codes: 0 exported; 1 export error (unreadable, unsafe or unsupported model, budget overrun,
failed verification or C build); 2 usage error (bad arguments, missing files).

A failed conversion prints one `error: ...` line on stderr (for an unsupported layer, followed by the
list of supported layers), never a traceback, and writes nothing. TensorFlow's start-up logs are hidden
unless --verbose. The model file is checked before Keras reads it (keras_ebnn.frontend.safe_load): layers that
could run code (Lambda, custom classes) and SavedModel directories are refused unless --trust-model.
The arguments and the output folder are checked here; the file is then read, checked, loaded and
exported in a child process with memory and time limits (keras_ebnn.frontend.isolation), whose output this
process forwards: a crash or endless loop in HDF5 or TensorFlow becomes one `error:` line (exit 1).
Every name printed has its control characters escaped (keras_ebnn.errors.printable).
"""
import argparse
import os
import shutil
import stat
import sys
import tempfile
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
    p.add_argument("-o", "--output", required=True,
                   help="output folder: created, or replaced atomically if it holds a previous export "
                        "(never a file, nor the folder holding the model)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the output folder even if it holds files an export did not write")
    p.add_argument("--name", default=None,
                   help="C name prefix: NAME_predict(), NAME.h (default: the model file's stem)")
    p.add_argument("--target", choices=("c", "zephyr", "arduino"), default="c",
                   help="output kind (default: c)")
    p.add_argument("--verify-data", metavar="DIR",
                   help="folder with the dataset's IDX .gz test files: print Keras vs exported accuracy "
                        "on the whole test set; or a .npz file with arrays x (inputs, the model's shape) "
                        "and optionally y (integer labels), e.g. for a 1-D sensor model")
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
    _add_verify_options(p)
    return p


def _add_verify_options(p):
    """Options on the verification data and on loading (issue 22): the data's preprocessing, custom
    objects for a trusted file."""
    p.add_argument("--input-scale", type=float, default=None, metavar="S",
                   help="with --verify-data: feed the model pixel * S + OFFSET (float32) instead of the raw "
                        "0-255 pixels, for a model that normalises its inputs outside the model (e.g. "
                        "--input-scale 0.00784313725 --input-offset -1 for x/127.5-1); a model that starts "
                        "with Rescaling takes the raw pixels (its C reads uint8)")
    p.add_argument("--input-offset", type=float, default=None, metavar="OFFSET",
                   help="with --verify-data: added after --input-scale (default 0)")
    p.add_argument("--custom-objects", metavar="MODULE.py", default=None,
                   help="with --trust-model: a Python file defining the model's custom classes (e.g. a "
                        "subclass of Sequential); its `custom_objects` dict if it has one, else every "
                        "class and function it defines, is passed to Keras's loader. The file is run.")


# --quantize int8 (keras_ebnn/passes/graph_quant.py): options and the representative data, in one block
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
        from .train.datasets import DatasetNotFoundError, load
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
    from .errors import printable
    print("error: " + printable(" ".join(str(message).split())), file=sys.stderr)
    if hint:
        print(printable(" ".join(hint.split())), file=sys.stderr)


def _safe(text):
    """`text` with control characters escaped, line by line (its own line breaks kept)."""
    from .errors import printable
    return "\n".join(printable(line) for line in str(text).split("\n"))


def _board_names():
    from .planning.boards import board_names
    return board_names()


def main(argv=None, isolate=None):
    """The CLI. isolate: None (default) converts in a child process with limits unless this process
    already is one; False converts here (tests that run many files in one process)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)  # exits with 2 on usage errors
    if args.board is not None:
        from .frontdoor.exporting import BoardError, check_board
        try:
            check_board(args.board, args.target)
        except BoardError as exc:
            parser.error(f"--board: {exc}")  # exits with 2
    elif args.force:
        parser.error("--force needs --board")
    if (args.input_scale is not None or args.input_offset is not None) and not args.verify_data:
        parser.error("--input-scale / --input-offset need --verify-data")
    if args.custom_objects is not None and not args.trust_model:
        parser.error("--custom-objects needs --trust-model: loading custom classes runs their code")
    say = (lambda *a: None) if args.quiet else (lambda text: print(_safe(text)))
    model_path = Path(args.model)
    try:
        mode = os.stat(model_path).st_mode
    except OSError:
        _error(f"model file {model_path} does not exist")
        return EXIT_USAGE
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        _error(f"model file {model_path} is not a regular file (a FIFO, device or socket is never opened)")
        return EXIT_USAGE
    name = args.name or "".join(ch if ch.isalnum() else "_" for ch in model_path.stem)
    from .exporters.c import name_problem  # the one rule for export names (also in export())
    if (problem := name_problem(name)):
        _error(f"--name {name!r} {problem}")
        return EXIT_USAGE
    from .frontdoor.exporting import OutputDirError, check_out_dir
    try:
        check_out_dir(args.output, overwrite=args.overwrite,  # never over an input, even with --overwrite
                      inputs=[model_path] + ([Path(args.verify_data)] if args.verify_data else []))
    except OutputDirError as exc:
        _error(exc)
        return EXIT_USAGE
    if args.verify_data and not args.verify_data.endswith(".npz"):
        from .train.datasets import FILES, find_dir
        if find_dir(args.dataset, args.verify_data, use_env=False) is None:
            _error(f"--verify-data {args.verify_data}: no {args.dataset} IDX files "
                   f"({', '.join(FILES['test'])}) there or in its {args.dataset.replace('_', '-')}/ "
                   "sub-folder (EBNN_DATA_DIR is not used when --verify-data is given)")
            return EXIT_USAGE
    from .frontend import isolation
    if isolate is None:
        isolate = not isolation.in_child()
    if isolate:
        return _run_isolated(argv, model_path)
    if isolation.in_child():
        isolation.limit_self()
    return _convert(args, model_path, name, say)


def _run_isolated(argv, model_path):
    """Run this CLI again in a child process (keras_ebnn.frontend.isolation) and forward its output; a child
    ended by a signal (crash, time limit) is reported as one error line, exit 1. The child's private
    folder (its TMPDIR, the model's private copy) is removed whatever happened."""
    from .frontend import isolation
    work = Path(tempfile.mkdtemp(prefix="keras-ebnn-"))
    phase_file = work / "phase"
    try:
        env = isolation.child_env(work, {isolation.PHASE_ENV: str(phase_file), "PYTHONUNBUFFERED": "1"})
        code = isolation.run_child([sys.executable, "-m", "keras_ebnn.convert", *argv], env)
        phase, seconds = isolation.read_phase(phase_file)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if code < 0:
        _error(f"could not convert model file {model_path}: {isolation.death_reason(code, phase, seconds)}")
        return EXIT_EXPORT_ERROR
    return code


def _convert(args, model_path, name, say):
    """Load, export, verify and report (in the isolated child, or here with main(isolate=False))."""
    rep, problem = _representative(args)
    if problem:
        _error(problem)
        return EXIT_USAGE
    x = y = None
    what = f"{args.dataset} test images"
    if args.verify_data and args.verify_data.endswith(".npz"):
        try:
            x, y = _load_npz(args.verify_data)
        except (OSError, ValueError) as exc:
            _error(f"--verify-data {args.verify_data}: {exc}")
            return EXIT_USAGE
        what = f"inputs from {Path(args.verify_data).name}"
    elif args.verify_data:
        from .train.datasets import DatasetNotFoundError, load
        try:
            x, y = load(args.dataset, args.verify_data, split="test")
        except DatasetNotFoundError as exc:
            _error(exc)
            return EXIT_USAGE

    from ._tf import quiet_tensorflow
    from .errors import UnsupportedModelError
    try:
        with quiet_tensorflow(enabled=not args.verbose):  # TF/absl/oneDNN/CUDA logs go to a sink
            from .frontdoor.exporting import BudgetError, OutputDirError, export
            from .frontend.lowering import load_model
            from .frontdoor.verify import InputDataError
            try:
                custom = None if args.custom_objects is None else _custom_objects(args.custom_objects)
                model = load_model(model_path, trust_model=args.trust_model, isolate=False,
                                   custom_objects=custom)
                if x is not None:
                    x, how = _verify_inputs(x, model, args.input_scale, args.input_offset)
                    if how:
                        say(f"verification inputs: {what} {how}")
                result = export(model, args.output, name=name, target=args.target, verify_inputs=x,
                                verify_labels=y, max_ram=args.max_ram, max_flash=args.max_flash,
                                progress=not args.quiet, board=args.board, force=args.force,
                                float_weights=args.float_weights, overwrite=args.overwrite,
                                quantize=args.quantize, representative_data=rep)
            except UnsupportedModelError as exc:  # hint: the supported layers (None for a bad file)
                _error(exc.message, exc.hint)
                return EXIT_EXPORT_ERROR
            except OutputDirError as exc:
                _error(exc)
                return EXIT_USAGE
            except BudgetError as exc:
                _error(exc)
                return EXIT_EXPORT_ERROR
            except (OSError, RuntimeError) as exc:
                _error(f"export failed: {exc}")  # may hold compiler output
                return EXIT_EXPORT_ERROR
            except (InputDataError, CustomObjectsError) as exc:
                scaled = isinstance(exc, InputDataError) and (args.input_scale, args.input_offset) != (None, None)
                _error(exc, "(--input-scale / --input-offset changed the data: a model that starts with "
                            "Rescaling takes the raw pixels)" if scaled else None)
                return EXIT_EXPORT_ERROR
    except MemoryError:
        _error(f"export failed: out of memory (the limit is 8 GiB) converting {model_path}")
        return EXIT_EXPORT_ERROR
    except Exception as exc:  # a loader or TensorFlow bug on odd input: still one line, no traceback
        _error(f"export failed: {type(exc).__name__}: {exc}"[:500])
        return EXIT_EXPORT_ERROR
    for note in result.notes:  # e.g. --force on a board it does not fit: shown even with -q
        if note.startswith("WARNING"):
            print(_safe(note), file=sys.stderr)
    say(result.summary())
    if x is not None:
        say((f"accuracy on {len(x)} {what}: Keras {result.keras_accuracy * 100:.2f}%, "
             f"exported {result.accuracy * 100:.2f}% (" if y is not None else f"{len(x)} {what}, no labels (")
            + f"reference executor{', C' if result.c_checked else ''}); classes differ on "
            f"{result.agreement.class_flips} {'images' if what.endswith('images') else 'inputs'}")
        if result.c_checked and not result.c_matches_reference:
            _error("the compiled C does not match the reference executor")
            return EXIT_EXPORT_ERROR
    say(f"wrote {result.out_dir}")
    return EXIT_OK


def _load_npz(path):
    """(x, y or None) from a --verify-data .npz file (arrays x and optionally y; no pickled objects)."""
    import numpy as np
    with np.load(path, allow_pickle=False) as data:
        if "x" not in data.files:
            raise ValueError(f"no array named x in it (it has {', '.join(data.files) or 'none'}); save it with "
                             "numpy.savez(path, x=inputs, y=labels)")
        return data["x"], (data["y"] if "y" in data.files else None)


class CustomObjectsError(ValueError):
    """--custom-objects: the file cannot be run or defines no class or function."""


def _custom_objects(path):
    """{name: object} from the Python file `path` (--custom-objects): its `custom_objects` dict when it
    defines one, else every class and function defined in the file itself (not the ones it imports)."""
    import importlib.util
    path = Path(path)
    if not path.is_file():
        raise CustomObjectsError(f"--custom-objects {path}: no such file")
    from ._tf import import_larq
    import_larq()  # TensorFlow with legacy Keras and larq first: the module may import tensorflow itself
    spec = importlib.util.spec_from_file_location(f"keras_ebnn_custom_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise CustomObjectsError(f"--custom-objects {path}: running it failed: {type(exc).__name__}: {exc}") from exc
    objects = getattr(module, "custom_objects", None)
    if objects is None:
        objects = {k: v for k, v in vars(module).items() if not k.startswith("_") and callable(v)
                   and getattr(v, "__module__", None) == module.__name__}
    if not isinstance(objects, dict) or not objects:
        raise CustomObjectsError(f"--custom-objects {path}: defines no class or function (nor a "
                                 "`custom_objects` dict) to pass to Keras's loader")
    return objects


def _verify_inputs(x, model, scale, offset):
    """--verify-data images for `model`: pixel * scale + offset (float32) when either is given, and
    reshaped to the model's input shape when only the shape differs (e.g. a flat (784,) input).
    Returns (inputs, a phrase saying what was done, or "")."""
    import numpy as np
    how = []
    if scale is not None or offset is not None:
        scale = 1.0 if scale is None else scale
        offset = 0.0 if offset is None else offset
        x = x.astype(np.float32) * np.float32(scale) + np.float32(offset)
        how.append(f"as pixel * {scale:g} + {offset:g}")
    shape = tuple(model.input_shape[1:])
    if x.shape[1:] != shape and None not in shape and int(np.prod(shape)) == int(np.prod(x.shape[1:])):
        x = x.reshape((len(x),) + shape)
        how.append(f"reshaped to the model's input {'x'.join(map(str, shape))}")
    return x, ", ".join(how)


if __name__ == "__main__":
    sys.exit(main())
