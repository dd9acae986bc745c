"""The search space of `keras_ebnn.search`: a small, documented description a user can extend.

A candidate is a plain dict of parameter values (what Optuna stores for a trial). `SearchSpace` holds
one *distribution* per parameter and two methods:

  suggest(trial) -> dict     asks an Optuna trial for every parameter (fixed-length genome, see below)
  build(params, ...) -> Keras model (uncompiled, random weights) in the family keras-ebnn lowers:

    uint8 input -> Rescaling(1/255)
    -> input conv   QuantConv2D(input_filters, input_kernel, strides=input_stride) [-> MaxPool(input_pool)] -> BN
    -> conv_blocks x binary conv  QuantConv2D(conv<i>_filters, conv_kernel, padding=conv<i>_padding)
                                  [-> MaxPool(conv<i>_pool)] -> BN          (i = 1 .. conv_blocks)
    -> Flatten -> dense_layers x (QuantDense(dense_units) -> BN)
    -> QuantDense(classes) -> BN (learns a per-class scale when output_scale) -> softmax

  and the recipe knobs of `keras_ebnn.training.train` that mattered in the 67-run training record
  (examples/models/README.md): `lr` (peak of the cosine schedule; 1e-2 and more helped the small
  models, 3e-3 the Uno one), `shift` (random +-1 px shifts: +0.4 val points for uno_mnist, -0.4 for
  m15), `output_scale` (+2 points without a hidden dense layer, ~0 with one) and `bn_reestimate`
  (exact BN statistics after training: never hurt, +0.3 to +6 points; fixed on by default).
  `epochs` is None by default: every trial trains for the `epochs` given to `search()`; give it a
  distribution to search it too. `hflip` (random left-right flips, for data without a handedness such
  as Fashion-MNIST) is None by default (off, not suggested): give it Choice((False, True)) to search it.

Every layer is one keras-ebnn lowers (binary weights clipped to [-1, 1], sign inputs on hidden layers,
BN momentum 0.9 as in keras_ebnn.models), so every candidate exports to exact C.

Distributions: `Choice(values)` (categorical), `LogUniform(low, high)` (floats, log scale),
`IntRange(low, high, step)`. Extend or narrow the space with dataclasses.replace, e.g.

    from dataclasses import replace
    from keras_ebnn.search_space import DEFAULT_SPACE, Choice
    space = replace(DEFAULT_SPACE, input_filters=Choice((32, 40, 48)), conv_blocks=Choice((2, 3)),
                    max_conv_blocks=3)

or subclass SearchSpace and override `build` (and `suggest`) for another family.

Fixed-length genome: the per-block parameters conv<i>_filters / _pool / _padding are suggested for
every i up to `max_conv_blocks` even when conv_blocks is smaller (the extra ones are ignored by
`build`), so Optuna's NSGA-II sampler sees one fixed search space and can cross every parameter over
(it samples parameters outside the common space at random). `describe(params)` names only the
layers that are built.
"""
from dataclasses import dataclass, fields
from typing import Optional, Tuple

from ._tf import import_larq


@dataclass(frozen=True)
class Choice:
    """One of `values` (categorical: Optuna stores the value itself)."""
    values: Tuple

    def suggest(self, trial, name):
        return trial.suggest_categorical(name, list(self.values))


@dataclass(frozen=True)
class LogUniform:
    """A float in [low, high], sampled on a log scale."""
    low: float
    high: float

    def suggest(self, trial, name):
        return trial.suggest_float(name, self.low, self.high, log=True)


@dataclass(frozen=True)
class IntRange:
    """An integer in [low, high] (inclusive) in steps of `step`."""
    low: int
    high: int
    step: int = 1

    def suggest(self, trial, name):
        return trial.suggest_int(name, self.low, self.high, step=self.step)


PER_BLOCK = ("filters", "pool", "padding")  # conv<i>_<what>: suggested per binary conv block


@dataclass(frozen=True)
class SearchSpace:
    """One distribution per parameter (see the module docstring for what each one builds)."""
    input_filters: object = Choice((8, 16, 24, 32, 40))
    input_kernel: object = Choice((3, 5))
    input_stride: object = Choice((1, 2))
    input_pool: object = Choice((0, 2))  # 0: no pooling, else pool size (= stride)
    conv_blocks: object = Choice((0, 1, 2))  # binary conv blocks after the input conv
    max_conv_blocks: int = 2  # how many conv<i>_* parameter sets are suggested (>= max of conv_blocks)
    conv_kernel: object = Choice((3,))
    conv_filters: object = Choice((16, 24, 32, 48, 64))  # distribution of each conv<i>_filters
    conv_pool: object = Choice((0, 2))  # each conv<i>_pool
    conv_padding: object = Choice(("valid", "same"))  # each conv<i>_padding
    dense_layers: object = Choice((0, 1))  # hidden binary dense layers
    dense_units: object = Choice((32, 64, 128))
    output_scale: object = Choice((False, True))
    lr: object = LogUniform(1e-3, 3e-2)  # peak learning rate of the cosine schedule
    shift: object = Choice((0, 1))  # random-shift augmentation, pixels
    hflip: Optional[object] = None  # random left-right flips (e.g. Choice((False, True)) for Fashion); None: off
    bn_reestimate: object = Choice((True,))
    epochs: Optional[object] = None  # None: the `epochs` given to search()

    def suggest(self, trial):
        """Ask `trial` for every parameter; returns the candidate dict."""
        params = {}
        for f in fields(self):
            dist = getattr(self, f.name)
            if f.name == "max_conv_blocks" or dist is None:
                continue
            if f.name.startswith("conv_") and f.name != "conv_blocks" and f.name != "conv_kernel":
                what = f.name[len("conv_"):]
                for i in range(1, self.max_conv_blocks + 1):
                    params[f"conv{i}_{what}"] = dist.suggest(trial, f"conv{i}_{what}")
                continue
            params[f.name] = dist.suggest(trial, f.name)
        return params

    def layers(self, params):
        """The architecture of `params` as a list of (kind, settings) tuples, input to output
        (without the output layer): ("input_conv", filters, kernel, stride, pool),
        ("conv", filters, kernel, padding, pool), ("dense", units)."""
        if int(params["conv_blocks"]) > self.max_conv_blocks:
            raise ValueError(f"conv_blocks={params['conv_blocks']} exceeds max_conv_blocks={self.max_conv_blocks}: "
                             "raise max_conv_blocks with the conv_blocks choices")
        out = [("input_conv", int(params["input_filters"]), int(params["input_kernel"]),
                int(params["input_stride"]), int(params["input_pool"]))]
        for i in range(1, int(params["conv_blocks"]) + 1):
            out.append(("conv", int(params[f"conv{i}_filters"]), int(params["conv_kernel"]),
                        params[f"conv{i}_padding"], int(params[f"conv{i}_pool"])))
        for _ in range(int(params["dense_layers"])):
            out.append(("dense", int(params["dense_units"])))
        return out

    def describe(self, params):
        """A short text of the architecture and recipe, e.g.
        'c3x3/2:16 > c3x3:24 p2 > d128; lr 3.0e-03 shift 1 scale' (no '|': it goes into Markdown tables)."""
        parts = []
        for layer in self.layers(params):
            if layer[0] == "input_conv":
                _, f, k, s, p = layer
                parts.append(f"c{k}x{k}" + (f"/{s}" if s > 1 else "") + f":{f}" + (f" p{p}" if p else ""))
            elif layer[0] == "conv":
                _, f, k, pad, p = layer
                parts.append(f"c{k}x{k}{'s' if pad == 'same' else ''}:{f}" + (f" p{p}" if p else ""))
            else:
                parts.append(f"d{layer[1]}")
        recipe = f"lr {float(params['lr']):.1e}"
        if params.get("shift"):
            recipe += f" shift {params['shift']}"
        if params.get("output_scale"):
            recipe += " scale"
        if params.get("hflip"):
            recipe += " hflip"
        if not params.get("bn_reestimate", True):
            recipe += " no-bn-re-est"
        if params.get("epochs"):
            recipe += f" {params['epochs']} ep"
        return " > ".join(parts) + "; " + recipe

    def build(self, params, classes=10, input_shape=(28, 28, 1), name="candidate"):
        """The uncompiled Keras model of `params` (random weights). Raises ValueError when the
        geometry does not work (a feature map smaller than a kernel or pooling window)."""
        tf, lq = import_larq()
        L = tf.keras.layers
        sign = dict(kernel_quantizer="ste_sign", kernel_constraint="weight_clip", use_bias=False)
        hidden = dict(input_quantizer="ste_sign", **sign)

        def bn(scale=False):
            return L.BatchNormalization(momentum=0.9, scale=scale)

        h, w = input_shape[:2]
        layers = [L.InputLayer(input_shape), L.Rescaling(1 / 255.0)]
        for layer in self.layers(params):
            if layer[0] == "dense":
                if not any(isinstance(x, L.Flatten) for x in layers):
                    layers.append(L.Flatten())
                layers += [lq.layers.QuantDense(layer[1], **hidden), bn()]
                continue
            if layer[0] == "input_conv":
                _, f, k, s, p = layer
                padding, kw = "valid", sign
            else:
                _, f, k, padding, p = layer
                s, kw = 1, hidden
            if padding == "valid":
                h, w = (h - k) // s + 1, (w - k) // s + 1
            else:
                h, w = -(-h // s), -(-w // s)
            if h < 1 or w < 1:
                raise ValueError(f"{self.describe(params)}: a {k}x{k} conv does not fit its input")
            layers.append(lq.layers.QuantConv2D(f, k, strides=s, padding=padding, **kw))
            if p:
                if h < p or w < p:
                    raise ValueError(f"{self.describe(params)}: a {p}x{p} pooling window does not fit "
                                     f"its {h}x{w} input")
                h, w = h // p, w // p
                layers.append(L.MaxPooling2D(p))
            layers.append(bn())
        if not any(isinstance(x, L.Flatten) for x in layers):
            layers.append(L.Flatten())
        layers += [lq.layers.QuantDense(classes, **hidden), bn(scale=bool(params.get("output_scale"))),
                   L.Activation("softmax")]
        return tf.keras.Sequential(layers, name=name)


DEFAULT_SPACE = SearchSpace()
