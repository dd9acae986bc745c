"""`export()`: the one front door used by the callback, the CLI and the demo.

lower (`lower_for_export`: the graph IR, as its chain of fused blocks when it is one) -> plan memory (and check budgets: --max-ram/--max-flash, and the board's flash and SRAM,
see boards.py) -> write the target's files into a temporary folder -> verify (reference vs Keras,
compiled C vs reference) -> write the report -> swap the folder into place.
Nothing is left half-written: on any error the temporary folder is removed and `out_dir` is untouched.
The output folder never destroys data (`check_out_dir`): an existing file, a folder that holds the
input model, or a folder with files the export did not write (the export lists what it wrote in
MANIFEST) is refused unless overwrite=True (CLI --overwrite; never for a file or the input's folder);
a previous export is replaced atomically (`_swap_into_place`: one rename exchange, no `.old` left).
"""
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from ..planning import boards
from ..ir import graph_reference
from . import report
from ..ir.blocks import LoweredModel, class_threshold, classes_of
from ..errors import BudgetError  # also keras_ebnn.frontdoor.exporting.BudgetError, keras_ebnn.BudgetError
from ..ir.graph import as_graph

TARGETS = ("c", "zephyr", "arduino")
SAMPLES_PER_TARGET = {"c": 0, "arduino": 8, "zephyr": 32}  # test inputs embedded in the example
log = logging.getLogger("keras_ebnn")


class BoardError(ValueError):
    """Unknown board, or a board the target does not run on (the message lists the known boards)."""


class OutputDirError(ValueError):
    """The output folder cannot be used: it is a file, holds the input model, or holds other files."""


MANIFEST = ".keras-ebnn-export"  # in every export: the files it wrote (lets a later export replace it)


@dataclass
class ExportResult:
    out_dir: Path
    name: str
    target: str
    lowered: LoweredModel  # or exporters/graph_c.py GraphModel (a graph that is not a chain of fused blocks)
    plan: dict
    agreement: Optional[object] = None  # verify.Agreement (reference vs Keras)
    accuracy: Optional[float] = None  # exported model's accuracy on the labels given
    keras_accuracy: Optional[float] = None
    classes: Optional[np.ndarray] = None  # exported model's classes on the verification inputs
    c_checked: bool = False
    c_matches_reference: Optional[bool] = None
    c_max_logit_diff: Optional[float] = None
    c_logit_tolerance: Optional[float] = None  # None: C logits must equal the reference's bit for bit
    report_path: Optional[Path] = None
    epoch: Optional[int] = None
    notes: list = field(default_factory=list)
    budget: Optional[boards.Budget] = None  # the board budget (export(..., board=...))
    forced: bool = False  # written with force=True although it does not fit the board
    sketch_inputs: Optional[str] = None  # Arduino: what the example sketch classifies

    def summary(self):
        t = self.plan["totals"]
        what = f"graph of {len(self.plan['ops'])} ops" if not self.plan["chain"] else f"{len(self.plan['blocks'])} blocks"
        parts = [f"{self.name} -> {self.out_dir} ({self.target}, {what}): flash {t['flash_bytes']} B "
                 f"(data {t['flash_data_bytes']} B + code ~{t['code_bytes_estimate']} B), RAM "
                 f"{t['ram_bytes']} B (activations {t['activation_bytes']} B"
                 + (f" + kernel scratch {t['kernel_scratch_bytes']} B" if t.get("kernel_scratch_bytes") else "")
                 + f" + stack <= {t['stack_bytes_estimate']} B for {report.stack_build_text(self.plan)})"]
        if self.budget is not None:
            parts.append(("DOES NOT FIT (written with force): " if self.forced else "fits: ") + self.budget.text())
        if self.sketch_inputs is not None:
            parts.append(f"example sketch: {self.sketch_inputs}")
        if self.agreement is not None:
            parts.append(f"reference vs Keras: {self.agreement.summary()}")
        if self.c_checked:
            same = ("identical classes and logits" if self.c_logit_tolerance is None else
                    f"identical classes, logits within {self.c_logit_tolerance:g} x (1 + max |logit|) "
                    f"(max difference {self.c_max_logit_diff:.2e}; tanh/sigmoid use the C library)")
            parts.append("compiled C vs reference: " + (same if self.c_matches_reference else "MISMATCH"))
        if self.accuracy is not None:
            parts.append(f"accuracy: exported {self.accuracy * 100:.2f}%"
                         + (f", Keras {self.keras_accuracy * 100:.2f}%" if self.keras_accuracy is not None else ""))
        return "\n  ".join(parts)


def _exporter(target):
    if target == "c":
        from ..exporters.c import export_c
        return lambda lowered, out, name, **kw: export_c(lowered, out, name)
    if target == "arduino":
        from ..exporters.arduino import export_arduino
        return export_arduino
    if target == "zephyr":
        from ..exporters.zephyr import export_zephyr
        return export_zephyr
    raise ValueError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")


def check_budget(plan, max_ram=None, max_flash=None):
    """Raise BudgetError when the plan exceeds a budget, naming the blocks that dominate."""
    t = plan["totals"]
    problems = []
    for what, limit, total, key in (("RAM", max_ram, t["ram_bytes"], "ram_bytes"),
                                    ("flash", max_flash, t["flash_bytes"], "flash_bytes")):
        if limit is not None and total > limit:
            blocks = sorted(plan["blocks"], key=lambda b: -b[key])[:3]
            unit = "block" if plan["chain"] else "op"
            top = ", ".join(f"{unit} {b['index']} {b['kind']} {b[key]} B" for b in blocks)
            problems.append(f"{what} {total} B exceeds the budget of {limit} B by {total - limit} B "
                            f"(largest: {top})")
    if problems:
        raise BudgetError("; ".join(problems))


def lower_for_export(model, name="model", float_weights="float32", quantize=None, representative_data=None):
    """What `export()` exports: the one lowering's graph (`keras_ebnn.ir.graph.lower_graph`), seen as its
    chain of fused blocks (`keras_ebnn.frontend.lowering.chain_view`, a LoweredModel) when it is one, else wrapped
    as exporters/graph_c.py GraphModel. A model it cannot lower raises its UnsupportedModelError (naming
    the layer). A LoweredModel, Graph or GraphModel passes through (a Graph is wrapped).
    float_weights="int8": the graph's full-precision conv / depthwise / dense weights as int8 with a
    float32 scale per output channel (keras_ebnn.passes.graph_int8; a chain has no such layer). quantize="int8":
    the integer-only graph of keras_ebnn.passes.graph_quant, calibrated on representative_data (always a graph,
    even for a chain model)."""
    from ..exporters.graph_c import GraphModel
    from ..ir.graph import Graph
    from ..frontend.lowering import lower_any
    if quantize == "int8":  # an integer-only graph passes through, anything else is quantized
        graph = model.graph if isinstance(model, GraphModel) else model
        if isinstance(graph, Graph) and graph.quant:
            return GraphModel(graph)
        return GraphModel(_quantized_graph(graph, name, representative_data))
    if isinstance(model, (LoweredModel, GraphModel)):
        return model
    if isinstance(model, Graph):
        return GraphModel(model)
    graph, lowered, _ = lower_any(model, name, float_weights)
    return lowered or GraphModel(graph)


def summary(model, print_fn=print):
    """Per-block flash / RAM / MACs table of a Keras model (trained or not), before any export.

    Use it to design a network for a memory budget: the figures are those the export would have.
    A model that is not a chain of fused blocks is shown as the graph export describes it: one row
    per op with its output tensor (bits / int / float32, shape, bytes, arena offset), its flash, the
    bytes live while it runs, and the peak. Returns the table as a string.
    """
    from ..exporters.c import memory_plan

    lowered = lower_for_export(model)
    plan = memory_plan(lowered)  # refuses parameters the C types cannot hold (graph_c.check_c_limits)
    text = report.table(lowered, plan) + "\n" + report.totals_text(lowered, plan)
    if print_fn is not None:
        print_fn(text)
    return text


def export(model, out_dir, name="model", target="c", verify_inputs=None, verify_labels=None,
           max_ram=None, max_flash=None, keras_model=None, check_c=True, progress=False, board=None,
           force=False, sketch_verify_inputs=True, float_weights="float32", overwrite=False,
           audio_frontend=None, quantize=None, representative_data=None):
    """Export `model` (Keras model, model file, LoweredModel, or a keras_ebnn.ir.graph Graph) to `out_dir`;
    return an ExportResult. A Keras model is lowered by `lower_for_export` (chain first, else graph).

    verify_inputs/labels: when given, the exported model is run on them with the reference executor
    (and compiled with the host C compiler when one exists) and compared with Keras; the figures
    go into the report. board: a name from boards.BOARDS (e.g. "uno"): the export must fit its flash
    and SRAM (see boards.py for what is counted); the Arduino example embeds only the samples that
    fit. force: write an export that does not fit the board anyway, with a warning (logged on the
    "keras_ebnn" logger, kept in result.notes and written into the report).
    sketch_verify_inputs: the Arduino example embeds the first verification inputs; False when they
    mean nothing to a reader (e.g. random inputs): it then embeds the shipped MNIST sample (28x28x1
    models) or reads its inputs over Serial.
    float_weights: "float32" (default: Keras's weights) or "int8": full-precision conv / depthwise /
    dense layers of a graph store int8 weights + a float32 scale per output channel (~4x less flash
    for them; keras_ebnn.passes.graph_int8). The outputs then differ from Keras's by that rounding: the
    report's "reference vs Keras" line measures it; C still equals the reference bit for bit.
    overwrite: replace an `out_dir` that holds files an export did not write (see check_out_dir).
    audio_frontend: a keras_ebnn.frontend.audio.FrontEnd whose uint8 feature window is the model's input: its C
    (NAME_audio.c / .h: push samples, get the window, classify) is written beside NAME.c.
    verify_inputs must fit the model's input (keras_ebnn.frontdoor.verify.check_inputs: shape, finite values,
    integers 0..255 for a model starting with Rescaling); a flat (n,) model takes (N, n). Labels:
    (N,) or (N, 1) classes. A single output unit is a binary classifier (class 1 when the sigmoid
    p >= 0.5, or the logit z >= 0: keras_ebnn.ir.blocks.class_threshold).
    Raises UnsupportedModelError (ModelOutputError: several outputs, an output that is not a vector,
    a one-unit softmax), verify.InputDataError (verification data outside the model's input), BudgetError,
    BoardError (unknown board, Zephyr on AVR), OutputDirError, or RuntimeError (C mismatch); all before
    any file is written except the last.
    quantize: None (default: the exact float32 graph) or "int8": integer-only C (keras_ebnn.passes.graph_quant:
    int8 activations calibrated on `representative_data` (inputs as Keras takes them), per-channel int8
    weights, int32 accumulators, TFLite's fixed-point requantization; no floating-point arithmetic). The C
    then takes the quantized input (NAME.h: NAME_INPUT_SCALE / NAME_INPUT_ZERO_POINT, or raw uint8 when the
    model starts with Rescaling) and returns int32 scores (NAME_OUTPUT_SCALE); verify_inputs stay float
    (the export quantizes them); the report states the agreement with Keras, C equals the reference bit for bit.
    """
    from ..exporters.c import check_name, memory_plan
    from .host import find_cc, predict_c
    from .verify import compare

    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    check_name(name)  # before any work: a name the C files cannot take (exporters/c.py)
    model_file = [model] if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__") else []
    out_dir = check_out_dir(out_dir, overwrite=overwrite, inputs=model_file)
    from ..exporters.graph_c import GraphModel
    from ..ir.graph import Graph
    if not isinstance(model, (LoweredModel, GraphModel, Graph)):  # a Keras model or a model file
        keras_model = model if keras_model is None else keras_model
    if float_weights not in ("float32", "int8"):
        raise ValueError(f"float_weights must be 'float32' or 'int8', not {float_weights!r}")
    _check_quantize(quantize, representative_data, float_weights, target)
    lowered = lower_for_export(model, name, float_weights=float_weights, quantize=quantize,
                               representative_data=representative_data)
    lowered.name = name
    if verify_inputs is not None:  # before any file is written: data the model cannot read
        from .verify import check_inputs
        check_inputs(lowered, verify_inputs, verify_labels,
                     keras_shape=getattr(keras_model, "input_shape", (None,))[1:] or None)
        if verify_labels is not None:
            verify_labels = np.asarray(verify_labels).reshape(-1).astype(np.int64)  # (N, 1), 0.0 / 1.0: classes
    board = check_board(board, target)
    plan = memory_plan(lowered) if board is None else memory_plan(lowered, target=board.arch)
    check_budget(plan, max_ram, max_flash)
    n_samples = SAMPLES_PER_TARGET[target]
    sample = None if verify_inputs is None else verify_inputs[:n_samples]
    labels = None if verify_labels is None else verify_labels[:n_samples]
    extra = {}
    if target == "arduino":
        given = sketch_verify_inputs and sample is not None
        extra["samples"] = _sketch_samples(lowered, plan, board, sample if given else None,
                                           labels if given else None)
    budget = None if board is None else _board_budget(lowered, plan, board, target, extra.get("samples"))
    forced = budget is not None and not budget.fits
    if forced and not force:
        raise BudgetError(f"{name} does not fit: " + budget.text()
                          + "\n  (use force=True / --force to write it anyway)")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        _exporter(target)(lowered, tmp, name, sample_images=sample, sample_labels=labels, **extra)
        result = ExportResult(out_dir=out_dir, name=name, target=target, lowered=lowered, plan=plan,
                              budget=budget, forced=forced)
        if "samples" in extra:
            images, _, source = extra["samples"]
            result.sketch_inputs = (f"classifies {len(images)} embedded inputs ({source})" if images is not None
                                    else f"reads its inputs over Serial ({source})")
        if audio_frontend is not None:
            from ..frontend.audio import export_frontend
            result.notes.append(export_frontend(audio_frontend, lowered, tmp, name, target))
        if float_weights == "int8":
            result.notes.append(_int8_note(lowered))
        if quantize == "int8":
            result.notes.append(_quantize_note(lowered))
        if forced:
            warning = (f"WARNING: {name} does not fit board {board.name}; written anyway because of "
                       "force=True (--force):\n  " + budget.text())
            result.notes.append(warning)
            log.warning(warning)
        if verify_inputs is not None:
            _verify(result, keras_model, verify_inputs, verify_labels, tmp, check_c and find_cc() is not None,
                    compare, predict_c, progress_bar if progress else None)
        result.report_path = report.write(result, tmp)
        check_out_dir(out_dir, overwrite=overwrite, inputs=model_file)  # again: it may have changed
        _write_manifest(tmp)
        _swap_into_place(tmp, out_dir)
        result.report_path = out_dir / result.report_path.name
        return result
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _check_quantize(quantize, representative_data, float_weights, target):
    """The quantize option's errors, before any work."""
    if quantize not in (None, "int8"):
        raise ValueError(f"quantize must be None or 'int8', not {quantize!r}")
    if quantize is None:
        return
    if representative_data is None or len(representative_data) == 0:
        raise ValueError("quantize='int8' needs representative_data: inputs as the Keras model takes them "
                         "(e.g. a few hundred training images) to calibrate the int8 scales")
    if float_weights != "float32":
        raise ValueError("quantize='int8' already makes every weight int8; leave float_weights at 'float32'")
    if target != "c":
        raise ValueError("quantize='int8' exports plain C only (target='c'): the Arduino and Zephyr examples "
                         "feed float inputs and read float scores")


def _quantized_graph(model, name, representative_data):
    from ..ir.blocks import LoweredModel as _LM
    from ..passes.graph_quant import quantize_graph
    if isinstance(model, _LM):
        raise ValueError("quantize='int8' needs the Keras model (or a model file, or a float Graph), not a "
                         "LoweredModel")
    return quantize_graph(model, representative_data, name)


def _quantize_note(lowered):
    """The report's line on quantize="int8"."""
    q = lowered.graph.quant
    inp = ("raw uint8 (the model starts with Rescaling)" if q["input"] is None else
           f"int8, q = clamp(round(x / {q['input'][0]:.6g}) + {q['input'][1]}, -128, 127)")
    return (f"quantize=int8: integer-only C (no floating-point arithmetic): int8 activations calibrated on the "
            f"representative data, per-channel int8 weights, int32 accumulators, TFLite fixed-point requantization. "
            f"Input: {inp}; scores: int32 logits x {q['output_scale']:.6g}. It differs from Keras by that "
            "quantization (see 'reference vs Keras'); the C equals the integer reference bit for bit.")


def _int8_note(lowered):
    """The report's line on float_weights="int8": what it changed (or that it changed nothing)."""
    from ..exporters.graph_c import as_graph_model
    from ..passes.graph_int8 import weight_bytes
    graph = as_graph_model(lowered).graph
    n = sum("weights_int8" in op.params for op in graph.ops)
    if not n:
        return "float_weights=int8: the model has no full-precision conv / dense layer; nothing changed."
    return (f"float_weights=int8: {n} full-precision conv / dense layer(s) store int8 weights with a float32 "
            f"scale per output channel ({weight_bytes(graph)['int8']:,} B); their outputs differ from Keras's "
            "by that rounding (see 'reference vs Keras'); the C equals the reference bit for bit.")


def check_board(board, target):
    """The Board named `board` (None stays None); BoardError if unknown or not a target's board."""
    if board is None:
        return None
    try:
        board = boards.get(board)
    except ValueError as exc:
        raise BoardError(str(exc)) from None
    if target == "zephyr" and board.arch == "avr":
        raise BoardError(f"board {board.name} ({board.mcu}) is an AVR board: Zephyr has no AVR port; use "
                         "--target arduino or c")
    return board


def _sketch_samples(lowered, plan, board, images, labels):
    """What the Arduino example embeds: as many samples as fit the flash the board has left."""
    from ..exporters.arduino import choose_samples
    if board is None:
        return choose_samples(lowered, images, labels)
    left = board.flash_bytes - boards.budget(plan, board, "arduino", lowered.num_classes).flash_needed
    return choose_samples(lowered, images, labels, max_bytes=left)


def _board_budget(lowered, plan, board, target, samples):
    extra = []
    if samples is not None and samples[0] is not None:
        from ..exporters.arduino import samples_bytes
        n = len(samples[0])
        extra.append((f"{n} embedded sample inputs + labels", samples_bytes(lowered, n)))
    return boards.budget(plan, board, target, lowered.num_classes, sketch_flash=extra)


def _c_dir(tmp, target):
    return tmp if target == "c" else tmp / "src"


def progress_bar(label, stream=None):
    """A text progress bar on stderr: returns a callable(done, total)."""
    import sys
    import time
    stream = stream or sys.stderr
    start = time.time()

    def update(done, total):
        width = 30
        filled = int(width * done / max(total, 1))
        stream.write(f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} "
                     f"{time.time() - start:5.1f}s")
        if done >= total:
            stream.write("\n")
        stream.flush()
    return update


def _verify(result, keras_model, x, y, tmp, check_c, compare, predict_c, progress=None):
    from .verify import C_LOGIT_TOL, c_matches
    lowered = result.lowered
    graph = as_graph(lowered)
    quant_graph = graph if graph.quant else None
    if keras_model is not None:
        agreement, ref, kout = compare(keras_model, lowered, x, progress=progress)
        result.agreement = agreement
        if y is not None:
            result.keras_accuracy = float(np.mean(classes_of(kout, class_threshold(lowered)) == y))
    elif quant_graph is not None:
        from ..passes.graph_quant import quantize_input
        ref = graph_reference.run(quant_graph, quantize_input(quant_graph, x))
    else:
        ref = graph_reference.run(lowered, x, progress=progress and progress("reference"))
    result.classes = ref["classes"]
    if y is not None:
        result.accuracy = float(np.mean(ref["classes"] == y))
    if check_c:
        from ..exporters.graph_c import as_graph_model, uses_libm
        if quant_graph is not None:  # integer-only: the C takes the quantized input
            from ..passes.graph_quant import quantize_input
            x = quantize_input(quant_graph, x)
        cls, logits = predict_c(lowered, _c_dir(tmp, result.target), result.name, x)
        result.c_checked = True
        result.c_max_logit_diff = float(np.max(np.abs(logits - ref["logits"]))) if len(x) else 0.0
        result.c_logit_tolerance = C_LOGIT_TOL if uses_libm(as_graph_model(lowered).graph) else None
        result.c_matches_reference = c_matches(cls, logits, ref, result.c_logit_tolerance)
        if not result.c_matches_reference:
            raise RuntimeError(
                f"compiled C differs from the reference executor: {int(np.sum(cls != ref['classes']))} "
                f"classes differ, max logit difference {result.c_max_logit_diff:.3g}"
                + ("" if result.c_logit_tolerance is None else
                   f" (tolerance {result.c_logit_tolerance:g} x (1 + max |logit|))"))


def check_out_dir(out_dir, overwrite=False, inputs=()):
    """The folder to export into (a symbolic link to a folder: that folder); OutputDirError if it is
    an existing file (or a link to one, or a broken link), holds one of `inputs` (the model file), or
    holds anything an earlier export did not write (listed in its MANIFEST) unless `overwrite`."""
    from ..errors import printable
    out_dir = Path(out_dir)
    shown = printable(out_dir)
    if out_dir.name in ("", ".", ".."):  # "." or "/": name the folder itself (its parent holds the swap)
        out_dir = Path(os.path.abspath(out_dir))
    if out_dir.is_symlink():
        if not out_dir.exists():
            raise OutputDirError(f"output folder {shown} is a broken symbolic link")
        out_dir = Path(os.path.realpath(out_dir))
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputDirError(f"output folder {shown} is an existing file; refusing to replace it "
                             "(choose a folder name)")
    real = Path(os.path.realpath(out_dir))
    for item in inputs:
        item = Path(os.path.realpath(os.fsdecode(item)))
        if item == real or real in item.parents:
            raise OutputDirError(f"output folder {shown} holds the input {'folder' if item.is_dir() else 'model'} "
                                 f"{printable(item)}: the export would replace it; choose another folder")
    if overwrite or not out_dir.is_dir():
        return out_dir
    written = _read_manifest(out_dir)
    foreign = []
    for root, dirs, files in os.walk(out_dir):
        for entry in dirs + files:
            rel = Path(root, entry).relative_to(out_dir).as_posix()
            if rel != MANIFEST and rel not in written:
                foreign.append(rel)
        if len(foreign) > 3:
            break
    if foreign:
        raise OutputDirError(
            f"output folder {shown} holds files this export did not write (e.g. "
            f"{printable(foreign[0])!r}); refusing to replace them: choose an empty or new folder, or "
            "pass --overwrite (overwrite=True) to replace the folder and everything in it")
    return out_dir


def _read_manifest(out_dir):
    """Paths (and their parent folders) a previous export listed in out_dir's MANIFEST; empty if none."""
    try:
        lines = (Path(out_dir) / MANIFEST).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return set()
    names = {line for line in lines[1:] if line and not line.startswith("#")}
    return names | {p.as_posix() for n in names for p in Path(n).parents if p != Path(".")}


def _write_manifest(tmp):
    files = sorted(Path(root, f).relative_to(tmp).as_posix() for root, _, fs in os.walk(tmp) for f in fs)
    (Path(tmp) / MANIFEST).write_text("# keras-ebnn export: the files it wrote (a later export replaces "
                                      "this folder only while it holds just these)\n"
                                      + "".join(f + "\n" for f in files), encoding="utf-8")


def _swap_into_place(tmp, out_dir):
    """Replace out_dir by tmp: one atomic rename exchange where the system has it (Linux renameat2),
    else two renames; the previous contents, now under tmp's name, are then removed."""
    if not os.path.lexists(out_dir):
        os.rename(tmp, out_dir)
        return
    if _exchange(tmp, out_dir):
        shutil.rmtree(tmp, ignore_errors=True)
        return
    old = tmp.parent / (tmp.name + "-previous")
    os.rename(out_dir, old)
    try:
        os.rename(tmp, out_dir)
    except BaseException:
        os.rename(old, out_dir)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _exchange(a, b):
    """Atomically swap two paths (renameat2 RENAME_EXCHANGE); False where unsupported."""
    import ctypes
    import sys
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    errno = ctypes.get_errno()
    if errno in (22, 38, 95):  # EINVAL / ENOSYS / EOPNOTSUPP: the file system cannot exchange
        return False
    raise OSError(errno, os.strerror(errno), str(b))
