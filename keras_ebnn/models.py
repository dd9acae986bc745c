"""Preset eBNN architectures for 28x28x1 uint8 inputs (MNIST, Fashion-MNIST).

Every preset starts with Rescaling(1/255) so that the exported C takes raw uint8 pixels and its
first layer runs in integers, and uses only layers keras-ebnn lowers. Memory figures are those of
`keras_ebnn.summary(model)` (activation arena, model data); BENCHMARKS.md has the measured ones.
"""
from ._tf import import_larq

SIGN = dict(kernel_quantizer="ste_sign", kernel_constraint="weight_clip", use_bias=False)
HIDDEN = dict(input_quantizer="ste_sign", **SIGN)


def _bn(tf):
    return tf.keras.layers.BatchNormalization(momentum=0.9, scale=False)


def _conv_block(tf, lq, filters, first=False, pool=2, kernel=3, strides=1, padding="valid"):
    kw = SIGN if first else HIDDEN
    layers = [lq.layers.QuantConv2D(filters, kernel, strides=strides, padding=padding, **kw)]
    if pool:
        layers.append(tf.keras.layers.MaxPooling2D(pool))
    layers.append(_bn(tf))
    return layers


def _head(tf, lq, hidden=(), classes=10):
    L = tf.keras.layers
    layers = [L.Flatten()]
    for units in hidden:
        layers += [lq.layers.QuantDense(units, **HIDDEN), _bn(tf)]
    layers += [lq.layers.QuantDense(classes, **HIDDEN), _bn(tf), L.Activation("softmax")]
    return layers


def _model(tf, layers, name):
    L = tf.keras.layers
    return tf.keras.Sequential([L.InputLayer((28, 28, 1)), L.Rescaling(1 / 255.0)] + layers, name=name)


def paper_mnist(classes=10):
    """The eBNN paper's MNIST network: binary conv 3x3 stride 2 (10 filters) -> max-pool 3x3 stride 2
    -> BN -> sign -> binary dense 360 -> classes (+ BN). ~0.5 KB of binary weights."""
    tf, lq = import_larq()
    L = tf.keras.layers
    layers = [lq.layers.QuantConv2D(10, 3, strides=2, **SIGN), L.MaxPooling2D(3, strides=2), _bn(tf)]
    return _model(tf, layers + _head(tf, lq, classes=classes), "paper_mnist")


def tiny_mnist(classes=10):
    """conv16 -> conv32 -> dense: ~1.6 KB of binary weights."""
    tf, lq = import_larq()
    layers = _conv_block(tf, lq, 16, first=True) + _conv_block(tf, lq, 32)
    return _model(tf, layers + _head(tf, lq, classes=classes), "tiny_mnist")


def uno_mnist(classes=10):
    """For an Arduino Uno (2 KB SRAM incl. the 784-byte input and the stack): conv 3x3 s1 (24 filters)
    -> pool 2 -> conv 3x3 (48) -> pool 2 -> dense. Activation arena ~0.66 KB, ~4 KB weights."""
    tf, lq = import_larq()
    layers = _conv_block(tf, lq, 24, first=True) + _conv_block(tf, lq, 48)
    return _model(tf, layers + _head(tf, lq, classes=classes), "uno_mnist")


def demo_mnist(classes=10):
    """conv32 -> conv64 -> dense10: ~4.3 KB of binary weights (the default demo model)."""
    tf, lq = import_larq()
    layers = _conv_block(tf, lq, 32, first=True) + _conv_block(tf, lq, 64)
    return _model(tf, layers + _head(tf, lq, classes=classes), "demo_mnist")


def m15_mnist(classes=10):
    """Aimed at <= 15 KB total on Cortex-M3 (flash incl. runtime + RAM incl. stack):
    conv32 -> conv64 -> conv64 (same) -> dense64 -> dense; ~11.6 KB of binary weights."""
    tf, lq = import_larq()
    layers = (_conv_block(tf, lq, 32, first=True) + _conv_block(tf, lq, 64)
              + _conv_block(tf, lq, 64, pool=2, padding="same"))
    return _model(tf, layers + _head(tf, lq, hidden=(64,), classes=classes), "m15_mnist")


PRESETS = {"paper_mnist": paper_mnist, "tiny_mnist": tiny_mnist, "uno_mnist": uno_mnist,
           "demo_mnist": demo_mnist, "m15_mnist": m15_mnist}


def get(name, classes=10):
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name](classes)
