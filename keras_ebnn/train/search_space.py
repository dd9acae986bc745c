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

  and the recipe knobs of `keras_ebnn.train.training.train` that mattered in the 67-run training record
  (examples/models/README.md): `lr` (peak of the cosine schedule; 1e-2 and more helped the small
  models, 3e-3 the Uno one), `shift` (random +-1 px shifts: +0.4 val points for uno_mnist, -0.4 for
  m15), `output_scale` (+2 points without a hidden dense layer, ~0 with one) and `bn_reestimate`
  (exact BN statistics after training: never hurt, +0.3 to +6 points; fixed on by default).
  `epochs` is None by default: every trial trains for the `epochs` given to `search()`; give it a
  distribution to search it too. `hflip` (random left-right flips, for data without a handedness such
  as Fashion-MNIST) is None by default (off, not suggested): give it Choice((False, True)) to search it.

Every layer is one keras-ebnn lowers (binary weights clipped to [-1, 1], sign inputs on hidden layers,
BN momentum 0.9 as in keras_ebnn.train.models), so every candidate exports to exact C.

Distributions: `Choice(values)` (categorical), `LogUniform(low, high)` (floats, log scale),
`IntRange(low, high, step)`. Extend or narrow the space with dataclasses.replace, e.g.

    from dataclasses import replace
    from keras_ebnn.train.search_space import DEFAULT_SPACE, Choice
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

from .._tf import import_larq
from .architectures import cifar_vgg, with_output_scale


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


def recipe_text(params):
    """The training knobs of a candidate as text, e.g. 'lr 3.0e-03 shift 1 flip scale'."""
    recipe = f"lr {float(params['lr']):.1e}"
    if params.get("shift"):
        recipe += f" shift {params['shift']}"
    if params.get("hflip"):
        recipe += " flip"
    if params.get("output_scale"):
        recipe += " scale"
    if not params.get("bn_reestimate", True):
        recipe += " no-bn-re-est"
    if params.get("epochs"):
        recipe += f" {params['epochs']} ep"
    return recipe


PER_BLOCK = ("filters", "pool", "padding")  # conv<i>_<what>: suggested per binary conv block


def suggest_genome(space, trial, count_field, prefix, per_index, count):
    """Ask `trial` for every field of the dataclass `space` (skipping `count_field` and fields set to
    None); each field of `per_index` ("<prefix>_<what>") is asked once per index as "<prefix><i>_<what>",
    i = 1 .. count (the fixed-length genome)."""
    params = {}
    for f in fields(space):
        dist = getattr(space, f.name)
        if f.name == count_field or dist is None:
            continue
        if f.name in per_index:
            what = f.name[len(prefix) + 1:]
            for i in range(1, count + 1):
                params[f"{prefix}{i}_{what}"] = dist.suggest(trial, f"{prefix}{i}_{what}")
            continue
        params[f.name] = dist.suggest(trial, f.name)
    return params


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
        return suggest_genome(self, trial, "max_conv_blocks", "conv",
                              [f"conv_{w}" for w in PER_BLOCK], self.max_conv_blocks)

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
        return " > ".join(parts) + "; " + recipe_text(params)

    def parse(self, text):
        """The candidate dict of a `describe` text (its inverse): e.g. parse('c5x5/2:32 p2 > d128; lr
        2.1e-02 scale') builds the same network and recipe as the trial it was printed from (the
        learning rate to the 2 digits describe prints). Genes describe does not show take a default:
        the unused per-block genes of this space's first choices, bn_reestimate True. ValueError on a
        text describe cannot print."""
        import re
        arch, _, recipe = str(text).partition(";")
        parts = [p.strip() for p in arch.split(">")]
        conv = re.compile(r"^c(\d+)x\1(/(\d+))?(s?):(\d+)( p(\d+))?$")
        params = {"conv_blocks": 0, "dense_layers": 0, "conv_kernel": 3, "dense_units": 32}
        convs, denses = [], []
        for i, part in enumerate(parts):
            m = conv.match(part)
            d = re.match(r"^d(\d+)$", part)
            if i == 0:
                if m is None or m.group(4):
                    raise ValueError(f"{text!r}: the first layer must be an input conv like 'c5x5/2:32 p2', not {part!r}")
                params.update(input_kernel=int(m.group(1)), input_stride=int(m.group(3) or 1),
                              input_filters=int(m.group(5)), input_pool=int(m.group(7) or 0))
            elif m is not None and not denses and not m.group(2):
                convs.append(m)
            elif d is not None:
                denses.append(int(d.group(1)))
            else:
                raise ValueError(f"{text!r}: cannot read layer {part!r} (binary convs 'c3x3[s]:F[ pP]', then dense 'dU')")
        if len({int(m.group(1)) for m in convs}) > 1 or len(set(denses)) > 1:
            raise ValueError(f"{text!r}: this space has one conv_kernel and one dense_units for all layers")
        if len(convs) > self.max_conv_blocks:
            raise ValueError(f"{text!r}: {len(convs)} binary convs exceed max_conv_blocks={self.max_conv_blocks}")
        first = lambda dist, fallback: dist.values[0] if isinstance(dist, Choice) else fallback  # noqa: E731
        for i in range(1, self.max_conv_blocks + 1):
            params.update({f"conv{i}_filters": first(self.conv_filters, 16), f"conv{i}_pool": first(self.conv_pool, 0),
                           f"conv{i}_padding": first(self.conv_padding, "valid")})
        for i, m in enumerate(convs, 1):
            params.update({f"conv{i}_filters": int(m.group(5)), f"conv{i}_pool": int(m.group(7) or 0),
                           f"conv{i}_padding": "same" if m.group(4) else "valid"})
            params["conv_kernel"] = int(m.group(1))
        params["conv_blocks"] = len(convs)
        if denses:
            params.update(dense_layers=len(denses), dense_units=denses[0])
        words = recipe.split()
        lr = re.search(r"\blr ([0-9.]+e[+-]?\d+)", recipe)
        if lr is None:
            raise ValueError(f"{text!r}: no learning rate ('; lr 2.1e-02 ...')")
        shift = re.search(r"\bshift (\d+)", recipe)
        epochs = re.search(r"\b(\d+) ep\b", recipe)
        params.update(lr=float(lr.group(1)), shift=int(shift.group(1)) if shift else 0,
                      output_scale="scale" in words, hflip="flip" in words or "hflip" in words,
                      bn_reestimate="no-bn-re-est" not in words)
        if epochs:
            params["epochs"] = int(epochs.group(1))
        return params

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


@dataclass(frozen=True)
class CifarVGGSpace:
    """The binary VGG chains of keras_ebnn.train.models.cifar_vgg for 32x32x3 images (CIFAR-10):

    uint8 input -> Rescaling(1/255)
    -> stem   QuantConv2D(stem_filters, stem_kernel, 'same') on the raw pixels [-> MaxPool(stem_pool)] -> BN
    -> stages x (stage<i>_convs x binary conv QuantConv2D(stage<i>_filters, 3, 'same') -> BN,
                 the last one pooled 2x2 before its BN)                           (i = 1 .. stages)
    -> Flatten -> dense_layers x (QuantDense(dense_units) -> BN) -> QuantDense(classes) -> BN -> softmax

    with the recipe knobs of keras_ebnn.train.training.train: lr, shift (random crop: shifts of up to that many
    pixels), hflip (random left-right flips, right for CIFAR's photos), output_scale, bn_reestimate.
    Fixed-length genome as SearchSpace: stage<i>_filters / _convs are suggested for every i up to
    `max_stages`. Each stage halves the map (32 -> 16 -> 8 -> 4 -> 2, one more with stem_pool), so every
    candidate's geometry works. Everything lowers to the chain exporter (integer stem, XNOR-popcount
    convs): exact C."""
    stem_filters: object = Choice((16, 24, 32, 48, 64))
    stem_kernel: object = Choice((3,))
    stem_pool: object = Choice((0, 2))
    stages: object = Choice((2, 3, 4))
    max_stages: int = 4
    stage_filters: object = Choice((32, 48, 64, 96, 128, 192, 256))  # each stage<i>_filters
    stage_convs: object = Choice((1, 2))  # each stage<i>_convs
    dense_layers: object = Choice((0, 1))
    dense_units: object = Choice((64, 128, 256))
    output_scale: object = Choice((False, True))
    lr: object = LogUniform(1e-3, 1e-2)
    shift: object = Choice((0, 2, 4))
    hflip: object = Choice((False, True))
    bn_reestimate: object = Choice((True,))
    epochs: Optional[object] = None

    def suggest(self, trial):
        return suggest_genome(self, trial, "max_stages", "stage", ("stage_filters", "stage_convs"), self.max_stages)

    def stages_of(self, params):
        """((filters, ...) per stage) of `params`: the `stages` argument of models.cifar_vgg."""
        n = int(params["stages"])
        if n > self.max_stages:
            raise ValueError(f"stages={n} exceeds max_stages={self.max_stages}")
        return tuple((int(params[f"stage{i}_filters"]),) * int(params[f"stage{i}_convs"]) for i in range(1, n + 1))

    def describe(self, params):
        """e.g. 'c3x3s:32 p2 > [64] p2 > [128,128] p2 > d128; lr 3.0e-03 shift 2 flip scale'."""
        k = int(params["stem_kernel"])
        parts = [f"c{k}x{k}s:{int(params['stem_filters'])}" + (f" p{int(params['stem_pool'])}" if int(params["stem_pool"]) else "")]
        parts += ["[" + ",".join(str(f) for f in stage) + "] p2" for stage in self.stages_of(params)]
        parts += [f"d{int(params['dense_units'])}"] * int(params["dense_layers"])
        return " > ".join(parts) + "; " + recipe_text(params)

    def build(self, params, classes=10, input_shape=(32, 32, 3), name="candidate"):
        """The uncompiled Keras model of `params` (random weights); ValueError when the maps shrink
        below 1x1 (an input smaller than 32x32 with many stages)."""
        stages = self.stages_of(params)
        halvings = len(stages) + (1 if int(params["stem_pool"]) else 0)
        if min(input_shape[:2]) >> halvings < 1:
            raise ValueError(f"{self.describe(params)}: {halvings} 2x2 poolings do not fit a "
                             f"{input_shape[0]}x{input_shape[1]} input")
        dense = (int(params["dense_units"]),) * int(params["dense_layers"])
        model = cifar_vgg(int(params["stem_filters"]), stages, dense=dense, classes=classes,
                          input_shape=tuple(input_shape), stem_kernel=int(params["stem_kernel"]),
                          stem_pool=int(params["stem_pool"]), name=name)
        return with_output_scale(model) if params.get("output_scale") else model


CIFAR10_SPACE = CifarVGGSpace()
SPACES = {"default": DEFAULT_SPACE, "cifar10": CIFAR10_SPACE}  # keras-ebnn-search --space NAME
