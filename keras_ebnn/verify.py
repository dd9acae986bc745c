"""Compare a lowered model (reference executor) with the Keras model it came from."""
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from . import reference
from ._tf import import_tf


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

    `progress`, if given, is a factory: progress(label) returns a callable(done, total)."""
    bar = (lambda label: None) if progress is None else progress
    ref = reference.run(lowered, x, progress=bar("reference")) if ref is None else ref
    kbits, klogits, kprobs = keras_outputs(model, lowered, x, progress=bar("Keras    "))
    mism = [float(np.mean(a != b)) for a, b in zip(kbits, ref["bits"])]
    total_bits = sum(b[0].size for b in kbits)
    total = (sum(m * b[0].size for m, b in zip(mism, kbits)) / total_bits) if total_bits else 0.0
    kcls = np.argmax(klogits if klogits is not None else kprobs, axis=1)
    flips = int(np.sum(kcls != ref["classes"]))
    agreement = Agreement(samples=len(x), class_agreement=1.0 - flips / max(len(x), 1), class_flips=flips,
                          bit_mismatch=mism, bit_mismatch_total=total)
    if klogits is not None:
        err = np.abs(ref["logits"] - klogits)
        agreement.max_logit_error = float(err.max()) if err.size else 0.0
    return agreement, ref, (klogits if klogits is not None else kprobs)
