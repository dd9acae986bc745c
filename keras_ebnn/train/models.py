"""Preset eBNN architectures for 28x28x1 uint8 inputs (MNIST, Fashion-MNIST) and 32x32x3 (CIFAR-10).

Every preset starts with Rescaling(1/255) so that the exported C takes raw uint8 pixels and its
first layer runs in integers, and uses only layers keras-ebnn lowers. Memory figures are those of
`keras_ebnn.summary(model)` (activation arena, model data); BENCHMARKS.md has the measured ones.
"""
from .._tf import import_larq
from .architectures import SIGN, _bn, _conv_block, _head, cifar_vgg, with_output_scale  # noqa: F401 (models.cifar_vgg, models.with_output_scale)



def _model(tf, layers, name):
    L = tf.keras.layers
    return tf.keras.Sequential([L.InputLayer((28, 28, 1)), L.Rescaling(1 / 255.0)] + layers, name=name)


def paper_mnist(classes=10):
    """The eBNN paper's MNIST network (McDanel, Teerapittayanon, Kung 2017): uint8 input -> binary conv
    3x3 stride 2 valid (10 filters) -> max-pool 3x3 stride 2 -> BN -> sign -> binary dense 360->classes
    -> BN -> softmax. 524 B of binary weights, ~0.7 KB model data, 52 B activation RAM, 19 k MACs:
    the smallest preset, for the tiniest parts. Training is unstable: BN re-estimation and a learnt
    output scale matter most here (shipped model: 40 epochs, lr 1e-1, --output-scale, 94.2% test;
    15 epochs at lr 1e-3 without the scale: 91.0%)."""
    tf, lq = import_larq()
    L = tf.keras.layers
    layers = [lq.layers.QuantConv2D(10, 3, strides=2, **SIGN), L.MaxPooling2D(3, strides=2), _bn(tf)]
    return _model(tf, layers + _head(tf, lq, classes=classes), "paper_mnist")


def tiny_mnist(classes=10):
    """conv 3x3 (16) -> pool 2 -> conv 3x3 (32) -> pool 2 -> binary dense 800->classes (+ BN each):
    ~1.6 KB of binary weights, ~2 KB model data, ~0.4 KB activation RAM, 0.65 M MACs. ~98% MNIST with
    a learnt output scale (shipped: 30 epochs, lr 1e-2, --output-scale, 98.2% test)."""
    tf, lq = import_larq()
    layers = _conv_block(tf, lq, 16, first=True) + _conv_block(tf, lq, 32)
    return _model(tf, layers + _head(tf, lq, classes=classes), "tiny_mnist")


def uno_mnist(classes=10):
    """For an Arduino Uno (ATmega328P, 16 MHz: 2 KB SRAM that must also hold the 784-byte uint8 input
    and the stack; 32 KB flash), sized for speed: conv 3x3 stride 2 (16 filters, no pooling) -> BN ->
    conv 3x3 (24) -> pool 2 -> BN -> binary dense 600->128 -> BN -> dense 128->10 -> BN -> softmax.

    The stride-2 first layer computes 13x13 positions instead of the 26x26 a stride-1 conv + pool 2
    needs: the integer first layer is the most expensive per MAC on an 8-bit CPU. Budget
    (keras_ebnn.summary): 24 k integer MACs, 0.35 M XNOR-popcount terms in the second conv, 78 k in the
    dense layers; activation arena 456 B (13x13x16 bits, 5x5x24 bits, 40 B conv scratch); model data
    ~11 KB flash, 9.7 KB of it the hidden dense layer, which costs flash (the cheap resource on the Uno)
    and few cycles. Chosen among four candidates on validation accuracy (examples/models/README.md);
    cycles and accuracy measured by bench/ are in BENCHMARKS.md."""
    tf, lq = import_larq()
    layers = [lq.layers.QuantConv2D(16, 3, strides=2, **SIGN), _bn(tf)] + _conv_block(tf, lq, 24)
    return _model(tf, layers + _head(tf, lq, hidden=(128,), classes=classes), "uno_mnist")


def demo_mnist(classes=10):
    """conv 3x3 (32) -> pool 2 -> conv 3x3 (64) -> pool 2 -> binary dense 1600->classes (+ BN each):
    ~4.3 KB of binary weights, ~0.9 KB activation RAM, 2.4 M MACs. ~97.5% MNIST."""
    tf, lq = import_larq()
    layers = _conv_block(tf, lq, 32, first=True) + _conv_block(tf, lq, 64)
    return _model(tf, layers + _head(tf, lq, classes=classes), "demo_mnist")


def m15_mnist(classes=10):
    """Aimed at a total footprint of <= 15 KB (flash incl. the runtime code + RAM incl. stack; the
    784-byte input excluded): conv 3x3 (32) -> pool 2 -> conv 3x3 (64) -> pool 2 -> conv 3x3 same (48)
    -> pool 2 -> binary dense 192->64 -> dense 64->10 (each followed by BN).

    Budget: 7.4 KB binary weights, 8.2 KB model data; activation buffers 884 B (13x13x32 and 5x5x64
    bits). Total on Cortex-M3 as measured by bench/accuracy_memory.py: 13,468 B (BENCHMARKS.md). A
    40-filter third conv (~0.9 KB smaller) lost ~0.2-0.4 points on validation in two runs, so it was
    not adopted. 3.1 M MACs.
    Goal >= 98.5% MNIST test."""
    tf, lq = import_larq()
    layers = (_conv_block(tf, lq, 32, first=True) + _conv_block(tf, lq, 64)
              + _conv_block(tf, lq, 48, pool=2, padding="same"))
    return _model(tf, layers + _head(tf, lq, hidden=(64,), classes=classes), "m15_mnist")


def m15_fashion_mnist(classes=10):
    """The <= 15 KB budget for Fashion-MNIST: conv 5x5 (40) -> pool 2 -> conv 3x3 (64) -> pool 2 ->
    conv 3x3 same (48) -> pool 2 -> binary dense 192->64 -> dense 64->10 (each followed by BN).

    m15_mnist with a wider 5x5 first layer: the integer layer on raw pixels sees more texture, and its
    output is the narrowest point of a BNN (one bit per filter). Chosen on validation
    (examples/models/README.md): 5x5 instead of 3x3 +0.3 points; a 48-filter third conv instead of 40
    +0.4; 40 first-layer filters instead of 32 +0.6 (mean of two seeds), more than widening the second
    conv (72), the third (56) or the hidden dense layer (96) at about the same size. Budget: 7.9 KB
    binary weights, ~9.0 KB model data, activation arena 1,016 B; total measured on Cortex-M3 by
    bench/accuracy_memory.py (BENCHMARKS.md). 3.6 M MACs. Goal >= 88% Fashion-MNIST test."""
    tf, lq = import_larq()
    layers = (_conv_block(tf, lq, 40, first=True, kernel=5) + _conv_block(tf, lq, 64)
              + _conv_block(tf, lq, 48, pool=2, padding="same"))
    return _model(tf, layers + _head(tf, lq, hidden=(64,), classes=classes), "m15_fashion_mnist")


# ---- 32x32x3 RGB images (CIFAR-10): binary VGG-style chains (keras_ebnn.train.architectures.cifar_vgg)
def vgg_cifar10_t(classes=10):
    """The smallest binary VGG for 32x32x3, sized to train on a 2-core CPU in an hour (5-11 min per
    epoch of 48,000 images on this repository's shared 2-core machine): stem 32 p2 -> [48] p2 -> [96]
    p2 -> [128] p2 -> dense 512->classes (see cifar_vgg); 22.6 KB of model data. Measured cost and accuracy: BENCHMARKS.md "CIFAR-10 on Cortex-M4"."""
    return cifar_vgg(32, ((48,), (96,), (128,)), stem_pool=2, classes=classes, name="vgg_cifar10_t")


def vgg_cifar10_s(classes=10):
    """Small binary VGG for 32x32x3: stem 64 p2 -> [96] p2 -> [128] p2 -> [192] p2 -> dense
    768->classes (see cifar_vgg); ~5x the training compute of vgg_cifar10_t."""
    return cifar_vgg(64, ((96,), (128,), (192,)), stem_pool=2, classes=classes, name="vgg_cifar10_s")


def vgg_cifar10_m(classes=10):
    """Medium binary VGG for 32x32x3 (FINN CNV-like, cut to a 256 KB Cortex-M4): stem 64 p2 ->
    [128, 128] p2 -> [256, 256] p2 -> dense 4096->classes (see cifar_vgg): ~1.1 M binary conv weights
    (~140 KB), ~115 M binary multiply-adds; needs a GPU-class budget to train."""
    return cifar_vgg(64, ((128, 128), (256, 256)), stem_pool=2, classes=classes, name="vgg_cifar10_m")


# Architectures found by keras_ebnn.search (bench/search.py, BENCHMARKS.md "Search" sections), as the
# search's `describe` text of the trial: the network and its training recipe (learning rate, shifts,
# learnt output scale). `searched(name)` builds the network; bench/presets.py trains and ships them
# (examples/models/NAME.keras) with the recipe and `SEARCHED_EPOCHS` epochs of final training.
SEARCHED = {
    # 15 KB Cortex-M3 budget (flash + RAM, input excluded): a 57-minute search, trial #149
    "m15_search_mnist": "c5x5:40 p2 > c3x3s:32; lr 1.9e-02 shift 1 scale",
    # Arduino Uno budget with <= 100 ms per image (mean over the probe images), trial #222
    "uno_search_mnist": "c5x5/2:32 p2 > d128; lr 2.1e-02 scale",
}
SEARCHED_EPOCHS = {"m15_search_mnist": 15, "uno_search_mnist": 30}  # the searches' --final-epochs


def searched_params(name):
    """The search-space candidate (keras_ebnn.train.search_space) of the searched preset `name`: its
    architecture and training recipe (lr, shift, output_scale, bn_reestimate)."""
    from .search_space import DEFAULT_SPACE
    if name not in SEARCHED:
        raise ValueError(f"unknown searched preset {name!r}; choose one of {', '.join(SEARCHED)}")
    return DEFAULT_SPACE.parse(SEARCHED[name])


def from_description(text, classes=10, name="candidate"):
    """The uncompiled model of a search candidate's `describe` text (as printed in pareto.md,
    report.md and BENCHMARKS.md), e.g. from_description('c5x5/2:32 p2 > d128; lr 2.1e-02 scale')."""
    from .search_space import DEFAULT_SPACE
    return DEFAULT_SPACE.build(DEFAULT_SPACE.parse(text), classes, name=name)


def searched(name, classes=10):
    """Build the searched preset `name` (SEARCHED): the architecture a keras_ebnn.search run found,
    with its learnt output scale when the recipe has one."""
    from .search_space import DEFAULT_SPACE
    return DEFAULT_SPACE.build(searched_params(name), classes, name=name)


def m15_search_mnist(classes=10):
    """Found by keras_ebnn.search for the 15 KB Cortex-M3 budget: uint8 input -> conv 5x5 (40) ->
    pool 2 -> BN -> binary conv 3x3 same (32) -> BN -> binary dense 12x12x32 -> classes -> BN (learnt
    scale) -> softmax. No hidden dense layer: the wide 5x5 integer first layer carries the accuracy.
    Recipe: lr 1.9e-2, +-1 px shifts, 15 epochs (bench/presets.py)."""
    return searched("m15_search_mnist", classes)


def uno_search_mnist(classes=10):
    """Found by keras_ebnn.search for the Arduino Uno budget: uint8 input -> conv 5x5 stride 2 (32)
    -> pool 2 -> BN -> binary dense 6x6x32 -> 128 -> BN -> dense 128 -> classes -> BN (learnt scale)
    -> softmax. Recipe: lr 2.1e-2, 30 epochs (bench/presets.py)."""
    return searched("uno_search_mnist", classes)


PRESETS = {"paper_mnist": paper_mnist, "tiny_mnist": tiny_mnist, "uno_mnist": uno_mnist,
           "demo_mnist": demo_mnist, "m15_mnist": m15_mnist, "m15_fashion_mnist": m15_fashion_mnist,
           "vgg_cifar10_t": vgg_cifar10_t, "vgg_cifar10_s": vgg_cifar10_s,
           "vgg_cifar10_m": vgg_cifar10_m,
           "m15_search_mnist": m15_search_mnist, "uno_search_mnist": uno_search_mnist}


def get(name, classes=10, output_scale=False):
    """Build the preset called `name` (uncompiled; training.train compiles it). output_scale=True:
    see with_output_scale."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    model = PRESETS[name](classes)
    return with_output_scale(model) if output_scale else model
