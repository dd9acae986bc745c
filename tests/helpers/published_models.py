"""Published Larq model definitions, re-created (not copied) with small sizes and random weights.

Each builder re-creates the *architecture* of a model someone published -- layer types, their order,
quantizers, padding, pooling, shortcuts, heads -- with fewer filters and a small input so the whole
set runs in seconds. The source is cited above each builder (repository + path, or URL). Weights are
Keras's random initialisers; batch-norm statistics are set from the model's own activations
(graphgen.calibrate), so the binary activations are balanced as in a trained network.

`PUBLISHED` maps a name to (builder, expected) where expected is "lowers" (keras_ebnn.ir.graph must lower
it and match Keras) or "refused: <layer class>" (a capability that is out of scope, e.g. multi-bit
quantizers, which must be refused with that layer named). `build(name, n)` returns (model, inputs).
"""
import numpy as np

from keras_ebnn import import_larq
from helpers.graphgen import calibrate

tf, lq = import_larq()
L = tf.keras.layers
SIGN = dict(input_quantizer="ste_sign", kernel_quantizer="ste_sign", kernel_constraint="weight_clip")


# Larq README / docs landing page: a fully connected BNN on MNIST (Flatten of a rank-2 28x28 input,
# a first QuantDense with binary weights only, a second with binary inputs and a softmax).
# Source: larq/larq docs/index.md ("You can define a simple binarized fully-connected Keras model").
def larq_readme_mlp():
    return tf.keras.Sequential([
        L.InputLayer((14, 14)), L.Flatten(),
        lq.layers.QuantDense(64, kernel_quantizer="ste_sign", kernel_constraint="weight_clip"),
        lq.layers.QuantDense(10, activation="softmax", **SIGN)]), "float"


# Larq tutorial "Introduction to BNNs with Larq" (MNIST CNN: binary-weight first conv, max pooling,
# BatchNormalization(scale=False), two more binary convs, two binary dense layers, softmax).
# Source: larq/larq docs/larq/tutorials/mnist.ipynb
def larq_intro_mnist():
    bn = dict(scale=False)
    return tf.keras.Sequential([
        L.InputLayer((28, 28, 1)),
        lq.layers.QuantConv2D(8, (3, 3), kernel_quantizer="ste_sign", kernel_constraint="weight_clip",
                              use_bias=False),
        L.MaxPooling2D((2, 2)), L.BatchNormalization(**bn),
        lq.layers.QuantConv2D(16, (3, 3), use_bias=False, **SIGN), L.MaxPooling2D((2, 2)),
        L.BatchNormalization(**bn),
        lq.layers.QuantConv2D(16, (3, 3), use_bias=False, **SIGN), L.BatchNormalization(**bn),
        L.Flatten(),
        lq.layers.QuantDense(16, use_bias=False, **SIGN), L.BatchNormalization(**bn),
        lq.layers.QuantDense(10, use_bias=False, **SIGN), L.BatchNormalization(**bn),
        L.Activation("softmax")]), "float"


# Larq example "BinaryNet on CIFAR10" (VGG-like BinaryNet: six binary convs, 'same' padding, max
# pooling, BN(momentum=0.999, scale=False), three binary dense layers, softmax).
# Source: larq/larq docs/larq/tutorials/binarynet_cifar10.ipynb
def larq_binarynet_cifar10():
    kw = dict(use_bias=False, **SIGN)
    bn = lambda: L.BatchNormalization(momentum=0.999, scale=False)  # noqa: E731
    return tf.keras.Sequential([
        L.InputLayer((12, 12, 3)),
        lq.layers.QuantConv2D(8, 3, kernel_quantizer="ste_sign", kernel_constraint="weight_clip", use_bias=False),
        bn(),
        lq.layers.QuantConv2D(8, 3, padding="same", **kw), L.MaxPool2D((2, 2), strides=(2, 2)), bn(),
        lq.layers.QuantConv2D(16, 3, padding="same", **kw), bn(),
        lq.layers.QuantConv2D(16, 3, padding="same", **kw), L.MaxPool2D((2, 2), strides=(2, 2)), bn(),
        L.Flatten(),
        lq.layers.QuantDense(32, **kw), bn(),
        lq.layers.QuantDense(10, **kw), bn(), L.Activation("softmax")]), "float"


# Larq Compute Engine "End to End Guide", section 4 "Create your own Larq model": float Conv2D 5x5
# stride 3 + BN, two binary convs (stride 2, 'same') each followed by BN and ReLU, global average
# pooling, float Dense softmax. Source: larq/docs docs/compute-engine/end_to_end.ipynb
def lce_guide_custom():
    return tf.keras.Sequential([
        L.Input((16, 16, 3)), L.Conv2D(8, (5, 5), padding="same", strides=3), L.BatchNormalization(),
        lq.layers.QuantConv2D(8, (3, 3), padding="same", strides=2, use_bias=False, **SIGN),
        L.BatchNormalization(), L.Activation("relu"),
        lq.layers.QuantConv2D(16, (3, 3), padding="same", strides=2, use_bias=False, **SIGN),
        L.BatchNormalization(), L.Activation("relu"),
        L.GlobalAveragePooling2D(), L.Dense(10, activation="softmax")]), "float"


# The same guide's recommended fusable form: binary conv with pad_values=1, then ReLU, then BN.
# Source: larq/docs docs/compute-engine/end_to_end.ipynb ("a fusable configuration ... ReLU and BatchNorm")
def lce_guide_fusable():
    conv = dict(padding="same", pad_values=1, strides=2, use_bias=False, **SIGN)
    return tf.keras.Sequential([
        L.Input((16, 16, 3)), L.Conv2D(8, (5, 5), padding="same", strides=3), L.BatchNormalization(),
        lq.layers.QuantConv2D(8, (3, 3), **conv), L.Activation("relu"), L.BatchNormalization(),
        lq.layers.QuantConv2D(16, (3, 3), **conv), L.Activation("relu"), L.BatchNormalization(),
        L.GlobalAveragePooling2D(), L.Dense(10, activation="softmax")]), "float"


def _bireal_block(x, out_filters=None):
    in_f = x.shape[-1]
    out_f = out_filters or in_f
    shortcut = x
    if in_f != out_f:
        shortcut = L.AvgPool2D(2, strides=2, padding="same")(shortcut)
        shortcut = L.Conv2D(out_f, (1, 1), use_bias=False)(shortcut)
        shortcut = L.BatchNormalization(momentum=0.8)(shortcut)
    y = lq.layers.QuantConv2D(out_f, (3, 3), strides=1 if in_f == out_f else 2, padding="same",
                              input_quantizer="approx_sign", kernel_quantizer="magnitude_aware_sign",
                              kernel_constraint="weight_clip", use_bias=False)(x)
    y = L.BatchNormalization(momentum=0.8)(y)
    return L.add([y, shortcut])


# Bi-Real Net (Liu et al. 2018) as in Larq Zoo: float 7x7/2 stem + BN + 3x3/2 max pool, residual
# blocks of approx_sign inputs and magnitude_aware_sign weights with a shortcut around every binary
# conv (avg pool + float 1x1 conv + BN when the width doubles), global average pooling, Dense softmax.
# Source: larq/zoo larq_zoo/literature/birealnet.py
def birealnet():
    inp = tf.keras.Input((24, 24, 3))
    x = L.Conv2D(8, (7, 7), strides=2, padding="same", use_bias=False)(inp)
    x = L.BatchNormalization(momentum=0.8)(x)
    x = L.MaxPool2D((3, 3), strides=2, padding="same")(x)
    x = _bireal_block(x, 8)
    x = _bireal_block(x)
    x = _bireal_block(x, 16)
    x = _bireal_block(x)
    x = L.GlobalAvgPool2D()(x)
    return tf.keras.Model(inp, L.Dense(10, activation="softmax")(x)), "float"


# Binary ResNet-E 18 (Bethge et al. 2019) as in Larq Zoo, small-input variant (3x3 float stem for
# inputs under 50 px): a shortcut around every binary conv (avg pool 2 + float 1x1 conv + BN when
# downsampling), final ReLU, global average pooling, Dense, softmax.
# Source: larq/zoo larq_zoo/literature/resnet_e.py
def binary_resnet_e():
    q = dict(input_quantizer=lq.quantizers.SteSign(clip_value=1.25),
             kernel_quantizer=lq.quantizers.SteSign(clip_value=1.25),
             kernel_constraint=lq.constraints.WeightClip(clip_value=1.25), use_bias=False)
    inp = tf.keras.Input((16, 16, 3))
    x = L.Conv2D(8, 3, padding="same", use_bias=False)(inp)
    for filters, strides in ((8, 1), (8, 1), (16, 2), (16, 1)):
        residual = x
        if x.shape[-1] != filters:
            residual = L.AvgPool2D(pool_size=2, strides=2)(x)
            residual = L.Conv2D(filters, 1, use_bias=False)(residual)
            residual = L.BatchNormalization(momentum=0.9, epsilon=1e-5)(residual)
        y = lq.layers.QuantConv2D(filters, 3, strides=strides, padding="same", **q)(x)
        y = L.BatchNormalization(momentum=0.9, epsilon=1e-5)(y)
        x = L.add([y, residual])
    x = L.Activation("relu")(x)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dense(10)(x)
    return tf.keras.Model(inp, L.Activation("softmax")(x)), "float"


# BinaryDenseNet 28 (Bethge et al. 2019) as in Larq Zoo, small-input variant: dense blocks of
# BN -> binary conv (growth rate) -> concatenate; transitions BN -> max pool -> ReLU -> float 1x1 conv;
# final BN, ReLU, global average pooling, Dense, softmax. Source: larq/zoo larq_zoo/literature/densenet.py
def binary_densenet():
    q = dict(input_quantizer=lq.quantizers.SteSign(clip_value=1.3),
             kernel_quantizer=lq.quantizers.SteSign(clip_value=1.3),
             kernel_constraint=lq.constraints.WeightClip(clip_value=1.3), padding="same", use_bias=False)
    bn = lambda: L.BatchNormalization(momentum=0.9, epsilon=1e-5)  # noqa: E731
    inp = tf.keras.Input((12, 12, 3))
    x = L.Conv2D(8, kernel_size=3, padding="same", use_bias=False)(inp)
    for block, n_layers in enumerate((2, 2)):
        for _ in range(n_layers):
            y = lq.layers.QuantConv2D(4, 3, **q)(bn()(x))
            x = L.concatenate([x, y])
        if block == 0:
            x = L.MaxPooling2D(2, strides=2)(bn()(x))
            x = L.Activation("relu")(x)
            x = L.Conv2D(8, kernel_size=1, use_bias=False)(x)
    x = L.Activation("relu")(bn()(x))
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dense(10)(x)
    return tf.keras.Model(inp, L.Activation("softmax")(x)), "float"


# QuickNet (Larq Zoo sota): LCE first layer (float 3x3/2 conv, float depthwise 3x3/2 with
# depth_multiplier 8 and ReLU, BN), residual blocks of binary convs with activation='relu' + BN + add,
# downsampling by max pool + BN shortcut and a concatenation, final ReLU, global average pooling,
# Dense softmax. Source: larq/zoo larq_zoo/sota/quicknet.py
def quicknet():
    q = dict(input_quantizer=lq.quantizers.SteSign(clip_value=1.25),
             kernel_quantizer=lq.quantizers.SteSign(clip_value=1.25),
             kernel_constraint=lq.constraints.WeightClip(clip_value=1.25), use_bias=False)
    bn = lambda: L.BatchNormalization(momentum=0.9, epsilon=1e-5)  # noqa: E731
    inp = tf.keras.Input((32, 32, 3))
    x = L.Conv2D(1, (3, 3), strides=2, padding="same", use_bias=False)(inp)
    x = L.DepthwiseConv2D((3, 3), depth_multiplier=8, strides=2, padding="same", use_bias=False,
                          activation="relu")(x)
    x = bn()(x)
    for filters, strides in ((8, 1), (8, 1), (16, 2), (16, 1)):
        infilters = x.shape[-1]
        downsample = infilters != filters
        residual = bn()(L.MaxPool2D(pool_size=2, strides=2)(x)) if downsample and strides == 2 else x
        y = lq.layers.QuantConv2D(infilters, kernel_size=3, strides=strides, padding="same",
                                  activation="relu", **q)(x)
        y = bn()(y)
        x = L.concatenate([residual, L.add([y, residual])]) if downsample else L.add([y, residual])
    x = L.Activation("relu")(x)
    x = L.GlobalAvgPool2D()(x)
    return tf.keras.Model(inp, L.Dense(10, activation="softmax")(x)), "float"


def xnor_scaled_sign(w):
    """XNOR-Net weights: sign of the clipped latent weights times their mean magnitude per filter."""
    w = tf.clip_by_value(w, -1, 1)
    alpha = tf.reduce_mean(tf.abs(w), axis=list(range(len(w.shape) - 1)), keepdims=True)
    return alpha * lq.quantizers.ste_sign(w)


# XNOR-Net (Rastegari et al. 2016) as in Larq Zoo: float 11x11/4 stem + BN + ReLU + max pool + BN,
# binary convs with a per-filter scaled-sign kernel quantizer, max pools, BN, the fc layers as binary
# convs, ReLU, Flatten, float Dense, softmax. Source: larq/zoo larq_zoo/literature/xnornet.py
def xnornet():
    q = dict(kernel_quantizer=xnor_scaled_sign, input_quantizer="ste_sign", kernel_constraint="weight_clip",
             use_bias=False)
    bn = lambda eps=1e-4: L.BatchNormalization(momentum=0.9, scale=False, epsilon=eps)  # noqa: E731
    inp = tf.keras.Input((64, 64, 3))
    x = L.Conv2D(8, (11, 11), strides=(4, 4), padding="same", use_bias=False)(inp)
    x = L.Activation("relu")(bn(1e-5)(x))
    x = bn()(L.MaxPool2D(pool_size=(3, 3), strides=(2, 2))(x))
    x = lq.layers.QuantConv2D(16, (5, 5), padding="same", **q)(x)
    x = bn()(L.MaxPool2D(pool_size=(3, 3), strides=(2, 2))(x))
    x = bn()(lq.layers.QuantConv2D(16, (3, 3), padding="same", **q)(x))
    x = bn()(lq.layers.QuantConv2D(32, (3, 3), padding="valid", **q)(x))  # the 6x6 "fc6" conv, scaled
    x = bn(1e-3)(lq.layers.QuantConv2D(32, (1, 1), padding="valid", **q)(x))
    x = L.Flatten()(L.Activation("relu")(x))
    x = L.Dense(10, use_bias=False)(x)
    return tf.keras.Model(inp, L.Activation("softmax")(x)), "float"


# DoReFa-Net (Zhou et al. 2016) as in Larq Zoo: 2-bit DoReFa activations: out of scope (multi-bit
# activation quantizer), must be refused naming the first QuantConv2D.
# Source: larq/zoo larq_zoo/literature/dorefanet.py
def dorefanet():
    q = dict(input_quantizer=lq.quantizers.DoReFa(k_bit=2), kernel_quantizer="magnitude_aware_sign",
             use_bias=False, padding="same")
    inp = tf.keras.Input((32, 32, 3))
    x = L.Conv2D(8, kernel_size=12, strides=4, padding="valid")(inp)
    x = L.BatchNormalization(scale=False)(lq.layers.QuantConv2D(16, 5, **q)(x))
    x = L.MaxPool2D(pool_size=3, strides=2, padding="same")(x)
    x = L.Flatten()(x)
    x = L.BatchNormalization(scale=False)(lq.layers.QuantDense(32, input_quantizer=lq.quantizers.DoReFa(k_bit=2),
                                                              kernel_quantizer="magnitude_aware_sign",
                                                              use_bias=False)(x))
    return tf.keras.Model(inp, L.Activation("softmax")(L.Dense(10)(x))), "float"


# STM32 model zoo "ST ResNet 8 Hybrid": 8-bit DoReFa first layer and shortcuts around binary cells
# (binary depthwise + BN, concatenation, binary 1x1 conv with pad_values=1, BN, add). The original's
# custom 8-bit quantizer is replaced by larq's DoReFa(k_bit=8): out of scope (multi-bit), refused.
# Source: STMicroelectronics/stm32ai-modelzoo image_classification/src/models/st_resnet_8_hybrid.py
def st_resnet8_hybrid():
    q8 = dict(input_quantizer=lq.quantizers.DoReFa(k_bit=8, mode="activations"),
              kernel_quantizer=lq.quantizers.DoReFa(k_bit=8, mode="weights"), use_bias=False, padding="same")
    inp = tf.keras.Input((16, 16, 3))
    x = L.BatchNormalization()(lq.layers.QuantConv2D(8, (3, 3), **q8)(inp))
    x1 = x
    y = lq.layers.QuantDepthwiseConv2D((3, 3), padding="same", pad_values=1.0, input_quantizer="ste_sign",
                                       depthwise_quantizer="ste_sign", depthwise_constraint="weight_clip",
                                       use_bias=False)(x)
    y = L.BatchNormalization(scale=False)(y)
    y = L.Concatenate(axis=-1)([x1, y])
    y = lq.layers.QuantConv2D(8, (1, 1), padding="same", pad_values=1.0, use_bias=False, **SIGN)(y)
    x = L.Add()([L.BatchNormalization()(y), x1])
    x = L.AveragePooling2D(pool_size=16)(x)
    x = lq.layers.QuantDense(10, use_bias=False)(L.Flatten()(x))
    return tf.keras.Model(inp, L.Activation("softmax")(L.BatchNormalization()(x))), "float"


# Larq example "MNIST with ternary weights": ste_tern kernels: out of scope (multi-bit weights), refused.
# Source: larq/larq docs/examples/mnist_ternary.ipynb
def larq_mnist_ternary():
    tern = dict(input_quantizer="ste_sign", kernel_quantizer="ste_tern", kernel_constraint="weight_clip",
                use_bias=False)
    return tf.keras.Sequential([
        L.InputLayer((14, 14, 1)),
        lq.layers.QuantConv2D(8, (3, 3), kernel_quantizer="ste_tern", kernel_constraint="weight_clip",
                              use_bias=False),
        L.MaxPooling2D((2, 2)), L.BatchNormalization(scale=False),
        lq.layers.QuantConv2D(8, (3, 3), **tern), L.BatchNormalization(scale=False), L.Flatten(),
        lq.layers.QuantDense(10, **tern), L.BatchNormalization(scale=False),
        L.Activation("softmax")]), "float"


# Binary FCN for time-series classification (Wang et al. 2017's FCN with binary conv blocks): float
# Conv1D 8 + BN + ReLU, two QuantConv1D (sign inputs and weights, bias) + BN, global average pooling
# 1-D, Dense softmax. Source: zagazao/binary-dl-tsc models/config_space/binary_fcn_cs.py
def tsc_binary_fcn():
    inp = tf.keras.Input((32, 3))
    x = L.Activation("relu")(L.BatchNormalization()(L.Conv1D(16, 8, padding="same")(inp)))
    x = L.BatchNormalization()(lq.layers.QuantConv1D(32, 5, padding="same", kernel_quantizer="ste_sign",
                                                     input_quantizer="ste_sign")(x))
    x = L.BatchNormalization()(lq.layers.QuantConv1D(16, 3, padding="same", kernel_quantizer="approx_sign",
                                                     input_quantizer="approx_sign")(x))
    x = L.GlobalAveragePooling1D()(x)
    return tf.keras.Model(inp, L.Dense(4, activation="softmax")(x)), "float"


# Binary MLP for time-series classification (Wang et al. 2017's MLP): Flatten of the (L, C) series,
# float Dense + BN + ReLU, then [Dropout, QuantDense, BN] twice, Dense softmax.
# Source: zagazao/binary-dl-tsc models/config_space/binary_mlp_cs.py
def tsc_binary_mlp():
    inp = tf.keras.Input((32, 3))
    x = L.Activation("relu")(L.BatchNormalization()(L.Dense(32)(L.Flatten()(inp))))
    for _ in range(2):
        x = L.Dropout(0.25)(x)
        x = lq.layers.QuantDense(32, input_quantizer="swish_sign", kernel_quantizer="swish_sign",
                                 kernel_constraint="weight_clip")(x)
        x = L.BatchNormalization()(x)
    return tf.keras.Model(inp, L.Dense(4, activation="softmax")(x)), "float"


# Binary DenseNet for time series ("BinaryQuickNet" in the source): float Conv1D stem + BN + ReLU,
# dense blocks of BN -> QuantConv1D (growth) -> concatenate, downsampling BN -> ReLU -> float 1x1
# Conv1D -> AveragePooling1D(2), final BN, ReLU, GlobalAvgPool1D, Dense softmax.
# Source: zagazao/binary-dl-tsc models/config_space/binary_quick_net_cs.py
def tsc_binary_densenet():
    bn = lambda: L.BatchNormalization(momentum=0.9, epsilon=1e-5)  # noqa: E731
    inp = tf.keras.Input((32, 3))
    x = L.Activation("relu")(bn()(L.Conv1D(8, 5, padding="same", use_bias=False)(inp)))
    for _ in range(2):
        for _ in range(2):
            y = lq.layers.QuantConv1D(4, 3, padding="same", input_quantizer="ste_sign",
                                      kernel_quantizer="ste_sign", kernel_constraint="weight_clip",
                                      use_bias=False)(bn()(x))
            x = L.concatenate([x, y])
        x = L.Activation("relu")(bn()(x))
        x = L.Conv1D(x.shape[-1] // 2, 1, use_bias=False)(x)
        x = L.AveragePooling1D(pool_size=2, strides=2)(x)
    x = L.GlobalAvgPool1D()(L.Activation("relu")(bn()(x)))
    return tf.keras.Model(inp, L.Dense(4, activation="softmax")(x)), "float"


def _binary_inception(x, filters, kernel):
    branches = [lq.layers.QuantConv1D(filters, kernel // 2 ** i, padding="same", input_quantizer="ste_sign",
                                      kernel_quantizer="ste_sign", kernel_constraint="weight_clip",
                                      use_bias=False)(x) for i in range(3)]
    pooled = L.MaxPool1D(pool_size=3, strides=1, padding="same")(x)
    branches.append(lq.layers.QuantConv1D(filters, 1, padding="same", input_quantizer="ste_sign",
                                          kernel_quantizer="ste_sign", kernel_constraint="weight_clip",
                                          use_bias=False)(pooled))
    x = L.Concatenate(axis=2)(branches)
    return L.Activation("relu")(L.BatchNormalization()(x))


# Binary InceptionTime (Ismail Fawaz et al. 2020) for time series: inception modules of three binary
# Conv1D branches (kernel k, k/2, k/4) and a max pool 3/1 + binary 1x1 branch, concatenated, BN, ReLU;
# a float 1x1 Conv1D + BN shortcut added every module pair, ReLU, global average pooling, Dense softmax.
# Source: zagazao/binary-dl-tsc models/config_space/binary_inception.py (_make_binary_inception_module,
# _make_shortcut_layer)
def tsc_binary_inception():
    inp = tf.keras.Input((32, 3))
    x = L.Activation("relu")(L.BatchNormalization()(L.Conv1D(8, 1, padding="same", use_bias=False)(inp)))
    res = x
    x = _binary_inception(_binary_inception(x, 4, 8), 4, 8)
    shortcut = L.BatchNormalization()(L.Conv1D(int(x.shape[-1]), 1, padding="same", use_bias=False)(res))
    x = L.Activation("relu")(L.Add()([shortcut, x]))
    x = L.GlobalAveragePooling1D()(x)
    return tf.keras.Model(inp, L.Dense(4, activation="softmax")(x)), "float"


# The Larq user guide's "BNN architecture" advice in a keyword-spotting-style DS-CNN on a spectrogram:
# uint8 input through Rescaling, float first conv, binary depthwise + BN and binary pointwise + BN
# blocks (depthwise separable, as in Hello Edge's DS-CNN, arXiv:1711.07128), average pooling, float
# Dense head. Sources: larq/larq docs/guides/bnn-architecture.md (first/last layer in full precision,
# BN after binary layers); https://arxiv.org/abs/1711.07128 (DS-CNN).
def kws_binary_dscnn():
    inp = tf.keras.Input((20, 10, 1))
    x = L.Rescaling(1 / 255.0)(inp)
    x = L.BatchNormalization()(L.Conv2D(8, (5, 3), strides=(2, 1), padding="same")(x))
    for _ in range(2):
        x = lq.layers.QuantDepthwiseConv2D((3, 3), padding="same", input_quantizer="ste_sign",
                                           depthwise_quantizer="ste_sign", depthwise_constraint="weight_clip",
                                           use_bias=False)(x)
        x = L.BatchNormalization()(x)
        x = lq.layers.QuantConv2D(8, (1, 1), use_bias=False, **SIGN)(x)
        x = L.BatchNormalization()(x)
    x = L.AveragePooling2D(pool_size=(10, 10))(x)
    x = L.Flatten()(x)
    return tf.keras.Model(inp, L.Dense(6, activation="softmax")(x)), "uint8"


PUBLISHED = {
    "larq_readme_mlp": (larq_readme_mlp, "lowers"),
    "larq_intro_mnist": (larq_intro_mnist, "lowers"),
    "larq_binarynet_cifar10": (larq_binarynet_cifar10, "lowers"),
    "lce_guide_custom": (lce_guide_custom, "lowers"),
    "lce_guide_fusable": (lce_guide_fusable, "lowers"),
    "birealnet": (birealnet, "lowers"),
    "binary_resnet_e": (binary_resnet_e, "lowers"),
    "binary_densenet": (binary_densenet, "lowers"),
    "quicknet": (quicknet, "lowers"),
    "xnornet": (xnornet, "lowers"),
    "tsc_binary_fcn": (tsc_binary_fcn, "lowers"),
    "tsc_binary_mlp": (tsc_binary_mlp, "lowers"),
    "tsc_binary_densenet": (tsc_binary_densenet, "lowers"),
    "tsc_binary_inception": (tsc_binary_inception, "lowers"),
    "kws_binary_dscnn": (kws_binary_dscnn, "lowers"),
    "dorefanet": (dorefanet, "refused: QuantConv2D"),
    "st_resnet8_hybrid": (st_resnet8_hybrid, "refused: QuantConv2D"),
    "larq_mnist_ternary": (larq_mnist_ternary, "refused: QuantConv2D"),
}


def build(name, n=16, seed=0):
    """(model, inputs) of a published model: random weights (seeded), calibrated batch norm."""
    builder, _ = PUBLISHED[name]
    tf.keras.utils.set_random_seed(seed)
    model, kind = builder()
    rng = np.random.default_rng(seed)
    shape = tuple(model.input_shape[1:])
    if kind == "uint8":
        x = rng.integers(0, 256, (n,) + shape).astype(np.uint8)
    else:
        x = rng.normal(0, 1, (n,) + shape).astype(np.float32)
    calibrate(model, x, rng)
    return model, x


# ---------------------------------------------------------------------------------------------------
# Full-size re-creations of BNNs published for microcontrollers (issue 21: memory and cost on the
# MCU they were built for). Architecture only (random weights, calibrated batch norm), at the
# published input size.

# WakeVision "Binary Samy" person detector (80x80x3): float Conv2D 3x3 'same' 8 (no bias) + BN + max
# pool 2, a binary-weight QuantConv2D 16 on the float map (no input quantizer) + BN + max pool 2, three
# binary QuantConv2D (24, 32, 40; ste_sign in and out) + BN (+ max pool 2 after the first two), global
# average pooling, Dropout, binary QuantDense 40 + BN, float Dense 2. Source: repository
# SepehrMohammady/BNN-WakeVision-STM32, samy_cbinnn/samy_bnn.h5 (layer list read from the file's
# model_config); paper "Binarized Wake-Up of Conversational Agents on an Industry-Grade
# High-Performance Microcontroller", IEEE COINS 2026.
def samy_bnn():
    kq = dict(kernel_quantizer="ste_sign", kernel_constraint="weight_clip", use_bias=False, padding="same")
    inp = tf.keras.Input((80, 80, 3))
    x = L.Conv2D(8, 3, padding="same", use_bias=False)(inp)
    x = L.MaxPooling2D(2)(L.BatchNormalization()(x))
    x = lq.layers.QuantConv2D(16, 3, input_quantizer=None, **kq)(x)
    x = L.MaxPooling2D(2)(L.BatchNormalization()(x))
    for filters, pool in ((24, True), (32, True), (40, False)):
        x = L.BatchNormalization()(lq.layers.QuantConv2D(filters, 3, input_quantizer="ste_sign", **kq)(x))
        if pool:
            x = L.MaxPooling2D(2)(x)
    x = L.Dropout(0.2)(L.GlobalAveragePooling2D()(x))
    x = lq.layers.QuantDense(40, input_quantizer="ste_sign", kernel_quantizer="ste_sign",
                             kernel_constraint="weight_clip", use_bias=False)(x)
    x = L.Dense(2)(L.BatchNormalization()(x))
    return tf.keras.Model(inp, x), "float"


# EmbedIA person detection (96x96x1): QuantConv2D 5x5 16 with float weights and inputs (no
# quantizers) + bias + ReLU, BN, max pool 4, BN, binary QuantConv2D 4x4 64 + bias + ReLU, max pool 3,
# BN, binary QuantConv2D 3x3 64 + bias + ReLU, BN, Flatten, binary QuantDense 256 + bias + ReLU, BN,
# float Dense 2 softmax. Source: repository Embed-ML/EmbedIA, person_detection_binary_72acc.h5 (layer
# list read from the file's model_config).
def embedia_person():
    qk = dict(input_quantizer="ste_sign", kernel_quantizer="ste_sign", kernel_constraint="weight_clip",
              activation="relu")
    return tf.keras.Sequential([
        L.InputLayer((96, 96, 1)),
        lq.layers.QuantConv2D(16, 5, activation="relu"), L.BatchNormalization(), L.MaxPooling2D(4),
        L.BatchNormalization(),
        lq.layers.QuantConv2D(64, 4, **qk), L.MaxPooling2D(3), L.BatchNormalization(),
        lq.layers.QuantConv2D(64, 3, **qk), L.BatchNormalization(), L.Flatten(),
        lq.layers.QuantDense(256, **qk), L.BatchNormalization(),
        L.Dense(2, activation="softmax")]), "float"


# A 28x28 MNIST BNN with a float stem (issue 21, item 3: Conv2D(16, 3) where the usual eBNN model has
# a binary-weight QuantConv2D): Conv2D 16 + BN + max pool 2, binary QuantConv2D 32 + max pool 2 + BN,
# Flatten, binary QuantDense 10 + BN, softmax (the Larq MNIST tutorial's shape with a float first conv).
def float_stem_mnist():
    q = dict(input_quantizer="ste_sign", kernel_quantizer="ste_sign", kernel_constraint="weight_clip",
             use_bias=False)
    return tf.keras.Sequential([
        L.InputLayer((28, 28, 1)),
        L.Conv2D(16, 3, use_bias=False), L.BatchNormalization(), L.MaxPooling2D(2),
        lq.layers.QuantConv2D(32, 3, **q), L.MaxPooling2D(2), L.BatchNormalization(),
        L.Flatten(), lq.layers.QuantDense(10, **q), L.BatchNormalization(),
        L.Activation("softmax")]), "float"


MCU_MODELS = {"samy_bnn": samy_bnn, "embedia_person": embedia_person, "float_stem_mnist": float_stem_mnist}


def build_mcu(name, n=8, seed=0):
    """(model, inputs) of a full-size MCU model of MCU_MODELS (random weights, calibrated batch norm)."""
    tf.keras.utils.set_random_seed(seed)
    model, _ = MCU_MODELS[name]()
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n,) + tuple(model.input_shape[1:])).astype(np.float32)
    calibrate(model, x, rng)
    return model, x
