"""Random Larq functional models with branches, for the graph IR (tests/test_graph_dag.py).

`random_graph(seed)` returns (model, inputs, description): a 1-D (L, C) or 2-D (H, W, C) input
(float, or uint8 through Rescaling), a binary or full-precision stem, 1-4 random blocks among
  conv       QuantConv (+ MaxPool) + BN (+ ReLU / hard-tanh): a fusable sign chain
  residual   x + BN(QuantConv(x)) (Bi-Real / ResNet-E shortcut)
  concat     concat(x, BN(QuantConv(x))) (binary DenseNet)
  down       BN(QuantConv stride 2 (x)) + BN(Conv1x1(AvgPool(x))) (full-precision shortcut)
  pool       AvgPool or MaxPool
  conv_avg   QuantConv (no bias) -> AvgPool of its integer accumulators -> BN (-> activation)
  float      Conv + BN + ReLU (full precision)
  depthwise  DepthwiseConv2D + BN, or a binary QuantDepthwiseConv2D + BN (2-D only)
  float_pool a float or binary-weight conv on the float map (QuantConv, no input quantizer) + BN
             (+ ReLU) + max / average pool (+ BN): one conv_pool op (keras_ebnn/passes/graph_fuse.py)
  stream     Conv + BN + ReLU, then a binary-weight conv on that float map + BN + max pool 2: the first
             conv_pool's rows are streamed into the second (2-D, 6+ rows)
and a head: global average / max pooling or Flatten, an optional binary hidden dense layer, then a
full-precision Dense or a binary QuantDense + BN, optionally a softmax. Weights are random; batch
norm statistics are set from the model's own activations in one training-mode pass, then perturbed
(some negative gammas), so bits are balanced. Some binary layers use magnitude_aware_sign weights.
"""
import numpy as np

from keras_ebnn import import_larq
from helpers.modelgen import stable

KINDS = ["conv", "residual", "concat", "down", "pool", "float", "depthwise", "conv_avg", "float_pool", "stream"]


def random_graph(seed, n_inputs=16):
    tf, lq = import_larq()
    L = tf.keras.layers
    rng = np.random.default_rng(seed)
    tf.keras.utils.set_random_seed(seed)
    one_d = bool(rng.random() < 0.35)
    uint8 = bool(rng.random() < 0.5)
    c = int(rng.choice([1, 2, 3]))
    shape = (int(rng.integers(12, 25)), c) if one_d else (int(rng.integers(6, 11)), int(rng.integers(6, 11)), c)
    desc = [f"in {shape} {'uint8' if uint8 else 'float'}"]
    QConv = lq.layers.QuantConv1D if one_d else lq.layers.QuantConv2D
    Conv = L.Conv1D if one_d else L.Conv2D
    MaxPool = L.MaxPooling1D if one_d else L.MaxPooling2D
    AvgPool = L.AveragePooling1D if one_d else L.AveragePooling2D

    def kq():
        return "magnitude_aware_sign" if rng.random() < 0.15 else str(rng.choice(["ste_sign", "approx_sign"]))

    def qconv(filters, k=3, strides=1, padding="same", first=False, **kw):
        pad_values = float(rng.choice([0.0, 1.0])) if padding == "same" and not first else 0.0
        return QConv(filters, k, strides=strides, padding=padding, pad_values=pad_values,
                     input_quantizer=None if first else "ste_sign", kernel_quantizer=kq() if not first else "ste_sign",
                     kernel_constraint="weight_clip", use_bias=bool(rng.random() < 0.3), **kw)

    def bn():
        return L.BatchNormalization(momentum=0.9, center=bool(rng.random() < 0.9), scale=bool(rng.random() < 0.8))

    def act(x):
        a = str(rng.choice(["none", "none", "relu", "hard_tanh"]))
        if a == "relu":
            return L.ReLU()(x)
        if a == "hard_tanh":
            return L.Activation(lq.activations.hard_tanh)(x)
        return x

    def spatial(x):
        return x.shape[1:-1]

    inp = tf.keras.Input(shape)
    x = L.Rescaling(1 / 255.0)(inp) if uint8 else inp
    stem = str(rng.choice(["binary", "binary_sign", "float"]))
    filters = int(rng.choice([4, 6, 8]))
    if stem == "float":
        x = L.ReLU()(bn()(Conv(filters, 3, padding="same")(x)))
    else:
        first = qconv(filters, 3, padding=str(rng.choice(["same", "valid"])), first=True)
        if stem == "binary_sign":
            first.input_quantizer = lq.quantizers.get("ste_sign")
        x = bn()(first(x))
        if rng.random() < 0.4:
            x = MaxPool(2)(x)
    desc.append(f"stem {stem} {filters}")
    for _ in range(int(rng.integers(1, 5))):
        kind = str(rng.choice(KINDS))
        ch = x.shape[-1]
        small = min(spatial(x)) < 4
        if kind == "conv":
            f = int(rng.choice([4, 8, 12]))
            y = qconv(f, int(rng.choice([1, 3])))(x)
            if not small and rng.random() < 0.5:
                y = MaxPool(2, padding=str(rng.choice(["valid", "same"])))(y)
            x = act(bn()(y))
        elif kind == "residual":
            x = L.Add()([x, act(bn()(qconv(ch, 3)(x)))])
        elif kind == "concat":
            x = L.Concatenate()([x, bn()(qconv(int(rng.choice([2, 4])), 3)(x))])
        elif kind == "down":
            if small:
                continue
            f = int(rng.choice([ch, 2 * ch]))
            y = bn()(qconv(f, 3, strides=2)(x))
            s = bn()(Conv(f, 1, use_bias=False)(AvgPool(2, strides=2, padding="same")(x)))
            x = L.Add()([y, s])
        elif kind == "pool":
            if small:
                continue
            pool = MaxPool if rng.random() < 0.5 else AvgPool
            x = pool(int(rng.choice([2, 3])), strides=2, padding=str(rng.choice(["valid", "same"])))(x)
            kind += "/" + pool.__name__
        elif kind == "conv_avg":  # binary conv -> average pool of its integer outputs -> BN
            if small:
                continue
            y = QConv(
                int(rng.choice([4, 8])), 3, padding="same", input_quantizer="ste_sign",
                kernel_quantizer="ste_sign", kernel_constraint="weight_clip", use_bias=False)(x)
            y = AvgPool(2, strides=2, padding=str(rng.choice(["valid", "same"])))(y)
            x = act(bn()(y))
        elif kind == "float":
            x = L.ReLU()(bn()(Conv(int(rng.choice([4, 8])), int(rng.choice([1, 3])), padding="same")(x)))
        elif kind == "float_pool":
            if small:
                continue
            f = int(rng.choice([4, 8, 12]))
            if rng.random() < 0.5:
                y = Conv(f, int(rng.choice([1, 3])), padding=str(rng.choice(["same", "valid"])))(x)
            else:  # binary weights on the float map
                y = QConv(f, 3, padding="same", input_quantizer=None, kernel_quantizer="ste_sign",
                          kernel_constraint="weight_clip", use_bias=bool(rng.random() < 0.3))(x)
            y = act(bn()(y))
            pool = MaxPool if rng.random() < 0.6 else AvgPool
            y = pool(2, padding=str(rng.choice(["valid", "same"])))(y)
            x = bn()(y) if rng.random() < 0.5 else y
            kind += "/" + pool.__name__
        elif kind == "stream":
            if one_d or min(spatial(x)) < 6:
                continue
            y = L.ReLU()(bn()(Conv(int(rng.choice([4, 8])), 3, padding="same")(x)))
            y = QConv(int(rng.choice([8, 16])), 3, padding="same", input_quantizer=None, kernel_quantizer="ste_sign",
                      kernel_constraint="weight_clip", use_bias=False)(y)
            x = MaxPool(2)(bn()(y))
        elif kind == "depthwise":
            if one_d:
                continue
            if rng.random() < 0.5:
                x = bn()(L.DepthwiseConv2D(3, padding="same", depth_multiplier=int(rng.choice([1, 2])))(x))
            else:
                x = bn()(lq.layers.QuantDepthwiseConv2D(3, padding="same", input_quantizer="ste_sign",
                                                         depthwise_quantizer="ste_sign",
                                                         depthwise_constraint="weight_clip", use_bias=False)(x))
        desc.append(kind)
    head = str(rng.choice(["gap", "gmp", "flatten", "gap_int"]))
    if head == "gap_int":  # global average of a binary conv's integer outputs, then BN
        x = QConv(8, 3, padding="same", input_quantizer="ste_sign", kernel_quantizer="ste_sign",
                  kernel_constraint="weight_clip", use_bias=False)(x)
        x = bn()((L.GlobalAveragePooling1D() if one_d else L.GlobalAveragePooling2D())(x))
    elif head == "gap":
        keep = bool(rng.random() < 0.3)  # keepdims=True, then Flatten
        x = (L.GlobalAveragePooling1D(keepdims=keep) if one_d else L.GlobalAveragePooling2D(keepdims=keep))(x)
        x = L.Flatten()(x) if keep else x
    elif head == "gmp":
        keep = bool(rng.random() < 0.3)
        x = (L.GlobalMaxPooling1D(keepdims=keep) if one_d else L.GlobalMaxPooling2D(keepdims=keep))(x)
        x = L.Flatten()(x) if keep else x
    else:
        x = L.Flatten()(x)
    if rng.random() < 0.4:
        x = bn()(lq.layers.QuantDense(int(rng.choice([8, 16])), input_quantizer="ste_sign", kernel_quantizer=kq(),
                                      kernel_constraint="weight_clip", use_bias=False)(x))
        head += "+qdense"
    classes = int(rng.choice([3, 5]))
    if rng.random() < 0.5:
        x = L.Dense(classes)(x)
        head += "+dense"
    else:
        x = bn()(lq.layers.QuantDense(classes, input_quantizer="ste_sign", kernel_quantizer="ste_sign",
                                      kernel_constraint="weight_clip", use_bias=bool(rng.random() < 0.5))(x))
        head += "+qdense_out"
    if rng.random() < 0.3:
        x = L.Activation("softmax")(x)
        head += "+softmax"
    desc.append(head)
    model = tf.keras.Model(inp, x)
    if uint8:
        xs = rng.integers(0, 256, (n_inputs,) + shape).astype(np.uint8)
    else:
        xs = rng.normal(0, 1, (n_inputs,) + shape).astype(np.float32)
    calibrate(model, xs, rng)
    return model, xs, "; ".join(desc)


def calibrate(model, x, rng):
    """Moving statistics of every BatchNormalization = the batch statistics of its input on x, in
    one training-mode pass (momentum 0), then perturbed; gammas random (~30% negative)."""
    tf, _ = import_larq()
    bns = [lay for lay in model.layers if isinstance(lay, tf.keras.layers.BatchNormalization)]
    for lay in bns:
        lay.momentum = 0.0
    model(tf.constant(np.asarray(x, dtype=np.float32)), training=True)
    for lay in bns:
        lay.momentum = 0.9
        n = lay.moving_mean.shape[0]
        std = stable(np.sqrt(lay.moving_variance.numpy())) + 0.1  # (stable: the same on every CPU)
        lay.moving_mean.assign(stable(lay.moving_mean.numpy()) + rng.normal(0, 0.2, n) * std)
        lay.moving_variance.assign((std * rng.uniform(0.7, 1.5, n)) ** 2)
        if lay.gamma is not None:
            lay.gamma.assign(rng.normal(0.5, 1.0, n))
        if lay.beta is not None:
            lay.beta.assign(rng.normal(0, 0.3, n))
