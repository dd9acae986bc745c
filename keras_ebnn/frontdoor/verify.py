"""Compare a lowered model (reference executor) with the Keras model it came from, and the compiled C
with the reference.

Chain of blocks (keras_ebnn.frontend.lowering, the chain view of a graph): graph_reference.run; the C must give its classes and logits bit
for bit. Graph (exporters/graph_c.py GraphModel): graph_reference.run; bits and integers are exact and so
are the float32 ops (same operations in the same order), so the C logits must be bit-identical too,
except when the graph has an unfused tanh / sigmoid: C computes those with the C library's tanhf /
expf, which may differ from NumPy's by an ulp, so its logits must lie within C_LOGIT_TOL x (1 + max
|reference logit|) of the reference's, with identical classes. Against Keras a graph's float parts
agree to float32 rounding only (their summation order differs from TensorFlow's: keras_ebnn.ir.graph).
"""
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from ..ir import graph_reference
from .._tf import import_tf
from ..ir.blocks import class_threshold, classes_of, spatial

C_LOGIT_TOL = 1e-4  # C vs reference for graphs with tanh / sigmoid: relative to 1 + max |logit|


class InputDataError(ValueError):
    """Verification inputs (or labels) that do not fit the model's input contract: the message says
    what the model reads and what the data holds."""


def check_inputs(lowered, x, y=None, keras_shape=None):
    """Raise InputDataError unless `x` (and `y`) fit what the exported model reads: per input the
    model's shape (Keras's `keras_shape`, or the lowered one; a chain on a flat (n,) or 1-D (L, C)
    input, (1, 1, n) or (1, L, C) in its blocks, also takes (n,) or (L, C)), finite numbers, and, when the model starts with Rescaling (its C reads raw uint8), integers
    in 0..255: the Rescaling is inside the model; the reference would truncate other values and the C
    wrap them, so the data is refused rather than reported as a C mismatch. Labels: one integer per
    input ((N,) or Keras's (N, 1); whole floats such as a binary classifier's 0.0 / 1.0 count)."""
    x = np.asarray(x)
    shape = tuple(int(d) for d in lowered.input.shape)
    shapes = {shape} | ({tuple(keras_shape)} if keras_shape is not None else set())
    shapes |= {s for s in (shape[1:], shape[2:]) if len(shape) == 3 and spatial(s) == shape}
    if x.ndim < 1 or tuple(x.shape[1:]) not in shapes:
        raise InputDataError(
            f"the verification inputs have shape {tuple(x.shape)}: the model takes inputs of shape "
            f"{' or '.join(str(s) for s in sorted(shapes, key=len))} (one row per input)")
    if x.dtype.kind not in "biuf":
        raise InputDataError(f"the verification inputs are {x.dtype}, not numbers")
    if x.size and x.dtype.kind == "f" and not np.all(np.isfinite(x)):
        raise InputDataError("the verification inputs hold NaN or infinite values")
    if np.dtype(lowered.input.dtype) == np.uint8 and x.size:
        lo, hi = float(np.min(x)), float(np.max(x))
        whole = x.dtype.kind != "f" or bool(np.all(x == np.floor(x)))
        if lo < 0 or hi > 255 or not whole:
            raise InputDataError(
                "the verification inputs are out of range for this model: it starts with Rescaling, so "
                "its C reads raw uint8 values (integers 0..255) and rescales them itself, but the data "
                f"holds {'' if whole else 'non-integer '}values from {lo:g} to {hi:g}. Pass the raw "
                "0..255 values (the Rescaling inside the model normalises them).")
    if y is not None:
        y = np.asarray(y)
        whole = y.dtype.kind in "biu" or (y.dtype.kind == "f" and bool(np.all(y == np.floor(y))))
        if y.shape not in ((len(x),), (len(x), 1)) or (y.size and not whole):
            raise InputDataError(f"the verification labels have shape {y.shape} and type {y.dtype}: "
                                 f"one integer class per input ({len(x)}) is needed")


def c_matches(classes, logits, ref, tolerance=None):
    """Compiled C's (classes, logits) equal the reference's: identical classes, and logits identical
    (tolerance None) or within tolerance x (1 + max |reference logit|)."""
    if not np.array_equal(classes, ref["classes"]):
        return False
    if tolerance is None:
        return bool(np.array_equal(logits, ref["logits"]))
    if logits.size == 0:
        return True
    scale = 1.0 + float(np.abs(ref["logits"]).max())
    return bool(np.abs(logits - ref["logits"]).max() <= tolerance * scale)


def keras_outputs(model, lowered, x, batch_size=256, progress=None):
    """Keras's view of every block: (hidden block outputs as bool bits, logits or None, probs or None).

    Hidden bits are the sign (>= 0) of the Keras tensor that feeds the next layer's sign quantizer.
    Logits are the output before the final softmax when Keras exposes it as a tensor; when the final
    QuantDense has activation='softmax', logits is None and probs holds Keras's probabilities.
    """
    tf = import_tf()
    outs = [model.get_layer(b.source_layers[-1]).output for b in lowered.blocks[:-1]]
    last = lowered.blocks[-1].source_layers
    logit_layer = [n for n in last if not _is_softmax_layer(model.get_layer(n))]
    final = model.get_layer(logit_layer[-1])
    logits_are_probs = getattr(getattr(final, "activation", None), "__name__", "") == "softmax"
    outs.append(final.output)
    probe = tf.keras.Model(model.inputs, outs)
    chunks, chunk = [], 2000
    for start in range(0, len(x), chunk):
        part = probe.predict(np.asarray(x[start:start + chunk], dtype=np.float32), batch_size=batch_size,
                             verbose=0)
        chunks.append(part if isinstance(part, list) else [part])
        if progress is not None:
            progress(min(start + chunk, len(x)), len(x))
    res = [np.concatenate([c[i] for c in chunks]) for i in range(len(outs))]
    bits = [np.asarray(r).reshape((len(x),) + tuple(b.out_shape)) >= 0
            for r, b in zip(res[:-1], lowered.blocks[:-1])]
    last_out = np.asarray(res[-1], dtype=np.float32)
    if logits_are_probs:
        return bits, None, last_out
    return bits, last_out, None


def _is_softmax_layer(lay):
    """A Softmax layer or Activation('softmax') (not a QuantDense with a softmax activation)."""
    name = type(lay).__name__
    act = getattr(getattr(lay, "activation", None), "__name__", "")
    return name == "Softmax" or (name == "Activation" and act == "softmax")


def softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@dataclass
class Agreement:
    """How closely the reference executor follows Keras on a set of inputs."""

    samples: int
    class_agreement: float  # fraction of inputs with the same argmax
    class_flips: int
    bit_mismatch: List[float] = field(default_factory=list)  # per hidden block
    bit_mismatch_total: float = 0.0
    max_logit_error: Optional[float] = None  # max |ref - keras| over logits (None if not exposed)
    max_rel_logit_error: Optional[float] = None  # relative to the size of the affine's terms

    def summary(self):
        txt = (f"{self.samples} inputs: classes agree on {self.class_agreement * 100:.2f}% "
               f"({self.class_flips} differ), hidden bit mismatch {self.bit_mismatch_total:.2e}")
        if self.max_logit_error is not None:
            txt += f", max logit error {self.max_logit_error:.2e}"
        return txt


def compare(model, lowered, x, ref=None, progress=None):
    """Run Keras and the reference on `x`; return (Agreement, reference result, keras logits/probs).

    `progress`, if given, is a factory: progress(label) returns a callable(done, total).
    A graph (GraphModel) is compared by `compare_graph`."""
    if hasattr(lowered, "graph"):
        return compare_graph(model, lowered.graph, x, ref)
    bar = (lambda label: None) if progress is None else progress
    ref = graph_reference.run(lowered, x, keep_bits=True, progress=bar("reference")) if ref is None else ref
    kbits, klogits, kprobs = keras_outputs(model, lowered, x, progress=bar("Keras    "))
    mism = [float(np.mean(a != b)) for a, b in zip(kbits, ref["bits"])]
    total_bits = sum(b[0].size for b in kbits)
    total = (sum(m * b[0].size for m, b in zip(mism, kbits)) / total_bits) if total_bits else 0.0
    kcls = classes_of(klogits if klogits is not None else kprobs, class_threshold(lowered))
    flips = int(np.sum(kcls != ref["classes"]))
    agreement = Agreement(samples=len(x), class_agreement=1.0 - flips / max(len(x), 1), class_flips=flips,
                          bit_mismatch=mism, bit_mismatch_total=total)
    if klogits is not None:
        err = np.abs(ref["logits"] - klogits)
        agreement.max_logit_error = float(err.max()) if err.size else 0.0
    return agreement, ref, (klogits if klogits is not None else kprobs)


def compare_graph(model, graph, x, ref=None, batch_size=256):
    """`compare` for a graph (keras_ebnn.ir.graph): classes, logits (when Keras exposes them: no final
    softmax) and, per bits tensor that is the sign of a Keras layer's output, the fraction of bits
    that differ from Keras's signs (graph_reference.run, free-running). Returns (Agreement, reference
    result, Keras logits or probabilities)."""
    tf = import_tf()
    names = sorted({t.keras for t in graph.tensors.values() if t.dtype == "bits" and t.keras})
    probe = tf.keras.Model(model.inputs, [model.get_layer(n).output for n in names] + [model.outputs[0]])
    kv = {n: [] for n in names}
    kout = []
    for start in range(0, len(x), 2000):
        outs = probe.predict(np.asarray(x[start:start + 2000], dtype=np.float32), batch_size=batch_size, verbose=0)
        outs = outs if isinstance(outs, list) else [outs]
        for n, v in zip(names, outs[:-1]):
            kv[n].append(np.asarray(v) >= 0)
        kout.append(np.asarray(outs[-1], dtype=np.float32))
    kv = {n: np.concatenate(v) if v else None for n, v in kv.items()}
    kout = np.concatenate(kout) if kout else np.zeros((0, graph.num_classes), np.float32)
    diff = {}

    def hook(t, v, start):
        if t.dtype == "bits" and t.keras:
            k = kv[t.keras][start:start + len(v)].reshape(v.shape)
            d = diff.setdefault(t.name, [0, 0])
            d[0] += int(np.sum(k != v))
            d[1] += v.size
        return v

    quant = getattr(graph, "quant", None)  # an integer-only graph (keras_ebnn.passes.graph_quant) takes quantized inputs
    if ref is None:
        from ..passes.graph_quant import quantize_input
        ref = graph_reference.run(graph, quantize_input(graph, x) if quant else x, hook=hook)
    kcls = classes_of(kout, class_threshold(graph))
    flips = int(np.sum(kcls != ref["classes"]))
    mism = [d / max(n, 1) for d, n in diff.values()]
    total_bits = sum(n for _, n in diff.values())
    agreement = Agreement(samples=len(x), class_agreement=1.0 - flips / max(len(x), 1), class_flips=flips,
                          bit_mismatch=mism,
                          bit_mismatch_total=(sum(d for d, _ in diff.values()) / total_bits) if total_bits else 0.0)
    if not graph.softmax and len(x):
        real = ref["logits"] * quant["output_scale"] if quant else ref["logits"]  # int32 logits -> real
        agreement.max_logit_error = float(np.abs(real - kout).max())
    return agreement, ref, kout
