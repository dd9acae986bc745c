"""`export()`: the one front door used by the callback, the CLI and the demo.

lower (`lower_for_export`: the chain of fused blocks when the model is one, else the graph IR) -> plan memory (and check budgets: --max-ram/--max-flash, and the board's flash and SRAM,
see boards.py) -> write the target's files into a temporary folder -> verify (reference vs Keras,
compiled C vs reference) -> write the report -> swap the folder into place.
Nothing is left half-written: on any error the temporary folder is removed and `out_dir` is untouched.
"""
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from . import boards, reference, report
from .blocks import LoweredModel
from .lowering import lower

TARGETS = ("c", "zephyr", "arduino")
SAMPLES_PER_TARGET = {"c": 0, "arduino": 8, "zephyr": 32}  # test inputs embedded in the example
log = logging.getLogger("keras_ebnn")


class BudgetError(RuntimeError):
    """The model does not fit the RAM or flash budget; the message says by how much and why."""


class BoardError(ValueError):
    """Unknown board, or a board the target does not run on (the message lists the known boards)."""


@dataclass
class ExportResult:
    out_dir: Path
    name: str
    target: str
    lowered: LoweredModel  # or exporters/graph_c.py GraphModel (a model the chain lowering refuses)
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
        what = f"graph of {len(self.plan['ops'])} ops" if self.plan.get("graph") else f"{len(self.plan['blocks'])} blocks"
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
        from .exporters.c import export_c
        return lambda lowered, out, name, **kw: export_c(lowered, out, name)
    if target == "arduino":
        from .exporters.arduino import export_arduino
        return export_arduino
    if target == "zephyr":
        from .exporters.zephyr import export_zephyr
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
            unit = "op" if plan.get("graph") else "block"
            top = ", ".join(f"{unit} {b['index']} {b['kind']} {b[key]} B" for b in blocks)
            problems.append(f"{what} {total} B exceeds the budget of {limit} B by {total - limit} B "
                            f"(largest: {top})")
    if problems:
        raise BudgetError("; ".join(problems))


def lower_for_export(model, name="model", float_weights="float32", quantize=None, representative_data=None):
    """What `export()` exports: the chain of fused blocks (`keras_ebnn.lowering.lower`) when the model
    is one -- the shipped models' C is unchanged by the graph back end --, else, when the chain lowering
    refuses it, the graph IR (`keras_ebnn.graph.lower_graph`) wrapped as exporters/graph_c.py GraphModel.
    A model neither takes raises the graph lowering's UnsupportedModelError (it names the layer; the
    graph lowering supports a superset of the chain's layers). A LoweredModel, Graph or GraphModel
    passes through (a Graph is wrapped). float_weights="int8": the graph's full-precision conv /
    depthwise / dense weights as int8 with a float32 scale per output channel (keras_ebnn.graph_int8;
    a chain has no such layer). quantize="int8": the integer-only graph of keras_ebnn.graph_quant,
    calibrated on representative_data (always a graph, even for a chain model)."""
    from .errors import UnsupportedModelError
    from .exporters.graph_c import GraphModel
    from .graph import Graph, lower_graph
    if quantize == "int8":  # an integer-only graph passes through, anything else is quantized
        graph = model.graph if isinstance(model, GraphModel) else model
        if isinstance(graph, Graph) and graph.quant:
            return GraphModel(graph)
        return GraphModel(_quantized_graph(graph, name, representative_data))
    if isinstance(model, (LoweredModel, GraphModel)):
        return model
    if isinstance(model, Graph):
        return GraphModel(model)
    try:
        return lower(model, name)
    except UnsupportedModelError:
        pass
    return GraphModel(lower_graph(model, name, float_weights=float_weights))


def export(model, out_dir, name="model", target="c", verify_inputs=None, verify_labels=None,
           max_ram=None, max_flash=None, keras_model=None, check_c=True, progress=False, board=None,
           force=False, sketch_verify_inputs=True, float_weights="float32", quantize=None, representative_data=None):
    """Export `model` (Keras model, model file, LoweredModel, or a keras_ebnn.graph Graph) to `out_dir`;
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
    for them; keras_ebnn.graph_int8). The outputs then differ from Keras's by that rounding: the
    report's "reference vs Keras" line measures it; C still equals the reference bit for bit.
    quantize: None (default: the exact float32 graph) or "int8": integer-only C (keras_ebnn.graph_quant:
    int8 activations calibrated on `representative_data` (inputs as Keras takes them), per-channel int8
    weights, int32 accumulators, TFLite's fixed-point requantization; no floating-point arithmetic). The C
    then takes the quantized input (NAME.h: NAME_INPUT_SCALE / NAME_INPUT_ZERO_POINT, or raw uint8 when the
    model starts with Rescaling) and returns int32 scores (NAME_OUTPUT_SCALE); verify_inputs stay float
    (the export quantizes them); the report states the agreement with Keras, C equals the reference bit for bit.
    Raises UnsupportedModelError, BudgetError, BoardError (unknown board, Zephyr on AVR), or
    RuntimeError (C mismatch).
    """
    from .exporters.c import check_name, memory_plan
    from .host import find_cc, predict_c
    from .verify import compare

    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    check_name(name)  # before any work: a name the C files cannot take (exporters/c.py)
    from .exporters.graph_c import GraphModel
    from .graph import Graph
    if not isinstance(model, (LoweredModel, GraphModel, Graph)):  # a Keras model or a model file
        keras_model = model if keras_model is None else keras_model
    if float_weights not in ("float32", "int8"):
        raise ValueError(f"float_weights must be 'float32' or 'int8', not {float_weights!r}")
    _check_quantize(quantize, representative_data, float_weights, target)
    lowered = lower_for_export(model, name, float_weights=float_weights, quantize=quantize,
                               representative_data=representative_data)
    lowered.name = name
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
    out_dir = Path(out_dir)
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
    from .blocks import LoweredModel as _LM
    from .graph_quant import quantize_graph
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
    from .graph_int8 import weight_bytes
    graph = getattr(lowered, "graph", None)
    n = 0 if graph is None else sum("weights_int8" in op.params for op in graph.ops)
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
    from .exporters.arduino import choose_samples
    if board is None:
        return choose_samples(lowered, images, labels)
    left = board.flash_bytes - boards.budget(plan, board, "arduino", lowered.num_classes).flash_needed
    return choose_samples(lowered, images, labels, max_bytes=left)


def _board_budget(lowered, plan, board, target, samples):
    extra = []
    if samples is not None and samples[0] is not None:
        from .exporters.arduino import samples_bytes
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
    graph = getattr(lowered, "graph", None)
    if keras_model is not None:
        agreement, ref, kout = compare(keras_model, lowered, x, progress=progress)
        result.agreement = agreement
        if y is not None:
            result.keras_accuracy = float(np.mean(np.argmax(kout, axis=1) == y))
    elif graph is not None:
        from . import graph_reference
        from .graph_quant import quantize_input
        ref = graph_reference.run(graph, quantize_input(graph, x) if graph.quant else x)
    else:
        ref = reference.run(lowered, x, keep_bits=False, progress=progress and progress("reference"))
    result.classes = ref["classes"]
    if y is not None:
        result.accuracy = float(np.mean(ref["classes"] == y))
    if check_c:
        from .exporters.graph_c import uses_libm
        if graph is not None and graph.quant:  # integer-only: the C takes the quantized input
            from .graph_quant import quantize_input
            x = quantize_input(graph, x)
        cls, logits = predict_c(lowered, _c_dir(tmp, result.target), result.name, x)
        result.c_checked = True
        result.c_max_logit_diff = float(np.max(np.abs(logits - ref["logits"]))) if len(x) else 0.0
        result.c_logit_tolerance = C_LOGIT_TOL if graph is not None and uses_libm(graph) else None
        result.c_matches_reference = c_matches(cls, logits, ref, result.c_logit_tolerance)
        if not result.c_matches_reference:
            raise RuntimeError(
                f"compiled C differs from the reference executor: {int(np.sum(cls != ref['classes']))} "
                f"classes differ, max logit difference {result.c_max_logit_diff:.3g}"
                + ("" if result.c_logit_tolerance is None else
                   f" (tolerance {result.c_logit_tolerance:g} x (1 + max |logit|))"))


def _swap_into_place(tmp, out_dir):
    """Replace out_dir by tmp with renames only (the old folder is removed after the swap)."""
    old = None
    if out_dir.exists():
        old = out_dir.parent / f".{out_dir.name}.old-{tmp.name.rsplit('-', 1)[-1]}"
        out_dir.rename(old)
    try:
        tmp.rename(out_dir)
    except BaseException:
        if old is not None:
            old.rename(out_dir)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
