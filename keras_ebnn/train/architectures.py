"""Building blocks of the preset architectures (keras_ebnn.train.models) and of the search spaces
(keras_ebnn.train.search_space): the binary conv / dense layer settings, a conv block, the classifier head,
the binary VGG chain for 32x32x3 images, and the learnt output scale. Both import from here, so the
presets can be described by search-space texts (models.SEARCHED) without an import cycle."""
from .._tf import import_larq

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


def cifar_vgg(stem=32, stages=((64,), (128,), (256,)), dense=(), classes=10, input_shape=(32, 32, 3),
              stem_kernel=3, stem_pool=0, name="cifar_vgg"):
    """A binary VGG-style chain for small RGB images, the family of published CIFAR-10 BNNs (FINN's
    CNV, BinaryNet's VGG) cut to microcontroller size:

      uint8 input -> Rescaling(1/255)
      -> stem: QuantConv2D(stem, stem_kernel, 'same') with binary weights on the raw pixels
         [-> MaxPool(stem_pool)] -> BN                       (the C's integer input conv, adds / subtracts)
      -> per stage: QuantConv2D(f, 3, 'same') (sign input, binary weights) -> BN for every f of the
         stage, the last conv of a stage followed by MaxPool 2 (before its BN)   (XNOR-popcount)
      -> Flatten -> QuantDense(units) -> BN per `dense` -> QuantDense(classes) -> BN -> softmax.

    Everything is a layer of the chain exporter (keras_ebnn.frontend.lowering): one fused block per conv,
    thresholds instead of batch norm, the pooled maps stored as bits. Binary weights cost one bit,
    the activation arena two maps of (H x W x C) bits plus a conv row buffer."""
    tf, lq = import_larq()
    L = tf.keras.layers
    layers = [lq.layers.QuantConv2D(stem, stem_kernel, padding="same", **SIGN)]
    if stem_pool:
        layers.append(L.MaxPooling2D(stem_pool))
    layers.append(_bn(tf))
    for widths in stages:
        for j, f in enumerate(widths):
            layers += _conv_block(tf, lq, f, pool=2 if j == len(widths) - 1 else 0, padding="same")
    layers = layers + _head(tf, lq, hidden=dense, classes=classes)
    return tf.keras.Sequential([L.InputLayer(input_shape), L.Rescaling(1 / 255.0)] + layers, name=name)


def with_output_scale(model):
    """A copy of `model` (fresh weights) whose last BatchNormalization learns a per-class scale (gamma)
    too, so the softmax temperature is learnt; the exporter folds gamma into the output affine."""
    tf, _ = import_larq()
    cfg = model.get_config()
    for layer in reversed(cfg["layers"]):
        if layer["class_name"] == "BatchNormalization":
            layer["config"]["scale"] = True
            break
    return tf.keras.Sequential.from_config(cfg)
